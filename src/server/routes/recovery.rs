//! The recovery kit (issue 15): a second copy of the key bundle sealed under a key derived
//! from a recovery code the client made and showed once. The server keeps that sealed copy
//! and `HMAC(pepper, "recovery" ‖ recovery_auth)`; the code never reaches it. Guessing
//! `recovery_auth` online is counted per address and per account like login.

use axum::Json;
use axum::extract::State;
use axum::http::Method;
use sqlx::Row;
use subtle::ConstantTimeEq;

use super::auth::{check_sealed_bundle, per_address, row_public_keys};
use super::{fold_email, parse_uuid};
use crate::api::{
    Done, KeyResetInfo, KeyResetInfoRequest, KeyResetRequest, RecoverOpenRequest,
    RecoverOpenResponse, RecoverResetRequest, RecoveryKitRequest, StatusChanged, codes,
};
use crate::seal::BUNDLE_LEN;
use crate::server::AppState;
use crate::server::db::now_ms;
use crate::server::error::AppError;
use crate::server::extract::{ApiJson, Caller, ClientIp};
use crate::server::policy::{ANY_USER, Policy, Route, route};
use crate::server::ratelimit;
use crate::server::store::{auth, recovery};

pub fn routes() -> Vec<Route> {
    vec![
        route(
            Method::POST,
            "/v1/auth/recovery-kit",
            Policy::Roles(ANY_USER),
            set_kit,
        ),
        route(Method::POST, "/v1/auth/recover/open", Policy::Public, open),
        route(
            Method::POST,
            "/v1/auth/recover/reset",
            Policy::Public,
            reset,
        ),
        route(
            Method::POST,
            "/v1/auth/key-reset/info",
            Policy::Public,
            key_reset_info,
        ),
        route(
            Method::POST,
            "/v1/auth/key-reset",
            Policy::Public,
            key_reset,
        ),
    ]
}

/// The reset code's row, with its user's address and current keys: refused unless the code
/// is this address's, unused and unexpired. Counted per client address.
async fn reset_code(
    st: &AppState,
    ip: &std::net::IpAddr,
    req: &KeyResetInfoRequest,
) -> Result<(Vec<u8>, sqlx::any::AnyRow), AppError> {
    per_address(st, ip, "key-reset").await?;
    let email = fold_email(&req.email)?;
    let mac = st
        .secrets
        .mac(
            "key-reset",
            &[super::auth::normalize_code(&req.code).as_bytes()],
        )
        .to_vec();
    let row = recovery::reset_code(&st.db, mac.clone()).await?;
    let invalid = || {
        AppError::new(
            axum::http::StatusCode::BAD_REQUEST,
            codes::CODE_INVALID,
            "wrong email or reset code",
        )
    };
    let row = row.ok_or_else(invalid)?;
    if row.try_get::<String, _>("email")? != email {
        return Err(invalid());
    }
    if row.try_get::<Option<i64>, _>("used_at")?.is_some() {
        return Err(AppError::conflict(
            codes::CODE_USED,
            "this reset code was used",
        ));
    }
    if row.try_get::<i64, _>("expires_at")? < now_ms() {
        return Err(AppError::new(
            axum::http::StatusCode::GONE,
            codes::CODE_EXPIRED,
            "this reset code expired: ask for a new one (staff: your administrator; \
             patients: register again with this address)",
        ));
    }
    Ok((mac, row))
}

async fn key_reset_info(
    State(st): State<AppState>,
    ClientIp(ip): ClientIp,
    ApiJson(req): ApiJson<KeyResetInfoRequest>,
) -> Result<Json<KeyResetInfo>, AppError> {
    let (_, row) = reset_code(&st, &ip, &req).await?;
    Ok(Json(KeyResetInfo {
        user_id: parse_uuid(&row.try_get::<String, _>("user_id")?)?,
        name: row.try_get("name")?,
        kdf: st.config.kdf,
    }))
}

