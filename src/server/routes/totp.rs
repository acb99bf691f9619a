//! TOTP second factor for staff (issue 15; RFC 6238 through `totp-rs`): enrolment with a first
//! code, the login's code step, one-time recovery codes, and disabling with a current code.
//!
//! The secret is sealed with AES-256-GCM under a key derived from the secrets file (never the
//! database), with the user id as associated data, so a database reader can neither compute
//! codes nor move one account's secret to another. Each accepted time step is stored per
//! account and a code of that step or an older one is refused: a code counts once.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use axum::Json;
use axum::extract::State;
use axum::http::{Method, StatusCode};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sqlx::Row;
use zeroize::Zeroizing;

use super::auth::{normalize_code, per_address, random_code};
use super::ms_to_utc;
use crate::api::{
    Done, LoginResponse, Role, TotpChallenge, TotpCodeRequest, TotpEnrolment, TotpLoginRequest,
    TotpLoginResponse, TotpPendingRequest, TotpRecoveryCodes, TotpStatus, codes,
};
use crate::server::AppState;
use crate::server::db::now_ms;
use crate::server::error::AppError;
use crate::server::extract::{ApiJson, Caller, ClientIp};
use crate::server::policy::{Policy, Route, route};
use crate::server::store::totp;
use crate::server::{ratelimit, session};

/// The roles offered TOTP. Patients are not (docs/security.md says why).
pub const STAFF: &[Role] = &[Role::Doctor, Role::Reception, Role::Admin, Role::Auditor];
/// How long the password step's pending token lives.
const PENDING_TTL_MS: i64 = 5 * 60 * 1000;
const RECOVERY_CODES: usize = 10;
const SECRET_LEN: usize = 20;
const AAD_PREFIX: &[u8] = b"clinvault/totp-secret/v1";
const ISSUER: &str = "clinvault";

pub fn routes() -> Vec<Route> {
    vec![
        route(Method::POST, "/v1/auth/totp/login", Policy::Public, login),
        route(
            Method::POST,
            "/v1/auth/totp/login-enrol",
            Policy::Public,
            login_enrol,
        ),
        route(Method::GET, "/v1/auth/totp", Policy::Roles(STAFF), status),
        route(
            Method::POST,
            "/v1/auth/totp/enrol",
            Policy::Roles(STAFF),
            enrol,
        ),
        route(
            Method::POST,
            "/v1/auth/totp/confirm",
            Policy::Roles(STAFF),
            confirm,
        ),
        route(
            Method::POST,
            "/v1/auth/totp/disable",
            Policy::Roles(STAFF),
            disable,
        ),
    ]
}

/// Seconds since the epoch on the TOTP clock (the server's, plus a test's shift).
fn now_secs(st: &AppState) -> u64 {
    let shift = st
        .totp_clock_shift
        .load(std::sync::atomic::Ordering::Relaxed);
    u64::try_from(now_ms() / 1000 + shift).unwrap_or(0)
}

fn totp_for(secret: &[u8]) -> Result<totp_rs::Totp, AppError> {
    // Builder defaults are RFC 6238's: SHA-1, 6 digits, 30 s steps, one step of skew.
    totp_rs::Builder::new()
        .with_secret(secret.to_vec())
        .build()
        .map_err(AppError::internal)
}

/// `otpauth://totp/clinvault:EMAIL?secret=…`: the issuer only in the label and the RFC's
/// defaults left out, so the QR code stays small enough for an 80×24 terminal (version 5 for
/// addresses up to about 40 characters).
pub fn otpauth_uri(email: &str, secret_base32: &str) -> String {
    let mut label = String::new();
    for b in email.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            label.push(b as char);
        } else {
            label.push_str(&format!("%{b:02X}"));
        }
    }
    format!("otpauth://totp/{ISSUER}:{label}?secret={secret_base32}")
}

fn aad(user_id: &str) -> Vec<u8> {
    [AAD_PREFIX, user_id.as_bytes()].concat()
}

fn seal_secret(st: &AppState, user_id: &str, secret: &[u8]) -> Result<Vec<u8>, AppError> {
    let key = st.secrets.totp_key();
    let nonce = crate::seal::random_array::<12>().map_err(AppError::internal)?;
    let ct = Aes256Gcm::new(&(*key).into())
        .encrypt(
            &Nonce::from(nonce),
            Payload {
                msg: secret,
                aad: &aad(user_id),
            },
        )
        .map_err(|_| AppError::internal("sealing a TOTP secret failed"))?;
    Ok([&nonce[..], &ct].concat())
}

