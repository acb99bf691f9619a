//! Wire types shared by the client and the server (DESIGN.md §8): JSON over HTTP under `/v1`.
//!
//! Byte strings travel as lowercase hex, ids as UUIDs, instants as RFC 3339 in UTC,
//! calendar days as `YYYY-MM-DD` and times of day as `HH:MM` in the clinic's time zone.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::seal::{KdfParams, PublicKeys};

/// Every error answer: `{ "error": { "code", "message" } }`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
}

/// Stable error codes. The client matches on these, never on messages.
pub mod codes {
    pub const BAD_REQUEST: &str = "bad_request";
    pub const MALFORMED_JSON: &str = "malformed_json";
    pub const UNSUPPORTED_MEDIA_TYPE: &str = "unsupported_media_type";
    pub const BODY_TOO_LARGE: &str = "body_too_large";
    pub const UNAUTHENTICATED: &str = "unauthenticated";
    pub const SESSION_EXPIRED: &str = "session_expired";
    pub const SESSION_REVOKED: &str = "session_revoked";
    pub const INVALID_CREDENTIALS: &str = "invalid_credentials";
    pub const ACCOUNT_DEACTIVATED: &str = "account_deactivated";
    pub const FORBIDDEN: &str = "forbidden";
    pub const NOT_FOUND: &str = "not_found";
    pub const METHOD_NOT_ALLOWED: &str = "method_not_allowed";
    pub const RATE_LIMITED: &str = "rate_limited";
    pub const CODE_INVALID: &str = "code_invalid";
    pub const CODE_USED: &str = "code_used";
    pub const CODE_EXPIRED: &str = "code_expired";
    pub const ID_TAKEN: &str = "id_taken";
    pub const KDF_PARAMS: &str = "kdf_params";
    pub const SLOT_TAKEN: &str = "slot_taken";
    pub const OVERLAPPING_BOOKING: &str = "overlapping_booking";
    pub const NOT_A_SLOT: &str = "not_a_slot";
    pub const IN_THE_PAST: &str = "in_the_past";
    /// Booking beyond `booking_horizon_days`.
    pub const TOO_FAR_AHEAD: &str = "too_far_ahead";
    /// A patient already holds `max_future_bookings_per_patient` future visits.
    pub const TOO_MANY_BOOKINGS: &str = "too_many_bookings";
    /// Check-in before the visit's day, completion before its start.
    pub const NOT_YET: &str = "not_yet";
    /// Issue 16: break-glass by a doctor not on the emergency team (403).
    pub const NOT_ON_TEAM: &str = "not_on_team";
    pub const INVALID_STATUS: &str = "invalid_status";
    pub const CONFLICT: &str = "conflict";
    pub const TIMEOUT: &str = "timeout";
    pub const INTERNAL: &str = "internal";
    /// The server's records are inconsistent (e.g. a ledger entry is missing).
    pub const DAMAGED: &str = "damaged";
    pub const CODE_LOCKED: &str = "code_locked";
    /// The code entered is the one of another of the caller's pending requests (no try is
    /// charged; the message names that request).
    pub const CODE_FOR_OTHER_REQUEST: &str = "code_for_other_request";
    /// A code request's code was resent as often as its life allows.
    pub const TOO_MANY_RESENDS: &str = "too_many_resends";
    pub const CHUNK_MISMATCH: &str = "chunk_mismatch";
    pub const MISSING_CHUNKS: &str = "missing_chunks";
    pub const BAD_COMMIT: &str = "bad_commit";
    pub const REPORT_NOT_OPEN: &str = "report_not_open";
    pub const NO_VISIT: &str = "no_visit";
    /// Issue 16: a station has no open order from a doctor for this patient.
    pub const NO_ORDER: &str = "no_order";
    pub const NOT_APPROVED: &str = "not_approved";
    /// The report is not yet released to its patient (they have not entered the mailed code).
    pub const NOT_RELEASED: &str = "not_released";
    pub const STORAGE: &str = "storage";
    /// The database (or a bucket) cannot be reached just now; retry after `Retry-After`.
    pub const UNAVAILABLE: &str = "unavailable";
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Patient,
    Doctor,
    Reception,
    Admin,
    Auditor,
    /// Issue 16: a write-only upload station (lab, scanner).
    Station,
}

