//! Pre-login, email verification, registration (patient, invite, first admin), login, logout.
//! Zero knowledge (DESIGN.md §3): the server sees `auth_key`, never a password, and stores
//! HMAC-SHA256(pepper, auth_key). Unknown and known addresses answer alike.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;

use axum::Json;
use axum::extract::State;
use axum::http::{Method, StatusCode};
use chrono::Utc;
use sqlx::Row;
use subtle::ConstantTimeEq;
use uuid::Uuid;

use super::{clean_phone, clean_text, fold_email, ms_to_utc};
use crate::api::{
    Done, Enrollment, InviteInfo, InviteInfoRequest, LoginAnswer, LoginRequest, LoginResponse,
    PasswordChangeRequest, PreloginRequest, PreloginResponse, RegisterRequest, RegisterResponse,
    RekeyRequest, Role, SessionKeys, UserInfo, VerifyEmailRequest, VerifyEmailResponse, codes,
};
use crate::seal::{KdfParams, PublicKeys};
use crate::server::AppState;
use crate::server::db::now_ms;
use crate::server::error::{AppError, is_unique_violation};
use crate::server::extract::{ApiJson, Caller, ClientIp};
use crate::server::metrics::Metrics;
use crate::server::policy::{ANY_USER, Policy, Route, route};
use crate::server::store::auth;
use crate::server::{ledger_store, ratelimit, session};

pub use crate::seal::BUNDLE_LEN;
const CODE_TTL_MS: i64 = 10 * 60 * 1000;
const CODE_TRIES: i64 = 5;
/// Letters and digits that cannot be mistaken for each other when typed from a mail.
const CODE_ALPHABET: &[u8] = b"ABCDEFGHJKMNPQRSTVWXYZ23456789";

pub fn routes() -> Vec<Route> {
    let mut v = vec![
        route(Method::POST, "/v1/auth/prelogin", Policy::Public, prelogin),
        route(
            Method::POST,
            "/v1/auth/verify-email",
            Policy::Public,
            verify_email,
        ),
        route(
            Method::POST,
            "/v1/auth/invite-info",
            Policy::Public,
            invite_info,
        ),
        route(Method::POST, "/v1/auth/register", Policy::Public, register),
        route(Method::POST, "/v1/auth/login", Policy::Public, login),
        route(
            Method::POST,
            "/v1/auth/logout",
            Policy::Roles(ANY_USER),
            logout,
        ),
        route(Method::GET, "/v1/auth/me", Policy::Roles(ANY_USER), me),
        route(
            Method::GET,
            "/v1/auth/keys",
            Policy::Roles(ANY_USER),
            session_keys,
        ),
        route(
            Method::POST,
            "/v1/auth/rekey",
            Policy::Roles(ANY_USER),
            rekey,
        ),
        route(
            Method::POST,
            "/v1/auth/password",
            Policy::Roles(ANY_USER),
            change_password,
        ),
    ];
    v.extend(super::recovery::routes());
    v.extend(super::totp::routes());
    v
}

pub(super) async fn per_address(
    st: &AppState,
    ip: &std::net::IpAddr,
    what: &str,
) -> Result<(), AppError> {
    let limit = st.config.auth_per_address_per_minute;
    let limit = if what == "prelogin" {
        limit.saturating_mul(3)
    } else {
        limit
    };
    ratelimit::hit(st, &format!("{what}-ip:{ip}"), 60, limit).await
}

async fn prelogin(
    State(st): State<AppState>,
    ClientIp(ip): ClientIp,
    ApiJson(req): ApiJson<PreloginRequest>,
) -> Result<Json<PreloginResponse>, AppError> {
    per_address(&st, &ip, "prelogin").await?;
    let email = fold_email(&req.email)?;
    let row = auth::kdf_row(&st.db, email.clone()).await?;
    // An unknown address gets a stable salt derived with the pepper, and parameters drawn
    // like a real account's (both paths run the same query: same work).
    let decoy = st.secrets.mac("decoy-salt", &[email.as_bytes()]);
    let drawn = decoy_kdf(&st, &decoy).await?;
    let (salt, kdf, salt_scheme) = match row {
        Some(r) => (
            r.try_get::<Vec<u8>, _>("salt")?,
            stored_kdf(&r)?,
            salt_scheme(&r)?,
        ),
        None => (decoy[..16].to_vec(), drawn, crate::api::SALT_SCHEME_BOUND),
    };
    Ok(Json(PreloginResponse {
        salt,
        kdf,
        salt_scheme,
    }))
}

