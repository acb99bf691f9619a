//! The CLI's session file: the token (never keys) per server, in the state folder, mode 0600.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::api::Role;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SavedSession {
    pub server: String,
    pub token: String,
    pub email: String,
    pub user_id: uuid::Uuid,
    pub role: Role,
}

fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("session.json")
}

pub fn save(state_dir: &Path, s: &SavedSession) -> std::io::Result<()> {
    std::fs::create_dir_all(state_dir)?;
    let _ = std::fs::set_permissions(state_dir, std::fs::Permissions::from_mode(0o700));
    let target = path(state_dir);
    let tmp = state_dir.join(".session.json.tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(&serde_json::to_vec_pretty(s).map_err(std::io::Error::other)?)?;
    f.sync_all()?;
    std::fs::rename(tmp, target)
}

/// The saved session for `server`, if any.
pub fn load(state_dir: &Path, server: &str) -> std::io::Result<Option<SavedSession>> {
    let p = path(state_dir);
    let bytes = match std::fs::read(&p) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let s: SavedSession = serde_json::from_slice(&bytes)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    Ok((s.server == server).then_some(s))
}

pub fn remove(state_dir: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path(state_dir)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_owner_only_and_per_server() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let s = SavedSession {
            server: "https://a.example".into(),
            token: "t0k3n".into(),
            email: "a@example.org".into(),
            user_id: uuid::Uuid::new_v4(),
            role: Role::Patient,
        };
        save(&state, &s).unwrap();
        let mode = std::fs::metadata(path(&state))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            load(&state, "https://a.example").unwrap().unwrap().token,
            "t0k3n"
        );
        assert!(load(&state, "https://b.example").unwrap().is_none());
        remove(&state).unwrap();
        assert!(load(&state, "https://a.example").unwrap().is_none());
        remove(&state).unwrap();
    }
}
