//! Structured logs. Logs carry request ids, routes, statuses and timings, never record fields:
//! handlers must not log request bodies (they hold names of real people).

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

/// Installs the global subscriber: `HAMLET_LOG` (or `RUST_LOG`) filters, default `info`
/// (actix-web's extractor messages stay at `info` unless the filter names `actix_web`);
/// `HAMLET_LOG_FORMAT=json` switches to one JSON object per line. Safe to call twice.
pub fn init() {
    let filter = std::env::var("HAMLET_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".to_owned());
    let explicit_actix = filter.contains("actix_web");
    let mut filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    if !explicit_actix {
        // actix-web's extractors log the raw request path of a request they refuse at DEBUG;
        // `HAMLET_LOG=debug` must not put client-chosen paths in the logs unless asked by name.
        filter = filter.add_directive("actix_web::types=info".parse().expect("static directive"));
    }
    let json = std::env::var("HAMLET_LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let registry = tracing_subscriber::registry().with(filter);
    let _ = if json {
        registry
            .with(fmt::layer().json().with_writer(std::io::stderr))
            .try_init()
    } else {
        registry
            .with(fmt::layer().with_ansi(ansi).with_writer(std::io::stderr))
            .try_init()
    };
}

/// The root span of every request. It names the route pattern, the method and the request id,
/// and records only the response status: tracing-actix-web's default span also carries the
/// raw path and query, the user agent, the client address and the error's `Display`/`Debug`
/// (a JSON error quotes the value it could not read: a name, say), and its default
/// `emit_event_on_error` feature logs that `Debug` at WARN for every 4xx (turned off in the
/// workspace manifest).
pub struct PrivateRootSpan;

impl tracing_actix_web::RootSpanBuilder for PrivateRootSpan {
    fn on_request_start(request: &actix_web::dev::ServiceRequest) -> tracing::Span {
        use actix_web::HttpMessage;
        let route = request.match_pattern().unwrap_or_else(|| "unmatched".to_owned());
        let request_id = request
            .extensions()
            .get::<tracing_actix_web::RequestId>()
            .map(ToString::to_string)
            .unwrap_or_default();
        tracing::info_span!(
            "HTTP request",
            http.method = crate::http::metrics::method_label(request.method()),
            http.route = %route,
            request_id = %request_id,
            http.status_code = tracing::field::Empty,
        )
    }

    fn on_request_end<B: actix_web::body::MessageBody>(
        span: tracing::Span,
        outcome: &Result<actix_web::dev::ServiceResponse<B>, actix_web::Error>,
    ) {
        let status = match outcome {
            Ok(response) => response.status(),
            Err(error) => error.as_response_error().status_code(),
        };
        span.record("http.status_code", status.as_u16());
    }
}
