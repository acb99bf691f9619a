//! Backups of the metadata database and restores that refuse to roll the ledger back
//! (DESIGN.md §7): every client pins the newest head it verified, so a database whose ledger
//! is shorter than, or differs from, a head the operator supplies would show them a fork.
//!
//! SQLite: `VACUUM INTO` writes a consistent copy while servers run. PostgreSQL: `pg_dump`
//! writes it; the operator restores with `pg_restore` into a fresh database and this module
//! checks that database before servers are pointed at it.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{AnyConnection, ConnectOptions, Connection};

use crate::config::ServerConfig;
use crate::ledger::{Hash, LedgerKey, SignedHead};
use crate::server::ledger_store;

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{0}")]
    Head(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("database: {0}")]
    Db(String),
    #[error(
        "refused: the backup's ledger has {backup} entries, older than the newest signed head \
         ({head} entries); every client that saw that head would see a rollback"
    )]
    Older { backup: u64, head: u64 },
    #[error(
        "refused: at {size} entries the backup's ledger root is {backup}, not the head's {head}; \
         it is a different history"
    )]
    Forked {
        size: u64,
        backup: String,
        head: String,
    },
    #[error("{0}")]
    Postgres(String),
}

/// The newest head the operator knows of: a size and the root at that size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub size: u64,
    pub root: Hash,
}

fn head_err(s: impl Into<String>) -> BackupError {
    BackupError::Head(s.into())
}

/// The saved state of a client (`STATE/ledger/*.json`).
#[derive(serde::Deserialize)]
struct SavedClientHead {
    ledger_key: String,
    signed_head: String,
}

impl Head {
    /// `SIZE:ROOTHEX` (as `clinvault audit` and `clinvault ledger` print them), the hex of a
    /// signed head, or the path of a client's saved head `ledger/*.json` (its signature is
    /// checked with the key saved beside it; `expected_key`, when given, must be that key).
    pub fn parse(arg: &str, expected_key: Option<&LedgerKey>) -> Result<Head, BackupError> {
        let path = Path::new(arg);
        if path.is_file() {
            let bytes = std::fs::read(path).map_err(|source| BackupError::Io {
                path: path.to_path_buf(),
                source,
            })?;
            let saved: SavedClientHead = serde_json::from_slice(&bytes)
                .map_err(|e| head_err(format!("{arg}: not a client's saved ledger head ({e})")))?;
            let key = LedgerKey::parse(&saved.ledger_key)
                .map_err(|e| head_err(format!("{arg}: ledger key: {e}")))?;
            if let Some(k) = expected_key
                && k != &key
            {
                return Err(head_err(format!(
                    "{arg} pins ledger key {key}, not this server's {k}"
                )));
            }
            let raw = hex::decode(saved.signed_head.trim())
                .map_err(|_| head_err(format!("{arg}: signed head is not hex")))?;
            let head = SignedHead::from_bytes(&raw).map_err(|e| head_err(format!("{arg}: {e}")))?;
            head.verify(key.as_bytes())
                .map_err(|e| head_err(format!("{arg}: the head's signature: {e}")))?;
            return Ok(Head {
                size: head.tree_size,
                root: head.root,
            });
        }
        let arg = arg.trim();
        if let Some((size, root)) = arg.split_once(':') {
            let size = size
                .trim()
                .parse()
                .map_err(|_| head_err("the head's size is not a number (SIZE:ROOTHEX)"))?;
            let root = parse_root(root.trim())?;
            return Ok(Head { size, root });
        }
        let raw = hex::decode(arg).map_err(|_| {
            head_err(format!(
                "{arg:?} is neither a file, SIZE:ROOTHEX, nor a signed head in hex"
            ))
        })?;
        let head = SignedHead::from_bytes(&raw).map_err(|e| head_err(e.to_string()))?;
        if let Some(k) = expected_key {
            head.verify(k.as_bytes())
                .map_err(|e| head_err(format!("the head's signature: {e}")))?;
        }
        Ok(Head {
            size: head.tree_size,
            root: head.root,
        })
    }
}

fn parse_root(s: &str) -> Result<Hash, BackupError> {
    let bytes = hex::decode(s).map_err(|_| head_err("the root is not hex"))?;
    bytes
        .try_into()
        .map_err(|_| head_err("the root is not 32 bytes (64 hex digits)"))
}

/// What a backup or a checked database holds.
#[derive(Debug, Clone)]
pub struct LedgerState {
    pub size: u64,
    pub root: Hash,
}

fn db_err(e: impl std::fmt::Display) -> BackupError {
    BackupError::Db(e.to_string())
}

/// The ledger of `conn` must reach `head`: at least as long, and the same root at its size.
pub async fn check_ledger(
    conn: &mut AnyConnection,
    head: &Head,
) -> Result<LedgerState, BackupError> {
    let size = ledger_store::size(conn)
        .await
        .map_err(|e| db_err(e.cause.unwrap_or(e.message)))?;
    if size < head.size {
        return Err(BackupError::Older {
            backup: size,
            head: head.size,
        });
    }
    if head.size > 0 {
        let at = ledger_store::root_at(conn, head.size)
            .await
            .map_err(|e| db_err(e.cause.unwrap_or(e.message)))?;
        if at != head.root {
            return Err(BackupError::Forked {
                size: head.size,
                backup: hex::encode(at),
                head: hex::encode(head.root),
            });
        }
    }
    let root = ledger_store::root_at(conn, size)
        .await
        .map_err(|e| db_err(e.cause.unwrap_or(e.message)))?;
    Ok(LedgerState { size, root })
}

