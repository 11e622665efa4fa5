//! Browser sessions of the dashboard: a signed cookie naming a server-side session row (the same
//! rows the API's tokens use, so logout, device revocation and disabling a user end it at once),
//! and CSRF tokens tied to that session.
//!
//! Cookie `hamlet_session` = `SESSION_ID.USER_ID.ISSUED_SECS.MAC`, where MAC is an HMAC-SHA256
//! under a key derived from `HAMLET_JWT_SECRET`. The MAC only stops forgery; whether the session
//! is still open is asked of the database on every request. A form's CSRF token is the HMAC of
//! the session id (synchronizer token without storage); the login form, which has no session
//! yet, uses a random `hamlet_login` cookie the same way (signed double submit).

use crate::auth::tokens::Claims;
use crate::config::JwtSecret;
use actix_web::HttpRequest;
use actix_web::cookie::{Cookie, SameSite, time::Duration as CookieDuration};
use base64::Engine;
use ring::hmac;
use std::net::IpAddr;

pub const SESSION_COOKIE: &str = "hamlet_session";
pub const LOGIN_COOKIE: &str = "hamlet_login";
pub const BROWSER_COOKIE: &str = "hamlet_browser";
pub const LANG_COOKIE: &str = "hamlet_lang";

/// When the session cookie gets the `Secure` attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CookieSecure {
    /// When the request came through a trusted proxy that says `X-Forwarded-Proto: https`.
    Auto,
    /// Always (the server is only reached over HTTPS).
    Always,
    /// Never (plain HTTP on a LAN).
    Never,
}

/// Dashboard settings of `hamlet serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct DashboardSettings {
    /// When dashboard cookies are marked Secure: auto (behind a trusted TLS proxy), always, never.
    #[arg(
        long = "cookie-secure",
        env = "HAMLET_COOKIE_SECURE",
        value_enum,
        default_value = "auto"
    )]
    pub cookie_secure: CookieSecure,
    /// Addresses of reverse proxies whose `X-Forwarded-Proto` is believed (comma-separated).
    #[arg(
        long = "trusted-proxies",
        env = "HAMLET_TRUSTED_PROXIES",
        value_delimiter = ',',
        default_value = "127.0.0.1,::1"
    )]
    pub trusted_proxies: Vec<IpAddr>,
    /// Hours a dashboard login lasts (the session also ends on logout, revocation or disabling).
    #[arg(
        long = "dashboard-session-hours",
        env = "HAMLET_DASHBOARD_SESSION_HOURS",
        default_value_t = 12
    )]
    pub session_hours: u64,
}

impl Default for DashboardSettings {
    fn default() -> Self {
        Self {
            cookie_secure: CookieSecure::Auto,
            trusted_proxies: vec![
                IpAddr::from([127, 0, 0, 1]),
                IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]),
            ],
            session_hours: 12,
        }
    }
}

/// The dashboard's signing key, derived from the JWT secret so no other secret is needed.
#[derive(Clone)]
pub struct CookieKey(hmac::Key);

impl CookieKey {
    pub fn new(secret: &JwtSecret) -> Self {
        let master = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
        let derived = hmac::sign(&master, b"hamlet dashboard cookie key v1");
        Self(hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref()))
    }

    fn mac(&self, purpose: &str, value: &str) -> String {
        let tag = hmac::sign(&self.0, format!("{purpose}\0{value}").as_bytes());
        b64(tag.as_ref())
    }

    fn check(&self, purpose: &str, value: &str, mac: &str) -> bool {
        let Ok(tag) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(mac) else {
            return false;
        };
        hmac::verify(&self.0, format!("{purpose}\0{value}").as_bytes(), &tag).is_ok()
    }

    /// The cookie value for a session.
    pub fn session_value(&self, session_id: &str, user_id: &str, issued_secs: i64) -> String {
        let body = format!("{session_id}.{user_id}.{issued_secs}");
        let mac = self.mac("session", &body);
        format!("{body}.{mac}")
    }

    /// The claims named by a genuine, unexpired session cookie value.
    pub fn open_session(&self, value: &str, now_secs: i64, max_age_secs: i64) -> Option<Claims> {
        let (body, mac) = value.rsplit_once('.')?;
        if !self.check("session", body, mac) {
            return None;
        }
        let mut parts = body.split('.');
        let (sid, uid, iat) = (parts.next()?, parts.next()?, parts.next()?.parse::<i64>().ok()?);
        if parts.next().is_some() || now_secs - iat > max_age_secs || iat > now_secs + 60 {
            return None;
        }
        Some(Claims {
            sub: uid.to_owned(),
            sid: sid.to_owned(),
            iat,
            exp: iat + max_age_secs,
        })
    }

    /// The CSRF token of every form of a session.
    pub fn csrf_for_session(&self, session_id: &str) -> String {
        self.mac("csrf", session_id)
    }

    pub fn check_session_csrf(&self, session_id: &str, token: &str) -> bool {
        self.check("csrf", session_id, token)
    }

    /// The CSRF token of the login form, tied to the browser's `hamlet_login` nonce.
    pub fn csrf_for_login(&self, nonce: &str) -> String {
        self.mac("login", nonce)
    }

    pub fn check_login_csrf(&self, nonce: &str, token: &str) -> bool {
        !nonce.is_empty() && self.check("login", nonce, token)
    }
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// 128 random bits, URL-safe base64.
pub fn random_token() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    b64(&bytes)
}

