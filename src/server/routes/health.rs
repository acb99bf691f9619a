use axum::Json;
use axum::extract::State;
use axum::http::Method;

use crate::api::Health;
use crate::server::AppState;
use crate::server::error::AppError;
use crate::server::policy::{Policy, Route, route};

pub fn routes() -> Vec<Route> {
    vec![route(Method::GET, "/v1/health", Policy::Public, health)]
}

/// Alive and the database answers.
async fn health(State(st): State<AppState>) -> Result<Json<Health>, AppError> {
    sqlx::query("SELECT 1").execute(&st.db).await?;
    Ok(Json(Health {
        status: "ok".into(),
    }))
}
