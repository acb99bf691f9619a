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

    /// Stores a wrap; `reader_keys_hash` names the keys it was made for (tests send stale
    /// ones to show the server refuses them).
    pub async fn grant_wrap_raw(
        &self,
        id: Uuid,
        wrapped: Vec<u8>,
        reader_keys_hash: Option<[u8; 32]>,
    ) -> Result<Grant, ClientError> {
        self.post(
            &format!("/v1/grants/{id}/wrap"),
            &GrantWrap {
                wrapped,
                reader_keys_hash: reader_keys_hash.map(|h| h.to_vec()),
            },
        )
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
    /// How the patient approved; `None` for a re-wrap after a key rotation.
    pub how: Option<GrantHow>,
    /// Issue 15.3: the kind 10 entry that made this a re-wrap request (the reader's own
    /// report, given back to their new keys).
    pub rotation: Option<u64>,
    pub reader_name: String,
    pub reader_fingerprint: String,
    reader_x25519: [u8; 32],
    reader_keys_hash: [u8; 32],
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
        // A re-wrap request (issue 15.3): approved by the reader's own key rotation; only for
        // the report's patient or author, checked against the manifest below.
        Entry::KeyRotated {
            user_id, time_ms, ..
        } if user_id == *grant.reader_id.as_bytes() => (None, time_ms),
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
            (Some(how), time_ms)
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
    let rotation = how.is_none().then_some(index);
    let mut reader_role = Role::Doctor;
    match manifest {
        Some(m) if genuine && rotation.is_some() => {
            // Only the report's own patient or author gets it back, and only the other key
            // holder wraps it.
            let me = client.me().await?.id;
            let reader = *grant.reader_id.as_bytes();
            let wrapper = if reader == m.patient_id {
                reader_role = Role::Patient;
                m.author_id
            } else if reader == m.author_id {
                m.patient_id
            } else {
                return Err(ClientError::Ledger(format!(
                    "grant {grant_id} claims a re-wrap after a key rotation, but its reader is \
                     neither the report's patient nor its author; refusing to wrap"
                )));
            };
            if wrapper != *me.as_bytes() || m.patient_id != *grant.patient_id.as_bytes() {
                return Err(ClientError::Refused(format!(
                    "grant {grant_id}: a re-wrap is confirmed by the report's other key holder"
                )));
            }
        }
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
    if how == Some(GrantHow::SignedByPatient) {
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
    // A rotation not yet accepted stops here, loudly (ClientError::KeyRotated).
    let reader = ledger.user_keys(grant.reader_id, Some(reader_role)).await?;
    // The approval time shown is the ledger's, not the database's.
    let mut grant = grant;
    grant.approved_at = chrono::DateTime::from_timestamp_millis(approved_ms);
    Ok(WrapCheck {
        reader_name: reader.name.clone(),
        reader_fingerprint: fingerprint(&reader.public_keys),
        reader_x25519: reader.public_keys.x25519,
        reader_keys_hash: crate::ledger::keys_hash(
            &reader.public_keys.x25519,
            &reader.public_keys.ed25519,
        ),
        how,
        rotation,
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
        // A re-wrap after my own key rotation (issue 15.3): no expiry, but only for my own
        // report (I am its committed manifest's patient or author), so a grant to someone
        // else's report cannot be re-pointed at my rotation to escape its expiry.
        Entry::KeyRotated { user_id, .. } if user_id == *me.as_bytes() => {
            let detail = client.report(grant.report_id).await?;
            let committed = ledger
                .checked_entry(detail.ledger_index, &detail.commit_entry)
                .await?;
            let manifest_hash: [u8; 32] = sha2::Sha256::digest(&detail.manifest).into();
            let genuine = matches!(committed, Entry::ReportCommitted { report_id, manifest_hash: h, .. }
                if report_id == *grant.report_id.as_bytes() && h == manifest_hash);
            let mine = crate::seal::Manifest::from_bytes(&detail.manifest)
                .is_ok_and(|m| m.patient_id == *me.as_bytes() || m.author_id == *me.as_bytes());
            if !(genuine && mine) {
                return Err(ClientError::Ledger(format!(
                    "grant {grant_id} claims a re-wrap after your key rotation, but the report is \
                     not your own; refusing its key"
                )));
            }
            i64::MAX
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
        .grant_wrap_raw(
            check.grant.id,
            wrapped.to_vec(),
            Some(check.reader_keys_hash),
        )
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
