//! The commands of the binary, one module per area. Thin: the client library does the work
//! and the checks; these parse, prompt and print.

use std::io::{BufRead, Write};

use anyhow::{Context, Result, anyhow, bail};
use zeroize::Zeroizing;

use clinvault::client::{ApiClient, LoggedIn, session};
use clinvault::config::Config;
use clinvault::ledger::LedgerKey;

/// `println!` that ends quietly when the reader went away (`clinvault slots … | head -1`).
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout(), $($t)*)
            && e.kind() == std::io::ErrorKind::BrokenPipe
        {
            std::process::exit(0);
        }
    }};
}

pub mod accounts;
pub mod admin;
pub mod audit;
pub mod booking;
pub mod bundle;
pub mod config_check;
pub mod docs;
pub mod emergency;
pub mod grants;
pub mod reports;
pub mod serve;
pub mod tui;
pub mod watch;
pub mod witness;

/// `--version`: the crate version and, when built from a git checkout, the commit (build.rs).
pub const VERSION: &str = env!("CLINVAULT_VERSION");

pub fn formats() -> Result<()> {
    out!(
        "report format v1: AES-256-GCM chunks ({} B – {} B, default {} B), SHA-256 hash chain, Ed25519 manifest, HPKE-wrapped keys",
        clinvault::seal::MIN_CHUNK_SIZE,
        clinvault::seal::MAX_CHUNK_SIZE,
        clinvault::seal::DEFAULT_CHUNK_SIZE
    );
    Ok(())
}

pub fn init_logging(default: &str, json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // JSON lines carry the request span (its `request_id`) in each event.
    let _ = if json {
        builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init()
    } else {
        builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init()
    };
}

/// From `CLINVAULT_PASSWORD` or a prompt without echo.
pub fn password(prompt: &str, confirm: bool) -> Result<Zeroizing<String>> {
    if let Ok(p) = std::env::var("CLINVAULT_PASSWORD") {
        return Ok(Zeroizing::new(p));
    }
    let p = Zeroizing::new(rpassword::prompt_password(prompt).context("reading the password")?);
    if confirm {
        let again = Zeroizing::new(
            rpassword::prompt_password("Repeat it: ").context("reading the password")?,
        );
        if *again != *p {
            bail!("the two passwords differ");
        }
    }
    Ok(p)
}

pub fn read_line(prompt: &str) -> Result<String> {
    eprint!("{prompt}");
    std::io::stderr().flush().ok();
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading from the terminal")?;
    Ok(line.trim().to_string())
}

pub fn server_url(cfg: &Config) -> Result<String> {
    if cfg.client.server.is_empty() {
        bail!("no server: pass --server URL or set [client] server in the config");
    }
    Ok(cfg.client.server.trim_end_matches('/').to_string())
}

pub fn client(cfg: &Config) -> Result<ApiClient> {
    let c = ApiClient::new(
        &server_url(cfg)?,
        cfg.client.allow_insecure_http,
        cfg.client.kdf_floor,
    )?;
    if cfg.client.ca_file.is_empty() {
        return Ok(c);
    }
    let pem = std::fs::read(&cfg.client.ca_file)
        .with_context(|| format!("reading [client] ca_file {}", cfg.client.ca_file))?;
    Ok(c.with_ca_pem(&pem)?)
}

/// A client with the saved session for this server.
pub fn signed_in(cfg: &Config) -> Result<(ApiClient, session::SavedSession)> {
    let url = server_url(cfg)?;
    let saved = session::load(&cfg.client.state_path(), &url)?
        .ok_or_else(|| anyhow!("not logged in to {url}: run `clinvault login --email …`"))?;
    Ok((client(cfg)?.with_token(saved.token.clone()), saved))
}

/// Unseals the keys with the password (the session file holds no keys): from the bundle the
/// session fetches (`GET /v1/auth/keys`, no login counted), or, once the session has ended,
/// by logging in again.
pub async fn unlock(cfg: &Config) -> Result<(ApiClient, LoggedIn)> {
    let (session, saved) = signed_in(cfg)?;
    let pw = password(&format!("Password for {}: ", saved.email), false)?;
    match session.unlock_session(&pw).await {
        Ok(logged) => {
            monitor_self(cfg, &session, &logged).await?;
            return Ok((session, logged));
        }
        Err(e)
            if matches!(
                e.code(),
                Some("session_expired" | "session_revoked" | "unauthenticated")
            ) => {}
        Err(e) => return Err(e.into()),
    }
    let mut c = client(cfg)?;
    let logged = c.login(&saved.email, &pw).await?;
    monitor_self(cfg, &c, &logged).await?;
    session::save(
        &cfg.client.state_path(),
        &session::SavedSession {
            token: logged.login.token.clone(),
            ..saved
        },
    )?;
    Ok((c, logged))
}

fn configured_key(cfg: &Config) -> Result<Option<LedgerKey>> {
    if cfg.client.ledger_key.is_empty() {
        return Ok(None);
    }
    Ok(Some(
        LedgerKey::parse(&cfg.client.ledger_key)
            .map_err(|e| anyhow!("[client] ledger_key: {e}"))?,
    ))
}

/// The verified ledger: the saved head moved forward to the server's newest.
pub async fn ledger(cfg: &Config, c: &ApiClient) -> Result<clinvault::client::ledger::Ledger> {
    let policy = clinvault::client::ledger::WitnessPolicy::from_config(
        &cfg.client.witnesses,
        cfg.client.witness_quorum,
    )?;
    let l = clinvault::client::ledger::Ledger::sync_with(
        c,
        &cfg.client.state_path(),
        configured_key(cfg)?.as_ref(),
        cfg.client.max_head_age_secs,
        &policy,
    )
    .await?;
    if l.pinned_now {
        eprintln!(
            "note: pinned this server's ledger key on first use: {}\n      compare it with the one the clinic publishes, or set [client] ledger_key",
            l.key()
        );
    }
    Ok(l)
}

/// Other people's text and the server's, made safe for the terminal (`clinvault::text`).
pub fn shown(s: &str) -> std::borrow::Cow<'_, str> {
    clinvault::text::display(s)
}

/// "1 chunk", "2 chunks".
pub fn plural(n: impl Into<u64>, one: &str, many: &str) -> String {
    let n = n.into();
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Issue 11: at every login and unlock, the ledger's key entries for this account must be the
/// keys just unsealed. A mismatch is printed in red before the command fails.
pub async fn monitor_self(cfg: &Config, c: &ApiClient, logged: &LoggedIn) -> Result<()> {
    let l = ledger(cfg, c).await?;
    if let Err(e) = l
        .check_self(logged.login.user.id, &logged.secrets.public())
        .await
    {
        if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            eprintln!("\x1b[1;31m{e}\x1b[0m");
        }
        return Err(e.into());
    }
    Ok(())
}

pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}
