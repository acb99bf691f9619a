//! Break-glass emergency access (issue 16, docs/protocol.md §17): the emergency team (kind
//! 11), report keys wrapped to its members by the author's client and held here in escrow,
//! and break-glass requests (kind 12) that release them, at once or after the patient's
//! veto window. The server never sees a usable key: it holds and hands over opaque wraps.

use axum::Json;
use axum::extract::State;
use axum::http::{Method, StatusCode};
use sha2::{Digest, Sha256};
use sqlx::Row;
use uuid::Uuid;

use super::{clean_text, ms_to_utc};
use crate::api::emergency::{
    EmergencyKey, EmergencyKeys, EmergencyList, EmergencyOpen, EmergencyRequest, EscrowDeposit,
    EscrowDone, TeamChangeRequest, TeamChanged, TeamList,
};
use crate::api::{Role, codes};
use crate::ledger::{Entry, TeamChange, emergency_reports_hash};
use crate::seal::WRAPPED_DEK_LEN;
use crate::server::AppState;
use crate::server::db::now_ms;
use crate::server::error::AppError;
use crate::server::extract::{ApiJson, Caller, PathId};
use crate::server::ledger_store;
use crate::server::policy::{Policy, Route, route};
use crate::server::store::emergency::{
    self, READ_WINDOW_MS, escrowed_reports, is_member, load_request, request_keys,
};
use crate::server::store::reports::load_report;

const ADMIN: &[Role] = &[Role::Admin];
const DOCTOR: &[Role] = &[Role::Doctor];
const PATIENT: &[Role] = &[Role::Patient];
/// Doctors read the team at commit (to wrap to it); admins manage it.
const TEAM_READERS: &[Role] = &[Role::Doctor, Role::Admin];
/// Patients see requests on them, doctors their own, admins all.
const LISTERS: &[Role] = &[Role::Patient, Role::Doctor, Role::Admin];
/// Shortest reason accepted: "a reason" must say something.
const MIN_REASON_CHARS: usize = 5;

pub fn routes() -> Vec<Route> {
    vec![
        route(
            Method::GET,
            "/v1/emergency/team",
            Policy::Roles(TEAM_READERS),
            team,
        ),
        route(
            Method::POST,
            "/v1/emergency/team",
            Policy::Roles(ADMIN),
            change_team,
        ),
        route(
            Method::POST,
            "/v1/emergency/escrow/{id}",
            Policy::Roles(DOCTOR),
            escrow,
        ),
        route(Method::POST, "/v1/emergency", Policy::Roles(DOCTOR), open),
        route(Method::GET, "/v1/emergency", Policy::Roles(LISTERS), list),
        route(
            Method::GET,
            "/v1/emergency/{id}/keys",
            Policy::Roles(DOCTOR),
            keys,
        ),
        route(
            Method::POST,
            "/v1/emergency/{id}/veto",
            Policy::Roles(PATIENT),
            veto,
        ),
    ]
}

/// Current members, each with the kind-11 entry the server says added them.
async fn team(State(st): State<AppState>) -> Result<Json<TeamList>, AppError> {
    let members = emergency::team(&st.db).await?;
    Ok(Json(TeamList { members }))
}

