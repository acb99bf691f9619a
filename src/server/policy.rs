//! The one table of routes and who may call them (DESIGN.md §4). The router is built from it,
//! so a route cannot exist without a policy; tests walk the same table for the role matrix.
//!
//! Role checks (403) happen here, before the handler; per-object checks (404, identical to a
//! missing object) happen in the handler, which knows the object.

use axum::Router;
use axum::extract::{Request, State};
use axum::handler::Handler;
use axum::http::{Method, StatusCode};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter};

use super::error::AppError;
use super::{AppState, routes, session};
use crate::api::{Role, codes};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// No session needed (health, pre-login, login, registration).
    Public,
    /// A live session whose role is listed; any other role gets 403.
    Roles(&'static [Role]),
}

impl Policy {
    pub fn allows(&self, role: Role) -> bool {
        match self {
            Policy::Public => true,
            Policy::Roles(r) => r.contains(&role),
        }
    }
}

/// Every signed-in role.
pub const ANY_USER: &[Role] = &Role::ALL;

pub struct Route {
    pub method: Method,
    pub path: &'static str,
    pub policy: Policy,
    handler: MethodRouter<AppState>,
}

/// What the tests see of a route.
#[derive(Debug, Clone)]
pub struct RouteInfo {
    pub method: Method,
    pub path: &'static str,
    pub policy: Policy,
}

/// One route: method, path, policy and handler together.
pub fn route<H, T>(method: Method, path: &'static str, policy: Policy, handler: H) -> Route
where
    H: Handler<T, AppState>,
    T: 'static,
{
    let filter = MethodFilter::try_from(method.clone()).expect("routes use standard methods");
    Route {
        method,
        path,
        policy,
        handler: axum::routing::on(filter, handler),
    }
}

impl Route {
    /// A larger (or smaller) body limit than the server's default, for this route alone.
    pub fn with_body_limit(mut self, bytes: usize) -> Route {
        self.handler = self
            .handler
            .layer(axum::extract::DefaultBodyLimit::max(bytes));
        self
    }
}

fn all_routes() -> Vec<Route> {
    [
        routes::health::routes(),
        routes::auth::routes(),
        routes::admin::routes(),
        routes::doctors::routes(),
        routes::patients::routes(),
        routes::bookings::routes(),
        routes::ledger::routes(),
        routes::reports::routes(),
        routes::chunks::routes(),
        routes::otp::routes(),
        routes::grants::routes(),
        routes::audit::routes(),
        routes::stations::routes(),
        routes::emergency::routes(),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// The route table, for tests and documentation.
pub fn table() -> Vec<RouteInfo> {
    all_routes()
        .into_iter()
        .map(|r| RouteInfo {
            method: r.method,
            path: r.path,
            policy: r.policy,
        })
        .collect()
}

pub fn build_router(state: AppState) -> Router<AppState> {
    let mut router = Router::new();
    for r in all_routes() {
        let handler = match r.policy {
            Policy::Public => r.handler,
            policy @ Policy::Roles(_) => r.handler.route_layer(from_fn_with_state(
                state.clone(),
                move |s: State<AppState>, req: Request, next: Next| enforce(s, policy, req, next),
            )),
        };
        router = router.route(r.path, handler);
    }
    router.method_not_allowed_fallback(|| async {
        AppError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            codes::METHOD_NOT_ALLOWED,
            "this route does not take that method",
        )
    })
}

async fn enforce(
    State(state): State<AppState>,
    policy: Policy,
    mut req: Request,
    next: Next,
) -> Response {
    let caller = match session::authenticate(&state, req.headers()).await {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    if !policy.allows(caller.role) {
        return AppError::forbidden(format!(
            "{} {} account may not use this",
            if matches!(caller.role, Role::Admin | Role::Auditor) {
                "an"
            } else {
                "a"
            },
            caller.role
        ))
        .into_response();
    }
    req.extensions_mut().insert(caller);
    next.run(req).await
}
