//! Admin: invite staff accounts, list, deactivate and reactivate accounts.

use axum::Json;
use axum::extract::State;
use axum::http::Method;
use serde::Deserialize;
use sqlx::Row;
use uuid::Uuid;

use super::auth::{normalize_code, random_code};
use super::{PER_PAGE, clean_text, fold_email, like_pattern, ms_to_utc, page_offset};
use crate::api::{Done, InviteRequest, InviteResponse, Page, Role, StatusChanged, UserInfo, codes};
use crate::ledger::{AccountState, Entry};
use crate::server::AppState;
use crate::server::db::now_ms;
use crate::server::error::AppError;
use crate::server::extract::{ApiJson, ApiQuery, Caller, PathId};
use crate::server::policy::{Policy, Route, route};
use crate::server::store::admin;
use crate::server::{ledger_store, session};

const ADMIN: &[Role] = &[Role::Admin];
const INVITE_TTL_MS: i64 = 7 * 24 * 3600 * 1000;

pub fn routes() -> Vec<Route> {
    vec![
        route(
            Method::POST,
            "/v1/admin/invites",
            Policy::Roles(ADMIN),
            invite,
        ),
        route(
            Method::GET,
            "/v1/admin/users",
            Policy::Roles(ADMIN),
            list_users,
        ),
        route(
            Method::POST,
            "/v1/admin/users/{id}/deactivate",
            Policy::Roles(ADMIN),
            deactivate,
        ),
        route(
            Method::POST,
            "/v1/admin/users/{id}/reactivate",
            Policy::Roles(ADMIN),
            reactivate,
        ),
        route(
            Method::POST,
            "/v1/admin/users/{id}/key-reset",
            Policy::Roles(ADMIN),
            key_reset,
        ),
    ]
}

const KEY_RESET_TTL_MS: i64 = 24 * 3600 * 1000;

/// Issue 15.3: a staff account lost both password and recovery kit. Mails the user a one-time
/// code with which their own client makes new keys for the same id (`POST /v1/auth/key-reset`);
/// the administrator never sees a key. Completing it appends a kind 10 entry naming this
/// administrator, which every peer's client shows before sharing anything with the user.
async fn key_reset(
    State(st): State<AppState>,
    caller: Caller,
    PathId(id): PathId,
) -> Result<Json<Done>, AppError> {
    let row = admin::user_contact(&st.db, id)
        .await?
        .ok_or_else(|| AppError::not_found("user"))?;
    let role: String = row.try_get("role")?;
    if role == Role::Patient.as_str() {
        return Err(AppError::bad_request(
            "patients get new keys by proving their address again, not by an administrator's reset",
        ));
    }
    let email: String = row.try_get("email")?;
    let name: String = row.try_get("name")?;
    let code = random_code()?;
    let mac = st
        .secrets
        .mac("key-reset", &[normalize_code(&code).as_bytes()]);
    let now = now_ms();
    admin::insert_key_reset(
        &st.db,
        mac.to_vec(),
        id,
        caller.id,
        now,
        now + KEY_RESET_TTL_MS,
    )
    .await?;
    let body = format!(
        "Hello {name},\n\nan administrator reset your clinvault keys, because your password and \
         recovery code were lost. Your one-time code:\n\n    {code}\n\nWithin 24 hours, make \
         new keys and a new password:\n\n    clinvault reset-keys --email {email}\n\nYour \
         colleagues will be told that your keys changed. If you did not ask for this, tell \
         your clinic at once.\n"
    );
    st.mailer
        .send(&email, "Your clinvault keys were reset", body)
        .await
        .map_err(AppError::internal)?;
    tracing::info!(user = %id, "key reset code sent");
    Ok(Json(Done { ok: true }))
}

async fn invite(
    State(st): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<InviteRequest>,
) -> Result<Json<InviteResponse>, AppError> {
    if !matches!(
        req.role,
        Role::Doctor | Role::Reception | Role::Auditor | Role::Station
    ) {
        return Err(AppError::bad_request(
            "role: invites are for doctor, reception, auditor or station accounts",
        ));
    }
    let email = fold_email(&req.email)?;
    let name = clean_text("name", &req.name, 100, true)?;
    let specialty = clean_text("specialty", &req.specialty, 100, req.role == Role::Doctor)?;
    let bio = clean_text("bio", &req.bio, 1000, false)?;
    if admin::email_taken(&st.db, email.clone()).await? {
        return Err(AppError::conflict(
            codes::CONFLICT,
            "an account with this address exists",
        ));
    }
    let code = random_code()?;
    let mac = st
        .secrets
        .mac("invite", &[normalize_code(&code).as_bytes()]);
    let id = Uuid::new_v4();
    let now = now_ms();
    let expires = now + INVITE_TTL_MS;
    admin::insert_invite(
        &st.db,
        admin::NewInvite {
            id,
            code_mac: mac.to_vec(),
            email: email.clone(),
            name: name.clone(),
            role: req.role,
            specialty,
            bio,
            created_by: caller.id,
            now,
            expires,
        },
    )
    .await?;
    let body = format!(
        "Hello {name},\n\nyou are invited to clinvault as {role}. Your one-time enrollment code:\n\n    {code}\n\n\
         Complete it within 7 days:\n\n    clinvault register --invite {code}\n",
        role = req.role
    );
    st.mailer
        .send(&email, "Your clinvault invitation", body)
        .await
        .map_err(AppError::internal)?;
    tracing::info!(invite = %id, role = %req.role, "invite sent");
    Ok(Json(InviteResponse {
        invite_id: id,
        expires_at: ms_to_utc(expires)?,
    }))
}

