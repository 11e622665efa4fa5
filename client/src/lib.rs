//! The reference Hamlet client.
//!
//! - [`Api`]: a typed, blocking HTTP API over the shared protocol types.
//! - [`Client`]: an offline client over a local SQLite store: device identity, tokens, server
//!   copies of records, an outbox of mutations with persisted ids, a persisted hybrid logical
//!   clock, and `push`/`pull`/`sync` with retries (docs/client.md).
//!
//! Only `hamlet-shared` types go on the wire, so the client and the server cannot drift.

pub mod api;
mod client;
mod clock;
mod error;
pub mod fields;
mod outbox;
pub mod retry;
mod schema;
mod store;
mod sync;
mod view;

pub use api::{Api, ApiError};
pub use client::{Client, ClientOptions, Status};
pub use clock::now_ms;
pub use error::{Error, Result};
pub use outbox::{BatchOutcome, OutboxEntry};
pub use retry::{RetryEvent, RetryPolicy};
pub use store::{ServerCopy, Store};
pub use sync::{PullReport, PushReport, SyncReport};
pub use view::LocalRecord;
