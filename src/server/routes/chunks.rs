//! Chunks (DESIGN.md §2, §7, §8): upload into an open report, and reads for a report's readers
//! (verified bytes) or an auditor (one replica's raw bytes).

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use uuid::Uuid;

use super::parse_uuid;
use super::reports::{KEY_READERS, UPLOADERS, unreadable};
use crate::api::{Role, codes};
use crate::seal::{MAX_CHUNK_SIZE, TAG_LEN};
use crate::server::AppState;
use crate::server::error::AppError;
use crate::server::extract::{ApiQuery, Caller};
use crate::server::metrics::Metrics;
use crate::server::policy::{Policy, Route, route};
use crate::server::store::chunks;
use crate::server::store::reports::{load_report, may_read};

const CHUNK_READERS: &[Role] = &[Role::Patient, Role::Doctor, Role::Auditor];

pub fn routes() -> Vec<Route> {
    vec![
        // One path, two meanings of its last segment: a PUT names the chunk by its id (64 hex
        // digits), a GET by its index in the report (a number). Axum merges the two methods.
        route(
            Method::PUT,
            "/v1/reports/{id}/chunks/{chunk}",
            Policy::Roles(UPLOADERS),
            put_chunk,
        )
        .with_body_limit(MAX_CHUNK_SIZE as usize + TAG_LEN),
        route(
            Method::GET,
            "/v1/reports/{id}/chunks/{chunk}",
            Policy::Roles(KEY_READERS),
            get_report_chunk,
        ),
        route(
            Method::GET,
            "/v1/chunks/{sha256}",
            Policy::Roles(CHUNK_READERS),
            get_chunk,
        ),
    ]
}

pub(crate) fn chunk_hex(raw: &str) -> Result<[u8; 32], AppError> {
    let mut id = [0u8; 32];
    if raw.len() != 64 || hex::decode_to_slice(raw, &mut id).is_err() || raw != raw.to_lowercase() {
        return Err(AppError::bad_request(format!(
            "chunk id {:?}: must be 64 lowercase hex digits (the SHA-256 of the sealed chunk)",
            raw.chars().take(80).collect::<String>()
        )));
    }
    Ok(id)
}

async fn put_chunk(
    State(st): State<AppState>,
    caller: Caller,
    Path((id, sha)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, AppError> {
    let id = Uuid::parse_str(&id).map_err(|_| AppError::not_found("report"))?;
    let chunk_id = chunk_hex(&sha)?;
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            AppError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                codes::BODY_TOO_LARGE,
                "a chunk is at most 16 MiB + 16 bytes",
            )
        } else {
            AppError::bad_request("the chunk body could not be read")
        }
    })?;
    // One read: the report (the caller's, open), and whether the chunk is stored or linked.
    let target = chunks::put_target(&st.db, id, &sha)
        .await?
        .filter(|t| t.author_id == caller.id)
        .ok_or_else(|| AppError::not_found("report"))?;
    if !target.open {
        return Err(committed());
    }
    if body.len() > target.chunk_size as usize + TAG_LEN || body.len() < TAG_LEN {
        return Err(AppError::bad_request(format!(
            "a sealed chunk of this report is {} to {} bytes, got {}",
            TAG_LEN,
            target.chunk_size as usize + TAG_LEN,
            body.len()
        )));
    }
    let mismatch = || {
        AppError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            codes::CHUNK_MISMATCH,
            "the body's SHA-256 is not the chunk id in the URL; nothing was stored",
        )
    };
    let size = body.len();
    // Idempotent: a chunk already stored durably is not written again. No database
    // connection is held while the bytes go to the buckets.
    let buckets = if target.known {
        // Same id, so same bytes; still refuse a body that does not hash to it.
        if crate::server::chunk_store::sha256_blocking(&body).await != chunk_id {
            return Err(mismatch());
        }
        if target.linked {
            return Ok(StatusCode::NO_CONTENT);
        }
        None
    } else {
        let buckets = st.chunks.put(&chunk_id, body).await.map_err(|e| match e {
            crate::server::chunk_store::ChunkStoreError::HashMismatch { .. } => mismatch(),
            other => {
                let mut err = AppError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    codes::STORAGE,
                    "not enough buckets could store the chunk durably; try again",
                );
                err.retry_after = Some(2);
                err.cause = Some(other.to_string());
                err
            }
        })?;
        Metrics::add(&st.metrics.chunk_bytes_in, size as u64);
        Some(buckets)
    };
    if !chunks::record_chunk(&st.db, id, caller.id, &sha, size, buckets.as_deref()).await? {
        // Committed between the read and the write: the guarded link did not land.
        return Err(committed());
    }
    Ok(StatusCode::NO_CONTENT)
}

