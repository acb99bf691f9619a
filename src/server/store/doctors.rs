//! The SQL of the doctor directory and of doctors' weekly availability and days off.

use std::collections::HashSet;

use chrono::NaiveDate;
use sqlx::Row;
use uuid::Uuid;

use crate::api::Doctor;
use crate::seal::PublicKeys;
use crate::server::error::AppError;
use crate::server::routes::parse_uuid;
use crate::server::schedule::Block;

fn doctor_from_row(r: &sqlx::any::AnyRow) -> Result<Doctor, AppError> {
    let x: Vec<u8> = r.try_get("x25519_pub")?;
    let e: Vec<u8> = r.try_get("ed25519_pub")?;
    Ok(Doctor {
        id: parse_uuid(&r.try_get::<String, _>("id")?)?,
        name: r.try_get("name")?,
        specialty: r.try_get("specialty")?,
        bio: r.try_get("bio")?,
        public_keys: PublicKeys {
            x25519: x.try_into().map_err(|_| AppError::internal("bad key"))?,
            ed25519: e.try_into().map_err(|_| AppError::internal("bad key"))?,
        },
    })
}

/// How many active doctors match the LIKE patterns on name and specialty.
pub async fn count(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    name: String,
    spec: String,
) -> Result<i64, AppError> {
    Ok(sqlx::query_scalar(
        "SELECT COUNT(*) FROM users u JOIN doctors d ON d.user_id = u.id \
         WHERE u.active = 1 AND u.name_fold LIKE $1 ESCAPE '\\' AND d.specialty_fold LIKE $2 ESCAPE '\\'",
    )
    .bind(name)
    .bind(spec)
    .fetch_one(ex)
    .await?)
}

/// One page of the active doctors matching the LIKE patterns, by name.
pub async fn page(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    name: String,
    spec: String,
    limit: i64,
    offset: i64,
) -> Result<Vec<Doctor>, AppError> {
    let rows = sqlx::query(
        "SELECT u.id, u.name, d.specialty, d.bio, u.x25519_pub, u.ed25519_pub \
         FROM users u JOIN doctors d ON d.user_id = u.id \
         WHERE u.active = 1 AND u.name_fold LIKE $1 ESCAPE '\\' AND d.specialty_fold LIKE $2 ESCAPE '\\' \
         ORDER BY u.name_fold, u.id LIMIT $3 OFFSET $4",
    )
    .bind(name)
    .bind(spec)
    .bind(limit)
    .bind(offset)
    .fetch_all(ex)
    .await?;
    rows.iter().map(doctor_from_row).collect()
}

/// An active doctor.
pub async fn active(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    id: Uuid,
) -> Result<Option<Doctor>, AppError> {
    let row = sqlx::query(
        "SELECT u.id, u.name, d.specialty, d.bio, u.x25519_pub, u.ed25519_pub \
         FROM users u JOIN doctors d ON d.user_id = u.id WHERE u.id = $1 AND u.active = 1",
    )
    .bind(id.to_string())
    .fetch_optional(ex)
    .await?;
    row.as_ref().map(doctor_from_row).transpose()
}

/// A doctor's weekly template, by weekday and start.
pub async fn blocks(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    id: Uuid,
) -> Result<Vec<Block>, AppError> {
    let rows = sqlx::query(
        "SELECT weekday, start_min, end_min, slot_minutes FROM availability WHERE doctor_id = $1 \
         ORDER BY weekday, start_min",
    )
    .bind(id.to_string())
    .fetch_all(ex)
    .await?;
    let mut blocks = Vec::with_capacity(rows.len());
    for r in rows {
        let n = |c: &str| -> Result<u32, AppError> {
            u32::try_from(r.try_get::<i64, _>(c)?).map_err(AppError::internal)
        };
        blocks.push(Block {
            weekday: n("weekday")? as u8,
            start_min: n("start_min")?,
            end_min: n("end_min")?,
            slot_minutes: n("slot_minutes")?,
        });
    }
    Ok(blocks)
}

/// A doctor's days off (a stored day that does not parse is skipped).
pub async fn days_off(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    id: Uuid,
) -> Result<HashSet<NaiveDate>, AppError> {
    let days: Vec<String> =
        sqlx::query_scalar("SELECT day FROM days_off WHERE doctor_id = $1 ORDER BY day")
            .bind(id.to_string())
            .fetch_all(ex)
            .await?;
    Ok(days
        .iter()
        .filter_map(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
        .collect())
}

/// The (start, end) of a doctor's live bookings overlapping `[lo, hi)`.
pub async fn taken(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    id: Uuid,
    lo: i64,
    hi: i64,
) -> Result<Vec<(i64, i64)>, AppError> {
    let rows = sqlx::query(
        "SELECT starts_at, ends_at FROM bookings \
         WHERE doctor_id = $1 AND status <> 'cancelled' AND ends_at > $2 AND starts_at < $3",
    )
    .bind(id.to_string())
    .bind(lo)
    .bind(hi)
    .fetch_all(ex)
    .await?;
    let mut taken = Vec::with_capacity(rows.len());
    for r in rows {
        taken.push((
            r.try_get::<i64, _>("starts_at")?,
            r.try_get::<i64, _>("ends_at")?,
        ));
    }
    Ok(taken)
}

/// Drops a doctor's weekly template.
pub async fn clear_blocks(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    id: Uuid,
) -> Result<(), AppError> {
    sqlx::query("DELETE FROM availability WHERE doctor_id = $1")
        .bind(id.to_string())
        .execute(ex)
        .await?;
    Ok(())
}

/// Drops a doctor's days off.
pub async fn clear_days_off(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    id: Uuid,
) -> Result<(), AppError> {
    sqlx::query("DELETE FROM days_off WHERE doctor_id = $1")
        .bind(id.to_string())
        .execute(ex)
        .await?;
    Ok(())
}

/// Adds one block to a doctor's template.
pub async fn insert_block(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    id: Uuid,
    b: &Block,
) -> Result<(), AppError> {
    sqlx::query(
        "INSERT INTO availability (doctor_id, weekday, start_min, end_min, slot_minutes) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(id.to_string())
    .bind(i64::from(b.weekday))
    .bind(i64::from(b.start_min))
    .bind(i64::from(b.end_min))
    .bind(i64::from(b.slot_minutes))
    .execute(ex)
    .await?;
    Ok(())
}

/// Adds one day off.
pub async fn insert_day_off(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    id: Uuid,
    day: &NaiveDate,
) -> Result<(), AppError> {
    sqlx::query("INSERT INTO days_off (doctor_id, day) VALUES ($1, $2)")
        .bind(id.to_string())
        .bind(day.format("%Y-%m-%d").to_string())
        .execute(ex)
        .await?;
    Ok(())
}
