//! The ledger signer (issue 11): signs a head only over entries it can vouch for, and only
//! as a consistent extension of the newest head any process of this deployment signed.
//!
//! Before signing it checks every entry since that head: its append authenticator (an HMAC
//! only a holder of the secrets file can make), that its stored leaf hash is its own, and
//! that the stored parents over new leaves are the hashes of their children. Then a
//! consistency proof from the remembered head to the new tree, verified here.
//!
//! The memory of the newest signed head is kept where a database administrator cannot roll it
//! back: a file beside the secrets file (written under an exclusive file lock, so several
//! `serve` processes on one host never lose a head) and an object in every bucket (read at
//! start, for processes that do not share a disk). On any mismatch the signer refuses, the
//! server is not ready, and an alarm names the index or both sizes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::http::StatusCode;
use sqlx::{AnyConnection, Row};

use super::AppState;
use super::db::now_ms;
use super::error::AppError;
use super::ledger_store::{self, AppendKey, RESIGN_AFTER_MS, i64_of};
use crate::ledger::{Hash, SignedHead, leaf_hash, node_hash, verify_consistency};
use crate::witness::note::{Checkpoint, Note, NoteSignature, VerifierKey, verify_cosignature};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// Entries checked per database round trip.
const PAGE: u64 = 4096;
/// How long one bucket may take to read or write the memory object.
const BUCKET_LIMIT: Duration = Duration::from_secs(3);
/// How long one witness may take to cosign.
const WITNESS_LIMIT: Duration = Duration::from_secs(5);

/// A signed head with its C2SP checkpoint (and the witnesses' cosignatures).
#[derive(Debug, Clone)]
pub struct HeadOut {
    pub head: SignedHead,
    pub checkpoint: String,
}

/// The signer's state, one per process.
pub struct Signer {
    memory_path: PathBuf,
    lock_path: PathBuf,
    /// Serializes signing inside this process (the file lock serializes processes).
    sign_lock: tokio::sync::Mutex<()>,
    /// The largest head read from the buckets at start.
    bucket_memory: Mutex<Option<SignedHead>>,
    /// Size of the newest head this process knows was signed, for serving stored heads.
    newest_size: AtomicU64,
    alarm: Mutex<Option<String>>,
    /// The last size each witness (by URL) cosigned, as far as this process knows.
    witness_sizes: Mutex<HashMap<String, u64>>,
    http: reqwest::Client,
    /// Test-only: sign whatever the database holds (the server of issue 11's attacks).
    #[cfg(feature = "test-hooks")]
    pub sign_anything: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("memory_path", &self.memory_path)
            .finish_non_exhaustive()
    }
}

/// The memory file's path for a secrets file: `<secrets>.ledger-head`.
pub fn memory_path(secrets_path: &Path) -> PathBuf {
    let mut name = secrets_path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_else(|| "secrets.toml".into());
    name.push(".ledger-head");
    secrets_path.with_file_name(name)
}

/// The memory object's key in every bucket: per ledger key, so deployments sharing a bucket
/// keep apart.
pub fn memory_object(ledger_public: &[u8; 32]) -> String {
    format!("ledger/signed-head/{}", hex::encode(ledger_public))
}

