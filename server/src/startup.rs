//! Building and running the HTTP server.

use crate::auth::{AuthSettings, tokens::TokenKeys};
use crate::config::Config;
use crate::db::{self, DbPool};
use crate::http::{self, decompress, errors, metrics::Metrics};
use crate::state::AppState;
use actix_web::dev::{Server, ServerHandle, Service};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::{Compress, ErrorHandlers};
use actix_web::{App, HttpMessage, HttpResponse, HttpServer, web};
use std::net::TcpListener;
use std::time::Instant;
use tracing_actix_web::{RequestId, TracingLogger};
use utoipa_actix_web::AppExt;

/// A bound, not yet running server.
pub struct Application {
    port: u16,
    server: Server,
    pool: DbPool,
}

impl Application {
    /// Connects, runs pending migrations, binds the listener and prepares the server.
    pub fn build(config: Config) -> Result<Self, String> {
        let pool = db::build_pool(&config.database_url, &config.pool)?;
        {
            let mut conn = pool
                .get()
                .map_err(|e| format!("cannot connect to {}: {e}", db::redact_url(&config.database_url)))?;
            let applied = db::run_migrations(&mut conn)?;
            if !applied.is_empty() {
                tracing::info!(migrations = ?applied, "applied migrations");
            }
        }
        let listener =
            TcpListener::bind(&config.bind).map_err(|e| format!("cannot bind {}: {e}", config.bind))?;
        let port = listener.local_addr().map_err(|e| e.to_string())?.port();
        let state = web::Data::new(AppState {
            pool: pool.clone(),
            auth: AuthSettings {
                keys: TokenKeys::new(
                    &config.jwt_secret,
                    config.access_ttl_secs,
                    config.refresh_ttl_secs,
                ),
                password: config.password,
                limits: config.login_limits,
            },
            metrics: Metrics::new(),
            sync: config.sync,
            aggregates: config.aggregates,
            dashboard: http::dashboard::Dashboard {
                key: http::dashboard::session::CookieKey::new(&config.jwt_secret),
                settings: config.dashboard.clone(),
            },
        });
        spawn_fold(state.clone(), config.aggregates.fold_interval_secs);
        let openapi = web::Data::new(http::openapi());
        let route_methods = web::Data::new(http::fallback::RouteMethods::from_openapi(&openapi));
        // As many sync requests at once as the pool really has connections (fewer on SQLite).
        let pool_size = pool.max_size() as usize;
        let sync_gate = web::Data::new(http::admission::SyncGate::new(
            pool_size,
            http::admission::QUEUE_WAIT,
        ));
        let body_limit = config.body_limit;

        let mut server = HttpServer::new(move || {
            let metrics = state.metrics.clone();
            let app = App::new()
                .into_utoipa_app()
                .app_data(state.clone())
                .app_data(openapi.clone())
                .app_data(route_methods.clone())
                .app_data(sync_gate.clone())
                .app_data(
                    web::JsonConfig::default()
                        .limit(body_limit)
                        .error_handler(errors::json_error),
                )
                .app_data(web::PayloadConfig::default().limit(body_limit))
                .app_data(web::PathConfig::default().error_handler(errors::path_error))
                .app_data(web::QueryConfig::default().error_handler(errors::query_error))
                // Before the /api/v1 scope, which would otherwise claim the path.
                .route("/api/v1/openapi.json", web::get().to(openapi_json))
                .map(|app| app.service(http::dashboard::scope()));
            http::routes(app)
                .default_service(web::to(http::fallback::no_route))
                .into_app()
                .wrap(actix_web::middleware::from_fn(http::admission::admit))
                // Compressed bodies are decoded here, the limit applied while decoding.
                .wrap_fn(move |mut req, srv| {
                    decompress::decode_request_body(&mut req, body_limit);
                    srv.call(req)
                })
                .wrap(ErrorHandlers::new().default_handler(errors::normalize_error_body))
                .wrap_fn(move |req, srv| {
                    let start = Instant::now();
                    let method = req.method().clone();
                    let fut = srv.call(req);
                    let metrics = metrics.clone();
                    async move {
                        let res = fut.await?;
                        let route = res
                            .request()
                            .match_pattern()
                            .unwrap_or_else(|| "unmatched".to_owned());
                        let elapsed = start.elapsed();
                        metrics.observe(&method, &route, res.status(), elapsed);
                        // Route pattern and status only: paths and bodies may hold personal data.
                        tracing::info!(
                            method = crate::http::metrics::method_label(&method),
                            route = %route,
                            status = res.status().as_u16(),
                            elapsed_ms = elapsed.as_secs_f64() * 1000.0,
                            "request"
                        );
                        Ok(res)
                    }
                })
                .wrap(Compress::default())
                .wrap_fn(|req, srv| {
                    let id = req.extensions().get::<RequestId>().copied();
                    let fut = srv.call(req);
                    async move {
                        let mut res = fut.await?;
                        if let Some(value) = id.and_then(|id| HeaderValue::from_str(&id.to_string()).ok()) {
                            res.headers_mut()
                                .insert(HeaderName::from_static("x-request-id"), value);
                        }
                        Ok(res)
                    }
                })
                .wrap(TracingLogger::<crate::telemetry::PrivateRootSpan>::new())
        })
        // Responses go out as soon as they are written: with Nagle's algorithm a response written
        // in two segments waited for the client's delayed ACK (~40 ms per request).
        .on_connect(|conn, _| {
            if let Some(tcp) = conn.downcast_ref::<actix_web::rt::net::TcpStream>() {
                let _ = tcp.set_nodelay(true);
            }
        })
        .keep_alive(config.keep_alive)
        .listen(listener)
        .map_err(|e| e.to_string())?
        .shutdown_timeout(10);
        let workers = config
            .workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
            .max(1);
        // Database work runs on blocking threads; more of them than pooled connections only
        // wait, and each idle one keeps its own malloc arena (hundreds of MB with 256 phones).
        let blocking = pool_size.div_ceil(workers).max(2);
        server = server.workers(workers).worker_max_blocking_threads(blocking);
        if !config.handle_signals {
            server = server.disable_signals();
        }
        Ok(Self {
            port,
            server: server.run(),
            pool,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pool(&self) -> &DbPool {
        &self.pool
    }

    /// A handle to stop the server gracefully.
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Serves until stopped; SIGTERM/SIGINT stop it gracefully, letting requests in flight finish.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}

/// Folds counter deltas into the roll-ups every few seconds. Reads are exact without it; it
/// only keeps the unfolded tail short. Safe with several processes (one folds at a time).
fn spawn_fold(state: web::Data<AppState>, interval_secs: u64) {
    actix_web::rt::spawn(async move {
        let mut tick = actix_web::rt::time::interval(std::time::Duration::from_secs(interval_secs.max(1)));
        loop {
            tick.tick().await;
            if let Err(e) = state.db(crate::aggregates::fold::fold).await {
                tracing::warn!(error = %e, "fold failed; will retry");
            }
        }
    });
}

async fn openapi_json(doc: web::Data<utoipa::openapi::OpenApi>) -> HttpResponse {
    HttpResponse::Ok().json(doc.get_ref())
}
