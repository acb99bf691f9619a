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

/// Whether `doctor` has a completed visit with `patient` (a doctor uploads only then).
pub async fn completed_visit(
    conn: &mut sqlx::AnyConnection,
    doctor: Uuid,
    patient: Uuid,
) -> Result<bool, AppError> {
    let seen: Option<i64> = sqlx::query_scalar(
        "SELECT 1 FROM bookings WHERE doctor_id = $1 AND patient_id = $2 AND status = 'completed' LIMIT 1",
    )
    .bind(doctor.to_string())
    .bind(patient.to_string())
    .fetch_optional(&mut *conn)
    .await?;
    Ok(seen.is_some())
}

/// Whether `doctor` has any booking with `patient` that is not cancelled.
pub async fn any_booking(
    conn: &mut sqlx::AnyConnection,
    doctor: Uuid,
    patient: Uuid,
) -> Result<bool, AppError> {
    let booked: Option<i64> = sqlx::query_scalar(
        "SELECT 1 FROM bookings WHERE doctor_id = $1 AND patient_id = $2 AND status <> 'cancelled' LIMIT 1",
    )
    .bind(doctor.to_string())
    .bind(patient.to_string())
    .fetch_optional(&mut *conn)
    .await?;
    Ok(booked.is_some())
}

/// A resumed open: the report was touched now; how many chunks it already holds.
pub async fn touch_and_count(conn: &mut sqlx::AnyConnection, id: Uuid) -> Result<i64, AppError> {
    sqlx::query("UPDATE reports SET touched_at = $1 WHERE id = $2")
        .bind(now_ms())
        .bind(id.to_string())
        .execute(&mut *conn)
        .await?;
    let present: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM report_chunks WHERE report_id = $1")
            .bind(id.to_string())
            .fetch_one(&mut *conn)
            .await?;
    Ok(present)
}

/// A new open report's row.
pub struct NewReport {
    pub id: Uuid,
    pub author_id: Uuid,
    pub patient_id: Uuid,
    pub chunk_size: u32,
    pub plaintext_len: i64,
    pub n_chunks: u32,
    pub now: i64,
    /// Issue 16: (order, doctor) of a station's report.
    pub order: Option<(Uuid, Uuid)>,
}

/// Inserts the open report; `Ok(false)` when the id is taken (by anyone).
pub async fn insert_open(conn: &mut sqlx::AnyConnection, r: &NewReport) -> Result<bool, AppError> {
    let res = sqlx::query(
        "INSERT INTO reports (id, author_id, patient_id, status, chunk_size, plaintext_len, n_chunks, \
         created_at, touched_at, order_id, for_doctor_id) VALUES ($1, $2, $3, 'open', $4, $5, $6, $7, $7, $8, $9)",
    )
    .bind(r.id.to_string())
    .bind(r.author_id.to_string())
    .bind(r.patient_id.to_string())
    .bind(i64::from(r.chunk_size))
    .bind(r.plaintext_len)
    .bind(i64::from(r.n_chunks))
    .bind(r.now)
    .bind(r.order.map(|(o, _)| o.to_string()))
    .bind(r.order.map(|(_, d)| d.to_string()))
    .execute(&mut *conn)
    .await;
    match res {
        Ok(_) => Ok(true),
        Err(e) if crate::server::error::is_unique_violation(&e) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// The stored manifest of a committed report.
pub async fn stored_manifest(
    conn: &mut sqlx::AnyConnection,
    id: Uuid,
) -> Result<Option<Vec<u8>>, AppError> {
    Ok(
        sqlx::query_scalar("SELECT manifest FROM reports WHERE id = $1")
            .bind(id.to_string())
            .fetch_one(&mut *conn)
            .await?,
    )
}

/// The id of the report's first release-code request, if any.
pub async fn release_request(
    conn: &mut sqlx::AnyConnection,
    id: Uuid,
) -> Result<Option<String>, AppError> {
    Ok(sqlx::query_scalar(
        "SELECT id FROM otp_requests WHERE report_id = $1 AND purpose = 'release' ORDER BY created_at LIMIT 1",
    )
    .bind(id.to_string())
    .fetch_optional(&mut *conn)
    .await?)
}

/// What a commit stores on the report row.
pub struct Committed<'a> {
    pub now: i64,
    pub manifest: &'a [u8],
    pub signature: &'a [u8],
    pub meta: &'a [u8],
    pub ledger_index: i64,
    pub released_at: Option<i64>,
}

/// Marks the open report committed; `false` if it was not open any more.
pub async fn mark_committed(
    tx: &mut sqlx::AnyConnection,
    id: Uuid,
    c: &Committed<'_>,
) -> Result<bool, AppError> {
    let updated = sqlx::query(
        "UPDATE reports SET status = 'committed', committed_at = $1, touched_at = $1, manifest = $2, \
         signature = $3, meta = $4, ledger_index = $5, released_at = $6 WHERE id = $7 AND status = 'open'",
    )
    .bind(c.now)
    .bind(c.manifest.to_vec())
    .bind(c.signature.to_vec())
    .bind(c.meta.to_vec())
    .bind(c.ledger_index)
    .bind(c.released_at)
    .bind(id.to_string())
    .execute(&mut *tx)
    .await?;
    Ok(updated.rows_affected() == 1)
}

/// A wrapped key given at commit (no grant).
pub async fn insert_commit_key(
    tx: &mut sqlx::AnyConnection,
    report: Uuid,
    reader: Uuid,
    wrapped: &[u8],
    wrapper: Uuid,
    ledger_index: i64,
    now: i64,
) -> Result<(), AppError> {
    sqlx::query(
        "INSERT INTO wrapped_keys (report_id, reader_id, wrapped, wrapper_id, grant_id, ledger_index, created_at) \
         VALUES ($1, $2, $3, $4, NULL, $5, $6)",
    )
    .bind(report.to_string())
    .bind(reader.to_string())
    .bind(wrapped.to_vec())
    .bind(wrapper.to_string())
    .bind(ledger_index)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Which reports a list shows.
pub enum ListOf {
    /// A patient's committed reports.
    Patient(Uuid),
    /// What a doctor wrote, was ordered to read, or holds a live grant of.
    Doctor(Uuid),
}

/// The reports of a list, newest first.
pub async fn list(
    conn: &mut sqlx::AnyConnection,
    which: ListOf,
) -> Result<Vec<ReportRow>, AppError> {
    let sql = format!("SELECT {REPORT_COLS} FROM reports WHERE ");
    let rows = match which {
        ListOf::Patient(patient) => {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "{sql} patient_id = $1 AND status = 'committed' ORDER BY created_at DESC"
            )))
            .bind(patient.to_string())
            .fetch_all(&mut *conn)
            .await?
        }
        ListOf::Doctor(doctor) => {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "{sql} author_id = $1 OR (status = 'committed' AND for_doctor_id = $1) \
                 OR (status = 'committed' AND id IN \
                 (SELECT report_id FROM grants WHERE reader_id = $1 AND status = 'wrapped' AND expires_at > $2)) \
                 ORDER BY created_at DESC"
            )))
            .bind(doctor.to_string())
            .bind(now_ms())
            .fetch_all(&mut *conn)
            .await?
        }
    };
    rows.iter().map(report_row).collect()
}