impl Signer {
    pub fn new(secrets_path: &Path) -> Signer {
        let memory_path = memory_path(secrets_path);
        let mut lock = memory_path.clone().into_os_string();
        lock.push(".lock");
        Signer {
            memory_path,
            lock_path: PathBuf::from(lock),
            sign_lock: tokio::sync::Mutex::new(()),
            bucket_memory: Mutex::new(None),
            newest_size: AtomicU64::new(0),
            alarm: Mutex::new(None),
            witness_sizes: Mutex::new(HashMap::new()),
            http: reqwest::Client::builder()
                .timeout(WITNESS_LIMIT)
                .build()
                .unwrap_or_default(),
            #[cfg(feature = "test-hooks")]
            sign_anything: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Why the signer refuses, while it does.
    pub fn alarm(&self) -> Option<String> {
        self.alarm.lock().ok().and_then(|a| a.clone())
    }

    fn clear_alarm(&self) {
        if let Ok(mut a) = self.alarm.lock()
            && let Some(old) = a.take()
        {
            tracing::warn!(was = %old, "ledger alarm cleared: the signer signs again");
        }
    }

    /// Logs the alarm (once per distinct message), keeps it for `/v1/ready`, and gives the
    /// error every head request answers with meanwhile.
    fn raise(&self, why: String) -> AppError {
        if let Ok(mut a) = self.alarm.lock() {
            if a.as_deref() != Some(why.as_str()) {
                tracing::error!(alarm = %why, "LEDGER ALARM: refusing to sign a head");
            }
            *a = Some(why.clone());
        }
        let mut e = AppError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            crate::api::codes::UNAVAILABLE,
            format!("the ledger signer refuses: {why}"),
        );
        e.retry_after = Some(60);
        e
    }

    pub fn memory_file(&self) -> &Path {
        &self.memory_path
    }
}

fn sig_err(e: impl std::fmt::Display) -> AppError {
    AppError::internal(format!("ledger signer: {e}"))
}

/// Reads the memory file: `None` when absent. A file that does not verify is an alarm.
fn read_memory_file(path: &Path, public: &[u8; 32]) -> Result<Option<SignedHead>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(format!(
                "the signer's memory {} is unreadable: {e}",
                path.display()
            ));
        }
    };
    hex::decode(text.trim())
        .ok()
        .and_then(|b| SignedHead::from_bytes(&b).ok())
        .filter(|h| h.verify(public).is_ok())
        .map(Some)
        .ok_or_else(|| {
            format!(
                "the signer's memory {} is not a head signed by the ledger key",
                path.display()
            )
        })
}

fn write_memory_file(path: &Path, head: &SignedHead) -> std::io::Result<()> {
    crate::fsutil::write_private_atomic(
        path,
        format!("{}\n", hex::encode(head.to_bytes())).as_bytes(),
    )
}

/// Takes the exclusive lock beside the memory file (blocking, so on a blocking thread).
async fn lock_file(path: &Path) -> Result<std::fs::File, AppError> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        f.lock()?;
        Ok::<_, std::io::Error>(f)
    })
    .await
    .map_err(sig_err)?
    .map_err(sig_err)
}

fn larger(a: Option<SignedHead>, b: Option<SignedHead>) -> Option<SignedHead> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if b.tree_size > a.tree_size { b } else { a }),
        (a, b) => a.or(b),
    }
}

async fn newest_db_head(
    conn: &mut AnyConnection,
) -> Result<Option<(SignedHead, Option<String>)>, AppError> {
    let row = sqlx::query(
        "SELECT signed, checkpoint FROM ledger_heads ORDER BY tree_size DESC, time_ms DESC LIMIT 1",
    )
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let signed: Vec<u8> = row.try_get(0)?;
    let checkpoint: Option<String> = row.try_get(1)?;
    Ok(Some((
        SignedHead::from_bytes(&signed).map_err(AppError::internal)?,
        checkpoint,
    )))
}

/// The checkpoints' origin line: configured, else derived from the ledger key.
pub fn origin(st: &AppState) -> String {
    if st.config.ledger_origin.is_empty() {
        format!(
            "clinvault/{}",
            hex::encode(&ledger_store::public_key(st).0[..8])
        )
    } else {
        st.config.ledger_origin.clone()
    }
}

/// The head as a checkpoint signed by the ledger key, without cosignatures.
fn plain_checkpoint(st: &AppState, head: &SignedHead) -> Note {
    Checkpoint {
        origin: origin(st),
        size: head.tree_size,
        root: head.root,
    }
    .sign(&ledger_store::signing_key(st))
}

/// The newest signed head, signed anew when the tree grew or the last one is getting old.
pub async fn latest_head(st: &AppState) -> Result<HeadOut, AppError> {
    #[cfg(feature = "test-hooks")]
    if st.signer.sign_anything.load(Ordering::SeqCst) {
        return sign_unchecked(st).await;
    }
    if st.signer.alarm().is_none() {
        let mut conn = st.db.acquire().await?;
        let size = ledger_store::size(&mut conn).await?;
        if let Some((head, checkpoint)) = newest_db_head(&mut conn).await?
            && head.tree_size == size
            && size >= st.signer.newest_size.load(Ordering::SeqCst)
            && now_ms() - head.time_ms < RESIGN_AFTER_MS
        {
            let checkpoint = checkpoint.unwrap_or_else(|| plain_checkpoint(st, &head).to_text());
            return Ok(HeadOut { head, checkpoint });
        }
    }
    sign_checked(st).await
}

