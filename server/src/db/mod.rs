//! Storage: the backend chosen from the URL scheme, the r2d2 pool, embedded migrations and the
//! queries (one submodule per area). Nothing above this module writes SQL.

pub mod auth;
mod conn;
mod pg_upsert;
pub mod records;
pub mod schema;
pub mod sync;
pub mod tallies;
pub mod tx;
pub mod units;

pub use conn::DbConn;

use diesel::connection::SimpleConnection;
use diesel::r2d2::{ManageConnection, Pool, PooledConnection};
use diesel::{Connection, PgConnection, SqliteConnection};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/sqlite");
pub const PG_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/postgres");

/// Runs `$body` with `$c` bound to the concrete connection of whichever backend is in use.
/// For the queries the multi-backend enum cannot express (upserts, batch inserts, RETURNING).
#[macro_export]
macro_rules! per_backend {
    ($conn:expr, |$c:ident| $body:expr) => {
        match $conn {
            $crate::db::DbConn::Pg($c) => $body,
            $crate::db::DbConn::Sqlite($c) => $body,
        }
    };
}

/// Which database a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

impl Backend {
    /// Picks the backend from the URL's scheme; anything else is refused rather than guessed
    /// (a mistyped PostgreSQL URL must not silently become a new SQLite file).
    pub fn from_url(url: &str) -> Result<Self, String> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self::Postgres)
        } else if url.starts_with("sqlite://") {
            Ok(Self::Sqlite)
        } else {
            Err(format!(
                "unsupported database URL {:?}: expected sqlite://PATH or postgres://...",
                redact_url(url)
            ))
        }
    }
}

/// The URL with any password replaced, for logs and error messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme_end + 3],
                    &userinfo[..colon],
                    &url[at..]
                ),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// r2d2 manager that opens the backend named by the URL scheme and sets SQLite's pragmas on
/// every connection.
#[derive(Debug, Clone)]
pub struct DbManager {
    backend: Backend,
    url: String,
}

impl DbManager {
    pub fn new(url: &str) -> Result<Self, String> {
        let backend = Backend::from_url(url)?;
        let url = match backend {
            // Diesel's SQLite takes a file path; `sqlite://hamlet.db` means ./hamlet.db.
            Backend::Sqlite => url.trim_start_matches("sqlite://").to_owned(),
            Backend::Postgres => url.to_owned(),
        };
        Ok(Self { backend, url })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }
}

/// Applied on every new SQLite connection: first a wait instead of an immediate SQLITE_BUSY when
/// another writer holds the lock (it must come first: the other pragmas may need that lock),
/// then concurrent readers with one writer (WAL) and enforced foreign keys.
const SQLITE_PRAGMAS: &str = "PRAGMA busy_timeout = 10000; PRAGMA journal_mode = WAL; \
     PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;";

impl ManageConnection for DbManager {
    type Connection = DbConn;
    type Error = diesel::r2d2::Error;

    fn connect(&self) -> Result<DbConn, Self::Error> {
        use diesel::r2d2::Error as E;
        match self.backend {
            Backend::Postgres => PgConnection::establish(&self.url)
                .map(DbConn::Pg)
                .map_err(E::ConnectionError),
            Backend::Sqlite => {
                let mut c = SqliteConnection::establish(&self.url).map_err(E::ConnectionError)?;
                c.batch_execute(SQLITE_PRAGMAS).map_err(E::QueryError)?;
                Ok(DbConn::Sqlite(c))
            }
        }
    }

    fn is_valid(&self, conn: &mut DbConn) -> Result<(), Self::Error> {
        conn.batch_execute("SELECT 1")
            .map_err(diesel::r2d2::Error::QueryError)
    }

    /// A connection whose transaction state is unknown (a failed COMMIT or ROLLBACK, usually a
    /// lost connection or a failed write) is dropped instead of going back to the pool, where
    /// every later transaction on it would fail.
    fn has_broken(&self, conn: &mut DbConn) -> bool {
        std::thread::panicking() || diesel::r2d2::R2D2Connection::is_broken(conn)
    }
}

pub type DbPool = Pool<DbManager>;
pub type PooledConn = PooledConnection<DbManager>;

/// Pool settings; the defaults suit one `hamlet serve` process on a small machine.
#[derive(Debug, Clone)]
pub struct PoolOptions {
    pub max_size: u32,
    /// How long a request waits for a connection before it gets 503 `unavailable`.
    pub connection_timeout: Duration,
}