/// A committed report's verifiable parts: manifest, signature, meta and chunk ids in order.
pub struct Sealed {
    pub manifest: Vec<u8>,
    pub signature: Vec<u8>,
    pub meta: Vec<u8>,
    pub chunk_ids: Vec<String>,
}

pub async fn sealed_parts(conn: &mut sqlx::AnyConnection, id: Uuid) -> Result<Sealed, AppError> {
    let row = sqlx::query("SELECT manifest, signature, meta FROM reports WHERE id = $1")
        .bind(id.to_string())
        .fetch_one(&mut *conn)
        .await?;
    let chunk_ids: Vec<String> =
        sqlx::query_scalar("SELECT chunk_id FROM report_chunks WHERE report_id = $1 ORDER BY idx")
            .bind(id.to_string())
            .fetch_all(&mut *conn)
            .await?;
    Ok(Sealed {
        manifest: row
            .try_get::<Option<Vec<u8>>, _>("manifest")?
            .unwrap_or_default(),
        signature: row
            .try_get::<Option<Vec<u8>>, _>("signature")?
            .unwrap_or_default(),
        meta: row
            .try_get::<Option<Vec<u8>>, _>("meta")?
            .unwrap_or_default(),
        chunk_ids,
    })
}

/// A reader's wrapped key of a report.
pub struct WrappedKeyRow {
    pub wrapped: Vec<u8>,
    pub wrapper_id: Uuid,
    pub grant_id: Option<Uuid>,
    pub ledger_index: i64,
}

pub async fn wrapped_key(
    conn: &mut sqlx::AnyConnection,
    report: Uuid,
    reader: Uuid,
) -> Result<Option<WrappedKeyRow>, AppError> {
    let row = sqlx::query(
        "SELECT wrapped, wrapper_id, grant_id, ledger_index FROM wrapped_keys WHERE report_id = $1 AND reader_id = $2",
    )
    .bind(report.to_string())
    .bind(reader.to_string())
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let grant: Option<String> = row.try_get("grant_id")?;
    Ok(Some(WrappedKeyRow {
        wrapped: row.try_get("wrapped")?,
        wrapper_id: parse_uuid(&row.try_get::<String, _>("wrapper_id")?)?,
        grant_id: grant.as_deref().map(parse_uuid).transpose()?,
        ledger_index: row.try_get("ledger_index")?,
    }))
}