/// Why an entry cannot be signed over.
struct Unsignable {
    index: u64,
    why: &'static str,
}

/// Checks entries `from..to`: contiguous, each with a valid authenticator and its own leaf
/// hash stored, and every stored parent over them the hash of its children.
async fn check_entries(
    conn: &mut AnyConnection,
    key: &AppendKey,
    from: u64,
    to: u64,
) -> Result<Result<(), Unsignable>, AppError> {
    let mut start = from;
    while start < to {
        let end = start.saturating_add(PAGE).min(to);
        let rows = sqlx::query(
            "SELECT e.idx, e.entry, e.auth, n.hash FROM ledger_entries e \
             LEFT JOIN ledger_nodes n ON n.level = 0 AND n.idx = e.idx \
             WHERE e.idx >= $1 AND e.idx < $2 ORDER BY e.idx",
        )
        .bind(i64_of(start)?)
        .bind(i64_of(end)?)
        .fetch_all(&mut *conn)
        .await?;
        let mut expect = start;
        for r in rows {
            let idx: i64 = r.try_get(0)?;
            if u64::try_from(idx).ok() != Some(expect) {
                return Ok(Err(Unsignable {
                    index: expect,
                    why: "is missing from the database",
                }));
            }
            let entry: Vec<u8> = r.try_get(1)?;
            let auth: Option<Vec<u8>> = r.try_get(2)?;
            let node: Option<Vec<u8>> = r.try_get(3)?;
            let leaf = leaf_hash(&entry);
            if !key.check(expect, &leaf, auth.as_deref()) {
                return Ok(Err(Unsignable {
                    index: expect,
                    why: "has no valid append authenticator: this server did not append it",
                }));
            }
            if node.as_deref() != Some(&leaf[..]) {
                return Ok(Err(Unsignable {
                    index: expect,
                    why: "has a stored leaf hash that is not its own",
                }));
            }
            expect += 1;
        }
        if expect != end {
            return Ok(Err(Unsignable {
                index: expect,
                why: "is missing from the database",
            }));
        }
        start = end;
    }
    // Complete parents at level L with a leaf in from..to: indices from>>L .. (to>>L).
    let mut level = 1u32;
    while level < 64 && (to >> level) > 0 {
        let (lo, hi) = (from >> level, to >> level);
        if lo < hi {
            let mut nodes: HashMap<(u32, u64), Hash> = HashMap::new();
            // Two range reads on the primary key (an OR of both would scan the table).
            for (l, from_idx, to_idx) in [(level, lo, hi), (level - 1, lo << 1, hi << 1)] {
                let rows = sqlx::query(
                    "SELECT idx, hash FROM ledger_nodes WHERE level = $1 AND idx >= $2 AND idx < $3",
                )
                .bind(i64::from(l))
                .bind(i64_of(from_idx)?)
                .bind(i64_of(to_idx)?)
                .fetch_all(&mut *conn)
                .await?;
                for r in rows {
                    let i: i64 = r.try_get(0)?;
                    let h: Vec<u8> = r.try_get(1)?;
                    if let (Ok(i), Ok(h)) = (u64::try_from(i), h.try_into()) {
                        nodes.insert((l, i), h);
                    }
                }
            }
            for j in lo..hi {
                let ok = match (
                    nodes.get(&(level, j)),
                    nodes.get(&(level - 1, j << 1)),
                    nodes.get(&(level - 1, (j << 1) | 1)),
                ) {
                    (Some(p), Some(l), Some(r)) => *p == node_hash(l, r),
                    _ => false,
                };
                if !ok {
                    return Ok(Err(Unsignable {
                        index: (j << level).max(from),
                        why: "is under stored tree hashes that do not match the entries",
                    }));
                }
            }
        }
        level += 1;
    }
    Ok(Ok(()))
}

