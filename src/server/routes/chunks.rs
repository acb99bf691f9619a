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
use super::reports::{DOCTOR, own_open_report};
use crate::api::{Role, codes};
use crate::seal::{MAX_CHUNK_SIZE, TAG_LEN};
use crate::server::AppState;
use crate::server::db::now_ms;
use crate::server::error::AppError;
use crate::server::extract::{ApiQuery, Caller};
use crate::server::metrics::Metrics;
use crate::server::policy::{Policy, Route, route};
use crate::server::store::reports::{load_report, may_read};

const CHUNK_READERS: &[Role] = &[Role::Patient, Role::Doctor, Role::Auditor];

pub fn routes() -> Vec<Route> {
    vec![
        route(
            Method::PUT,
            "/v1/reports/{id}/chunks/{sha256}",
            Policy::Roles(DOCTOR),
            put_chunk,
        )
        .with_body_limit(MAX_CHUNK_SIZE as usize + TAG_LEN),
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
    let mut conn = st.db.acquire().await?;
    let report = own_open_report(&mut conn, id, &caller).await?;
    if body.len() > report.chunk_size as usize + TAG_LEN || body.len() < TAG_LEN {
        return Err(AppError::bad_request(format!(
            "a sealed chunk of this report is {} to {} bytes, got {}",
            TAG_LEN,
            report.chunk_size as usize + TAG_LEN,
            body.len()
        )));
    }
    let size = body.len() as i64;
    // Idempotent: a chunk already stored durably is not written again.
    let known: Option<i64> = sqlx::query_scalar("SELECT 1 FROM chunks WHERE id = $1")
        .bind(sha.clone())
        .fetch_optional(&mut *conn)
        .await?;
    if known.is_none() {
        let len = body.len() as u64;
        let buckets = st.chunks.put(&chunk_id, body).await.map_err(|e| match e {
            crate::server::chunk_store::ChunkStoreError::HashMismatch { .. } => AppError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                codes::CHUNK_MISMATCH,
                "the body's SHA-256 is not the chunk id in the URL; nothing was stored",
            ),
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
        Metrics::add(&st.metrics.chunk_bytes_in, len);
        let mut tx = st.db.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO chunks (id, size, created_at) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING",
        )
        .bind(sha.clone())
        .bind(size)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() == 1 {
            for b in buckets {
                sqlx::query("INSERT INTO chunk_replicas (chunk_id, bucket) VALUES ($1, $2)")
                    .bind(sha.clone())
                    .bind(b)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
    } else {
        // Same id, so same bytes; still refuse a body that does not hash to it.
        let actual = clinvault_hot::sha256(&[&body]);
        if actual != chunk_id {
            return Err(AppError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                codes::CHUNK_MISMATCH,
                "the body's SHA-256 is not the chunk id in the URL; nothing was stored",
            ));
        }
    }
    sqlx::query(
        "INSERT INTO report_chunks (report_id, chunk_id) VALUES ($1, $2) ON CONFLICT (report_id, chunk_id) DO NOTHING",
    )
    .bind(id.to_string())
    .bind(sha)
    .execute(&mut *conn)
    .await?;
    sqlx::query("UPDATE reports SET touched_at = $1 WHERE id = $2")
        .bind(now_ms())
        .bind(id.to_string())
        .execute(&mut *conn)
        .await?;
    Ok(StatusCode::NO_CONTENT)
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
        let reports: Vec<String> = sqlx::query_scalar(
            "SELECT report_id FROM report_chunks WHERE chunk_id = $1 AND idx IS NOT NULL",
        )
        .bind(sha.clone())
        .fetch_all(&mut *conn)
        .await?;
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
    let locations: Vec<String> =
        sqlx::query_scalar("SELECT bucket FROM chunk_replicas WHERE chunk_id = $1 ORDER BY bucket")
            .bind(sha.clone())
            .fetch_all(&mut *conn)
            .await?;
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
        None => {
            let (bytes, bad) = st.chunks.get(&chunk_id, &locations).await.map_err(|e| {
                let mut err = AppError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    codes::STORAGE,
                    format!("chunk {sha}: no intact replica could be read; an auditor can check and repair it"),
                );
                err.cause = Some(e.to_string());
                err
            })?;
            for b in bad {
                tracing::warn!(chunk = %sha, bucket = %b.bucket, state = ?b.state, "bad replica served around; run `clinvault audit --repair`");
            }
            bytes
        }
    };
    Metrics::add(&st.metrics.chunk_bytes_out, bytes.len() as u64);
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response())
}
