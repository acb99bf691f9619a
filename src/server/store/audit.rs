//! The SQL of the auditor's routes: committed reports page by page with their chunks and
//! wrapped keys, and the replica records a chunk repair rewrites. Report and key rows go back
//! as read: the audit reports a malformed row against its report instead of failing.

use sqlx::Row;

use crate::server::error::AppError;

/// Committed reports by ledger index (`id`, `author_id`, `manifest`, `signature`, `meta`,
/// `ledger_index`).
pub async fn committed_reports(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    limit: i64,
    offset: i64,
) -> Result<Vec<sqlx::any::AnyRow>, AppError> {
    Ok(sqlx::query(
        "SELECT id, author_id, manifest, signature, meta, ledger_index FROM reports WHERE status = 'committed' \
         ORDER BY ledger_index LIMIT $1 OFFSET $2",
    )
    .bind(limit)
    .bind(offset)
    .fetch_all(ex)
    .await?)
}

/// A report's chunks in order, one (chunk id, bucket) per recorded replica (bucket none for
/// a chunk without any).
pub async fn chunk_replicas(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    report: String,
) -> Result<Vec<(String, Option<String>)>, AppError> {
    let rows = sqlx::query(
        "SELECT rc.chunk_id, cr.bucket FROM report_chunks rc \
         LEFT JOIN chunk_replicas cr ON cr.chunk_id = rc.chunk_id \
         WHERE rc.report_id = $1 ORDER BY rc.idx, cr.bucket",
    )
    .bind(report)
    .fetch_all(ex)
    .await?;
    rows.iter()
        .map(|c| Ok((c.try_get("chunk_id")?, c.try_get("bucket")?)))
        .collect()
}

/// A report's wrapped keys (`reader_id`, `wrapped`, `ledger_index`), by ledger index.
pub async fn wrapped_keys(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    report: String,
) -> Result<Vec<sqlx::any::AnyRow>, AppError> {
    Ok(sqlx::query(
        "SELECT reader_id, wrapped, ledger_index FROM wrapped_keys WHERE report_id = $1 ORDER BY ledger_index",
    )
    .bind(report)
    .fetch_all(ex)
    .await?)
}

/// The buckets recorded as holding a chunk.
pub async fn recorded_buckets(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    chunk_id: String,
) -> Result<Vec<String>, AppError> {
    Ok(
        sqlx::query_scalar("SELECT bucket FROM chunk_replicas WHERE chunk_id = $1")
            .bind(chunk_id)
            .fetch_all(ex)
            .await?,
    )
}

/// Forgets a chunk's replica records (the repair writes the intact ones back).
pub async fn clear_replicas(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    chunk_id: String,
) -> Result<(), AppError> {
    sqlx::query("DELETE FROM chunk_replicas WHERE chunk_id = $1")
        .bind(chunk_id)
        .execute(ex)
        .await?;
    Ok(())
}

/// Records one replica of a chunk.
pub async fn add_replica(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    chunk_id: String,
    bucket: String,
) -> Result<(), AppError> {
    sqlx::query("INSERT INTO chunk_replicas (chunk_id, bucket) VALUES ($1, $2)")
        .bind(chunk_id)
        .bind(bucket)
        .execute(ex)
        .await?;
    Ok(())
}
