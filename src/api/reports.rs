//! Wire types for reports, chunks, one-time codes, grants, the ledger and the audit
//! (DESIGN.md §5, §6, §8). Chunk ids travel as lowercase hex strings.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Role, hex_bytes};
use crate::seal::PublicKeys;

/// Hex lists (proof hashes).
pub mod hex_list {
    use serde::{Deserialize, Deserializer, Serializer, de::Error, ser::SerializeSeq};

    pub fn serialize<S: Serializer>(v: &[Vec<u8>], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(v.len()))?;
        for item in v {
            seq.serialize_element(&hex::encode(item))?;
        }
        seq.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Vec<u8>>, D::Error> {
        Vec::<String>::deserialize(d)?
            .into_iter()
            .map(|t| hex::decode(t).map_err(D::Error::custom))
            .collect()
    }
}

// ---- ledger ----

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LedgerHead {
    /// `SignedHead::to_bytes` (129 bytes).
    #[serde(with = "hex_bytes")]
    pub signed_head: Vec<u8>,
    /// `clinvault-ledger:` + base64 of the public key, for pinning on first use.
    pub ledger_key: String,
    /// The same head as a C2SP checkpoint (signed note, text), signed by the ledger key and
    /// followed by the cosignatures of the witnesses that cosigned it (issue 11).
    #[serde(default)]
    pub checkpoint: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LedgerProof {
    #[serde(with = "hex_list")]
    pub hashes: Vec<Vec<u8>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LedgerEntryOut {
    pub index: u64,
    #[serde(with = "hex_bytes")]
    pub entry: Vec<u8>,
    /// For auditors and admins: whether the server found the entry's append authenticator
    /// valid (issue 11). The server's word only: an auditor cannot check an HMAC itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authenticated: Option<bool>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LedgerEntries {
    pub entries: Vec<LedgerEntryOut>,
    /// The answer covers `start <= index < next`: the caller asks again from `next` until it
    /// reaches its end (issue 17: a filtered page may hold no entry yet not be the last).
    /// 0 from servers before this field.
    #[serde(default)]
    pub next: u64,
}

/// A user's public keys with the index of their ledger entry (kind 1), to check inclusion.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserKeys {
    pub user_id: Uuid,
    pub name: String,
    pub role: Role,
    pub public_keys: PublicKeys,
    pub key_index: u64,
    /// The ledger entry at `key_index`, for the client to decode and check.
    #[serde(with = "hex_bytes")]
    pub key_entry: Vec<u8>,
    /// Every key entry (kind 1) about this user, oldest first. v1 has no key changes, so a
    /// client refuses more than one (issue 11).
    #[serde(default)]
    pub key_entries: Vec<LedgerEntryOut>,
}

// ---- reports ----

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OpenReportRequest {
    pub report_id: Uuid,
    pub patient_id: Uuid,
    pub chunk_size: u32,
    pub plaintext_len: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OpenReportResponse {
    pub report_id: Uuid,
    /// Chunks already stored for it (a resumed upload).
    pub chunks_present: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MissingRequest {
    pub chunk_ids: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MissingResponse {
    pub missing: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WrappedKeyIn {
    pub reader_id: Uuid,
    #[serde(with = "hex_bytes")]
    pub wrapped: Vec<u8>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CommitRequest {
    #[serde(with = "hex_bytes")]
    pub manifest: Vec<u8>,
    #[serde(with = "hex_bytes")]
    pub signature: Vec<u8>,
    #[serde(with = "hex_bytes")]
    pub meta: Vec<u8>,
    pub chunk_ids: Vec<String>,
    /// For the patient and the author.
    pub wrapped_keys: Vec<WrappedKeyIn>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CommitResponse {
    pub report_id: Uuid,
    pub ledger_index: u64,
    /// The release code's request, when the patient must enter a mailed code.
    pub release_request_id: Option<Uuid>,
}

/// What a caller sees of a report in a list.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReportSummary {
    pub id: Uuid,
    pub author_id: Uuid,
    pub author_name: String,
    pub patient_id: Uuid,
    pub patient_name: String,
    pub created_at: DateTime<Utc>,
    /// Size, chunks and status are left out (0 and empty here) for reception, who may see
    /// only that a report exists, its author and date.
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub plaintext_len: u64,
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub n_chunks: u32,
    /// `open`, `awaiting_release` (the patient has not entered the code), `released`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub status: String,
    /// Whether the caller may fetch its key and chunks now.
    pub readable: bool,
}

fn is_zero_u64(v: &u64) -> bool {
    *v == 0
}

fn is_zero_u32(v: &u32) -> bool {
    *v == 0
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReportList {
    pub reports: Vec<ReportSummary>,
}

/// Everything a reader needs to verify a report, besides its key and chunks.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReportDetail {
    pub summary: ReportSummary,
    #[serde(with = "hex_bytes")]
    pub manifest: Vec<u8>,
    #[serde(with = "hex_bytes")]
    pub signature: Vec<u8>,
    #[serde(with = "hex_bytes")]
    pub meta: Vec<u8>,
    pub chunk_ids: Vec<String>,
    /// Ledger index of the report's commit entry (kind 2).
    pub ledger_index: u64,
    #[serde(with = "hex_bytes")]
    pub commit_entry: Vec<u8>,
}

/// The caller's wrapped DEK and the ledger entry (kind 4) that records it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReportKey {
    #[serde(with = "hex_bytes")]
    pub wrapped: Vec<u8>,
    pub wrap_index: u64,
    pub wrapper_id: Uuid,
    /// `None` for the wraps made at commit.
    pub grant_id: Option<Uuid>,
    #[serde(with = "hex_bytes")]
    pub wrap_entry: Vec<u8>,
}

// ---- one-time codes ----

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OtpVerifyRequest {
    pub request_id: Uuid,
    pub code: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OtpVerifyResponse {
    /// `release` or `grant`.
    pub purpose: String,
    pub report_id: Uuid,
    pub grant_id: Option<Uuid>,
    /// Ledger index of the OTP entry (kind 7).
    pub ledger_index: u64,
}

/// A code waiting to be entered by the caller.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OtpPending {
    pub request_id: Uuid,
    pub purpose: String,
    pub report_id: Uuid,
    pub grant_id: Option<Uuid>,
    /// What the code unlocks, in words.
    pub unlocks: String,
    pub expires_at: DateTime<Utc>,
    pub tries_left: u32,
    /// When this code was mailed (its latest resend). Absent from older servers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asked_at: Option<DateTime<Utc>>,
    /// The report's plaintext size in bytes. Absent from older servers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report_size: Option<u64>,
}

impl OtpPending {
    /// What tells two waiting codes apart, in the words the resend mail and the OTP pane
    /// share: `request 1a2b3c4d · asked 14:05 · 47.1 KiB`.
    pub fn request_words(&self, tz: chrono_tz::Tz) -> String {
        let mut w = format!("request {}", crate::units::short_id(&self.request_id));
        if let Some(at) = self.asked_at {
            w.push_str(&format!(
                " · asked {}",
                at.with_timezone(&tz).format("%H:%M")
            ));
        }
        if let Some(n) = self.report_size {
            w.push_str(&format!(" · {}", crate::units::bytes(n)));
        }
        w
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OtpPendingList {
    pub pending: Vec<OtpPending>,
}

// ---- grants ----

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GrantCreate {
    pub report_id: Uuid,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Grant {
    pub id: Uuid,
    pub report_id: Uuid,
    pub reader_id: Uuid,
    pub reader_name: String,
    pub patient_id: Uuid,
    pub author_id: Uuid,
    /// `requested`, `approved`, `wrapped`, `revoked`, `expired`.
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub approved_at: Option<DateTime<Utc>>,
    /// Ledger index of the approval (kind 3), and that entry.
    pub approval_index: Option<u64>,
    #[serde(default, with = "opt_hex")]
    pub approval_entry: Option<Vec<u8>>,
    /// The patient's Ed25519 signature over [`consent_message`] when they approved directly.
    #[serde(default, with = "opt_hex")]
    pub consent_signature: Option<Vec<u8>>,
    /// The code request mailed to the patient, while the grant waits for it.
    pub request_id: Option<Uuid>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GrantList {
    pub grants: Vec<Grant>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GrantApprove {
    #[serde(with = "hex_bytes")]
    pub signature: Vec<u8>,
    /// The DEK already wrapped to the reader: approval and wrap are then stored together or
    /// not at all.
    #[serde(default, with = "opt_hex", skip_serializing_if = "Option::is_none")]
    pub wrapped: Option<Vec<u8>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GrantWrap {
    #[serde(with = "hex_bytes")]
    pub wrapped: Vec<u8>,
    /// Issue 15.3: `keys_hash` of the reader keys the client wrapped to, as its ledger showed
    /// them. Required for a re-wrap after a key rotation: the server refuses a wrap to keys
    /// that are no longer the reader's.
    #[serde(default, with = "opt_hex", skip_serializing_if = "Option::is_none")]
    pub reader_keys_hash: Option<Vec<u8>>,
}

/// What a patient signs to approve a grant directly (v2, issue 17: the patient's id is bound
/// in, so a consent cannot be presented for another patient's report).
pub fn consent_message(
    grant_id: &Uuid,
    report_id: &Uuid,
    patient_id: &Uuid,
    reader_id: &Uuid,
    expires_ms: i64,
) -> Vec<u8> {
    let mut m = Vec::with_capacity(20 + 16 * 4 + 8);
    m.extend_from_slice(b"clinvault/consent/v2");
    m.extend_from_slice(grant_id.as_bytes());
    m.extend_from_slice(report_id.as_bytes());
    m.extend_from_slice(patient_id.as_bytes());
    m.extend_from_slice(reader_id.as_bytes());
    m.extend_from_slice(&expires_ms.to_be_bytes());
    m
}

/// The grant id the wraps made at commit are recorded under in the ledger (kind 4): none.
pub const COMMIT_GRANT_ID: Uuid = Uuid::nil();

pub mod opt_hex {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(b) => s.serialize_some(&hex::encode(b)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|t| hex::decode(t).map_err(D::Error::custom))
            .transpose()
    }
}

// ---- audit ----

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditChunk {
    pub chunk_id: String,
    /// Buckets the server recorded a replica in.
    pub replicas: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditReport {
    pub id: Uuid,
    #[serde(with = "hex_bytes")]
    pub manifest: Vec<u8>,
    #[serde(with = "hex_bytes")]
    pub signature: Vec<u8>,
    pub ledger_index: u64,
    pub chunks: Vec<AuditChunk>,
    /// The sealed metadata blob (its SHA-256 must be the manifest's `meta_hash`).
    #[serde(default, with = "hex_bytes")]
    pub meta: Vec<u8>,
    /// The author the server files the report under (must be the manifest's).
    #[serde(default)]
    pub author_id: Option<Uuid>,
    /// Every wrapped key stored for the report (each must hash to its kind 4 entry's hash).
    #[serde(default)]
    pub wrapped_keys: Vec<AuditWrappedKey>,
    /// What the server could not read of this report's stored row; the rest is best effort.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditWrappedKey {
    pub reader_id: Uuid,
    #[serde(with = "hex_bytes")]
    pub wrapped: Vec<u8>,
    pub ledger_index: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditPage {
    pub reports: Vec<AuditReport>,
    /// All buckets the server writes to.
    pub buckets: Vec<String>,
    pub replicas: u32,
    pub next_page: Option<u32>,
    /// Staging files of interrupted chunk writes removed from the buckets since the server
    /// started (page 1 sweeps first).
    #[serde(default)]
    pub staging_swept: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RepairRequest {
    pub chunk_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RepairResponse {
    /// Buckets a verified copy was written to.
    pub written: Vec<String>,
}