fn open_secret(
    st: &AppState,
    user_id: &str,
    sealed: &[u8],
) -> Result<Zeroizing<Vec<u8>>, AppError> {
    if sealed.len() < 12 + 16 {
        return Err(AppError::damaged(
            "TOTP enrolment",
            "sealed secret too short",
        ));
    }
    let (nonce, ct) = sealed.split_at(12);
    let mut n = [0u8; 12];
    n.copy_from_slice(nonce);
    let key = st.secrets.totp_key();
    Aes256Gcm::new(&(*key).into())
        .decrypt(
            &Nonce::from(n),
            Payload {
                msg: ct,
                aad: &aad(user_id),
            },
        )
        .map(Zeroizing::new)
        // Another account's secret moved here, or another secrets file: both are damage.
        .map_err(|_| AppError::damaged("TOTP enrolment", "sealed secret does not open"))
}

fn is_totp_code(code: &str) -> bool {
    code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit())
}

fn invalid() -> AppError {
    AppError::unauthenticated(codes::TOTP_INVALID, "that code is not valid")
}

fn reused() -> AppError {
    AppError::unauthenticated(
        codes::TOTP_REUSED,
        "that code was already used; wait for the next one (every 30 s)",
    )
}

fn step_expired() -> AppError {
    AppError::unauthenticated(
        codes::LOGIN_STEP_EXPIRED,
        "this login step is unknown, used or older than 5 minutes; log in again",
    )
}

struct TotpRow {
    sealed: Vec<u8>,
    confirmed: bool,
}

async fn totp_row(st: &AppState, user_id: &str) -> Result<Option<TotpRow>, AppError> {
    Ok(totp::secret(&st.db, user_id)
        .await?
        .map(|(sealed, confirmed)| TotpRow {
            sealed,
            confirmed: confirmed.is_some(),
        }))
}

fn required(st: &AppState, role: Role) -> bool {
    STAFF.contains(&role) && st.config.require_totp_for.contains(&role)
}

/// Called by the password step once the password is right: `Some` when the account must
/// give a code (enrolled, or of a role that requires one), with a fresh pending token.
pub(super) async fn second_step(
    st: &AppState,
    user_id: &str,
    role: Role,
) -> Result<Option<TotpChallenge>, AppError> {
    let enrolled = totp_row(st, user_id).await?.is_some_and(|t| t.confirmed);
    if !enrolled && !required(st, role) {
        return Ok(None);
    }
    let raw = crate::seal::random_array::<32>().map_err(AppError::internal)?;
    let pending = URL_SAFE_NO_PAD.encode(raw);
    let now = now_ms();
    let expires = now + PENDING_TTL_MS;
    totp::purge_pending(&st.db, now).await?;
    totp::insert_pending(&st.db, session::hash_token(&pending), user_id, expires).await?;
    Ok(Some(TotpChallenge {
        pending,
        expires_at: ms_to_utc(expires)?,
        enrol: !enrolled,
    }))
}

struct PendingUser {
    token_hash: Vec<u8>,
    id: String,
    email: String,
    role: Role,
}

/// The account behind a live, unused pending token.
async fn pending_user(st: &AppState, pending: &str) -> Result<PendingUser, AppError> {
    if pending.is_empty() || pending.len() > 128 {
        return Err(step_expired());
    }
    let hash = session::hash_token(pending);
    let row = totp::pending(&st.db, hash.clone())
        .await?
        .ok_or_else(step_expired)?;
    if row.try_get::<Option<i64>, _>("used_at")?.is_some()
        || row.try_get::<i64, _>("expires_at")? < now_ms()
    {
        return Err(step_expired());
    }
    if row.try_get::<i64, _>("active")? == 0 {
        return Err(AppError::new(
            StatusCode::FORBIDDEN,
            codes::ACCOUNT_DEACTIVATED,
            "this account was deactivated; ask the clinic's administrator",
        ));
    }
    let role: String = row.try_get("role")?;
    Ok(PendingUser {
        token_hash: hash,
        id: row.try_get("user_id")?,
        email: row.try_get("email")?,
        role: Role::parse(&role).ok_or_else(|| AppError::internal("bad role"))?,
    })
}

