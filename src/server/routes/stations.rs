//! Upload stations (issue 16): a doctor's order lets one station upload reports for one
//! patient for a while. Each order is ledger entry kind 13, so readers check a station's report
//! against it instead of trusting this server's word.

use axum::Json;
use axum::extract::State;
use axum::http::{Method, StatusCode};
use uuid::Uuid;

use super::parse_uuid;
use crate::api::{OrderInfo, OrderList, OrderRequest, Role, codes};
use crate::ledger::Entry;
use crate::server::AppState;
use crate::server::db::now_ms;
use crate::server::error::AppError;
use crate::server::extract::{ApiJson, Caller, PathId};
use crate::server::ledger_store;
use crate::server::policy::{Policy, Route, route};
use crate::server::store::reports::{load_report, may_read};
use crate::server::store::{bookings, stations};

const DOCTOR: &[Role] = &[Role::Doctor];
const DOCTOR_STATION: &[Role] = &[Role::Doctor, Role::Station];
const READERS: &[Role] = &[Role::Patient, Role::Doctor];
const DEFAULT_DAYS: u32 = 14;
const MAX_DAYS: u32 = 90;
const DAY_MS: i64 = 24 * 3600 * 1000;

pub fn routes() -> Vec<Route> {
    vec![
        route(Method::POST, "/v1/orders", Policy::Roles(DOCTOR), create),
        route(
            Method::GET,
            "/v1/orders",
            Policy::Roles(DOCTOR_STATION),
            list,
        ),
        route(
            Method::GET,
            "/v1/reports/{id}/order",
            Policy::Roles(READERS),
            report_order,
        ),
    ]
}

/// A doctor orders a station to upload for a patient they have a booking with (not
/// cancelled): the same patients the doctor may look up.
async fn create(
    State(st): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<OrderRequest>,
) -> Result<Json<OrderInfo>, AppError> {
    let days = req.days.unwrap_or(DEFAULT_DAYS);
    if !(1..=MAX_DAYS).contains(&days) {
        return Err(AppError::bad_request(format!(
            "days: 1 to {MAX_DAYS} (the order's lifetime)"
        )));
    }
    let who = req.station.trim();
    if who.is_empty() || who.len() > 254 {
        return Err(AppError::bad_request(
            "station: the station's email, id or name, like Lab-1",
        ));
    }
    let mut conn = st.db.acquire().await?;
    if !bookings::has_booking(&mut *conn, caller.id, req.patient_id).await? {
        return Err(AppError::new(
            StatusCode::FORBIDDEN,
            codes::NO_VISIT,
            "you can order uploads only for a patient you have a booking with",
        ));
    }
    let rows = stations::matching(&mut *conn, who, who.to_lowercase()).await?;
    let station = match rows.as_slice() {
        [one] => parse_uuid(one)?,
        [] => {
            return Err(AppError::bad_request(format!(
                "station: no active station account {:?}; ask the administrator for the \
                 station's email",
                who.chars().take(80).collect::<String>()
            )));
        }
        _ => {
            return Err(AppError::bad_request(
                "station: more than one station has this name; give its email",
            ));
        }
    };
    drop(conn);
    let id = Uuid::new_v4();
    let now = now_ms();
    let expires = now + i64::from(days) * DAY_MS;
    let mut tx = st.db.begin().await?;
    let index = ledger_store::append(
        &mut tx,
        &st.append_key,
        &Entry::StationOrder {
            time_ms: now,
            order_id: id.into_bytes(),
            station_id: station.into_bytes(),
            patient_id: req.patient_id.into_bytes(),
            doctor_id: caller.id.into_bytes(),
            expires_ms: expires,
        },
        &[
            station.to_string(),
            req.patient_id.to_string(),
            caller.id_str(),
        ],
    )
    .await?;
    stations::insert(
        &mut *tx,
        &stations::NewOrder {
            id,
            station,
            patient: req.patient_id,
            doctor: caller.id,
            now,
            expires,
            ledger_index: index as i64,
        },
    )
    .await?;
    tx.commit().await?;
    tracing::info!(order = %id, ledger_index = index, "station order created");
    let mut conn = st.db.acquire().await?;
    stations::by_id(&mut conn, id)
        .await?
        .map(Json)
        .ok_or_else(|| AppError::internal("order vanished"))
}

/// A station: its orders in force. A doctor: the orders they made in the last 90 days.
async fn list(State(st): State<AppState>, caller: Caller) -> Result<Json<OrderList>, AppError> {
    let mut conn = st.db.acquire().await?;
    let now = now_ms();
    let orders = match caller.role {
        Role::Station => stations::open_for_station(&mut conn, caller.id, now).await?,
        _ => stations::by_doctor(&mut conn, caller.id, now - i64::from(MAX_DAYS) * DAY_MS).await?,
    };
    Ok(Json(OrderList { orders }))
}

/// The order a station's report was made under, for the report's readers; 404 for anyone
/// else and for reports no station wrote.
async fn report_order(
    State(st): State<AppState>,
    caller: Caller,
    PathId(id): PathId,
) -> Result<Json<OrderInfo>, AppError> {
    let mut conn = st.db.acquire().await?;
    let r = load_report(&mut conn, id)
        .await?
        .ok_or_else(|| AppError::not_found("report"))?;
    if !may_read(&mut conn, &r, caller.id).await? {
        return Err(super::reports::unreadable(&r, caller.id));
    }
    let (order, _) = stations::report_order(&mut conn, id)
        .await?
        .ok_or_else(|| AppError::not_found("order"))?;
    stations::by_id(&mut conn, order)
        .await?
        .map(Json)
        .ok_or_else(|| AppError::damaged("this report", "its order is missing"))
}
