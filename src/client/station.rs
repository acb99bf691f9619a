//! Upload stations on the client (issue 16): a station uploads under a doctor's order, checked
//! against the ledger (kind 13) before any key is wrapped, and wraps the report key to the
//! patient and that doctor only. Readers check a station's report against the same entry.

use std::path::Path;

use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::ledger::Ledger;
use super::upload::{UploadOptions, UploadOutcome, UploadTarget, upload_to};
use super::{ApiClient, ClientError, LoggedIn};
use crate::api::{OrderInfo, OrderList, OrderRequest, Role};
use crate::ledger::Entry;

impl ApiClient {
    /// A station: its orders in force. A doctor: the orders they made lately.
    pub async fn orders(&self) -> Result<OrderList, ClientError> {
        self.get("/v1/orders", &[]).await
    }

    pub async fn create_order(&self, req: &OrderRequest) -> Result<OrderInfo, ClientError> {
        self.post("/v1/orders", req).await
    }

    /// The order a station's report was made under (404 for other reports).
    pub async fn report_order(&self, report: Uuid) -> Result<OrderInfo, ClientError> {
        self.get(&format!("/v1/reports/{report}/order"), &[]).await
    }
}

/// Who submitted a station's report and for whom, as the ledger shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StationOrigin {
    pub station_id: Uuid,
    pub station_name: String,
    pub doctor_id: Uuid,
    pub doctor_name: String,
    pub order_id: Uuid,
    pub order_index: u64,
}

impl std::fmt::Display for StationOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "submitted by station {} for Dr {}",
            crate::text::display(&self.station_name),
            crate::text::display(&self.doctor_name)
        )
    }
}

fn ledger_err(what: String) -> ClientError {
    ClientError::Ledger(what)
}

/// The order's kind-13 entry, included in the verified tree and saying what the server's
/// listing says: (time, expiry).
async fn checked_order(ledger: &Ledger, o: &OrderInfo) -> Result<(i64, i64), ClientError> {
    match ledger.checked_entry(o.ledger_index, &o.entry).await? {
        Entry::StationOrder {
            time_ms,
            order_id,
            station_id,
            patient_id,
            doctor_id,
            expires_ms,
        } if order_id == o.id.into_bytes()
            && station_id == o.station_id.into_bytes()
            && patient_id == o.patient_id.into_bytes()
            && doctor_id == o.doctor_id.into_bytes() =>
        {
            Ok((time_ms, expires_ms))
        }
        _ => Err(ledger_err(format!(
            "order {} is not the one the ledger records at entry {}",
            o.id, o.ledger_index
        ))),
    }
}

/// The newest order in force for `patient` (its id or its email), as the server picks it.
pub fn pick_order<'a>(orders: &'a [OrderInfo], patient: &str) -> Option<&'a OrderInfo> {
    let p = patient.trim();
    let now = chrono::Utc::now();
    orders
        .iter()
        .filter(|o| o.expires_at > now)
        .filter(|o| {
            o.patient_id.to_string() == p.to_lowercase() || o.patient_email.eq_ignore_ascii_case(p)
        })
        .max_by_key(|o| (o.created_at, o.id))
}

/// The report id a watch folder uses for a file: the same file (name and content) gives the
/// same id, so a file uploaded before a crash is never uploaded twice.
pub fn file_report_id(station: Uuid, name: &str, content_sha256: &[u8; 32]) -> Uuid {
    let mut h = Sha256::new();
    h.update(b"clinvault/watch-upload/v1\0");
    h.update(station.as_bytes());
    h.update(content_sha256);
    h.update((name.len() as u64).to_be_bytes());
    h.update(name.as_bytes());
    let d = h.finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    uuid::Builder::from_custom_bytes(b).into_uuid()
}

