//! The SQL of the TOTP second factor (issue 15): the sealed secret and its last accepted time
//! step, the login's pending tokens, and the recovery codes' MACs. The route keeps the
//! crypto and the rules; the compare-and-set statements that make a code count once are here
//! unchanged.

use crate::server::error::AppError;

/// `user`'s TOTP row: the sealed secret and when it was confirmed.
pub async fn secret(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    user: &str,
) -> Result<Option<(Vec<u8>, Option<i64>)>, AppError> {
    use sqlx::Row;
    let row = sqlx::query("SELECT secret_sealed, confirmed_at FROM totp WHERE user_id = $1")
        .bind(user.to_string())
        .fetch_optional(ex)
        .await?;
    row.map(|r| {
        Ok((
            r.try_get("secret_sealed")?,
            r.try_get::<Option<i64>, _>("confirmed_at")?,
        ))
    })
    .transpose()
}

/// Drops the pending tokens expired before `now`.
pub async fn purge_pending(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    now: i64,
) -> Result<(), AppError> {
    sqlx::query("DELETE FROM login_pending WHERE expires_at < $1")
        .bind(now)
        .execute(ex)
        .await?;
    Ok(())
}

/// Stores a pending token's hash for `user` after the password step.
pub async fn insert_pending(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    token_hash: Vec<u8>,
    user: &str,
    expires: i64,
) -> Result<(), AppError> {
    sqlx::query("INSERT INTO login_pending (token_hash, user_id, expires_at) VALUES ($1, $2, $3)")
        .bind(token_hash)
        .bind(user.to_string())
        .bind(expires)
        .execute(ex)
        .await?;
    Ok(())
}

/// A pending token's row with its account (`user_id`, `expires_at`, `used_at`, `email`,
/// `role`, `active`).
pub async fn pending(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    token_hash: Vec<u8>,
) -> Result<Option<sqlx::any::AnyRow>, AppError> {
    Ok(sqlx::query(
        "SELECT p.user_id, p.expires_at, p.used_at, u.email, u.role, u.active \
         FROM login_pending p JOIN users u ON u.id = p.user_id WHERE p.token_hash = $1",
    )
    .bind(token_hash)
    .fetch_optional(ex)
    .await?)
}

/// Stores an accepted time step (and confirms a new enrolment) only if it is later than the
/// last one: false when this or a later step was already used.
pub async fn spend_step(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    user: &str,
    step: i64,
    now: i64,
) -> Result<bool, AppError> {
    let done = sqlx::query(
        "UPDATE totp SET last_step = $1, confirmed_at = COALESCE(confirmed_at, $2) \
         WHERE user_id = $3 AND last_step < $1",
    )
    .bind(step)
    .bind(now)
    .bind(user.to_string())
    .execute(ex)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Marks a recovery code used; false when `user` has no such unused code.
pub async fn spend_recovery_code(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    user: &str,
    mac: Vec<u8>,
    now: i64,
) -> Result<bool, AppError> {
    let used = sqlx::query(
        "UPDATE totp_recovery SET used_at = $1 \
         WHERE user_id = $2 AND code_mac = $3 AND used_at IS NULL",
    )
    .bind(now)
    .bind(user.to_string())
    .bind(mac)
    .execute(ex)
    .await?;
    Ok(used.rows_affected() == 1)
}

/// Drops all of `user`'s recovery codes.
pub async fn delete_recovery_codes(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    user: &str,
) -> Result<(), AppError> {
    sqlx::query("DELETE FROM totp_recovery WHERE user_id = $1")
        .bind(user.to_string())
        .execute(ex)
        .await?;
    Ok(())
}

/// Stores one recovery code's MAC.
pub async fn insert_recovery_code(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    user: &str,
    mac: Vec<u8>,
) -> Result<(), AppError> {
    sqlx::query("INSERT INTO totp_recovery (user_id, code_mac) VALUES ($1, $2)")
        .bind(user.to_string())
        .bind(mac)
        .execute(ex)
        .await?;
    Ok(())
}

/// A new unconfirmed secret, replacing an unconfirmed one; false when a confirmed one exists.
pub async fn start_enrolment(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    user: &str,
    sealed: Vec<u8>,
    now: i64,
) -> Result<bool, AppError> {
    let done = sqlx::query(
        "INSERT INTO totp (user_id, secret_sealed, created_at) VALUES ($1, $2, $3) \
         ON CONFLICT (user_id) DO UPDATE SET secret_sealed = $2, created_at = $3, last_step = -1 \
         WHERE totp.confirmed_at IS NULL",
    )
    .bind(user.to_string())
    .bind(sealed)
    .bind(now)
    .execute(ex)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Uses up a pending token; false when it was used meanwhile.
pub async fn use_pending(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    token_hash: Vec<u8>,
    now: i64,
) -> Result<bool, AppError> {
    let used = sqlx::query(
        "UPDATE login_pending SET used_at = $1 WHERE token_hash = $2 AND used_at IS NULL",
    )
    .bind(now)
    .bind(token_hash)
    .execute(ex)
    .await?;
    Ok(used.rows_affected() == 1)
}

/// How many of `user`'s recovery codes are unused.
pub async fn recovery_codes_left(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    user: &str,
) -> Result<i64, AppError> {
    Ok(sqlx::query_scalar(
        "SELECT COUNT(*) FROM totp_recovery WHERE user_id = $1 AND used_at IS NULL",
    )
    .bind(user.to_string())
    .fetch_one(ex)
    .await?)
}

/// Drops `user`'s enrolment.
pub async fn delete_enrolment(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    user: &str,
) -> Result<(), AppError> {
    sqlx::query("DELETE FROM totp WHERE user_id = $1")
        .bind(user.to_string())
        .execute(ex)
        .await?;
    Ok(())
}
