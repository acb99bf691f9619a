//! clinvault: end-to-end encrypted, tamper-evident medical reports.
//!
//! Layers (arrows only point down, see DESIGN.md §1):
//! `tui` -> `client` -> `seal`, `ledger`, `api`; `server` -> `seal` (verify only), `ledger`, `api`.
//! `seal` and `ledger` are pure: bytes in, bytes or a typed error out.

pub mod api;
pub mod client;
pub mod config;
pub mod ledger;
pub mod seal;
pub mod server;
pub mod tui;
pub mod witness;
