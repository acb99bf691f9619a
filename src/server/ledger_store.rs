//! The ledger in the database (DESIGN.md §6): appends inside the caller's transaction,
//! subtree hashes stored as they complete, roots and proofs answered from them, and signed
//! heads kept fresh.
//!
//! Appends are serialized by the database: the first statement of every append updates the
//! one `ledger_state` row, which takes PostgreSQL's row lock or SQLite's write lock, so
//! several server processes sharing one database never fork the tree.

use std::collections::HashMap;

use ed25519_dalek::SigningKey;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use sqlx::{AnyConnection, Row};

use super::AppState;
use super::db::now_ms;
use super::error::AppError;
use crate::ledger::{
    Entry, Hash, LedgerError, LedgerKey, Subtree, consistency_proof_with, inclusion_proof_with,
    leaf_hash, node_hash, root_with,
};

/// A head older than this is re-signed when asked for (and by the sweeper), so heads are
/// never more than twice this old on a live server: well inside DESIGN.md's 10 minutes.
pub const RESIGN_AFTER_MS: i64 = 5 * 60 * 1000;

fn ledger_err(e: LedgerError) -> AppError {
    AppError::bad_request(format!("ledger: {e}"))
}

pub(crate) fn i64_of(n: u64) -> Result<i64, AppError> {
    i64::try_from(n).map_err(|_| AppError::bad_request("ledger index out of range"))
}

/// Key of the append authenticators (issue 11), derived from the secrets file
/// ([`super::secrets::ServerSecrets::append_key`]): a database writer without that file cannot
/// make an entry the signer will sign over.
#[derive(Clone)]
pub struct AppendKey(zeroize::Zeroizing<[u8; 32]>);

/// Domain of the append authenticator's message.
pub const APPEND_AUTH_DOMAIN: &[u8] = b"clinvault/ledger-append/v1";

impl AppendKey {
    pub fn new(key: [u8; 32]) -> Self {
        AppendKey(zeroize::Zeroizing::new(key))
    }

    fn mac(&self, index: u64, leaf: &Hash) -> Hmac<Sha256> {
        let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0[..])
            .expect("HMAC takes keys of any length");
        m.update(APPEND_AUTH_DOMAIN);
        m.update(&index.to_be_bytes());
        m.update(leaf);
        m
    }

    /// HMAC-SHA256(key, "clinvault/ledger-append/v1" ‖ index (u64 BE) ‖ leaf hash): bound to
    /// the position, so an authenticated entry cannot be copied to another index.
    pub fn tag(&self, index: u64, leaf: &Hash) -> [u8; 32] {
        self.mac(index, leaf).finalize().into_bytes().into()
    }

    /// Constant-time check of a stored authenticator (absent counts as invalid).
    pub fn check(&self, index: u64, leaf: &Hash, tag: Option<&[u8]>) -> bool {
        tag.is_some_and(|t| self.mac(index, leaf).verify_slice(t).is_ok())
    }
}

