//! Structured logs. Logs carry request ids, routes, statuses and timings, never record fields:
//! handlers must not log request bodies (they hold names of real people).

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

/// Installs the global subscriber: `HAMLET_LOG` (or `RUST_LOG`) filters, default `info`;
/// `HAMLET_LOG_FORMAT=json` switches to one JSON object per line. Safe to call twice.
pub fn init() {
    let filter = std::env::var("HAMLET_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".to_owned());
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
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
