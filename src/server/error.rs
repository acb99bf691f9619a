//! `AppError`: a stable `{ "error": { "code", "message" } }` answer for the user, and the cause
//! for the log (vaultwarden keeps the two apart the same way). Internals never reach the client.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::api::{ErrorBody, ErrorDetail, codes};

#[derive(Debug)]
pub struct AppError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub retry_after: Option<u64>,
    /// Logged, never sent.
    pub(crate) cause: Option<String>,
}

impl AppError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        AppError {
            status,
            code,
            message: message.into(),
            retry_after: None,
            cause: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, codes::BAD_REQUEST, message)
    }

    /// Missing, or not the caller's to see: the two answer the same.
    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            codes::NOT_FOUND,
            format!("{what} not found"),
        )
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, codes::FORBIDDEN, message)
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }

    pub fn unauthenticated(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, code, message)
    }

    pub fn rate_limited(retry_after_secs: u64) -> Self {
        let secs = retry_after_secs.max(1);
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            codes::RATE_LIMITED,
            format!("too many attempts; try again in {secs} s"),
        );
        e.retry_after = Some(secs);
        e
    }

    /// The server's records are inconsistent (a ledger entry gone, a row damaged): said
    /// plainly, since nothing the caller did or can retry helps; the log gets `cause`.
    pub fn damaged(what: &str, cause: impl std::fmt::Display) -> Self {
        let mut e = Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            codes::DAMAGED,
            format!(
                "the server's records of {what} are damaged; nothing you did causes this and \
                 retrying will not help: tell the clinic, whose auditor can check it"
            ),
        );
        e.cause = Some(cause.to_string());
        e
    }

    /// A failure of ours: the client gets a generic message, the log gets `cause`.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        let mut e = Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            codes::INTERNAL,
            "internal error; the server log has the details",
        );
        e.cause = Some(cause.to_string());
        e
    }
}

impl From<sqlx::Error> for AppError {
    fn from(e: sqlx::Error) -> Self {
        if matches!(e, sqlx::Error::PoolTimedOut) {
            let mut err = AppError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                codes::TIMEOUT,
                "the server is busy; try again",
            );
            err.retry_after = Some(1);
            err.cause = Some(e.to_string());
            return err;
        }
        // The database went away (restart, failover): the request can be retried as is, so
        // say so instead of a 500.
        if db_unreachable(&e) {
            let mut err = AppError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                codes::UNAVAILABLE,
                "the database cannot be reached just now; try again",
            );
            err.retry_after = Some(1);
            err.cause = Some(format!("database: {e}"));
            return err;
        }
        AppError::internal(format!("database: {e}"))
    }
}

/// A lost or refused connection, or PostgreSQL shutting down or starting up (SQLSTATE class
/// 08, 57P01–57P03): nothing was committed by the failed statement's transaction.
fn db_unreachable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(d) => d
            .code()
            .is_some_and(|c| c.starts_with("08") || matches!(&*c, "57P01" | "57P02" | "57P03")),
        _ => false,
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        if let Some(cause) = &self.cause {
            tracing::error!(code = self.code, status = self.status.as_u16(), %cause, "request failed");
        } else if self.status.is_server_error() {
            tracing::error!(
                code = self.code,
                status = self.status.as_u16(),
                "request failed"
            );
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message,
            },
        };
        let mut resp = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        resp
    }
}

/// True when `e` is a unique-constraint violation (both SQLite and PostgreSQL report the kind).
pub fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.kind() == sqlx::error::ErrorKind::UniqueViolation)
}