impl Role {
    pub const ALL: [Role; 6] = [
        Role::Patient,
        Role::Doctor,
        Role::Reception,
        Role::Admin,
        Role::Auditor,
        Role::Station,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Patient => "patient",
            Role::Doctor => "doctor",
            Role::Reception => "reception",
            Role::Admin => "admin",
            Role::Auditor => "auditor",
            Role::Station => "station",
        }
    }

    /// The role's code in ledger entries (DESIGN.md §6).
    pub fn ledger_code(self) -> u8 {
        match self {
            Role::Patient => 1,
            Role::Doctor => 2,
            Role::Reception => 3,
            Role::Admin => 4,
            Role::Auditor => 5,
            Role::Station => 6,
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Health {
    pub status: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PreloginRequest {
    pub email: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PreloginResponse {
    #[serde(with = "hex_bytes")]
    pub salt: Vec<u8>,
    pub kdf: KdfParams,
}

/// Step one of a patient's registration: mail a code proving the address.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VerifyEmailRequest {
    pub email: String,
}

/// The same for a new and a taken address.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VerifyEmailResponse {
    pub verification_id: Uuid,
    pub expires_at: DateTime<Utc>,
    /// The parameters the new account's key derivation must use.
    pub kdf: KdfParams,
}

/// What an invite code stands for; lets the invited user's client check the password rules
/// against the name and address before deriving keys.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InviteInfoRequest {
    pub code: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InviteInfo {
    pub email: String,
    pub name: String,
    pub role: Role,
    pub kdf: KdfParams,
}

/// How an account comes to be.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Enrollment {
    /// A patient with the code mailed by `verify-email`.
    Patient {
        verification_id: Uuid,
        code: String,
        email: String,
        name: String,
        #[serde(default)]
        phone: String,
    },
    /// Staff completing an admin's invite.
    Invite { code: String },
    /// The first admin, with the code `serve` printed at first start.
    Admin {
        code: String,
        email: String,
        name: String,
    },
}

/// Registration: keys made on the client; the password never travels.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RegisterRequest {
    pub enrollment: Enrollment,
    pub user_id: Uuid,
    #[serde(with = "hex_bytes")]
    pub salt: Vec<u8>,
    pub kdf: KdfParams,
    pub auth_key: SecretBytes,
    pub public_keys: PublicKeys,
    #[serde(with = "hex_bytes")]
    pub bundle: Vec<u8>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RegisterResponse {
    pub user_id: Uuid,
    pub role: Role,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoginRequest {
    pub email: String,
    pub auth_key: SecretBytes,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserInfo {
    pub id: Uuid,
    pub email: String,
    pub name: String,
    pub role: Role,
    pub active: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoginResponse {
    pub token: String,
    pub user: UserInfo,
    pub public_keys: PublicKeys,
    #[serde(with = "hex_bytes")]
    pub bundle: Vec<u8>,
    pub idle_timeout_secs: u64,
    pub expires_at: DateTime<Utc>,
    /// The server's current KDF parameters when the account's are older: the client re-keys
    /// (`POST /v1/auth/rekey`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kdf_upgrade: Option<KdfParams>,
}

/// `GET /v1/auth/keys`: what a signed-in client needs to unseal its keys with the password,
/// without logging in again.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionKeys {
    pub user: UserInfo,
    #[serde(with = "hex_bytes")]
    pub salt: Vec<u8>,
    pub kdf: KdfParams,
    pub public_keys: PublicKeys,
    #[serde(with = "hex_bytes")]
    pub bundle: Vec<u8>,
    pub idle_timeout_secs: u64,
    pub expires_at: DateTime<Utc>,
    /// The server's current KDF parameters when the account's are older: a password change
    /// derives the new keys under these.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kdf_upgrade: Option<KdfParams>,
}

/// `POST /v1/auth/password`: a new password for the same keys. The same body as a re-key
/// ([`RekeyRequest`]): the bundle sealed again under the new password's `wrap_key`, and
/// `old_auth_key` proving the old password.
pub type PasswordChangeRequest = RekeyRequest;

/// `POST /v1/auth/recovery-kit`: a new recovery kit (issue 15), proven by the current
/// password's `auth_key`. `recovery_auth` and the sealed copy come from the recovery code,
/// which never leaves the client.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecoveryKitRequest {
    pub auth_key: SecretBytes,
    pub recovery_auth: SecretBytes,
    #[serde(with = "hex_bytes")]
    pub recovery_bundle: Vec<u8>,
}

/// `POST /v1/auth/recover/open`: the recovery code's proof for an address.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecoverOpenRequest {
    pub email: String,
    pub recovery_auth: SecretBytes,
}

/// The second copy of the key bundle, and what a new password is derived under.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecoverOpenResponse {
    pub user_id: Uuid,
    pub public_keys: PublicKeys,
    #[serde(with = "hex_bytes")]
    pub recovery_bundle: Vec<u8>,
    pub kdf: KdfParams,
}

