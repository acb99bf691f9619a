//! The database side of the HTTP routes (issue 13 point 6): one module per route file, each
//! statement a named function taking the pool, a connection or the route's transaction.
//! Route files call these instead of holding SQL themselves (`tests/layering.rs` checks it).

pub mod admin;
pub mod audit;
pub mod auth;
pub mod bookings;
pub mod chunks;
pub mod doctors;
pub mod emergency;
pub mod grants;
pub mod health;
pub mod ledger;
pub mod otp;
pub mod patients;
pub mod recovery;
pub mod reports;
pub mod stations;
pub mod totp;
pub mod users;
