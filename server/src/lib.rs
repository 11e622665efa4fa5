//! Hamlet server: HTTP API, sync, aggregates and administration over SQLite or PostgreSQL.
//!
//! A request flows `http` (thin handlers) → a service (`units`, `auth`, ...) → `db` (queries).
//! Errors are one enum, [`error::AppError`], mapped to the contract's body in one place.

pub mod aggregates;
pub mod auth;
pub mod cli;
pub mod clock;
pub mod config;
pub mod db;
pub mod demo;
pub mod error;
pub mod http;
pub mod startup;
pub mod state;
pub mod sync;
pub mod telemetry;
pub mod units;
pub mod verify;