impl DashboardSettings {
    /// Whether this request reached us over TLS, as far as we can trust anyone to say.
    pub fn secure(&self, req: &HttpRequest) -> bool {
        match self.cookie_secure {
            CookieSecure::Always => true,
            CookieSecure::Never => false,
            CookieSecure::Auto => {
                let from_proxy = req
                    .peer_addr()
                    .is_some_and(|a| self.trusted_proxies.contains(&a.ip()));
                from_proxy
                    && req
                        .headers()
                        .get("x-forwarded-proto")
                        .and_then(|v| v.to_str().ok())
                        .is_some_and(|v| {
                            v.split(',')
                                .next()
                                .unwrap_or("")
                                .trim()
                                .eq_ignore_ascii_case("https")
                        })
            }
        }
    }

    /// A cookie with the dashboard's attributes: HttpOnly, SameSite=Strict, path `/dashboard`,
    /// Secure when [`Self::secure`]; `max_age` None for a browser-session cookie.
    pub fn cookie(
        &self,
        req: &HttpRequest,
        name: &'static str,
        value: String,
        max_age: Option<CookieDuration>,
    ) -> Cookie<'static> {
        let mut c = Cookie::build(name, value)
            .path("/dashboard")
            .http_only(true)
            .same_site(SameSite::Strict)
            .secure(self.secure(req))
            .finish();
        if let Some(age) = max_age {
            c.set_max_age(age);
        }
        c
    }

    /// A cookie that deletes `name`.
    pub fn removal(&self, req: &HttpRequest, name: &'static str) -> Cookie<'static> {
        let mut c = self.cookie(req, name, String::new(), Some(CookieDuration::ZERO));
        c.make_removal();
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> CookieKey {
        CookieKey::new(&JwtSecret::new(vec![9u8; 32]).unwrap())
    }

    #[test]
    fn session_cookie_roundtrip_and_forgery() {
        let k = key();
        let v = k.session_value("sid-1", "uid-1", 1000);
        let c = k.open_session(&v, 1010, 3600).expect("valid");
        assert_eq!((c.sid.as_str(), c.sub.as_str()), ("sid-1", "uid-1"));
        assert!(k.open_session(&v, 1000 + 3601, 3600).is_none(), "expired");
        let forged = v.replace("sid-1", "sid-2");
        assert!(k.open_session(&forged, 1010, 3600).is_none());
        let other = CookieKey::new(&JwtSecret::new(vec![8u8; 32]).unwrap());
        assert!(other.open_session(&v, 1010, 3600).is_none());
        assert!(k.open_session("garbage", 1010, 3600).is_none());
    }

    #[test]
    fn csrf_tokens_are_tied_to_their_session() {
        let k = key();
        let t = k.csrf_for_session("s1");
        assert!(k.check_session_csrf("s1", &t));
        assert!(!k.check_session_csrf("s2", &t));
        assert!(!k.check_session_csrf("s1", ""));
        let l = k.csrf_for_login("nonce");
        assert!(k.check_login_csrf("nonce", &l));
        assert!(!k.check_login_csrf("", &l));
        assert!(!k.check_session_csrf("nonce", &l), "purposes differ");
    }
}
