//! The doctor directory, weekly availability and the free slots derived from it.

use std::collections::HashSet;

use axum::Json;
use axum::extract::State;
use axum::http::Method;
use chrono::{Datelike, Duration, NaiveDate, Utc};
use serde::Deserialize;
use sqlx::Row;
use uuid::Uuid;

use super::{PER_PAGE, clean_text, like_pattern, page_offset, parse_uuid};
use crate::api::{Availability, AvailabilityResponse, Doctor, Page, Role, Slot, SlotsResponse};
use crate::seal::PublicKeys;
use crate::server::AppState;
use crate::server::error::AppError;
use crate::server::extract::{ApiJson, ApiQuery, Caller, PathId};
use crate::server::policy::{Policy, Route, route};
use crate::server::schedule::{self, Block};

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
    let total: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM users u JOIN doctors d ON d.user_id = u.id \
         WHERE u.active = 1 AND u.name_fold LIKE $1 ESCAPE '\\' AND d.specialty_fold LIKE $2 ESCAPE '\\'",
    )
    .bind(name.clone())
    .bind(spec.clone())
    .fetch_one(&st.db)
    .await?;
    let rows = sqlx::query(
        "SELECT u.id, u.name, d.specialty, d.bio, u.x25519_pub, u.ed25519_pub \
         FROM users u JOIN doctors d ON d.user_id = u.id \
         WHERE u.active = 1 AND u.name_fold LIKE $1 ESCAPE '\\' AND d.specialty_fold LIKE $2 ESCAPE '\\' \
         ORDER BY u.name_fold, u.id LIMIT $3 OFFSET $4",
    )
    .bind(name)
    .bind(spec)
    .bind(i64::from(PER_PAGE))
    .bind(offset)
    .fetch_all(&st.db)
    .await?;
    let items = rows
        .iter()
        .map(doctor_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Json(Page {
        items,
        page,
        per_page: PER_PAGE,
        total: total.max(0) as u64,
    }))
}

/// An active doctor, or 404.
pub async fn find_doctor(st: &AppState, id: Uuid) -> Result<Doctor, AppError> {
    let row = sqlx::query(
        "SELECT u.id, u.name, d.specialty, d.bio, u.x25519_pub, u.ed25519_pub \
         FROM users u JOIN doctors d ON d.user_id = u.id WHERE u.id = $1 AND u.active = 1",
    )
    .bind(id.to_string())
    .fetch_optional(&st.db)
    .await?
    .ok_or_else(|| AppError::not_found("doctor"))?;
    doctor_from_row(&row)
}

async fn get_one(State(st): State<AppState>, PathId(id): PathId) -> Result<Json<Doctor>, AppError> {
    Ok(Json(find_doctor(&st, id).await?))
}

/// A doctor's template and days off.
pub async fn load_availability(
    st: &AppState,
    id: Uuid,
) -> Result<(Vec<Block>, HashSet<NaiveDate>), AppError> {
    let rows = sqlx::query(
        "SELECT weekday, start_min, end_min, slot_minutes FROM availability WHERE doctor_id = $1 \
         ORDER BY weekday, start_min",
    )
    .bind(id.to_string())
    .fetch_all(&st.db)
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
    let days: Vec<String> =
        sqlx::query_scalar("SELECT day FROM days_off WHERE doctor_id = $1 ORDER BY day")
            .bind(id.to_string())
            .fetch_all(&st.db)
            .await?;
    let days_off = days
        .iter()
        .filter_map(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
        .collect();
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
    let taken_rows = sqlx::query(
        "SELECT starts_at, ends_at FROM bookings \
         WHERE doctor_id = $1 AND status <> 'cancelled' AND ends_at > $2 AND starts_at < $3",
    )
    .bind(id.to_string())
    .bind(lo)
    .bind(hi)
    .fetch_all(&st.db)
    .await?;
    let mut taken = Vec::with_capacity(taken_rows.len());
    for r in taken_rows {
        taken.push((
            r.try_get::<i64, _>("starts_at")?,
            r.try_get::<i64, _>("ends_at")?,
        ));
    }
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
    sqlx::query("DELETE FROM availability WHERE doctor_id = $1")
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM days_off WHERE doctor_id = $1")
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
    for b in &blocks {
        sqlx::query(
            "INSERT INTO availability (doctor_id, weekday, start_min, end_min, slot_minutes) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id.to_string())
        .bind(i64::from(b.weekday))
        .bind(i64::from(b.start_min))
        .bind(i64::from(b.end_min))
        .bind(i64::from(b.slot_minutes))
        .execute(&mut *tx)
        .await?;
    }
    for d in &days_off {
        sqlx::query("INSERT INTO days_off (doctor_id, day) VALUES ($1, $2)")
            .bind(id.to_string())
            .bind(d.format("%Y-%m-%d").to_string())
            .execute(&mut *tx)
            .await?;
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
