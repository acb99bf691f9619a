//! The SQL of accounts (DESIGN.md §3): pre-login, email verification, invites, registration,
//! login, sessions' key material, password changes and the first administrator's enrollment
//! code. The route keeps the zero-knowledge rules (MACs, decoys, constant-time compares,
//! rate limits); rows of several columns go back as read, for its `stored_kdf`,
//! `row_public_keys` and friends.

use uuid::Uuid;

use crate::server::error::AppError;

/// An account's KDF inputs (`salt`, `kdf_m`, `kdf_t`, `kdf_p`, `kdf_salt_scheme`).
pub async fn kdf_row(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    email: String,
) -> Result<Option<sqlx::any::AnyRow>, AppError> {
    Ok(
        sqlx::query(
            "SELECT salt, kdf_m, kdf_t, kdf_p, kdf_salt_scheme FROM users WHERE email = $1",
        )
        .bind(email)
        .fetch_optional(ex)
        .await?,
    )
}

/// The KDF parameters in use with how many accounts use each (`kdf_m`, `kdf_t`, `kdf_p`,
/// `n`), in a fixed order: the weights of an unknown address's decoy parameters.
pub async fn kdf_groups(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
) -> Result<Vec<sqlx::any::AnyRow>, AppError> {
    Ok(sqlx::query(
        "SELECT kdf_m, kdf_t, kdf_p, COUNT(*) AS n FROM users GROUP BY kdf_m, kdf_t, kdf_p \
         ORDER BY kdf_m, kdf_t, kdf_p",
    )
    .fetch_all(ex)
    .await?)
}

/// The account holding an address (`id`, `role`, `name`, `active`).
pub async fn owner_of(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    email: String,
) -> Result<Option<sqlx::any::AnyRow>, AppError> {
    Ok(
        sqlx::query("SELECT id, role, name, active FROM users WHERE email = $1")
            .bind(email)
            .fetch_optional(ex)
            .await?,
    )
}

/// Stores an email verification; no code MAC for a taken address (nothing can complete it).
pub async fn insert_verification(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    id: Uuid,
    email: String,
    code_mac: Option<Vec<u8>>,
    now: i64,
    expires: i64,
) -> Result<(), AppError> {
    sqlx::query(
        "INSERT INTO email_verifications (id, email, code_mac, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(id.to_string())
    .bind(email)
    .bind(code_mac)
    .bind(now)
    .bind(expires)
    .execute(ex)
    .await?;
    Ok(())
}

/// Stores a patient's own key-reset code (no administrator).
pub async fn insert_patient_key_reset(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    mac: Vec<u8>,
    user: String,
    now: i64,
    expires: i64,
) -> Result<(), AppError> {
    sqlx::query(
        "INSERT INTO key_resets (code_mac, user_id, admin_id, created_at, expires_at) \
         VALUES ($1, $2, NULL, $3, $4)",
    )
    .bind(mac)
    .bind(user)
    .bind(now)
    .bind(expires)
    .execute(ex)
    .await?;
    Ok(())
}

/// The invite behind a code's MAC (`id`, `email`, `name`, `role`, `specialty`, `bio`,
/// `expires_at`, `used_at`).
pub async fn invite_by_mac(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    mac: Vec<u8>,
) -> Result<Option<sqlx::any::AnyRow>, AppError> {
    Ok(sqlx::query(
        "SELECT id, email, name, role, specialty, bio, expires_at, used_at FROM invites WHERE code_mac = $1",
    )
    .bind(mac)
    .fetch_optional(ex)
    .await?)
}

/// A new account's row.
pub struct NewUserRow {
    pub id: Uuid,
    pub email: String,
    pub name: String,
    pub name_fold: String,
    pub phone: String,
    pub role: &'static str,
    pub auth_mac: Vec<u8>,
    pub salt: Vec<u8>,
    pub kdf_m: i64,
    pub kdf_t: i64,
    pub kdf_p: i64,
    pub x25519: Vec<u8>,
    pub ed25519: Vec<u8>,
    pub bundle: Vec<u8>,
    pub now: i64,
}

/// Stores a new, active account. The raw sqlx error, so the route can tell a taken address
/// or id (a unique violation) from any other failure.
pub async fn insert_user(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    u: NewUserRow,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO users (id, email, name, name_fold, phone, role, auth_mac, salt, kdf_m, kdf_t, kdf_p, \
         x25519_pub, ed25519_pub, bundle, active, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, 1, $15)",
    )
    .bind(u.id.to_string())
    .bind(u.email)
    .bind(u.name)
    .bind(u.name_fold)
    .bind(u.phone)
    .bind(u.role)
    .bind(u.auth_mac)
    .bind(u.salt)
    .bind(u.kdf_m)
    .bind(u.kdf_t)
    .bind(u.kdf_p)
    .bind(u.x25519)
    .bind(u.ed25519)
    .bind(u.bundle)
    .bind(u.now)
    .execute(ex)
    .await?;
    Ok(())
}

