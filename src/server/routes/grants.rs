//! Grants (DESIGN.md §5): another doctor asks to read one report; the patient approves by
//! telling them the mailed code, or directly with a signed consent; a key holder (the author
//! or the patient) then wraps the key in their own client; the patient can revoke.

use axum::Json;
use axum::extract::State;
use axum::http::{Method, StatusCode};
use sqlx::Row;
use uuid::Uuid;

use super::otp::{self, NewCode};
use super::{ms_to_utc, parse_uuid};
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

const GRANT_SELECT: &str = "SELECT g.id, g.report_id, g.reader_id, g.status, g.created_at, g.expires_at, \
     g.approved_at, g.approval_index, g.consent_sig, u.name AS reader_name, r.patient_id, r.author_id, \
     le.entry AS approval_entry, \
     (SELECT o.id FROM otp_requests o WHERE o.grant_id = g.id AND o.used_at IS NULL ORDER BY o.created_at DESC LIMIT 1) AS request_id \
     FROM grants g JOIN reports r ON r.id = g.report_id JOIN users u ON u.id = g.reader_id \
     LEFT JOIN ledger_entries le ON le.idx = g.approval_index";

fn grant_row(r: &sqlx::any::AnyRow) -> Result<Grant, AppError> {
    let now = now_ms();
    let expires: i64 = r.try_get("expires_at")?;
    let mut status: String = r.try_get("status")?;
    if expires <= now && status != "revoked" {
        status = "expired".into();
    }
    let approval: Option<i64> = r.try_get("approval_index")?;
    let approved: Option<i64> = r.try_get("approved_at")?;
    Ok(Grant {
        id: parse_uuid(&r.try_get::<String, _>("id")?)?,
        report_id: parse_uuid(&r.try_get::<String, _>("report_id")?)?,
        reader_id: parse_uuid(&r.try_get::<String, _>("reader_id")?)?,
        reader_name: r.try_get("reader_name")?,
        patient_id: parse_uuid(&r.try_get::<String, _>("patient_id")?)?,
        author_id: parse_uuid(&r.try_get::<String, _>("author_id")?)?,
        status,
        created_at: ms_to_utc(r.try_get("created_at")?)?,
        expires_at: ms_to_utc(expires)?,
        approved_at: approved.map(ms_to_utc).transpose()?,
        approval_index: approval.and_then(|i| u64::try_from(i).ok()),
        approval_entry: r.try_get("approval_entry")?,
        consent_signature: r.try_get("consent_sig")?,
        request_id: r
            .try_get::<Option<String>, _>("request_id")?
            .as_deref()
            .map(parse_uuid)
            .transpose()?,
    })
}

/// The grant, when the caller is its reader, its report's patient or its report's author.
async fn visible_grant(st: &AppState, id: Uuid, caller: &Caller) -> Result<Grant, AppError> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "{GRANT_SELECT} WHERE g.id = $1"
    )))
    .bind(id.to_string())
    .fetch_optional(&st.db)
    .await?
    .ok_or_else(|| AppError::not_found("grant"))?;
    let g = grant_row(&row)?;
    if ![g.reader_id, g.patient_id, g.author_id].contains(&caller.id) {
        return Err(AppError::not_found("grant"));
    }
    Ok(g)
}

