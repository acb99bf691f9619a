//! A witness (issue 11): a small separate process with its own Ed25519 key and its own state
//! file that cosigns a log's checkpoints only as consistent growth of the last one it
//! cosigned (c2sp.org/tlog-witness `add-checkpoint`, c2sp.org/tlog-cosignature
//! `cosignature/v1`). It never cosigns two inconsistent checkpoints of one log, nor a smaller
//! tree after a larger one: the state is persisted (fsync, rename) before any answer.

pub mod note;

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::ledger::{Hash, verify_consistency};
use note::{Checkpoint, Note, NoteError, SIG_COSIGNATURE_V1, SIG_ED25519, VerifierKey, cosign};

/// Most consistency proof lines in a request (the spec's limit).
pub const MAX_PROOF_LINES: usize = 63;
/// Largest request body read.
pub const MAX_BODY: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum WitnessError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {why}")]
    Invalid { path: String, why: String },
    #[error(transparent)]
    Note(#[from] NoteError),
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> WitnessError + '_ {
    move |source| WitnessError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// What the witness remembers per log origin: the last checkpoint it cosigned.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct WitnessState {
    pub logs: BTreeMap<String, LogState>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LogState {
    pub size: u64,
    /// Standard base64 of the root.
    pub root: String,
}

/// A refusal: the HTTP status the spec names, and a body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub body: String,
}

fn refuse(status: u16, why: impl Into<String>) -> Refusal {
    Refusal {
        status,
        body: format!("{}\n", why.into()),
    }
}

/// Reads the witness key seed (hex) from `path`, making it (mode 0600) when absent.
pub fn load_or_create_key(path: &Path) -> Result<SigningKey, WitnessError> {
    if !path.exists() {
        let seed = Zeroizing::new(crate::seal::random_array::<32>().map_err(|e| {
            WitnessError::Invalid {
                path: path.display().to_string(),
                why: e.to_string(),
            }
        })?);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io_err(path))?;
        }
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(io_err(path))?;
        f.write_all(format!("{}\n", hex::encode(*seed)).as_bytes())
            .map_err(io_err(path))?;
        f.sync_all().map_err(io_err(path))?;
    }
    let text = Zeroizing::new(std::fs::read_to_string(path).map_err(io_err(path))?);
    let mut seed = Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(text.trim(), &mut seed[..]).map_err(|_| WitnessError::Invalid {
        path: path.display().to_string(),
        why: "the key file must hold 64 hex digits".into(),
    })?;
    Ok(SigningKey::from_bytes(&seed))
}

fn load_state(path: &Path) -> Result<WitnessState, WitnessError> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b).map_err(|e| WitnessError::Invalid {
            path: path.display().to_string(),
            why: format!("unreadable witness state ({e}); it must not be edited by hand"),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(WitnessState::default()),
        Err(e) => Err(io_err(path)(e)),
    }
}

/// Temporary file, fsync, rename, fsync of the folder: the state is never half-written and
/// survives a crash once this returns.
fn save_state(path: &Path, state: &WitnessState) -> std::io::Result<()> {
    let bytes = serde_json::to_vec_pretty(state).map_err(std::io::Error::other)?;
    crate::fsutil::write_private_atomic(path, &bytes)
}

/// A witness: its name and key, the logs it knows (by origin: the log key's name), and its
/// state behind one lock, so checking and persisting are one atomic step.
pub struct Witness {
    name: String,
    key: SigningKey,
    logs: BTreeMap<String, VerifierKey>,
    state_path: PathBuf,
    state: tokio::sync::Mutex<WitnessState>,
}

impl Witness {
    pub fn open(
        name: &str,
        key: SigningKey,
        state_path: &Path,
        logs: Vec<VerifierKey>,
    ) -> Result<Self, WitnessError> {
        VerifierKey::new(name, SIG_COSIGNATURE_V1, key.verifying_key().to_bytes())?;
        let mut by_origin = BTreeMap::new();
        for l in logs {
            if l.sig_type != SIG_ED25519 {
                return Err(WitnessError::Note(NoteError::BadKey(
                    "a log's key must be a plain Ed25519 note key (type 0x01)",
                )));
            }
            by_origin.insert(l.name.clone(), l);
        }
        Ok(Witness {
            name: name.to_string(),
            state: tokio::sync::Mutex::new(load_state(state_path)?),
            key,
            logs: by_origin,
            state_path: state_path.to_path_buf(),
        })
    }

    /// This witness's verifier key (type 0x04), for logs and clients to configure.
    pub fn vkey(&self) -> VerifierKey {
        VerifierKey {
            name: self.name.clone(),
            sig_type: SIG_COSIGNATURE_V1,
            public: self.key.verifying_key().to_bytes(),
        }
    }

