//! The terminal client (DESIGN.md §9). Layers, each in its own file:
//! `state` (what is), `action` (what happens, and the effects asked for), `update` (the only
//! writer of state), `view/` (drawing, pure), `keymap` and `theme`, `tasks` (network and file
//! work on tokio tasks, answering with actions), `terminal` (setup and restore), `demo`
//! (seeding the embedded server through the client API).

pub mod action;
pub mod demo;
pub mod keymap;
pub mod listfilter;
pub mod rate;
pub mod secret;
pub mod state;
pub mod tasks;
pub mod terminal;
pub mod theme;
pub mod update;
pub mod view;
pub mod viewer;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use ratatui::crossterm::event::{self, Event, KeyCode, KeyEvent, KeyModifiers, MouseEventKind};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::client::ApiClient;
use crate::config::Config;
use action::Action;
use state::{App, Clock, ServerInfo};

pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// A server started inside this process (by the binary, which owns the server layer).
pub struct Embedded {
    pub url: String,
    /// Set while no admin exists: seeding registers the demo admin with it.
    pub admin_code: Option<String>,
    /// Stops the server, letting requests in flight finish.
    pub stop: Box<dyn FnOnce() -> BoxFuture<()> + Send>,
    /// Moves a booking to have begun just now (demo history; see `demo::Seeder`).
    pub begin_now: Option<BeginNow>,
}

/// Moves booking `id` of the embedded server to have begun just now.
pub type BeginNow =
    std::sync::Arc<dyn Fn(uuid::Uuid) -> BoxFuture<Result<(), String>> + Send + Sync>;

