//! The SQL of the administrator's routes: invites, key-reset codes, the user list, account
//! (de)activation and the bookings a deactivated account leaves behind.

use sqlx::Row;
use uuid::Uuid;

use crate::api::{Role, UserInfo};
use crate::server::error::AppError;
use crate::server::routes::parse_uuid;

/// A user's `email`, `name` and `role`.
pub async fn user_contact(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    id: Uuid,
) -> Result<Option<sqlx::any::AnyRow>, AppError> {
    Ok(
        sqlx::query("SELECT email, name, role FROM users WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(ex)
            .await?,
    )
}

/// Stores a key-reset code's MAC for `user`, issued by `admin`.
pub async fn insert_key_reset(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    mac: Vec<u8>,
    user: Uuid,
    admin: Uuid,
    now: i64,
    expires: i64,
) -> Result<(), AppError> {
    sqlx::query(
        "INSERT INTO key_resets (code_mac, user_id, admin_id, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(mac)
    .bind(user.to_string())
    .bind(admin.to_string())
    .bind(now)
    .bind(expires)
    .execute(ex)
    .await?;
    Ok(())
}

/// Whether an account with this (folded) address exists.
pub async fn email_taken(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    email: String,
) -> Result<bool, AppError> {
    let taken: Option<i64> = sqlx::query_scalar("SELECT 1 FROM users WHERE email = $1")
        .bind(email)
        .fetch_optional(ex)
        .await?;
    Ok(taken.is_some())
}

/// An invite as sent, its code MACed.
pub struct NewInvite {
    pub id: Uuid,
    pub code_mac: Vec<u8>,
    pub email: String,
    pub name: String,
    pub role: Role,
    pub specialty: String,
    pub bio: String,
    pub created_by: Uuid,
    pub now: i64,
    pub expires: i64,
}

/// Stores an invite.
pub async fn insert_invite(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    i: NewInvite,
) -> Result<(), AppError> {
    sqlx::query(
        "INSERT INTO invites (id, code_mac, email, name, role, specialty, bio, created_by, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(i.id.to_string())
    .bind(i.code_mac)
    .bind(i.email)
    .bind(i.name)
    .bind(i.role.as_str())
    .bind(i.specialty)
    .bind(i.bio)
    .bind(i.created_by.to_string())
    .bind(i.now)
    .bind(i.expires)
    .execute(ex)
    .await?;
    Ok(())
}

/// How many accounts match the LIKE pattern on name or email.
pub async fn count_users(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    pat: String,
) -> Result<i64, AppError> {
    Ok(sqlx::query_scalar(
        "SELECT COUNT(*) FROM users WHERE name_fold LIKE $1 ESCAPE '\\' OR email LIKE $1 ESCAPE '\\'",
    )
    .bind(pat)
    .fetch_one(ex)
    .await?)
}

/// One page of the accounts [`count_users`] counts, by name.
pub async fn users_page(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    pat: String,
    limit: i64,
    offset: i64,
) -> Result<Vec<UserInfo>, AppError> {
    let rows = sqlx::query(
        "SELECT id, email, name, role, active FROM users \
         WHERE name_fold LIKE $1 ESCAPE '\\' OR email LIKE $1 ESCAPE '\\' \
         ORDER BY name_fold, id LIMIT $2 OFFSET $3",
    )
    .bind(pat)
    .bind(limit)
    .bind(offset)
    .fetch_all(ex)
    .await?;
    let mut items = Vec::with_capacity(rows.len());
    for r in rows {
        let role: String = r.try_get("role")?;
        items.push(UserInfo {
            id: parse_uuid(&r.try_get::<String, _>("id")?)?,
            email: r.try_get("email")?,
            name: r.try_get("name")?,
            role: Role::parse(&role).ok_or_else(|| AppError::internal("bad role"))?,
            active: r.try_get::<i64, _>("active")? != 0,
        });
    }
    Ok(items)
}

/// Sets `users.active` from `from` to `to`; false when it was not `from` (or no such user).
pub async fn flip_active(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    id: Uuid,
    from: i64,
    to: i64,
) -> Result<bool, AppError> {
    let res = sqlx::query("UPDATE users SET active = $1 WHERE id = $2 AND active = $3")
        .bind(to)
        .bind(id.to_string())
        .bind(from)
        .execute(ex)
        .await?;
    Ok(res.rows_affected() != 0)
}

/// Whether the user exists.
pub async fn user_exists(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    id: Uuid,
) -> Result<bool, AppError> {
    let exists: Option<i64> = sqlx::query_scalar("SELECT 1 FROM users WHERE id = $1")
        .bind(id.to_string())
        .fetch_optional(ex)
        .await?;
    Ok(exists.is_some())
}

/// A doctor's future booked visits (`starts_at`, the patient's `email`, `doctor_name`), to
/// tell the patients of a cancellation.
pub async fn future_visits_of_doctor(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    doctor: Uuid,
    now: i64,
) -> Result<Vec<sqlx::any::AnyRow>, AppError> {
    Ok(sqlx::query(
        "SELECT b.starts_at, p.email, d.name AS doctor_name FROM bookings b \
         JOIN users p ON p.id = b.patient_id JOIN users d ON d.id = b.doctor_id \
         WHERE b.doctor_id = $1 AND b.status = 'booked' AND b.starts_at > $2",
    )
    .bind(doctor.to_string())
    .bind(now)
    .fetch_all(ex)
    .await?)
}

/// Cancels every future booked visit of `user`, as doctor or as patient.
pub async fn cancel_future_bookings(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    user: Uuid,
    now: i64,
) -> Result<(), AppError> {
    sqlx::query(
        "UPDATE bookings SET status = 'cancelled', updated_at = $1 \
         WHERE (doctor_id = $2 OR patient_id = $2) AND status = 'booked' AND starts_at > $1",
    )
    .bind(now)
    .bind(user.to_string())
    .execute(ex)
    .await?;
    Ok(())
}

/// Frees the time of `user`'s cancelled bookings.
pub async fn release_cancelled_holds(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    user: Uuid,
) -> Result<(), AppError> {
    sqlx::query(
        "DELETE FROM booking_holds WHERE booking_id IN \
         (SELECT id FROM bookings WHERE (doctor_id = $1 OR patient_id = $1) AND status = 'cancelled')",
    )
    .bind(user.to_string())
    .execute(ex)
    .await?;
    Ok(())
}
