//! Break-glass emergency access (issue 16, docs/protocol.md §17), the client's side.
//!
//! At commit the author's client wraps the report key to each emergency-team member it can
//! verify: a member counts only with a kind-11 "added" entry for them, included in the
//! verified ledger and made by a ledger-registered administrator, and only with keys from the
//! ledger-verified key store. A member the server lists without such an entry (a row put in
//! its database) gets nothing.
//!
//! A member's client uses a released wrap only after checking the kind-12 entry that records
//! the request: included in the verified ledger, naming this reader, the patient, exactly the
//! reports released, the reason shown, and a release time not after now. A server that
//! releases without logging, or earlier than it logged, is caught here.

use std::collections::HashMap;

use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::ledger::Ledger;
use super::read::InMemory;
use super::{ApiClient, ClientError, LoggedIn};
use crate::api::Role;
use crate::api::emergency::{
    EmergencyKeys, EmergencyList, EmergencyOpen, EmergencyRequest, EscrowDeposit, EscrowDone,
    EscrowWrap, TeamChangeRequest, TeamChanged, TeamList,
};
use crate::ledger::{Entry, TeamChange, emergency_reports_hash};
use crate::seal::{Dek, wrap_dek};

/// How far the server's release time may be ahead of this client's clock (clock skew).
const RELEASE_SKEW_MS: i64 = 2 * 60 * 1000;

impl ApiClient {
    pub async fn emergency_team(&self) -> Result<TeamList, ClientError> {
        self.get("/v1/emergency/team", &[]).await
    }

    pub async fn emergency_team_change(
        &self,
        user_id: Uuid,
        add: bool,
    ) -> Result<TeamChanged, ClientError> {
        self.post("/v1/emergency/team", &TeamChangeRequest { user_id, add })
            .await
    }

    pub async fn emergency_escrow(
        &self,
        report: Uuid,
        wraps: Vec<EscrowWrap>,
    ) -> Result<EscrowDone, ClientError> {
        self.post(
            &format!("/v1/emergency/escrow/{report}"),
            &EscrowDeposit { wraps },
        )
        .await
    }

    pub async fn emergency_open(
        &self,
        patient_id: Uuid,
        reason: &str,
    ) -> Result<EmergencyRequest, ClientError> {
        self.post(
            "/v1/emergency",
            &EmergencyOpen {
                patient_id,
                reason: reason.into(),
            },
        )
        .await
    }

    pub async fn emergencies(&self) -> Result<EmergencyList, ClientError> {
        self.get("/v1/emergency", &[]).await
    }

    pub async fn emergency_keys(&self, id: Uuid) -> Result<EmergencyKeys, ClientError> {
        self.get(&format!("/v1/emergency/{id}/keys"), &[]).await
    }

    pub async fn emergency_veto(&self, id: Uuid) -> Result<EmergencyRequest, ClientError> {
        self.post(&format!("/v1/emergency/{id}/veto"), &serde_json::json!({}))
            .await
    }
}

/// The members this client verified: (id, X25519 key). Members without a verifiable kind-11
/// "added" entry are left out, each with a warning in the log.
pub async fn verified_team(
    client: &ApiClient,
    ledger: &Ledger,
) -> Result<Vec<(Uuid, [u8; 32])>, ClientError> {
    let team = client.emergency_team().await?;
    let mut out = Vec::new();
    for m in team.members {
        match verify_member(ledger, m.user_id, m.ledger_index, &m.entry).await {
            Ok(x25519) => out.push((m.user_id, x25519)),
            Err(e) => {
                tracing::warn!(member = %m.user_id, error = %e, "emergency-team member not verified: no key wrapped to them");
            }
        }
    }
    Ok(out)
}

async fn verify_member(
    ledger: &Ledger,
    member: Uuid,
    index: Option<u64>,
    entry: &[u8],
) -> Result<[u8; 32], ClientError> {
    let index = index.ok_or_else(|| {
        ClientError::Ledger(format!(
            "the server lists {member} on the emergency team without a ledger entry"
        ))
    })?;
    match ledger.checked_entry(index, entry).await? {
        Entry::EmergencyTeam {
            member_id,
            change: TeamChange::Added,
            admin_id,
            ..
        } if member_id == *member.as_bytes() => {
            ledger
                .user_keys(Uuid::from_bytes(admin_id), Some(Role::Admin))
                .await?;
        }
        _ => {
            return Err(ClientError::Ledger(format!(
                "entry {index} does not add {member} to the emergency team"
            )));
        }
    }
    Ok(ledger
        .user_keys(member, Some(Role::Doctor))
        .await?
        .public_keys
        .x25519)
}

