//! Wire types for upload stations and their orders (issue 16).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::hex_bytes;

/// A doctor orders one station to upload for one patient.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrderRequest {
    /// The station account's email, id or exact name (`Lab-1`).
    pub station: String,
    pub patient_id: Uuid,
    /// How long the order stays open; 14 days when left out, at most 90.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub days: Option<u32>,
}

/// An order as its doctor, its station, or a reader of a report made under it sees it; the
/// ledger entry (kind 13) is what a client trusts, the names are for display.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrderInfo {
    pub id: Uuid,
    pub station_id: Uuid,
    pub station_name: String,
    pub patient_id: Uuid,
    pub patient_name: String,
    /// The patient's address, so a station can match a scanner's file name to it.
    pub patient_email: String,
    pub doctor_id: Uuid,
    pub doctor_name: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub ledger_index: u64,
    /// The kind-13 entry's bytes, to check against the ledger.
    #[serde(with = "hex_bytes")]
    pub entry: Vec<u8>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrderList {
    pub orders: Vec<OrderInfo>,
}