#[derive(Deserialize)]
struct UserQuery {
    q: Option<String>,
    page: Option<u32>,
}

async fn list_users(
    State(st): State<AppState>,
    ApiQuery(q): ApiQuery<UserQuery>,
) -> Result<Json<Page<UserInfo>>, AppError> {
    let (page, offset) = page_offset(q.page)?;
    let pat = like_pattern(&clean_text("q", q.q.as_deref().unwrap_or(""), 100, false)?);
    let total = admin::count_users(&st.db, pat.clone()).await?;
    let items = admin::users_page(&st.db, pat, i64::from(PER_PAGE), offset).await?;
    Ok(Json(Page {
        items,
        page,
        per_page: PER_PAGE,
        total: total.max(0) as u64,
    }))
}

async fn deactivate(
    State(st): State<AppState>,
    caller: Caller,
    PathId(id): PathId,
) -> Result<Json<Done>, AppError> {
    if id == caller.id {
        return Err(AppError::conflict(
            codes::CONFLICT,
            "you cannot deactivate your own account",
        ));
    }
    set_active(&st, &caller, id, AccountState::Deactivated).await?;
    session::revoke_all(&st, &id.to_string()).await?;
    release_future_bookings(&st, id).await?;
    tracing::info!(user = %id, "account deactivated");
    Ok(Json(Done { ok: true }))
}

/// A deactivated account logs in again with the keys it had (issue 15): its kind-1 entry is
/// untouched, so peers' known keys stay valid; the change is recorded in the ledger.
async fn reactivate(
    State(st): State<AppState>,
    caller: Caller,
    PathId(id): PathId,
) -> Result<Json<StatusChanged>, AppError> {
    let index = set_active(&st, &caller, id, AccountState::Reactivated)
        .await?
        .ok_or_else(|| AppError::conflict(codes::CONFLICT, "that account is active"))?;
    tracing::info!(user = %id, "account reactivated");
    Ok(Json(StatusChanged {
        ledger_index: index,
    }))
}

/// Flips `users.active` and appends the account-status entry (kind 9) in one transaction.
/// `None` when the account is already in that state: the ledger records only changes.
async fn set_active(
    st: &AppState,
    caller: &Caller,
    id: Uuid,
    state: AccountState,
) -> Result<Option<u64>, AppError> {
    let (from, to) = match state {
        AccountState::Deactivated => (1i64, 0i64),
        AccountState::Reactivated => (0, 1),
    };
    let mut tx = st.db.begin().await?;
    if !admin::flip_active(&mut *tx, id, from, to).await? {
        drop(tx);
        return if !admin::user_exists(&st.db, id).await? {
            Err(AppError::not_found("user"))
        } else {
            Ok(None)
        };
    }
    let index = ledger_store::append(
        &mut tx,
        &st.append_key,
        &Entry::AccountStatus {
            time_ms: now_ms(),
            user_id: *id.as_bytes(),
            state,
            admin_id: *caller.id.as_bytes(),
        },
        &[id.to_string()],
    )
    .await?;
    tx.commit().await?;
    Ok(Some(index))
}

/// A deactivated account's future bookings are cancelled, so its slots are free again; when a
/// doctor goes, their patients are told by mail.
async fn release_future_bookings(st: &AppState, id: Uuid) -> Result<(), AppError> {
    let now = now_ms();
    let affected = admin::future_visits_of_doctor(&st.db, id, now).await?;
    let mut tx = st.db.begin().await?;
    admin::cancel_future_bookings(&mut *tx, id, now).await?;
    admin::release_cancelled_holds(&mut *tx, id).await?;
    tx.commit().await?;
    for r in affected {
        let email: String = r.try_get("email")?;
        let doctor: String = r.try_get("doctor_name")?;
        let when = ms_to_utc(r.try_get("starts_at")?)?
            .with_timezone(&st.tz)
            .format("%A %Y-%m-%d at %H:%M");
        let body = format!(
            "Your appointment with {doctor} on {when} was cancelled: the doctor is no longer\n\
             available at this clinic. Please book another appointment.\n"
        );
        if let Err(e) = st
            .mailer
            .send(&email, "Your appointment was cancelled", body)
            .await
        {
            tracing::warn!(error = %e, "could not mail a cancellation");
        }
    }
    Ok(())
}
