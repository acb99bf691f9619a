//! clinvault: end-to-end encrypted, tamper-evident medical reports.
//!
//! Layers (arrows only point down, see DESIGN.md §1):
//! `tui` -> `client` -> `seal`, `ledger`, `api`; `server` -> `seal` (verify only), `ledger`, `api`.
//! `seal` and `ledger` are pure: bytes in, bytes or a typed error out.

pub mod api;
pub mod bundle;
pub mod client;
pub mod config;
pub mod direct_io;
pub mod fsutil;
pub mod ledger;
pub mod seal;
pub mod server;
pub mod text;
pub mod tui;
pub mod units;

/// Makes ring rustls's process-wide crypto provider. reqwest, object_store and axum-server
/// are built without one of their own, so every TLS client or server is made after this.
pub fn install_tls_provider() {
    // Err only means a provider is installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
pub mod witness;