fn sqlite_path(sc: &ServerConfig) -> PathBuf {
    sc.data.join("meta.db")
}

async fn open_sqlite_any(path: &Path, read_only: bool) -> Result<AnyConnection, BackupError> {
    sqlx::any::install_default_drivers();
    let url = SqliteConnectOptions::from_str("sqlite://")
        .map_err(db_err)?
        .filename(path)
        .read_only(read_only)
        .to_url_lossy();
    AnyConnection::connect(url.as_str()).await.map_err(db_err)
}

/// Writes a consistent copy of the metadata database to `out` (which must not exist), and
/// returns the ledger it holds. SQLite only; PostgreSQL runs `pg_dump --format=custom`.
pub async fn backup(sc: &ServerConfig, out: &Path) -> Result<Option<LedgerState>, BackupError> {
    if out.exists() {
        return Err(BackupError::Io {
            path: out.to_path_buf(),
            source: std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "already exists; choose another name for the backup",
            ),
        });
    }
    if !sc.database_url.is_empty() {
        let status = std::process::Command::new("pg_dump")
            .arg("--format=custom")
            .arg("--file")
            .arg(out)
            .arg(&sc.database_url)
            .status()
            .map_err(|e| {
                BackupError::Postgres(format!(
                    "could not run pg_dump ({e}); install the PostgreSQL client tools"
                ))
            })?;
        if !status.success() {
            return Err(BackupError::Postgres(format!("pg_dump failed: {status}")));
        }
        return Ok(None);
    }
    let src = sqlite_path(sc);
    if !src.is_file() {
        return Err(BackupError::Io {
            path: src,
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no such file: no database here (is --data, or [server] data, the server's data folder?)",
            ),
        });
    }
    let out_str = out
        .to_str()
        .ok_or_else(|| head_err("the output path must be UTF-8"))?;
    let mut conn = SqliteConnectOptions::new()
        .filename(&src)
        .busy_timeout(std::time::Duration::from_secs(15))
        .connect()
        .await
        .map_err(db_err)?;
    // One read transaction: a consistent snapshot even while servers write.
    sqlx::query("VACUUM INTO $1")
        .bind(out_str)
        .execute(&mut conn)
        .await
        .map_err(db_err)?;
    conn.close().await.map_err(db_err)?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(out, std::fs::Permissions::from_mode(0o600)).map_err(
            |source| BackupError::Io {
                path: out.to_path_buf(),
                source,
            },
        )?;
    }
    let mut check = open_sqlite_any(out, true).await?;
    let state = check_ledger(
        &mut check,
        &Head {
            size: 0,
            root: [0; 32],
        },
    )
    .await?;
    let _ = check.close().await;
    Ok(Some(state))
}

/// Restores a SQLite backup over `DATA/meta.db` when its ledger reaches `head`; with
/// PostgreSQL (no `from`), checks the configured database (restored by `pg_restore`) instead.
/// Servers must be stopped first.
pub async fn restore(
    sc: &ServerConfig,
    from: Option<&Path>,
    head: &Head,
) -> Result<LedgerState, BackupError> {
    if !sc.database_url.is_empty() {
        if from.is_some() {
            return Err(BackupError::Postgres(
                "with PostgreSQL, restore the dump with `pg_restore --no-owner -d NEW_DATABASE FILE`, \
                 set database_url to NEW_DATABASE, then run this command without --from to check it"
                    .into(),
            ));
        }
        sqlx::any::install_default_drivers();
        let mut conn = AnyConnection::connect(&sc.database_url)
            .await
            .map_err(db_err)?;
        let state = check_ledger(&mut conn, head).await;
        let _ = conn.close().await;
        return state;
    }
    let from = from.ok_or_else(|| head_err("--from FILE: the backup to restore"))?;
    if !from.is_file() {
        return Err(BackupError::Io {
            path: from.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such backup file"),
        });
    }
    if !sc.data.is_dir() {
        return Err(BackupError::Io {
            path: sc.data.clone(),
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no such data folder (is --data, or [server] data, the server's data folder?)",
            ),
        });
    }
    let mut conn = open_sqlite_any(from, true).await?;
    let ok: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&mut conn)
        .await
        .map_err(db_err)?;
    if ok != "ok" {
        return Err(db_err(format!("the backup is damaged: {ok}")));
    }
    let state = check_ledger(&mut conn, head).await;
    let _ = conn.close().await;
    let state = state?;
    // Copy beside the database, fsync, then rename over it: never a half-restored file.
    let dst = sqlite_path(sc);
    let tmp = sc.data.join("meta.db.restoring");
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| BackupError::Io { path, source }
    };
    std::fs::copy(from, &tmp).map_err(io(&tmp))?;
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(io(&tmp))?;
    for side in ["meta.db-wal", "meta.db-shm"] {
        match std::fs::remove_file(sc.data.join(side)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&sc.data.join(side))(e)),
        }
    }
    std::fs::rename(&tmp, &dst).map_err(io(&dst))?;
    std::fs::File::open(&sc.data)
        .and_then(|d| d.sync_all())
        .map_err(io(&sc.data))?;
    Ok(state)
}
