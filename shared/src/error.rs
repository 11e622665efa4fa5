//! The contract's error body and its stable machine codes (CONTRACT.md §1).

use serde::{Deserialize, Serialize};

/// Stable snake_case machine code of an error or of one error detail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadRequest,
    ValidationFailed,
    Unauthorized,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    Conflict,
    PayloadTooLarge,
    RateLimited,
    Unavailable,
    Internal,
    // Codes used only in error details.
    Required,
    InvalidFormat,
    OutOfRange,
    TooLong,
    UnknownField,
    InvalidValue,
    Duplicate,
}

impl ErrorCode {
    /// The snake_case string sent on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadRequest => "bad_request",
            Self::ValidationFailed => "validation_failed",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::Conflict => "conflict",
            Self::PayloadTooLarge => "payload_too_large",
            Self::RateLimited => "rate_limited",
            Self::Unavailable => "unavailable",
            Self::Internal => "internal",
            Self::Required => "required",
            Self::InvalidFormat => "invalid_format",
            Self::OutOfRange => "out_of_range",
            Self::TooLong => "too_long",
            Self::UnknownField => "unknown_field",
            Self::InvalidValue => "invalid_value",
            Self::Duplicate => "duplicate",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Every non-2xx response body: `{ "error": { "code", "message", "details": [...] } }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    pub error: ErrorPayload,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorPayload {
    pub code: ErrorCode,
    pub message: String,
    #[serde(default)]
    pub details: Vec<ErrorDetail>,
}

/// One problem with one field (or, without `field`, with the whole record).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorDetail {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub code: ErrorCode,
    pub message: String,
}

impl ErrorDetail {
    /// A detail about one named field.
    pub fn field(field: impl Into<String>, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            field: Some(field.into()),
            code,
            message: message.into(),
        }
    }

    /// A detail about the whole record.
    pub fn record(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            field: None,
            code,
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detail_without_field_omits_the_key() {
        let body = ErrorBody {
            error: ErrorPayload {
                code: ErrorCode::ValidationFailed,
                message: "bad".into(),
                details: vec![ErrorDetail::record(ErrorCode::Required, "x")],
            },
        };
        let json = serde_json::to_value(&body).unwrap();
        assert_eq!(json["error"]["code"], "validation_failed");
        assert!(json["error"]["details"][0].get("field").is_none());
        assert_eq!(json["error"]["details"][0]["code"], "required");
    }

    #[test]
    fn as_str_matches_serde() {
        for code in [
            ErrorCode::PayloadTooLarge,
            ErrorCode::RateLimited,
            ErrorCode::OutOfRange,
        ] {
            assert_eq!(serde_json::to_value(code).unwrap(), code.as_str());
        }
    }
}