/// The account's salt scheme (issue 17.9, docs/protocol.md §4.2).
fn salt_scheme(r: &sqlx::any::AnyRow) -> Result<u8, AppError> {
    u8::try_from(r.try_get::<i64, _>("kdf_salt_scheme")?).map_err(AppError::internal)
}

fn stored_kdf(r: &sqlx::any::AnyRow) -> Result<KdfParams, AppError> {
    let n = |c: &str| -> Result<u32, AppError> {
        u32::try_from(r.try_get::<i64, _>(c)?).map_err(AppError::internal)
    };
    Ok(KdfParams {
        m_kib: n("kdf_m")?,
        t: n("kdf_t")?,
        p: n("kdf_p")?,
    })
}

/// Parameters for an unknown address, picked (stably per address) with the weights the
/// accounts' parameters have: after a KDF upgrade, old parameters do not mark real accounts.
async fn decoy_kdf(st: &AppState, decoy: &[u8; 32]) -> Result<KdfParams, AppError> {
    let rows = auth::kdf_groups(&st.db).await?;
    let mut groups = Vec::with_capacity(rows.len());
    for r in &rows {
        groups.push((
            stored_kdf(r)?,
            u64::try_from(r.try_get::<i64, _>("n")?).unwrap_or(0),
        ));
    }
    let total: u64 = groups.iter().map(|g| g.1).sum();
    if total == 0 {
        return Ok(st.config.kdf);
    }
    let mut pick = u64::from_be_bytes(decoy[16..24].try_into().unwrap_or([0; 8])) % total;
    for (kdf, n) in groups {
        if pick < n {
            return Ok(kdf);
        }
        pick -= n;
    }
    Ok(st.config.kdf)
}

fn random_digits() -> Result<String, AppError> {
    // Rejection sampling keeps the six digits uniform.
    loop {
        let b = crate::seal::random_array::<4>().map_err(AppError::internal)?;
        let n = u32::from_be_bytes(b);
        if n < 4_294_000_000 {
            return Ok(format!("{:06}", n % 1_000_000));
        }
    }
}

/// A long one-time code (about 98 bits), grouped for typing: `ABCDE-FGHJK-MNPQR-STVWX`.
pub fn random_code() -> Result<String, AppError> {
    let mut out = String::new();
    let mut n = 0;
    while n < 20 {
        let b = crate::seal::random_array::<16>().map_err(AppError::internal)?;
        for x in b {
            // 240 = 8 × 30: below it, x % 30 is uniform.
            if x < 240 && n < 20 {
                if n > 0 && n % 5 == 0 {
                    out.push('-');
                }
                out.push(CODE_ALPHABET[(x % 30) as usize] as char);
                n += 1;
            }
        }
    }
    Ok(out)
}

/// What users type back: case and separators do not matter.
pub fn normalize_code(code: &str) -> String {
    code.chars()
        .filter(|c| *c != '-' && !c.is_whitespace())
        .flat_map(char::to_uppercase)
        .take(64)
        .collect()
}