impl Default for PoolOptions {
    fn default() -> Self {
        Self {
            max_size: 10,
            connection_timeout: Duration::from_secs(5),
        }
    }
}

/// Most connections a SQLite pool opens, whatever is configured.
pub const SQLITE_MAX_CONNECTIONS: u32 = 4;

/// Builds the pool without connecting up front, so a server can start (and report 503 on
/// `/healthz`) while the database is down, and recover without a restart once it is back.
pub fn build_pool(url: &str, options: &PoolOptions) -> Result<DbPool, String> {
    let manager = DbManager::new(url)?;
    // SQLite allows one writer at a time; more connections only add lock waits, and each keeps
    // its own page cache. With 4 instead of 8, 256 phones pushed and pulled as fast and the
    // process held ~25 MiB less (the sync gate admits as many requests as there are connections).
    let max_size = match manager.backend() {
        Backend::Sqlite => options.max_size.min(SQLITE_MAX_CONNECTIONS),
        Backend::Postgres => options.max_size,
    };
    Ok(Pool::builder()
        .error_handler(Box::new(ConnectErrorLog::default()))
        .max_size(max_size)
        .min_idle(Some(0))
        .connection_timeout(options.connection_timeout)
        .test_on_check_out(true)
        .build_unchecked(manager))
}

/// Logs the pool's failed connection attempts and health checks as warnings, at most one a
/// second: while the database is down the pool retries in the background, and r2d2's own
/// handler would log an ERROR for every attempt.
#[derive(Debug, Default)]
struct ConnectErrorLog {
    last: Mutex<Option<Instant>>,
    suppressed: AtomicU64,
}

impl diesel::r2d2::HandleError<diesel::r2d2::Error> for ConnectErrorLog {
    fn handle_error(&self, error: diesel::r2d2::Error) {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if last.is_some_and(|t| now.duration_since(t) < Duration::from_secs(1)) {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        *last = Some(now);
        let suppressed = self.suppressed.swap(0, Ordering::Relaxed);
        tracing::warn!(error = %error, suppressed, "database connection failed; retrying");
    }
}

/// Arbitrary constant naming Hamlet's migration advisory lock on PostgreSQL.
const MIGRATION_LOCK_KEY: i64 = 0x4841_4d4c_4554;

/// Runs every pending migration of the connection's backend.
pub fn run_migrations(conn: &mut DbConn) -> Result<Vec<String>, String> {
    let applied: Vec<String> = match conn {
        DbConn::Pg(c) => {
            // Processes starting together: one migrates, the others wait and then find nothing to do.
            c.batch_execute(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})"))
                .map_err(|e| format!("cannot take the migration lock: {e}"))?;
            let result = c
                .run_pending_migrations(PG_MIGRATIONS)
                .map(|v| v.iter().map(ToString::to_string).collect());
            let _ = c.batch_execute(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK_KEY})"));
            result
        }
        DbConn::Sqlite(c) => {
            // Processes starting together on a new file: the first takes the write lock, the
            // others wait (busy_timeout) and then find nothing to do. Each migration's own
            // transaction becomes a savepoint inside this one.
            use diesel::connection::{AnsiTransactionManager, TransactionManager};
            AnsiTransactionManager::begin_transaction_sql(c, "BEGIN IMMEDIATE")
                .map_err(|e| format!("cannot take the migration lock: {e}"))?;
            let result = c
                .run_pending_migrations(SQLITE_MIGRATIONS)
                .map(|v| v.iter().map(ToString::to_string).collect());
            let end = match result {
                Ok(_) => AnsiTransactionManager::commit_transaction(c),
                Err(_) => AnsiTransactionManager::rollback_transaction(c),
            };
            end.map_err(|e| format!("migration failed: {e}"))?;
            result
        }
    }
    .map_err(|e| format!("migration failed: {e}"))?;
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_from_scheme_only() {
        assert_eq!(Backend::from_url("sqlite://hamlet.db").unwrap(), Backend::Sqlite);
        assert_eq!(
            Backend::from_url("postgres://u:p@h/db").unwrap(),
            Backend::Postgres
        );
        assert_eq!(Backend::from_url("postgresql://h/db").unwrap(), Backend::Postgres);
        // A libpq conninfo string must not become a SQLite file named after it.
        let err = Backend::from_url("host=localhost user=x password=secret dbname=y").unwrap_err();
        assert!(err.contains("unsupported database URL"));
        assert!(Backend::from_url("hamlet.db").is_err());
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact_url("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_url("sqlite://x.db"), "sqlite://x.db");
    }
}
