//! The doctor directory, weekly availability and the free slots derived from it.

use std::collections::HashSet;

use axum::Json;
use axum::extract::State;
use axum::http::Method;
use chrono::{Datelike, Duration, NaiveDate, Utc};
use serde::Deserialize;
use uuid::Uuid;

use super::{PER_PAGE, clean_text, like_pattern, page_offset};
use crate::api::{Availability, AvailabilityResponse, Doctor, Page, Role, Slot, SlotsResponse};
use crate::server::AppState;
use crate::server::error::AppError;
use crate::server::extract::{ApiJson, ApiQuery, Caller, PathId};
use crate::server::policy::{Policy, Route, route};
use crate::server::schedule::{self, Block};
use crate::server::store::doctors;

/// Who may look doctors up and see their free slots.
const DIRECTORY: &[Role] = &[Role::Patient, Role::Doctor, Role::Reception, Role::Admin];
const AVAILABILITY_READ: &[Role] = &[Role::Doctor, Role::Reception, Role::Admin];
const AVAILABILITY_WRITE: &[Role] = &[Role::Doctor, Role::Admin];
const MAX_RANGE_DAYS: i64 = 62;

pub fn routes() -> Vec<Route> {
    vec![
        route(Method::GET, "/v1/doctors", Policy::Roles(DIRECTORY), list),
        route(
            Method::GET,
            "/v1/doctors/{id}",
            Policy::Roles(DIRECTORY),
            get_one,
        ),
        route(
            Method::GET,
            "/v1/doctors/{id}/slots",
            Policy::Roles(DIRECTORY),
            slots,
        ),
        route(
            Method::GET,
            "/v1/doctors/{id}/availability",
            Policy::Roles(AVAILABILITY_READ),
            get_availability,
        ),
        route(
            Method::PUT,
            "/v1/doctors/{id}/availability",
            Policy::Roles(AVAILABILITY_WRITE),
            put_availability,
        ),
    ]
}

#[derive(Deserialize)]
struct ListQuery {
    q: Option<String>,
    specialty: Option<String>,
    page: Option<u32>,
}

