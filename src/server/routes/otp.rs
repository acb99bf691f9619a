//! One-time codes (DESIGN.md §5): six digits from the CSPRNG, mailed to the patient, bound to
//! one request id, stored as an HMAC under the pepper, single use, ten minutes, five tries,
//! compared in constant time, rate limited per account and per request.

use axum::Json;
use axum::extract::State;
use axum::http::{Method, StatusCode};
use sqlx::Row;
use subtle::ConstantTimeEq;
use uuid::Uuid;
use zeroize::Zeroizing;

use super::{ms_to_utc, parse_uuid};
use crate::api::{OtpPending, OtpPendingList, OtpVerifyRequest, OtpVerifyResponse, Role, codes};
use crate::ledger::{AccessWhat, Entry, GrantHow};
use crate::server::AppState;
use crate::server::db::now_ms;
use crate::server::error::AppError;
use crate::server::extract::{ApiJson, Caller, PathId};
use crate::server::metrics::Metrics;
use crate::server::policy::{Policy, Route, route};
use crate::server::store::otp;
use crate::server::{ledger_store, ratelimit};

pub const CODE_TTL_MS: i64 = 10 * 60 * 1000;
/// Tries per code.
pub const MAX_TRIES: i64 = 5;
/// Tries over a request's whole life, whatever its resends (issue 17).
pub const MAX_TOTAL_TRIES: i64 = 10;
/// Resends over a request's whole life.
pub const MAX_RESENDS: i64 = 3;

const ENTERERS: &[Role] = &[Role::Patient, Role::Doctor];
const RESENDERS: &[Role] = &[Role::Patient, Role::Doctor, Role::Reception];

pub fn routes() -> Vec<Route> {
    vec![
        route(
            Method::POST,
            "/v1/otp/verify",
            Policy::Roles(ENTERERS),
            verify,
        ),
        route(Method::GET, "/v1/otp", Policy::Roles(ENTERERS), pending),
        route(
            Method::POST,
            "/v1/otp/{id}/resend",
            Policy::Roles(RESENDERS),
            resend,
        ),
    ]
}

pub struct NewCode {
    /// `release` or `grant`.
    pub purpose: &'static str,
    pub report_id: Uuid,
    pub grant_id: Option<Uuid>,
    /// Who enters it: the patient (release) or the requesting doctor (grant).
    pub user_id: Uuid,
    /// Who it is mailed to.
    pub patient_id: Uuid,
}

pub struct IssuedCode {
    pub request_id: Uuid,
    pub code: Zeroizing<String>,
}

/// Six uniform digits: rejection sampling keeps every code equally likely.
fn six_digits() -> Result<Zeroizing<String>, AppError> {
    loop {
        let raw = u32::from_be_bytes(crate::seal::random_array::<4>().map_err(AppError::internal)?);
        if raw < 4_294_000_000 {
            return Ok(Zeroizing::new(format!("{:06}", raw % 1_000_000)));
        }
    }
}

fn code_mac(st: &AppState, request_id: &Uuid, code: &str) -> [u8; 32] {
    st.secrets
        .mac("otp", &[request_id.as_bytes(), code.as_bytes()])
}

/// Stores a new code request in the caller's transaction; the caller mails it after commit.
pub async fn issue(
    conn: &mut sqlx::AnyConnection,
    st: &AppState,
    new: NewCode,
) -> Result<IssuedCode, AppError> {
    let request_id = Uuid::new_v4();
    let code = six_digits()?;
    let now = now_ms();
    otp::insert_request(
        &mut *conn,
        &otp::NewRequest {
            id: request_id,
            purpose: new.purpose,
            report_id: new.report_id,
            grant_id: new.grant_id,
            user_id: new.user_id,
            patient_id: new.patient_id,
            code_mac: code_mac(st, &request_id, &code).to_vec(),
            now,
            expires_at: now + CODE_TTL_MS,
        },
    )
    .await?;
    Ok(IssuedCode { request_id, code })
}

/// Mails `user`; a failure is logged (never the body, which holds a code) and reception can
/// resend.
pub async fn mail(st: &AppState, user: Uuid, subject: &str, body: String) {
    let email = otp::email(&st.db, user).await;
    let body = Zeroizing::new(body);
    match email {
        Ok(Some(to)) => {
            if let Err(e) = st.mailer.send(&to, subject, body.to_string()).await {
                Metrics::add(&st.metrics.otp_send_failed, 1);
                tracing::warn!(%user, error = %e, "could not send a code mail; reception can resend it");
            } else {
                Metrics::add(&st.metrics.otp_sent, 1);
            }
        }
        Ok(None) => tracing::warn!(%user, "no such user to mail"),
        Err(e) => tracing::warn!(%user, error = %e, "could not look up an address to mail"),
    }
}

