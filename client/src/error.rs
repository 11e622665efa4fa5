//! The client's one error type: what the server said, why it could not be reached, or what is
//! wrong locally.

use hamlet_shared::{ErrorBody, ErrorDetail};
use std::time::Duration;

/// Everything that can fail in the client, from an HTTP call to the local store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server answered with a non-2xx status and the contract's error body.
    #[error("HTTP {status}: {} ({})", .body.error.message, .body.error.code)]
    Status {
        status: u16,
        body: ErrorBody,
        /// The `Retry-After` header, when the server sent one in seconds.
        retry_after: Option<Duration>,
    },
    /// No connection could be made: the request certainly never reached the server.
    #[error("cannot reach the server: {0}")]
    Unreachable(String),
    /// The exchange failed midway (reset, timeout, bad body): the server may have processed it.
    #[error("transport: {0}")]
    Transport(String),
    /// The local SQLite store failed.
    #[error("local store: {0}")]
    Store(String),
    /// Field values that the shared validation refused.
    #[error("invalid fields: {}", join_details(.0))]
    Validation(Vec<ErrorDetail>),
    /// A command that cannot be carried out as asked (unknown record, wrong server, ...).
    #[error("{0}")]
    Invalid(String),
    /// No session: log in first.
    #[error("not logged in: run `hamlet-client login USER` first")]
    NotLoggedIn,
    /// The session ended and could not be refreshed; the outbox is kept for the next login.
    #[error("the session has ended ({0}); log in again (nothing local is lost)")]
    LoginRequired(String),
    /// Retries ran out; `last` is the final failure.
    #[error("gave up after {attempts} attempts: {last}")]
    GaveUp { attempts: u32, last: Box<Error> },
}

fn join_details(details: &[ErrorDetail]) -> String {
    details
        .iter()
        .map(|d| d.message.as_str())
        .collect::<Vec<_>>()
        .join("; ")
}

impl Error {
    /// The HTTP status, when the server answered (also through [`Error::GaveUp`]).
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Status { status, .. } => Some(*status),
            Self::GaveUp { last, .. } => last.status(),
            _ => None,
        }
    }

    /// Worth sending again unchanged: no answer, or the server asked to come back later.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Unreachable(_) | Self::Transport(_) => true,
            Self::Status { status, .. } => matches!(status, 429 | 500 | 502 | 503 | 504),
            _ => false,
        }
    }

    /// The `Retry-After` the server asked for, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

impl From<diesel::result::Error> for Error {
    fn from(e: diesel::result::Error) -> Self {
        Self::Store(e.to_string())
    }
}

impl From<diesel::ConnectionError> for Error {
    fn from(e: diesel::ConnectionError) -> Self {
        Self::Store(e.to_string())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
