//! Grants and codes on the client (DESIGN.md §2, §5): a key is wrapped for a reader only after
//! the grant's approval, the reader's key and the report itself check out against the ledger.

use uuid::Uuid;

use super::download::verify_report;
use super::ledger::Ledger;
use super::{ApiClient, ClientError, LoggedIn};
use crate::api::{
    Grant, GrantApprove, GrantCreate, GrantList, GrantWrap, OtpPending, OtpPendingList,
    OtpVerifyRequest, OtpVerifyResponse, Role, consent_message,
};
use crate::ledger::{Entry, GrantHow};
use crate::seal::{fingerprint, wrap_dek};
use sha2::Digest;

impl ApiClient {
    pub async fn otp_verify(
        &self,
        request_id: Uuid,
        code: &str,
    ) -> Result<OtpVerifyResponse, ClientError> {
        self.post(
            "/v1/otp/verify",
            &OtpVerifyRequest {
                request_id,
                code: code.to_string(),
            },
        )
        .await
    }

    pub async fn otp_pending(&self) -> Result<Vec<OtpPending>, ClientError> {
        let l: OtpPendingList = self.get("/v1/otp", &[]).await?;
        Ok(l.pending)
    }

    pub async fn otp_resend(&self, request_id: Uuid) -> Result<OtpPending, ClientError> {
        self.post(
            &format!("/v1/otp/{request_id}/resend"),
            &serde_json::json!({}),
        )
        .await
    }

    pub async fn grants(&self) -> Result<Vec<Grant>, ClientError> {
        let l: GrantList = self.get("/v1/grants", &[]).await?;
        Ok(l.grants)
    }

    pub async fn grant_request(&self, report_id: Uuid) -> Result<Grant, ClientError> {
        self.post("/v1/grants", &GrantCreate { report_id }).await
    }

    pub async fn grant_revoke(&self, id: Uuid) -> Result<Grant, ClientError> {
        self.post(&format!("/v1/grants/{id}/revoke"), &serde_json::json!({}))
            .await
    }

    async fn grant_wrap_raw(&self, id: Uuid, wrapped: Vec<u8>) -> Result<Grant, ClientError> {
        self.post(&format!("/v1/grants/{id}/wrap"), &GrantWrap { wrapped })
            .await
    }

    async fn grant_approve_raw(
        &self,
        id: Uuid,
        signature: Vec<u8>,
        wrapped: Option<Vec<u8>>,
    ) -> Result<Grant, ClientError> {
        self.post(
            &format!("/v1/grants/{id}/approve"),
            &GrantApprove { signature, wrapped },
        )
        .await
    }
}

/// What a key holder sees before confirming a wrap.
#[derive(Debug, Clone)]
pub struct WrapCheck {
    pub grant: Grant,
    pub how: GrantHow,
    pub reader_name: String,
    pub reader_fingerprint: String,
    reader_x25519: [u8; 32],
}