async fn list(
    State(st): State<AppState>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Page<Doctor>>, AppError> {
    let (page, offset) = page_offset(q.page)?;
    let name = like_pattern(&clean_text("q", q.q.as_deref().unwrap_or(""), 100, false)?);
    let spec = like_pattern(&clean_text(
        "specialty",
        q.specialty.as_deref().unwrap_or(""),
        100,
        false,
    )?);
    let total = doctors::count(&st.db, name.clone(), spec.clone()).await?;
    let items = doctors::page(&st.db, name, spec, i64::from(PER_PAGE), offset).await?;
    Ok(Json(Page {
        items,
        page,
        per_page: PER_PAGE,
        total: total.max(0) as u64,
    }))
}

/// An active doctor, or 404.
pub async fn find_doctor(st: &AppState, id: Uuid) -> Result<Doctor, AppError> {
    doctors::active(&st.db, id)
        .await?
        .ok_or_else(|| AppError::not_found("doctor"))
}

async fn get_one(State(st): State<AppState>, PathId(id): PathId) -> Result<Json<Doctor>, AppError> {
    Ok(Json(find_doctor(&st, id).await?))
}

/// A doctor's template and days off.
pub async fn load_availability(
    st: &AppState,
    id: Uuid,
) -> Result<(Vec<Block>, HashSet<NaiveDate>), AppError> {
    let blocks = doctors::blocks(&st.db, id).await?;
    let days_off = doctors::days_off(&st.db, id).await?;
    Ok((blocks, days_off))
}

#[derive(Deserialize)]
struct SlotQuery {
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
}

async fn slots(
    State(st): State<AppState>,
    PathId(id): PathId,
    ApiQuery(q): ApiQuery<SlotQuery>,
) -> Result<Json<SlotsResponse>, AppError> {
    find_doctor(&st, id).await?;
    let today = Utc::now().with_timezone(&st.tz).date_naive();
    let from = q.from.unwrap_or(today).max(today);
    let to = q.to.unwrap_or(from + Duration::days(13));
    if to < from {
        return Err(AppError::bad_request("to: on or after from (and today)"));
    }
    if (to - from).num_days() >= MAX_RANGE_DAYS {
        return Err(AppError::bad_request(format!(
            "at most {MAX_RANGE_DAYS} days at a time"
        )));
    }
    let (blocks, days_off) = load_availability(&st, id).await?;
    let all = schedule::slots(&blocks, &days_off, &st.tz, from, to);
    let closed = closed_days(&blocks, &days_off, from, to);
    let now = Utc::now();
    let (lo, hi) = match (all.first(), all.last()) {
        (Some(a), Some(b)) => (a.0.timestamp_millis(), b.1.timestamp_millis()),
        _ => (0, 0),
    };
    // Taken intervals: anything live of this doctor's that overlaps the range.
    let taken = doctors::taken(&st.db, id, lo, hi).await?;
    let slots = all
        .into_iter()
        .filter(|(s, _)| *s > now)
        .filter(|(s, e)| {
            let (s, e) = (s.timestamp_millis(), e.timestamp_millis());
            !taken.iter().any(|(ts, te)| *ts < e && s < *te)
        })
        .map(|(s, e)| Slot {
            start: s,
            end: e,
            local_start: s
                .with_timezone(&st.tz)
                .format("%a %Y-%m-%d %H:%M")
                .to_string(),
        })
        .collect();
    Ok(Json(SlotsResponse {
        doctor_id: id,
        timezone: st.config.timezone.clone(),
        slots,
        closed,
    }))
}

/// The days of `from..=to` without opening hours: a day off, or a weekday with no block.
fn closed_days(
    blocks: &[Block],
    days_off: &HashSet<NaiveDate>,
    from: NaiveDate,
    to: NaiveDate,
) -> Vec<NaiveDate> {
    from.iter_days()
        .take_while(|d| *d <= to)
        .filter(|d| {
            let wd = d.weekday().num_days_from_monday() as u8;
            days_off.contains(d) || !blocks.iter().any(|b| b.weekday == wd)
        })
        .collect()
}

/// A doctor sees and sets only their own; another doctor's answers like a missing one.
async fn own_or_staff(st: &AppState, caller: &Caller, id: Uuid) -> Result<(), AppError> {
    if caller.role == Role::Doctor && caller.id != id {
        return Err(AppError::not_found("doctor"));
    }
    find_doctor(st, id).await.map(|_| ())
}

async fn get_availability(
    State(st): State<AppState>,
    caller: Caller,
    PathId(id): PathId,
) -> Result<Json<AvailabilityResponse>, AppError> {
    own_or_staff(&st, &caller, id).await?;
    let (blocks, days_off) = load_availability(&st, id).await?;
    let mut days_off: Vec<NaiveDate> = days_off.into_iter().collect();
    days_off.sort();
    Ok(Json(AvailabilityResponse {
        doctor_id: id,
        timezone: st.config.timezone.clone(),
        availability: Availability {
            weekly: blocks.into_iter().map(Block::to_wire).collect(),
            days_off,
        },
    }))
}

async fn put_availability(
    State(st): State<AppState>,
    caller: Caller,
    PathId(id): PathId,
    ApiJson(req): ApiJson<Availability>,
) -> Result<Json<AvailabilityResponse>, AppError> {
    own_or_staff(&st, &caller, id).await?;
    let blocks = schedule::parse_blocks(&req.weekly).map_err(AppError::bad_request)?;
    if req.days_off.len() > schedule::MAX_DAYS_OFF {
        return Err(AppError::bad_request(format!(
            "days_off: at most {}",
            schedule::MAX_DAYS_OFF
        )));
    }
    let days_off: HashSet<NaiveDate> = req.days_off.iter().copied().collect();
    let mut tx = st.db.begin().await?;
    // Existing bookings stay: they hold their time whatever the new template says.
    doctors::clear_blocks(&mut *tx, id).await?;
    doctors::clear_days_off(&mut *tx, id).await?;
    for b in &blocks {
        doctors::insert_block(&mut *tx, id, b).await?;
    }
    for d in &days_off {
        doctors::insert_day_off(&mut *tx, id, d).await?;
    }
    tx.commit().await?;
    let mut days: Vec<NaiveDate> = days_off.into_iter().collect();
    days.sort();
    Ok(Json(AvailabilityResponse {
        doctor_id: id,
        timezone: st.config.timezone.clone(),
        availability: Availability {
            weekly: blocks.into_iter().map(Block::to_wire).collect(),
            days_off: days,
        },
    }))
}
