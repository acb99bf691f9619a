//! No command: the terminal client, on the configured server or on an embedded demo server
//! over `[server] data`.

use anyhow::{Context, Result};

use clinvault::config::Config;
use clinvault::tui::{BoxFuture, Embedded, ServerSource};

pub fn run(cfg: Config) -> Result<()> {
    let _log = clinvault::tui::log_to_file(&cfg.client.state_path());
    // The client's tasks are large futures, and a debug build (README command 1) keeps them
    // unoptimised on the stack: 8 MiB per worker instead of tokio's 2 MiB, as the tests get.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(8 << 20)
        .build()
        .context("starting the async runtime")?;
    let source = if cfg.client.server.is_empty() {
        let mut server_cfg = cfg.clone();
        server_cfg.server.listen = "127.0.0.1:0".into();
        server_cfg.server.demo = true;
        // Seeding registers a few dozen accounts from this one loopback address.
        server_cfg.server.auth_per_address_per_minute =
            server_cfg.server.auth_per_address_per_minute.max(600);
        let data = server_cfg.server.data.clone();
        let start: BoxFuture<Result<Embedded, String>> = Box::pin(async move {
            let handle = clinvault::server::start(server_cfg)
                .await
                .map_err(|e| e.to_string())?;
            let url = handle.url();
            let admin_code = handle.admin_enrollment_code.clone();
            let history = handle.demo_history();
            let begin_now: clinvault::tui::BeginNow = std::sync::Arc::new(move |id| {
                let h = history.clone();
                Box::pin(async move { h.begin_now(id).await.map_err(|e| e.message) })
            });
            Ok(Embedded {
                url,
                admin_code,
                begin_now: Some(begin_now),
                stop: Box::new(move || {
                    Box::pin(async move {
                        let _ = handle.shutdown().await;
                    })
                }),
            })
        });
        ServerSource::Embedded { data, start }
    } else {
        ServerSource::Remote(super::server_url(&cfg)?)
    };
    rt.block_on(clinvault::tui::run(cfg, source))?;
    Ok(())
}