/// Checks a grant before any key is wrapped for it: its approval must be in the ledger (a
/// grant approved only in the database is refused), a patient's direct approval must carry
/// their signature, and the reader's key must be the one the ledger registered.
pub async fn check_grant_for_wrap(
    client: &ApiClient,
    ledger: &Ledger,
    grant_id: Uuid,
) -> Result<WrapCheck, ClientError> {
    let grant = client
        .grants()
        .await?
        .into_iter()
        .find(|g| g.id == grant_id)
        .ok_or_else(|| ClientError::Refused(format!("no grant {grant_id} visible to you")))?;
    if grant.status != "approved" {
        return Err(ClientError::Refused(format!(
            "grant {grant_id} is {}; only an approved grant gets a key",
            grant.status
        )));
    }
    let (Some(index), Some(entry)) = (grant.approval_index, grant.approval_entry.as_ref()) else {
        return Err(ClientError::Ledger(format!(
            "grant {grant_id} has no approval in the ledger; refusing to wrap a key for it"
        )));
    };
    let (how, approved_ms) = match ledger.checked_entry(index, entry).await? {
        Entry::GrantApproved {
            grant_id: g,
            report_id,
            reader_id,
            how,
            time_ms,
            expires_ms,
        } if g == *grant.id.as_bytes()
            && report_id == *grant.report_id.as_bytes()
            && reader_id == *grant.reader_id.as_bytes() =>
        {
            if let Some(e) = expires_ms
                && e <= chrono::Utc::now().timestamp_millis()
            {
                return Err(ClientError::Refused(format!(
                    "grant {grant_id} expired at {} (as the ledger records it); no key is wrapped \
                     for it",
                    chrono::DateTime::from_timestamp_millis(e).unwrap_or_default()
                )));
            }
            (how, time_ms)
        }
        _ => {
            return Err(ClientError::Ledger(format!(
                "the ledger's approval entry does not match grant {grant_id}; refusing to wrap"
            )));
        }
    };
    // The patient the grant names must be the one the report's committed manifest names
    // (issue 17): a consent by some other account proves nothing about this report.
    let detail = client.report(grant.report_id).await?;
    let committed = ledger
        .checked_entry(detail.ledger_index, &detail.commit_entry)
        .await?;
    let manifest_hash: [u8; 32] = sha2::Sha256::digest(&detail.manifest).into();
    let manifest = crate::seal::Manifest::from_bytes(&detail.manifest).ok();
    let genuine = matches!(committed, Entry::ReportCommitted { report_id, manifest_hash: h, .. }
        if report_id == *grant.report_id.as_bytes() && h == manifest_hash);
    match manifest {
        Some(m) if genuine && m.patient_id == *grant.patient_id.as_bytes() => {}
        Some(_) if genuine => {
            return Err(ClientError::Ledger(format!(
                "grant {grant_id} names patient {}, but the report's committed manifest names \
                 another patient; refusing to wrap",
                grant.patient_id
            )));
        }
        _ => {
            return Err(ClientError::Ledger(format!(
                "the manifest of report {} is not the one its ledger commit entry records",
                grant.report_id
            )));
        }
    }
    if how == GrantHow::SignedByPatient {
        let patient = ledger
            .user_keys(grant.patient_id, Some(Role::Patient))
            .await?;
        let message = consent_message(
            &grant.id,
            &grant.report_id,
            &grant.patient_id,
            &grant.reader_id,
            grant.expires_at.timestamp_millis(),
        );
        let ok = grant
            .consent_signature
            .as_deref()
            .and_then(|s| ed25519_dalek::Signature::from_slice(s).ok())
            .zip(ed25519_dalek::VerifyingKey::from_bytes(&patient.public_keys.ed25519).ok())
            .is_some_and(|(s, k)| k.verify_strict(&message, &s).is_ok());
        if !ok {
            return Err(ClientError::Ledger(format!(
                "grant {grant_id} claims the patient's signed consent, but the signature does not verify"
            )));
        }
    }
    let reader = ledger
        .user_keys(grant.reader_id, Some(Role::Doctor))
        .await?;
    // The approval time shown is the ledger's, not the database's.
    let mut grant = grant;
    grant.approved_at = chrono::DateTime::from_timestamp_millis(approved_ms);
    Ok(WrapCheck {
        reader_name: reader.name.clone(),
        reader_fingerprint: fingerprint(&reader.public_keys),
        reader_x25519: reader.public_keys.x25519,
        how,
        grant,
    })
}