/// The checked path: memory, entries, consistency, then sign and remember.
async fn sign_checked(st: &AppState) -> Result<HeadOut, AppError> {
    let signer = &st.signer;
    let _in_process = signer.sign_lock.lock().await;
    let _file = lock_file(&signer.lock_path).await?;
    let key = ledger_store::signing_key(st);
    let public = key.verifying_key().to_bytes();
    let from_file =
        read_memory_file(&signer.memory_path, &public).map_err(|why| signer.raise(why))?;
    let bucket = signer.bucket_memory.lock().ok().and_then(|m| m.clone());
    let remembered = larger(from_file, bucket);
    let mut conn = st.db.acquire().await?;
    let size = ledger_store::size(&mut conn).await?;
    let mut from = 0;
    if let Some(m) = &remembered {
        if size < m.tree_size {
            return Err(signer.raise(format!(
                "ledger rollback: the database holds {size} entries, but this deployment already \
                 signed a head over {} entries (rows deleted, or the database replaced by an \
                 older copy)",
                m.tree_size
            )));
        }
        from = m.tree_size;
    }
    if let Err(u) = check_entries(&mut conn, &st.append_key, from, size).await? {
        return Err(signer.raise(format!(
            "ledger entry {} {} (was the database edited?); no head is signed over it",
            u.index, u.why
        )));
    }
    let root = ledger_store::root_at(&mut conn, size).await?;
    if let Some(m) = remembered.as_ref().filter(|m| m.tree_size > 0) {
        let proof = if m.tree_size == size {
            Vec::new()
        } else {
            ledger_store::consistency(&mut conn, m.tree_size, size).await?
        };
        if let Err(e) = verify_consistency(m.tree_size, size, &m.root, &root, &proof) {
            return Err(signer.raise(format!(
                "ledger fork: the database's tree of {size} entries is not a consistent extension \
                 of the head over {} entries this deployment signed ({e})",
                m.tree_size
            )));
        }
    }
    // Heads move forward in time (clients refuse a same-size head dated before one they saw,
    // issue 17): never before the newest head signed here or stored by any process, whatever
    // this host's clock says.
    let stored: Option<i64> = sqlx::query_scalar("SELECT MAX(time_ms) FROM ledger_heads")
        .fetch_one(&mut *conn)
        .await?;
    // The database's word is taken at most a minute ahead: an edited time must not date
    // every later head in the future (clients refuse those).
    let stored = stored.map(|t| t.min(now_ms().saturating_add(60_000)));
    let newest = remembered
        .as_ref()
        .map(|m| m.time_ms)
        .into_iter()
        .chain(stored)
        .max();
    let time = newest.map_or(now_ms(), |t| now_ms().max(t.saturating_add(1)));
    let head = SignedHead::sign(size, root, time, &key);
    // Remembered before anyone can see it.
    write_memory_file(&signer.memory_path, &head).map_err(|e| {
        sig_err(format!(
            "cannot write its memory {}: {e}",
            signer.memory_path.display()
        ))
    })?;
    let copy = st.clone();
    let bytes = bytes::Bytes::from(hex::encode(head.to_bytes()).into_bytes());
    let object = memory_object(&public);
    tokio::spawn(async move {
        let took = copy
            .chunks
            .put_everywhere(&object, bytes, BUCKET_LIMIT)
            .await;
        if took.is_empty() {
            tracing::warn!("no bucket took the ledger signer's memory");
        }
    });
    let checkpoint = cosigned_checkpoint(st, &mut conn, &head).await;
    store_head(&mut conn, &head, &checkpoint).await?;
    signer.newest_size.fetch_max(size, Ordering::SeqCst);
    signer.clear_alarm();
    Ok(HeadOut { head, checkpoint })
}

/// The head's checkpoint, submitted to every configured witness; the valid cosignatures are
/// appended. A witness that is down or refuses is logged, and the head goes without its
/// cosignature (a client's quorum decides what that means).
async fn cosigned_checkpoint(st: &AppState, conn: &mut AnyConnection, head: &SignedHead) -> String {
    let mut note = plain_checkpoint(st, head);
    for w in &st.config.witnesses {
        let vkey = match VerifierKey::parse(&w.vkey) {
            Ok(k) => k,
            Err(e) => {
                tracing::warn!(witness = %w.url, error = %e, "witness vkey is not valid; skipped");
                continue;
            }
        };
        match submit(st, conn, &w.url, &note, head.tree_size).await {
            Ok(sig) if verify_cosignature(&note.text, &sig, &vkey).is_ok() => {
                note.signatures.push(sig)
            }
            Ok(_) => tracing::warn!(witness = %w.url, "the witness's cosignature does not verify"),
            Err(why) => {
                tracing::warn!(witness = %w.url, %why, size = head.tree_size, "witness did not cosign")
            }
        }
    }
    note.to_text()
}