async fn verify_email(
    State(st): State<AppState>,
    ClientIp(ip): ClientIp,
    ApiJson(req): ApiJson<VerifyEmailRequest>,
) -> Result<Json<VerifyEmailResponse>, AppError> {
    per_address(&st, &ip, "auth").await?;
    let email = fold_email(&req.email)?;
    ratelimit::hit(&st, &format!("verify-acct:{email}"), 3600, 10).await?;
    let owner = auth::owner_of(&st.db, email.clone()).await?;
    let taken = owner.as_ref().map(|_| 1i64);
    let id = Uuid::new_v4();
    let now = now_ms();
    let expires = now + CODE_TTL_MS;
    let code = random_digits()?;
    let code_mac = st.secrets.mac("verify", &[id.as_bytes(), code.as_bytes()]);
    // A taken address gets no code (nothing can complete), and its owner gets a warning.
    auth::insert_verification(
        &st.db,
        id,
        email.clone(),
        taken.is_none().then(|| code_mac.to_vec()),
        now,
        expires,
    )
    .await?;
    let (subject, body): (&str, String) = if taken.is_none() {
        (
            "Your clinvault registration code",
            format!(
                "Your clinvault registration code is:\n\n    {code}\n\n\
                 It expires in 10 minutes. If you did not ask for it, ignore this mail.\n"
            ),
        )
    } else if let Some(reset) = patient_key_reset(&st, owner.as_ref(), &email, now).await? {
        reset
    } else {
        (
            "Someone tried to register with your address",
            "Someone (perhaps you) asked to register a new clinvault account with this\n\
             address, which already has one. If that was you, log in instead.\n\
             If not, ignore this mail: nothing was changed.\n"
                .to_string(),
        )
    };
    // Counted the same whether the mail holds a code or a warning: the metric must not tell
    // which addresses have accounts.
    if let Err(e) = st.mailer.send(&email, subject, body).await {
        Metrics::add(&st.metrics.otp_send_failed, 1);
        tracing::error!(error = %e, "could not send the verification mail");
        return Err(AppError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            codes::INTERNAL,
            "the mail could not be sent; try again later",
        ));
    }
    Metrics::add(&st.metrics.otp_sent, 1);
    Ok(Json(VerifyEmailResponse {
        verification_id: id,
        expires_at: ms_to_utc(expires)?,
        kdf: st.config.kdf,
    }))
}

/// How long a patient's key-reset code (mailed by `verify-email`) stays usable.
const PATIENT_KEY_RESET_TTL_MS: i64 = 3600 * 1000;

/// Issue 15.3, the patient's path: registering again with an address that has an active
/// patient account mails a key-reset code (no administrator: the kind 10 entry will say
/// `by = 2`) instead of a plain warning. The caller's answer is the same either way, so
/// nothing beyond what `verify-email` already tells is revealed; only the mailbox owner can
/// use the code. Staff and deactivated accounts get the warning as before.
async fn patient_key_reset(
    st: &AppState,
    owner: Option<&sqlx::any::AnyRow>,
    email: &str,
    now: i64,
) -> Result<Option<(&'static str, String)>, AppError> {
    let Some(row) = owner else { return Ok(None) };
    let role: String = row.try_get("role")?;
    let active: i64 = row.try_get("active")?;
    if role != Role::Patient.as_str() || active == 0 {
        return Ok(None);
    }
    let user: String = row.try_get("id")?;
    let name: String = row.try_get("name")?;
    let code = random_code()?;
    let mac = st
        .secrets
        .mac("key-reset", &[normalize_code(&code).as_bytes()]);
    auth::insert_patient_key_reset(
        &st.db,
        mac.to_vec(),
        user,
        now,
        now + PATIENT_KEY_RESET_TTL_MS,
    )
    .await?;
    Ok(Some((
        "Someone tried to register with your address",
        format!(
            "Hello {name},\n\nsomeone (perhaps you) asked to register a new clinvault account \
             with this address, which already has one. If that was you, log in instead.\n\n\
             If you lost your password, use your recovery code: `clinvault recover`. It keeps \
             your keys, and every report stays readable.\n\n\
             Only if you lost both your password and your recovery code: this one-time code \
             makes new keys and a new password for your account, within one hour:\n\n    \
             {code}\n\n    clinvault reset-keys --email {email}\n\n\
             Your reports then stay closed to you until each doctor who wrote one confirms \
             your new key by hand; your doctors will be told that your keys changed.\n\n\
             If you did not ask for this, ignore this mail: nothing was changed.\n"
        ),
    )))
}

struct InviteRow {
    id: String,
    email: String,
    name: String,
    role: Role,
    specialty: String,
    bio: String,
}

/// The invite behind a code, or the specific error (invalid, used, expired).
async fn find_invite(st: &AppState, code: &str) -> Result<InviteRow, AppError> {
    let mac = st.secrets.mac("invite", &[normalize_code(code).as_bytes()]);
    let row = auth::invite_by_mac(&st.db, mac.to_vec())
        .await?
        .ok_or_else(code_invalid)?;
    check_code_unused_and_live(&row)?;
    let role: String = row.try_get("role")?;
    Ok(InviteRow {
        id: row.try_get("id")?,
        email: row.try_get("email")?,
        name: row.try_get("name")?,
        role: Role::parse(&role).ok_or_else(|| AppError::internal("bad role"))?,
        specialty: row.try_get("specialty")?,
        bio: row.try_get("bio")?,
    })
}

