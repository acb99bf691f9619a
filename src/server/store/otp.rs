//! The SQL of one-time codes (DESIGN.md §5): issuing, charging a try, using, resending and
//! listing. The route keeps the rules (limits, constant-time compare, what to tell whom); the
//! rows of several columns go back to it as read, for it to interpret.

use uuid::Uuid;

use crate::server::error::AppError;

/// A code request to store, its code already MACed.
pub struct NewRequest<'a> {
    pub id: Uuid,
    pub purpose: &'a str,
    pub report_id: Uuid,
    pub grant_id: Option<Uuid>,
    pub user_id: Uuid,
    pub patient_id: Uuid,
    pub code_mac: Vec<u8>,
    pub now: i64,
    pub expires_at: i64,
}

/// Stores a new code request with no tries yet.
pub async fn insert_request(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    r: &NewRequest<'_>,
) -> Result<(), AppError> {
    sqlx::query(
        "INSERT INTO otp_requests (id, purpose, report_id, grant_id, user_id, patient_id, code_mac, \
         created_at, expires_at, tries) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 0)",
    )
    .bind(r.id.to_string())
    .bind(r.purpose.to_string())
    .bind(r.report_id.to_string())
    .bind(r.grant_id.map(|g| g.to_string()))
    .bind(r.user_id.to_string())
    .bind(r.patient_id.to_string())
    .bind(r.code_mac.clone())
    .bind(r.now)
    .bind(r.expires_at)
    .execute(ex)
    .await?;
    Ok(())
}

/// A user's mail address. The raw sqlx error, since the mailer logs it and goes on.
pub async fn email(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    user: Uuid,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT email FROM users WHERE id = $1")
        .bind(user.to_string())
        .fetch_optional(ex)
        .await
}

/// The state of `user`'s request (`expires_at`, `tries`, `total_tries`, `used_at`), to say
/// why a try was not charged; none for another account's request.
pub async fn request_state(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    id: Uuid,
    user: Uuid,
) -> Result<Option<sqlx::any::AnyRow>, AppError> {
    Ok(sqlx::query(
        "SELECT expires_at, tries, total_tries, used_at FROM otp_requests WHERE id = $1 AND user_id = $2",
    )
    .bind(id.to_string())
    .bind(user.to_string())
    .fetch_optional(ex)
    .await?)
}

/// `user`'s other live requests (`id`, `purpose`, `code_mac`, `author_name`,
/// `report_created`), newest 50, to tell whether a wrong code is one of theirs.
pub async fn other_live_requests(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    user: Uuid,
    except: Uuid,
    now: i64,
    max_tries: i64,
) -> Result<Vec<sqlx::any::AnyRow>, AppError> {
    Ok(sqlx::query(
        "SELECT o.id, o.purpose, o.code_mac, u.name AS author_name, r.created_at AS report_created \
         FROM otp_requests o JOIN reports r ON r.id = o.report_id JOIN users u ON u.id = r.author_id \
         WHERE o.user_id = $1 AND o.id <> $2 AND o.used_at IS NULL AND o.expires_at > $3 \
         AND o.tries < $4 ORDER BY o.created_at DESC LIMIT 50",
    )
    .bind(user.to_string())
    .bind(except.to_string())
    .bind(now)
    .bind(max_tries)
    .fetch_all(ex)
    .await?)
}

/// Counts a try on `user`'s live request in one statement, before any comparison, and
/// returns what the check needs (`purpose`, `report_id`, `grant_id`, `patient_id`,
/// `code_mac`, `tries`, `total_tries`); none when no try could be charged.
pub async fn charge_try(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    id: Uuid,
    user: Uuid,
    now: i64,
    max_tries: i64,
) -> Result<Option<sqlx::any::AnyRow>, AppError> {
    Ok(sqlx::query(
        "UPDATE otp_requests SET tries = tries + 1, total_tries = total_tries + 1 \
         WHERE id = $1 AND user_id = $2 AND used_at IS NULL AND expires_at > $3 AND tries < $4 \
         RETURNING purpose, report_id, grant_id, patient_id, code_mac, tries, total_tries",
    )
    .bind(id.to_string())
    .bind(user.to_string())
    .bind(now)
    .bind(max_tries)
    .fetch_optional(ex)
    .await?)
}

/// Gives back a try charged by [`charge_try`].
pub async fn refund_try(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    id: Uuid,
) -> Result<(), AppError> {
    sqlx::query(
        "UPDATE otp_requests SET tries = tries - 1, total_tries = total_tries - 1 \
         WHERE id = $1 AND tries > 0",
    )
    .bind(id.to_string())
    .execute(ex)
    .await?;
    Ok(())
}