/// One `add-checkpoint` round trip (c2sp.org/tlog-witness), retried once with the size a
/// 409 names.
async fn submit(
    st: &AppState,
    conn: &mut AnyConnection,
    url: &str,
    note: &Note,
    size: u64,
) -> Result<NoteSignature, String> {
    let endpoint = format!("{}/add-checkpoint", url.trim_end_matches('/'));
    let mut old = st
        .signer
        .witness_sizes
        .lock()
        .ok()
        .and_then(|m| m.get(url).copied())
        .unwrap_or(0);
    for _ in 0..2 {
        if old > size {
            return Err(format!("the witness holds a larger tree ({old})"));
        }
        let proof = if old > 0 && old < size {
            ledger_store::consistency(conn, old, size)
                .await
                .map_err(|e| e.message)?
        } else {
            Vec::new()
        };
        let mut body = format!("old {old}\n");
        for h in proof {
            body.push_str(&STANDARD.encode(h));
            body.push('\n');
        }
        body.push('\n');
        body.push_str(&note.to_text());
        let resp = st
            .signer
            .http
            .post(&endpoint)
            .body(body)
            .send()
            .await
            .map_err(|e| e.without_url().to_string())?;
        let status = resp.status().as_u16();
        let text = resp.text().await.map_err(|e| e.to_string())?;
        match status {
            200 => {
                let line = text.lines().next().ok_or("empty answer")?;
                let sig = NoteSignature::parse_line(line).map_err(|e| e.to_string())?;
                if let Ok(mut m) = st.signer.witness_sizes.lock() {
                    m.insert(url.to_string(), size);
                }
                return Ok(sig);
            }
            409 => {
                old = text
                    .trim_end()
                    .parse()
                    .map_err(|_| format!("409 with a body that is not a size: {text:?}"))?;
            }
            other => return Err(format!("{other}: {}", text.trim_end())),
        }
    }
    Err("the witness's size kept changing".into())
}