    /// `add-checkpoint`: the cosignature line, or the spec's refusal.
    pub async fn add_checkpoint(&self, body: &str, now_secs: u64) -> Result<String, Refusal> {
        let (first, rest) = body
            .split_once('\n')
            .ok_or_else(|| refuse(400, "no old size line"))?;
        let old: u64 = first
            .strip_prefix("old ")
            .filter(|n| !n.is_empty() && (n == &"0" || !n.starts_with('0')))
            .and_then(|n| n.bytes().all(|b| b.is_ascii_digit()).then_some(n))
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| refuse(400, "the first line must be 'old N'"))?;
        let mut proof: Vec<Hash> = Vec::new();
        let mut rest = rest;
        loop {
            let (line, after) = rest
                .split_once('\n')
                .ok_or_else(|| refuse(400, "no empty line before the checkpoint"))?;
            rest = after;
            if line.is_empty() {
                break;
            }
            if proof.len() == MAX_PROOF_LINES {
                return Err(refuse(400, "more than 63 proof lines"));
            }
            let h: Hash = STANDARD
                .decode(line)
                .ok()
                .and_then(|h| h.try_into().ok())
                .ok_or_else(|| refuse(400, "a proof line is not base64 of 32 bytes"))?;
            proof.push(h);
        }
        let note = Note::parse(rest).map_err(|e| refuse(400, e.to_string()))?;
        let cp = Checkpoint::parse(&note.text).map_err(|e| refuse(400, e.to_string()))?;
        let log = self
            .logs
            .get(&cp.origin)
            .ok_or_else(|| refuse(404, "unknown log origin"))?;
        note.verify_ed25519(log)
            .map_err(|e| refuse(403, e.to_string()))?;
        if old > cp.size {
            return Err(refuse(400, "the old size is larger than the checkpoint's"));
        }
        let mut state = self.state.lock().await;
        let last = state.logs.get(&cp.origin).cloned();
        let last_size = last.as_ref().map_or(0, |l| l.size);
        if old != last_size {
            return Err(Refusal {
                status: 409,
                body: format!("{last_size}\n"),
            });
        }
        let empty: Hash = Sha256::digest(b"").into();
        if cp.size == 0 && cp.root != empty {
            return Err(refuse(
                422,
                "a checkpoint of size 0 must have the empty tree's root",
            ));
        }
        match &last {
            None if !proof.is_empty() => {
                return Err(refuse(422, "a proof from size 0 must be empty"));
            }
            None => {}
            Some(l) => {
                let last_root: Hash = STANDARD
                    .decode(&l.root)
                    .ok()
                    .and_then(|r| r.try_into().ok())
                    .ok_or_else(|| refuse(500, "the witness state is damaged"))?;
                if old == 0 && !proof.is_empty() {
                    return Err(refuse(422, "a proof from size 0 must be empty"));
                }
                if old == cp.size {
                    if cp.root != last_root || !proof.is_empty() {
                        return Err(refuse(
                            422,
                            "same size, different root: inconsistent with the checkpoint cosigned before",
                        ));
                    }
                } else if old > 0
                    && verify_consistency(old, cp.size, &last_root, &cp.root, &proof).is_err()
                {
                    return Err(refuse(
                        422,
                        "the consistency proof does not verify from the checkpoint cosigned before",
                    ));
                }
            }
        }
        let mut next = state.clone();
        next.logs.insert(
            cp.origin.clone(),
            LogState {
                size: cp.size,
                root: STANDARD.encode(cp.root),
            },
        );
        let path = self.state_path.clone();
        let to_save = next.clone();
        tokio::task::spawn_blocking(move || save_state(&path, &to_save))
            .await
            .map_err(|e| refuse(500, e.to_string()))?
            .map_err(|e| refuse(500, format!("cannot persist the witness state: {e}")))?;
        *state = next;
        tracing::info!(origin = %cp.origin, size = cp.size, "cosigned");
        Ok(cosign(&note.text, now_secs, &self.name, &self.key).line())
    }
}

async fn add_checkpoint(State(w): State<Arc<Witness>>, body: String) -> Response {
    let now = u64::try_from(chrono::Utc::now().timestamp()).unwrap_or(0);
    match w.add_checkpoint(&body, now).await {
        Ok(line) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            line,
        )
            .into_response(),
        Err(r) => {
            let status =
                StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            if r.status != 409 {
                tracing::warn!(status = r.status, why = %r.body.trim_end(), "refused a checkpoint");
            }
            let ctype = if r.status == 409 {
                "text/x.tlog.size"
            } else {
                "text/plain; charset=utf-8"
            };
            (status, [(header::CONTENT_TYPE, ctype)], r.body).into_response()
        }
    }
}

/// The witness's HTTP interface: `POST /add-checkpoint` under the submission prefix `/`.
pub fn router(w: Arc<Witness>) -> Router {
    Router::new()
        .route("/add-checkpoint", axum::routing::post(add_checkpoint))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(w)
}

/// Binds `listen` and serves in a task; returns the bound address.
pub async fn spawn(
    w: Arc<Witness>,
    listen: &str,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<std::io::Result<()>>)> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let app = router(w);
    Ok((
        addr,
        tokio::spawn(async move { axum::serve(listener, app).await }),
    ))
}
