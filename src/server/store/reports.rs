//! The SQL of reports and their chunks (DESIGN.md §7), for the report and chunk routes.

use sqlx::Row;
use uuid::Uuid;

use crate::server::db::now_ms;
use crate::server::error::AppError;
use crate::server::routes::parse_uuid;

/// A report row as the handlers use it.
pub struct ReportRow {
    pub id: Uuid,
    pub author_id: Uuid,
    pub patient_id: Uuid,
    pub status: String,
    pub chunk_size: u32,
    pub plaintext_len: u64,
    pub n_chunks: u32,
    pub created_at: i64,
    pub released_at: Option<i64>,
    pub ledger_index: Option<i64>,
    /// Issue 16: set on a station's report, the doctor its key is wrapped to; the station
    /// (its author) is then no reader.
    pub for_doctor_id: Option<Uuid>,
}

pub const REPORT_COLS: &str = "id, author_id, patient_id, status, chunk_size, plaintext_len, n_chunks, \
     created_at, released_at, ledger_index, for_doctor_id";
/// The same columns of `reports r`, for joins.
pub const REPORT_COLS_R: &str = "r.id, r.author_id, r.patient_id, r.status, r.chunk_size, \
     r.plaintext_len, r.n_chunks, r.created_at, r.released_at, r.ledger_index, r.for_doctor_id";

pub fn report_row(r: &sqlx::any::AnyRow) -> Result<ReportRow, AppError> {
    let num = |col: &str| -> Result<i64, AppError> { Ok(r.try_get::<i64, _>(col)?) };
    Ok(ReportRow {
        id: parse_uuid(&r.try_get::<String, _>("id")?)?,
        author_id: parse_uuid(&r.try_get::<String, _>("author_id")?)?,
        patient_id: parse_uuid(&r.try_get::<String, _>("patient_id")?)?,
        status: r.try_get("status")?,
        chunk_size: u32::try_from(num("chunk_size")?).map_err(AppError::internal)?,
        plaintext_len: u64::try_from(num("plaintext_len")?).map_err(AppError::internal)?,
        n_chunks: u32::try_from(num("n_chunks")?).map_err(AppError::internal)?,
        created_at: num("created_at")?,
        released_at: r.try_get("released_at")?,
        ledger_index: r.try_get("ledger_index")?,
        for_doctor_id: r
            .try_get::<Option<String>, _>("for_doctor_id")?
            .as_deref()
            .map(parse_uuid)
            .transpose()?,
    })
}

pub async fn load_report(
    conn: &mut sqlx::AnyConnection,
    id: Uuid,
) -> Result<Option<ReportRow>, AppError> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {REPORT_COLS} FROM reports WHERE id = $1"
    )))
    .bind(id.to_string())
    .fetch_optional(&mut *conn)
    .await?;
    row.as_ref().map(report_row).transpose()
}

/// Whether `user` may read the committed report now: its author, its patient once released,
/// a doctor holding a live grant whose key was wrapped, or an emergency-team member through a
/// released break-glass request (issue 16).
/// [`may_read`] once whether `user` holds a live wrapped grant is known.
pub fn may_read_row(report: &ReportRow, user: Uuid, granted: bool) -> bool {
    if report.status != "committed" {
        return false;
    }
    // A station's report: its doctor reads it, never the station that wrote it.
    if let Some(doctor) = report.for_doctor_id {
        if report.author_id == user {
            return false;
        }
        if doctor == user {
            return true;
        }
    }
    if report.author_id == user {
        return true;
    }
    if report.patient_id == user {
        return report.released_at.is_some();
    }
    granted
}

pub async fn may_read(
    conn: &mut sqlx::AnyConnection,
    report: &ReportRow,
    user: Uuid,
) -> Result<bool, AppError> {
    if report.status != "committed"
        || report.author_id == user
        || report.patient_id == user
        || report.for_doctor_id == Some(user)
    {
        return Ok(may_read_row(report, user, false));
    }
    let live: Option<i64> = sqlx::query_scalar(
        "SELECT 1 FROM grants WHERE report_id = $1 AND reader_id = $2 AND status = 'wrapped' \
         AND expires_at > $3",
    )
    .bind(report.id.to_string())
    .bind(user.to_string())
    .bind(now_ms())
    .fetch_optional(&mut *conn)
    .await?;
    if live.is_some() {
        return Ok(true);
    }
    // Issue 16: a released break-glass request of this reader's covering the report.
    super::emergency::released_to(conn, report.id, user, now_ms()).await
}

pub async fn user_name(conn: &mut sqlx::AnyConnection, id: Uuid) -> Result<String, AppError> {
    let name: Option<String> = sqlx::query_scalar("SELECT name FROM users WHERE id = $1")
        .bind(id.to_string())
        .fetch_optional(&mut *conn)
        .await?;
    Ok(name.unwrap_or_default())
}

pub async fn present_chunks(
    conn: &mut sqlx::AnyConnection,
    id: Uuid,
) -> Result<std::collections::HashSet<String>, AppError> {
    let rows: Vec<String> =
        sqlx::query_scalar("SELECT chunk_id FROM report_chunks WHERE report_id = $1")
            .bind(id.to_string())
            .fetch_all(&mut *conn)
            .await?;
    Ok(rows.into_iter().collect())
}

pub async fn public_ed25519(
    conn: &mut sqlx::AnyConnection,
    user: Uuid,
) -> Result<[u8; 32], AppError> {
    let key: Vec<u8> = sqlx::query_scalar("SELECT ed25519_pub FROM users WHERE id = $1")
        .bind(user.to_string())
        .fetch_one(&mut *conn)
        .await?;
    key.try_into()
        .map_err(|_| AppError::internal("stored public key is not 32 bytes"))
}
