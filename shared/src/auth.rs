//! Users, roles, sessions and devices on the wire (CONTRACT.md §3–§4).

use crate::{UnitId, UserId};
use serde::{Deserialize, Serialize};
use std::{fmt, str::FromStr};
use uuid::Uuid;

/// What a user may do; their scope says where.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A village team member: pushes and pulls records in scope.
    Enumerator,
    /// Manages users, devices, units and conflicts in scope; reads aggregates there.
    Admin,
    /// Reads aggregates in scope, nothing else.
    Viewer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Enumerator => "enumerator",
            Self::Admin => "admin",
            Self::Viewer => "viewer",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "enumerator" => Ok(Self::Enumerator),
            "admin" => Ok(Self::Admin),
            "viewer" => Ok(Self::Viewer),
            other => Err(format!(
                "unknown role {other:?}; expected enumerator, admin or viewer"
            )),
        }
    }
}

/// `POST /api/v1/auth/login`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Uuid))]
    pub device_id: Uuid,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_name: Option<String>,
}

/// `POST /api/v1/auth/refresh`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RefreshRequest {
    pub refresh_token: String,
}

/// The user as login and user creation return it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserInfo {
    pub id: UserId,
    pub username: String,
    pub role: Role,
    pub scope: Vec<UnitId>,
}

/// Answer of login and refresh: a short-lived access token and a rotating refresh token.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenResponse {
    pub access_token: String,
    pub refresh_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    pub user: UserInfo,
}

/// `POST /api/v1/users`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    pub username: String,
    pub password: String,
    pub role: Role,
    pub scope: Vec<UnitId>,
}

/// One device of one user, as `GET /api/v1/devices` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeviceInfo {
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Uuid))]
    pub device_id: Uuid,
    pub user_id: UserId,
    pub username: String,
    pub name: Option<String>,
    /// RFC 3339 UTC.
    pub last_seen: String,
    /// RFC 3339 UTC, or null before the first sync.
    pub last_sync: Option<String>,
    pub revoked: bool,
}

/// `GET /api/v1/devices`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeviceList {
    pub devices: Vec<DeviceInfo>,
}

/// One entry of the audit log (`GET /api/v1/audit`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditEntry {
    pub id: String,
    /// RFC 3339 UTC.
    pub at: String,
    pub actor_user_id: Option<UserId>,
    pub subject_user_id: Option<UserId>,
    /// e.g. `login`, `login_failed`, `user_created`, `device_revoked`.
    pub action: String,
    pub ip: Option<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub detail: serde_json::Value,
}

/// `GET /api/v1/audit`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditList {
    pub entries: Vec<AuditEntry>,
}

/// A login name: 3 to 64 of `a-z 0-9 . _ -`, compared in lowercase.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Username(String);

impl Username {
    pub fn parse(raw: &str) -> Result<Self, crate::ErrorDetail> {
        let name = raw.trim().to_lowercase();
        let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-');
        if !(3..=64).contains(&name.len()) || !name.chars().all(ok_char) {
            return Err(crate::ErrorDetail::field(
                "username",
                crate::ErrorCode::InvalidFormat,
                "username must be 3 to 64 of the characters a-z, 0-9, '.', '_' and '-'",
            ));
        }
        Ok(Self(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        assert_eq!(Username::parse(" Lan.Nguyen ").unwrap().as_str(), "lan.nguyen");
        assert!(Username::parse("ab").is_err());
        assert!(Username::parse("lan nguyen").is_err());
        assert!(Username::parse("lân").is_err());
    }

    #[test]
    fn roles_roundtrip() {
        for r in [Role::Enumerator, Role::Admin, Role::Viewer] {
            assert_eq!(r.as_str().parse::<Role>().unwrap(), r);
            assert_eq!(serde_json::to_value(r).unwrap(), r.as_str());
        }
    }
}
