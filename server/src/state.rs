//! State shared by every request handler.

use crate::auth::AuthSettings;
use crate::db::{DbConn, DbPool, PooledConn};
use crate::error::{AppError, AppResult};
use crate::http::metrics::Metrics;
use actix_web::web;
use std::time::Instant;

pub struct AppState {
    pub pool: DbPool,
    pub auth: AuthSettings,
    pub metrics: Metrics,
    pub sync: crate::sync::SyncSettings,
    pub aggregates: crate::aggregates::AggregateSettings,
    pub dashboard: crate::http::dashboard::Dashboard,
}

impl AppState {
    /// Runs `f` with a pooled connection on the blocking thread pool, never on an async worker.
    /// No connection within the pool's timeout is 503 `unavailable`. The timeout counts from
    /// the call, so time spent queued for a blocking thread (every thread waiting on a database
    /// that is down) is part of it, and a request never waits much longer than the timeout.
    pub async fn db<T, F>(&self, f: F) -> AppResult<T>
    where
        F: FnOnce(&mut DbConn) -> AppResult<T> + Send + 'static,
        T: Send + 'static,
    {
        let pool = self.pool.clone();
        let deadline = Instant::now() + pool.connection_timeout();
        web::block(move || {
            let mut conn = checkout(&pool, deadline)?;
            f(&mut conn)
        })
        .await?
    }
}

/// A connection by `deadline`; past it, only one that is idle right now.
fn checkout(pool: &DbPool, deadline: Instant) -> AppResult<PooledConn> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return pool
            .try_get()
            .ok_or_else(|| AppError::Unavailable("no database connection within the timeout".to_owned()));
    }
    pool.get_timeout(left).map_err(AppError::from)
}
