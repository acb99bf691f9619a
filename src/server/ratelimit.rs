//! Rate limits as fixed windows counted in the database, so several server processes share
//! them (DESIGN.md §7).

use super::AppState;
use super::db::now_ms;
use super::error::AppError;

/// Counts one attempt under `key`; refuses with 429 and Retry-After above `limit` per window.
pub async fn hit(
    state: &AppState,
    key: &str,
    window_secs: u64,
    limit: u32,
) -> Result<(), AppError> {
    let (start, retry) = window(window_secs);
    let count: i64 = sqlx::query_scalar(
        "INSERT INTO rate_limits (key, window_start, count) VALUES ($1, $2, 1) \
         ON CONFLICT (key, window_start) DO UPDATE SET count = rate_limits.count + 1 \
         RETURNING count",
    )
    .bind(key.to_string())
    .bind(start)
    .fetch_one(&state.db)
    .await?;
    if count > i64::from(limit) {
        return Err(AppError::rate_limited(retry));
    }
    Ok(())
}

/// Refuses when `key` already reached `limit` in this window, without counting.
pub async fn check(
    state: &AppState,
    key: &str,
    window_secs: u64,
    limit: u32,
) -> Result<(), AppError> {
    let (start, retry) = window(window_secs);
    let count: Option<i64> =
        sqlx::query_scalar("SELECT count FROM rate_limits WHERE key = $1 AND window_start = $2")
            .bind(key.to_string())
            .bind(start)
            .fetch_optional(&state.db)
            .await?;
    if count.unwrap_or(0) >= i64::from(limit) {
        return Err(AppError::rate_limited(retry));
    }
    Ok(())
}

/// Forgets `key`'s counts, every window (a login or a recovery that succeeded).
pub async fn clear(state: &AppState, key: String) -> Result<(), AppError> {
    sqlx::query("DELETE FROM rate_limits WHERE key = $1")
        .bind(key)
        .execute(&state.db)
        .await?;
    Ok(())
}

/// Counts without refusing (a failed login).
pub async fn record(state: &AppState, key: &str, window_secs: u64) -> Result<(), AppError> {
    let (start, _) = window(window_secs);
    sqlx::query(
        "INSERT INTO rate_limits (key, window_start, count) VALUES ($1, $2, 1) \
         ON CONFLICT (key, window_start) DO UPDATE SET count = rate_limits.count + 1",
    )
    .bind(key.to_string())
    .bind(start)
    .execute(&state.db)
    .await?;
    Ok(())
}

/// The current window's start (ms) and the seconds until it ends.
fn window(window_secs: u64) -> (i64, u64) {
    let w = (window_secs.max(1) * 1000) as i64;
    let now = now_ms();
    let start = now - now.rem_euclid(w);
    let retry = ((start + w - now) as u64).div_ceil(1000);
    (start, retry)
}
