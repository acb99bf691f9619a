//! The SQL of the patient search (reception, and doctors among their own patients).

use sqlx::Row;

use crate::api::PatientSummary;
use crate::server::error::AppError;
use crate::server::routes::parse_uuid;

/// How many active patients match the LIKE pattern on name, email or phone; a non-empty
/// `doctor` keeps only patients with a booking with them.
pub async fn count(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    pat: String,
    doctor: String,
) -> Result<i64, AppError> {
    Ok(sqlx::query_scalar(
        "SELECT COUNT(*) FROM users WHERE role = 'patient' AND active = 1 AND \
         (name_fold LIKE $1 ESCAPE '\\' OR email LIKE $1 ESCAPE '\\' OR phone LIKE $1 ESCAPE '\\') \
         AND ($2 = '' OR id IN (SELECT patient_id FROM bookings WHERE doctor_id = $2))",
    )
    .bind(pat)
    .bind(doctor)
    .fetch_one(ex)
    .await?)
}

/// One page of the patients [`count`] counts, by name.
pub async fn page(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    pat: String,
    doctor: String,
    limit: i64,
    offset: i64,
) -> Result<Vec<PatientSummary>, AppError> {
    let rows = sqlx::query(
        "SELECT id, name, email, phone FROM users WHERE role = 'patient' AND active = 1 AND \
         (name_fold LIKE $1 ESCAPE '\\' OR email LIKE $1 ESCAPE '\\' OR phone LIKE $1 ESCAPE '\\') \
         AND ($4 = '' OR id IN (SELECT patient_id FROM bookings WHERE doctor_id = $4)) \
         ORDER BY name_fold, id LIMIT $2 OFFSET $3",
    )
    .bind(pat)
    .bind(limit)
    .bind(offset)
    .bind(doctor)
    .fetch_all(ex)
    .await?;
    let mut items = Vec::with_capacity(rows.len());
    for r in rows {
        items.push(PatientSummary {
            id: parse_uuid(&r.try_get::<String, _>("id")?)?,
            name: r.try_get("name")?,
            email: r.try_get("email")?,
            phone: r.try_get("phone")?,
        });
    }
    Ok(items)
}
