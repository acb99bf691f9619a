//! The SQL of the recovery kit and the key reset (issue 15): the route checks codes, MACs and
//! rate limits; these functions read and write the rows, in the route's transaction where it
//! has one. Multi-column rows go back as read, for the route (and `auth::row_public_keys`). The password's new row is
//! [`super::auth::NewPassword`], as for a password change.

use uuid::Uuid;

use crate::server::error::AppError;

/// A reset code's row by its MAC (`user_id`, `admin_id`, `expires_at`, `used_at`, and the
/// user's `email`, `name`, `x25519_pub`, `ed25519_pub`).
pub async fn reset_code(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    mac: Vec<u8>,
) -> Result<Option<sqlx::any::AnyRow>, AppError> {
    Ok(sqlx::query(
        "SELECT r.user_id, r.admin_id, r.expires_at, r.used_at, u.email, u.name, \
         u.x25519_pub, u.ed25519_pub FROM key_resets r JOIN users u ON u.id = r.user_id \
         WHERE r.code_mac = $1",
    )
    .bind(mac)
    .fetch_optional(ex)
    .await?)
}

/// Uses up a reset code; false when it was used meanwhile.
pub async fn use_reset_code(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    mac: Vec<u8>,
    now: i64,
) -> Result<bool, AppError> {
    let used =
        sqlx::query("UPDATE key_resets SET used_at = $1 WHERE code_mac = $2 AND used_at IS NULL")
            .bind(now)
            .bind(mac)
            .execute(ex)
            .await?;
    Ok(used.rows_affected() == 1)
}

/// Replaces password, bundle and keys and drops the recovery kit, only while the keys are
/// still `old_*`; false when they changed meanwhile.
pub async fn reset_keys(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    user: &str,
    new: &super::auth::NewPassword,
    x25519: Vec<u8>,
    ed25519: Vec<u8>,
    old_x25519: Vec<u8>,
    old_ed25519: Vec<u8>,
) -> Result<bool, AppError> {
    let updated = sqlx::query(
        "UPDATE users SET auth_mac = $1, salt = $2, kdf_m = $3, kdf_t = $4, kdf_p = $5, \
         bundle = $6, x25519_pub = $7, ed25519_pub = $8, recovery_mac = NULL, \
         recovery_bundle = NULL, kdf_salt_scheme = 2 \
         WHERE id = $9 AND x25519_pub = $10 AND ed25519_pub = $11",
    )
    .bind(new.auth_mac.clone())
    .bind(new.salt.clone())
    .bind(new.kdf_m)
    .bind(new.kdf_t)
    .bind(new.kdf_p)
    .bind(new.bundle.clone())
    .bind(x25519)
    .bind(ed25519)
    .bind(user.to_string())
    .bind(old_x25519)
    .bind(old_ed25519)
    .execute(ex)
    .await?;
    Ok(updated.rows_affected() == 1)
}

/// Ends every open session of `user`.
pub async fn end_sessions(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    user: &str,
    now: i64,
) -> Result<(), AppError> {
    sqlx::query("UPDATE sessions SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL")
        .bind(now)
        .bind(user.to_string())
        .execute(ex)
        .await?;
    Ok(())
}

/// The committed reports whose key is wrapped to `user` as their patient or author.
pub async fn held_reports(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    user: &str,
) -> Result<Vec<String>, AppError> {
    Ok(sqlx::query_scalar(
        "SELECT w.report_id FROM wrapped_keys w JOIN reports r ON r.id = w.report_id \
         WHERE w.reader_id = $1 AND (r.patient_id = $1 OR r.author_id = $1) \
         AND r.status = 'committed'",
    )
    .bind(user.to_string())
    .fetch_all(ex)
    .await?)
}

/// Drops every key wrapped to `user` (to keys no one can open any more).
pub async fn drop_wrapped_keys(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    user: &str,
) -> Result<(), AppError> {
    sqlx::query("DELETE FROM wrapped_keys WHERE reader_id = $1")
        .bind(user.to_string())
        .execute(ex)
        .await?;
    Ok(())
}

/// Puts `user`'s wrapped grants back to approved, for their key holder to wrap again.
pub async fn unwrap_grants(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    user: &str,
) -> Result<(), AppError> {
    sqlx::query(
        "UPDATE grants SET status = 'approved' WHERE reader_id = $1 AND status = 'wrapped'",
    )
    .bind(user.to_string())
    .execute(ex)
    .await?;
    Ok(())
}

/// A re-wrap request (`rewrap = 1`), approved by the key rotation's ledger entry.
pub async fn insert_rewrap(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    report: String,
    user: &str,
    now: i64,
    expires: i64,
    index: i64,
) -> Result<(), AppError> {
    sqlx::query(
        "INSERT INTO grants (id, report_id, reader_id, status, created_at, expires_at, \
         approved_at, approval_index, rewrap) VALUES ($1, $2, $3, 'approved', $4, $5, $4, $6, 1)",
    )
    .bind(Uuid::new_v4().to_string())
    .bind(report)
    .bind(user.to_string())
    .bind(now)
    .bind(expires)
    .bind(index)
    .execute(ex)
    .await?;
    Ok(())
}

/// Stores (or replaces) `user`'s kit, only while the password is still the checked one.
pub async fn set_kit(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    user: Uuid,
    recovery_mac: Vec<u8>,
    recovery_bundle: Vec<u8>,
    auth_mac: Vec<u8>,
) -> Result<(), AppError> {
    sqlx::query(
        "UPDATE users SET recovery_mac = $1, recovery_bundle = $2 WHERE id = $3 AND auth_mac = $4",
    )
    .bind(recovery_mac)
    .bind(recovery_bundle)
    .bind(user.to_string())
    .bind(auth_mac)
    .execute(ex)
    .await?;
    Ok(())
}

/// Clears two rate-limit counters in one statement.
pub async fn clear_limits(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    a: String,
    b: String,
) -> Result<(), AppError> {
    sqlx::query("DELETE FROM rate_limits WHERE key = $1 OR key = $2")
        .bind(a)
        .bind(b)
        .execute(ex)
        .await?;
    Ok(())
}

/// The account behind an address with its kit (`id`, `recovery_mac`, `recovery_bundle`,
/// `x25519_pub`, `ed25519_pub`).
pub async fn kit_by_email(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    email: String,
) -> Result<Option<sqlx::any::AnyRow>, AppError> {
    Ok(sqlx::query(
        "SELECT id, recovery_mac, recovery_bundle, x25519_pub, ed25519_pub FROM users \
         WHERE email = $1",
    )
    .bind(email)
    .fetch_optional(ex)
    .await?)
}

/// A new password under the recovery kit, only while the kit is still `kit`; false when it
/// changed meanwhile.
pub async fn reset_password(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    user: &str,
    new: &super::auth::NewPassword,
    kit: Option<Vec<u8>>,
) -> Result<bool, AppError> {
    let updated = sqlx::query(
        "UPDATE users SET auth_mac = $1, salt = $2, kdf_m = $3, kdf_t = $4, kdf_p = $5, bundle = $6, \
         kdf_salt_scheme = 2 WHERE id = $7 AND recovery_mac = $8",
    )
    .bind(new.auth_mac.clone())
    .bind(new.salt.clone())
    .bind(new.kdf_m)
    .bind(new.kdf_t)
    .bind(new.kdf_p)
    .bind(new.bundle.clone())
    .bind(user.to_string())
    .bind(kit)
    .execute(ex)
    .await?;
    Ok(updated.rows_affected() == 1)
}
