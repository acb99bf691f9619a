//! The SQL of break-glass emergency access (issue 16): the team, the escrowed key wraps and
//! the requests. See docs/protocol.md §17.

use sqlx::Row;
use uuid::Uuid;

use crate::api::emergency::EmergencyRequest;
use crate::server::error::AppError;
use crate::server::routes::{ms_to_utc, parse_uuid};

/// How long a released request lets its reader fetch the keys and chunks.
pub const READ_WINDOW_MS: i64 = 60 * 60 * 1000;

/// For the chunk route's one statement: how many released requests of reader `$3` cover
/// report `r` at time `$4` (see [`released_to`]).
pub const RELEASED_COUNT_SQL: &str = "(SELECT COUNT(*) FROM emergency_requests q \
     JOIN emergency_request_reports rr ON rr.request_id = q.id \
     JOIN emergency_team t ON t.user_id = q.reader_id \
     WHERE rr.report_id = r.id AND q.reader_id = $3 AND q.status = 'open' \
     AND q.release_at <= $4 AND q.until_at > $4)";

pub async fn is_member(conn: &mut sqlx::AnyConnection, user: Uuid) -> Result<bool, AppError> {
    let hit: Option<i64> = sqlx::query_scalar("SELECT 1 FROM emergency_team WHERE user_id = $1")
        .bind(user.to_string())
        .fetch_optional(&mut *conn)
        .await?;
    Ok(hit.is_some())
}

/// Whether `user` may read `report` now through a break-glass request: released, not vetoed,
/// inside its window, covering this report, and the reader still on the team.
pub async fn released_to(
    conn: &mut sqlx::AnyConnection,
    report: Uuid,
    user: Uuid,
    now: i64,
) -> Result<bool, AppError> {
    let hit: Option<i64> = sqlx::query_scalar(
        "SELECT 1 FROM emergency_requests q \
         JOIN emergency_request_reports rr ON rr.request_id = q.id \
         JOIN emergency_team t ON t.user_id = q.reader_id \
         WHERE rr.report_id = $1 AND q.reader_id = $2 AND q.status = 'open' \
         AND q.release_at <= $3 AND q.until_at > $3 LIMIT 1",
    )
    .bind(report.to_string())
    .bind(user.to_string())
    .bind(now)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(hit.is_some())
}

/// The columns [`request_row`] reads, from `emergency_requests q`.
pub const REQUEST_SELECT: &str = "SELECT q.id, q.patient_id, q.reader_id, q.reason, q.created_at, \
     q.release_at, q.until_at, q.status, q.ledger_index, p.name AS patient_name, \
     d.name AS reader_name, le.entry AS entry \
     FROM emergency_requests q JOIN users p ON p.id = q.patient_id \
     JOIN users d ON d.id = q.reader_id LEFT JOIN ledger_entries le ON le.idx = q.ledger_index";

/// A request row, its shown status computed at `now`, without its report ids.
pub fn request_row(r: &sqlx::any::AnyRow, now: i64) -> Result<EmergencyRequest, AppError> {
    let release: i64 = r.try_get("release_at")?;
    let until: i64 = r.try_get("until_at")?;
    let stored: String = r.try_get("status")?;
    let status = if stored == "vetoed" {
        "vetoed"
    } else if now < release {
        "waiting"
    } else if now < until {
        "released"
    } else {
        "ended"
    };
    Ok(EmergencyRequest {
        id: parse_uuid(&r.try_get::<String, _>("id")?)?,
        patient_id: parse_uuid(&r.try_get::<String, _>("patient_id")?)?,
        patient_name: r.try_get("patient_name")?,
        reader_id: parse_uuid(&r.try_get::<String, _>("reader_id")?)?,
        reader_name: r.try_get("reader_name")?,
        reason: r.try_get("reason")?,
        created_at: ms_to_utc(r.try_get("created_at")?)?,
        release_at: ms_to_utc(release)?,
        until: ms_to_utc(until)?,
        status: status.into(),
        report_ids: Vec::new(),
        ledger_index: u64::try_from(r.try_get::<i64, _>("ledger_index")?)
            .map_err(AppError::internal)?,
        entry: r
            .try_get::<Option<Vec<u8>>, _>("entry")?
            .unwrap_or_default(),
    })
}

/// The report ids a request covers, as fixed when it was opened.
pub async fn request_reports(
    conn: &mut sqlx::AnyConnection,
    id: Uuid,
) -> Result<Vec<Uuid>, AppError> {
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT report_id FROM emergency_request_reports WHERE request_id = $1 ORDER BY report_id",
    )
    .bind(id.to_string())
    .fetch_all(&mut *conn)
    .await?;
    ids.iter().map(|s| parse_uuid(s)).collect()
}

/// One request with its report ids.
pub async fn load_request(
    conn: &mut sqlx::AnyConnection,
    id: Uuid,
    now: i64,
) -> Result<Option<EmergencyRequest>, AppError> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "{REQUEST_SELECT} WHERE q.id = $1"
    )))
    .bind(id.to_string())
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let mut req = request_row(&row, now)?;
    req.report_ids = request_reports(conn, id).await?;
    Ok(Some(req))
}

/// The committed reports of `patient` whose key is held in escrow for `member`.
pub async fn escrowed_reports(
    conn: &mut sqlx::AnyConnection,
    member: Uuid,
    patient: Uuid,
) -> Result<Vec<Uuid>, AppError> {
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT e.report_id FROM emergency_escrow e JOIN reports r ON r.id = e.report_id \
         WHERE e.member_id = $1 AND r.patient_id = $2 AND r.status = 'committed' \
         ORDER BY e.report_id",
    )
    .bind(member.to_string())
    .bind(patient.to_string())
    .fetch_all(&mut *conn)
    .await?;
    ids.iter().map(|s| parse_uuid(s)).collect()
}

/// The escrowed wraps a request covers, for its reader.
pub async fn request_keys(
    conn: &mut sqlx::AnyConnection,
    request: Uuid,
    reader: Uuid,
) -> Result<Vec<(Uuid, Vec<u8>)>, AppError> {
    let rows = sqlx::query(
        "SELECT rr.report_id, e.wrapped FROM emergency_request_reports rr \
         JOIN emergency_escrow e ON e.report_id = rr.report_id AND e.member_id = $2 \
         WHERE rr.request_id = $1 ORDER BY rr.report_id",
    )
    .bind(request.to_string())
    .bind(reader.to_string())
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok((
                parse_uuid(&r.try_get::<String, _>("report_id")?)?,
                r.try_get::<Vec<u8>, _>("wrapped")?,
            ))
        })
        .collect()
}