/// A grant through which this reader was given a key must still be in force as the ledger
/// records it: its approval entry (checked for inclusion) names this reader and, when it
/// records an expiry (kind 8), that expiry is ahead; and the reader's complete trail
/// (replayed, [`super::trail`]) holds no revocation entry for it. Database edits of the
/// grant's expiry or status change neither.
pub async fn check_grant_in_force(
    client: &ApiClient,
    ledger: &Ledger,
    grant_id: Uuid,
    me: Uuid,
) -> Result<(), ClientError> {
    let grant = client
        .grants()
        .await?
        .into_iter()
        .find(|g| g.id == grant_id)
        .ok_or_else(|| ClientError::Refused(format!("no grant {grant_id} visible to you")))?;
    let (Some(index), Some(entry)) = (grant.approval_index, grant.approval_entry.as_ref()) else {
        return Err(ClientError::Ledger(format!(
            "grant {grant_id} has no approval in the ledger; refusing its key"
        )));
    };
    let now = chrono::Utc::now().timestamp_millis();
    let expires = match ledger.checked_entry(index, entry).await? {
        Entry::GrantApproved {
            grant_id: g,
            reader_id,
            expires_ms,
            ..
        } if g == *grant_id.as_bytes() && reader_id == *me.as_bytes() => {
            // Kind 3 (approved before expiries were recorded): the server's word.
            expires_ms.unwrap_or(grant.expires_at.timestamp_millis())
        }
        _ => {
            return Err(ClientError::Ledger(format!(
                "the ledger's approval entry does not match grant {grant_id}; refusing its key"
            )));
        }
    };
    if expires <= now {
        return Err(ClientError::Refused(format!(
            "grant {grant_id} expired at {} (as the ledger records it); its key is refused",
            chrono::DateTime::from_timestamp_millis(expires).unwrap_or_default()
        )));
    }
    let trail = super::trail::complete_trail(ledger, &ledger.state_dir(), me).await?;
    if let Some((i, _)) = trail.entries.iter().find(
        |(_, e)| matches!(e, Entry::GrantRevoked { grant_id: g, .. } if *g == *grant_id.as_bytes()),
    ) {
        return Err(ClientError::Refused(format!(
            "grant {grant_id} was revoked (ledger entry {i}); its key is refused"
        )));
    }
    Ok(())
}

/// Wraps the report's key to the checked reader and signs nothing else: the server records
/// the wrap in the ledger.
pub async fn confirm_wrap(
    client: &ApiClient,
    me: &LoggedIn,
    ledger: &Ledger,
    check: &WrapCheck,
) -> Result<Grant, ClientError> {
    let report = verify_report(client, me, ledger, check.grant.report_id).await?;
    let wrapped = wrap_dek(
        report.dek(),
        check.grant.report_id.as_bytes(),
        check.grant.reader_id.as_bytes(),
        &check.reader_x25519,
    )?;
    client
        .grant_wrap_raw(check.grant.id, wrapped.to_vec())
        .await
}

/// The patient approves a request in their own client: checks the reader's key and their own
/// copy of the report, wraps the key, and only then sends consent and wrap together (the
/// server stores both or neither).
pub async fn approve_and_wrap(
    client: &ApiClient,
    me: &LoggedIn,
    ledger: &mut Ledger,
    grant_id: Uuid,
) -> Result<Grant, ClientError> {
    let grant = client
        .grants()
        .await?
        .into_iter()
        .find(|g| g.id == grant_id)
        .ok_or_else(|| ClientError::Refused(format!("no grant {grant_id} visible to you")))?;
    if grant.patient_id != me.login.user.id {
        return Err(ClientError::Refused(
            "only the report's patient approves a grant".into(),
        ));
    }
    if grant.status != "requested" {
        return Err(ClientError::Refused(format!(
            "grant {grant_id} is {}; only a requested grant can be approved",
            grant.status
        )));
    }
    ledger.refresh().await?;
    let reader = ledger
        .user_keys(grant.reader_id, Some(Role::Doctor))
        .await?;
    let report = verify_report(client, me, ledger, grant.report_id).await?;
    let wrapped = wrap_dek(
        report.dek(),
        grant.report_id.as_bytes(),
        grant.reader_id.as_bytes(),
        &reader.public_keys.x25519,
    )?;
    let message = consent_message(
        &grant.id,
        &grant.report_id,
        &grant.patient_id,
        &grant.reader_id,
        grant.expires_at.timestamp_millis(),
    );
    use ed25519_dalek::Signer;
    let signature = me.secrets.signing_key().sign(&message).to_bytes();
    client
        .grant_approve_raw(grant_id, signature.to_vec(), Some(wrapped.to_vec()))
        .await
}
