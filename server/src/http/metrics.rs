//! Prometheus metrics: request counts and latency by route pattern and status, and pool usage.
//! Labels are route patterns (`/api/v1/units/{id}`), never raw paths, so ids stay out.

use crate::db::DbPool;
use actix_web::http::{Method, StatusCode};
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};
use std::time::Duration;

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    pool_connections: IntGauge,
    pool_idle: IntGauge,
    pool_max: IntGauge,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new_custom(Some("hamlet".to_owned()), None).expect("static prefix is valid");
        let requests = IntCounterVec::new(
            Opts::new("http_requests_total", "HTTP requests by method, route and status"),
            &["method", "route", "status"],
        )
        .expect("static metric");
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "HTTP request latency by method and route",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["method", "route"],
        )
        .expect("static metric");
        let pool_connections =
            IntGauge::new("db_pool_connections", "Open database connections").expect("static metric");
        let pool_idle =
            IntGauge::new("db_pool_idle_connections", "Idle database connections").expect("static metric");
        let pool_max = IntGauge::new("db_pool_max_connections", "Largest size of the database pool")
            .expect("static metric");
        for c in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(latency.clone()),
            Box::new(pool_connections.clone()),
            Box::new(pool_idle.clone()),
            Box::new(pool_max.clone()),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        Self {
            registry,
            requests,
            latency,
            pool_connections,
            pool_idle,
            pool_max,
        }
    }

    pub fn observe(&self, method: &Method, route: &str, status: StatusCode, elapsed: Duration) {
        let method = method_label(method);
        self.requests
            .with_label_values(&[method, route, status.as_str()])
            .inc();
        self.latency
            .with_label_values(&[method, route])
            .observe(elapsed.as_secs_f64());
    }

    /// The text exposition, with pool gauges read now.
    pub fn render(&self, pool: &DbPool) -> String {
        let state = pool.state();
        self.pool_connections.set(i64::from(state.connections));
        self.pool_idle.set(i64::from(state.idle_connections));
        self.pool_max.set(i64::from(pool.max_size()));
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding cannot fail");
        String::from_utf8(out).expect("prometheus text is UTF-8")
    }
}

/// A method as a label: the standard ones by name, any other as `OTHER`, so a client cannot
/// write what it likes into labels and logs (or make a label per request).
pub fn method_label(method: &Method) -> &'static str {
    [
        (Method::GET, "GET"),
        (Method::POST, "POST"),
        (Method::PUT, "PUT"),
        (Method::DELETE, "DELETE"),
        (Method::HEAD, "HEAD"),
        (Method::OPTIONS, "OPTIONS"),
        (Method::PATCH, "PATCH"),
    ]
    .into_iter()
    .find(|(m, _)| m == method)
    .map_or("OTHER", |(_, label)| label)
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