/// New keys for the same account (issue 15.3): the code is used up, keys, salt, auth key and
/// bundle replaced, the recovery kit (sealing the old keys) dropped, every session ended, and
/// the kind 10 entry appended, all in one transaction. One route, two authorisers: a code an
/// administrator issued (staff, `by = 1`) or one `verify-email` mailed to a patient's own
/// address (`by = 2`, authoriser nil).
async fn key_reset(
    State(st): State<AppState>,
    ClientIp(ip): ClientIp,
    ApiJson(req): ApiJson<KeyResetRequest>,
) -> Result<Json<StatusChanged>, AppError> {
    if req.auth_key.len() != 32 {
        return Err(AppError::bad_request("auth_key: 32 bytes"));
    }
    check_sealed_bundle(&st, &req.salt, &req.bundle, &req.kdf)?;
    super::auth::check_public_keys(&req.public_keys)?;
    let info = KeyResetInfoRequest {
        email: req.email.clone(),
        code: req.code.clone(),
    };
    let (mac, row) = reset_code(&st, &ip, &info).await?;
    let user: String = row.try_get("user_id")?;
    // No administrator: the patient's own address, proven by the code `verify-email` mailed.
    let admin = row
        .try_get::<Option<String>, _>("admin_id")?
        .as_deref()
        .map(parse_uuid)
        .transpose()?;
    let (by, authoriser) = match admin {
        Some(a) => (crate::ledger::RotationBy::Admin, *a.as_bytes()),
        None => (crate::ledger::RotationBy::VerifiedEmail, [0u8; 16]),
    };
    let old = row_public_keys(&row)?;
    let now = now_ms();
    let mut tx = st.db.begin().await?;
    if !recovery::use_reset_code(&mut *tx, mac, now).await? {
        return Err(AppError::conflict(
            codes::CODE_USED,
            "this reset code was used",
        ));
    }
    let new = auth::NewPassword {
        auth_mac: st.secrets.mac("auth", &[&req.auth_key]).to_vec(),
        salt: req.salt.clone(),
        kdf_m: i64::from(req.kdf.m_kib),
        kdf_t: i64::from(req.kdf.t),
        kdf_p: i64::from(req.kdf.p),
        bundle: req.bundle.clone(),
    };
    let updated = recovery::reset_keys(
        &mut *tx,
        &user,
        &new,
        req.public_keys.x25519.to_vec(),
        req.public_keys.ed25519.to_vec(),
        old.x25519.to_vec(),
        old.ed25519.to_vec(),
    )
    .await?;
    if !updated {
        return Err(AppError::conflict(
            codes::CONFLICT,
            "the account's keys changed meanwhile",
        ));
    }
    recovery::end_sessions(&mut *tx, &user, now).await?;
    // Reports the user held as their patient or author: each gets a re-wrap request below,
    // for the report's other key holder to confirm by hand.
    let held = recovery::held_reports(&mut *tx, &user).await?;
    // Nothing comes back by itself: keys wrapped to the old keys are dropped (no one can open
    // them now), and grants that held one are approved again, so their key holder sees a
    // wrap request and confirms it by hand after comparing the new fingerprint.
    recovery::drop_wrapped_keys(&mut *tx, &user).await?;
    recovery::unwrap_grants(&mut *tx, &user).await?;
    let user_id = parse_uuid(&user)?;
    let index = crate::server::ledger_store::append(
        &mut tx,
        &st.append_key,
        &crate::ledger::Entry::KeyRotated {
            time_ms: now,
            user_id: *user_id.as_bytes(),
            old_keys_hash: crate::ledger::keys_hash(&old.x25519, &old.ed25519),
            x25519_public: req.public_keys.x25519,
            ed25519_public: req.public_keys.ed25519,
            by,
            authoriser_id: authoriser,
        },
        std::slice::from_ref(&user),
    )
    .await?;
    // The re-wrap requests: approved by the kind 10 entry itself (a client checks it names
    // this reader); open until confirmed, and the key then stays the holder's own.
    for report in held {
        recovery::insert_rewrap(
            &mut *tx,
            report,
            &user,
            now,
            now + REWRAP_OPEN_MS,
            index as i64,
        )
        .await?;
    }
    auth::set_key_index(&mut *tx, user, index as i64).await?;
    tx.commit().await?;
    tracing::info!(user = %user_id, admin = ?admin, ledger_index = index, "keys reset");
    Ok(Json(StatusChanged {
        ledger_index: index,
    }))
}

/// A re-wrap request stays open (about 100 years): it is the holder's own report.
const REWRAP_OPEN_MS: i64 = 36_500 * 86_400_000;

fn wrong_code() -> AppError {
    AppError::unauthenticated(codes::INVALID_CREDENTIALS, "wrong email or recovery code")
}

/// Stores (or replaces) the caller's kit. The current password's `auth_key` is required, so a
/// stolen session token alone cannot plant a kit of its own.
async fn set_kit(
    State(st): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<RecoveryKitRequest>,
) -> Result<Json<Done>, AppError> {
    if req.auth_key.len() != 32 || req.recovery_auth.len() != 32 {
        return Err(AppError::bad_request("auth_key, recovery_auth: 32 bytes"));
    }
    if req.recovery_bundle.len() != BUNDLE_LEN {
        return Err(AppError::bad_request(format!(
            "recovery_bundle: {BUNDLE_LEN} bytes"
        )));
    }
    let fail_key = format!("login-fail:{}", caller.email);
    ratelimit::hit(
        &st,
        &fail_key,
        st.config.account_backoff_secs,
        st.config.account_failures,
    )
    .await?;
    let stored = auth::auth_mac(&st.db, caller.id).await?;
    let given = st.secrets.mac("auth", &[&req.auth_key]);
    if !bool::from(stored.as_slice().ct_eq(&given[..])) {
        return Err(AppError::unauthenticated(
            codes::INVALID_CREDENTIALS,
            "auth_key: not this account's password",
        ));
    }
    let mac = st.secrets.mac("recovery", &[&req.recovery_auth]);
    recovery::set_kit(
        &st.db,
        caller.id,
        mac.to_vec(),
        req.recovery_bundle.clone(),
        stored,
    )
    .await?;
    ratelimit::clear(&st, fail_key).await?;
    tracing::info!(user = %caller.id, "recovery kit stored");
    Ok(Json(Done { ok: true }))
}