/// Uploads `file` as station `me` under `order`: the order and the doctor's keys are checked
/// against the ledger first, and the report key is wrapped to the patient and the doctor only.
pub async fn upload_for_order(
    client: &ApiClient,
    me: &LoggedIn,
    ledger: &Ledger,
    order: &OrderInfo,
    file: &Path,
    opts: &UploadOptions<'_>,
    report_id: Option<Uuid>,
) -> Result<UploadOutcome, ClientError> {
    if me.login.user.role != Role::Station {
        return Err(ClientError::Refused(
            "only a station uploads under an order".into(),
        ));
    }
    if order.station_id != me.login.user.id {
        return Err(ClientError::Refused(format!(
            "order {} is for another station",
            order.id
        )));
    }
    let (_, expires) = checked_order(ledger, order).await?;
    if expires <= chrono::Utc::now().timestamp_millis() {
        return Err(ClientError::Refused(format!(
            "order {} has expired; ask the doctor for a new one",
            order.id
        )));
    }
    let doctor = ledger
        .user_keys(order.doctor_id, Some(Role::Doctor))
        .await?;
    upload_to(
        client,
        me,
        ledger,
        order.patient_id,
        file,
        opts,
        UploadTarget {
            co_reader: Some((order.doctor_id, doctor.public_keys.x25519)),
            report_id,
        },
    )
    .await
}

/// The terms of a station's order, as its kind-13 entry states them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderTerms {
    pub order_id: Uuid,
    pub doctor_id: Uuid,
    pub expires_ms: i64,
}

/// Why a station's report is not covered by the order offered for it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderRuleError {
    #[error("the order entry is not a station order (ledger kind 13)")]
    NotAnOrder,
    #[error("the order is not for this station and patient")]
    OtherStationOrPatient,
    #[error("the report was committed outside its order's time (order at ledger entry {0})")]
    OutsideOrder(u64),
}

/// The rule every reader of a station's report applies, online (`verify_origin`) and offline
/// (report bundles, docs/protocol.md §16.2): `order` (at ledger index `order_index`) is a kind
/// 13 entry for this station and patient, before the commit (`commit` = its index and time)
/// by ledger index, and in force at the commit's time. The caller checks separately that the
/// entry is in the ledger and that its doctor is registered as a doctor.
pub fn order_rule(
    order: &Entry,
    order_index: u64,
    station: Uuid,
    patient: Uuid,
    commit: (u64, i64),
) -> Result<OrderTerms, OrderRuleError> {
    let Entry::StationOrder {
        order_id,
        station_id,
        patient_id,
        doctor_id,
        expires_ms,
        ..
    } = *order
    else {
        return Err(OrderRuleError::NotAnOrder);
    };
    if station_id != station.into_bytes() || patient_id != patient.into_bytes() {
        return Err(OrderRuleError::OtherStationOrPatient);
    }
    let (commit_index, commit_ms) = commit;
    // Before: by ledger order (entry times need not be monotonic across server processes).
    if !(order_index < commit_index && commit_ms < expires_ms) {
        return Err(OrderRuleError::OutsideOrder(order_index));
    }
    Ok(OrderTerms {
        order_id: Uuid::from_bytes(order_id),
        doctor_id: Uuid::from_bytes(doctor_id),
        expires_ms,
    })
}

/// A reader's check of a report by a station (author role `station`): the order the server
/// names is in the ledger and passes [`order_rule`], and its doctor is a doctor. `commit` is
/// the commit entry's (index, time).
pub async fn verify_origin(
    client: &ApiClient,
    ledger: &Ledger,
    report: Uuid,
    station: &crate::api::UserKeys,
    patient: Uuid,
    commit: (u64, i64),
) -> Result<StationOrigin, ClientError> {
    let o = client.report_order(report).await?;
    checked_order(ledger, &o).await?;
    let entry = Entry::from_bytes(&o.entry).map_err(|e| ledger_err(e.to_string()))?;
    let terms = order_rule(&entry, o.ledger_index, station.user_id, patient, commit).map_err(
        |e| match e {
            OrderRuleError::OtherStationOrPatient => ledger_err(format!(
                "report {report} was submitted by a station, but the order the server names is \
                 not for this station and patient"
            )),
            e => ledger_err(format!("report {report}: {e}")),
        },
    )?;
    let doctor = ledger
        .user_keys(terms.doctor_id, Some(Role::Doctor))
        .await?;
    Ok(StationOrigin {
        station_id: station.user_id,
        station_name: station.name.clone(),
        doctor_id: terms.doctor_id,
        doctor_name: doctor.name,
        order_id: terms.order_id,
        order_index: o.ledger_index,
    })
}
