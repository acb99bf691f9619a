//! Grants (DESIGN.md §5): another doctor asks to read one report; the patient approves by
//! telling them the mailed code, or directly with a signed consent; a key holder (the author
//! or the patient) then wraps the key in their own client; the patient can revoke.

use axum::Json;
use axum::extract::State;
use axum::http::{Method, StatusCode};
use uuid::Uuid;

use super::ms_to_utc;
use super::otp::{self, NewCode};
use crate::api::{
    Grant, GrantApprove, GrantCreate, GrantList, GrantWrap, Role, codes, consent_message,
};
use crate::ledger::{Entry, GrantHow};
use crate::seal::WRAPPED_DEK_LEN;
use crate::server::AppState;
use crate::server::db::now_ms;
use crate::server::error::AppError;
use crate::server::extract::{ApiJson, Caller, PathId};
use crate::server::ledger_store;
use crate::server::policy::{Policy, Route, route};
use crate::server::store::reports::load_report;
use crate::server::store::{bookings, grants};

const DOCTOR: &[Role] = &[Role::Doctor];
const PATIENT: &[Role] = &[Role::Patient];
const HOLDERS: &[Role] = &[Role::Patient, Role::Doctor];

pub fn routes() -> Vec<Route> {
    vec![
        route(Method::GET, "/v1/grants", Policy::Roles(HOLDERS), list),
        route(Method::POST, "/v1/grants", Policy::Roles(DOCTOR), request),
        route(
            Method::POST,
            "/v1/grants/{id}/approve",
            Policy::Roles(PATIENT),
            approve,
        ),
        route(
            Method::POST,
            "/v1/grants/{id}/wrap",
            Policy::Roles(HOLDERS),
            wrap,
        ),
        route(
            Method::POST,
            "/v1/grants/{id}/revoke",
            Policy::Roles(HOLDERS),
            revoke,
        ),
    ]
}

/// The grant, when the caller is its reader, its report's patient or its report's author.
async fn visible_grant(st: &AppState, id: Uuid, caller: &Caller) -> Result<Grant, AppError> {
    let g = grants::load(&st.db, id)
        .await?
        .ok_or_else(|| AppError::not_found("grant"))?;
    if ![g.reader_id, g.patient_id, g.author_id].contains(&caller.id) {
        return Err(AppError::not_found("grant"));
    }
    Ok(g)
}

/// Patients: grants on their reports. Doctors: their own requests and grants on reports they
/// wrote.
async fn list(State(st): State<AppState>, caller: Caller) -> Result<Json<GrantList>, AppError> {
    Ok(Json(GrantList {
        grants: grants::list_for(&st.db, caller.id).await?,
    }))
}

/// A doctor asks to read a report of a patient they have a booking with. The patient is
/// mailed a code naming the doctor, the report's date and its author.
async fn request(
    State(st): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<GrantCreate>,
) -> Result<Json<Grant>, AppError> {
    let mut conn = st.db.acquire().await?;
    let report = load_report(&mut conn, req.report_id)
        .await?
        .filter(|r| r.status == "committed")
        .ok_or_else(|| AppError::not_found("report"))?;
    if !bookings::has_booking(&mut *conn, caller.id, report.patient_id).await? {
        return Err(AppError::not_found("report"));
    }
    if report.author_id == caller.id {
        return Err(AppError::conflict(
            codes::CONFLICT,
            "you wrote this report; you can already read it",
        ));
    }
    // Until the patient can read it, nobody could wrap its key for them to consent to.
    if report.released_at.is_none() {
        return Err(AppError::conflict(
            codes::NOT_RELEASED,
            "this report is not yet released to its patient; ask again once they have entered their code",
        ));
    }
    let now = now_ms();
    if grants::has_live(&mut *conn, report.id, caller.id, now).await? {
        return Err(AppError::conflict(
            codes::CONFLICT,
            "you already asked for this report; see `clinvault grant list`",
        ));
    }
    drop(conn);
    let grant_id = Uuid::new_v4();
    let expires = now + i64::from(st.config.grant_days) * 86_400_000;
    let mut tx = st.db.begin().await?;
    grants::insert_requested(&mut *tx, grant_id, report.id, caller.id, now, expires).await?;
    let code = otp::issue(
        &mut tx,
        &st,
        NewCode {
            purpose: "grant",
            report_id: report.id,
            grant_id: Some(grant_id),
            user_id: caller.id,
            patient_id: report.patient_id,
        },
    )
    .await?;
    tx.commit().await?;
    let author = crate::server::store::users::name(&st.db, report.author_id).await?;
    let day = ms_to_utc(report.created_at)?
        .with_timezone(&st.tz)
        .format("%Y-%m-%d");
    otp::mail(
        &st,
        report.patient_id,
        "A doctor asks to read one of your reports",
        format!(
            "Dr {reader} asks to read your report of {day} by Dr {author}, for {days} days.\n\n\
             If you agree, tell Dr {reader} this code ({words}; the full request id is \
             {request}):\n\n    {code}\n\n\
             or approve the request in clinvault. If you do not agree, do nothing: the code \
             expires in 10 minutes. You can revoke access at any time in clinvault.\n",
            reader = caller.name,
            days = st.config.grant_days,
            request = code.request_id,
            words = otp::new_request_words(&st, code.request_id, report.plaintext_len),
            code = code.code.as_str(),
        ),
    )
    .await;
    tracing::info!(grant = %grant_id, "grant requested");
    Ok(Json(visible_grant(&st, grant_id, &caller).await?))
}

