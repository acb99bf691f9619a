//! The SQL of chunks: upload into an open report, reads by a report's readers, the commit's
//! chunk order. Each function is one statement or one short transaction; none is held open
//! across blob I/O (the caller stores or reads the bytes between calls).

use sqlx::Row;
use uuid::Uuid;

use super::reports::{ReportRow, may_read_row};

type Db = sqlx::AnyPool;
use crate::server::db::now_ms;
use crate::server::error::AppError;

/// What a chunk upload needs to know, in one read.
pub struct PutTarget {
    pub author_id: Uuid,
    pub open: bool,
    pub chunk_size: u32,
    /// The chunk is stored already (by this or any report).
    pub known: bool,
    /// The chunk is already part of this report.
    pub linked: bool,
}

pub async fn put_target(
    db: &Db,
    report: Uuid,
    chunk_hex: &str,
) -> Result<Option<PutTarget>, AppError> {
    let row = sqlx::query(
        "SELECT r.author_id, r.status, r.chunk_size, \
         (SELECT COUNT(*) FROM chunks c WHERE c.id = $2) AS known, \
         (SELECT COUNT(*) FROM report_chunks rc WHERE rc.report_id = r.id AND rc.chunk_id = $2) AS linked \
         FROM reports r WHERE r.id = $1",
    )
    .bind(report.to_string())
    .bind(chunk_hex.to_string())
    .fetch_optional(db)
    .await?;
    let Some(row) = row else { return Ok(None) };
    Ok(Some(PutTarget {
        author_id: crate::server::routes::parse_uuid(&row.try_get::<String, _>("author_id")?)?,
        open: row.try_get::<String, _>("status")? == "open",
        chunk_size: u32::try_from(row.try_get::<i64, _>("chunk_size")?)
            .map_err(AppError::internal)?,
        known: row.try_get::<i64, _>("known")? > 0,
        linked: row.try_get::<i64, _>("linked")? > 0,
    }))
}

/// Records a chunk stored in `buckets` (if given: a new chunk) and links it to the open
/// report, in one write transaction (one statement for a chunk already stored). The link is
/// guarded: it only lands while the report is open and the caller's. Returns whether the
/// chunk is now part of the report.
pub async fn record_chunk(
    db: &Db,
    report: Uuid,
    author: Uuid,
    chunk_hex: &str,
    size: usize,
    buckets: Option<&[String]>,
) -> Result<bool, AppError> {
    const LINK: &str = "INSERT INTO report_chunks (report_id, chunk_id) SELECT $1, $2 \
         WHERE EXISTS (SELECT 1 FROM reports WHERE id = $1 AND status = 'open' AND author_id = $3) \
         ON CONFLICT (report_id, chunk_id) DO NOTHING";
    let link = |q: &'static str| {
        sqlx::query(q)
            .bind(report.to_string())
            .bind(chunk_hex.to_string())
            .bind(author.to_string())
    };
    let linked = match buckets {
        None => link(LINK).execute(db).await?.rows_affected() == 1,
        Some(buckets) => {
            let mut tx = db.begin().await?;
            let inserted = sqlx::query(
                "INSERT INTO chunks (id, size, created_at) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING",
            )
            .bind(chunk_hex.to_string())
            .bind(size as i64)
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
            if inserted.rows_affected() == 1 && !buckets.is_empty() {
                let values: Vec<String> = (0..buckets.len())
                    .map(|i| format!("($1, ${})", i + 2))
                    .collect();
                let sql = format!(
                    "INSERT INTO chunk_replicas (chunk_id, bucket) VALUES {}",
                    values.join(", ")
                );
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(chunk_hex.to_string());
                for b in buckets {
                    q = q.bind(b.clone());
                }
                q.execute(&mut *tx).await?;
            }
            let linked = link(LINK).execute(&mut *tx).await?.rows_affected() == 1;
            tx.commit().await?;
            linked
        }
    };
    if linked {
        return Ok(true);
    }
    // Rare: linked by an earlier try, or the report was committed meanwhile.
    let there: Option<i64> =
        sqlx::query_scalar("SELECT 1 FROM report_chunks WHERE report_id = $1 AND chunk_id = $2")
            .bind(report.to_string())
            .bind(chunk_hex.to_string())
            .fetch_optional(db)
            .await?;
    Ok(there.is_some())
}

