use std::net::SocketAddr;
use std::time::Duration;

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::api::{Health, codes};
use crate::server::AppState;
use crate::server::error::AppError;
use crate::server::policy::{Policy, Route, route};

pub fn routes() -> Vec<Route> {
    vec![
        route(Method::GET, "/v1/health", Policy::Public, health),
        route(Method::GET, "/v1/ready", Policy::Public, ready),
        // Public in the table, but answered to loopback callers only (unless
        // `metrics_public`): a scraper beside the server needs no account, and the counters,
        // though free of ids and names, show the clinic's traffic.
        route(Method::GET, "/v1/metrics", Policy::Public, metrics),
    ]
}

/// How long a readiness probe waits for each dependency: a stopped bucket must not hang it.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The process answers (no database round trip: a liveness probe).
async fn health() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

fn not_ready(what: String) -> AppError {
    let mut e = AppError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        codes::UNAVAILABLE,
        format!("not ready: {what}"),
    );
    e.retry_after = Some(2);
    e
}

/// The database and every bucket answer (a readiness probe for a load balancer). Names the
/// ones that do not; bucket names are the operator's configuration, not user data.
async fn ready(State(st): State<AppState>) -> Result<Json<Health>, AppError> {
    let db = tokio::time::timeout(PROBE_TIMEOUT, crate::server::store::health::ping(&st.db));
    let buckets = st.chunks.ready_within(PROBE_TIMEOUT);
    let (db, buckets) = tokio::join!(db, buckets);
    let mut down = Vec::new();
    if !matches!(db, Ok(Ok(_))) {
        down.push("database".to_string());
    }
    let lost = st.chunks.lost();
    down.extend(buckets.into_iter().filter(|(_, ok)| !ok).map(|(name, _)| {
        if lost
            .iter()
            .any(|l| l.starts_with(&format!("bucket {name} ")))
        {
            format!("bucket {name} (identity marker missing; not recreated)")
        } else {
            format!("bucket {name}")
        }
    }));
    if !down.is_empty() {
        return Err(not_ready(format!("{} unreachable", down.join(", "))));
    }
    // A signer that refuses (issue 11) keeps the server out of rotation until an operator
    // looks: the alarm says which entry or which sizes.
    if let Some(alarm) = st.signer.alarm() {
        let mut e = not_ready(format!("the ledger signer refuses: {alarm}"));
        e.retry_after = Some(60);
        return Err(e);
    }
    Ok(Json(Health {
        status: "ready".into(),
    }))
}

/// Loopback callers always; others only when the operator opened it. An IPv4 loopback
/// caller on a dual-stack socket shows as `::ffff:127.0.0.1`.
fn metrics_allowed(public: bool, peer: std::net::IpAddr) -> bool {
    public || peer.to_canonical().is_loopback()
}

/// Prometheus text format.
async fn metrics(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
) -> Response {
    if !metrics_allowed(st.config.metrics_public, peer.ip()) {
        return AppError::not_found("route").into_response();
    }
    // The ledger is shared by every process: its size comes from the database. A database
    // that is down leaves the gauge out rather than failing the scrape.
    let size = match tokio::time::timeout(PROBE_TIMEOUT, st.db.acquire()).await {
        Ok(Ok(mut conn)) => crate::server::ledger_store::size(&mut conn).await.ok(),
        _ => None,
    };
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        st.metrics.render(size),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::metrics_allowed;

    #[test]
    fn metrics_are_for_loopback_unless_public() {
        for (ip, public, ok) in [
            ("127.0.0.1", false, true),
            ("::1", false, true),
            ("::ffff:127.0.0.1", false, true),
            ("10.1.2.3", false, false),
            ("::ffff:10.1.2.3", false, false),
            ("2001:db8::1", false, false),
            ("10.1.2.3", true, true),
        ] {
            assert_eq!(
                metrics_allowed(public, ip.parse().unwrap()),
                ok,
                "{ip} {public}"
            );
        }
    }
}
