//! A typed, blocking HTTP API over the shared protocol types: one call, one request, no retries
//! (those live in `retry` and `sync`).

use crate::error::{Error, Result};
use hamlet_shared::sync::{Mutation, PullResponse, PushBatch, PushRequest, PushResponse};
use hamlet_shared::{
    DeviceList, ErrorBody, ErrorCode, ErrorPayload, Health, LoginRequest, NewUnit, NewUser, RefreshRequest,
    TokenResponse, Unit, UnitId, UnitList, UnitWithPath, UserId, UserInfo,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::io::Write;
use std::time::Duration;
use uuid::Uuid;

/// Kept for the callers that named the old HTTP-only error type.
pub type ApiError = Error;

/// A connection to one Hamlet server, optionally holding an access token.
#[derive(Clone)]
pub struct Api {
    base: String,
    agent: ureq::Agent,
    token: Option<String>,
    gzip_requests: bool,
}

/// Why a request failed before any answer, sorted by whether it can have reached the server.
fn transport(e: ureq::Error) -> Error {
    use ureq::Timeout;
    let never_sent = match &e {
        ureq::Error::HostNotFound | ureq::Error::ConnectionFailed => true,
        ureq::Error::Timeout(Timeout::Connect | Timeout::Resolve) => true,
        ureq::Error::Io(io) => matches!(
            io.kind(),
            std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::AddrNotAvailable
        ),
        _ => false,
    };
    if never_sent {
        Error::Unreachable(e.to_string())
    } else {
        Error::Transport(e.to_string())
    }
}

/// `Retry-After` in seconds; the HTTP-date form is not used by Hamlet and reads as absent.
fn retry_after(res: &ureq::http::Response<ureq::Body>) -> Option<Duration> {
    res.headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

impl Api {
    /// `base` is the server's root URL, e.g. `http://127.0.0.1:8080`.
    pub fn new(base: impl Into<String>) -> Self {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            // A dead link must fail, not hang: the outbox keeps everything for the next try.
            .timeout_connect(Some(Duration::from_secs(15)))
            .timeout_global(Some(Duration::from_secs(120)))
            .build()
            .into();
        Self {
            base: base.into().trim_end_matches('/').to_owned(),
            agent,
            token: None,
            gzip_requests: true,
        }
    }

    /// The same connection using `token` as its bearer token.
    pub fn with_token(&self, token: impl Into<String>) -> Self {
        Self {
            token: Some(token.into()),
            ..self.clone()
        }
    }

    /// Whether push bodies are sent gzip-compressed (the default).
    pub fn with_gzip_requests(self, on: bool) -> Self {
        Self {
            gzip_requests: on,
            ..self
        }
    }

    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// The server's root URL, without a trailing slash.
    pub fn base(&self) -> &str {
        &self.base
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn finish<T: DeserializeOwned>(res: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Result<T> {
        let mut res = res.map_err(transport)?;
        let status = res.status().as_u16();
        if (200..300).contains(&status) {
            let body = if status == 204 {
                "null".to_owned()
            } else {
                // ureq asks for gzip and inflates the answer itself.
                res.body_mut()
                    .with_config()
                    .limit(256 * 1024 * 1024)
                    .read_to_string()
                    .map_err(transport)?
            };
            serde_json::from_str(&body).map_err(|e| Error::Transport(format!("unexpected body: {e}")))
        } else {
            let retry_after = retry_after(&res);
            let text = res.body_mut().read_to_string().unwrap_or_default();
            // A proxy in front of the server may answer without the contract's body: keep the
            // status, which is what retries are decided on.
            let body = serde_json::from_str::<ErrorBody>(&text).unwrap_or_else(|_| ErrorBody {
                error: ErrorPayload {
                    code: ErrorCode::Internal,
                    message: format!("HTTP {status} without an error body"),
                    details: Vec::new(),
                },
            });
            Err(Error::Status {
                status,
                body,
                retry_after,
            })
        }
    }

    fn authorize<B>(&self, mut req: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        if let Some(t) = &self.token {
            req = req.header("Authorization", &format!("Bearer {t}"));
        }
        req
    }

    fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        Self::finish(self.authorize(self.agent.get(&self.url(path))).call())
    }

    fn post<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: Option<&B>) -> Result<T> {
        let req = self.authorize(self.agent.post(&self.url(path)));
        match body {
            Some(b) => Self::finish(req.send_json(b)),
            None => Self::finish(req.send_empty()),
        }
    }

    pub fn health(&self) -> Result<Health> {
        self.get("/healthz")
    }

    pub fn login(
        &self,
        username: &str,
        password: &str,
        device_id: Uuid,
        device_name: Option<&str>,
    ) -> Result<TokenResponse> {
        let body = LoginRequest {
            username: username.to_owned(),
            password: password.to_owned(),
            device_id,
            device_name: device_name.map(str::to_owned),
        };
        self.post("/api/v1/auth/login", Some(&body))
    }

    pub fn refresh(&self, refresh_token: &str) -> Result<TokenResponse> {
        self.post(
            "/api/v1/auth/refresh",
            Some(&RefreshRequest {
                refresh_token: refresh_token.to_owned(),
            }),
        )
    }

    pub fn logout(&self) -> Result<()> {
        self.post::<(), ()>("/api/v1/auth/logout", None)
    }

    /// `POST /api/v1/sync/push`, the body gzip-compressed unless turned off.
    pub fn push(&self, request: &PushRequest) -> Result<PushResponse> {
        self.push_body(request)
    }

    /// [`Api::push`] of a client's own mutations, serialised straight from them.
    pub fn push_mutations(&self, device_id: Uuid, mutations: &[Mutation]) -> Result<PushResponse> {
        self.push_body(&PushBatch { device_id, mutations })
    }

    fn push_body(&self, body: &impl Serialize) -> Result<PushResponse> {
        let json = serde_json::to_vec(body).map_err(|e| Error::Invalid(format!("push body: {e}")))?;
        let req = self
            .authorize(self.agent.post(&self.url("/api/v1/sync/push")))
            .header("Content-Type", "application/json");
        if self.gzip_requests {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            gz.write_all(&json)
                .and_then(|()| gz.finish())
                .map_err(|e| Error::Invalid(format!("compressing the push body: {e}")))
                .and_then(|body| Self::finish(req.header("Content-Encoding", "gzip").send(&body[..])))
        } else {
            Self::finish(req.send(&json[..]))
        }
    }

    /// `GET /api/v1/sync/pull`: one page after `cursor` (from the beginning without one).
    pub fn pull(&self, cursor: Option<&str>, limit: u32) -> Result<PullResponse> {
        let mut req = self
            .authorize(self.agent.get(&self.url("/api/v1/sync/pull")))
            .query("limit", limit.to_string());
        if let Some(c) = cursor {
            req = req.query("cursor", c);
        }
        Self::finish(req.call())
    }

    pub fn unit(&self, id: UnitId) -> Result<UnitWithPath> {
        self.get(&format!("/api/v1/units/{id}"))
    }

    pub fn children(&self, id: UnitId) -> Result<UnitList> {
        self.get(&format!("/api/v1/units/{id}/children"))
    }

    pub fn create_unit(&self, unit: &NewUnit) -> Result<Unit> {
        self.post("/api/v1/units", Some(unit))
    }

    pub fn create_user(&self, user: &NewUser) -> Result<UserInfo> {
        self.post("/api/v1/users", Some(user))
    }

    pub fn disable_user(&self, id: UserId) -> Result<()> {
        self.post::<(), ()>(&format!("/api/v1/users/{id}/disable"), None)
    }

    pub fn enable_user(&self, id: UserId) -> Result<()> {
        self.post::<(), ()>(&format!("/api/v1/users/{id}/enable"), None)
    }

    pub fn devices(&self) -> Result<DeviceList> {
        self.get("/api/v1/devices")
    }

    pub fn revoke_device(&self, device_id: Uuid) -> Result<()> {
        self.post::<(), ()>(&format!("/api/v1/devices/{device_id}/revoke"), None)
    }
}