/// Appends `entry` in the caller's transaction and returns its index. `subjects` are the
/// users the entry is about (their "entries about themselves"). The entry is stored with its
/// authenticator under `key`.
pub async fn append(
    conn: &mut AnyConnection,
    key: &AppendKey,
    entry: &Entry,
    subjects: &[String],
) -> Result<u64, AppError> {
    // First statement: the serialization point.
    let size: i64 =
        sqlx::query_scalar("UPDATE ledger_state SET size = size + 1 WHERE id = 1 RETURNING size")
            .fetch_one(&mut *conn)
            .await?;
    let index = u64::try_from(size - 1).map_err(|_| AppError::internal("ledger size below 1"))?;
    let bytes = entry.to_bytes();
    let leaf = leaf_hash(&bytes);
    sqlx::query(
        "INSERT INTO ledger_entries (idx, kind, entry, created_at, auth) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(size - 1)
    .bind(i64::from(entry.kind()))
    .bind(bytes.clone())
    .bind(now_ms())
    .bind(key.tag(index, &leaf).to_vec())
    .execute(&mut *conn)
    .await?;
    // Store every subtree this leaf completes: the leaf, then each parent whose right edge
    // it is. The left sibling of each was stored by an earlier append.
    let mut hash = leaf;
    for s in Subtree::completed_by(index) {
        if s.level() > 0 {
            let left: Vec<u8> =
                sqlx::query_scalar("SELECT hash FROM ledger_nodes WHERE level = $1 AND idx = $2")
                    .bind(i64::from(s.level() - 1))
                    .bind(i64_of(s.index() << 1)?)
                    .fetch_one(&mut *conn)
                    .await?;
            let left: Hash = left
                .try_into()
                .map_err(|_| AppError::internal("ledger node is not 32 bytes"))?;
            hash = node_hash(&left, &hash);
        }
        sqlx::query("INSERT INTO ledger_nodes (level, idx, hash) VALUES ($1, $2, $3)")
            .bind(i64::from(s.level()))
            .bind(i64_of(s.index())?)
            .bind(hash.to_vec())
            .execute(&mut *conn)
            .await?;
    }
    let mut seen = Vec::new();
    for user in subjects {
        if seen.contains(&user) {
            continue;
        }
        seen.push(user);
        sqlx::query("INSERT INTO ledger_subjects (user_id, idx) VALUES ($1, $2)")
            .bind(user.clone())
            .bind(size - 1)
            .execute(&mut *conn)
            .await?;
    }
    Ok(index)
}

/// The number of entries committed so far.
pub async fn size(conn: &mut AnyConnection) -> Result<u64, AppError> {
    let size: i64 = sqlx::query_scalar("SELECT size FROM ledger_state WHERE id = 1")
        .fetch_one(&mut *conn)
        .await?;
    u64::try_from(size).map_err(|_| AppError::internal("negative ledger size"))
}

/// Runs a proof or root computation over stored subtree hashes: a first pass learns which
/// subtrees it needs (their positions depend only on the sizes), then they are read and the
/// computation runs again on the real hashes.
async fn with_nodes<T>(
    conn: &mut AnyConnection,
    compute: impl Fn(&mut dyn FnMut(Subtree) -> Result<Hash, LedgerError>) -> Result<T, LedgerError>,
) -> Result<T, AppError> {
    let mut wanted = Vec::new();
    compute(&mut |s| {
        wanted.push(s);
        Ok([0u8; 32])
    })
    .map_err(ledger_err)?;
    let mut nodes = HashMap::with_capacity(wanted.len());
    for s in wanted {
        let hash: Option<Vec<u8>> =
            sqlx::query_scalar("SELECT hash FROM ledger_nodes WHERE level = $1 AND idx = $2")
                .bind(i64::from(s.level()))
                .bind(i64_of(s.index())?)
                .fetch_optional(&mut *conn)
                .await?;
        let hash: Hash = hash
            .ok_or_else(|| AppError::internal(format!("ledger node {s:?} missing")))?
            .try_into()
            .map_err(|_| AppError::internal("ledger node is not 32 bytes"))?;
        nodes.insert(s, hash);
    }
    compute(&mut |s| nodes.get(&s).copied().ok_or(LedgerError::EmptyTree))
        .map_err(|e| AppError::internal(format!("ledger proof: {e}")))
}

pub async fn root_at(conn: &mut AnyConnection, size: u64) -> Result<Hash, AppError> {
    with_nodes(conn, |node| root_with(size, node)).await
}

/// The compact range of the first `size` leaves: the roots of the perfect subtrees that
/// cover `0..size`, largest first (at most 64). With the leaves from `size` on they give
/// every later root, so a client can replay the ledger from `size` (issue 17).
pub async fn frontier(conn: &mut AnyConnection, size: u64) -> Result<Vec<Hash>, AppError> {
    let mut out = Vec::new();
    let mut offset = 0u64;
    for level in (0..64u32).rev() {
        if size & (1u64 << level) == 0 {
            continue;
        }
        let s = Subtree::new(level, offset >> level)
            .ok_or_else(|| AppError::internal("frontier subtree out of range"))?;
        let hash: Option<Vec<u8>> =
            sqlx::query_scalar("SELECT hash FROM ledger_nodes WHERE level = $1 AND idx = $2")
                .bind(i64::from(s.level()))
                .bind(i64_of(s.index())?)
                .fetch_optional(&mut *conn)
                .await?;
        out.push(
            hash.ok_or_else(|| AppError::internal(format!("ledger node {s:?} missing")))?
                .try_into()
                .map_err(|_| AppError::internal("ledger node is not 32 bytes"))?,
        );
        offset += 1u64 << level;
    }
    Ok(out)
}

pub async fn inclusion(
    conn: &mut AnyConnection,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, AppError> {
    with_nodes(conn, |node| inclusion_proof_with(index, size, node)).await
}

pub async fn consistency(
    conn: &mut AnyConnection,
    from: u64,
    to: u64,
) -> Result<Vec<Hash>, AppError> {
    with_nodes(conn, |node| consistency_proof_with(from, to, node)).await
}

pub fn signing_key(st: &AppState) -> SigningKey {
    SigningKey::from_bytes(st.secrets.ledger_seed())
}

pub fn public_key(st: &AppState) -> LedgerKey {
    LedgerKey::from_signing_key(&signing_key(st))
}

/// The newest signed head, signed anew when the tree grew or the last one is getting old.
/// Signing goes through [`super::ledger_signer`], which refuses a tree it cannot vouch for.
pub async fn latest_head(st: &AppState) -> Result<super::ledger_signer::HeadOut, AppError> {
    super::ledger_signer::latest_head(st).await
}

/// One stored entry.
pub struct StoredEntry {
    pub index: u64,
    pub bytes: Vec<u8>,
    pub auth: Option<Vec<u8>>,
}

pub async fn entry(conn: &mut AnyConnection, index: u64) -> Result<Option<Vec<u8>>, AppError> {
    Ok(
        sqlx::query_scalar("SELECT entry FROM ledger_entries WHERE idx = $1")
            .bind(i64_of(index)?)
            .fetch_optional(&mut *conn)
            .await?,
    )
}

/// The first `limit` entries with `start <= idx < end`; only those about `subject` when given.
pub async fn entries(
    conn: &mut AnyConnection,
    start: u64,
    end: u64,
    subject: Option<&str>,
    limit: u64,
) -> Result<Vec<StoredEntry>, AppError> {
    let rows = match subject {
        None => {
            sqlx::query(
                "SELECT idx, entry, auth FROM ledger_entries WHERE idx >= $1 AND idx < $2 ORDER BY idx \
                 LIMIT $3",
            )
            .bind(i64_of(start)?)
            .bind(i64_of(end)?)
            .bind(i64_of(limit)?)
            .fetch_all(&mut *conn)
            .await?
        }
        Some(user) => sqlx::query(
            "SELECT e.idx, e.entry, e.auth FROM ledger_entries e JOIN ledger_subjects s ON s.idx = e.idx \
                 WHERE s.user_id = $1 AND e.idx >= $2 AND e.idx < $3 ORDER BY e.idx LIMIT $4",
        )
        .bind(user.to_string())
        .bind(i64_of(start)?)
        .bind(i64_of(end)?)
        .bind(i64_of(limit)?)
        .fetch_all(&mut *conn)
        .await?,
    };
    rows.into_iter()
        .map(|r| {
            let idx: i64 = r.try_get("idx")?;
            Ok(StoredEntry {
                index: u64::try_from(idx).map_err(|_| AppError::internal("negative index"))?,
                bytes: r.try_get("entry")?,
                auth: r.try_get("auth")?,
            })
        })
        .collect()
}

/// The ledger's role code for a role (DESIGN.md §6: 1 patient … 5 auditor).
pub fn ledger_role(role: crate::api::Role) -> crate::ledger::Role {
    use crate::api::Role as A;
    use crate::ledger::Role as L;
    match role {
        A::Patient => L::Patient,
        A::Doctor => L::Doctor,
        A::Reception => L::Reception,
        A::Admin => L::Admin,
        A::Auditor => L::Auditor,
        A::Station => L::Station,
    }
}