/// At commit: wraps `dek` to every verified team member but the author and deposits the
/// wraps in escrow. Returns how many the server stored.
pub async fn escrow_at_commit(
    client: &ApiClient,
    me: &LoggedIn,
    ledger: &Ledger,
    report: Uuid,
    dek: &Dek,
) -> Result<u64, ClientError> {
    let my_id = me.login.user.id;
    let mut wraps = Vec::new();
    for (member, x25519) in verified_team(client, ledger).await? {
        if member == my_id {
            continue;
        }
        let wrapped = wrap_dek(dek, report.as_bytes(), member.as_bytes(), &x25519)?;
        wraps.push(EscrowWrap {
            member_id: member,
            wrapped: wrapped.to_vec(),
        });
    }
    if wraps.is_empty() {
        return Ok(0);
    }
    Ok(client.emergency_escrow(report, wraps).await?.stored)
}

/// The upload's hook: a report is committed whether or not its escrow lands, so a failure
/// here is logged, not returned (the report is then readable by break-glass by nobody).
pub async fn escrow_after_commit(
    client: &ApiClient,
    me: &LoggedIn,
    ledger: &Ledger,
    report: Uuid,
    dek: &Dek,
) {
    // A station's report is for the patient and the ordering doctor only (issue 16 part 2).
    if me.login.user.role != Role::Doctor {
        return;
    }
    match escrow_at_commit(client, me, ledger, report, dek).await {
        Ok(n) => tracing::info!(%report, members = n, "report key escrowed for the emergency team"),
        Err(e) => {
            tracing::warn!(%report, error = %e, "could not escrow the report key for the emergency team")
        }
    }
}

/// The reasons of the break-glass requests the server lets the caller see (patients: those on
/// them), by request id; empty when it lets them see none. Unverified: see [`trail_reason`].
pub async fn reasons(client: &ApiClient) -> HashMap<[u8; 16], String> {
    client
        .emergencies()
        .await
        .map(|l| {
            l.requests
                .into_iter()
                .map(|r| (r.id.into_bytes(), r.reason))
                .collect()
        })
        .unwrap_or_default()
}

/// What a trail shows as the reason of kind-12 entry `e`: the server's text when it hashes to
/// what the entry records, else a note saying why there is none.
pub fn trail_reason(e: &Entry, reasons: &HashMap<[u8; 16], String>) -> Option<String> {
    let Entry::EmergencyAccess {
        request_id,
        reason_hash,
        ..
    } = e
    else {
        return None;
    };
    Some(match reasons.get(request_id) {
        Some(r) if <[u8; 32]>::from(Sha256::digest(r.as_bytes())) == *reason_hash => {
            format!("\"{}\"", crate::text::display(r))
        }
        Some(_) => "(the server's text does not match the ledger's hash)".into(),
        None => "(not shown by the server)".into(),
    })
}

/// A released request whose kind-12 entry this client verified, with its wraps.
pub struct Released {
    pub request: EmergencyRequest,
    /// (report id, wrap to this reader).
    pub keys: Vec<(Uuid, Vec<u8>)>,
}

/// Checks the request's kind-12 entry (the ledger synced past it) against the request as
/// served: this reader, this patient, its report ids, its reason, a release time passed.
pub async fn check_request_entry(
    ledger: &Ledger,
    req: &EmergencyRequest,
    reader: Uuid,
    now_ms: i64,
) -> Result<(), ClientError> {
    let ids: Vec<[u8; 16]> = req.report_ids.iter().map(|r| r.into_bytes()).collect();
    match ledger.checked_entry(req.ledger_index, &req.entry).await? {
        Entry::EmergencyAccess {
            request_id,
            patient_id,
            reader_id,
            reports_hash,
            reason_hash,
            release_ms,
            ..
        } if request_id == *req.id.as_bytes()
            && patient_id == *req.patient_id.as_bytes()
            && reader_id == *reader.as_bytes()
            && reports_hash == emergency_reports_hash(&ids)
            && reason_hash == <[u8; 32]>::from(Sha256::digest(req.reason.as_bytes())) =>
        {
            if release_ms > now_ms + RELEASE_SKEW_MS {
                return Err(ClientError::Ledger(format!(
                    "the server released emergency request {} before the time its ledger entry \
                     records: it does not keep the patient's veto window — tell the clinic",
                    req.id
                )));
            }
            Ok(())
        }
        _ => Err(ClientError::Ledger(format!(
            "the server released emergency request {} without a matching ledger entry (entry {}): \
             refusing its keys — tell the clinic",
            req.id, req.ledger_index
        ))),
    }
}