/// The account row behind `email` when `recovery_auth` matches its kit. Every try is counted
/// before the comparison (per address, and per account with the login back-off); an unknown
/// address or an account without a kit is compared against a decoy and answers alike.
async fn check_code(
    st: &AppState,
    ip: &std::net::IpAddr,
    email: &str,
    recovery_auth: &[u8],
) -> Result<(sqlx::any::AnyRow, String), AppError> {
    per_address(st, ip, "auth").await?;
    let email = fold_email(email)?;
    if recovery_auth.len() != 32 {
        return Err(AppError::bad_request("recovery_auth: 32 bytes"));
    }
    let fail_key = format!("recover-fail:{email}");
    ratelimit::hit(
        st,
        &fail_key,
        st.config.account_backoff_secs,
        st.config.account_failures,
    )
    .await?;
    let row = recovery::kit_by_email(&st.db, email.clone()).await?;
    let given = st.secrets.mac("recovery", &[recovery_auth]);
    let stored: Vec<u8> = match &row {
        Some(r) => r
            .try_get::<Option<Vec<u8>>, _>("recovery_mac")?
            .unwrap_or_else(|| st.decoy_mac.to_vec()),
        None => st.decoy_mac.to_vec(),
    };
    let matches = bool::from(stored.as_slice().ct_eq(&given[..]));
    match row.filter(|_| matches) {
        Some(r) => Ok((r, fail_key)),
        None => {
            tracing::info!("wrong recovery code");
            Err(wrong_code())
        }
    }
}

async fn open(
    State(st): State<AppState>,
    ClientIp(ip): ClientIp,
    ApiJson(req): ApiJson<RecoverOpenRequest>,
) -> Result<Json<RecoverOpenResponse>, AppError> {
    let (row, _) = check_code(&st, &ip, &req.email, &req.recovery_auth).await?;
    let bundle: Option<Vec<u8>> = row.try_get("recovery_bundle")?;
    Ok(Json(RecoverOpenResponse {
        user_id: parse_uuid(&row.try_get::<String, _>("id")?)?,
        public_keys: row_public_keys(&row)?,
        recovery_bundle: bundle.ok_or_else(|| AppError::internal("kit without a bundle"))?,
        kdf: st.config.kdf,
    }))
}

/// A new password for the same keys: salt, parameters, auth key and bundle swapped and every
/// session ended, in one transaction, only while the kit is the one the code opened.
async fn reset(
    State(st): State<AppState>,
    ClientIp(ip): ClientIp,
    ApiJson(req): ApiJson<RecoverResetRequest>,
) -> Result<Json<Done>, AppError> {
    if req.auth_key.len() != 32 {
        return Err(AppError::bad_request("auth_key: 32 bytes"));
    }
    check_sealed_bundle(&st, &req.salt, &req.bundle, &req.kdf)?;
    let (row, fail_key) = check_code(&st, &ip, &req.email, &req.recovery_auth).await?;
    let id: String = row.try_get("id")?;
    let kit: Option<Vec<u8>> = row.try_get("recovery_mac")?;
    let new_mac = st.secrets.mac("auth", &[&req.auth_key]);
    let mut tx = st.db.begin().await?;
    let new = auth::NewPassword {
        auth_mac: new_mac.to_vec(),
        salt: req.salt.clone(),
        kdf_m: i64::from(req.kdf.m_kib),
        kdf_t: i64::from(req.kdf.t),
        kdf_p: i64::from(req.kdf.p),
        bundle: req.bundle.clone(),
    };
    if !recovery::reset_password(&mut *tx, &id, &new, kit).await? {
        return Err(AppError::conflict(
            codes::CONFLICT,
            "the recovery kit changed meanwhile",
        ));
    }
    recovery::end_sessions(&mut *tx, &id, now_ms()).await?;
    tx.commit().await?;
    let email = fold_email(&req.email)?;
    recovery::clear_limits(&st.db, fail_key, format!("login-fail:{email}")).await?;
    tracing::info!(user = %id, "password reset with the recovery kit; every session ended");
    Ok(Json(Done { ok: true }))
}
