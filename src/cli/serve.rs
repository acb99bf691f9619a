//! `clinvault serve`.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use clinvault::config::Config;

#[derive(Args)]
pub struct ServeArgs {
    /// Data folder (database, secrets, outbox).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Address to listen on, e.g. 127.0.0.1:8440.
    #[arg(long)]
    listen: Option<String>,
    /// Log lines as JSON objects (`[server] log_json`).
    #[arg(long)]
    log_json: bool,
}

impl ServeArgs {
    /// The flags as config overrides (they win over the file and the environment).
    pub fn overrides(&self) -> Vec<(&'static str, String)> {
        let mut o = Vec::new();
        if self.log_json {
            o.push(("server.log_json", "true".to_string()));
        }
        if let Some(d) = &self.data {
            o.push(("server.data", d.display().to_string()));
        }
        if let Some(l) = &self.listen {
            o.push(("server.listen", l.clone()));
        }
        o
    }
}

pub async fn run(cfg: Config) -> Result<()> {
    super::init_logging("info,sqlx=warn", cfg.server.log_json);
    let handle = clinvault::server::start(cfg).await?;
    if let Some(code) = &handle.admin_enrollment_code {
        out!(
            "No administrator yet. One-time enrollment code (also in {}):\n\n    {code}\n\n\
             Register with: clinvault --server {} register --admin-code {code} --email YOU@EXAMPLE.ORG --name 'YOUR NAME'\n",
            handle.data.join("admin-enrollment.txt").display(),
            handle.url()
        );
    }
    out!("clinvault serving on {}", handle.url());
    out!(
        "ledger key {} (for witnesses: {})",
        handle.ledger_key,
        handle.ledger_vkey
    );
    let stop = handle.shutdown_sender();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down: finishing requests in flight");
        let _ = stop.send(true);
    });
    handle.wait().await?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
