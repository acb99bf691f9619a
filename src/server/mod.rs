//! The server (DESIGN.md §1, §7, §8): axum routes over a SQL store. Never imports `client/`.
//!
//! [`start`] runs it in-process on a bound address (tests, the TUI's embedded server);
//! `clinvault serve` calls the same.

pub mod backup;
pub mod chunk_store;
pub mod db;
pub mod error;
pub mod extract;
pub mod ledger_signer;
pub mod ledger_store;
pub mod mail;
pub mod metrics;
pub mod policy;
pub mod ratelimit;
pub mod routes;
pub mod schedule;
pub mod secrets;
pub mod session;
pub mod store;
pub mod sweep;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use chrono_tz::Tz;
use sqlx::AnyPool;
use tokio::sync::watch;
use tower_http::set_header::SetResponseHeaderLayer;

use crate::config::Config;
pub use db::Backend;
pub use error::AppError;
use mail::Mailer;
use secrets::ServerSecrets;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("data folder {path}: {source}")]
    Data {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Secrets(#[from] secrets::SecretsError),
    #[error(transparent)]
    Db(#[from] db::DbError),
    #[error("mail: {0}")]
    Mail(#[from] mail::MailError),
    #[error("listen address {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    #[error("TLS: {0}")]
    Tls(std::io::Error),
    #[error("time zone {0:?} is not an IANA name")]
    TimeZone(String),
    #[error("admin enrollment: {0}")]
    Enrollment(String),
    #[error("chunk storage: {0}")]
    Chunks(#[from] chunk_store::ChunkStoreError),
    #[error("ledger: {0}")]
    Ledger(String),
}

/// Everything a request handler needs; cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub db: AnyPool,
    pub backend: Backend,
    pub secrets: ServerSecrets,
    pub mailer: Mailer,
    pub chunks: chunk_store::ChunkStore,
    pub config: crate::config::ServerConfig,
    pub tz: Tz,
    /// A MAC of a random key, compared against when an email is unknown, so that both paths
    /// do the same work.
    pub decoy_mac: [u8; 32],
    pub metrics: metrics::Metrics,
    /// Key of the ledger's append authenticators (from the secrets file).
    pub append_key: ledger_store::AppendKey,
    pub signer: ledger_signer::Signer,
    /// Seconds added to the clock TOTP codes are checked against: 0, except in tests that
    /// step through time windows (`ServerHandle::shift_totp_clock`).
    pub totp_clock_shift: std::sync::atomic::AtomicI64,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// A running server.
pub struct ServerHandle {
    pub addr: SocketAddr,
    pub backend: Backend,
    /// Set at first start while no admin exists; also in `DATA/admin-enrollment.txt`.
    pub admin_enrollment_code: Option<String>,
    pub data: PathBuf,
    /// `clinvault-ledger:…`, for clients to pin.
    pub ledger_key: String,
    /// The ledger key as a C2SP verifier key (`origin+id+base64`), for witnesses.
    pub ledger_vkey: String,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    state: AppState,
}

/// Writes demo history the API rightly refuses: a visit is checked in on its day and
/// completed once begun, and only future slots are booked.
#[derive(Clone)]
pub struct DemoHistory {
    db: AnyPool,
}

impl DemoHistory {
    /// Moves booking `id` to have begun a second ago, keeping its length.
    pub async fn begin_now(&self, id: uuid::Uuid) -> Result<(), AppError> {
        sqlx::query(
            "UPDATE bookings SET ends_at = $1 + (ends_at - starts_at), starts_at = $1 WHERE id = $2",
        )
        .bind(db::now_ms() - 1000)
        .bind(id.to_string())
        .execute(&self.db)
        .await?;
        Ok(())
    }
}

impl ServerHandle {
    /// Test-only (feature `test-hooks`): moves the clock TOTP codes are checked against by
    /// `secs` (the next time step without waiting 30 s). Returns the new shift.
    #[cfg(feature = "test-hooks")]
    pub fn shift_totp_clock(&self, secs: i64) -> i64 {
        self.state
            .totp_clock_shift
            .fetch_add(secs, std::sync::atomic::Ordering::Relaxed)
            + secs
    }

    /// `http://addr` or `https://addr`.
    pub fn url(&self) -> String {
        let scheme = if self.state.config.tls_cert.is_empty() {
            "http"
        } else {
            "https"
        };
        format!("{scheme}://{}", self.addr)
    }

    /// The pool, for tests that check what the database holds.
    pub fn db(&self) -> &AnyPool {
        &self.state.db
    }

    /// For the terminal client's demo seeding only (an embedded, single-user server).
    pub fn demo_history(&self) -> DemoHistory {
        DemoHistory {
            db: self.state.db.clone(),
        }
    }

    /// Stops accepting, lets requests in flight finish, then returns.
    pub async fn shutdown(self) -> std::io::Result<()> {
        let _ = self.shutdown.send(true);
        let res = match self.task.await {
            Ok(r) => r,
            Err(e) => Err(std::io::Error::other(e.to_string())),
        };
        self.state.db.close().await;
        res
    }

    /// Stops the server like [`ServerHandle::shutdown`], keeping the handle (its address and
    /// data folder) so a test can edit the stopped server's database and start it again.
    pub async fn stop(&mut self) -> std::io::Result<()> {
        let _ = self.shutdown.send(true);
        let res = match (&mut self.task).await {
            Ok(r) => r,
            Err(e) => Err(std::io::Error::other(e.to_string())),
        };
        self.state.db.close().await;
        res
    }

    /// Waits until the server stops (after [`ServerHandle::trigger_shutdown`] or a fatal error).
    pub async fn wait(self) -> std::io::Result<()> {
        let res = match self.task.await {
            Ok(r) => r,
            Err(e) => Err(std::io::Error::other(e.to_string())),
        };
        self.state.db.close().await;
        res
    }

    /// Removes uploads left open longer than `open_report_ttl_secs` now, instead of waiting
    /// for the periodic sweep. Returns how many reports went.
    pub async fn sweep_abandoned_uploads(&self) -> Result<u64, AppError> {
        sweep::sweep_open(&self.state).await
    }

    /// The newest signed head, signed now if needed (as `GET /v1/ledger/head` answers).
    pub async fn ledger_head(&self) -> Result<ledger_signer::HeadOut, AppError> {
        ledger_store::latest_head(&self.state).await
    }

    /// Why the ledger signer refuses to sign, while it does (the server is then not ready).
    pub fn ledger_alarm(&self) -> Option<String> {
        self.state.signer.alarm()
    }

    /// Test-only (feature `test-hooks`, never in a release build): from now on the signer
    /// signs whatever the database holds, as the server of issue 11's attacks did.
    #[cfg(feature = "test-hooks")]
    pub fn sign_anything_for_tests(&self) {
        self.state
            .signer
            .sign_anything
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Test-only (feature `test-hooks`): appends `entries`, each with its subjects, in one
    /// transaction, as the server's own routes would; for tests that need a long ledger.
    #[cfg(feature = "test-hooks")]
    pub async fn append_for_tests(
        &self,
        entries: &[(crate::ledger::Entry, Vec<uuid::Uuid>)],
    ) -> Result<Vec<u64>, AppError> {
        let mut tx = self.state.db.begin().await?;
        let mut out = Vec::new();
        for (entry, subjects) in entries {
            let subjects: Vec<String> = subjects.iter().map(uuid::Uuid::to_string).collect();
            out.push(
                ledger_store::append(&mut tx, &self.state.append_key, entry, &subjects).await?,
            );
        }
        tx.commit().await?;
        Ok(out)
    }

    /// A sender that, when `true` is sent, begins a graceful shutdown.
    pub fn shutdown_sender(&self) -> watch::Sender<bool> {
        self.shutdown.clone()
    }
}

/// Opens the data folder, secrets, database and mailer, binds, and serves in a task.
pub async fn start(config: Config) -> Result<ServerHandle, StartError> {
    let sc = config.server.clone();
    let data = sc.data.clone();
    std::fs::create_dir_all(&data).map_err(|source| StartError::Data {
        path: data.display().to_string(),
        source,
    })?;
    // The database, secrets and outbox are the operator's alone.
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).map_err(
            |source| StartError::Data {
                path: data.display().to_string(),
                source,
            },
        )?;
    }
    let secrets = ServerSecrets::load_or_create(&sc.secrets_path())?;
    let tz: Tz = sc
        .timezone
        .parse()
        .map_err(|_| StartError::TimeZone(sc.timezone.clone()))?;
    let (pool, backend) = db::connect(&sc.database_url, &data, sc.max_db_connections).await?;
    let mailer = match &config.mail {
        Some(m) if !m.smtp_host.is_empty() => Mailer::smtp(m)?,
        _ => Mailer::outbox(data.join("outbox"))?,
    };
    if mailer.is_outbox() && !sc.demo {
        tracing::warn!(
            outbox = %data.join("outbox").display(),
            "no [mail] SMTP server configured: mail is written to the outbox folder, not sent"
        );
    }
    let buckets = bucket_configs(&sc, &data);
    let chunks = chunk_store::ChunkStore::open_existing(&buckets, sc.replicas)?
        .with_op_timeout(Duration::from_secs(sc.bucket_timeout_secs));
    // One chunk the database records in each bucket: a bucket without its identity marker
    // whose recorded chunks are gone vanished, and is not recreated.
    let mut used = std::collections::HashMap::new();
    let rows =
        sqlx::query("SELECT bucket, MIN(chunk_id) AS chunk FROM chunk_replicas GROUP BY bucket")
            .fetch_all(&pool)
            .await
            .map_err(|e| {
                StartError::Db(db::DbError::Sqlx {
                    what: "reading chunk replicas",
                    source: e,
                })
            })?;
    for r in &rows {
        use sqlx::Row;
        let (Ok(b), Ok(c)) = (
            r.try_get::<String, _>("bucket"),
            r.try_get::<String, _>("chunk"),
        ) else {
            continue;
        };
        let mut id = [0u8; 32];
        if hex::decode_to_slice(&c, &mut id).is_ok() {
            used.insert(b, id);
        }
    }
    chunks.sweep_staging(STAGING_MIN_AGE);
    for name in chunks.claim_identities(&used).await {
        tracing::error!(bucket = %name, "bucket lost its identity marker: the server is not ready and does not write to it");
    }
    let decoy_key =
        crate::seal::random_array::<32>().map_err(|e| StartError::Enrollment(e.to_string()))?;
    let decoy_mac = secrets.mac("auth", &[&decoy_key]);
    let append_key = ledger_store::AppendKey::new(*secrets.append_key());
    let signer = ledger_signer::Signer::new(&sc.secrets_path());
    let state = AppState(Arc::new(Inner {
        db: pool,
        backend,
        secrets,
        mailer,
        chunks,
        config: sc.clone(),
        tz,
        decoy_mac,
        metrics: metrics::Metrics::default(),
        append_key,
        signer,
        totp_clock_shift: std::sync::atomic::AtomicI64::new(0),
    }));
    ledger_signer::init(&state)
        .await
        .map_err(|e| StartError::Ledger(e.message))?;

    let admin_enrollment_code = routes::auth::prepare_admin_enrollment(&state)
        .await
        .map_err(|e| StartError::Enrollment(e.message))?;

    let listener =
        std::net::TcpListener::bind(&sc.listen).map_err(|source| StartError::Listen {
            addr: sc.listen.clone(),
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| StartError::Listen {
        addr: sc.listen.clone(),
        source,
    })?;
    listener
        .set_nonblocking(true)
        .map_err(|source| StartError::Listen {
            addr: sc.listen.clone(),
            source,
        })?;
    let router = app(state.clone());
    let (tx, mut rx) = watch::channel(false);
    let make = router.into_make_service_with_connect_info::<SocketAddr>();

    let task = if sc.tls_cert.is_empty() {
        let listener =
            tokio::net::TcpListener::from_std(listener).map_err(|source| StartError::Listen {
                addr: sc.listen.clone(),
                source,
            })?;
        tokio::spawn(async move {
            axum::serve(listener, make)
                .with_graceful_shutdown(async move {
                    let _ = rx.wait_for(|v| *v).await;
                })
                .await
        })
    } else {
        crate::install_tls_provider();
        let tls = axum_server::tls_rustls::RustlsConfig::from_pem_file(&sc.tls_cert, &sc.tls_key)
            .await
            .map_err(StartError::Tls)?;
        let handle = axum_server::Handle::new();
        let server = axum_server::tls_rustls::from_tcp_rustls(listener, tls)
            .map_err(StartError::Tls)?
            .handle(handle.clone());
        tokio::spawn(async move {
            let h = handle.clone();
            tokio::spawn(async move {
                let _ = rx.wait_for(|v| *v).await;
                h.graceful_shutdown(Some(Duration::from_secs(10)));
            });
            server.serve(make).await
        })
    };
    spawn_sweeper(state.clone());
    let ledger_key = ledger_store::public_key(&state).to_string();
    let ledger_vkey = crate::witness::note::VerifierKey::new(
        &ledger_signer::origin(&state),
        crate::witness::note::SIG_ED25519,
        ledger_store::public_key(&state).0,
    )
    .map(|k| k.to_string())
    .map_err(|e| StartError::Ledger(e.to_string()))?;
    tracing::info!(%addr, ?backend, timezone = %sc.timezone, %ledger_key, %ledger_vkey, "clinvault server listening");
    Ok(ServerHandle {
        addr,
        backend,
        admin_enrollment_code,
        data,
        ledger_key,
        ledger_vkey,
        shutdown: tx,
        task,
        state,
    })
}

/// A bucket staging file older than this belongs to a write that was killed.
pub const STAGING_MIN_AGE: Duration = Duration::from_secs(600);

/// Removes old rate-limit windows and dead sessions now and then.
fn spawn_sweeper(state: AppState) {
    let weak = Arc::downgrade(&state.0);
    drop(state);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(
            (ledger_store::RESIGN_AFTER_MS / 1000) as u64,
        ));
        loop {
            tick.tick().await;
            let Some(inner) = weak.upgrade() else { break };
            let state = AppState(inner);
            if state.db.is_closed() {
                break;
            }
            if let Err(e) = session::sweep(&state).await {
                tracing::warn!(error = %e.message, "sweep failed");
            }
            if let Err(e) = sweep::sweep_open(&state).await {
                tracing::warn!(error = %e.message, "sweep of abandoned uploads failed");
            }
            let chunks = state.clone();
            let _ =
                tokio::task::spawn_blocking(move || chunks.chunks.sweep_staging(STAGING_MIN_AGE))
                    .await;
            // Keeps a fresh signed head even when nothing is appended.
            if let Err(e) = ledger_store::latest_head(&state).await {
                tracing::warn!(error = %e.message, "re-signing the ledger head failed");
            }
        }
    });
}

/// One line per request: method, route template (never the concrete path or query, which can
/// hold ids and searched names), status and time; the same labels feed the metrics.
async fn log_request(
    State(st): State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| "-".into());
    let started = std::time::Instant::now();
    let resp = next.run(req).await;
    let took = started.elapsed();
    st.metrics
        .request(method.as_str(), &route, resp.status().as_u16(), took);
    tracing::info!(
        %method,
        route,
        status = resp.status().as_u16(),
        ms = took.as_millis() as u64,
        "request"
    );
    resp
}

