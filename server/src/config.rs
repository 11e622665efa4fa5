//! Runtime configuration of `hamlet serve`, from flags and `HAMLET_*` environment variables.

use crate::aggregates::AggregateSettings;
use crate::auth::LoginLimits;
use crate::auth::password::PasswordParams;
use crate::db::PoolOptions;
use crate::http::dashboard::session::DashboardSettings;
use crate::sync::SyncSettings;
use std::time::Duration;

/// Default request body limit (decompressed), from the contract: 8 MiB.
pub const DEFAULT_BODY_LIMIT: usize = 8 * 1024 * 1024;

/// Shortest accepted JWT secret, in bytes (HS256 wants at least the hash length).
pub const MIN_SECRET_LEN: usize = 32;

#[derive(Debug, clap::Args, Clone)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "HAMLET_BIND", default_value = "127.0.0.1:8080")]
    pub bind: String,
    /// Secret that signs access tokens (at least 32 bytes). Required unless --dev.
    #[arg(long, env = "HAMLET_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// Development mode: generates a throwaway JWT secret when none is set (tokens die with the process).
    #[arg(long)]
    pub dev: bool,
    /// Largest accepted request body in bytes, after decompression.
    #[arg(long, env = "HAMLET_BODY_LIMIT", default_value_t = DEFAULT_BODY_LIMIT)]
    pub body_limit: usize,
    /// Database connections per process.
    #[arg(long, env = "HAMLET_DB_POOL_SIZE", default_value_t = 10)]
    pub db_pool_size: u32,
    /// Seconds a request waits for a database connection before it gets 503.
    #[arg(long, env = "HAMLET_DB_TIMEOUT_SECS", default_value_t = 5)]
    pub db_timeout_secs: u64,
    /// HTTP worker threads (default: one per core).
    #[arg(long, env = "HAMLET_WORKERS")]
    pub workers: Option<usize>,
    /// Seconds an idle connection is kept open for the client's next request. Long, because a
    /// phone on 2G sends its next request seconds after the server wrote the last answer (the
    /// answer takes that long to arrive), and a new connection costs it a round trip of several
    /// hundred ms.
    #[arg(long, env = "HAMLET_KEEP_ALIVE_SECS", default_value_t = 75)]
    pub keep_alive_secs: u64,
    /// Lifetime of access tokens, in seconds.
    #[arg(long, env = "HAMLET_ACCESS_TTL_SECS", default_value_t = 900)]
    pub access_ttl_secs: u64,
    /// Lifetime of refresh tokens, in seconds (phones may stay offline for weeks).
    #[arg(long, env = "HAMLET_REFRESH_TTL_SECS", default_value_t = 60 * 24 * 3600)]
    pub refresh_ttl_secs: u64,
    #[command(flatten)]
    pub password: PasswordParams,
    #[command(flatten)]
    pub login_limits: LoginLimits,
    #[command(flatten)]
    pub sync: SyncSettings,
    #[command(flatten)]
    pub aggregates: AggregateSettings,
    #[command(flatten)]
    pub dashboard: DashboardSettings,
}

/// The JWT signing secret. Its Debug output never shows the value.
#[derive(Clone)]
pub struct JwtSecret(Vec<u8>);

impl JwtSecret {
    pub fn new(bytes: Vec<u8>) -> Result<Self, String> {
        if bytes.len() < MIN_SECRET_LEN {
            return Err(format!(
                "HAMLET_JWT_SECRET must be at least {MIN_SECRET_LEN} bytes"
            ));
        }
        Ok(Self(bytes))
    }

    /// A random secret for `--dev`.
    pub fn generate() -> Self {
        use rand::RngCore;
        let mut bytes = vec![0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for JwtSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JwtSecret(***)")
    }
}

/// Everything the server needs to start.
#[derive(Debug, Clone)]
pub struct Config {
    pub database_url: String,
    pub bind: String,
    pub jwt_secret: JwtSecret,
    pub body_limit: usize,
    pub pool: PoolOptions,
    pub workers: Option<usize>,
    pub keep_alive: Duration,
    pub access_ttl_secs: u64,
    pub refresh_ttl_secs: u64,
    pub password: PasswordParams,
    pub login_limits: LoginLimits,
    pub sync: SyncSettings,
    pub aggregates: AggregateSettings,
    pub dashboard: DashboardSettings,
    /// Whether the process owns SIGINT/SIGTERM (off when several servers share a test process).
    pub handle_signals: bool,
}

impl Config {
    /// Resolves flags into a config; refuses to start without a secret outside `--dev`.
    pub fn from_args(database_url: String, args: ServeArgs) -> Result<Self, String> {
        let jwt_secret = match (args.jwt_secret, args.dev) {
            (Some(s), _) => JwtSecret::new(s.into_bytes())?,
            (None, true) => {
                tracing::warn!(
                    "--dev: using a generated JWT secret; tokens stop working when the process \
                     restarts. Set HAMLET_JWT_SECRET in production."
                );
                JwtSecret::generate()
            }
            (None, false) => {
                return Err("HAMLET_JWT_SECRET is not set: set it (at least 32 random bytes, \
                     e.g. `openssl rand -hex 32`) or run with --dev"
                    .to_owned());
            }
        };
        Ok(Self {
            database_url,
            bind: args.bind,
            jwt_secret,
            body_limit: args.body_limit,
            pool: PoolOptions {
                max_size: args.db_pool_size.max(1),
                connection_timeout: Duration::from_secs(args.db_timeout_secs.max(1)),
            },
            workers: args.workers,
            keep_alive: Duration::from_secs(args.keep_alive_secs.max(1)),
            access_ttl_secs: args.access_ttl_secs.max(1),
            refresh_ttl_secs: args.refresh_ttl_secs.max(1),
            password: args.password,
            login_limits: args.login_limits,
            sync: args.sync,
            aggregates: args.aggregates,
            dashboard: args.dashboard,
            handle_signals: true,
        })
    }
}
