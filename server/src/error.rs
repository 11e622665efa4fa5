//! The one error type of the server and its one mapping to the contract's error body.

use actix_web::http::{StatusCode, header};
use actix_web::{HttpResponse, ResponseError};
use hamlet_shared::{ErrorBody, ErrorCode, ErrorDetail, ErrorPayload};

/// Seconds a client should wait before retrying when the database is unavailable.
pub const UNAVAILABLE_RETRY_AFTER_SECS: u64 = 5;

/// Every way a request can fail. Handlers and services return this; only [`ResponseError`]
/// below turns it into HTTP.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{message}")]
    Validation {
        message: String,
        details: Vec<ErrorDetail>,
    },
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    /// A path the API serves, with a method it does not take (the handler adds `Allow`).
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("too many requests")]
    RateLimited { retry_after_secs: u64 },
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The database answers but refuses writes: a read-only file or replica, a full disk.
    /// Like [`AppError::Unavailable`] for the client (503, retry later); an operator must act.
    #[error("database cannot be written: {0}")]
    Unwritable(String),
    /// Lost a race with another transaction (deadlock, serialization failure, busy database):
    /// the caller may retry the whole transaction; if it gives up, the client gets 503.
    #[error("contention: {0}")]
    Contention(String),
    /// The message is logged, never sent.
    #[error("internal error: {0}")]
    Internal(String),
}

impl AppError {
    /// A 422 with one field-level detail.
    pub fn invalid(detail: ErrorDetail) -> Self {
        Self::Validation {
            message: detail.message.clone(),
            details: vec![detail],
        }
    }

    /// A 422 with several details; the message summarises them.
    pub fn invalid_many(details: Vec<ErrorDetail>) -> Self {
        let message = match details.as_slice() {
            [one] => one.message.clone(),
            many => format!("{} fields are invalid", many.len()),
        };
        Self::Validation { message, details }
    }

    /// A 413 naming the limit that was exceeded.
    pub fn too_large(limit: usize) -> Self {
        Self::PayloadTooLarge(format!("request body is larger than the limit of {limit} bytes"))
    }

    pub fn not_found(what: impl Into<String>) -> Self {
        Self::NotFound(format!("{} not found", what.into()))
    }

    pub fn code(&self) -> ErrorCode {
        match self {
            Self::BadRequest(_) => ErrorCode::BadRequest,
            Self::Validation { .. } => ErrorCode::ValidationFailed,
            Self::Unauthorized(_) => ErrorCode::Unauthorized,
            Self::Forbidden(_) => ErrorCode::Forbidden,
            Self::NotFound(_) => ErrorCode::NotFound,
            Self::MethodNotAllowed(_) => ErrorCode::MethodNotAllowed,
            Self::Conflict(_) => ErrorCode::Conflict,
            Self::PayloadTooLarge(_) => ErrorCode::PayloadTooLarge,
            Self::RateLimited { .. } => ErrorCode::RateLimited,
            Self::Unavailable(_) | Self::Unwritable(_) | Self::Contention(_) => ErrorCode::Unavailable,
            Self::Internal(_) => ErrorCode::Internal,
        }
    }

    fn public_message(&self) -> String {
        match self {
            Self::Unavailable(_) => "the database is unavailable; retry later".to_owned(),
            Self::Unwritable(_) => {
                "the database cannot be written (read-only or out of disk space); retry later".to_owned()
            }
            Self::Contention(_) => "the server is busy; retry later".to_owned(),
            Self::Internal(_) => "internal server error".to_owned(),
            other => other.to_string(),
        }
    }
}

impl ResponseError for AppError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Validation { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable(_) | Self::Unwritable(_) | Self::Contention(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            Self::Internal(msg) => tracing::error!(error = %msg, "internal error"),
            Self::Unwritable(msg) => tracing::error!(error = %msg, "database cannot be written"),
            Self::Unavailable(msg) | Self::Contention(msg) => {
                tracing::warn!(error = %msg, "database unavailable")
            }
            _ => {}
        }
        let details = match self {
            Self::Validation { details, .. } => details.clone(),
            _ => Vec::new(),
        };
        let body = ErrorBody {
            error: ErrorPayload {
                code: self.code(),
                message: self.public_message(),
                details,
            },
        };
        let mut response = HttpResponse::build(self.status_code());
        match self {
            Self::RateLimited { retry_after_secs } => {
                response.insert_header((header::RETRY_AFTER, retry_after_secs.to_string()));
            }
            Self::Unavailable(_) | Self::Unwritable(_) | Self::Contention(_) => {
                response.insert_header((header::RETRY_AFTER, UNAVAILABLE_RETRY_AFTER_SECS.to_string()));
            }
            _ => {}
        }
        response.json(body)
    }
}

/// Messages of errors that mean the connection to the database is gone or the server is going
/// away or not ready yet (libpq and PostgreSQL wording; diesel reports most of them as
/// `ClosedConnection`, but not all, e.g. a command that could not be sent on a dead socket).
const CONNECTION_LOST: &[&str] = &[
    "terminating connection",
    "server closed the connection",
    "no connection to the server",
    "could not receive data from server",
    "could not send data to server",
    "connection to server",
    "the database system is shutting down",
    "the database system is starting up",
    "the database system is in recovery mode",
    "the database system is not yet accepting connections",
];

