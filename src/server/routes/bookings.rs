//! Bookings: a patient books for themselves, reception on a patient's behalf. Double booking
//! and overlapping bookings are refused by unique indexes (`bookings_doctor_slot` and the
//! `booking_holds` quanta), so they hold under any concurrency; see the migration.

use axum::Json;
use axum::extract::State;
use axum::http::{Method, StatusCode};
use chrono::{NaiveDate, Utc};
use serde::Deserialize;
use sqlx::Row;
use uuid::Uuid;

use super::doctors::{find_doctor, load_availability};
use super::{ms_to_utc, parse_uuid};
use crate::api::{BookRequest, Booking, BookingList, BookingStatus, Role, codes};
use crate::server::AppState;
use crate::server::db::now_ms;
use crate::server::error::{AppError, is_unique_violation};
use crate::server::extract::{ApiJson, ApiQuery, Caller, PathId};
use crate::server::policy::{Policy, Route, route};
use crate::server::schedule;

const SEE: &[Role] = &[Role::Patient, Role::Doctor, Role::Reception];
const BOOK: &[Role] = &[Role::Patient, Role::Reception];
const CHECK_IN: &[Role] = &[Role::Reception];
const COMPLETE: &[Role] = &[Role::Doctor];
const NO_SHOW: &[Role] = &[Role::Doctor, Role::Reception];
const LIST_LIMIT: i64 = 500;

