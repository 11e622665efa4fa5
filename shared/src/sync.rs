//! Push, pull and conflicts on the wire (CONTRACT.md §6).

use crate::hlc::Hlc;
use crate::records::{RecordType, canonical_uuid};
use crate::{ErrorCode, ErrorDetail, UnitId};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

/// Most mutations one push may carry.
pub const MAX_MUTATIONS: usize = 1000;

/// `POST /api/v1/sync/push`. Mutations stay raw JSON here so that one malformed mutation is
/// rejected on its own instead of failing the whole request.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PushRequest {
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Uuid))]
    pub device_id: Uuid,
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Object>))]
    pub mutations: Vec<Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    Upsert,
    Delete,
}

/// One parsed, well-formed mutation (its field values are checked separately).
#[derive(Debug, Clone, PartialEq)]
pub struct Mutation {
    pub mutation_id: i64,
    pub record_type: RecordType,
    pub id: Uuid,
    pub op: Op,
    pub base_version: i64,
    pub hlc: Hlc,
    pub fields: Map<String, Value>,
}

impl Mutation {
    /// The wire form, as a client sends it.
    pub fn to_json(&self) -> Value {
        let mut m = serde_json::json!({
            "mutation_id": self.mutation_id,
            "type": self.record_type,
            "id": self.id,
            "op": self.op,
            "base_version": self.base_version,
            "hlc": self.hlc.to_string(),
        });
        if self.op == Op::Upsert {
            m["fields"] = Value::Object(self.fields.clone());
        }
        m
    }
}

/// The envelope-level reading of one raw mutation: its idempotency key, which must always be
/// readable, or why the whole request is refused.
pub fn mutation_id_of(raw: &Value) -> Option<i64> {
    raw.get("mutation_id")
        .and_then(Value::as_i64)
        .filter(|id| *id > 0)
}

/// What a mutation that cannot be parsed still tells: its id as sent, and the problems.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    /// The `id` as sent when it was a string, for the result.
    pub id: Option<String>,
    pub errors: Vec<ErrorDetail>,
}

const MUTATION_KEYS: [&str; 7] = ["mutation_id", "type", "id", "op", "base_version", "hlc", "fields"];

/// Parses one raw mutation of `device`. Every problem is reported, not just the first.
/// Takes the value, so that its fields are moved into the mutation rather than copied.
pub fn parse_mutation(raw: Value, device: Uuid) -> Result<Mutation, Rejection> {
    let mut errors = Vec::new();
    let id_text = raw.get("id").and_then(Value::as_str).map(str::to_owned);
    let mutation_id = mutation_id_of(&raw).unwrap_or_default();
    let Value::Object(mut obj) = raw else {
        return Err(Rejection {
            id: None,
            errors: vec![ErrorDetail::record(
                ErrorCode::InvalidFormat,
                "a mutation must be an object",
            )],
        });
    };
    for key in obj.keys().filter(|k| !MUTATION_KEYS.contains(&k.as_str())) {
        errors.push(ErrorDetail::field(
            key.clone(),
            ErrorCode::UnknownField,
            format!("mutations have no {key:?}"),
        ));
    }
    let record_type = match obj
        .get("type")
        .and_then(Value::as_str)
        .map(str::parse::<RecordType>)
    {
        Some(Ok(t)) => Some(t),
        Some(Err(m)) => {
            errors.push(ErrorDetail::field("type", ErrorCode::InvalidValue, m));
            None
        }
        None => {
            errors.push(ErrorDetail::field(
                "type",
                ErrorCode::Required,
                "type must be \"household\" or \"member\"",
            ));
            None
        }
    };
    let id = id_text.as_deref().and_then(canonical_uuid);
    if id.is_none() {
        errors.push(ErrorDetail::field(
            "id",
            ErrorCode::InvalidFormat,
            "id must be a lowercase hyphenated UUID",
        ));
    }
    let op = match obj.get("op").and_then(Value::as_str) {
        Some("upsert") => Some(Op::Upsert),
        Some("delete") => Some(Op::Delete),
        _ => {
            errors.push(ErrorDetail::field(
                "op",
                ErrorCode::InvalidValue,
                "op must be \"upsert\" or \"delete\"",
            ));
            None
        }
    };
    let base_version = match obj.get("base_version") {
        None | Some(Value::Null) => 0,
        Some(v) => match v.as_i64() {
            Some(b) if b >= 0 => b,
            _ => {
                errors.push(ErrorDetail::field(
                    "base_version",
                    ErrorCode::InvalidValue,
                    "base_version must be a non-negative integer",
                ));
                0
            }
        },
    };
    let hlc = match obj.get("hlc").and_then(Value::as_str).map(str::parse::<Hlc>) {
        Some(Ok(h)) if h.node == device => Some(h),
        Some(Ok(_)) => {
            errors.push(ErrorDetail::field(
                "hlc",
                ErrorCode::InvalidValue,
                "the hlc node must be the pushing device's id",
            ));
            None
        }
        Some(Err(e)) => {
            errors.push(ErrorDetail::field("hlc", ErrorCode::InvalidFormat, e.to_string()));
            None
        }
        None => {
            errors.push(ErrorDetail::field("hlc", ErrorCode::Required, "hlc is required"));
            None
        }
    };
    let fields = match (op, obj.remove("fields")) {
        (Some(Op::Upsert), Some(Value::Object(f))) => f,
        (Some(Op::Upsert), _) => {
            errors.push(ErrorDetail::field(
                "fields",
                ErrorCode::Required,
                "an upsert needs a fields object",
            ));
            Map::new()
        }
        (Some(Op::Delete), None | Some(Value::Null)) => Map::new(),
        (Some(Op::Delete), Some(Value::Object(f))) if f.is_empty() => f,
        (Some(Op::Delete), Some(_)) => {
            errors.push(ErrorDetail::field(
                "fields",
                ErrorCode::InvalidValue,
                "a delete carries no fields",
            ));
            Map::new()
        }
        (None, _) => Map::new(),
    };
    match (record_type, id, op, hlc) {
        (Some(record_type), Some(id), Some(op), Some(hlc)) if errors.is_empty() => Ok(Mutation {
            mutation_id,
            record_type,
            id,
            op,
            base_version,
            hlc,
            fields,
        }),
        _ => Err(Rejection { id: id_text, errors }),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum MutationStatus {
    Applied,
    Duplicate,
    Conflict,
    Rejected,
}

impl MutationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::Duplicate => "duplicate",
            Self::Conflict => "conflict",
            Self::Rejected => "rejected",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Applied, Self::Duplicate, Self::Conflict, Self::Rejected]
            .into_iter()
            .find(|m| m.as_str() == s)
    }
}

