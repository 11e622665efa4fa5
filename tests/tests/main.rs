//! The end-to-end suites, one module each, in one test binary (see tests/Cargo.toml).
//! Select one with a filter: `cargo nextest run -E 'test(/^sync::/)'`.

mod aggregates;
mod auth;
mod client;
mod crash;
mod dashboard;
mod faults;
mod foundation;
mod hostile;
mod reorg;
mod schemathesis;
mod slow_link;
mod sync;
