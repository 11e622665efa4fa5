//! Operations routes: health, metrics.

use crate::state::AppState;
use actix_web::{HttpResponse, get, web};
use hamlet_shared::Health;
use std::time::Duration;

/// How long `/healthz` waits for a database connection.
const HEALTH_DB_TIMEOUT: Duration = Duration::from_secs(2);

/// Liveness and database reachability.
#[utoipa::path(
    tag = "operations",
    responses(
        (status = 200, description = "Serving, database reachable", body = Health),
        (status = 503, description = "Database unreachable", body = Health),
    )
)]
#[get("/healthz")]
pub async fn healthz(state: web::Data<AppState>) -> HttpResponse {
    let pool = state.pool.clone();
    let probe = web::block(move || {
        use diesel::connection::SimpleConnection;
        pool.get_timeout(HEALTH_DB_TIMEOUT)
            .ok()
            .is_some_and(|mut c| c.batch_execute("SELECT 1").is_ok())
    });
    // The probe may first queue for a blocking thread behind requests that wait on a database
    // that is down: the whole check answers within the timeout all the same.
    let ok = matches!(
        actix_web::rt::time::timeout(HEALTH_DB_TIMEOUT, probe).await,
        Ok(Ok(true))
    );
    let body = Health {
        status: "ok".to_owned(),
        database: if ok { "ok" } else { "unavailable" }.to_owned(),
    };
    if ok {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable()
            .insert_header((
                "Retry-After",
                crate::error::UNAVAILABLE_RETRY_AFTER_SECS.to_string(),
            ))
            .json(body)
    }
}

/// Prometheus text exposition.
#[utoipa::path(tag = "operations", responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain")))]
#[get("/metrics")]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.render(&state.pool))
}
