use axum::Json;
use axum::extract::State;
use axum::http::Method;

use crate::api::Health;
use crate::server::AppState;
use crate::server::error::AppError;
use crate::server::policy::{Policy, Route, route};

pub fn routes() -> Vec<Route> {
    vec![
        route(Method::GET, "/v1/health", Policy::Public, health),
        route(Method::GET, "/v1/ready", Policy::Public, ready),
    ]
}

/// The process answers (no database round trip: a liveness probe).
async fn health() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

/// The database answers too (a readiness probe for a load balancer).
async fn ready(State(st): State<AppState>) -> Result<Json<Health>, AppError> {
    sqlx::query("SELECT 1").execute(&st.db).await?;
    Ok(Json(Health {
        status: "ready".into(),
    }))
}