/// The outcome of one mutation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MutationResult {
    pub mutation_id: i64,
    /// The record id as sent (null when it was not a string).
    pub id: Option<String>,
    pub status: MutationStatus,
    /// The record's version after the mutation (null when rejected).
    pub version: Option<i64>,
    /// Fields whose incoming value lost to a later edit.
    pub conflicts: Vec<String>,
    pub errors: Vec<ErrorDetail>,
    /// For `duplicate`: the status the mutation got the first time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_status: Option<MutationStatus>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PushSummary {
    pub applied: u32,
    pub duplicate: u32,
    pub conflict: u32,
    pub rejected: u32,
}

impl PushSummary {
    pub fn count(&mut self, status: MutationStatus) {
        match status {
            MutationStatus::Applied => self.applied += 1,
            MutationStatus::Duplicate => self.duplicate += 1,
            MutationStatus::Conflict => self.conflict += 1,
            MutationStatus::Rejected => self.rejected += 1,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PushResponse {
    pub results: Vec<MutationResult>,
    pub summary: PushSummary,
    /// RFC 3339 UTC.
    pub server_time: String,
}

/// One changed record in a pull.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Change {
    #[serde(rename = "type")]
    pub record_type: RecordType,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Uuid))]
    pub id: Uuid,
    pub version: i64,
    pub deleted: bool,
    /// The whole record when live; only its placement when deleted.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub fields: Map<String, Value>,
}

/// `GET /api/v1/sync/pull`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PullResponse {
    pub changes: Vec<Change>,
    pub cursor: String,
    pub has_more: bool,
}

/// One field conflict kept for review.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConflictInfo {
    pub id: String,
    #[serde(rename = "type")]
    pub record_type: RecordType,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Uuid))]
    pub record_id: Uuid,
    pub village_id: UnitId,
    pub field: String,
    /// What the record holds after the merge (the winner).
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub current_value: Value,
    /// The value that lost.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub incoming_value: Value,
    pub current_hlc: String,
    pub incoming_hlc: String,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Uuid))]
    pub device_id: Uuid,
    pub created_at: String,
    pub resolved: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConflictList {
    pub conflicts: Vec<ConflictInfo>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Choice {
    Current,
    Incoming,
    Value,
}

/// `POST /api/v1/conflicts/{id}/resolve`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ResolveRequest {
    pub choose: Choice,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub value: Option<Value>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const DEV: &str = "6f9619ff-8b86-d011-b42d-00c04fc964ff";

    fn dev() -> Uuid {
        Uuid::parse_str(DEV).unwrap()
    }

    #[test]
    fn parses_a_good_mutation_and_roundtrips() {
        let raw = json!({ "mutation_id": 41, "type": "household", "id": "01a20754-270d-72ee-9b9c-3ae28999a980",
            "op": "upsert", "base_version": 3, "hlc": format!("2026-11-20T08:15:00.123Z/0005/{DEV}"),
            "fields": { "head_name": "A" } });
        let m = parse_mutation(raw.clone(), dev()).unwrap();
        assert_eq!((m.mutation_id, m.base_version, m.op), (41, 3, Op::Upsert));
        assert_eq!(m.to_json(), raw);
    }

    #[test]
    fn reports_every_problem() {
        let raw =
            json!({ "mutation_id": 1, "type": "cow", "id": "nope", "op": "merge", "hlc": "x", "extra": 1 });
        let r = parse_mutation(raw, dev()).unwrap_err();
        assert_eq!(r.id.as_deref(), Some("nope"));
        let fields: Vec<_> = r.errors.iter().map(|e| e.field.clone().unwrap()).collect();
        for f in ["extra", "type", "id", "op", "hlc"] {
            assert!(fields.contains(&f.to_owned()), "{f} in {fields:?}");
        }
        let other_node = json!({ "mutation_id": 1, "type": "member", "id": "01a20754-270d-72ee-9b9c-3ae28999a980",
            "op": "delete", "hlc": "2026-11-20T08:15:00.123Z/0005/01a20754-270d-72ee-9b9c-3ae28999a980" });
        assert_eq!(
            parse_mutation(other_node, dev()).unwrap_err().errors[0]
                .field
                .as_deref(),
            Some("hlc")
        );
        assert!(parse_mutation(json!(5), dev()).is_err());
        assert_eq!(mutation_id_of(&json!({ "mutation_id": 0 })), None);
        assert_eq!(mutation_id_of(&json!({ "mutation_id": "3" })), None);
    }
}