fn code_invalid() -> AppError {
    AppError::new(
        StatusCode::BAD_REQUEST,
        codes::CODE_INVALID,
        "that code is not valid",
    )
}

/// A single-use code's row (invite or email verification): refused once used or expired.
fn check_code_unused_and_live(row: &sqlx::any::AnyRow) -> Result<(), AppError> {
    if row.try_get::<Option<i64>, _>("used_at")?.is_some() {
        return Err(code_used());
    }
    if row.try_get::<i64, _>("expires_at")? < now_ms() {
        return Err(code_expired());
    }
    Ok(())
}

fn code_used() -> AppError {
    AppError::new(
        StatusCode::CONFLICT,
        codes::CODE_USED,
        "that code was already used",
    )
}

fn code_expired() -> AppError {
    AppError::new(
        StatusCode::GONE,
        codes::CODE_EXPIRED,
        "that code has expired; ask for a new one",
    )
}

async fn invite_info(
    State(st): State<AppState>,
    ClientIp(ip): ClientIp,
    ApiJson(req): ApiJson<InviteInfoRequest>,
) -> Result<Json<InviteInfo>, AppError> {
    per_address(&st, &ip, "auth").await?;
    let inv = find_invite(&st, &req.code).await?;
    Ok(Json(InviteInfo {
        email: inv.email,
        name: inv.name,
        role: inv.role,
        kdf: st.config.kdf,
    }))
}

/// The salt, the sealed bundle and the KDF parameters a registration or a re-key carries:
/// the sizes the format fixes, and this server's current parameters.
pub(super) fn check_sealed_bundle(
    st: &AppState,
    salt: &[u8],
    bundle: &[u8],
    kdf: &crate::seal::KdfParams,
) -> Result<(), AppError> {
    if salt.len() != 16 {
        return Err(AppError::bad_request("salt: 16 bytes"));
    }
    if bundle.len() != BUNDLE_LEN {
        return Err(AppError::bad_request(format!("bundle: {BUNDLE_LEN} bytes")));
    }
    if *kdf != st.config.kdf {
        return Err(AppError::new(
            StatusCode::BAD_REQUEST,
            codes::KDF_PARAMS,
            format!(
                "kdf: this server's parameters are m={} KiB, t={}, p={}",
                st.config.kdf.m_kib, st.config.kdf.t, st.config.kdf.p
            ),
        ));
    }
    Ok(())
}

/// Checks the key material a registration carries.
fn check_keys(st: &AppState, req: &RegisterRequest) -> Result<(), AppError> {
    if req.auth_key.len() != 32 {
        return Err(AppError::bad_request("auth_key: 32 bytes"));
    }
    check_sealed_bundle(st, &req.salt, &req.bundle, &req.kdf)?;
    check_public_keys(&req.public_keys)?;
    if req.user_id.is_nil() {
        return Err(AppError::bad_request("user_id: a random UUID"));
    }
    Ok(())
}

pub(super) fn check_public_keys(pk: &PublicKeys) -> Result<(), AppError> {
    if ed25519_dalek::VerifyingKey::from_bytes(&pk.ed25519)
        .map(|k| k.is_weak())
        .unwrap_or(true)
    {
        return Err(AppError::bad_request(
            "public_keys.ed25519: not a usable key",
        ));
    }
    if pk.x25519 == [0u8; 32] {
        return Err(AppError::bad_request(
            "public_keys.x25519: not a usable key",
        ));
    }
    Ok(())
}

/// Why a new account could not be stored.
enum InsertError {
    /// The address (or id) is taken.
    Taken,
    Other(AppError),
}

impl From<sqlx::Error> for InsertError {
    fn from(e: sqlx::Error) -> Self {
        if is_unique_violation(&e) {
            InsertError::Taken
        } else {
            InsertError::Other(e.into())
        }
    }
}

impl From<AppError> for InsertError {
    fn from(e: AppError) -> Self {
        InsertError::Other(e)
    }
}

impl From<InsertError> for AppError {
    fn from(e: InsertError) -> Self {
        match e {
            InsertError::Taken => AppError::conflict(codes::CONFLICT, "that account exists"),
            InsertError::Other(e) => e,
        }
    }
}

struct NewUser<'a> {
    email: &'a str,
    name: &'a str,
    phone: &'a str,
    role: Role,
}