/// Marks the request used at `now`; false when it was used or expired meanwhile.
pub async fn mark_used(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    id: Uuid,
    now: i64,
) -> Result<bool, AppError> {
    let used = sqlx::query(
        "UPDATE otp_requests SET used_at = $1 WHERE id = $2 AND used_at IS NULL AND expires_at > $1",
    )
    .bind(now)
    .bind(id.to_string())
    .execute(ex)
    .await?;
    Ok(used.rows_affected() == 1)
}

/// Releases a report to its patient, once.
pub async fn release_report(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    report: Uuid,
    now: i64,
) -> Result<(), AppError> {
    sqlx::query("UPDATE reports SET released_at = $1 WHERE id = $2 AND released_at IS NULL")
        .bind(now)
        .bind(report.to_string())
        .execute(ex)
        .await?;
    Ok(())
}

/// A report's author id, as stored.
pub async fn report_author(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    report: Uuid,
) -> Result<String, AppError> {
    Ok(
        sqlx::query_scalar("SELECT author_id FROM reports WHERE id = $1")
            .bind(report.to_string())
            .fetch_one(ex)
            .await?,
    )
}

/// A grant's expiry (ms).
pub async fn grant_expiry(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    grant: Uuid,
) -> Result<i64, AppError> {
    Ok(
        sqlx::query_scalar("SELECT expires_at FROM grants WHERE id = $1")
            .bind(grant.to_string())
            .fetch_one(ex)
            .await?,
    )
}

/// Approves a requested, unexpired grant by code; false when it was not.
pub async fn approve_grant(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    grant: Uuid,
    now: i64,
    index: i64,
) -> Result<bool, AppError> {
    let approved = sqlx::query(
        "UPDATE grants SET status = 'approved', how = 1, approved_at = $1, approval_index = $2 \
         WHERE id = $3 AND status = 'requested' AND expires_at > $1",
    )
    .bind(now)
    .bind(index)
    .bind(grant.to_string())
    .execute(ex)
    .await?;
    Ok(approved.rows_affected() == 1)
}

/// The query of what the route's `pending_row` reads, for the list and the resend (a
/// literal, so sqlx sees a static string).
macro_rules! pending_sql {
    ($where:literal) => {
        concat!(
            "SELECT o.id, o.purpose, o.report_id, o.grant_id, o.expires_at, o.tries, \
             o.created_at AS asked_at, u.name AS author_name, r.created_at AS report_created, \
             r.plaintext_len FROM otp_requests o JOIN reports r ON r.id = o.report_id \
             JOIN users u ON u.id = r.author_id ",
            $where
        )
    };
}

/// `user`'s codes waiting to be entered at `now`, newest 50.
pub async fn pending_for(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    user: Uuid,
    now: i64,
    max_tries: i64,
) -> Result<Vec<sqlx::any::AnyRow>, AppError> {
    Ok(sqlx::query(pending_sql!(
        "WHERE o.user_id = $1 AND o.used_at IS NULL AND o.expires_at > $2 \
         AND o.tries < $3 ORDER BY o.created_at DESC LIMIT 50"
    ))
    .bind(user.to_string())
    .bind(now)
    .bind(max_tries)
    .fetch_all(ex)
    .await?)
}

/// One request in the pending list's columns.
pub async fn pending_one(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    id: Uuid,
) -> Result<sqlx::any::AnyRow, AppError> {
    Ok(sqlx::query(pending_sql!("WHERE o.id = $1"))
        .bind(id.to_string())
        .fetch_one(ex)
        .await?)
}

/// Who enters a request's code and whose it is (`user_id`, `patient_id`, `used_at`).
pub async fn request_owner(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    id: Uuid,
) -> Result<Option<sqlx::any::AnyRow>, AppError> {
    Ok(
        sqlx::query("SELECT user_id, patient_id, used_at FROM otp_requests WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(ex)
            .await?,
    )
}

/// The limits a resend is held to.
pub struct ResendLimits {
    /// Tries a fresh code does not give back (`MAX_TOTAL_TRIES - MAX_TRIES`).
    pub kept_tries: i64,
    pub max_resends: i64,
    pub max_total_tries: i64,
}

/// Puts a new code on an unused request within its limits; false when none was left.
pub async fn resend(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    id: Uuid,
    code_mac: Vec<u8>,
    now: i64,
    expires_at: i64,
    limits: &ResendLimits,
) -> Result<bool, AppError> {
    let resent = sqlx::query(
        "UPDATE otp_requests SET code_mac = $1, created_at = $2, expires_at = $3, \
         resends = resends + 1, \
         tries = CASE WHEN total_tries > $5 THEN total_tries - $5 ELSE 0 END \
         WHERE id = $4 AND used_at IS NULL AND resends < $6 AND total_tries < $7",
    )
    .bind(code_mac)
    .bind(now)
    .bind(expires_at)
    .bind(id.to_string())
    .bind(limits.kept_tries)
    .bind(limits.max_resends)
    .bind(limits.max_total_tries)
    .execute(ex)
    .await?;
    Ok(resent.rows_affected() == 1)
}
