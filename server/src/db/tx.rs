//! Transactions that begin the way each use needs. Inside an open transaction they become
//! savepoints, so services compose.
//!
//! On SQLite every writing transaction begins with `BEGIN IMMEDIATE`: a deferred transaction that
//! reads and then writes fails at once with SQLITE_BUSY when another connection wrote meanwhile
//! (the busy timeout does not apply to that upgrade), while an immediate one waits its turn.

use super::DbConn;
use diesel::Connection;
use diesel::connection::{AnsiTransactionManager, TransactionManager};
use diesel::result::Error;

fn run<T, E: From<Error>>(
    conn: &mut DbConn,
    pg_begin: &str,
    sqlite_begin: &str,
    f: impl FnOnce(&mut DbConn) -> Result<T, E>,
) -> Result<T, E> {
    let depth = <DbConn as Connection>::TransactionManager::transaction_manager_status_mut(conn)
        .transaction_depth()?;
    if depth.is_some() {
        return conn.transaction(f);
    }
    match conn {
        DbConn::Pg(c) => AnsiTransactionManager::begin_transaction_sql(c, pg_begin)?,
        DbConn::Sqlite(c) => AnsiTransactionManager::begin_transaction_sql(c, sqlite_begin)?,
    }
    match f(conn) {
        Ok(value) => {
            <DbConn as Connection>::TransactionManager::commit_transaction(conn)?;
            Ok(value)
        }
        Err(e) => {
            let _ = <DbConn as Connection>::TransactionManager::rollback_transaction(conn);
            Err(e)
        }
    }
}

/// A transaction that writes.
pub fn write<T, E: From<Error>>(
    conn: &mut DbConn,
    f: impl FnOnce(&mut DbConn) -> Result<T, E>,
) -> Result<T, E> {
    run(conn, "BEGIN", "BEGIN IMMEDIATE", f)
}

/// A read-only transaction over one snapshot (REPEATABLE READ on PostgreSQL; a SQLite
/// transaction always reads one snapshot).
pub fn snapshot<T, E: From<Error>>(
    conn: &mut DbConn,
    f: impl FnOnce(&mut DbConn) -> Result<T, E>,
) -> Result<T, E> {
    run(
        conn,
        "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
        "BEGIN DEFERRED",
        f,
    )
}

/// A writing transaction that reads one consistent snapshot, for work that compares tables.
pub fn consistent<T, E: From<Error>>(
    conn: &mut DbConn,
    f: impl FnOnce(&mut DbConn) -> Result<T, E>,
) -> Result<T, E> {
    run(
        conn,
        "BEGIN ISOLATION LEVEL REPEATABLE READ",
        "BEGIN IMMEDIATE",
        f,
    )
}