async fn insert_user(
    conn: &mut sqlx::AnyConnection,
    st: &AppState,
    req: &RegisterRequest,
    u: &NewUser<'_>,
) -> Result<(), InsertError> {
    let auth_mac = st.secrets.mac("auth", &[&req.auth_key]);
    auth::insert_user(
        &mut *conn,
        auth::NewUserRow {
            id: req.user_id,
            email: u.email.to_string(),
            name: u.name.to_string(),
            name_fold: u.name.to_lowercase(),
            phone: u.phone.to_string(),
            role: u.role.as_str(),
            auth_mac: auth_mac.to_vec(),
            salt: req.salt.clone(),
            kdf_m: i64::from(req.kdf.m_kib),
            kdf_t: i64::from(req.kdf.t),
            kdf_p: i64::from(req.kdf.p),
            x25519: req.public_keys.x25519.to_vec(),
            ed25519: req.public_keys.ed25519.to_vec(),
            bundle: req.bundle.clone(),
            now: now_ms(),
        },
    )
    .await?;
    // The public keys go into the ledger in the same transaction (DESIGN.md §3).
    let entry = crate::ledger::Entry::UserRegistered {
        time_ms: now_ms(),
        user_id: *req.user_id.as_bytes(),
        role: ledger_store::ledger_role(u.role),
        x25519_public: req.public_keys.x25519,
        ed25519_public: req.public_keys.ed25519,
    };
    let index =
        ledger_store::append(conn, &st.append_key, &entry, &[req.user_id.to_string()]).await?;
    auth::set_key_index(&mut *conn, req.user_id.to_string(), index as i64).await?;
    Ok(())
}

async fn register(
    State(st): State<AppState>,
    ClientIp(ip): ClientIp,
    ApiJson(req): ApiJson<RegisterRequest>,
) -> Result<Json<RegisterResponse>, AppError> {
    per_address(&st, &ip, "auth").await?;
    check_keys(&st, &req)?;
    if auth::id_taken(&st.db, req.user_id).await? {
        return Err(AppError::conflict(
            codes::ID_TAKEN,
            "user_id is in use; pick another random id",
        ));
    }
    let role = match &req.enrollment {
        Enrollment::Patient {
            verification_id,
            code,
            email,
            name,
            phone,
        } => {
            let email = fold_email(email)?;
            let name = clean_text("name", name, 100, true)?;
            let phone = clean_phone(phone)?;
            ratelimit::hit(&st, &format!("register-acct:{email}"), 60, 10).await?;
            register_patient(&st, &req, *verification_id, code, &email, &name, &phone).await?;
            Role::Patient
        }
        Enrollment::Invite { code } => {
            let inv = find_invite(&st, code).await?;
            let mut tx = st.db.begin().await?;
            if !auth::use_invite(&mut *tx, inv.id.clone(), now_ms()).await? {
                return Err(code_used());
            }
            let new = NewUser {
                email: &inv.email,
                name: &inv.name,
                phone: "",
                role: inv.role,
            };
            if let Err(e) = insert_user(&mut tx, &st, &req, &new).await {
                return Err(if matches!(e, InsertError::Taken) {
                    AppError::conflict(codes::CONFLICT, "an account with this address exists")
                } else {
                    e.into()
                });
            }
            if inv.role == Role::Doctor {
                auth::insert_doctor(
                    &mut *tx,
                    req.user_id,
                    inv.specialty.clone(),
                    inv.bio.clone(),
                )
                .await?;
            }
            tx.commit().await?;
            inv.role
        }
        Enrollment::Admin { code, email, name } => {
            let email = fold_email(email)?;
            let name = clean_text("name", name, 100, true)?;
            let mac = st
                .secrets
                .mac("admin-enroll", &[normalize_code(code).as_bytes()]);
            let mut tx = st.db.begin().await?;
            if !auth::use_admin_code(&mut *tx, mac.to_vec(), now_ms()).await? {
                drop(tx);
                return Err(if auth::admin_code_known(&st.db, mac.to_vec()).await? {
                    code_used()
                } else {
                    code_invalid()
                });
            }
            let new = NewUser {
                email: &email,
                name: &name,
                phone: "",
                role: Role::Admin,
            };
            if let Err(e) = insert_user(&mut tx, &st, &req, &new).await {
                return Err(if matches!(e, InsertError::Taken) {
                    AppError::conflict(codes::CONFLICT, "an account with this address exists")
                } else {
                    e.into()
                });
            }
            tx.commit().await?;
            let _ = std::fs::remove_file(st.config.data.join("admin-enrollment.txt"));
            Role::Admin
        }
    };
    tracing::info!(user = %req.user_id, role = %role, "account registered");
    Ok(Json(RegisterResponse {
        user_id: req.user_id,
        role,
    }))
}