/// The patient approves in their own client, signing the consent with their key.
async fn approve(
    State(st): State<AppState>,
    caller: Caller,
    PathId(id): PathId,
    ApiJson(req): ApiJson<GrantApprove>,
) -> Result<Json<Grant>, AppError> {
    let g = visible_grant(&st, id, &caller).await?;
    if g.patient_id != caller.id {
        return Err(AppError::not_found("grant"));
    }
    if g.status != "requested" {
        return Err(AppError::conflict(
            codes::INVALID_STATUS,
            format!(
                "this grant is {}; only a requested grant can be approved",
                g.status
            ),
        ));
    }
    let expires_ms = g.expires_at.timestamp_millis();
    let message = consent_message(&g.id, &g.report_id, &g.patient_id, &g.reader_id, expires_ms);
    let key = grants::ed25519_pub(&st.db, caller.id).await?;
    let key: [u8; 32] = key
        .try_into()
        .map_err(|_| AppError::internal("stored public key is not 32 bytes"))?;
    let ok = ed25519_dalek::VerifyingKey::from_bytes(&key)
        .ok()
        .zip(ed25519_dalek::Signature::from_slice(&req.signature).ok())
        .is_some_and(|(k, s)| k.verify_strict(&message, &s).is_ok());
    if !ok {
        return Err(AppError::bad_request(
            "signature: not your signature over this grant's consent",
        ));
    }
    if let Some(w) = &req.wrapped
        && w.len() != WRAPPED_DEK_LEN
    {
        return Err(AppError::bad_request(format!(
            "wrapped: {WRAPPED_DEK_LEN} bytes"
        )));
    }
    {
        let mut conn = st.db.acquire().await?;
        let released = load_report(&mut conn, g.report_id)
            .await?
            .is_some_and(|r| r.released_at.is_some());
        if !released {
            return Err(AppError::conflict(
                codes::NOT_RELEASED,
                "enter the code mailed to you for this report first; then approve",
            ));
        }
    }
    let now = now_ms();
    // Approval and (when sent) the wrap: one transaction, so a failure records neither.
    let mut tx = st.db.begin().await?;
    let index = ledger_store::append(
        &mut tx,
        &st.append_key,
        &Entry::GrantApproved {
            time_ms: now,
            grant_id: g.id.into_bytes(),
            report_id: g.report_id.into_bytes(),
            reader_id: g.reader_id.into_bytes(),
            how: GrantHow::SignedByPatient,
            // The expiry the patient signed, recorded where no database edit reaches it.
            expires_ms: Some(expires_ms),
        },
        &[
            g.patient_id.to_string(),
            g.reader_id.to_string(),
            g.author_id.to_string(),
        ],
    )
    .await?;
    if !grants::mark_approved(&mut *tx, id, now, index as i64, req.signature.clone()).await? {
        return Err(AppError::conflict(
            codes::INVALID_STATUS,
            "this grant changed meanwhile",
        ));
    }
    // The mailed code is no longer needed.
    grants::expire_codes(&mut *tx, id, now).await?;
    if let Some(wrapped) = &req.wrapped {
        store_wrap(&mut tx, &st.append_key, &g, caller.id, wrapped, now).await?;
    }
    tx.commit().await?;
    Ok(Json(visible_grant(&st, id, &caller).await?))
}

/// Records the wrap (kind 4), marks the grant `wrapped` and stores the key, inside `tx`.
async fn store_wrap(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    append_key: &ledger_store::AppendKey,
    g: &Grant,
    wrapper: Uuid,
    wrapped: &[u8],
    now: i64,
) -> Result<(), AppError> {
    let hash: [u8; 32] = {
        use sha2::Digest;
        sha2::Sha256::digest(wrapped).into()
    };
    let index = ledger_store::append(
        tx,
        append_key,
        &Entry::KeyWrapped {
            time_ms: now,
            grant_id: g.id.into_bytes(),
            report_id: g.report_id.into_bytes(),
            reader_id: g.reader_id.into_bytes(),
            wrapper_id: wrapper.into_bytes(),
            wrapped_key_hash: hash,
        },
        &[
            g.patient_id.to_string(),
            g.reader_id.to_string(),
            g.author_id.to_string(),
        ],
    )
    .await?;
    if !grants::mark_wrapped(&mut **tx, g.id, now).await? {
        return Err(AppError::conflict(
            codes::INVALID_STATUS,
            "this grant changed meanwhile",
        ));
    }
    grants::insert_wrapped_key(
        &mut **tx,
        &grants::NewWrap {
            report: g.report_id,
            reader: g.reader_id,
            wrapped,
            wrapper,
            grant: g.id,
            ledger_index: index as i64,
            now,
        },
    )
    .await?;
    Ok(())
}

