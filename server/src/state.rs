//! State shared by every request handler.

use crate::auth::AuthSettings;
use crate::db::{DbConn, DbPool};
use crate::error::{AppError, AppResult};
use crate::http::metrics::Metrics;
use actix_web::web;

pub struct AppState {
    pub pool: DbPool,
    pub auth: AuthSettings,
    pub metrics: Metrics,
    pub sync: crate::sync::SyncSettings,
    pub aggregates: crate::aggregates::AggregateSettings,
}

impl AppState {
    /// Runs `f` with a pooled connection on the blocking thread pool, never on an async worker.
    /// No connection within the pool's timeout is 503 `unavailable`.
    pub async fn db<T, F>(&self, f: F) -> AppResult<T>
    where
        F: FnOnce(&mut DbConn) -> AppResult<T> + Send + 'static,
        T: Send + 'static,
    {
        let pool = self.pool.clone();
        web::block(move || {
            let mut conn = pool.get().map_err(AppError::from)?;
            f(&mut conn)
        })
        .await?
    }
}
