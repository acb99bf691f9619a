//! The SQL of bookings (visits): doctors' hours, patients' appointments, reception's desk.

use sqlx::Row;
use uuid::Uuid;

use crate::api::{Booking, BookingStatus};
use crate::server::error::AppError;
use crate::server::routes::{ms_to_utc, parse_uuid};

/// The query of what [`booking_from_row`] reads, with the doctor's and the patient's names
/// (a literal, so sqlx sees a static string).
macro_rules! booking_sql {
    ($where:literal) => {
        concat!(
            "SELECT b.id, b.doctor_id, b.patient_id, b.starts_at, b.ends_at, b.status, \
             d.name AS doctor_name, p.name AS patient_name \
             FROM bookings b JOIN users d ON d.id = b.doctor_id JOIN users p ON p.id = b.patient_id ",
            $where
        )
    };
}

fn booking_from_row(r: &sqlx::any::AnyRow) -> Result<Booking, AppError> {
    let status: String = r.try_get("status")?;
    Ok(Booking {
        id: parse_uuid(&r.try_get::<String, _>("id")?)?,
        doctor_id: parse_uuid(&r.try_get::<String, _>("doctor_id")?)?,
        doctor_name: r.try_get("doctor_name")?,
        patient_id: parse_uuid(&r.try_get::<String, _>("patient_id")?)?,
        patient_name: r.try_get("patient_name")?,
        start: ms_to_utc(r.try_get("starts_at")?)?,
        end: ms_to_utc(r.try_get("ends_at")?)?,
        status: BookingStatus::parse(&status).ok_or_else(|| AppError::internal("bad status"))?,
    })
}

/// One booking, whoever may see it (the route checks that).
pub async fn load(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    id: Uuid,
) -> Result<Option<Booking>, AppError> {
    let row = sqlx::query(booking_sql!("WHERE b.id = $1"))
        .bind(id.to_string())
        .fetch_optional(ex)
        .await?;
    row.as_ref().map(booking_from_row).transpose()
}

/// The list's filters: an empty doctor, patient or status matches all; starts in
/// `[from, to)`; at most `limit`, by start.
pub struct ListFilter {
    pub doctor: String,
    pub patient: String,
    pub status: String,
    pub from: i64,
    pub to: i64,
    pub limit: i64,
}

/// Bookings matching `f`, by start time.
pub async fn list(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    f: ListFilter,
) -> Result<Vec<Booking>, AppError> {
    let rows = sqlx::query(booking_sql!(
        "WHERE ($1 = '' OR b.doctor_id = $1) AND ($2 = '' OR b.patient_id = $2) \
         AND ($3 = '' OR b.status = $3) AND b.starts_at >= $4 AND b.starts_at < $5 \
         ORDER BY b.starts_at, b.id LIMIT $6"
    ))
    .bind(f.doctor)
    .bind(f.patient)
    .bind(f.status)
    .bind(f.from)
    .bind(f.to)
    .bind(f.limit)
    .fetch_all(ex)
    .await?;
    rows.iter().map(booking_from_row).collect()
}

/// Whether `id` is an active patient account (reception books only for one).
pub async fn is_active_patient(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    id: Uuid,
) -> Result<bool, AppError> {
    let ok: Option<i64> =
        sqlx::query_scalar("SELECT 1 FROM users WHERE id = $1 AND role = 'patient' AND active = 1")
            .bind(id.to_string())
            .fetch_optional(ex)
            .await?;
    Ok(ok.is_some())
}

/// How many visits `patient` holds (booked or checked in) starting after `after`.
pub async fn upcoming_count(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    patient: Uuid,
    after: i64,
) -> Result<i64, AppError> {
    Ok(sqlx::query_scalar(
        "SELECT COUNT(*) FROM bookings WHERE patient_id = $1 AND status IN ('booked', 'checked_in') \
         AND starts_at > $2",
    )
    .bind(patient.to_string())
    .bind(after)
    .fetch_one(ex)
    .await?)
}

/// A booking as made.
pub struct NewBooking {
    pub id: Uuid,
    pub doctor: Uuid,
    pub patient: Uuid,
    pub start_ms: i64,
    pub end_ms: i64,
    pub booked_by: Uuid,
    pub now: i64,
}

/// Stores a booking. The raw sqlx error, so the route can tell a taken slot (a unique
/// violation) from any other failure.
pub async fn insert(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    b: &NewBooking,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO bookings (id, doctor_id, patient_id, starts_at, ends_at, status, booked_by, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, 'booked', $6, $7, $7)",
    )
    .bind(b.id.to_string())
    .bind(b.doctor.to_string())
    .bind(b.patient.to_string())
    .bind(b.start_ms)
    .bind(b.end_ms)
    .bind(b.booked_by.to_string())
    .bind(b.now)
    .execute(ex)
    .await?;
    Ok(())
}

/// Holds one time quantum for a doctor or patient (`holder`); a unique violation means it
/// is held already. The raw sqlx error, as for [`insert`].
pub async fn hold(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    holder: String,
    quantum: i64,
    booking: Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO booking_holds (holder, quantum, booking_id) VALUES ($1, $2, $3)")
        .bind(holder)
        .bind(quantum)
        .bind(booking.to_string())
        .execute(ex)
        .await?;
    Ok(())
}

/// Moves a booking from status `from` to `to`; false when it was no longer `from`.
pub async fn set_status(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    id: Uuid,
    from: &str,
    to: &str,
    now: i64,
) -> Result<bool, AppError> {
    let res = sqlx::query(
        "UPDATE bookings SET status = $1, updated_at = $2 WHERE id = $3 AND status = $4",
    )
    .bind(to.to_string())
    .bind(now)
    .bind(id.to_string())
    .bind(from.to_string())
    .execute(ex)
    .await?;
    Ok(res.rows_affected() == 1)
}

/// Frees a (cancelled) booking's time.
pub async fn release_holds(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    id: Uuid,
) -> Result<(), AppError> {
    sqlx::query("DELETE FROM booking_holds WHERE booking_id = $1")
        .bind(id.to_string())
        .execute(ex)
        .await?;
    Ok(())
}

/// Whether `doctor` has a booking, not cancelled, with `patient`: the condition for asking.
pub async fn has_booking(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    doctor: Uuid,
    patient: Uuid,
) -> Result<bool, AppError> {
    let booked: Option<i64> = sqlx::query_scalar(
        "SELECT 1 FROM bookings WHERE doctor_id = $1 AND patient_id = $2 AND status <> 'cancelled' LIMIT 1",
    )
    .bind(doctor.to_string())
    .bind(patient.to_string())
    .fetch_optional(ex)
    .await?;
    Ok(booked.is_some())
}
