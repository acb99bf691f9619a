//! The SQL of break-glass emergency access (issue 16): the team, the escrowed key wraps and
//! the requests. See docs/protocol.md §17.

use sqlx::Row;
use uuid::Uuid;

use crate::api::emergency::{EmergencyRequest, TeamMember};
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

/// Current members, each with the kind-11 entry the server says added them, by name.
pub async fn team(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
) -> Result<Vec<TeamMember>, AppError> {
    let rows = sqlx::query(
        "SELECT t.user_id, t.added_at, t.ledger_index, u.name, u.email, le.entry \
         FROM emergency_team t JOIN users u ON u.id = t.user_id \
         LEFT JOIN ledger_entries le ON le.idx = t.ledger_index ORDER BY u.name_fold, t.user_id",
    )
    .fetch_all(ex)
    .await?;
    let mut members = Vec::with_capacity(rows.len());
    for r in rows {
        members.push(TeamMember {
            user_id: parse_uuid(&r.try_get::<String, _>("user_id")?)?,
            name: r.try_get("name")?,
            email: r.try_get("email")?,
            added_at: ms_to_utc(r.try_get("added_at")?)?,
            ledger_index: r
                .try_get::<Option<i64>, _>("ledger_index")?
                .and_then(|i| u64::try_from(i).ok()),
            entry: r
                .try_get::<Option<Vec<u8>>, _>("entry")?
                .unwrap_or_default(),
        });
    }
    Ok(members)
}

/// A user's `role` and `active`, to check who may join the team.
pub async fn user_role(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    user: Uuid,
) -> Result<Option<sqlx::any::AnyRow>, AppError> {
    Ok(sqlx::query("SELECT role, active FROM users WHERE id = $1")
        .bind(user.to_string())
        .fetch_optional(ex)
        .await?)
}

/// Adds a member, with the kind-11 entry that added them.
pub async fn add_member(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    member: Uuid,
    admin: Uuid,
    now: i64,
    index: i64,
) -> Result<(), AppError> {
    sqlx::query(
        "INSERT INTO emergency_team (user_id, added_by, added_at, ledger_index) VALUES ($1, $2, $3, $4)",
    )
    .bind(member.to_string())
    .bind(admin.to_string())
    .bind(now)
    .bind(index)
    .execute(ex)
    .await?;
    Ok(())
}

/// Removes a member.
pub async fn remove_member(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    member: Uuid,
) -> Result<(), AppError> {
    sqlx::query("DELETE FROM emergency_team WHERE user_id = $1")
        .bind(member.to_string())
        .execute(ex)
        .await?;
    Ok(())
}

/// Drops every wrap held in escrow for a (removed) member.
pub async fn drop_escrow_of(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    member: Uuid,
) -> Result<(), AppError> {
    sqlx::query("DELETE FROM emergency_escrow WHERE member_id = $1")
        .bind(member.to_string())
        .execute(ex)
        .await?;
    Ok(())
}

/// Holds a report key wrapped to a member; an existing wrap is kept. Returns the rows stored
/// (0 or 1).
pub async fn deposit(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    report: Uuid,
    member: Uuid,
    wrapped: Vec<u8>,
    now: i64,
) -> Result<u64, AppError> {
    let done = sqlx::query(
        "INSERT INTO emergency_escrow (report_id, member_id, wrapped, created_at) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (report_id, member_id) DO NOTHING",
    )
    .bind(report.to_string())
    .bind(member.to_string())
    .bind(wrapped)
    .bind(now)
    .execute(ex)
    .await?;
    Ok(done.rows_affected())
}

/// Addresses of the active users of `role` (the administrators, to mail).
pub async fn addresses_of_role(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    role: &str,
) -> Result<Vec<String>, AppError> {
    Ok(
        sqlx::query_scalar("SELECT email FROM users WHERE role = $1 AND active = 1")
            .bind(role.to_string())
            .fetch_all(ex)
            .await?,
    )
}

/// A user's `name`, `email` and `role` (the patient a request is on).
pub async fn user_contact(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    user: Uuid,
) -> Result<Option<sqlx::any::AnyRow>, AppError> {
    Ok(
        sqlx::query("SELECT name, email, role FROM users WHERE id = $1")
            .bind(user.to_string())
            .fetch_optional(ex)
            .await?,
    )
}

/// A request as opened, before its reports.
pub struct NewRequest<'a> {
    pub id: Uuid,
    pub patient: Uuid,
    pub reader: Uuid,
    pub reason: &'a str,
    pub now: i64,
    pub release: i64,
    pub until: i64,
    pub ledger_index: i64,
}

/// Stores an open request.
pub async fn insert_request(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    r: &NewRequest<'_>,
) -> Result<(), AppError> {
    sqlx::query(
        "INSERT INTO emergency_requests (id, patient_id, reader_id, reason, created_at, release_at, \
         until_at, status, ledger_index) VALUES ($1, $2, $3, $4, $5, $6, $7, 'open', $8)",
    )
    .bind(r.id.to_string())
    .bind(r.patient.to_string())
    .bind(r.reader.to_string())
    .bind(r.reason.to_string())
    .bind(r.now)
    .bind(r.release)
    .bind(r.until)
    .bind(r.ledger_index)
    .execute(ex)
    .await?;
    Ok(())
}

/// Adds one report to a request.
pub async fn insert_request_report(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    request: Uuid,
    report: Uuid,
) -> Result<(), AppError> {
    sqlx::query("INSERT INTO emergency_request_reports (request_id, report_id) VALUES ($1, $2)")
        .bind(request.to_string())
        .bind(report.to_string())
        .execute(ex)
        .await?;
    Ok(())
}

/// Whose requests a list shows.
pub enum ListScope {
    All,
    OnPatient(Uuid),
    ByReader(Uuid),
}

/// The newest 500 requests in `scope`, with their report ids, statuses shown at `now`.
pub async fn list_requests(
    conn: &mut sqlx::AnyConnection,
    scope: ListScope,
    now: i64,
) -> Result<Vec<EmergencyRequest>, AppError> {
    let (filter, user) = match scope {
        ListScope::All => ("", None),
        ListScope::OnPatient(u) => (" WHERE q.patient_id = $1", Some(u)),
        ListScope::ByReader(u) => (" WHERE q.reader_id = $1", Some(u)),
    };
    let sql = format!("{REQUEST_SELECT}{filter} ORDER BY q.created_at DESC LIMIT 500");
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    if let Some(u) = user {
        q = q.bind(u.to_string());
    }
    let rows = q.fetch_all(&mut *conn).await?;
    let mut requests = Vec::with_capacity(rows.len());
    for r in rows {
        let mut req = request_row(&r, now)?;
        req.report_ids = request_reports(conn, req.id).await?;
        requests.push(req);
    }
    Ok(requests)
}

/// Vetoes an open request still in its wait; false when it was released (or vetoed).
pub async fn veto(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    id: Uuid,
    now: i64,
) -> Result<bool, AppError> {
    let done = sqlx::query(
        "UPDATE emergency_requests SET status = 'vetoed', vetoed_at = $1 \
         WHERE id = $2 AND status = 'open' AND release_at > $1",
    )
    .bind(now)
    .bind(id.to_string())
    .execute(ex)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// A user's mail address.
pub async fn email(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    user: Uuid,
) -> Result<Option<String>, AppError> {
    Ok(sqlx::query_scalar("SELECT email FROM users WHERE id = $1")
        .bind(user.to_string())
        .fetch_optional(ex)
        .await?)
}
