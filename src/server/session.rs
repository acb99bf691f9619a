//! Sessions: opaque 256-bit tokens, stored as SHA-256 (a random token needs no slow hash),
//! 15 minutes idle and 12 hours absolute by default; logout and deactivation revoke them.

use axum::http::{HeaderMap, header};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use sqlx::Row;
use uuid::Uuid;

use super::AppState;
use super::db::now_ms;
use super::error::AppError;
use super::extract::Caller;
use crate::api::{Role, codes};

pub fn hash_token(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// A new session for `user_id`; returns the token (shown once) and its absolute expiry (ms).
pub async fn create(state: &AppState, user_id: &str) -> Result<(String, i64), AppError> {
    let raw = crate::seal::random_array::<32>().map_err(AppError::internal)?;
    let token = URL_SAFE_NO_PAD.encode(raw);
    let now = now_ms();
    sqlx::query(
        "INSERT INTO sessions (token_hash, user_id, created_at, last_seen_at) VALUES ($1, $2, $3, $3)",
    )
    .bind(hash_token(&token))
    .bind(user_id.to_string())
    .bind(now)
    .execute(&state.db)
    .await?;
    Ok((
        token,
        now + (state.config.session_absolute_secs * 1000) as i64,
    ))
}

/// The caller behind the `Authorization: Bearer` header, or the specific 401.
pub async fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<Caller, AppError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty() && t.len() <= 128)
        .ok_or_else(|| {
            AppError::unauthenticated(
                codes::UNAUTHENTICATED,
                "log in first (Authorization: Bearer <token>)",
            )
        })?;
    let hash = hash_token(token);
    let row = sqlx::query(
        "SELECT s.user_id, s.created_at, s.last_seen_at, s.revoked_at, u.role, u.active, u.name, u.email \
         FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.token_hash = $1",
    )
    .bind(hash.clone())
    .fetch_optional(&state.db)
    .await?
    .ok_or_else(|| {
        AppError::unauthenticated(codes::UNAUTHENTICATED, "unknown session; log in again")
    })?;
    let revoked: Option<i64> = row.try_get("revoked_at")?;
    let active: i64 = row.try_get("active")?;
    if revoked.is_some() || active == 0 {
        return Err(AppError::unauthenticated(
            codes::SESSION_REVOKED,
            "this session was logged out or revoked; log in again",
        ));
    }
    let created: i64 = row.try_get("created_at")?;
    let seen: i64 = row.try_get("last_seen_at")?;
    let now = now_ms();
    let idle_ms = (state.config.session_idle_secs * 1000) as i64;
    let abs_ms = (state.config.session_absolute_secs * 1000) as i64;
    if now - seen > idle_ms || now - created > abs_ms {
        return Err(AppError::unauthenticated(
            codes::SESSION_EXPIRED,
            "session expired; log in again",
        ));
    }
    // Refreshing on every request would make every read a write; a few seconds' slack is fine.
    if now - seen > (idle_ms / 8).min(10_000) {
        sqlx::query("UPDATE sessions SET last_seen_at = $1 WHERE token_hash = $2")
            .bind(now)
            .bind(hash.clone())
            .execute(&state.db)
            .await?;
    }
    let user_id: String = row.try_get("user_id")?;
    let role: String = row.try_get("role")?;
    Ok(Caller {
        id: Uuid::parse_str(&user_id).map_err(AppError::internal)?,
        role: Role::parse(&role).ok_or_else(|| AppError::internal("unknown role in database"))?,
        name: row.try_get("name")?,
        email: row.try_get("email")?,
        token_hash: hash,
    })
}

pub async fn revoke(state: &AppState, token_hash: &[u8]) -> Result<(), AppError> {
    sqlx::query("UPDATE sessions SET revoked_at = $1 WHERE token_hash = $2 AND revoked_at IS NULL")
        .bind(now_ms())
        .bind(token_hash.to_vec())
        .execute(&state.db)
        .await?;
    Ok(())
}

pub async fn revoke_all(state: &AppState, user_id: &str) -> Result<(), AppError> {
    sqlx::query("UPDATE sessions SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL")
        .bind(now_ms())
        .bind(user_id.to_string())
        .execute(&state.db)
        .await?;
    Ok(())
}

/// Drops sessions past their absolute lifetime (plus a day, so "revoked" stays explainable)
/// and rate-limit windows older than a day.
pub async fn sweep(state: &AppState) -> Result<(), AppError> {
    let day = 86_400_000i64;
    let cutoff = now_ms() - (state.config.session_absolute_secs * 1000) as i64 - day;
    sqlx::query("DELETE FROM sessions WHERE created_at < $1")
        .bind(cutoff)
        .execute(&state.db)
        .await?;
    sqlx::query("DELETE FROM rate_limits WHERE window_start < $1")
        .bind(now_ms() - day)
        .execute(&state.db)
        .await?;
    Ok(())
}
