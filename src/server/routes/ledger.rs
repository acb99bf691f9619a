//! The ledger's read side (DESIGN.md §6, §8): signed heads, proofs, entries, and users' keys
//! with the index of the entry that registered them.

use axum::Json;
use axum::extract::State;
use axum::http::Method;
use serde::Deserialize;
use sqlx::Row;

use super::parse_uuid;
use crate::api::{LedgerEntries, LedgerEntryOut, LedgerHead, LedgerProof, Role, UserKeys};
use crate::seal::PublicKeys;
use crate::server::AppState;
use crate::server::error::AppError;
use crate::server::extract::{ApiQuery, Caller, PathId};
use crate::server::ledger_store;
use crate::server::policy::{ANY_USER, Policy, Route, route};
use crate::server::store::ledger;

/// Most entries in one answer.
const MAX_ENTRIES: u64 = 1000;

pub fn routes() -> Vec<Route> {
    vec![
        route(
            Method::GET,
            "/v1/ledger/head",
            Policy::Roles(ANY_USER),
            head,
        ),
        route(
            Method::GET,
            "/v1/ledger/consistency",
            Policy::Roles(ANY_USER),
            consistency,
        ),
        route(
            Method::GET,
            "/v1/ledger/inclusion",
            Policy::Roles(ANY_USER),
            inclusion,
        ),
        route(
            Method::GET,
            "/v1/ledger/frontier",
            Policy::Roles(ANY_USER),
            frontier,
        ),
        route(
            Method::GET,
            "/v1/ledger/entries",
            Policy::Roles(ANY_USER),
            entries,
        ),
        route(
            Method::GET,
            "/v1/users/{id}/keys",
            Policy::Roles(ANY_USER),
            user_keys,
        ),
    ]
}

async fn head(State(st): State<AppState>) -> Result<Json<LedgerHead>, AppError> {
    let out = ledger_store::latest_head(&st).await?;
    Ok(Json(LedgerHead {
        signed_head: out.head.to_bytes().to_vec(),
        ledger_key: ledger_store::public_key(&st).to_string(),
        checkpoint: out.checkpoint,
    }))
}

#[derive(Deserialize)]
struct ConsistencyQuery {
    from: u64,
    to: u64,
}

async fn consistency(
    State(st): State<AppState>,
    ApiQuery(q): ApiQuery<ConsistencyQuery>,
) -> Result<Json<LedgerProof>, AppError> {
    let mut conn = st.db.acquire().await?;
    let size = ledger_store::size(&mut conn).await?;
    if q.from == 0 || q.from > q.to || q.to > size {
        return Err(AppError::bad_request(format!(
            "from and to must satisfy 1 <= from <= to <= {size} (the tree size)"
        )));
    }
    let hashes = ledger_store::consistency(&mut conn, q.from, q.to).await?;
    Ok(Json(LedgerProof {
        hashes: hashes.into_iter().map(|h| h.to_vec()).collect(),
    }))
}

#[derive(Deserialize)]
struct InclusionQuery {
    index: u64,
    size: u64,
}

async fn inclusion(
    State(st): State<AppState>,
    ApiQuery(q): ApiQuery<InclusionQuery>,
) -> Result<Json<LedgerProof>, AppError> {
    let mut conn = st.db.acquire().await?;
    let size = ledger_store::size(&mut conn).await?;
    if q.index >= q.size || q.size > size {
        return Err(AppError::bad_request(format!(
            "index and size must satisfy index < size <= {size} (the tree size)"
        )));
    }
    let hashes = ledger_store::inclusion(&mut conn, q.index, q.size).await?;
    Ok(Json(LedgerProof {
        hashes: hashes.into_iter().map(|h| h.to_vec()).collect(),
    }))
}

#[derive(Deserialize)]
struct FrontierQuery {
    size: u64,
}

/// The compact range of the first `size` leaves, for a client replaying from `size`.
async fn frontier(
    State(st): State<AppState>,
    ApiQuery(q): ApiQuery<FrontierQuery>,
) -> Result<Json<LedgerProof>, AppError> {
    let mut conn = st.db.acquire().await?;
    let size = ledger_store::size(&mut conn).await?;
    if q.size > size {
        return Err(AppError::bad_request(format!(
            "size must be at most {size} (the tree size)"
        )));
    }
    let hashes = ledger_store::frontier(&mut conn, q.size).await?;
    Ok(Json(LedgerProof {
        hashes: hashes.into_iter().map(|h| h.to_vec()).collect(),
    }))
}