/// Records the ledger index of `user`'s current keys (registration, key reset). The raw
/// sqlx error, as for [`insert_user`].
pub async fn set_key_index(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    user: String,
    index: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE users SET key_index = $1 WHERE id = $2")
        .bind(index)
        .bind(user)
        .execute(ex)
        .await?;
    Ok(())
}

/// Whether an account has this id.
pub async fn id_taken(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    id: Uuid,
) -> Result<bool, AppError> {
    let taken: Option<i64> = sqlx::query_scalar("SELECT 1 FROM users WHERE id = $1")
        .bind(id.to_string())
        .fetch_optional(ex)
        .await?;
    Ok(taken.is_some())
}

/// Uses up an invite; false when it was used meanwhile.
pub async fn use_invite(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    id: String,
    now: i64,
) -> Result<bool, AppError> {
    let used = sqlx::query("UPDATE invites SET used_at = $1 WHERE id = $2 AND used_at IS NULL")
        .bind(now)
        .bind(id)
        .execute(ex)
        .await?;
    Ok(used.rows_affected() == 1)
}

/// A new doctor's directory row.
pub async fn insert_doctor(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    user: Uuid,
    specialty: String,
    bio: String,
) -> Result<(), AppError> {
    sqlx::query(
        "INSERT INTO doctors (user_id, specialty, specialty_fold, bio) VALUES ($1, $2, $3, $4)",
    )
    .bind(user.to_string())
    .bind(specialty.clone())
    .bind(specialty.to_lowercase())
    .bind(bio)
    .execute(ex)
    .await?;
    Ok(())
}

/// Uses up the first administrator's enrollment code; false when it is unknown or used.
pub async fn use_admin_code(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    mac: Vec<u8>,
    now: i64,
) -> Result<bool, AppError> {
    let used = sqlx::query(
        "UPDATE admin_enrollment SET used_at = $1 WHERE code_mac = $2 AND used_at IS NULL",
    )
    .bind(now)
    .bind(mac)
    .execute(ex)
    .await?;
    Ok(used.rows_affected() == 1)
}

/// Whether the enrollment code was ever issued.
pub async fn admin_code_known(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    mac: Vec<u8>,
) -> Result<bool, AppError> {
    let known: Option<i64> =
        sqlx::query_scalar("SELECT 1 FROM admin_enrollment WHERE code_mac = $1")
            .bind(mac)
            .fetch_optional(ex)
            .await?;
    Ok(known.is_some())
}

/// An email verification (`email`, `code_mac`, `expires_at`, `tries`, `used_at`).
pub async fn verification(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    id: Uuid,
) -> Result<Option<sqlx::any::AnyRow>, AppError> {
    Ok(sqlx::query(
        "SELECT email, code_mac, expires_at, tries, used_at FROM email_verifications WHERE id = $1",
    )
    .bind(id.to_string())
    .fetch_optional(ex)
    .await?)
}

/// Counts a try on an unused verification below `max` tries, in one statement; the new
/// count, or none when no try is left.
pub async fn charge_verification_try(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    id: Uuid,
    max: i64,
) -> Result<Option<i64>, AppError> {
    Ok(sqlx::query_scalar(
        "UPDATE email_verifications SET tries = tries + 1 \
         WHERE id = $1 AND tries < $2 AND used_at IS NULL RETURNING tries",
    )
    .bind(id.to_string())
    .bind(max)
    .fetch_optional(ex)
    .await?)
}

/// Uses up a verification; false when it was used meanwhile.
pub async fn use_verification(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    id: Uuid,
    now: i64,
) -> Result<bool, AppError> {
    let used = sqlx::query(
        "UPDATE email_verifications SET used_at = $1 WHERE id = $2 AND used_at IS NULL",
    )
    .bind(now)
    .bind(id.to_string())
    .execute(ex)
    .await?;
    Ok(used.rows_affected() == 1)
}

/// What a login compares and needs (`id`, `role`, `auth_mac`, `active`).
pub async fn login_row(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    email: String,
) -> Result<Option<sqlx::any::AnyRow>, AppError> {
    Ok(
        sqlx::query("SELECT id, role, auth_mac, active FROM users WHERE email = $1")
            .bind(email)
            .fetch_optional(ex)
            .await?,
    )
}