pub enum ServerSource {
    Remote(String),
    /// Started after the first frame; `data` is its folder (outbox for the Mailbox pane).
    Embedded {
        data: PathBuf,
        start: BoxFuture<Result<Embedded, String>>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum TuiError {
    #[error("terminal: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Keys(#[from] keymap::KeymapError),
    #[error(transparent)]
    Client(#[from] crate::client::ClientError),
}

fn new_client(cfg: &Config, url: &str) -> Result<ApiClient, crate::client::ClientError> {
    let c = ApiClient::new(url, cfg.client.allow_insecure_http, cfg.client.kdf_floor)?;
    if cfg.client.ca_file.is_empty() {
        return Ok(c);
    }
    let pem = std::fs::read(&cfg.client.ca_file)?;
    c.with_ca_pem(&pem)
}

/// What report work reads from `[client]`.
fn report_settings(cfg: &Config) -> Result<state::ReportSettings, TuiError> {
    let ledger_key = if cfg.client.ledger_key.is_empty() {
        None
    } else {
        Some(
            crate::ledger::LedgerKey::parse(&cfg.client.ledger_key).map_err(|e| {
                TuiError::Client(crate::client::ClientError::Ledger(format!(
                    "[client] ledger_key: {e}"
                )))
            })?,
        )
    };
    Ok(state::ReportSettings {
        state_dir: cfg.client.state_path(),
        ledger_key,
        max_head_age_secs: cfg.client.max_head_age_secs,
        transfers: cfg.client.transfers.max(1),
        chunk_size: cfg.client.chunk_size,
        download_dir: std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
        witnesses: crate::client::ledger::WitnessPolicy::from_config(
            &cfg.client.witnesses,
            cfg.client.witness_quorum,
        )
        .map_err(TuiError::Client)?,
    })
}

/// Key events, pastes and resizes from a blocking reader thread into the loop's channel.
fn spawn_input(tx: mpsc::UnboundedSender<Action>) {
    std::thread::spawn(move || {
        loop {
            let a = match event::read() {
                Ok(Event::Key(k)) => Action::Key(k),
                Ok(Event::Paste(s)) => Action::Paste(s),
                Ok(Event::Resize(_, _)) => Action::Resize,
                Ok(Event::Mouse(m)) => match m.kind {
                    MouseEventKind::ScrollUp => {
                        Action::Key(KeyEvent::new(KeyCode::Up, KeyModifiers::NONE))
                    }
                    MouseEventKind::ScrollDown => {
                        Action::Key(KeyEvent::new(KeyCode::Down, KeyModifiers::NONE))
                    }
                    _ => continue,
                },
                Ok(_) => continue,
                Err(_) => break,
            };
            if tx.send(a).is_err() {
                break;
            }
        }
    });
}

/// Runs the client until the user quits. The first frame is drawn before any server work.
pub async fn run(cfg: Config, source: ServerSource) -> Result<(), TuiError> {
    let keys = keymap::KeyMap::from_config(&cfg.keys)?;
    let (demo, data_dir) = match &source {
        ServerSource::Remote(_) => (false, None),
        ServerSource::Embedded { data, .. } => (true, Some(data.clone())),
    };
    let mut app = App::new(
        Clock::system(chrono_tz::UTC),
        theme::Theme::from_env(),
        keys,
        ServerInfo {
            url: String::new(),
            demo,
            data_dir,
        },
    );
    app.idle_lock_minutes = cfg.client.idle_lock_minutes.max(1);
    app.report_settings = report_settings(&cfg)?;
    let idle = Duration::from_secs(app.idle_lock_minutes * 60);

    tracing::info!(
        demo,
        version = env!("CARGO_PKG_VERSION"),
        "terminal client starting"
    );
    let mut guard = terminal::TerminalGuard::enter(cfg.client.mouse)?;
    app.too_small = too_small(guard.terminal.size()?);
    guard.draw(|f| view::render(&app, f))?;
    app.dirty = false;

    let (tx, mut rx) = mpsc::unbounded_channel::<Action>();
    spawn_input(tx.clone());
    let mut stop: Option<Box<dyn FnOnce() -> BoxFuture<()> + Send>> = None;
    let (stop_tx, mut stop_rx) = mpsc::unbounded_channel();
    match source {
        ServerSource::Remote(url) => match new_client(&cfg, &url) {
            Ok(client) => {
                let _ = tx.send(Action::ServerReady { url, client });
            }
            Err(e) => {
                let _ = tx.send(Action::ServerFailed(e.to_string()));
            }
        },
        ServerSource::Embedded { data, start } => {
            let tx = tx.clone();
            let cfg = cfg.clone();
            tokio::spawn(async move {
                match start.await {
                    Ok(e) => {
                        let _ = stop_tx.send(e.stop);
                        match new_client(&cfg, &e.url) {
                            Ok(client) => {
                                let _ = tx.send(Action::ServerReady {
                                    url: e.url.clone(),
                                    client,
                                });
                            }
                            Err(err) => {
                                let _ = tx.send(Action::ServerFailed(err.to_string()));
                                return;
                            }
                        }
                        let seeder = demo::Seeder {
                            url: e.url,
                            data,
                            kdf_floor: cfg.client.kdf_floor,
                            admin_code: e.admin_code,
                            begin_now: e.begin_now,
                        };
                        // Argon2id for every demo account runs on the blocking pool inside
                        // the client library; the runtime's workers keep serving the UI.
                        tokio::spawn(async move {
                            let ptx = tx.clone();
                            let r = seeder
                                .run(|p| {
                                    let _ = ptx.send(Action::Seed(p));
                                })
                                .await;
                            if let Err(err) = r {
                                tracing::warn!(error = %err, "demo seeding stopped");
                                let _ = tx.send(Action::Seed(state::SeedProgress {
                                    error: Some(err.to_string()),
                                    ..Default::default()
                                }));
                            }
                        });
                    }
                    Err(err) => {
                        let _ = tx.send(Action::ServerFailed(format!("embedded server: {err}")));
                    }
                }
            });
        }
    }

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;

    let mut last_input = Instant::now();
    loop {
        let action = tokio::select! {
            a = rx.recv() => match a { Some(a) => a, None => break },
            _ = tokio::time::sleep_until(last_input + idle), if app.session.is_some() => Action::IdleLock,
            // Codes show minutes to expiry: one redraw at each minute, only on that pane.
            _ = tokio::time::sleep(next_minute()), if app.pane == state::Pane::Otp && !app.otp.items.is_empty() && app.screen == state::Screen::Main => Action::Redraw,
            // A running transfer's rate and "stalled": one redraw a second, only while it runs.
            _ = tokio::time::sleep(Duration::from_secs(1)), if app.transfer.is_some() && app.pane == state::Pane::Reports && app.screen == state::Screen::Main => Action::Redraw,
            Some(s) = stop_rx.recv() => { stop = Some(s); continue; }
            _ = term.recv() => Action::Terminate,
            _ = hup.recv() => Action::Terminate,
        };
        let mut next = Some(action);
        // Drain whatever else is queued, then draw once.
        let mut repaint = false;
        while let Some(a) = next {
            if matches!(a, Action::Key(_) | Action::Paste(_)) {
                last_input = Instant::now();
            }
            if matches!(a, Action::Resize) {
                app.too_small = too_small(guard.terminal.size()?);
            }
            if let Action::Key(k) = &a
                && k.code == KeyCode::Char('l')
                && k.modifiers.contains(KeyModifiers::CONTROL)
            {
                repaint = true;
            }
            app.clock = Clock::system(app.tz);
            for e in update::update(&mut app, a) {
                tasks::spawn(e, tx.clone());
            }
            next = rx.try_recv().ok();
        }
        if app.quit {
            break;
        }
        if repaint {
            // Ctrl-L: forget what the screen holds and draw it all (a resize to the same
            // size; the size comes from an ioctl, not a terminal query).
            let size = guard.terminal.size()?;
            guard
                .terminal
                .resize(ratatui::layout::Rect::new(0, 0, size.width, size.height))?;
            app.dirty = true;
        }
        if app.dirty {
            guard.draw(|f| view::render(&app, f))?;
            app.dirty = false;
        }
    }
    // Keys go before the terminal is handed back; so does a half-written download (the
    // runtime may not drop its task before the process exits).
    app.session = None;
    crate::client::output::remove_all_pending();
    drop(guard);
    if let Ok(s) = stop_rx.try_recv() {
        stop = Some(s);
    }
    if let Some(stop) = stop {
        let _ = tokio::time::timeout(Duration::from_secs(5), stop()).await;
    }
    Ok(())
}

fn too_small(s: ratatui::layout::Size) -> bool {
    s.width < view::MIN_WIDTH || s.height < view::MIN_HEIGHT
}

fn next_minute() -> Duration {
    use chrono::Timelike;
    let now = chrono::Utc::now();
    Duration::from_millis(
        60_000
            - (now.second() as u64 * 1000 + now.timestamp_subsec_millis() as u64 % 1000)
                .min(59_999),
    )
}

/// Logs of the client (and an embedded server) go to a file in the state folder, never to the
/// terminal. Keep the guard alive for the whole run.
pub fn log_to_file(
    state_dir: &std::path::Path,
) -> Option<tracing_appender::non_blocking::WorkerGuard> {
    std::fs::create_dir_all(state_dir).ok()?;
    let appender = tracing_appender::rolling::never(state_dir, "clinvault-tui.log");
    let (writer, guard) = tracing_appender::non_blocking(appender);
    let filter = tracing_subscriber::EnvFilter::try_from_env("CLINVAULT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(writer)
        .try_init()
        .ok()?;
    Some(guard)
}