/// Chunk `index` of a committed report as its reader `user` may fetch it: the report (for the
/// read rule), the chunk id and the buckets holding it, in one statement.
pub struct ReaderChunk {
    pub report: ReportRow,
    pub chunk_hex: String,
    pub buckets: Vec<String>,
    pub readable: bool,
}

pub async fn chunk_for_reader(
    db: &Db,
    report: Uuid,
    index: u32,
    user: Uuid,
) -> Result<Option<ReaderChunk>, AppError> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {cols}, rc.chunk_id, cr.bucket, \
         ((SELECT COUNT(*) FROM grants g WHERE g.report_id = r.id AND g.reader_id = $3 \
          AND g.status = 'wrapped' AND g.expires_at > $4) + {emergency}) AS granted \
         FROM reports r JOIN report_chunks rc ON rc.report_id = r.id AND rc.idx = $2 \
         LEFT JOIN chunk_replicas cr ON cr.chunk_id = rc.chunk_id \
         WHERE r.id = $1 ORDER BY cr.bucket",
        cols = super::reports::REPORT_COLS_R,
        emergency = super::emergency::RELEASED_COUNT_SQL,
    )))
    .bind(report.to_string())
    .bind(i64::from(index))
    .bind(user.to_string())
    .bind(now_ms())
    .fetch_all(db)
    .await?;
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let r = super::reports::report_row(first)?;
    let granted = first.try_get::<i64, _>("granted")? > 0;
    let readable = may_read_row(&r, user, granted);
    let chunk_hex: String = first.try_get("chunk_id")?;
    let mut buckets = Vec::with_capacity(rows.len());
    for row in &rows {
        if let Some(b) = row.try_get::<Option<String>, _>("bucket")? {
            buckets.push(b);
        }
    }
    Ok(Some(ReaderChunk {
        report: r,
        chunk_hex,
        buckets,
        readable,
    }))
}

/// The committed reports holding a chunk (for the content-addressed read route).
pub async fn reports_of_chunk(
    conn: &mut sqlx::AnyConnection,
    chunk_hex: &str,
) -> Result<Vec<String>, AppError> {
    Ok(sqlx::query_scalar(
        "SELECT report_id FROM report_chunks WHERE chunk_id = $1 AND idx IS NOT NULL",
    )
    .bind(chunk_hex.to_string())
    .fetch_all(&mut *conn)
    .await?)
}

pub async fn replicas(
    conn: &mut sqlx::AnyConnection,
    chunk_hex: &str,
) -> Result<Vec<String>, AppError> {
    Ok(
        sqlx::query_scalar("SELECT bucket FROM chunk_replicas WHERE chunk_id = $1 ORDER BY bucket")
            .bind(chunk_hex.to_string())
            .fetch_all(&mut *conn)
            .await?,
    )
}

/// Most rows per statement when the commit numbers the chunks (SQLite takes 32766 bound
/// values; two per row).
const ORDER_ROWS_PER_STATEMENT: usize = 4096;

/// Numbers the report's chunks in the signed order: one statement per 4096 chunks.
pub async fn set_chunk_order(
    tx: &mut sqlx::AnyConnection,
    report: Uuid,
    chunk_hexes: &[String],
) -> Result<(), AppError> {
    for (batch_no, batch) in chunk_hexes.chunks(ORDER_ROWS_PER_STATEMENT).enumerate() {
        let base = batch_no * ORDER_ROWS_PER_STATEMENT;
        let values: Vec<String> = (0..batch.len())
            .map(|i| format!("(${}, ${})", 2 + 2 * i, 3 + 2 * i))
            .collect();
        // VALUES columns are called column1, column2 by both SQLite and PostgreSQL.
        let sql = format!(
            "UPDATE report_chunks SET idx = v.column2 FROM (VALUES {}) AS v \
             WHERE report_chunks.report_id = $1 AND report_chunks.chunk_id = v.column1",
            values.join(", ")
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(report.to_string());
        for (i, c) in batch.iter().enumerate() {
            q = q.bind(c.clone()).bind((base + i) as i64);
        }
        let done = q.execute(&mut *tx).await?;
        if done.rows_affected() != batch.len() as u64 {
            return Err(AppError::internal(format!(
                "numbering the chunks touched {} rows, expected {}",
                done.rows_affected(),
                batch.len()
            )));
        }
    }
    Ok(())
}