/// Fetches a released request's wraps and verifies its ledger entry before handing them out.
pub async fn released(
    client: &ApiClient,
    me: &LoggedIn,
    ledger: &mut Ledger,
    id: Uuid,
) -> Result<Released, ClientError> {
    let got = client.emergency_keys(id).await?;
    if got.request.id != id || got.request.reader_id != me.login.user.id {
        return Err(ClientError::Ledger(format!(
            "the server answered emergency request {id} with another request"
        )));
    }
    if got.request.ledger_index >= ledger.head().tree_size {
        ledger.refresh().await?;
    }
    let keys: Vec<(Uuid, Vec<u8>)> = got
        .keys
        .into_iter()
        .map(|k| (k.report_id, k.wrapped))
        .collect();
    // Keys only for reports the logged request names (its entry hashes their ids).
    if let Some((r, _)) = keys
        .iter()
        .find(|(r, _)| !got.request.report_ids.contains(r))
    {
        return Err(ClientError::Ledger(format!(
            "the server released the key of report {r}, which emergency request {id} does not name"
        )));
    }
    check_request_entry(
        ledger,
        &got.request,
        me.login.user.id,
        chrono::Utc::now().timestamp_millis(),
    )
    .await?;
    Ok(Released {
        request: got.request,
        keys,
    })
}

/// Reads one report of a verified release into memory, with every check of an ordinary read
/// but the key's ledger entry, which is the release's kind-12 entry instead.
pub async fn read_report(
    client: &ApiClient,
    me: &LoggedIn,
    ledger: &Ledger,
    release: &Released,
    report: Uuid,
    max_keep: u64,
) -> Result<InMemory, ClientError> {
    let wrapped = release
        .keys
        .iter()
        .find(|(r, _)| *r == report)
        .map(|(_, w)| w.clone())
        .ok_or_else(|| {
            ClientError::Refused(format!(
                "report {report} is not among those emergency request {} released",
                release.request.id
            ))
        })?;
    let (detail, manifest, origin) = super::download::verify_detail(client, ledger, report).await?;
    if Uuid::from_bytes(manifest.patient_id) != release.request.patient_id {
        return Err(ClientError::Integrity(format!(
            "report {report} is not the patient's the request names"
        )));
    }
    let verified = super::download::open_with_key(detail, manifest, origin, &wrapped, me)?;
    super::read::read_verified(client, verified, 4, max_keep, |_| true).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(reason: &str) -> Entry {
        Entry::EmergencyAccess {
            time_ms: 1,
            request_id: [1; 16],
            patient_id: [2; 16],
            reader_id: [3; 16],
            reports_hash: [4; 32],
            reason_hash: Sha256::digest(reason.as_bytes()).into(),
            release_ms: 1,
        }
    }

    #[test]
    fn a_reason_is_shown_only_when_it_matches_the_entry() {
        let e = access("unconscious in the ER");
        let mut reasons = HashMap::new();
        assert_eq!(
            trail_reason(&e, &reasons).as_deref(),
            Some("(not shown by the server)")
        );
        reasons.insert([1; 16], "routine check".to_string());
        assert_eq!(
            trail_reason(&e, &reasons).as_deref(),
            Some("(the server's text does not match the ledger's hash)")
        );
        reasons.insert([1; 16], "unconscious in the ER".to_string());
        assert_eq!(
            trail_reason(&e, &reasons).as_deref(),
            Some("\"unconscious in the ER\"")
        );
        let other = Entry::GrantRevoked {
            time_ms: 1,
            grant_id: [1; 16],
        };
        assert_eq!(trail_reason(&other, &reasons), None);
    }
}