/// What a code check did.
enum Accepted {
    /// A TOTP code; `confirmed_now` when it was the first code of an enrolment.
    Totp {
        confirmed_now: bool,
    },
    Recovery,
}

/// Checks `code` (six digits, or a recovery code once enrolled) for `user_id`, counting the
/// try toward the account backoff first, and spends it: the time step is stored with a
/// compare-and-set, a recovery code is marked used the same way. The counter is left for
/// the caller to clear once the whole step succeeds.
async fn check_code(
    st: &AppState,
    user_id: &str,
    email: &str,
    code: &str,
    allow_unconfirmed: bool,
) -> Result<Accepted, AppError> {
    // Counted before the comparison, with the password failures (issue 17's rule).
    ratelimit::hit(
        st,
        &format!("login-fail:{email}"),
        st.config.account_backoff_secs,
        st.config.account_failures,
    )
    .await?;
    let Some(t) = totp_row(st, user_id).await? else {
        return Err(AppError::bad_request(
            "no TOTP enrolment: enrol first (`clinvault totp enrol`)",
        ));
    };
    if !t.confirmed && !allow_unconfirmed {
        return Err(AppError::bad_request(
            "the TOTP enrolment is not confirmed yet: confirm it with a first code",
        ));
    }
    let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    if is_totp_code(&code) {
        let secret = open_secret(st, user_id, &t.sealed)?;
        let totp = totp_for(&secret)?;
        let Some(step) = totp.check(&code, now_secs(st)) else {
            return Err(invalid());
        };
        let step = i64::try_from(step).map_err(AppError::internal)?;
        // Compare-and-set: two requests with one code cannot both pass.
        if !totp::spend_step(&st.db, user_id, step, now_ms()).await? {
            return Err(reused());
        }
        return Ok(Accepted::Totp {
            confirmed_now: !t.confirmed,
        });
    }
    if !t.confirmed {
        return Err(invalid());
    }
    let mac = st.secrets.mac(
        "totp-recovery",
        &[user_id.as_bytes(), normalize_code(&code).as_bytes()],
    );
    if !totp::spend_recovery_code(&st.db, user_id, mac.to_vec(), now_ms()).await? {
        return Err(invalid());
    }
    tracing::info!(user = %user_id, "TOTP recovery code used");
    Ok(Accepted::Recovery)
}

async fn clear_failures(st: &AppState, email: &str) -> Result<(), AppError> {
    ratelimit::clear(st, format!("login-fail:{email}")).await
}

/// Fresh recovery codes replacing any old ones; returned once, stored as HMACs.
async fn new_recovery_codes(st: &AppState, user_id: &str) -> Result<Vec<String>, AppError> {
    let mut out = Vec::with_capacity(RECOVERY_CODES);
    let mut tx = st.db.begin().await?;
    totp::delete_recovery_codes(&mut *tx, user_id).await?;
    for _ in 0..RECOVERY_CODES {
        let code = random_code()?;
        let mac = st.secrets.mac(
            "totp-recovery",
            &[user_id.as_bytes(), normalize_code(&code).as_bytes()],
        );
        totp::insert_recovery_code(&mut *tx, user_id, mac.to_vec()).await?;
        out.push(code);
    }
    tx.commit().await?;
    Ok(out)
}

/// A new unconfirmed secret for `user_id`, replacing an unconfirmed one; refused when a
/// confirmed enrolment exists (disable it first, with a current code).
async fn start_enrolment(
    st: &AppState,
    user_id: &str,
    email: &str,
) -> Result<TotpEnrolment, AppError> {
    let secret =
        Zeroizing::new(crate::seal::random_array::<SECRET_LEN>().map_err(AppError::internal)?);
    let sealed = seal_secret(st, user_id, &secret[..])?;
    if !totp::start_enrolment(&st.db, user_id, sealed, now_ms()).await? {
        return Err(AppError::conflict(
            codes::CONFLICT,
            "TOTP is already enrolled; disable it first with a current code",
        ));
    }
    let b32 = totp_for(&secret[..])?.secret().to_base32();
    Ok(TotpEnrolment {
        otpauth_uri: otpauth_uri(email, &b32),
        secret_base32: b32,
    })
}