fn code_error(status: StatusCode, code: &'static str, message: impl Into<String>) -> AppError {
    AppError::new(status, code, message)
}

/// Why a try could not be charged: no such request of the caller's, used, expired or locked.
async fn not_charged(
    st: &AppState,
    request_id: &Uuid,
    caller: &Caller,
    no_such: impl FnOnce() -> AppError,
) -> AppError {
    // Another account's request answers exactly like one that does not exist.
    let row = match otp::request_state(&st.db, *request_id, caller.id).await {
        Ok(Some(row)) => row,
        Ok(None) => return no_such(),
        Err(e) => return e,
    };
    let get = |col: &str| row.try_get::<Option<i64>, _>(col).ok().flatten();
    if get("used_at").is_some() {
        code_error(
            StatusCode::GONE,
            codes::CODE_USED,
            "this code was already used; each code works once",
        )
    } else if get("expires_at").is_some_and(|e| e <= now_ms()) {
        code_error(
            StatusCode::GONE,
            codes::CODE_EXPIRED,
            "this code expired (codes last 10 minutes); ask for a new one",
        )
    } else if get("total_tries").is_some_and(|t| t >= MAX_TOTAL_TRIES) {
        code_error(
            StatusCode::GONE,
            codes::CODE_LOCKED,
            "too many wrong codes for this request, over all its codes; ask the doctor for a \
             new request",
        )
    } else {
        code_error(
            StatusCode::GONE,
            codes::CODE_LOCKED,
            "too many wrong codes for this request; ask for a new code",
        )
    }
}

/// What tells a fresh code apart in its mail, in the words the OTP list shows beside it
/// ([`crate::api::OtpPending::request_words`]): `request 1a2b3c4d · asked 14:05 · 47.1 KiB`.
pub fn new_request_words(st: &AppState, request_id: Uuid, report_size: u64) -> String {
    format!(
        "request {} · asked {} · {}",
        crate::units::short_id(&request_id),
        chrono::Utc::now().with_timezone(&st.tz).format("%H:%M"),
        crate::units::bytes(report_size)
    )
}

/// What a request's code unlocks, in the words the pending list and the mails use.
fn unlocks_text(purpose: &str, day: impl std::fmt::Display, author: &str) -> String {
    if purpose == "release" {
        format!("your report of {day} by Dr {author}")
    } else {
        format!("read access to the report of {day} by Dr {author}")
    }
}

/// The error naming another live request of the caller's whose code `code` is, if any.
/// Only the caller's own requests are looked at, so nothing is told about other accounts.
async fn other_request_of(
    st: &AppState,
    request_id: &Uuid,
    caller: &Caller,
    code: &str,
) -> Result<Option<AppError>, AppError> {
    let rows =
        otp::other_live_requests(&st.db, caller.id, *request_id, now_ms(), MAX_TRIES).await?;
    for r in rows {
        let id = parse_uuid(&r.try_get::<String, _>("id")?)?;
        let stored: Vec<u8> = r.try_get("code_mac")?;
        if bool::from(code_mac(st, &id, code).as_slice().ct_eq(&stored)) {
            let purpose: String = r.try_get("purpose")?;
            let author: String = r.try_get("author_name")?;
            let day = ms_to_utc(r.try_get("report_created")?)?
                .with_timezone(&st.tz)
                .format("%Y-%m-%d");
            let short = &id.simple().to_string()[..8];
            return Ok(Some(code_error(
                StatusCode::CONFLICT,
                codes::CODE_FOR_OTHER_REQUEST,
                format!(
                    "this is the code of your other request {short} ({}), not of this one; \
                     no try was counted — enter it there",
                    unlocks_text(&purpose, day, &author)
                ),
            )));
        }
    }
    Ok(None)
}

