//! Bookings: a patient books for themselves, reception on a patient's behalf. Double booking
//! and overlapping bookings are refused by unique indexes (`bookings_doctor_slot` and the
//! `booking_holds` quanta), so they hold under any concurrency; see the migration.

use axum::Json;
use axum::extract::State;
use axum::http::{Method, StatusCode};
use chrono::{NaiveDate, Utc};
use serde::Deserialize;
use uuid::Uuid;

use super::doctors::{find_doctor, load_availability};
use crate::api::{BookRequest, Booking, BookingList, BookingStatus, Role, codes};
use crate::server::AppState;
use crate::server::db::now_ms;
use crate::server::error::{AppError, is_unique_violation};
use crate::server::extract::{ApiJson, ApiQuery, Caller, PathId};
use crate::server::policy::{Policy, Route, route};
use crate::server::schedule;
use crate::server::store::bookings;

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

/// The booking if the caller may see it; otherwise exactly what a missing one answers.
async fn visible(st: &AppState, caller: &Caller, id: Uuid) -> Result<Booking, AppError> {
    let b = bookings::load(&st.db, id)
        .await?
        .ok_or_else(|| AppError::not_found("booking"))?;
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
    let items = bookings::list(
        &st.db,
        bookings::ListFilter {
            doctor,
            patient,
            status,
            from,
            to,
            limit: LIST_LIMIT,
        },
    )
    .await?;
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
            if !bookings::is_active_patient(&st.db, p).await? {
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
        let held = bookings::upcoming_count(&st.db, patient_id, now.timestamp_millis()).await?;
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
    let inserted = bookings::insert(
        &mut *tx,
        &bookings::NewBooking {
            id,
            doctor: doctor.id,
            patient: patient_id,
            start_ms,
            end_ms,
            booked_by: caller.id,
            now: now_ms,
        },
    )
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
            let res = bookings::hold(&mut *tx, holder.clone(), q, id).await;
            match res {
                Err(e) if is_unique_violation(&e) => return Err(err()),
                Err(e) => return Err(e.into()),
                Ok(_) => {}
            }
        }
    }
    tx.commit().await?;
    let patient_name = crate::server::store::users::name(&st.db, patient_id).await?;
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
    if !bookings::set_status(&mut *tx, id, from.as_str(), to.as_str(), now_ms()).await? {
        // Someone else moved it first.
        return Err(AppError::conflict(
            codes::INVALID_STATUS,
            format!("the booking changed meanwhile; cannot {action} it"),
        ));
    }
    if to == BookingStatus::Cancelled {
        bookings::release_holds(&mut *tx, id).await?;
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
