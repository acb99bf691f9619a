//! The SQL of station orders (issue 16).

use sqlx::Row;
use uuid::Uuid;

use crate::api::OrderInfo;
use crate::server::error::AppError;
use crate::server::ledger_store;
use crate::server::routes::{ms_to_utc, parse_uuid};

const ORDER_SELECT: &str = "SELECT o.id, o.station_id, s.name AS station_name, o.patient_id, \
     p.name AS patient_name, p.email AS patient_email, o.doctor_id, d.name AS doctor_name, \
     o.created_at, o.expires_at, o.ledger_index FROM station_orders o \
     JOIN users s ON s.id = o.station_id JOIN users p ON p.id = o.patient_id \
     JOIN users d ON d.id = o.doctor_id";

async fn order_info(
    conn: &mut sqlx::AnyConnection,
    r: &sqlx::any::AnyRow,
) -> Result<OrderInfo, AppError> {
    let index = u64::try_from(r.try_get::<i64, _>("ledger_index")?).map_err(AppError::internal)?;
    let entry = ledger_store::entry(conn, index)
        .await?
        .ok_or_else(|| AppError::damaged("this order", "order's ledger entry missing"))?;
    Ok(OrderInfo {
        id: parse_uuid(&r.try_get::<String, _>("id")?)?,
        station_id: parse_uuid(&r.try_get::<String, _>("station_id")?)?,
        station_name: r.try_get("station_name")?,
        patient_id: parse_uuid(&r.try_get::<String, _>("patient_id")?)?,
        patient_name: r.try_get("patient_name")?,
        patient_email: r.try_get("patient_email")?,
        doctor_id: parse_uuid(&r.try_get::<String, _>("doctor_id")?)?,
        doctor_name: r.try_get("doctor_name")?,
        created_at: ms_to_utc(r.try_get("created_at")?)?,
        expires_at: ms_to_utc(r.try_get("expires_at")?)?,
        ledger_index: index,
        entry,
    })
}

async fn orders_where(
    conn: &mut sqlx::AnyConnection,
    clause: &str,
    a: String,
    b: i64,
) -> Result<Vec<OrderInfo>, AppError> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "{ORDER_SELECT} WHERE {clause} ORDER BY o.created_at DESC, o.id LIMIT 500"
    )))
    .bind(a)
    .bind(b)
    .fetch_all(&mut *conn)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        out.push(order_info(conn, r).await?);
    }
    Ok(out)
}

/// A station's orders in force at `now`, newest first.
pub async fn open_for_station(
    conn: &mut sqlx::AnyConnection,
    station: Uuid,
    now: i64,
) -> Result<Vec<OrderInfo>, AppError> {
    orders_where(
        conn,
        "o.station_id = $1 AND o.expires_at > $2",
        station.to_string(),
        now,
    )
    .await
}

/// A doctor's orders created after `since`, newest first.
pub async fn by_doctor(
    conn: &mut sqlx::AnyConnection,
    doctor: Uuid,
    since: i64,
) -> Result<Vec<OrderInfo>, AppError> {
    orders_where(
        conn,
        "o.doctor_id = $1 AND o.created_at >= $2",
        doctor.to_string(),
        since,
    )
    .await
}

pub async fn by_id(
    conn: &mut sqlx::AnyConnection,
    id: Uuid,
) -> Result<Option<OrderInfo>, AppError> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "{ORDER_SELECT} WHERE o.id = $1"
    )))
    .bind(id.to_string())
    .fetch_optional(&mut *conn)
    .await?;
    match row {
        Some(r) => Ok(Some(order_info(conn, &r).await?)),
        None => Ok(None),
    }
}

/// The newest order in force at `now` letting `station` upload for `patient`: (order, doctor).
pub async fn open_order(
    conn: &mut sqlx::AnyConnection,
    station: Uuid,
    patient: Uuid,
    now: i64,
) -> Result<Option<(Uuid, Uuid)>, AppError> {
    let row = sqlx::query(
        "SELECT id, doctor_id FROM station_orders WHERE station_id = $1 AND patient_id = $2 \
         AND expires_at > $3 ORDER BY created_at DESC, id LIMIT 1",
    )
    .bind(station.to_string())
    .bind(patient.to_string())
    .bind(now)
    .fetch_optional(&mut *conn)
    .await?;
    row.map(|r| {
        Ok((
            parse_uuid(&r.try_get::<String, _>("id")?)?,
            parse_uuid(&r.try_get::<String, _>("doctor_id")?)?,
        ))
    })
    .transpose()
}

/// Whether order `id` is still in force at `now`.
pub async fn in_force(
    conn: &mut sqlx::AnyConnection,
    id: Uuid,
    now: i64,
) -> Result<bool, AppError> {
    let hit: Option<i64> =
        sqlx::query_scalar("SELECT 1 FROM station_orders WHERE id = $1 AND expires_at > $2")
            .bind(id.to_string())
            .bind(now)
            .fetch_optional(&mut *conn)
            .await?;
    Ok(hit.is_some())
}

/// The order a station's report was made under, and the doctor it is for.
pub async fn report_order(
    conn: &mut sqlx::AnyConnection,
    report: Uuid,
) -> Result<Option<(Uuid, Uuid)>, AppError> {
    let row = sqlx::query("SELECT order_id, for_doctor_id FROM reports WHERE id = $1")
        .bind(report.to_string())
        .fetch_optional(&mut *conn)
        .await?;
    let Some(r) = row else { return Ok(None) };
    let order: Option<String> = r.try_get("order_id")?;
    let doctor: Option<String> = r.try_get("for_doctor_id")?;
    match (order, doctor) {
        (Some(o), Some(d)) => Ok(Some((parse_uuid(&o)?, parse_uuid(&d)?))),
        _ => Ok(None),
    }
}

/// The ids of up to two active station accounts whose id or name is `who` or whose address is
/// `email` (two mean the name is ambiguous).
pub async fn matching(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    who: &str,
    email: String,
) -> Result<Vec<String>, AppError> {
    let rows = sqlx::query(
        "SELECT id FROM users WHERE role = 'station' AND active = 1 AND \
         (id = $1 OR email = $2 OR name = $1) ORDER BY id LIMIT 2",
    )
    .bind(who.to_string())
    .bind(email)
    .fetch_all(ex)
    .await?;
    rows.iter()
        .map(|r| Ok(r.try_get::<String, _>("id")?))
        .collect()
}

/// An order as the doctor made it, with its kind-13 entry.
pub struct NewOrder {
    pub id: Uuid,
    pub station: Uuid,
    pub patient: Uuid,
    pub doctor: Uuid,
    pub now: i64,
    pub expires: i64,
    pub ledger_index: i64,
}

/// Stores an order.
pub async fn insert(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    o: &NewOrder,
) -> Result<(), AppError> {
    sqlx::query(
        "INSERT INTO station_orders (id, station_id, patient_id, doctor_id, created_at, expires_at, ledger_index) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(o.id.to_string())
    .bind(o.station.to_string())
    .bind(o.patient.to_string())
    .bind(o.doctor.to_string())
    .bind(o.now)
    .bind(o.expires)
    .bind(o.ledger_index)
    .execute(ex)
    .await?;
    Ok(())
}
