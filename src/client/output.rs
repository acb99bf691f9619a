//! Where a download's verified plaintext is written until every check passed: a file that an
//! interrupted process (Ctrl-C, SIGTERM, even SIGKILL) leaves nowhere.
//!
//! On Linux an unnamed `O_TMPFILE` file in the target folder: it has no name until `linkat`
//! gives it one, and the kernel frees it when the process ends. Elsewhere, or on a filesystem
//! without `O_TMPFILE`, a named `.NAME.clinvault-PID-RANDOM.part` file (mode 0600) that
//! is removed on drop, by `remove_all_pending` (the CLI's signal handler), and by the sweep of
//! the next download into the same folder once its process is gone.
//! Either way the final name is made with a hard link, which never replaces an existing file.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Named temporary files of this process not yet linked into place.
static PENDING: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

const MARK: &str = ".clinvault-";

/// The folder and the file name a pending output for `out` is made with: a bare name is in
/// the current folder; a path that names no file (`..`, `/`) is refused.
pub fn target_parts(out: &Path) -> Result<(&Path, String), super::ClientError> {
    let dir = out
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = out.file_name().ok_or_else(|| {
        super::ClientError::Refused(format!("{} is not a file name", out.display()))
    })?;
    Ok((dir, name.to_string_lossy().into_owned()))
}

/// The output being written: the open file and, for the fallback, its temporary name.
pub struct PendingOutput {
    file: File,
    named: Option<PathBuf>,
    dir: PathBuf,
}

impl PendingOutput {
    /// A new, empty, invisible (or 0600 temporary) file in `dir`, for a file to be called
    /// `name` there.
    pub fn create(dir: &Path, name: &str) -> io::Result<PendingOutput> {
        sweep_stale(dir, name);
        #[cfg(target_os = "linux")]
        match unnamed(dir) {
            Ok(file) => {
                return Ok(PendingOutput {
                    file,
                    named: None,
                    dir: dir.to_path_buf(),
                });
            }
            // Filesystems without O_TMPFILE answer one of these: use a named file.
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EOPNOTSUPP | libc::EISDIR | libc::EINVAL | libc::ENOENT)
                ) && dir.is_dir() => {}
            Err(e) => return Err(e),
        }
        let tmp = dir.join(format!(
            ".{name}{MARK}{}-{}.part",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        let file = {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?
        };
        if let Ok(mut p) = PENDING.lock() {
            p.push(tmp.clone());
        }
        Ok(PendingOutput {
            file,
            named: Some(tmp),
            dir: dir.to_path_buf(),
        })
    }

    pub fn file(&mut self) -> &mut File {
        &mut self.file
    }

    /// Another handle on the same open file, for positional writes (`pwrite` at each chunk's
    /// offset) from worker threads; this one keeps the part that gives the file its name.
    pub fn positional(&self) -> io::Result<File> {
        self.file.try_clone()
    }

    /// Syncs the file and gives it the name `out`; fails (leaving nothing) if `out` exists.
    pub fn persist(mut self, out: &Path) -> io::Result<()> {
        self.file.sync_all()?;
        match self.named.take() {
            None => link_unnamed(&self.file, out)?,
            Some(tmp) => {
                let linked = std::fs::hard_link(&tmp, out);
                let _ = std::fs::remove_file(&tmp);
                forget_pending(&tmp);
                linked?;
            }
        }
        if let Ok(d) = File::open(&self.dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

impl Drop for PendingOutput {
    fn drop(&mut self) {
        if let Some(tmp) = self.named.take() {
            let _ = std::fs::remove_file(&tmp);
            forget_pending(&tmp);
        }
    }
}

fn forget_pending(tmp: &Path) {
    if let Ok(mut p) = PENDING.lock() {
        p.retain(|x| x != tmp);
    }
}

/// Removes this process's named temporary files: for a signal handler about to exit.
pub fn remove_all_pending() {
    if let Ok(mut p) = PENDING.lock() {
        for tmp in p.drain(..) {
            let _ = std::fs::remove_file(tmp);
        }
    }
}

#[cfg(target_os = "linux")]
fn unnamed(dir: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_TMPFILE)
        .open(dir)
}

#[cfg(target_os = "linux")]
fn link_unnamed(file: &File, out: &Path) -> io::Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::io::AsRawFd;
    // Through /proc: linking by descriptor (AT_EMPTY_PATH) needs a capability.
    let from = CString::new(format!("/proc/self/fd/{}", file.as_raw_fd()))
        .map_err(|_| io::Error::other("descriptor path"))?;
    let to = CString::new(out.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in the output path"))?;
    // SAFETY: both are valid NUL-terminated paths; linkat does not keep them.
    let rc = unsafe {
        libc::linkat(
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::AT_SYMLINK_FOLLOW,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn link_unnamed(_: &File, _: &Path) -> io::Result<()> {
    Err(io::Error::other("no unnamed temporary files here"))
}

/// Removes `.NAME.clinvault-PID-….part` files in `dir` whose process is gone (and ones in the
/// older `.NAME.clinvault-RANDOM.part` form, left by an earlier version, after an hour).
pub fn sweep_stale(dir: &Path, _name: &str) -> usize {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for e in rd.flatten() {
        let n = e.file_name();
        let Some(n) = n.to_str() else { continue };
        if !n.starts_with('.') || !n.ends_with(".part") {
            continue;
        }
        let Some(at) = n.rfind(MARK) else { continue };
        let tail = &n[at + MARK.len()..n.len() - ".part".len()];
        let stale = match tail.split_once('-') {
            Some((pid, rand)) if rand.len() == 32 => match pid.parse::<u32>() {
                Ok(pid) => {
                    pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists()
                }
                Err(_) => false,
            },
            None if tail.len() == 32 && tail.bytes().all(|b| b.is_ascii_hexdigit()) => e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age.as_secs() > 3600),
            _ => false,
        };
        // Only regular files of ours: never follow a link someone planted.
        let regular = e.file_type().is_ok_and(|t| t.is_file());
        if stale && regular && std::fs::remove_file(e.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn nothing_visible_until_persisted_and_never_replaces() {
        let d = tempfile::tempdir().unwrap();
        let mut p = PendingOutput::create(d.path(), "out.bin").unwrap();
        p.file().write_all(b"secret").unwrap();
        let names: Vec<_> = std::fs::read_dir(d.path()).unwrap().flatten().collect();
        if cfg!(target_os = "linux") {
            assert!(names.is_empty(), "{names:?}");
        }
        p.persist(&d.path().join("out.bin")).unwrap();
        assert_eq!(std::fs::read(d.path().join("out.bin")).unwrap(), b"secret");

        let mut q = PendingOutput::create(d.path(), "out.bin").unwrap();
        q.file().write_all(b"other").unwrap();
        let e = q.persist(&d.path().join("out.bin")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(d.path().join("out.bin")).unwrap(), b"secret");
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
    }

    #[test]
    fn stale_parts_of_dead_processes_are_swept() {
        let d = tempfile::tempdir().unwrap();
        let dead = d
            .path()
            .join(format!(".x.bin{MARK}999999999-{}.part", "a".repeat(32)));
        let mine = d.path().join(format!(
            ".x.bin{MARK}{}-{}.part",
            std::process::id(),
            "b".repeat(32)
        ));
        let other = d.path().join(".unrelated.part");
        for p in [&dead, &mine, &other] {
            std::fs::write(p, b"x").unwrap();
        }
        assert_eq!(sweep_stale(d.path(), "x.bin"), 1);
        assert!(!dead.exists() && mine.exists() && other.exists());
    }
}