/// The code step of a login: a TOTP code (the first one confirms an enrolment begun at this
/// login) or a recovery code. Ends the pending token and opens the session.
async fn login(
    State(st): State<AppState>,
    ClientIp(ip): ClientIp,
    ApiJson(req): ApiJson<TotpLoginRequest>,
) -> Result<Json<TotpLoginResponse>, AppError> {
    per_address(&st, &ip, "auth").await?;
    let u = pending_user(&st, &req.pending).await?;
    let accepted = check_code(&st, &u.id, &u.email, &req.code, required(&st, u.role)).await?;
    if !totp::use_pending(&st.db, u.token_hash.clone(), now_ms()).await? {
        return Err(step_expired());
    }
    let recovery_codes = match accepted {
        Accepted::Totp {
            confirmed_now: true,
        } => {
            tracing::info!(user = %u.id, "TOTP enrolled at login");
            new_recovery_codes(&st, &u.id).await?
        }
        _ => Vec::new(),
    };
    clear_failures(&st, &u.email).await?;
    let login: LoginResponse = super::auth::session_answer(&st, &u.id).await?;
    Ok(Json(TotpLoginResponse {
        login,
        recovery_codes,
    }))
}

/// At a login of an account whose role requires TOTP and that has none: a secret to enrol,
/// confirmed by the code step (`/v1/auth/totp/login`).
async fn login_enrol(
    State(st): State<AppState>,
    ClientIp(ip): ClientIp,
    ApiJson(req): ApiJson<TotpPendingRequest>,
) -> Result<Json<TotpEnrolment>, AppError> {
    per_address(&st, &ip, "auth").await?;
    let u = pending_user(&st, &req.pending).await?;
    if !required(&st, u.role) {
        return Err(AppError::bad_request(
            "this account's role does not require TOTP; enrol after logging in",
        ));
    }
    Ok(Json(start_enrolment(&st, &u.id, &u.email).await?))
}

async fn status(State(st): State<AppState>, caller: Caller) -> Result<Json<TotpStatus>, AppError> {
    let enrolled = totp_row(&st, &caller.id_str())
        .await?
        .is_some_and(|t| t.confirmed);
    let left = totp::recovery_codes_left(&st.db, &caller.id_str()).await?;
    Ok(Json(TotpStatus {
        enrolled,
        required: required(&st, caller.role),
        recovery_codes_left: if enrolled {
            u32::try_from(left).unwrap_or(0)
        } else {
            0
        },
    }))
}

async fn enrol(
    State(st): State<AppState>,
    caller: Caller,
) -> Result<Json<TotpEnrolment>, AppError> {
    Ok(Json(
        start_enrolment(&st, &caller.id_str(), &caller.email).await?,
    ))
}

/// The first code of an enrolment begun with `/v1/auth/totp/enrol`: answers the recovery
/// codes, once.
async fn confirm(
    State(st): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<TotpCodeRequest>,
) -> Result<Json<TotpRecoveryCodes>, AppError> {
    let id = caller.id_str();
    if totp_row(&st, &id).await?.is_some_and(|t| t.confirmed) {
        return Err(AppError::conflict(
            codes::CONFLICT,
            "TOTP is already enrolled and confirmed",
        ));
    }
    if !is_totp_code(req.code.trim()) {
        return Err(AppError::bad_request(
            "code: the six digits your authenticator app shows",
        ));
    }
    check_code(&st, &id, &caller.email, &req.code, true).await?;
    clear_failures(&st, &caller.email).await?;
    tracing::info!(user = %id, "TOTP enrolled");
    Ok(Json(TotpRecoveryCodes {
        recovery_codes: new_recovery_codes(&st, &id).await?,
    }))
}

/// Ends the account's TOTP with a current code or a recovery code. For a role that requires
/// TOTP, the next login leads to a new enrolment.
async fn disable(
    State(st): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<TotpCodeRequest>,
) -> Result<Json<Done>, AppError> {
    let id = caller.id_str();
    check_code(&st, &id, &caller.email, &req.code, false).await?;
    let mut tx = st.db.begin().await?;
    totp::delete_recovery_codes(&mut *tx, &id).await?;
    totp::delete_enrolment(&mut *tx, &id).await?;
    tx.commit().await?;
    clear_failures(&st, &caller.email).await?;
    tracing::info!(user = %id, "TOTP disabled");
    Ok(Json(Done { ok: true }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_told_apart() {
        assert!(is_totp_code("012345"));
        assert!(!is_totp_code("01234"));
        assert!(!is_totp_code("ABCDE-FGHJK-MNPQR-STVWX"));
        assert!(!is_totp_code("０１２３４５"));
    }
}
