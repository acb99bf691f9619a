//! Wire types of break-glass emergency access (issue 16, docs/protocol.md §17).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::hex_bytes;

/// `POST /v1/emergency/team`: an administrator adds a doctor to, or removes them from, the
/// emergency team.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TeamChangeRequest {
    pub user_id: Uuid,
    pub add: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TeamChanged {
    pub ledger_index: u64,
}

/// A member as the server records them, with the kind-11 entry that added them (empty when
/// the server has none: such a member gets no escrowed key from any client).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TeamMember {
    pub user_id: Uuid,
    pub name: String,
    pub email: String,
    pub added_at: DateTime<Utc>,
    pub ledger_index: Option<u64>,
    #[serde(with = "hex_bytes")]
    pub entry: Vec<u8>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TeamList {
    pub members: Vec<TeamMember>,
}

/// `POST /v1/emergency/escrow/{report}`: the author's wraps of a report key to team members.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EscrowDeposit {
    pub wraps: Vec<EscrowWrap>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EscrowWrap {
    pub member_id: Uuid,
    #[serde(with = "hex_bytes")]
    pub wrapped: Vec<u8>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EscrowDone {
    pub stored: u64,
}

/// `POST /v1/emergency`: break the glass on a patient.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EmergencyOpen {
    pub patient_id: Uuid,
    pub reason: String,
}

/// A break-glass request. `status`: `waiting` (the patient may veto until `release_at`),
/// `released` (keys served until `until`), `vetoed`, or `ended`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EmergencyRequest {
    pub id: Uuid,
    pub patient_id: Uuid,
    pub patient_name: String,
    pub reader_id: Uuid,
    pub reader_name: String,
    pub reason: String,
    pub created_at: DateTime<Utc>,
    pub release_at: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub status: String,
    pub report_ids: Vec<Uuid>,
    /// The kind-12 entry recording it.
    pub ledger_index: u64,
    #[serde(with = "hex_bytes")]
    pub entry: Vec<u8>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EmergencyList {
    pub requests: Vec<EmergencyRequest>,
}

/// `GET /v1/emergency/{id}/keys`: the escrowed wraps a released request gives its reader.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EmergencyKeys {
    pub request: EmergencyRequest,
    pub keys: Vec<EmergencyKey>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EmergencyKey {
    pub report_id: Uuid,
    #[serde(with = "hex_bytes")]
    pub wrapped: Vec<u8>,
}