/// An administrator adds an active doctor to the team or removes a member; each change is a
/// kind-11 entry in the same transaction. Removal also drops the member's escrowed wraps.
async fn change_team(
    State(st): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<TeamChangeRequest>,
) -> Result<Json<TeamChanged>, AppError> {
    let uid = req.user_id.to_string();
    let now = now_ms();
    let mut tx = st.db.begin().await?;
    let user = emergency::user_role(&mut *tx, req.user_id)
        .await?
        .ok_or_else(|| AppError::not_found("user"))?;
    let member = is_member(&mut tx, req.user_id).await?;
    if req.add {
        let role: String = user.try_get("role")?;
        if role != Role::Doctor.as_str() || user.try_get::<i64, _>("active")? == 0 {
            return Err(AppError::conflict(
                codes::CONFLICT,
                "only an active doctor can join the emergency team",
            ));
        }
        if member {
            return Err(AppError::conflict(
                codes::CONFLICT,
                "this doctor is already on the emergency team",
            ));
        }
    } else if !member {
        return Err(AppError::conflict(
            codes::CONFLICT,
            "this user is not on the emergency team",
        ));
    }
    let index = ledger_store::append(
        &mut tx,
        &st.append_key,
        &Entry::EmergencyTeam {
            time_ms: now,
            member_id: req.user_id.into_bytes(),
            change: if req.add {
                TeamChange::Added
            } else {
                TeamChange::Removed
            },
            admin_id: caller.id.into_bytes(),
        },
        &[uid, caller.id_str()],
    )
    .await?;
    if req.add {
        emergency::add_member(&mut *tx, req.user_id, caller.id, now, index as i64).await?;
    } else {
        emergency::remove_member(&mut *tx, req.user_id).await?;
        emergency::drop_escrow_of(&mut *tx, req.user_id).await?;
    }
    tx.commit().await?;
    tracing::info!(member = %req.user_id, add = req.add, "emergency team changed");
    Ok(Json(TeamChanged {
        ledger_index: index,
    }))
}

/// The author deposits the report key wrapped to team members (their client chose them from
/// kind-11 entries it verified). Only for current members, only the author, only committed.
async fn escrow(
    State(st): State<AppState>,
    caller: Caller,
    PathId(id): PathId,
    ApiJson(req): ApiJson<EscrowDeposit>,
) -> Result<Json<EscrowDone>, AppError> {
    let mut conn = st.db.acquire().await?;
    load_report(&mut conn, id)
        .await?
        .filter(|r| r.author_id == caller.id && r.status == "committed")
        .ok_or_else(|| AppError::not_found("report"))?;
    if req.wraps.len() > 1000 {
        return Err(AppError::bad_request("wraps: at most 1000"));
    }
    let mut seen = std::collections::HashSet::new();
    for w in &req.wraps {
        if w.wrapped.len() != WRAPPED_DEK_LEN {
            return Err(AppError::bad_request(format!(
                "wraps: a wrapped key is {WRAPPED_DEK_LEN} bytes"
            )));
        }
        if !seen.insert(w.member_id) {
            return Err(AppError::bad_request("wraps: a member is listed twice"));
        }
        if !is_member(&mut conn, w.member_id).await? {
            return Err(AppError::conflict(
                codes::CONFLICT,
                format!(
                    "{} is not on the emergency team; fetch the team again",
                    w.member_id
                ),
            ));
        }
    }
    drop(conn);
    let now = now_ms();
    let mut tx = st.db.begin().await?;
    let mut stored = 0u64;
    for w in &req.wraps {
        stored += emergency::deposit(&mut *tx, id, w.member_id, w.wrapped.clone(), now).await?;
    }
    tx.commit().await?;
    Ok(Json(EscrowDone { stored }))
}

/// Addresses of every active administrator.
async fn admin_addresses(st: &AppState) -> Result<Vec<String>, AppError> {
    emergency::addresses_of_role(&st.db, Role::Admin.as_str()).await
}

async fn send(st: &AppState, to: &str, subject: &str, body: String) {
    if let Err(e) = st.mailer.send(to, subject, body).await {
        tracing::error!(error = %e, "could not send a break-glass mail");
    }
}

