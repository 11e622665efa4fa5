//! Administrative units (CONTRACT.md §2): wire types and the domain values they carry.

use crate::{ErrorCode, ErrorDetail, UnitId};
use serde::{Deserialize, Serialize};
use std::{fmt, str::FromStr};

/// Level of a unit: `country > province > district > commune > village`; `district` is optional.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum UnitLevel {
    Country,
    Province,
    District,
    Commune,
    Village,
}

impl UnitLevel {
    pub const ALL: [UnitLevel; 5] = [
        Self::Country,
        Self::Province,
        Self::District,
        Self::Commune,
        Self::Village,
    ];

    /// Depth in the hierarchy, 0 for a country; a child's rank is always greater than its parent's.
    pub fn rank(self) -> u8 {
        self as u8
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Country => "country",
            Self::Province => "province",
            Self::District => "district",
            Self::Commune => "commune",
            Self::Village => "village",
        }
    }

    /// Whether a unit of this level may sit directly under a unit of level `parent`.
    pub fn may_have_parent(self, parent: UnitLevel) -> bool {
        self.rank() > parent.rank()
    }
}

impl fmt::Display for UnitLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for UnitLevel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|l| l.as_str() == s).ok_or_else(|| {
            format!("unknown level {s:?}; expected one of country, province, district, commune, village")
        })
    }
}

/// A unit's display name: trimmed, 1 to 200 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UnitName(String);

impl UnitName {
    pub const MAX_CHARS: usize = 200;

    pub fn parse(raw: &str) -> Result<Self, ErrorDetail> {
        let name = raw.trim();
        if name.is_empty() {
            return Err(ErrorDetail::field(
                "name",
                ErrorCode::Required,
                "name must not be empty",
            ));
        }
        if name.chars().count() > Self::MAX_CHARS {
            return Err(ErrorDetail::field(
                "name",
                ErrorCode::TooLong,
                format!("name is longer than {} characters", Self::MAX_CHARS),
            ));
        }
        if name.chars().any(char::is_control) {
            return Err(ErrorDetail::field(
                "name",
                ErrorCode::InvalidFormat,
                "name must not contain control characters",
            ));
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

/// An official unit code: 1 to 32 ASCII letters, digits, `-`, `_` or `.` (e.g. `VN`, `01`, `00097`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UnitCode(String);

impl UnitCode {
    pub const MAX_LEN: usize = 32;

    pub fn parse(raw: &str) -> Result<Self, ErrorDetail> {
        let code = raw.trim();
        let valid_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
        if code.is_empty() || code.len() > Self::MAX_LEN || !code.chars().all(valid_char) {
            return Err(ErrorDetail::field(
                "code",
                ErrorCode::InvalidFormat,
                format!(
                    "code must be 1 to {} ASCII letters, digits, '-', '_' or '.'",
                    Self::MAX_LEN
                ),
            ));
        }
        Ok(Self(code.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

/// A unit as the API returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Unit {
    pub id: UnitId,
    pub code: Option<String>,
    pub name: String,
    pub level: UnitLevel,
    pub parent_id: Option<UnitId>,
}

/// One step of a unit's path from the root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PathEntry {
    pub id: UnitId,
    pub name: String,
    pub level: UnitLevel,
}

/// `GET /api/v1/units/{id}`: the unit and its path, root first, ending with the unit itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UnitWithPath {
    #[serde(flatten)]
    pub unit: Unit,
    pub path: Vec<PathEntry>,
}

/// `GET /api/v1/units/{id}/children`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UnitList {
    pub units: Vec<Unit>,
}

/// Body of `POST /api/v1/units`. Fields are raw here; the server parses them into domain values
/// so that every problem comes back as a field-level `validation_failed` detail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewUnit {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    pub name: String,
    pub level: UnitLevel,
    pub parent_id: UnitId,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_order_and_parse() {
        assert!(UnitLevel::Village.may_have_parent(UnitLevel::Commune));
        assert!(UnitLevel::Commune.may_have_parent(UnitLevel::Province));
        assert!(!UnitLevel::Province.may_have_parent(UnitLevel::Commune));
        assert!(!UnitLevel::Commune.may_have_parent(UnitLevel::Commune));
        assert_eq!("district".parse::<UnitLevel>().unwrap(), UnitLevel::District);
        assert!("hamlet".parse::<UnitLevel>().is_err());
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(UnitName::parse("  Thôn Nà Lầu ").unwrap().as_str(), "Thôn Nà Lầu");
        assert_eq!(UnitName::parse("   ").unwrap_err().code, ErrorCode::Required);
        assert_eq!(
            UnitName::parse(&"x".repeat(201)).unwrap_err().code,
            ErrorCode::TooLong
        );
        assert!(
            UnitName::parse(&"ệ".repeat(200)).is_ok(),
            "limit counts characters, not bytes"
        );
        assert_eq!(
            UnitName::parse("a\0b").unwrap_err().code,
            ErrorCode::InvalidFormat
        );
    }

    #[test]
    fn codes_are_ascii_tokens() {
        assert_eq!(UnitCode::parse("00097").unwrap().as_str(), "00097");
        assert!(UnitCode::parse("VN").is_ok());
        assert!(UnitCode::parse("").is_err());
        assert!(UnitCode::parse("a b").is_err());
        assert!(UnitCode::parse(&"1".repeat(33)).is_err());
    }
}

/// `POST /api/v1/units/{id}/move`: the unit and its subtree go under another parent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct MoveUnit {
    pub parent_id: UnitId,
    /// `YYYY-MM-DD`, not in the future.
    #[cfg_attr(feature = "openapi", schema(format = Date))]
    pub effective_on: String,
}

/// `POST /api/v1/units/merge`: the children of every source move under `into`; the sources
/// are retired.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct MergeUnits {
    pub sources: Vec<UnitId>,
    pub into: UnitId,
    /// `YYYY-MM-DD`, not in the future.
    #[cfg_attr(feature = "openapi", schema(format = Date))]
    pub effective_on: String,
}

/// What a reorganisation changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReorgReport {
    /// Units that moved to a new parent.
    pub moved: Vec<UnitId>,
    /// Units retired (merged away).
    pub retired: Vec<UnitId>,
    pub effective_on: String,
}
