//! Admin: invite staff accounts, list, deactivate and reactivate accounts.

use axum::Json;
use axum::extract::State;
use axum::http::Method;
use serde::Deserialize;
use sqlx::Row;
use uuid::Uuid;

use super::auth::{normalize_code, random_code};
use super::{PER_PAGE, clean_text, fold_email, like_pattern, ms_to_utc, page_offset, parse_uuid};
use crate::api::{Done, InviteRequest, InviteResponse, Page, Role, StatusChanged, UserInfo, codes};
use crate::ledger::{AccountState, Entry};
use crate::server::AppState;
use crate::server::db::now_ms;
use crate::server::error::AppError;
use crate::server::extract::{ApiJson, ApiQuery, Caller, PathId};
use crate::server::policy::{Policy, Route, route};
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
    ]
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
    let taken: Option<i64> = sqlx::query_scalar("SELECT 1 FROM users WHERE email = $1")
        .bind(email.clone())
        .fetch_optional(&st.db)
        .await?;
    if taken.is_some() {
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
    sqlx::query(
        "INSERT INTO invites (id, code_mac, email, name, role, specialty, bio, created_by, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(id.to_string())
    .bind(mac.to_vec())
    .bind(email.clone())
    .bind(name.clone())
    .bind(req.role.as_str())
    .bind(specialty)
    .bind(bio)
    .bind(caller.id_str())
    .bind(now)
    .bind(expires)
    .execute(&st.db)
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
    let total: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM users WHERE name_fold LIKE $1 ESCAPE '\\' OR email LIKE $1 ESCAPE '\\'",
    )
    .bind(pat.clone())
    .fetch_one(&st.db)
    .await?;
    let rows = sqlx::query(
        "SELECT id, email, name, role, active FROM users \
         WHERE name_fold LIKE $1 ESCAPE '\\' OR email LIKE $1 ESCAPE '\\' \
         ORDER BY name_fold, id LIMIT $2 OFFSET $3",
    )
    .bind(pat)
    .bind(i64::from(PER_PAGE))
    .bind(offset)
    .fetch_all(&st.db)
    .await?;
    let mut items = Vec::with_capacity(rows.len());
    for r in rows {
        let role: String = r.try_get("role")?;
        items.push(UserInfo {
            id: parse_uuid(&r.try_get::<String, _>("id")?)?,
            email: r.try_get("email")?,
            name: r.try_get("name")?,
            role: Role::parse(&role).ok_or_else(|| AppError::internal("bad role"))?,
            active: r.try_get::<i64, _>("active")? != 0,
        });
    }
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
    let res = sqlx::query("UPDATE users SET active = $1 WHERE id = $2 AND active = $3")
        .bind(to)
        .bind(id.to_string())
        .bind(from)
        .execute(&mut *tx)
        .await?;
    if res.rows_affected() == 0 {
        drop(tx);
        let exists: Option<i64> = sqlx::query_scalar("SELECT 1 FROM users WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&st.db)
            .await?;
        return if exists.is_none() {
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
    let affected = sqlx::query(
        "SELECT b.starts_at, p.email, d.name AS doctor_name FROM bookings b \
         JOIN users p ON p.id = b.patient_id JOIN users d ON d.id = b.doctor_id \
         WHERE b.doctor_id = $1 AND b.status = 'booked' AND b.starts_at > $2",
    )
    .bind(id.to_string())
    .bind(now)
    .fetch_all(&st.db)
    .await?;
    let mut tx = st.db.begin().await?;
    sqlx::query(
        "UPDATE bookings SET status = 'cancelled', updated_at = $1 \
         WHERE (doctor_id = $2 OR patient_id = $2) AND status = 'booked' AND starts_at > $1",
    )
    .bind(now)
    .bind(id.to_string())
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "DELETE FROM booking_holds WHERE booking_id IN \
         (SELECT id FROM bookings WHERE (doctor_id = $1 OR patient_id = $1) AND status = 'cancelled')",
    )
    .bind(id.to_string())
    .execute(&mut *tx)
    .await?;
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