/// A team member breaks the glass on a patient: the kind-12 entry, the request and its
/// reports in one transaction; then the patient and every administrator are mailed.
async fn open(
    State(st): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<EmergencyOpen>,
) -> Result<Json<EmergencyRequest>, AppError> {
    let reason = clean_text("reason", &req.reason, 500, true)?;
    if reason.chars().count() < MIN_REASON_CHARS {
        return Err(AppError::bad_request(format!(
            "reason: say why, in at least {MIN_REASON_CHARS} characters; it is mailed to the \
             patient and the administrators"
        )));
    }
    let mut conn = st.db.acquire().await?;
    if !is_member(&mut conn, caller.id).await? {
        return Err(AppError::new(
            StatusCode::FORBIDDEN,
            codes::NOT_ON_TEAM,
            "you are not on the emergency team; an administrator adds members \
             (`clinvault admin emergency-team add`)",
        ));
    }
    let patient = emergency::user_contact(&mut *conn, req.patient_id)
        .await?
        .filter(|r| r.try_get::<String, _>("role").ok().as_deref() == Some(Role::Patient.as_str()))
        .ok_or_else(|| AppError::not_found("patient"))?;
    let patient_email: String = patient.try_get("email")?;
    let patient_name: String = patient.try_get("name")?;
    let reports = escrowed_reports(&mut conn, caller.id, req.patient_id).await?;
    drop(conn);
    if reports.is_empty() {
        return Err(AppError::new(
            StatusCode::NOT_FOUND,
            codes::NOT_FOUND,
            "no report of this patient is held in escrow for you: only reports committed \
             while you were on the emergency team are",
        ));
    }
    let now = now_ms();
    let release = now + i64::from(st.config.emergency_wait_minutes) * 60_000;
    let until = release + READ_WINDOW_MS;
    let id = Uuid::new_v4();
    let ids: Vec<[u8; 16]> = reports.iter().map(|r| r.into_bytes()).collect();
    let mut tx = st.db.begin().await?;
    let index = ledger_store::append(
        &mut tx,
        &st.append_key,
        &Entry::EmergencyAccess {
            time_ms: now,
            request_id: id.into_bytes(),
            patient_id: req.patient_id.into_bytes(),
            reader_id: caller.id.into_bytes(),
            reports_hash: emergency_reports_hash(&ids),
            reason_hash: Sha256::digest(reason.as_bytes()).into(),
            release_ms: release,
        },
        &[req.patient_id.to_string(), caller.id_str()],
    )
    .await?;
    emergency::insert_request(
        &mut *tx,
        &emergency::NewRequest {
            id,
            patient: req.patient_id,
            reader: caller.id,
            reason: &reason,
            now,
            release,
            until,
            ledger_index: index as i64,
        },
    )
    .await?;
    for r in &reports {
        emergency::insert_request_report(&mut *tx, id, *r).await?;
    }
    tx.commit().await?;
    tracing::warn!(request = %id, reader = %caller.id, patient = %req.patient_id, reports = reports.len(), "break-glass request");
    let at = |ms: i64| {
        ms_to_utc(ms)
            .map(|t| t.with_timezone(&st.tz).format("%Y-%m-%d %H:%M").to_string())
            .unwrap_or_default()
    };
    let n = reports.len();
    let when = if release > now {
        format!(
            "They get access at {} unless you stop it before then: sign in and run\n\n    \
             clinvault emergency veto {id}\n\nAfter that time it cannot be stopped.",
            at(release)
        )
    } else {
        "They have access now, for one hour.".to_string()
    };
    send(
        &st,
        &patient_email,
        "Emergency access to your reports",
        format!(
            "Dr {reader} opened {n} of your reports in an emergency (break-glass), at {now}.\n\n\
             Reason given: {reason}\n\n{when}\n\nThis access is recorded in the clinic's ledger \
             (entry {index}) and shows in your access trail (the Ledger pane, or `clinvault \
             access`). If you did not expect it, tell the clinic.\n",
            reader = caller.name,
            now = at(now),
        ),
    )
    .await;
    for to in admin_addresses(&st).await? {
        send(
            &st,
            &to,
            "Break-glass: emergency access opened",
            format!(
                "Dr {reader} broke the glass on patient {patient_name} ({patient}): {n} reports.\n\n\
                 Reason given: {reason}\n\nRequest {id}, ledger entry {index}, released at {rel}.\n\
                 Review every emergency access with `clinvault admin emergencies`.\n",
                reader = caller.name,
                patient = req.patient_id,
                rel = at(release),
            ),
        )
        .await;
    }
    let mut conn = st.db.acquire().await?;
    let out = load_request(&mut conn, id, now_ms())
        .await?
        .ok_or_else(|| AppError::internal("request just stored is missing"))?;
    Ok(Json(out))
}

