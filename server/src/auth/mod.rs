//! Authentication (who is calling) and authorization (may they): contract §3–§4.

pub mod activity;
pub mod authz;
pub mod password;
pub mod service;
pub mod tokens;

use crate::error::AppError;
use crate::state::AppState;
use actix_web::{FromRequest, HttpRequest, dev::Payload, http::header, web};
use hamlet_shared::{Role, UnitId, UserId};
use std::future::Future;
use std::pin::Pin;
use uuid::Uuid;

pub use authz::{Action, authorize, require_role};

/// Login throttling: failures per username and per client address within a sliding window.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct LoginLimits {
    /// Failed logins allowed per username within the window.
    #[arg(
        long = "login-max-failures-per-user",
        env = "HAMLET_LOGIN_MAX_FAILURES_PER_USER",
        default_value_t = 5
    )]
    pub per_user: u32,
    /// Failed logins allowed per client address within the window.
    #[arg(
        long = "login-max-failures-per-ip",
        env = "HAMLET_LOGIN_MAX_FAILURES_PER_IP",
        default_value_t = 50
    )]
    pub per_ip: u32,
    /// Length of the window, in seconds.
    #[arg(
        long = "login-window-secs",
        env = "HAMLET_LOGIN_WINDOW_SECS",
        default_value_t = 900
    )]
    pub window_secs: u64,
}

impl Default for LoginLimits {
    fn default() -> Self {
        Self {
            per_user: 5,
            per_ip: 50,
            window_secs: 900,
        }
    }
}

/// Everything authentication needs at run time.
#[derive(Clone)]
pub struct AuthSettings {
    pub keys: tokens::TokenKeys,
    pub password: password::PasswordParams,
    pub limits: LoginLimits,
}

/// The authenticated caller of a request: a live session of an enabled user.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user_id: UserId,
    pub username: String,
    pub role: Role,
    /// Units whose subtrees the user may act in.
    pub scope: Vec<UnitId>,
    pub session_id: String,
    pub device_id: Uuid,
}

impl Principal {
    /// Scope units as stored (text ids), for queries.
    pub fn scope_ids(&self) -> Vec<String> {
        self.scope.iter().map(ToString::to_string).collect()
    }
}

fn bearer_token(req: &HttpRequest) -> Result<String, AppError> {
    let value = req
        .headers()
        .get(header::AUTHORIZATION)
        .ok_or_else(|| AppError::Unauthorized("missing Authorization: Bearer token".to_owned()))?;
    let value = value
        .to_str()
        .map_err(|_| AppError::Unauthorized("malformed Authorization header".to_owned()))?;
    match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() => {
            Ok(token.trim().to_owned())
        }
        _ => Err(AppError::Unauthorized(
            "Authorization must be `Bearer <access_token>`".to_owned(),
        )),
    }
}

/// Extracting a `Principal` authenticates the request: a valid token whose session is still
/// open in the database (so logout and revocation act at once, on every process).
impl FromRequest for Principal {
    type Error = AppError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, AppError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let token = bearer_token(req);
        Box::pin(async move {
            let state = state.ok_or_else(|| AppError::Internal("application state missing".to_owned()))?;
            let claims = state.auth.keys.verify_access(&token?)?;
            state.db(move |conn| service::authenticate(conn, &claims)).await
        })
    }
}