#[derive(Deserialize)]
struct EntriesQuery {
    start: Option<u64>,
    end: Option<u64>,
    /// Every entry of the window, for any user replaying the ledger (issue 17).
    #[serde(default)]
    all: bool,
}

/// Auditors and admins (the audit trail) read every entry, a window of at most
/// `MAX_ENTRIES` indexes; others the entries about themselves and their reports, at most
/// `MAX_ENTRIES` of them from the whole range. `next` says where the answer stops either way.
async fn entries(
    State(st): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<EntriesQuery>,
) -> Result<Json<LedgerEntries>, AppError> {
    let start = q.start.unwrap_or(0);
    let mut conn = st.db.acquire().await?;
    let size = ledger_store::size(&mut conn).await?;
    if q.end.is_some_and(|e| e < start) {
        return Err(AppError::bad_request("end must not be below start"));
    }
    let end = q.end.unwrap_or(size).min(size).max(start);
    let auditor = matches!(caller.role, Role::Auditor | Role::Admin);
    let everything = auditor || q.all;
    let subject = caller.id_str();
    let (rows, next) = if everything {
        let end = end.min(start.saturating_add(MAX_ENTRIES));
        let rows = ledger_store::entries(&mut conn, start, end, None, MAX_ENTRIES).await?;
        (rows, end)
    } else {
        let rows =
            ledger_store::entries(&mut conn, start, end, Some(subject.as_str()), MAX_ENTRIES)
                .await?;
        // A full page may stop short of `end`; a shorter one covered all of it.
        let next = match rows.last() {
            Some(last) if rows.len() as u64 == MAX_ENTRIES => last.index + 1,
            _ => end,
        };
        (rows, next)
    };
    Ok(Json(LedgerEntries {
        next,
        entries: rows
            .into_iter()
            .map(|e| LedgerEntryOut {
                authenticated: auditor.then(|| {
                    st.append_key.check(
                        e.index,
                        &crate::ledger::leaf_hash(&e.bytes),
                        e.auth.as_deref(),
                    )
                }),
                index: e.index,
                entry: e.bytes,
            })
            .collect(),
    }))
}

/// Any signed-in user may read any user's public keys: they are in the ledger anyway, and a
/// client must check them before wrapping a key or trusting a signature.
async fn user_keys(
    State(st): State<AppState>,
    PathId(id): PathId,
) -> Result<Json<UserKeys>, AppError> {
    let row = ledger::user_keys_row(&st.db, id)
        .await?
        .ok_or_else(|| AppError::not_found("user"))?;
    let key32 = |col: &str| -> Result<[u8; 32], AppError> {
        let v: Vec<u8> = row.try_get(col)?;
        v.try_into()
            .map_err(|_| AppError::internal("stored public key is not 32 bytes"))
    };
    let key_index: Option<i64> = row.try_get("key_index")?;
    let key_index = key_index
        .and_then(|i| u64::try_from(i).ok())
        .ok_or_else(|| AppError::damaged("this account's keys", "user has no ledger key entry"))?;
    let role: String = row.try_get("role")?;
    // Every key entry naming this user, for clients to see a second one (issue 11), and
    // every key rotation (kind 10, issue 15), for clients to follow the chain.
    let key_entries = ledger::key_entries(&st.db, id).await?;
    Ok(Json(UserKeys {
        key_entries,
        user_id: parse_uuid(&row.try_get::<String, _>("id")?)?,
        name: row.try_get("name")?,
        role: Role::parse(&role).ok_or_else(|| AppError::internal("bad role in database"))?,
        public_keys: PublicKeys {
            x25519: key32("x25519_pub")?,
            ed25519: key32("ed25519_pub")?,
        },
        key_index,
        key_entry: row
            .try_get::<Option<Vec<u8>>, _>("key_entry")?
            .ok_or_else(|| {
                AppError::damaged("this account's keys", "user's ledger key entry missing")
            })?,
    }))
}
