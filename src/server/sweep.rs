//! The sweep of abandoned uploads: reports left open and untouched past their time go, with
//! the chunks no other report holds.

use crate::server::AppState;
use crate::server::db::now_ms;
use crate::server::error::AppError;
use crate::server::routes::chunks::chunk_hex;

/// The ids of every report a commit entry (kind 2) of the ledger names. Read only when a
/// sweep has candidates, which abandoned uploads make rare.
async fn committed_in_ledger(st: &AppState) -> Result<std::collections::HashSet<String>, AppError> {
    let rows: Vec<Vec<u8>> = sqlx::query_scalar("SELECT entry FROM ledger_entries WHERE kind = 2")
        .fetch_all(&st.db)
        .await?;
    Ok(rows
        .iter()
        .filter_map(|b| match crate::ledger::Entry::from_bytes(b) {
            Ok(crate::ledger::Entry::ReportCommitted { report_id, .. }) => {
                Some(uuid::Uuid::from_bytes(report_id).to_string())
            }
            _ => None,
        })
        .collect())
}

/// Removes reports left open and untouched longer than `open_report_ttl_secs`, with their
/// chunks (unless another report holds the same chunk).
pub async fn sweep_open(st: &AppState) -> Result<u64, AppError> {
    let cutoff = now_ms() - (st.config.open_report_ttl_secs as i64).saturating_mul(1000);
    // `touched_at` moves at open (every resumed run opens again) and commit, not per chunk:
    // a report that received a chunk since the cutoff is still being uploaded.
    let stale: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM reports r WHERE status = 'open' AND touched_at < $1 AND NOT EXISTS \
         (SELECT 1 FROM report_chunks rc JOIN chunks c ON c.id = rc.chunk_id \
          WHERE rc.report_id = r.id AND c.created_at >= $1) LIMIT 100",
    )
    .bind(cutoff)
    .fetch_all(&st.db)
    .await?;
    if stale.is_empty() {
        return Ok(0);
    }
    // A report the ledger records as committed is never swept, whatever its row says: an
    // edited status must not have the server delete a committed report's chunks (issue 17).
    let committed = committed_in_ledger(st).await?;
    let mut removed = 0;
    for id in stale {
        if committed.contains(&id) {
            tracing::error!(
                report = %id,
                "a report the ledger records as committed is marked open: not swept (database edited?)"
            );
            continue;
        }
        let chunks: Vec<String> = sqlx::query_scalar(
            "SELECT chunk_id FROM report_chunks rc WHERE report_id = $1 AND NOT EXISTS \
             (SELECT 1 FROM report_chunks o WHERE o.chunk_id = rc.chunk_id AND o.report_id <> $1)",
        )
        .bind(id.clone())
        .fetch_all(&st.db)
        .await?;
        let mut tx = st.db.begin().await?;
        sqlx::query("DELETE FROM report_chunks WHERE report_id = $1")
            .bind(id.clone())
            .execute(&mut *tx)
            .await?;
        for c in &chunks {
            sqlx::query("DELETE FROM chunk_replicas WHERE chunk_id = $1")
                .bind(c.clone())
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM chunks WHERE id = $1")
                .bind(c.clone())
                .execute(&mut *tx)
                .await?;
        }
        let gone = sqlx::query(
            "DELETE FROM reports WHERE id = $1 AND status = 'open' AND touched_at < $2",
        )
        .bind(id.clone())
        .bind(cutoff)
        .execute(&mut *tx)
        .await?;
        if gone.rows_affected() != 1 {
            // Touched meanwhile: a resumed upload. Keep everything.
            tx.rollback().await?;
            continue;
        }
        tx.commit().await?;
        // Objects go after the rows: a crash here leaves orphans, never dangling rows.
        for c in &chunks {
            if let Ok(cid) = chunk_hex(c)
                && let Err(e) = st.chunks.delete(&cid).await
            {
                tracing::warn!(chunk = %c, error = %e, "could not delete a swept chunk");
            }
        }
        removed += 1;
        tracing::info!(report = %id, chunks = chunks.len(), "swept an abandoned upload");
    }
    Ok(removed)
}
