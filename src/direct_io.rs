//! Files written and read with `O_DIRECT` (issue 13): the server's chunk files in local
//! buckets, and the client's downloaded report.
//!
//! Why: a chunk is written once, made durable, and read back rarely, and a download is written
//! once and synced; through the page cache every byte is first copied into freshly allocated
//! cache pages, and on a machine whose memory is full of cache that copy, not the disk, was
//! what limited uploads and downloads (two replicas are twice the bytes). With `O_DIRECT` the
//! disk reads from and writes into our own buffer.
//!
//! The layout on disk is object_store's `LocalFileSystem` layout, unchanged: the file is staged
//! as `KEY#N` beside its final name, made durable (`fdatasync`), renamed into place, and the
//! folder synced, so a crash leaves either no file or the whole file, and the staging sweep and
//! every other reader of the bucket keep working. A filesystem without `O_DIRECT` (tmpfs) gets
//! the same steps through the page cache.

use std::fs::{File, OpenOptions};
use std::io::{self, ErrorKind};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use bytes::Bytes;

/// Alignment of `O_DIRECT` buffers, lengths and offsets (the largest logical block size in use).
pub const ALIGN: usize = 4096;

/// A zeroed buffer of at least `len` bytes whose usable part starts on an [`ALIGN`] boundary.
/// Returns the vector and the offset of the aligned part.
fn aligned(len: usize) -> (Vec<u8>, usize) {
    let padded = len.div_ceil(ALIGN) * ALIGN;
    let buf = vec![0u8; padded + ALIGN];
    let off = buf.as_ptr().align_offset(ALIGN);
    (buf, off)
}