async fn register_patient(
    st: &AppState,
    req: &RegisterRequest,
    verification_id: Uuid,
    code: &str,
    email: &str,
    name: &str,
    phone: &str,
) -> Result<(), AppError> {
    let row = auth::verification(&st.db, verification_id)
        .await?
        .ok_or_else(code_invalid)?;
    check_code_unused_and_live(&row)?;
    // The try is counted before the comparison, in one statement: parallel guesses cannot
    // all pass a check of the old count (issue 17).
    let tries = auth::charge_verification_try(&st.db, verification_id, CODE_TRIES).await?;
    let Some(tries) = tries else {
        return Err(AppError::new(
            StatusCode::BAD_REQUEST,
            codes::CODE_INVALID,
            "too many wrong codes; ask for a new one",
        ));
    };
    let stored: Option<Vec<u8>> = row.try_get("code_mac")?;
    let row_email: String = row.try_get("email")?;
    let given = st.secrets.mac(
        "verify",
        &[verification_id.as_bytes(), code.trim().as_bytes()],
    );
    let ok = match &stored {
        Some(s) => bool::from(s.as_slice().ct_eq(&given[..])) && row_email == email,
        None => false,
    };
    if !ok {
        let left = (CODE_TRIES - tries).max(0);
        return Err(AppError::new(
            StatusCode::BAD_REQUEST,
            codes::CODE_INVALID,
            format!("that code is not valid; {left} tries left"),
        ));
    }
    let mut tx = st.db.begin().await?;
    if !auth::use_verification(&mut *tx, verification_id, now_ms()).await? {
        return Err(code_used());
    }
    let new = NewUser {
        email,
        name,
        phone,
        role: Role::Patient,
    };
    if let Err(e) = insert_user(&mut tx, st, req, &new).await {
        // The address was registered meanwhile: say no more than a bad code would.
        return Err(if matches!(e, InsertError::Taken) {
            code_invalid()
        } else {
            e.into()
        });
    }
    tx.commit().await?;
    Ok(())
}

async fn login(
    State(st): State<AppState>,
    ClientIp(ip): ClientIp,
    ApiJson(req): ApiJson<LoginRequest>,
) -> Result<Json<LoginAnswer>, AppError> {
    per_address(&st, &ip, "auth").await?;
    let email = fold_email(&req.email)?;
    if req.auth_key.len() != 32 {
        return Err(AppError::bad_request("auth_key: 32 bytes"));
    }
    let fail_key = format!("login-fail:{email}");
    let backoff = st.config.account_backoff_secs;
    // Counted before the comparison (and cleared on success), so parallel wrong passwords
    // cannot all pass a check of the old count (issue 17).
    ratelimit::hit(&st, &fail_key, backoff, st.config.account_failures).await?;
    let row = auth::login_row(&st.db, email.clone()).await?;
    let given = st.secrets.mac("auth", &[&req.auth_key]);
    // The same comparison runs for an unknown address, against a decoy.
    let stored: Vec<u8> = match &row {
        Some(r) => r.try_get("auth_mac")?,
        None => st.decoy_mac.to_vec(),
    };
    let matches = bool::from(stored.as_slice().ct_eq(&given[..]));
    let Some(row) = row.filter(|_| matches) else {
        return Err(AppError::unauthenticated(
            codes::INVALID_CREDENTIALS,
            "wrong email or password",
        ));
    };
    if row.try_get::<i64, _>("active")? == 0 {
        return Err(AppError::new(
            StatusCode::FORBIDDEN,
            codes::ACCOUNT_DEACTIVATED,
            "this account was deactivated; ask the clinic's administrator",
        ));
    }
    let id: String = row.try_get("id")?;
    let role: String = row.try_get("role")?;
    let role = Role::parse(&role).ok_or_else(|| AppError::internal("bad role"))?;
    // TOTP (issue 15): the failure count stays until the code step succeeds, so a password
    // holder cannot reset the backoff between wrong codes.
    if let Some(challenge) = super::totp::second_step(&st, &id, role).await? {
        return Ok(Json(LoginAnswer::Totp {
            totp_required: challenge,
        }));
    }
    ratelimit::clear(&st, fail_key).await?;
    Ok(Json(LoginAnswer::Session(Box::new(
        session_answer(&st, &id).await?,
    ))))
}

