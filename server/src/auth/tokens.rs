//! Access tokens (HS256 JWT, algorithm pinned) and opaque refresh tokens (stored hashed).

use crate::config::JwtSecret;
use crate::error::AppError;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};

/// Claims of an access token. `sid` names the session, checked on every request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub sid: String,
    pub iat: i64,
    pub exp: i64,
}

/// Keys and lifetimes for issuing and checking tokens.
#[derive(Clone)]
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    pub access_ttl_secs: u64,
    pub refresh_ttl_secs: u64,
}

/// Seconds of clock difference tolerated when checking `exp`.
const LEEWAY_SECS: u64 = 5;

impl TokenKeys {
    pub fn new(secret: &JwtSecret, access_ttl_secs: u64, refresh_ttl_secs: u64) -> Self {
        // Only HS256 is accepted: a token naming another algorithm (or `none`) is refused.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = LEEWAY_SECS;
        validation.set_required_spec_claims(&["exp", "iat", "sub"]);
        Self {
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            validation,
            access_ttl_secs,
            refresh_ttl_secs,
        }
    }

    /// A signed access token for one session.
    pub fn issue_access(&self, user_id: &str, session_id: &str, now_secs: i64) -> Result<String, AppError> {
        let claims = Claims {
            sub: user_id.to_owned(),
            sid: session_id.to_owned(),
            iat: now_secs,
            exp: now_secs + self.access_ttl_secs as i64,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| AppError::Internal(format!("token signing failed: {e}")))
    }

    /// The claims of a valid, unexpired token signed with our key.
    pub fn verify_access(&self, token: &str) -> Result<Claims, AppError> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| {
                use jsonwebtoken::errors::ErrorKind;
                let message = match e.kind() {
                    ErrorKind::ExpiredSignature => "access token expired",
                    _ => "invalid access token",
                };
                AppError::Unauthorized(message.to_owned())
            })
    }
}

/// A new refresh token: 256 random bits, URL-safe base64. Only its hash is stored.
pub fn new_refresh_token() -> Result<String, AppError> {
    let mut bytes = [0u8; 32];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| AppError::Internal("system random generator failed".to_owned()))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// SHA-256 of a refresh token, hex: what the database keeps.
pub fn hash_refresh_token(token: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> TokenKeys {
        TokenKeys::new(&JwtSecret::new(vec![7u8; 32]).unwrap(), 900, 3600)
    }

    #[test]
    fn roundtrip_and_rejections() {
        let k = keys();
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let t = k.issue_access("u1", "s1", now).unwrap();
        let c = k.verify_access(&t).unwrap();
        assert_eq!((c.sub.as_str(), c.sid.as_str()), ("u1", "s1"));

        let expired = k.issue_access("u1", "s1", now - 10_000).unwrap();
        assert!(k.verify_access(&expired).is_err());

        let other = TokenKeys::new(&JwtSecret::new(vec![8u8; 32]).unwrap(), 900, 3600);
        assert!(
            k.verify_access(&other.issue_access("u1", "s1", now).unwrap())
                .is_err()
        );

        // alg: none, same claims, no signature.
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let claims = format!(r#"{{"sub":"u1","sid":"s1","iat":{now},"exp":{}}}"#, now + 900);
        let none = format!("{}.{}.", b64(r#"{"alg":"none","typ":"JWT"}"#), b64(&claims));
        assert!(k.verify_access(&none).is_err());
    }

    #[test]
    fn refresh_tokens_are_random_and_hashed() {
        let a = new_refresh_token().unwrap();
        let b = new_refresh_token().unwrap();
        assert_ne!(a, b);
        assert_eq!(hash_refresh_token(&a).len(), 64);
        assert_eq!(hash_refresh_token(&a), hash_refresh_token(&a));
    }
}