/// `POST /v1/auth/recover/reset`: a new password for the same keys, proven by the code.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecoverResetRequest {
    pub email: String,
    pub recovery_auth: SecretBytes,
    #[serde(with = "hex_bytes")]
    pub salt: Vec<u8>,
    pub kdf: KdfParams,
    pub auth_key: SecretBytes,
    #[serde(with = "hex_bytes")]
    pub bundle: Vec<u8>,
}

/// `POST /v1/admin/users/{id}/reactivate` answers with the ledger entry it appended.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusChanged {
    pub ledger_index: u64,
}

/// `POST /v1/auth/rekey`: the same password under new KDF parameters and a new salt.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RekeyRequest {
    pub old_auth_key: SecretBytes,
    #[serde(with = "hex_bytes")]
    pub salt: Vec<u8>,
    pub kdf: KdfParams,
    pub auth_key: SecretBytes,
    #[serde(with = "hex_bytes")]
    pub bundle: Vec<u8>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Done {
    pub ok: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InviteRequest {
    pub role: Role,
    pub email: String,
    pub name: String,
    #[serde(default)]
    pub specialty: String,
    #[serde(default)]
    pub bio: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InviteResponse {
    pub invite_id: Uuid,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Doctor {
    pub id: Uuid,
    pub name: String,
    pub specialty: String,
    pub bio: String,
    pub public_keys: PublicKeys,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub page: u32,
    pub per_page: u32,
    pub total: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PatientSummary {
    pub id: Uuid,
    pub name: String,
    pub email: String,
    pub phone: String,
}

/// One block of a doctor's weekly template, in the clinic's time zone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WeeklyBlock {
    /// `mon` … `sun`.
    pub weekday: String,
    /// `HH:MM`.
    pub start: String,
    pub end: String,
    pub slot_minutes: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Availability {
    pub weekly: Vec<WeeklyBlock>,
    #[serde(default)]
    pub days_off: Vec<NaiveDate>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AvailabilityResponse {
    pub doctor_id: Uuid,
    pub timezone: String,
    pub availability: Availability,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Slot {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// The start in the clinic's time zone, for display.
    pub local_start: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SlotsResponse {
    pub doctor_id: Uuid,
    pub timezone: String,
    pub slots: Vec<Slot>,
    /// Days of the range without opening hours (a day off, or a weekday the doctor does not
    /// work): public like the hours, so every role can show "off". Says nothing of bookings.
    #[serde(default)]
    pub closed: Vec<chrono::NaiveDate>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BookingStatus {
    Booked,
    CheckedIn,
    Completed,
    Cancelled,
    NoShow,
}

impl BookingStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            BookingStatus::Booked => "booked",
            BookingStatus::CheckedIn => "checked_in",
            BookingStatus::Completed => "completed",
            BookingStatus::Cancelled => "cancelled",
            BookingStatus::NoShow => "no_show",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            BookingStatus::Booked,
            BookingStatus::CheckedIn,
            BookingStatus::Completed,
            BookingStatus::Cancelled,
            BookingStatus::NoShow,
        ]
        .into_iter()
        .find(|b| b.as_str() == s)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BookRequest {
    pub doctor_id: Uuid,
    pub start: DateTime<Utc>,
    /// Reception books on a patient's behalf; a patient leaves it out.
    #[serde(default)]
    pub patient_id: Option<Uuid>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Booking {
    pub id: Uuid,
    pub doctor_id: Uuid,
    pub doctor_name: String,
    pub patient_id: Uuid,
    pub patient_name: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub status: BookingStatus,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BookingList {
    pub items: Vec<Booking>,
}

pub mod emergency;
/// Lowercase hex for byte strings.
mod reports;
pub use reports::*;
mod stations;
pub use stations::*;

/// Secret bytes on the wire (an `auth_key`): hex in JSON, wiped when dropped, and never
/// printed by `Debug` (issue 17).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretBytes(zeroize::Zeroizing<Vec<u8>>);

impl SecretBytes {
    pub fn new(bytes: Vec<u8>) -> Self {
        SecretBytes(zeroize::Zeroizing::new(bytes))
    }
}

impl From<Vec<u8>> for SecretBytes {
    fn from(v: Vec<u8>) -> Self {
        SecretBytes::new(v)
    }
}

impl std::ops::Deref for SecretBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<{} secret bytes>", self.0.len())
    }
}

impl Serialize for SecretBytes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(zeroize::Zeroizing::new(hex::encode(&self.0[..])).as_str())
    }
}

impl<'de> Deserialize<'de> for SecretBytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = zeroize::Zeroizing::new(String::deserialize(d)?);
        hex::decode(text.as_str())
            .map(SecretBytes::new)
            .map_err(serde::de::Error::custom)
    }
}

pub mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        hex::decode(text).map_err(D::Error::custom)
    }
}
