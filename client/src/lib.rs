//! The reference Hamlet client: a typed, blocking HTTP API over the shared protocol types.
//!
//! The offline store, outbox and sync loop build on this (see the project's issues); today it
//! covers authentication, units, users and devices.

use hamlet_shared::{
    DeviceList, ErrorBody, Health, LoginRequest, NewUnit, NewUser, RefreshRequest, TokenResponse, Unit,
    UnitId, UnitList, UnitWithPath, UserId, UserInfo,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

/// A failed call: the server's error body, or no usable answer at all.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("HTTP {status}: {} ({})", .body.error.message, .body.error.code)]
    Status { status: u16, body: ErrorBody },
    #[error("transport: {0}")]
    Transport(String),
}

impl ApiError {
    /// The HTTP status, when the server answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Status { status, .. } => Some(*status),
            Self::Transport(_) => None,
        }
    }
}

/// A connection to one Hamlet server, optionally holding an access token.
#[derive(Clone)]
pub struct Api {
    base: String,
    agent: ureq::Agent,
    token: Option<String>,
}

impl Api {
    /// `base` is the server's root URL, e.g. `http://127.0.0.1:8080`.
    pub fn new(base: impl Into<String>) -> Self {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        Self {
            base: base.into().trim_end_matches('/').to_owned(),
            agent,
            token: None,
        }
    }

    /// The same connection using `token` as its bearer token.
    pub fn with_token(&self, token: impl Into<String>) -> Self {
        Self {
            token: Some(token.into()),
            ..self.clone()
        }
    }

    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn finish<T: DeserializeOwned>(
        res: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<T, ApiError> {
        let mut res = res.map_err(|e| ApiError::Transport(e.to_string()))?;
        let status = res.status().as_u16();
        if (200..300).contains(&status) {
            let body = if status == 204 {
                "null".to_owned()
            } else {
                res.body_mut()
                    .read_to_string()
                    .map_err(|e| ApiError::Transport(e.to_string()))?
            };
            serde_json::from_str(&body).map_err(|e| ApiError::Transport(format!("unexpected body: {e}")))
        } else {
            let body = res
                .body_mut()
                .read_json::<ErrorBody>()
                .map_err(|e| ApiError::Transport(format!("HTTP {status} without an error body: {e}")))?;
            Err(ApiError::Status { status, body })
        }
    }

    fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ApiError> {
        let mut req = self.agent.get(&self.url(path));
        if let Some(t) = &self.token {
            req = req.header("Authorization", &format!("Bearer {t}"));
        }
        Self::finish(req.call())
    }

    fn post<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: Option<&B>) -> Result<T, ApiError> {
        let mut req = self.agent.post(&self.url(path));
        if let Some(t) = &self.token {
            req = req.header("Authorization", &format!("Bearer {t}"));
        }
        match body {
            Some(b) => Self::finish(req.send_json(b)),
            None => Self::finish(req.send_empty()),
        }
    }

    pub fn health(&self) -> Result<Health, ApiError> {
        self.get("/healthz")
    }

    pub fn login(
        &self,
        username: &str,
        password: &str,
        device_id: Uuid,
        device_name: Option<&str>,
    ) -> Result<TokenResponse, ApiError> {
        let body = LoginRequest {
            username: username.to_owned(),
            password: password.to_owned(),
            device_id,
            device_name: device_name.map(str::to_owned),
        };
        self.post("/api/v1/auth/login", Some(&body))
    }

    pub fn refresh(&self, refresh_token: &str) -> Result<TokenResponse, ApiError> {
        self.post(
            "/api/v1/auth/refresh",
            Some(&RefreshRequest {
                refresh_token: refresh_token.to_owned(),
            }),
        )
    }

    pub fn logout(&self) -> Result<(), ApiError> {
        self.post::<(), ()>("/api/v1/auth/logout", None)
    }

    pub fn unit(&self, id: UnitId) -> Result<UnitWithPath, ApiError> {
        self.get(&format!("/api/v1/units/{id}"))
    }

    pub fn children(&self, id: UnitId) -> Result<UnitList, ApiError> {
        self.get(&format!("/api/v1/units/{id}/children"))
    }

    pub fn create_unit(&self, unit: &NewUnit) -> Result<Unit, ApiError> {
        self.post("/api/v1/units", Some(unit))
    }

    pub fn create_user(&self, user: &NewUser) -> Result<UserInfo, ApiError> {
        self.post("/api/v1/users", Some(user))
    }

    pub fn disable_user(&self, id: UserId) -> Result<(), ApiError> {
        self.post::<(), ()>(&format!("/api/v1/users/{id}/disable"), None)
    }

    pub fn enable_user(&self, id: UserId) -> Result<(), ApiError> {
        self.post::<(), ()>(&format!("/api/v1/users/{id}/enable"), None)
    }

    pub fn devices(&self) -> Result<DeviceList, ApiError> {
        self.get("/api/v1/devices")
    }

    pub fn revoke_device(&self, device_id: Uuid) -> Result<(), ApiError> {
        self.post::<(), ()>(&format!("/api/v1/devices/{device_id}/revoke"), None)
    }
}