/// A new session for `id` and what the client needs to open its keys: the end of a login,
/// after the password (and, where needed, the TOTP code).
pub(super) async fn session_answer(st: &AppState, id: &str) -> Result<LoginResponse, AppError> {
    let row = auth::session_row(&st.db, id).await?;
    let (token, expires) = session::create(st, id).await?;
    let role: String = row.try_get("role")?;
    let public_keys = row_public_keys(&row)?;
    let kdf = stored_kdf(&row)?;
    Ok(LoginResponse {
        kdf_upgrade: (kdf != st.config.kdf).then_some(st.config.kdf),
        token,
        user: UserInfo {
            id: super::parse_uuid(id)?,
            email: row.try_get("email")?,
            name: row.try_get("name")?,
            role: Role::parse(&role).ok_or_else(|| AppError::internal("bad role"))?,
            active: true,
        },
        public_keys,
        bundle: row.try_get("bundle")?,
        idle_timeout_secs: st.config.session_idle_secs,
        expires_at: ms_to_utc(expires)?,
    })
}

pub(super) fn row_public_keys(row: &sqlx::any::AnyRow) -> Result<PublicKeys, AppError> {
    let x: Vec<u8> = row.try_get("x25519_pub")?;
    let e: Vec<u8> = row.try_get("ed25519_pub")?;
    Ok(PublicKeys {
        x25519: x
            .try_into()
            .map_err(|_| AppError::internal("bad key length"))?,
        ed25519: e
            .try_into()
            .map_err(|_| AppError::internal("bad key length"))?,
    })
}

/// The caller's sealed key bundle and KDF inputs: a signed-in client unseals its keys with
/// the password without another login (which the per-address login limit counts).
async fn session_keys(
    State(st): State<AppState>,
    caller: Caller,
) -> Result<Json<SessionKeys>, AppError> {
    let row = auth::session_keys_row(&st.db, caller.id, caller.token_hash.clone()).await?;
    let created: i64 = row.try_get("created_at")?;
    let kdf = stored_kdf(&row)?;
    Ok(Json(SessionKeys {
        user: UserInfo {
            id: caller.id,
            email: caller.email,
            name: caller.name,
            role: caller.role,
            active: true,
        },
        salt: row.try_get("salt")?,
        kdf,
        salt_scheme: salt_scheme(&row)?,
        public_keys: row_public_keys(&row)?,
        bundle: row.try_get("bundle")?,
        idle_timeout_secs: st.config.session_idle_secs,
        expires_at: ms_to_utc(created + (st.config.session_absolute_secs * 1000) as i64)?,
        kdf_upgrade: (kdf != st.config.kdf).then_some(st.config.kdf),
    }))
}

/// The same password under the server's current KDF parameters: proven by the old auth key,
/// then salt, auth key and bundle are replaced together.
async fn rekey(
    State(st): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<RekeyRequest>,
) -> Result<Json<Done>, AppError> {
    let new = NewSecrets {
        old_auth_key: &req.old_auth_key,
        salt: &req.salt,
        kdf: &req.kdf,
        auth_key: &req.auth_key,
        bundle: &req.bundle,
    };
    replace_secrets(&st, &caller, &new, false).await?;
    tracing::info!(user = %caller.id, "account re-keyed to the current KDF parameters");
    Ok(Json(Done { ok: true }))
}

/// A new password for the same keys (issue 15): proven by the old auth key; salt, auth key
/// and bundle are replaced and every other session of the account ends, in one transaction.
async fn change_password(
    State(st): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<PasswordChangeRequest>,
) -> Result<Json<Done>, AppError> {
    let new = NewSecrets {
        old_auth_key: &req.old_auth_key,
        salt: &req.salt,
        kdf: &req.kdf,
        auth_key: &req.auth_key,
        bundle: &req.bundle,
    };
    replace_secrets(&st, &caller, &new, true).await?;
    tracing::info!(user = %caller.id, "password changed; other sessions ended");
    Ok(Json(Done { ok: true }))
}