async fn verify(
    State(st): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<OtpVerifyRequest>,
) -> Result<Json<OtpVerifyResponse>, AppError> {
    let per_minute = st.config.otp_per_minute;
    ratelimit::hit(&st, &format!("otp-acct:{}", caller.id), 60, per_minute).await?;
    ratelimit::hit(&st, &format!("otp-req:{}", req.request_id), 60, per_minute).await?;
    let code = req.code.trim();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(AppError::bad_request(
            "the code is 6 digits, as in the mail",
        ));
    }
    let no_such = || {
        code_error(
            StatusCode::NOT_FOUND,
            codes::CODE_INVALID,
            "no code was issued to you under this request id; check the id in the mail",
        )
    };
    // The try is counted before the comparison, in one statement, so parallel guesses
    // cannot all be evaluated against the old count. `tries` never falls below
    // `total_tries - (MAX_TOTAL_TRIES - MAX_TRIES)` (see `resend`), so `tries < MAX_TRIES`
    // also holds the request's lifetime budget.
    let charged = otp::charge_try(&st.db, req.request_id, caller.id, now_ms(), MAX_TRIES).await?;
    let Some(row) = charged else {
        return Err(not_charged(&st, &req.request_id, &caller, no_such).await);
    };
    let stored: Vec<u8> = row.try_get("code_mac")?;
    let given = code_mac(&st, &req.request_id, code);
    if !bool::from(given.as_slice().ct_eq(&stored)) {
        // A code of another of the caller's own requests costs no try: say whose it is.
        if let Some(other) = other_request_of(&st, &req.request_id, &caller, code).await? {
            otp::refund_try(&st.db, req.request_id).await?;
            return Err(other);
        }
        Metrics::add(&st.metrics.otp_wrong, 1);
        let tries: i64 = row.try_get("tries")?;
        let total: i64 = row.try_get("total_tries")?;
        let left = (MAX_TRIES - tries).min(MAX_TOTAL_TRIES - total);
        return Err(if left > 0 {
            code_error(
                StatusCode::UNPROCESSABLE_ENTITY,
                codes::CODE_INVALID,
                format!("wrong code; {left} tries left"),
            )
        } else {
            code_error(
                StatusCode::GONE,
                codes::CODE_LOCKED,
                "wrong code, and that was the last try; ask for a new code",
            )
        });
    }

    let purpose: String = row.try_get("purpose")?;
    let report_id = parse_uuid(&row.try_get::<String, _>("report_id")?)?;
    let patient_id = parse_uuid(&row.try_get::<String, _>("patient_id")?)?;
    let grant_id = row
        .try_get::<Option<String>, _>("grant_id")?
        .as_deref()
        .map(parse_uuid)
        .transpose()?;
    let now = now_ms();
    let mut tx = st.db.begin().await?;
    let subjects = [patient_id.to_string(), caller.id_str()];
    let ledger_index = ledger_store::append(
        &mut tx,
        &st.append_key,
        &Entry::OtpVerified {
            time_ms: now,
            request_id: req.request_id.into_bytes(),
            user_id: caller.id.into_bytes(),
        },
        &subjects,
    )
    .await?;
    // Single use even against a concurrent second entry of the same code.
    if !otp::mark_used(&mut *tx, req.request_id, now).await? {
        return Err(code_error(
            StatusCode::GONE,
            codes::CODE_USED,
            "this code was already used; each code works once",
        ));
    }
    match (purpose.as_str(), grant_id) {
        ("release", _) => {
            otp::release_report(&mut *tx, report_id, now).await?;
            ledger_store::append(
                &mut tx,
                &st.append_key,
                &Entry::ReportAccess {
                    time_ms: now,
                    report_id: report_id.into_bytes(),
                    reader_id: caller.id.into_bytes(),
                    what: AccessWhat::ReleasedByOtp,
                },
                &subjects,
            )
            .await?;
        }
        ("grant", Some(grant)) => {
            let author = otp::report_author(&mut *tx, report_id).await?;
            // The grant's expiry goes into the entry (kind 8): clients refuse the key after it.
            let expires = otp::grant_expiry(&mut *tx, grant).await?;
            let index = ledger_store::append(
                &mut tx,
                &st.append_key,
                &Entry::GrantApproved {
                    time_ms: now,
                    grant_id: grant.into_bytes(),
                    report_id: report_id.into_bytes(),
                    reader_id: caller.id.into_bytes(),
                    how: GrantHow::Otp,
                    expires_ms: Some(expires),
                },
                &[patient_id.to_string(), caller.id_str(), author],
            )
            .await?;
            if !otp::approve_grant(&mut *tx, grant, now, index as i64).await? {
                return Err(AppError::conflict(
                    codes::INVALID_STATUS,
                    "this request was approved, revoked or expired meanwhile",
                ));
            }
        }
        _ => return Err(AppError::internal("code request of unknown purpose")),
    }
    tx.commit().await?;
    tracing::info!(request = %req.request_id, purpose, "code verified");
    Ok(Json(OtpVerifyResponse {
        purpose,
        report_id,
        grant_id,
        ledger_index,
    }))
}

