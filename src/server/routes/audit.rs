//! The auditor's routes (DESIGN.md §6): every committed report's manifest and chunk list with
//! where each replica is, and repair of a replica from a verified copy. No keys involved.

use axum::Json;
use axum::extract::State;
use axum::http::{Method, StatusCode};
use serde::Deserialize;
use sqlx::Row;

use super::{page_offset, parse_uuid};
use crate::api::{
    AuditChunk, AuditPage, AuditReport, AuditWrappedKey, RepairRequest, RepairResponse, Role, codes,
};
use crate::server::AppState;
use crate::server::chunk_store::ReplicaState;
use crate::server::error::AppError;
use crate::server::extract::{ApiJson, ApiQuery};
use crate::server::policy::{Policy, Route, route};
use crate::server::store::audit;

const AUDITOR: &[Role] = &[Role::Auditor];
const REPORTS_PER_PAGE: i64 = 20;

pub fn routes() -> Vec<Route> {
    vec![
        route(
            Method::GET,
            "/v1/audit/reports",
            Policy::Roles(AUDITOR),
            reports,
        ),
        route(
            Method::POST,
            "/v1/audit/repair",
            Policy::Roles(AUDITOR),
            repair,
        ),
    ]
}

#[derive(Deserialize)]
struct PageQuery {
    page: Option<u32>,
}