/// A key holder (the author or the patient) stores the DEK wrapped to the reader, after
/// their client checked the approval and the reader's key in the ledger.
async fn wrap(
    State(st): State<AppState>,
    caller: Caller,
    PathId(id): PathId,
    ApiJson(req): ApiJson<GrantWrap>,
) -> Result<Json<Grant>, AppError> {
    let g = visible_grant(&st, id, &caller).await?;
    if caller.id != g.author_id && caller.id != g.patient_id {
        return Err(AppError::not_found("grant"));
    }
    if g.status != "approved" {
        return Err(AppError::new(
            StatusCode::CONFLICT,
            codes::NOT_APPROVED,
            format!(
                "this grant is {}; a key is wrapped only for an approved grant",
                g.status
            ),
        ));
    }
    if req.wrapped.len() != WRAPPED_DEK_LEN {
        return Err(AppError::bad_request(format!(
            "wrapped: {WRAPPED_DEK_LEN} bytes"
        )));
    }
    if is_rewrap(&st, g.id).await? {
        check_rewrap(&st, &g, caller.id, req.reader_keys_hash.as_deref()).await?;
    }
    let now = now_ms();
    let mut tx = st.db.begin().await?;
    store_wrap(&mut tx, &st.append_key, &g, caller.id, &req.wrapped, now).await?;
    tx.commit().await?;
    Ok(Json(visible_grant(&st, id, &caller).await?))
}

/// Whether the grant is a re-wrap request made by a key rotation (issue 15.3).
async fn is_rewrap(st: &AppState, id: Uuid) -> Result<bool, AppError> {
    grants::is_rewrap(&st.db, id).await
}

/// A re-wrap after a key rotation gives a report back to its own patient or author. Only the
/// other key holder wraps it (the author for the patient, the patient for the author), and
/// only to the keys the reader has now: the client names the keys it wrapped to, and a wrap
/// to keys since replaced (the old ones, or a rotation meanwhile) is refused.
async fn check_rewrap(
    st: &AppState,
    g: &Grant,
    caller: Uuid,
    keys_hash: Option<&[u8]>,
) -> Result<(), AppError> {
    let wrapper = if g.reader_id == g.patient_id {
        g.author_id
    } else if g.reader_id == g.author_id {
        g.patient_id
    } else {
        return Err(AppError::internal("re-wrap request for a third reader"));
    };
    if caller != wrapper {
        return Err(AppError::forbidden(
            "a re-wrap after a key rotation is confirmed by the report's other key holder \
             (its author for the patient)",
        ));
    }
    let row = grants::public_keys_row(&st.db, g.reader_id).await?;
    let now = super::auth::row_public_keys(&row)?;
    let current = crate::ledger::keys_hash(&now.x25519, &now.ed25519);
    match keys_hash {
        Some(h) if h == current.as_slice() => Ok(()),
        Some(_) => Err(AppError::conflict(
            codes::CONFLICT,
            "wrapped to keys that are no longer the reader's: refresh the ledger, compare the \
             new fingerprint and confirm again",
        )),
        None => Err(AppError::bad_request(
            "reader_keys_hash: required for a re-wrap after a key rotation",
        )),
    }
}

/// The patient (or the report's author) ends a grant: the server stops serving that reader
/// the key and the chunks. A copy already downloaded is beyond anyone's reach.
async fn revoke(
    State(st): State<AppState>,
    caller: Caller,
    PathId(id): PathId,
) -> Result<Json<Grant>, AppError> {
    let g = visible_grant(&st, id, &caller).await?;
    if caller.id != g.patient_id && caller.id != g.author_id {
        return Err(AppError::not_found("grant"));
    }
    if g.status == "revoked" {
        return Ok(Json(g));
    }
    // A re-wrap gives a patient their own report back: not the author's to take away.
    if g.reader_id == g.patient_id && is_rewrap(&st, g.id).await? {
        return Err(AppError::conflict(
            codes::INVALID_STATUS,
            "this is the patient's own report, given back after a key rotation; it is not revoked",
        ));
    }
    let now = now_ms();
    let mut tx = st.db.begin().await?;
    let index = ledger_store::append(
        &mut tx,
        &st.append_key,
        &Entry::GrantRevoked {
            time_ms: now,
            grant_id: g.id.into_bytes(),
        },
        &[
            g.patient_id.to_string(),
            g.reader_id.to_string(),
            g.author_id.to_string(),
        ],
    )
    .await?;
    grants::mark_revoked(&mut *tx, id, now, index as i64).await?;
    grants::delete_wrapped_keys(&mut *tx, id).await?;
    grants::expire_codes(&mut *tx, id, now).await?;
    tx.commit().await?;
    tracing::info!(grant = %id, "grant revoked");
    Ok(Json(visible_grant(&st, id, &caller).await?))
}