pub fn routes() -> Vec<Route> {
    vec![
        route(Method::GET, "/v1/bookings", Policy::Roles(SEE), list),
        route(Method::POST, "/v1/bookings", Policy::Roles(BOOK), create),
        route(
            Method::GET,
            "/v1/bookings/{id}",
            Policy::Roles(SEE),
            get_one,
        ),
        route(
            Method::POST,
            "/v1/bookings/{id}/cancel",
            Policy::Roles(BOOK),
            cancel,
        ),
        route(
            Method::POST,
            "/v1/bookings/{id}/check-in",
            Policy::Roles(CHECK_IN),
            check_in,
        ),
        route(
            Method::POST,
            "/v1/bookings/{id}/complete",
            Policy::Roles(COMPLETE),
            complete,
        ),
        route(
            Method::POST,
            "/v1/bookings/{id}/no-show",
            Policy::Roles(NO_SHOW),
            no_show,
        ),
    ]
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

/// The booking if the caller may see it; otherwise exactly what a missing one answers.
async fn visible(st: &AppState, caller: &Caller, id: Uuid) -> Result<Booking, AppError> {
    let row = sqlx::query(
        "SELECT b.id, b.doctor_id, b.patient_id, b.starts_at, b.ends_at, b.status, \
         d.name AS doctor_name, p.name AS patient_name \
         FROM bookings b JOIN users d ON d.id = b.doctor_id JOIN users p ON p.id = b.patient_id \
         WHERE b.id = $1",
    )
    .bind(id.to_string())
    .fetch_optional(&st.db)
    .await?
    .ok_or_else(|| AppError::not_found("booking"))?;
    let b = booking_from_row(&row)?;
    let ok = match caller.role {
        Role::Patient => b.patient_id == caller.id,
        Role::Doctor => b.doctor_id == caller.id,
        Role::Reception => true,
        Role::Admin | Role::Auditor | Role::Station => false,
    };
    if !ok {
        return Err(AppError::not_found("booking"));
    }
    Ok(b)
}

async fn get_one(
    State(st): State<AppState>,
    caller: Caller,
    PathId(id): PathId,
) -> Result<Json<Booking>, AppError> {
    Ok(Json(visible(&st, &caller, id).await?))
}

#[derive(Deserialize)]
struct ListQuery {
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
    status: Option<String>,
    doctor_id: Option<Uuid>,
    patient_id: Option<Uuid>,
}

fn local_midnight_ms(st: &AppState, d: NaiveDate) -> Result<i64, AppError> {
    use chrono::TimeZone;
    let naive = d
        .and_hms_opt(0, 0, 0)
        .ok_or_else(|| AppError::bad_request("bad date"))?;
    st.tz
        .from_local_datetime(&naive)
        .earliest()
        .map(|t| t.timestamp_millis())
        .ok_or_else(|| AppError::bad_request("date has no midnight in the clinic's time zone"))
}

async fn list(
    State(st): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<BookingList>, AppError> {
    let status = match q.status.as_deref() {
        None | Some("") => String::new(),
        Some(s) => BookingStatus::parse(s)
            .ok_or_else(|| {
                AppError::bad_request("status: booked, checked_in, completed, cancelled or no_show")
            })?
            .as_str()
            .to_string(),
    };
    let from = match q.from {
        Some(d) => local_midnight_ms(&st, d)?,
        None => i64::MIN,
    };
    let to = match q.to.and_then(|d| d.succ_opt()) {
        Some(d) => local_midnight_ms(&st, d)?,
        None => i64::MAX,
    };
    let id_filter = |v: Option<Uuid>| v.map(|u| u.to_string()).unwrap_or_default();
    // Patients and doctors see their own, whatever filter they send.
    let (doctor, patient) = match caller.role {
        Role::Patient => (id_filter(q.doctor_id), caller.id_str()),
        Role::Doctor => (caller.id_str(), id_filter(q.patient_id)),
        _ => (id_filter(q.doctor_id), id_filter(q.patient_id)),
    };
    let rows = sqlx::query(
        "SELECT b.id, b.doctor_id, b.patient_id, b.starts_at, b.ends_at, b.status, \
         d.name AS doctor_name, p.name AS patient_name \
         FROM bookings b JOIN users d ON d.id = b.doctor_id JOIN users p ON p.id = b.patient_id \
         WHERE ($1 = '' OR b.doctor_id = $1) AND ($2 = '' OR b.patient_id = $2) \
         AND ($3 = '' OR b.status = $3) AND b.starts_at >= $4 AND b.starts_at < $5 \
         ORDER BY b.starts_at, b.id LIMIT $6",
    )
    .bind(doctor)
    .bind(patient)
    .bind(status)
    .bind(from)
    .bind(to)
    .bind(LIST_LIMIT)
    .fetch_all(&st.db)
    .await?;
    let items = rows
        .iter()
        .map(booking_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Json(BookingList { items }))
}

fn slot_taken() -> AppError {
    AppError::conflict(
        codes::SLOT_TAKEN,
        "that slot is already taken; pick another",
    )
}

async fn create(
    State(st): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<BookRequest>,
) -> Result<(StatusCode, Json<Booking>), AppError> {
    let patient_id = match caller.role {
        Role::Patient => match req.patient_id {
            None => caller.id,
            Some(p) if p == caller.id => p,
            Some(_) => return Err(AppError::not_found("patient")),
        },
        Role::Reception => {
            let p = req.patient_id.ok_or_else(|| {
                AppError::bad_request("patient_id: required when booking for a patient")
            })?;
            let ok: Option<i64> = sqlx::query_scalar(
                "SELECT 1 FROM users WHERE id = $1 AND role = 'patient' AND active = 1",
            )
            .bind(p.to_string())
            .fetch_optional(&st.db)
            .await?;
            if ok.is_none() {
                return Err(AppError::not_found("patient"));
            }
            p
        }
        _ => return Err(AppError::forbidden("only patients and reception book")),
    };
    let doctor = find_doctor(&st, req.doctor_id).await?;
    let now = Utc::now();
    if req.start <= now {
        return Err(AppError::new(
            StatusCode::BAD_REQUEST,
            codes::IN_THE_PAST,
            "that slot has already begun; pick a later one",
        ));
    }
    let horizon = i64::from(st.config.booking_horizon_days);
    if req.start > now + chrono::Duration::days(horizon) {
        return Err(AppError::new(
            StatusCode::BAD_REQUEST,
            codes::TOO_FAR_AHEAD,
            format!("visits can be booked at most {horizon} days ahead"),
        ));
    }
    // A patient cannot hoard slots; reception books beyond the limit when it must.
    if caller.role == Role::Patient {
        let held: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM bookings WHERE patient_id = $1 AND status IN ('booked', 'checked_in') \
             AND starts_at > $2",
        )
        .bind(patient_id.to_string())
        .bind(now.timestamp_millis())
        .fetch_one(&st.db)
        .await?;
        let max = st.config.max_future_bookings_per_patient;
        if held >= i64::from(max) {
            return Err(AppError::conflict(
                codes::TOO_MANY_BOOKINGS,
                format!(
                    "you already have {held} upcoming visits (at most {max}); cancel one, or ask reception"
                ),
            ));
        }
    }
    let day = req.start.with_timezone(&st.tz).date_naive();
    let (blocks, days_off) = load_availability(&st, doctor.id).await?;
    let end = schedule::slots(&blocks, &days_off, &st.tz, day, day)
        .into_iter()
        .find(|(s, _)| *s == req.start)
        .map(|(_, e)| e)
        .ok_or_else(|| {
            AppError::new(
                StatusCode::BAD_REQUEST,
                codes::NOT_A_SLOT,
                "that time is not one of the doctor's slots",
            )
        })?;
    let id = Uuid::new_v4();
    let (start_ms, end_ms) = (req.start.timestamp_millis(), end.timestamp_millis());
    let now_ms = now_ms();
    let mut tx = st.db.begin().await?;
    // A write comes first, so SQLite takes the write lock at once (and waits for it) instead of
    // failing to upgrade a read.
    let inserted = sqlx::query(
        "INSERT INTO bookings (id, doctor_id, patient_id, starts_at, ends_at, status, booked_by, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, 'booked', $6, $7, $7)",
    )
    .bind(id.to_string())
    .bind(doctor.id.to_string())
    .bind(patient_id.to_string())
    .bind(start_ms)
    .bind(end_ms)
    .bind(caller.id_str())
    .bind(now_ms)
    .execute(&mut *tx)
    .await;
    match inserted {
        Err(e) if is_unique_violation(&e) => return Err(slot_taken()),
        Err(e) => return Err(e.into()),
        Ok(_) => {}
    }
    for (holder, err) in [
        (format!("d:{}", doctor.id), slot_taken as fn() -> AppError),
        (format!("p:{patient_id}"), overlapping as fn() -> AppError),
    ] {
        for q in schedule::quanta(start_ms, end_ms) {
            let res = sqlx::query(
                "INSERT INTO booking_holds (holder, quantum, booking_id) VALUES ($1, $2, $3)",
            )
            .bind(holder.clone())
            .bind(q)
            .bind(id.to_string())
            .execute(&mut *tx)
            .await;
            match res {
                Err(e) if is_unique_violation(&e) => return Err(err()),
                Err(e) => return Err(e.into()),
                Ok(_) => {}
            }
        }
    }
    tx.commit().await?;
    let patient_name: String = sqlx::query_scalar("SELECT name FROM users WHERE id = $1")
        .bind(patient_id.to_string())
        .fetch_one(&st.db)
        .await?;
    tracing::info!(booking = %id, "booked");
    Ok((
        StatusCode::CREATED,
        Json(Booking {
            id,
            doctor_id: doctor.id,
            doctor_name: doctor.name,
            patient_id,
            patient_name,
            start: req.start,
            end,
            status: BookingStatus::Booked,
        }),
    ))
}

fn overlapping() -> AppError {
    AppError::conflict(
        codes::OVERLAPPING_BOOKING,
        "the patient already has a booking at that time",
    )
}

fn invalid_status(b: &Booking, action: &str) -> AppError {
    AppError::conflict(
        codes::INVALID_STATUS,
        format!("cannot {action} a booking that is {}", b.status.as_str()),
    )
}

/// Moves a visible booking from `from` to `to`; `release` frees its time.
async fn transition(
    st: &AppState,
    caller: &Caller,
    id: Uuid,
    from: BookingStatus,
    to: BookingStatus,
    action: &str,
) -> Result<Booking, AppError> {
    let mut b = visible(st, caller, id).await?;
    if caller.role == Role::Doctor && b.doctor_id != caller.id {
        return Err(AppError::not_found("booking"));
    }
    if b.status != from {
        return Err(invalid_status(&b, action));
    }
    let now = Utc::now();
    match to {
        BookingStatus::Cancelled if b.start <= now => {
            return Err(AppError::conflict(
                codes::IN_THE_PAST,
                "the slot has begun; it can no longer be cancelled",
            ));
        }
        BookingStatus::NoShow if b.start > now => {
            return Err(AppError::conflict(
                codes::INVALID_STATUS,
                "a no-show can be recorded only once the slot has begun",
            ));
        }
        BookingStatus::CheckedIn
            if b.start.with_timezone(&st.tz).date_naive()
                != now.with_timezone(&st.tz).date_naive() =>
        {
            return Err(AppError::conflict(
                codes::NOT_YET,
                format!(
                    "check-in is on the visit's day ({})",
                    b.start.with_timezone(&st.tz).format("%Y-%m-%d")
                ),
            ));
        }
        BookingStatus::Completed if b.start > now => {
            return Err(AppError::conflict(
                codes::NOT_YET,
                "a visit can be marked completed only once it has begun",
            ));
        }
        _ => {}
    }
    let mut tx = st.db.begin().await?;
    let res = sqlx::query(
        "UPDATE bookings SET status = $1, updated_at = $2 WHERE id = $3 AND status = $4",
    )
    .bind(to.as_str())
    .bind(now_ms())
    .bind(id.to_string())
    .bind(from.as_str())
    .execute(&mut *tx)
    .await?;
    if res.rows_affected() != 1 {
        // Someone else moved it first.
        return Err(AppError::conflict(
            codes::INVALID_STATUS,
            format!("the booking changed meanwhile; cannot {action} it"),
        ));
    }
    if to == BookingStatus::Cancelled {
        sqlx::query("DELETE FROM booking_holds WHERE booking_id = $1")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    b.status = to;
    Ok(b)
}

async fn cancel(
    State(st): State<AppState>,
    caller: Caller,
    PathId(id): PathId,
) -> Result<Json<Booking>, AppError> {
    let b = transition(
        &st,
        &caller,
        id,
        BookingStatus::Booked,
        BookingStatus::Cancelled,
        "cancel",
    )
    .await?;
    Ok(Json(b))
}

async fn check_in(
    State(st): State<AppState>,
    caller: Caller,
    PathId(id): PathId,
) -> Result<Json<Booking>, AppError> {
    let b = transition(
        &st,
        &caller,
        id,
        BookingStatus::Booked,
        BookingStatus::CheckedIn,
        "check in",
    )
    .await?;
    Ok(Json(b))
}

async fn complete(
    State(st): State<AppState>,
    caller: Caller,
    PathId(id): PathId,
) -> Result<Json<Booking>, AppError> {
    let b = transition(
        &st,
        &caller,
        id,
        BookingStatus::CheckedIn,
        BookingStatus::Completed,
        "complete",
    )
    .await?;
    Ok(Json(b))
}

async fn no_show(
    State(st): State<AppState>,
    caller: Caller,
    PathId(id): PathId,
) -> Result<Json<Booking>, AppError> {
    let b = transition(
        &st,
        &caller,
        id,
        BookingStatus::Booked,
        BookingStatus::NoShow,
        "mark as no-show",
    )
    .await?;
    Ok(Json(b))
}