struct NewSecrets<'a> {
    old_auth_key: &'a [u8],
    salt: &'a [u8],
    kdf: &'a KdfParams,
    auth_key: &'a [u8],
    bundle: &'a [u8],
}

/// Swaps salt, KDF parameters, auth MAC and bundle after checking the old auth key (a wrong
/// one counts toward the account backoff, as at login). With `end_others`, the account's
/// other sessions are revoked in the same transaction: the swap and the revocation happen
/// together or not at all.
async fn replace_secrets(
    st: &AppState,
    caller: &Caller,
    new: &NewSecrets<'_>,
    end_others: bool,
) -> Result<(), AppError> {
    if new.auth_key.len() != 32 || new.old_auth_key.len() != 32 {
        return Err(AppError::bad_request("auth_key, old_auth_key: 32 bytes"));
    }
    check_sealed_bundle(st, new.salt, new.bundle, new.kdf)?;
    let fail_key = format!("login-fail:{}", caller.email);
    let backoff = st.config.account_backoff_secs;
    // Counted before the comparison, as at login.
    ratelimit::hit(st, &fail_key, backoff, st.config.account_failures).await?;
    let stored = auth::auth_mac(&st.db, caller.id).await?;
    let given = st.secrets.mac("auth", &[new.old_auth_key]);
    if !bool::from(stored.as_slice().ct_eq(&given[..])) {
        return Err(AppError::unauthenticated(
            codes::INVALID_CREDENTIALS,
            "old_auth_key: not this account's password",
        ));
    }
    let new_mac = st.secrets.mac("auth", &[new.auth_key]);
    let mut tx = st.db.begin().await?;
    let password = auth::NewPassword {
        auth_mac: new_mac.to_vec(),
        salt: new.salt.to_vec(),
        kdf_m: i64::from(new.kdf.m_kib),
        kdf_t: i64::from(new.kdf.t),
        kdf_p: i64::from(new.kdf.p),
        bundle: new.bundle.to_vec(),
    };
    if !auth::replace_password(&mut *tx, caller.id, &password, stored).await? {
        return Err(AppError::conflict(
            codes::CONFLICT,
            "the account's keys changed meanwhile; log in again",
        ));
    }
    if end_others {
        auth::end_other_sessions(&mut *tx, caller.id, caller.token_hash.clone(), now_ms()).await?;
    }
    tx.commit().await?;
    ratelimit::clear(st, fail_key).await
}

async fn logout(State(st): State<AppState>, caller: Caller) -> Result<Json<Done>, AppError> {
    session::revoke(&st, &caller.token_hash).await?;
    Ok(Json(Done { ok: true }))
}

async fn me(caller: Caller) -> Json<UserInfo> {
    Json(UserInfo {
        id: caller.id,
        email: caller.email,
        name: caller.name,
        role: caller.role,
        active: true,
    })
}

/// At start, while no admin exists: a fresh one-time enrollment code, stored as an HMAC and
/// written to `DATA/admin-enrollment.txt` (0600). Returns it so `serve` can print it.
pub async fn prepare_admin_enrollment(st: &AppState) -> Result<Option<String>, AppError> {
    let file = st.config.data.join("admin-enrollment.txt");
    if auth::any_admin(&st.db).await? {
        let _ = std::fs::remove_file(&file);
        return Ok(None);
    }
    let code = random_code()?;
    let mac = st
        .secrets
        .mac("admin-enroll", &[normalize_code(&code).as_bytes()]);
    let mut tx = st.db.begin().await?;
    auth::clear_admin_codes(&mut *tx).await?;
    auth::insert_admin_code(&mut *tx, mac.to_vec(), now_ms()).await?;
    tx.commit().await?;
    let _ = std::fs::remove_file(&file);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&file)
        .map_err(AppError::internal)?;
    writeln!(
        f,
        "{code}\n\nOne-time code to register the first administrator (made {}):\n  \
         clinvault register --admin-code {code} --email YOU@EXAMPLE.ORG --name 'YOUR NAME'\n",
        Utc::now().format("%Y-%m-%d %H:%M UTC")
    )
    .map_err(AppError::internal)?;
    tracing::info!(file = %file.display(), "no administrator yet: wrote a one-time enrollment code");
    Ok(Some(code))
}