fn committed() -> AppError {
    AppError::conflict(
        codes::REPORT_NOT_OPEN,
        "this report is committed; chunks can no longer be added",
    )
}

/// Chunk `index` of a report, for its readers: the read rule, the chunk id and its buckets in
/// one statement, then verified bytes (with fallback to another replica).
async fn get_report_chunk(
    State(st): State<AppState>,
    caller: Caller,
    Path((id, index)): Path<(String, String)>,
) -> Result<Response, AppError> {
    let id = Uuid::parse_str(&id).map_err(|_| AppError::not_found("report"))?;
    let index: u32 = index.parse().map_err(|_| {
        AppError::bad_request("chunk: its index in the report's signed order, a decimal number")
    })?;
    // An index past the end of a report the caller may not read answers like the report.
    let Some(rc) = chunks::chunk_for_reader(&st.db, id, index, caller.id).await? else {
        return Err(AppError::not_found("report"));
    };
    if !rc.readable {
        return Err(unreadable(&rc.report, caller.id));
    }
    let chunk_id = chunk_hex(&rc.chunk_hex)
        .map_err(|_| AppError::damaged("this report", "a stored chunk id is not 64 hex digits"))?;
    serve_verified(&st, &chunk_id, &rc.chunk_hex, &rc.buckets).await
}

/// Verified bytes from the first intact replica among `locations`.
async fn serve_verified(
    st: &AppState,
    chunk_id: &[u8; 32],
    sha: &str,
    locations: &[String],
) -> Result<Response, AppError> {
    if locations.is_empty() {
        return Err(AppError::not_found("chunk"));
    }
    let (bytes, bad) = st.chunks.get(chunk_id, locations).await.map_err(|e| {
        let mut err = AppError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            codes::STORAGE,
            format!(
                "chunk {sha}: no intact replica could be read; an auditor can check and repair it"
            ),
        );
        err.cause = Some(e.to_string());
        err
    })?;
    for b in bad {
        tracing::warn!(chunk = %sha, bucket = %b.bucket, state = ?b.state, "bad replica served around; run `clinvault audit --repair`");
    }
    Metrics::add(&st.metrics.chunk_bytes_out, bytes.len() as u64);
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response())
}

#[derive(Deserialize)]
struct ChunkQuery {
    replica: Option<String>,
}

/// Readers get verified bytes (with fallback to another replica); auditors may ask for one
/// replica's raw bytes to check it themselves.
async fn get_chunk(
    State(st): State<AppState>,
    caller: Caller,
    Path(sha): Path<String>,
    ApiQuery(q): ApiQuery<ChunkQuery>,
) -> Result<Response, AppError> {
    let chunk_id = chunk_hex(&sha).map_err(|_| AppError::not_found("chunk"))?;
    let mut conn = st.db.acquire().await?;
    if caller.role != Role::Auditor {
        let reports = chunks::reports_of_chunk(&mut conn, &sha).await?;
        let mut allowed = false;
        for rid in reports {
            if let Some(r) = load_report(&mut conn, parse_uuid(&rid)?).await?
                && may_read(&mut conn, &r, caller.id).await?
            {
                allowed = true;
                break;
            }
        }
        if !allowed || q.replica.is_some() {
            return Err(AppError::not_found("chunk"));
        }
    }
    let locations = chunks::replicas(&mut conn, &sha).await?;
    drop(conn);
    if locations.is_empty() {
        return Err(AppError::not_found("chunk"));
    }
    // A name that is no configured bucket is the caller's mistake, not a storage fault.
    if let Some(b) = &q.replica
        && !st.chunks.bucket_names().contains(b)
    {
        return Err(AppError::bad_request(format!(
            "replica: no bucket {:?}; the audit page lists the buckets",
            crate::text::display(b)
        )));
    }
    let bytes = match q.replica {
        Some(bucket) => st
            .chunks
            .read_raw(&chunk_id, &bucket)
            .await
            .map_err(|state| {
                use crate::server::chunk_store::ReplicaState;
                match state {
                    ReplicaState::Missing => AppError::not_found("replica"),
                    other => {
                        let mut e = AppError::new(
                            StatusCode::SERVICE_UNAVAILABLE,
                            codes::STORAGE,
                            format!("bucket {bucket} did not answer"),
                        );
                        e.cause = Some(format!("{other:?}"));
                        e
                    }
                }
            })?,
        None => return serve_verified(&st, &chunk_id, &sha, &locations).await,
    };
    Metrics::add(&st.metrics.chunk_bytes_out, bytes.len() as u64);
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response())
}