/// Admins: every request. Patients: requests on them. Doctors: their own.
async fn list(State(st): State<AppState>, caller: Caller) -> Result<Json<EmergencyList>, AppError> {
    let scope = match caller.role {
        Role::Admin => emergency::ListScope::All,
        Role::Patient => emergency::ListScope::OnPatient(caller.id),
        _ => emergency::ListScope::ByReader(caller.id),
    };
    let mut conn = st.db.acquire().await?;
    let requests = emergency::list_requests(&mut conn, scope, now_ms()).await?;
    Ok(Json(EmergencyList { requests }))
}

/// The escrowed wraps of a released request, for its reader while still on the team.
async fn keys(
    State(st): State<AppState>,
    caller: Caller,
    PathId(id): PathId,
) -> Result<Json<EmergencyKeys>, AppError> {
    let mut conn = st.db.acquire().await?;
    let now = now_ms();
    let req = load_request(&mut conn, id, now)
        .await?
        .filter(|r| r.reader_id == caller.id)
        .ok_or_else(|| AppError::not_found("emergency request"))?;
    if !is_member(&mut conn, caller.id).await? {
        return Err(AppError::new(
            StatusCode::FORBIDDEN,
            codes::NOT_ON_TEAM,
            "you are no longer on the emergency team; this request gives you nothing",
        ));
    }
    match req.status.as_str() {
        "vetoed" => {
            return Err(AppError::conflict(
                codes::INVALID_STATUS,
                "the patient vetoed this request; nothing was released",
            ));
        }
        "waiting" => {
            return Err(AppError::conflict(
                codes::NOT_YET,
                format!(
                    "released at {} (the patient may veto until then); ask again then",
                    req.release_at
                        .with_timezone(&st.tz)
                        .format("%Y-%m-%d %H:%M")
                ),
            ));
        }
        "ended" => {
            return Err(AppError::conflict(
                codes::INVALID_STATUS,
                "this request's hour is over; open a new one (it is logged and mailed again)",
            ));
        }
        _ => {}
    }
    let keys = request_keys(&mut conn, id, caller.id)
        .await?
        .into_iter()
        .map(|(report_id, wrapped)| EmergencyKey { report_id, wrapped })
        .collect();
    Ok(Json(EmergencyKeys { request: req, keys }))
}

/// The patient stops a request during its wait. After the release it is too late.
async fn veto(
    State(st): State<AppState>,
    caller: Caller,
    PathId(id): PathId,
) -> Result<Json<EmergencyRequest>, AppError> {
    let mut conn = st.db.acquire().await?;
    let now = now_ms();
    let req = load_request(&mut conn, id, now)
        .await?
        .filter(|r| r.patient_id == caller.id)
        .ok_or_else(|| AppError::not_found("emergency request"))?;
    if req.status == "vetoed" {
        return Ok(Json(req));
    }
    if !emergency::veto(&mut *conn, id, now).await? {
        return Err(AppError::conflict(
            codes::INVALID_STATUS,
            "too late to veto: the keys were released; the access stays in your trail",
        ));
    }
    let out = load_request(&mut conn, id, now)
        .await?
        .ok_or_else(|| AppError::internal("request vanished"))?;
    drop(conn);
    tracing::warn!(request = %id, "break-glass request vetoed by the patient");
    let reader = emergency::email(&st.db, out.reader_id).await?;
    let body = format!(
        "The patient vetoed emergency request {id} (Dr {} on {}). Nothing was released.\n",
        out.reader_name, out.patient_name
    );
    for to in reader.into_iter().chain(admin_addresses(&st).await?) {
        send(&st, &to, "Break-glass request vetoed", body.clone()).await;
    }
    Ok(Json(out))
}