static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// A caller's `x-request-id` when it is short and plain (it ends up in logs), else a new one.
fn request_id(headers: &axum::http::HeaderMap) -> String {
    headers
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        })
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string())
}

/// Every log line of a request carries its id (a span), and the answer echoes it.
async fn with_request_id(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use tracing::Instrument;
    let id = request_id(req.headers());
    let span = tracing::info_span!("request", request_id = %id);
    let mut resp = next.run(req).instrument(span).await;
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert(REQUEST_ID.clone(), v);
    }
    resp
}

/// A request that takes longer than the limit gets a JSON 503 (`timeout`), like every error.
async fn time_limit(
    limit: Duration,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => {
            let mut e = AppError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                crate::api::codes::TIMEOUT,
                "the server took too long to answer; try again",
            );
            e.retry_after = Some(1);
            e.into_response()
        }
    }
}

/// The whole router, built from the policy table.
pub fn app(state: AppState) -> Router {
    let max_body = state.config.max_body_bytes;
    let timeout = Duration::from_secs(state.config.request_timeout_secs.max(1));
    policy::build_router(state.clone())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            log_request,
        ))
        .fallback(|| async { AppError::not_found("route") })
        .layer(axum::extract::DefaultBodyLimit::max(max_body))
        .layer(axum::middleware::from_fn(move |req, next| {
            time_limit(timeout, req, next)
        }))
        .layer(SetResponseHeaderLayer::overriding(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            HeaderName::from_static("cross-origin-resource-policy"),
            HeaderValue::from_static("same-origin"),
        ))
        .layer(axum::middleware::from_fn(with_request_id))
        .with_state(state)
}

/// The buckets as the server opens them: the configured ones (relative folders under the data
/// folder), or the two default local folders.
pub fn bucket_configs(
    sc: &crate::config::ServerConfig,
    data: &std::path::Path,
) -> Vec<chunk_store::BucketConfig> {
    if sc.buckets.is_empty() {
        return chunk_store::BucketConfig::default_local(data);
    }
    sc.buckets
        .iter()
        .map(|b| match b {
            chunk_store::BucketConfig::Local { name, path } if path.is_relative() => {
                chunk_store::BucketConfig::Local {
                    name: name.clone(),
                    path: data.join(path),
                }
            }
            other => other.clone(),
        })
        .collect()
}