/// One waiting code, dated in the clinic's time zone like the mails.
fn pending_row(r: &sqlx::any::AnyRow, tz: chrono_tz::Tz) -> Result<OtpPending, AppError> {
    let purpose: String = r.try_get("purpose")?;
    let tries: i64 = r.try_get("tries")?;
    let author: String = r.try_get("author_name")?;
    let created: i64 = r.try_get("report_created")?;
    let day = ms_to_utc(created)?.with_timezone(&tz).format("%Y-%m-%d");
    let unlocks = unlocks_text(&purpose, day, &author);
    let expires: i64 = r.try_get("expires_at")?;
    let size: i64 = r.try_get("plaintext_len")?;
    Ok(OtpPending {
        request_id: parse_uuid(&r.try_get::<String, _>("id")?)?,
        purpose,
        report_id: parse_uuid(&r.try_get::<String, _>("report_id")?)?,
        grant_id: r
            .try_get::<Option<String>, _>("grant_id")?
            .as_deref()
            .map(parse_uuid)
            .transpose()?,
        unlocks,
        expires_at: ms_to_utc(expires)?,
        tries_left: u32::try_from((MAX_TRIES - tries).max(0)).unwrap_or(0),
        asked_at: Some(ms_to_utc(r.try_get("asked_at")?)?),
        report_size: u64::try_from(size).ok(),
    })
}

/// Codes waiting for the caller to enter them.
async fn pending(
    State(st): State<AppState>,
    caller: Caller,
) -> Result<Json<OtpPendingList>, AppError> {
    let now = now_ms();
    let rows = otp::pending_for(&st.db, caller.id, now, MAX_TRIES).await?;
    Ok(Json(OtpPendingList {
        pending: rows
            .iter()
            .map(|r| pending_row(r, st.tz))
            .collect::<Result<_, _>>()?,
    }))
}

/// A new code for an unused request (the old one stops working), mailed to the patient.
/// The one who enters it may ask, and reception on a patient's behalf.
async fn resend(
    State(st): State<AppState>,
    caller: Caller,
    PathId(id): PathId,
) -> Result<Json<OtpPending>, AppError> {
    let row = otp::request_owner(&st.db, id)
        .await?
        .ok_or_else(|| AppError::not_found("code request"))?;
    let user: String = row.try_get("user_id")?;
    if caller.role != Role::Reception && user != caller.id_str() {
        return Err(AppError::not_found("code request"));
    }
    // Charged only once the caller may resend: others cannot use up the patient's resends.
    ratelimit::hit(&st, &format!("otp-resend:{id}"), 600, 3).await?;
    if row.try_get::<Option<i64>, _>("used_at")?.is_some() {
        return Err(code_error(
            StatusCode::GONE,
            codes::CODE_USED,
            "this request's code was already used; nothing to resend",
        ));
    }
    let patient = parse_uuid(&row.try_get::<String, _>("patient_id")?)?;
    let code = six_digits()?;
    let now = now_ms();
    // A fresh code gets its tries back only as far as the request's lifetime budget allows:
    // `tries` is left at `total_tries - (MAX_TOTAL_TRIES - MAX_TRIES)` when that is above 0.
    let resent = otp::resend(
        &st.db,
        id,
        code_mac(&st, &id, &code).to_vec(),
        now,
        now + CODE_TTL_MS,
        &otp::ResendLimits {
            kept_tries: MAX_TOTAL_TRIES - MAX_TRIES,
            max_resends: MAX_RESENDS,
            max_total_tries: MAX_TOTAL_TRIES,
        },
    )
    .await?;
    if !resent {
        return Err(code_error(
            StatusCode::GONE,
            codes::TOO_MANY_RESENDS,
            format!(
                "this request's code was resent {MAX_RESENDS} times or its {MAX_TOTAL_TRIES} \
                 tries are used up; the doctor can make a new request"
            ),
        ));
    }
    let row = otp::pending_one(&st.db, id).await?;
    let pending = pending_row(&row, st.tz)?;
    // The words the OTP pane shows beside the code, so the two can be matched.
    mail(
        &st,
        patient,
        "Your new clinvault code",
        format!(
            "Here is a new code for {}:\n\n    {}\n\n({}; the full request id is {id}.) It replaces the \
             earlier one, works once and expires in 10 minutes. Nobody from the clinic will \
             ever ask you for it.\n",
            pending.unlocks,
            code.as_str(),
            pending.request_words(st.tz),
        ),
    )
    .await;
    Ok(Json(pending))
}