async fn store_head(
    conn: &mut AnyConnection,
    head: &SignedHead,
    checkpoint: &str,
) -> Result<(), AppError> {
    let res = sqlx::query(
        "INSERT INTO ledger_heads (tree_size, time_ms, signed, checkpoint) VALUES ($1, $2, $3, $4)",
    )
    .bind(i64_of(head.tree_size)?)
    .bind(head.time_ms)
    .bind(head.to_bytes().to_vec())
    .bind(checkpoint.to_string())
    .execute(&mut *conn)
    .await;
    match res {
        Ok(_) => Ok(()),
        // Another process signed the same size in the same millisecond: either head is good.
        Err(e) if super::error::is_unique_violation(&e) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Test-only: signs whatever the database holds, with no memory (issue 11's attacked server).
#[cfg(feature = "test-hooks")]
async fn sign_unchecked(st: &AppState) -> Result<HeadOut, AppError> {
    let mut conn = st.db.acquire().await?;
    let size = ledger_store::size(&mut conn).await?;
    let root = ledger_store::root_at(&mut conn, size).await?;
    let head = SignedHead::sign(size, root, now_ms(), &ledger_store::signing_key(st));
    let checkpoint = cosigned_checkpoint(st, &mut conn, &head).await;
    store_head(&mut conn, &head, &checkpoint).await?;
    Ok(HeadOut { head, checkpoint })
}

/// At start: reads the buckets' memory, authenticates entries from before issue 11 that a
/// signed head covers, starts the memory of an upgraded deployment from its newest signed
/// head, and tries to sign (an alarm, not a failed start, when it cannot).
pub async fn init(st: &AppState) -> Result<(), AppError> {
    let o = origin(st);
    // A key name (c2sp.org/signed-note), and never the head message's prefix: the ledger key
    // signs both.
    if o.is_empty()
        || o.chars().any(|c| c.is_whitespace() || c == '+')
        || o.starts_with("clinvault/head/")
    {
        return Err(AppError::bad_request(format!(
            "ledger_origin {o:?}: no spaces or '+', and not starting with \"clinvault/head/\""
        )));
    }
    let public = ledger_store::public_key(st).0;
    let mut best: Option<SignedHead> = None;
    for (bucket, bytes) in st
        .chunks
        .get_everywhere(&memory_object(&public), BUCKET_LIMIT)
        .await
    {
        let head = std::str::from_utf8(&bytes)
            .ok()
            .and_then(|t| hex::decode(t.trim()).ok())
            .and_then(|b| SignedHead::from_bytes(&b).ok())
            .filter(|h| h.verify(&public).is_ok());
        match head {
            Some(h) => best = larger(best, Some(h)),
            None => {
                tracing::warn!(%bucket, "the ledger memory in this bucket does not verify; ignored")
            }
        }
    }
    if let Ok(mut m) = st.signer.bucket_memory.lock() {
        *m = best.clone();
    }
    let newest_valid = adopt_legacy(st, &public).await?;
    let file = read_memory_file(&st.signer.memory_path, &public)
        .ok()
        .flatten();
    if file.is_none()
        && best.is_none()
        && let Some(h) = newest_valid
    {
        tracing::info!(
            size = h.tree_size,
            "the ledger signer starts its memory from the newest head in the database"
        );
        let _lock = lock_file(&st.signer.lock_path).await?;
        if read_memory_file(&st.signer.memory_path, &public)
            .ok()
            .flatten()
            .is_none()
        {
            write_memory_file(&st.signer.memory_path, &h).map_err(sig_err)?;
        }
    }
    if let Err(e) = latest_head(st).await {
        tracing::error!(error = %e.message, "the server starts NOT READY: the ledger signer refuses");
    }
    Ok(())
}

/// Entries from before issue 11 have no authenticator. Those covered by the newest head in
/// the database that the ledger key signed, whose root the stored tree still gives, get one
/// now; later ones stay without, and the signer refuses them. Returns that head.
async fn adopt_legacy(st: &AppState, public: &[u8; 32]) -> Result<Option<SignedHead>, AppError> {
    let mut conn = st.db.acquire().await?;
    let size = ledger_store::size(&mut conn).await?;
    let rows: Vec<Vec<u8>> =
        sqlx::query_scalar("SELECT signed FROM ledger_heads ORDER BY tree_size DESC LIMIT 50")
            .fetch_all(&mut *conn)
            .await?;
    let mut newest = None;
    for bytes in rows {
        let Ok(h) = SignedHead::from_bytes(&bytes) else {
            continue;
        };
        if h.verify(public).is_err() || h.tree_size > size {
            continue;
        }
        if h.tree_size == 0 || ledger_store::root_at(&mut conn, h.tree_size).await? == h.root {
            newest = Some(h);
            break;
        }
    }
    let missing: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM ledger_entries WHERE auth IS NULL")
        .fetch_one(&mut *conn)
        .await?;
    if missing == 0 {
        return Ok(newest);
    }
    let cover = newest.as_ref().map_or(0, |h| h.tree_size);
    let rows = sqlx::query(
        "SELECT e.idx, e.entry, n.hash FROM ledger_entries e \
         LEFT JOIN ledger_nodes n ON n.level = 0 AND n.idx = e.idx \
         WHERE e.auth IS NULL AND e.idx < $1 ORDER BY e.idx",
    )
    .bind(i64_of(cover)?)
    .fetch_all(&mut *conn)
    .await?;
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    let mut adopted = 0u64;
    for r in rows {
        let idx: i64 = r.try_get(0)?;
        let entry: Vec<u8> = r.try_get(1)?;
        let node: Option<Vec<u8>> = r.try_get(2)?;
        let leaf = leaf_hash(&entry);
        let Ok(index) = u64::try_from(idx) else {
            continue;
        };
        // A leaf that is not the entry's own is left for the signer to refuse.
        if node.as_deref() != Some(&leaf[..]) {
            continue;
        }
        sqlx::query("UPDATE ledger_entries SET auth = $1 WHERE idx = $2")
            .bind(st.append_key.tag(index, &leaf).to_vec())
            .bind(idx)
            .execute(&mut *tx)
            .await?;
        adopted += 1;
    }
    tx.commit().await?;
    tracing::info!(
        adopted,
        covered_by = cover,
        left_without = (missing as u64).saturating_sub(adopted),
        "ledger entries from before append authenticators"
    );
    Ok(newest)
}