async fn reports(
    State(st): State<AppState>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Json<AuditPage>, AppError> {
    let (page, _) = page_offset(q.page)?;
    if page == 1 {
        let s = st.clone();
        tokio::task::spawn_blocking(move || s.chunks.sweep_staging(crate::server::STAGING_MIN_AGE))
            .await
            .map_err(AppError::internal)?;
    }
    let offset = i64::from(page - 1) * REPORTS_PER_PAGE;
    let mut conn = st.db.acquire().await?;
    let rows = audit::committed_reports(&mut *conn, REPORTS_PER_PAGE + 1, offset).await?;
    let more = rows.len() as i64 > REPORTS_PER_PAGE;
    let mut out = Vec::new();
    for row in rows.iter().take(REPORTS_PER_PAGE as usize) {
        let id: String = row.try_get("id")?;
        let chunk_rows = audit::chunk_replicas(&mut *conn, id.clone()).await?;
        let mut chunks: Vec<AuditChunk> = Vec::new();
        for (chunk_id, bucket) in chunk_rows {
            match chunks.last_mut() {
                Some(last) if last.chunk_id == chunk_id => last.replicas.extend(bucket),
                _ => chunks.push(AuditChunk {
                    chunk_id,
                    replicas: bucket.into_iter().collect(),
                }),
            }
        }
        // One malformed row (a column of the wrong type, a bad id) is reported against its
        // report; the audit goes on with the others.
        let mut problems = Vec::new();
        let mut bytes = |col: &str| -> Vec<u8> {
            match row.try_get::<Option<Vec<u8>>, _>(col) {
                Ok(v) => v.unwrap_or_default(),
                Err(e) => {
                    problems.push(format!("stored {col} unreadable: {e}"));
                    Vec::new()
                }
            }
        };
        let manifest = bytes("manifest");
        let signature = bytes("signature");
        let meta = bytes("meta");
        let author_id = row
            .try_get::<String, _>("author_id")
            .ok()
            .and_then(|a| uuid::Uuid::parse_str(&a).ok());
        if author_id.is_none() {
            problems.push("stored author_id unreadable".into());
        }
        let ledger_index = row
            .try_get::<Option<i64>, _>("ledger_index")
            .ok()
            .flatten()
            .and_then(|i| u64::try_from(i).ok());
        if ledger_index.is_none() {
            problems.push("stored ledger_index unreadable".into());
        }
        let key_rows = audit::wrapped_keys(&mut *conn, id.clone()).await?;
        let mut wrapped_keys = Vec::new();
        for k in &key_rows {
            let key = (|| -> Option<AuditWrappedKey> {
                Some(AuditWrappedKey {
                    reader_id: uuid::Uuid::parse_str(&k.try_get::<String, _>("reader_id").ok()?)
                        .ok()?,
                    wrapped: k.try_get::<Vec<u8>, _>("wrapped").ok()?,
                    ledger_index: u64::try_from(k.try_get::<i64, _>("ledger_index").ok()?).ok()?,
                })
            })();
            match key {
                Some(key) => wrapped_keys.push(key),
                None => problems.push("a stored wrapped key row is unreadable".into()),
            }
        }
        out.push(AuditReport {
            id: parse_uuid(&id)?,
            manifest,
            signature,
            ledger_index: ledger_index.unwrap_or(u64::MAX),
            chunks,
            meta,
            author_id,
            wrapped_keys,
            problem: (!problems.is_empty()).then(|| problems.join("; ")),
        });
    }
    Ok(Json(AuditPage {
        reports: out,
        buckets: st.chunks.bucket_names(),
        replicas: st.chunks.replicas() as u32,
        next_page: more.then_some(page + 1),
        staging_swept: st.chunks.staging_swept(),
    }))
}

/// Brings one chunk back to `replicas` intact copies: a verified replica is copied over every
/// bad or missing recorded one, and onto the next buckets in placement order when fewer than
/// `replicas` recorded buckets can hold it.
async fn repair(
    State(st): State<AppState>,
    ApiJson(req): ApiJson<RepairRequest>,
) -> Result<Json<RepairResponse>, AppError> {
    let mut id = [0u8; 32];
    if req.chunk_id.len() != 64 || hex::decode_to_slice(&req.chunk_id, &mut id).is_err() {
        return Err(AppError::bad_request("chunk_id: 64 hex digits"));
    }
    let chunk_id = hex::encode(id);
    let recorded = audit::recorded_buckets(&st.db, chunk_id.clone()).await?;
    if recorded.is_empty() {
        return Err(AppError::not_found("chunk"));
    }
    let (good, _) = st.chunks.get(&id, &recorded).await.map_err(|e| {
        let mut err = AppError::new(
            StatusCode::CONFLICT,
            codes::STORAGE,
            format!("chunk {chunk_id}: no intact replica is left to repair from"),
        );
        err.cause = Some(e.to_string());
        err
    })?;
    let mut intact = Vec::new();
    let mut written = Vec::new();
    // Recorded buckets first, then the rest in placement order.
    let placement: Vec<String> = {
        let names = st.chunks.bucket_names();
        st.chunks
            .placement(&id)
            .into_iter()
            .filter_map(|i| names.get(i).cloned())
            .collect()
    };
    let mut order = recorded.clone();
    order.extend(placement.into_iter().filter(|b| !recorded.contains(b)));
    for bucket in order {
        if intact.len() >= st.chunks.replicas() {
            break;
        }
        match st.chunks.check_replica(&id, &bucket).await {
            ReplicaState::Intact => intact.push(bucket),
            ReplicaState::Unreachable(why) => {
                tracing::warn!(chunk = %chunk_id, %bucket, %why, "bucket unreachable during repair");
            }
            ReplicaState::Missing | ReplicaState::Corrupt => {
                match st.chunks.write_replica(&id, &bucket, good.clone()).await {
                    Ok(()) => {
                        tracing::info!(chunk = %chunk_id, %bucket, "replica repaired");
                        written.push(bucket.clone());
                        intact.push(bucket);
                    }
                    Err(e) => {
                        tracing::warn!(chunk = %chunk_id, %bucket, error = %e, "repair write failed")
                    }
                }
            }
        }
    }
    let mut tx = st.db.begin().await?;
    audit::clear_replicas(&mut *tx, chunk_id.clone()).await?;
    for b in &intact {
        audit::add_replica(&mut *tx, chunk_id.clone(), b.clone()).await?;
    }
    tx.commit().await?;
    if intact.len() < st.chunks.replicas() {
        return Err(AppError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            codes::STORAGE,
            format!(
                "chunk {chunk_id}: only {} of {} replicas could be made intact; bring the buckets back and repair again",
                intact.len(),
                st.chunks.replicas()
            ),
        ));
    }
    Ok(Json(RepairResponse { written }))
}