/// Messages of a database that cannot write: SQLite's read-only file or directory
/// (SQLITE_READONLY), full disk (SQLITE_FULL) and failed write (SQLITE_IOERR); PostgreSQL's
/// full disk (`could not extend file ...: No space left on device`).
const CANNOT_WRITE: &[&str] = &[
    "attempt to write a readonly database",
    "database or disk is full",
    "disk I/O error",
    "No space left on device",
];

impl From<diesel::result::Error> for AppError {
    fn from(e: diesel::result::Error) -> Self {
        use diesel::result::{DatabaseErrorKind, Error};
        match e {
            Error::NotFound => Self::NotFound("not found".to_owned()),
            // A lost connection or a server shutting down is an outage, not a bug.
            Error::DatabaseError(
                DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
                info,
            ) => Self::Unavailable(info.message().to_owned()),
            Error::DatabaseError(DatabaseErrorKind::UniqueViolation, info) => {
                Self::Conflict(format!("already exists: {}", info.message()))
            }
            Error::DatabaseError(DatabaseErrorKind::SerializationFailure, info) => {
                Self::Contention(info.message().to_owned())
            }
            // A PostgreSQL standby or `default_transaction_read_only`.
            Error::DatabaseError(DatabaseErrorKind::ReadOnlyTransaction, info) => {
                Self::Unwritable(info.message().to_owned())
            }
            Error::DatabaseError(_, info)
                if info.message().contains("deadlock detected")
                    || info.message().contains("database is locked") =>
            {
                Self::Contention(info.message().to_owned())
            }
            Error::DatabaseError(_, info) if CANNOT_WRITE.iter().any(|m| info.message().contains(m)) => {
                Self::Unwritable(info.message().to_owned())
            }
            Error::DatabaseError(_, info) if CONNECTION_LOST.iter().any(|m| info.message().contains(m)) => {
                Self::Unavailable(info.message().to_owned())
            }
            // COMMIT failed and so did the rollback after it: the commit's error says why.
            Error::RollbackErrorOnCommit { commit_error, .. } => Self::from(*commit_error),
            // A connection whose transaction state was lost with the connection; the pool
            // discards it (`DbManager::has_broken`), so a retry gets a fresh one.
            Error::BrokenTransactionManager => {
                Self::Unavailable("connection left in a broken transaction state".to_owned())
            }
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<diesel::r2d2::PoolError> for AppError {
    fn from(e: diesel::r2d2::PoolError) -> Self {
        Self::Unavailable(e.to_string())
    }
}

impl From<actix_web::error::BlockingError> for AppError {
    fn from(e: actix_web::error::BlockingError) -> Self {
        Self::Internal(format!("blocking task failed: {e}"))
    }
}

pub type AppResult<T> = Result<T, AppError>;

#[cfg(test)]
mod tests {
    use super::*;
    use diesel::result::{DatabaseErrorKind, Error};

    fn db_error(kind: DatabaseErrorKind, message: &str) -> AppError {
        AppError::from(Error::DatabaseError(kind, Box::new(message.to_owned())))
    }

    #[test]
    fn outages_are_503_not_500() {
        for (kind, message) in [
            (
                DatabaseErrorKind::ClosedConnection,
                "server closed the connection unexpectedly",
            ),
            (
                DatabaseErrorKind::UnableToSendCommand,
                "no connection to the server",
            ),
            (
                DatabaseErrorKind::Unknown,
                "terminating connection due to administrator command",
            ),
            (
                DatabaseErrorKind::Unknown,
                "FATAL:  the database system is shutting down",
            ),
        ] {
            let e = db_error(kind, message);
            assert!(matches!(e, AppError::Unavailable(_)), "{message}: {e:?}");
            assert_eq!(e.status_code(), StatusCode::SERVICE_UNAVAILABLE);
        }
        let e = AppError::from(Error::BrokenTransactionManager);
        assert_eq!(e.status_code(), StatusCode::SERVICE_UNAVAILABLE);
        let e = AppError::from(Error::RollbackErrorOnCommit {
            rollback_error: Box::new(Error::BrokenTransactionManager),
            commit_error: Box::new(Error::DatabaseError(
                DatabaseErrorKind::ClosedConnection,
                Box::new("gone".to_owned()),
            )),
        });
        assert!(matches!(e, AppError::Unavailable(_)), "{e:?}");
    }

    #[test]
    fn unwritable_database_is_503_with_a_clear_message() {
        for message in [
            "attempt to write a readonly database",
            "database or disk is full",
            "disk I/O error",
            "could not extend file \"base/16384/16385\": No space left on device",
        ] {
            let e = db_error(DatabaseErrorKind::Unknown, message);
            assert!(matches!(e, AppError::Unwritable(_)), "{message}: {e:?}");
            let response = e.error_response();
            assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert!(response.headers().contains_key(header::RETRY_AFTER));
            assert!(e.public_message().contains("cannot be written"));
        }
        let e = db_error(DatabaseErrorKind::ReadOnlyTransaction, "read-only transaction");
        assert!(matches!(e, AppError::Unwritable(_)));
    }

    #[test]
    fn other_database_errors_stay_internal() {
        let e = db_error(DatabaseErrorKind::Unknown, "syntax error at or near \"x\"");
        assert!(matches!(e, AppError::Internal(_)));
    }
}