thread_local! {
    /// The write buffer of this blocking-pool thread, kept between chunks: no allocation, no
    /// page faults and no zeroing per write.
    static WRITE_BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `f` on a copy of `body` that starts on an [`ALIGN`] boundary and is zero-padded to a
/// whole number of blocks.
fn with_aligned_copy<R>(body: &[u8], f: impl FnOnce(&[u8]) -> R) -> R {
    let padded = body.len().div_ceil(ALIGN) * ALIGN;
    WRITE_BUF.with(|cell| {
        let mut buf = cell.take();
        if buf.len() < padded + ALIGN {
            buf.resize(padded + ALIGN, 0);
        }
        let off = buf.as_ptr().align_offset(ALIGN);
        buf[off..off + body.len()].copy_from_slice(body);
        buf[off + body.len()..off + padded].fill(0);
        let r = f(&buf[off..off + padded]);
        cell.replace(buf);
        r
    })
}

/// Another handle on the open `file`, with `O_DIRECT`, for positional writes at offsets that
/// are multiples of [`ALIGN`] ([`write_at`]); `None` when the filesystem refuses the flag.
pub fn reopen_direct(file: &File) -> Option<File> {
    use std::os::fd::AsRawFd;
    OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(format!("/proc/self/fd/{}", file.as_raw_fd()))
        .ok()
}

/// Writes `bytes` at `offset` into `file`: through `direct` (its `O_DIRECT` handle, from
/// [`reopen_direct`]) when there is one and `offset` is a multiple of [`ALIGN`], padded with
/// zeros to whole blocks, so the caller cuts the file to its length once every part is in;
/// through the page cache otherwise, or when the device refuses the blocks (EINVAL: blocks
/// larger than [`ALIGN`]).
pub fn write_at(file: &File, direct: Option<&File>, bytes: &[u8], offset: u64) -> io::Result<()> {
    if let Some(direct) = direct.filter(|_| offset.is_multiple_of(ALIGN as u64)) {
        match with_aligned_copy(bytes, |blocks| direct.write_all_at(blocks, offset)) {
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
            done => return done,
        }
    }
    file.write_all_at(bytes, offset)
}

/// Opens `path` with `O_DIRECT` when the filesystem allows it; `Ok((file, direct))`.
fn open_maybe_direct(opts: &OpenOptions, path: &Path) -> io::Result<(File, bool)> {
    let mut direct = opts.clone();
    direct.custom_flags(libc::O_DIRECT);
    match direct.open(path) {
        Ok(f) => Ok((f, true)),
        // tmpfs and some network filesystems refuse the flag itself.
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok((opts.open(path)?, false)),
        Err(e) => Err(e),
    }
}

fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates `dir` and any missing parents up to `root`, syncing each parent that gained an
/// entry, so the new folders survive a crash along with the file put in them.
fn create_dirs_durably(root: &Path, dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut missing = Vec::new();
    let mut d = dir;
    while !d.is_dir() {
        // The bucket's own folder is never made here: one that vanished stays gone.
        if d == root || !d.starts_with(root) {
            return Err(io::Error::new(
                ErrorKind::NotFound,
                format!("the bucket folder {} is missing", root.display()),
            ));
        }
        missing.push(d.to_path_buf());
        match d.parent() {
            Some(p) => d = p,
            None => break,
        }
    }
    for m in missing.iter().rev() {
        match std::fs::create_dir(m) {
            Ok(()) => {}
            // Another write made it first: fine, it syncs its parent too.
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        if let Some(parent) = m.parent() {
            fsync_dir(parent)?;
        }
    }
    Ok(())
}

/// A fresh staging file beside `dest`, named like object_store's (`dest#N`), with its
/// `O_DIRECT` handle when the filesystem allows one.
fn new_staging(dest: &Path) -> io::Result<(File, Option<File>, PathBuf)> {
    let mut create = OpenOptions::new();
    create.write(true).create_new(true);
    for n in 1u32.. {
        let mut name = dest.as_os_str().to_owned();
        name.push(format!("#{n}"));
        let path = PathBuf::from(name);
        // Made without O_DIRECT, then reopened with it: a filesystem that refuses the flag
        // may do so only after it made the file.
        match create.open(&path) {
            Ok(file) => {
                let direct = reopen_direct(&file);
                return Ok((file, direct, path));
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other("no free staging name"))
}

/// Writes `body` durably as `root/key`: staged, synced, renamed, folder synced. Blocking.
pub fn write_durable(root: &Path, key: &str, body: &[u8]) -> io::Result<()> {
    let dest = root.join(key);
    let dir = dest
        .parent()
        .ok_or_else(|| io::Error::other("an object key without a folder"))?;
    create_dirs_durably(root, dir)?;
    let (file, direct, staging) = new_staging(&dest)?;
    // Whole aligned blocks through `direct`, then cut to the real length (a no-op through the
    // page cache).
    let written = write_at(&file, direct.as_ref(), body, 0)
        .and_then(|()| file.set_len(body.len() as u64))
        .and_then(|()| file.sync_data());
    if let Err(e) = written {
        let _ = std::fs::remove_file(&staging);
        return Err(e);
    }
    if let Err(e) = std::fs::rename(&staging, &dest) {
        let _ = std::fs::remove_file(&staging);
        return Err(e);
    }
    fsync_dir(dir)
}

/// Reads `root/key` whole, at most `max` bytes (a longer file is an error, not a truncation).
/// `Ok(None)` when there is no such file. Blocking.
pub fn read(root: &Path, key: &str, max: u64) -> io::Result<Option<Bytes>> {
    let path = root.join(key);
    let mut opts = OpenOptions::new();
    opts.read(true);
    let (file, direct) = match open_maybe_direct(&opts, &path) {
        Ok(x) => x,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    if len > max {
        return Err(io::Error::other(format!(
            "{} is {len} bytes, more than a chunk can be",
            path.display()
        )));
    }
    let len = len as usize;
    let (mut buf, off) = aligned(len.max(1));
    let padded = len.div_ceil(ALIGN) * ALIGN;
    let mut got = 0;
    while got < len {
        let n = if direct {
            match file.read_at(&mut buf[off + got..off + padded], got as u64) {
                Ok(n) => n,
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                    // Not aligned enough for this device: read it through the page cache.
                    let plain = File::open(&path)?;
                    plain.read_exact_at(&mut buf[off..off + len], 0)?;
                    return Ok(Some(Bytes::from(buf).slice(off..off + len)));
                }
                Err(e) => return Err(e),
            }
        } else {
            file.read_at(&mut buf[off + got..off + len], got as u64)?
        };
        if n == 0 {
            return Err(io::Error::new(
                ErrorKind::UnexpectedEof,
                format!("{} shrank while it was read", path.display()),
            ));
        }
        got += n;
    }
    Ok(Some(Bytes::from(buf).slice(off..off + len)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_file_reads_back_exactly_at_every_awkward_length() {
        let dir = tempfile::tempdir().unwrap();
        for len in [0usize, 1, 16, 4095, 4096, 4097, (1 << 20) + 16] {
            let body: Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8).collect();
            let key = format!("chunks/ab/cd/{len:08}");
            write_durable(dir.path(), &key, &body).unwrap();
            let on_disk = std::fs::read(dir.path().join(&key)).unwrap();
            assert_eq!(on_disk, body, "length {len}: file on disk");
            let back = read(dir.path(), &key, 16 << 20).unwrap().unwrap();
            assert_eq!(&back[..], &body[..], "length {len}: read back");
        }
        // No staging file is left behind.
        let mut stack = vec![dir.path().to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(d).unwrap().flatten() {
                let p = e.path();
                assert!(!p.to_string_lossy().contains('#'), "left {}", p.display());
                if p.is_dir() {
                    stack.push(p);
                }
            }
        }
    }

    #[test]
    fn chunks_written_out_of_order_at_block_offsets_make_the_exact_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        let file = File::create(&path).unwrap();
        let chunk = 3 * ALIGN;
        let data: Vec<u8> = (0..chunk * 4 + 100).map(|i| (i % 251) as u8).collect();
        file.set_len(data.len() as u64).unwrap();
        // Where the filesystem refuses O_DIRECT, `write_at` writes through `file`: the same
        // bytes either way.
        let direct = reopen_direct(&file);
        for i in [4usize, 1, 3, 0, 2] {
            let part = &data[i * chunk..((i + 1) * chunk).min(data.len())];
            write_at(&file, direct.as_ref(), part, (i * chunk) as u64).unwrap();
        }
        file.set_len(data.len() as u64).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), data);
        // An offset off the block grid goes through the page cache, at exactly that offset.
        write_at(&file, direct.as_ref(), b"xyz", 1).unwrap();
        let mut want = data.clone();
        want[1..4].copy_from_slice(b"xyz");
        assert_eq!(std::fs::read(&path).unwrap(), want);
    }

    #[test]
    fn rewriting_replaces_and_missing_is_none_and_oversize_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        write_durable(dir.path(), "chunks/00/00/x", &[1u8; 5000]).unwrap();
        write_durable(dir.path(), "chunks/00/00/x", &[2u8; 10]).unwrap();
        let back = read(dir.path(), "chunks/00/00/x", 100).unwrap().unwrap();
        assert_eq!(&back[..], &[2u8; 10]);
        assert!(
            read(dir.path(), "chunks/00/00/none", 100)
                .unwrap()
                .is_none()
        );
        let e = read(dir.path(), "chunks/00/00/x", 9).unwrap_err();
        assert!(e.to_string().contains("more than a chunk"), "{e}");
    }
}