/// What a new session's answer carries (`email`, `name`, `role`, `x25519_pub`,
/// `ed25519_pub`, `bundle`, `kdf_m`, `kdf_t`, `kdf_p`).
pub async fn session_row(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    id: &str,
) -> Result<sqlx::any::AnyRow, AppError> {
    Ok(sqlx::query(
        "SELECT email, name, role, x25519_pub, ed25519_pub, bundle, kdf_m, kdf_t, kdf_p \
         FROM users WHERE id = $1",
    )
    .bind(id.to_string())
    .fetch_one(ex)
    .await?)
}

/// The caller's key material with their session's start (`salt`, KDF columns,
/// `kdf_salt_scheme`, both public keys, `bundle`, `created_at`).
pub async fn session_keys_row(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    user: Uuid,
    token_hash: Vec<u8>,
) -> Result<sqlx::any::AnyRow, AppError> {
    Ok(sqlx::query(
        "SELECT u.salt, u.kdf_m, u.kdf_t, u.kdf_p, u.kdf_salt_scheme, u.x25519_pub, u.ed25519_pub, \
         u.bundle, s.created_at \
         FROM users u JOIN sessions s ON s.user_id = u.id WHERE u.id = $1 AND s.token_hash = $2",
    )
    .bind(user.to_string())
    .bind(token_hash)
    .fetch_one(ex)
    .await?)
}

/// The MAC of `user`'s current auth key.
pub async fn auth_mac(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    user: Uuid,
) -> Result<Vec<u8>, AppError> {
    Ok(
        sqlx::query_scalar("SELECT auth_mac FROM users WHERE id = $1")
            .bind(user.to_string())
            .fetch_one(ex)
            .await?,
    )
}

/// What a password change stores: the auth key's MAC, the salt, the KDF parameters and the
/// bundle sealed under the new password.
pub struct NewPassword {
    pub auth_mac: Vec<u8>,
    pub salt: Vec<u8>,
    pub kdf_m: i64,
    pub kdf_t: i64,
    pub kdf_p: i64,
    pub bundle: Vec<u8>,
}

/// Swaps password and bundle only while the auth MAC is still `old_mac`; false when it
/// changed meanwhile.
pub async fn replace_password(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    user: Uuid,
    new: &NewPassword,
    old_mac: Vec<u8>,
) -> Result<bool, AppError> {
    let updated = sqlx::query(
        "UPDATE users SET auth_mac = $1, salt = $2, kdf_m = $3, kdf_t = $4, kdf_p = $5, bundle = $6, \
         kdf_salt_scheme = 2 WHERE id = $7 AND auth_mac = $8",
    )
    .bind(new.auth_mac.clone())
    .bind(new.salt.clone())
    .bind(new.kdf_m)
    .bind(new.kdf_t)
    .bind(new.kdf_p)
    .bind(new.bundle.clone())
    .bind(user.to_string())
    .bind(old_mac)
    .execute(ex)
    .await?;
    Ok(updated.rows_affected() == 1)
}

/// Ends every open session of `user` but the one with `keep` as token hash.
pub async fn end_other_sessions(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    user: Uuid,
    keep: Vec<u8>,
    now: i64,
) -> Result<(), AppError> {
    sqlx::query(
        "UPDATE sessions SET revoked_at = $1 \
         WHERE user_id = $2 AND token_hash <> $3 AND revoked_at IS NULL",
    )
    .bind(now)
    .bind(user.to_string())
    .bind(keep)
    .execute(ex)
    .await?;
    Ok(())
}

/// Whether any administrator account exists.
pub async fn any_admin(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
) -> Result<bool, AppError> {
    let admin: Option<i64> = sqlx::query_scalar("SELECT 1 FROM users WHERE role = 'admin' LIMIT 1")
        .fetch_optional(ex)
        .await?;
    Ok(admin.is_some())
}

/// Drops the unused enrollment codes.
pub async fn clear_admin_codes(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
) -> Result<(), AppError> {
    sqlx::query("DELETE FROM admin_enrollment WHERE used_at IS NULL")
        .execute(ex)
        .await?;
    Ok(())
}

/// Stores an enrollment code's MAC.
pub async fn insert_admin_code(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    mac: Vec<u8>,
    now: i64,
) -> Result<(), AppError> {
    sqlx::query("INSERT INTO admin_enrollment (code_mac, created_at) VALUES ($1, $2)")
        .bind(mac)
        .bind(now)
        .execute(ex)
        .await?;
    Ok(())
}