/// Patients: grants on their reports. Doctors: their own requests and grants on reports they
/// wrote.
async fn list(State(st): State<AppState>, caller: Caller) -> Result<Json<GrantList>, AppError> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "{GRANT_SELECT} WHERE g.reader_id = $1 OR r.patient_id = $1 OR r.author_id = $1 \
         ORDER BY g.created_at DESC LIMIT 200"
    )))
    .bind(caller.id_str())
    .fetch_all(&st.db)
    .await?;
    Ok(Json(GrantList {
        grants: rows.iter().map(grant_row).collect::<Result<_, _>>()?,
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
    let booked: Option<i64> = sqlx::query_scalar(
        "SELECT 1 FROM bookings WHERE doctor_id = $1 AND patient_id = $2 AND status <> 'cancelled' LIMIT 1",
    )
    .bind(caller.id_str())
    .bind(report.patient_id.to_string())
    .fetch_optional(&mut *conn)
    .await?;
    if booked.is_none() {
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
    let live: Option<i64> = sqlx::query_scalar(
        "SELECT 1 FROM grants WHERE report_id = $1 AND reader_id = $2 AND status <> 'revoked' AND expires_at > $3",
    )
    .bind(report.id.to_string())
    .bind(caller.id_str())
    .bind(now)
    .fetch_optional(&mut *conn)
    .await?;
    if live.is_some() {
        return Err(AppError::conflict(
            codes::CONFLICT,
            "you already asked for this report; see `clinvault grant list`",
        ));
    }
    drop(conn);
    let grant_id = Uuid::new_v4();
    let expires = now + i64::from(st.config.grant_days) * 86_400_000;
    let mut tx = st.db.begin().await?;
    sqlx::query(
        "INSERT INTO grants (id, report_id, reader_id, status, created_at, expires_at) \
         VALUES ($1, $2, $3, 'requested', $4, $5)",
    )
    .bind(grant_id.to_string())
    .bind(report.id.to_string())
    .bind(caller.id_str())
    .bind(now)
    .bind(expires)
    .execute(&mut *tx)
    .await?;
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
    let author: String = sqlx::query_scalar("SELECT name FROM users WHERE id = $1")
        .bind(report.author_id.to_string())
        .fetch_one(&st.db)
        .await?;
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
    let key: Vec<u8> = sqlx::query_scalar("SELECT ed25519_pub FROM users WHERE id = $1")
        .bind(caller.id_str())
        .fetch_one(&st.db)
        .await?;
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
    let updated = sqlx::query(
        "UPDATE grants SET status = 'approved', how = 2, approved_at = $1, approval_index = $2, consent_sig = $3 \
         WHERE id = $4 AND status = 'requested'",
    )
    .bind(now)
    .bind(index as i64)
    .bind(req.signature.clone())
    .bind(id.to_string())
    .execute(&mut *tx)
    .await?;
    if updated.rows_affected() != 1 {
        return Err(AppError::conflict(
            codes::INVALID_STATUS,
            "this grant changed meanwhile",
        ));
    }
    // The mailed code is no longer needed.
    sqlx::query("UPDATE otp_requests SET expires_at = $1 WHERE grant_id = $2 AND used_at IS NULL")
        .bind(now)
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
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
    let updated = sqlx::query(
        "UPDATE grants SET status = 'wrapped' WHERE id = $1 AND status = 'approved' AND expires_at > $2",
    )
    .bind(g.id.to_string())
    .bind(now)
    .execute(&mut **tx)
    .await?;
    if updated.rows_affected() != 1 {
        return Err(AppError::conflict(
            codes::INVALID_STATUS,
            "this grant changed meanwhile",
        ));
    }
    sqlx::query(
        "INSERT INTO wrapped_keys (report_id, reader_id, wrapped, wrapper_id, grant_id, ledger_index, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(g.report_id.to_string())
    .bind(g.reader_id.to_string())
    .bind(wrapped.to_vec())
    .bind(wrapper.to_string())
    .bind(g.id.to_string())
    .bind(index as i64)
    .bind(now)
    .execute(&mut **tx)
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
    let flag: i64 = sqlx::query_scalar("SELECT rewrap FROM grants WHERE id = $1")
        .bind(id.to_string())
        .fetch_one(&st.db)
        .await?;
    Ok(flag != 0)
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
    let row = sqlx::query("SELECT x25519_pub, ed25519_pub FROM users WHERE id = $1")
        .bind(g.reader_id.to_string())
        .fetch_one(&st.db)
        .await?;
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
    sqlx::query(
        "UPDATE grants SET status = 'revoked', revoked_at = $1, revoke_index = $2 WHERE id = $3",
    )
    .bind(now)
    .bind(index as i64)
    .bind(id.to_string())
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM wrapped_keys WHERE grant_id = $1")
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
    sqlx::query("UPDATE otp_requests SET expires_at = $1 WHERE grant_id = $2 AND used_at IS NULL")
        .bind(now)
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    tracing::info!(grant = %id, "grant revoked");
    Ok(Json(visible_grant(&st, id, &caller).await?))
}
