//! Push, pull and conflicts on the wire (CONTRACT.md §6).

use crate::hlc::Hlc;
use crate::records::{RecordType, canonical_uuid, validate_fields_owned};
use crate::{ErrorCode, ErrorDetail, UnitId};
use serde::de::{MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::collections::BTreeMap;
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

/// A mutation as a client makes it: serialised in the wire form (the server reads each with
/// [`read_mutation`]).
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

/// The wire form: a delete carries no `fields`.
impl Serialize for Mutation {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let upsert = self.op == Op::Upsert;
        let mut m = s.serialize_map(Some(6 + usize::from(upsert)))?;
        m.serialize_entry("mutation_id", &self.mutation_id)?;
        m.serialize_entry("type", &self.record_type)?;
        m.serialize_entry("id", &self.id)?;
        m.serialize_entry("op", &self.op)?;
        m.serialize_entry("base_version", &self.base_version)?;
        m.serialize_entry("hlc", &format_args!("{}", self.hlc))?;
        if upsert {
            m.serialize_entry("fields", &self.fields)?;
        }
        m.end()
    }
}

/// `POST /api/v1/sync/push` as a client writes it: [`PushRequest`] serialised straight from its
/// mutations (no JSON tree built per mutation).
#[derive(Debug, Serialize)]
pub struct PushBatch<'a> {
    pub device_id: Uuid,
    pub mutations: &'a [Mutation],
}

/// What a mutation that cannot be parsed still tells: its id as sent, and the problems.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    /// The `id` as sent when it was a string, for the result.
    pub id: Option<String>,
    pub errors: Vec<ErrorDetail>,
}

/// A push's mutation as read and checked on its own: well formed, its fields valid, keyed by
/// the schema's own names (values valid as sent are kept, not copied).
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedMutation {
    pub record_type: RecordType,
    pub id: Uuid,
    pub op: Op,
    pub base_version: i64,
    pub hlc: Hlc,
    pub fields: BTreeMap<&'static str, Value>,
}

/// The envelope's keys besides `fields`.
const MUTATION_KEYS: [&str; 6] = ["mutation_id", "type", "id", "op", "base_version", "hlc"];

/// A JSON string, borrowed from the input unless it has escapes.
#[derive(Deserialize)]
struct Text<'a>(#[serde(borrow)] Cow<'a, str>);

impl AsRef<str> for Text<'_> {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// One raw mutation's keys, each envelope value left as raw JSON until its rule reads it (no
/// JSON tree is built for the envelope, and a value no rule reads is never parsed); the fields
/// read once, as sent.
struct RawKeys<'a> {
    /// By position in [`MUTATION_KEYS`]; a repeated key keeps its last value.
    known: [Option<&'a RawValue>; MUTATION_KEYS.len()],
    fields: Option<SentFields<'a>>,
    unknown: Vec<String>,
}

/// A mutation's `fields` as sent.
enum SentFields<'a> {
    Object(Members<'a>),
    Null,
    /// Anything but an object or null (skipped unread).
    Other,
}

impl<'de> Deserialize<'de> for SentFields<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Kind;
        impl<'de> Visitor<'de> for Kind {
            type Value = SentFields<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<SentFields<'de>, A::Error> {
                Members::visit(map).map(SentFields::Object)
            }
            fn visit_unit<E>(self) -> Result<SentFields<'de>, E> {
                Ok(SentFields::Null)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<SentFields<'de>, A::Error> {
                // Read, not skipped: what the server cannot read is reported as such.
                while seq.next_element::<Value>()?.is_some() {}
                Ok(SentFields::Other)
            }
            fn visit_bool<E>(self, _: bool) -> Result<SentFields<'de>, E> {
                Ok(SentFields::Other)
            }
            fn visit_i64<E>(self, _: i64) -> Result<SentFields<'de>, E> {
                Ok(SentFields::Other)
            }
            fn visit_u64<E>(self, _: u64) -> Result<SentFields<'de>, E> {
                Ok(SentFields::Other)
            }
            fn visit_f64<E>(self, _: f64) -> Result<SentFields<'de>, E> {
                Ok(SentFields::Other)
            }
            fn visit_str<E>(self, _: &str) -> Result<SentFields<'de>, E> {
                Ok(SentFields::Other)
            }
        }
        d.deserialize_any(Kind)
    }
}

impl<'a> RawKeys<'a> {
    fn get(&self, key: &str) -> Option<&'a RawValue> {
        MUTATION_KEYS
            .iter()
            .position(|k| *k == key)
            .and_then(|i| self.known[i])
    }

    /// The value of `key` read as `T`: `None` when absent or of another type (that key's rule
    /// reports it), an error when the server cannot read it at all (a lone surrogate escape, a
    /// number out of range).
    fn read<T: Deserialize<'a>>(&self, key: &str) -> Result<Option<T>, serde_json::Error> {
        match self.get(key).map(|raw| serde_json::from_str::<T>(raw.get())) {
            None => Ok(None),
            Some(Ok(value)) => Ok(Some(value)),
            Some(Err(e)) if e.classify() == serde_json::error::Category::Data => Ok(None),
            Some(Err(e)) => Err(e),
        }
    }

    /// The idempotency key, which must always be readable.
    fn mutation_id(&self) -> Option<i64> {
        self.read::<i64>("mutation_id")
            .ok()
            .flatten()
            .filter(|id| *id > 0)
    }
}

impl<'de> Deserialize<'de> for RawKeys<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Keys;
        impl<'de> Visitor<'de> for Keys {
            type Value = RawKeys<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a mutation object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawKeys<'de>, A::Error> {
                let mut keys = RawKeys {
                    known: [None; MUTATION_KEYS.len()],
                    fields: None,
                    unknown: Vec::new(),
                };
                while let Some(Text(key)) = map.next_key()? {
                    if key == "fields" {
                        keys.fields = Some(map.next_value()?);
                        continue;
                    }
                    let value: &'de RawValue = map.next_value()?;
                    match MUTATION_KEYS.iter().position(|k| *k == key) {
                        Some(i) => keys.known[i] = Some(value),
                        None if keys.unknown.iter().any(|k| *k == key) => {}
                        None => keys.unknown.push(key.into_owned()),
                    }
                }
                Ok(keys)
            }
        }
        d.deserialize_map(Keys)
    }
}

/// An object's members in order, keys borrowed from the input where they can be.
struct Members<'a>(Vec<(Text<'a>, Value)>);

impl<'de> Members<'de> {
    fn visit<A: MapAccess<'de>>(mut map: A) -> Result<Self, A::Error> {
        let mut members: Vec<(Text, Value)> = Vec::with_capacity(map.size_hint().unwrap_or(16));
        while let Some(key) = map.next_key::<Text>()? {
            let value = map.next_value()?;
            // A key given twice keeps its last value, as a map would (a dozen keys at most).
            match members.iter_mut().find(|(k, _)| k.0 == key.0) {
                Some(member) => member.1 = value,
                None => members.push((key, value)),
            }
        }
        Ok(Members(members))
    }
}

/// Why a mutation is refused whole: the server cannot represent it.
fn unreadable(e: &serde_json::Error) -> ErrorDetail {
    ErrorDetail::record(
        ErrorCode::InvalidFormat,
        format!("this mutation cannot be read: {e}"),
    )
}

/// Reads one raw mutation of `device`'s push and validates its fields (birth years up to
/// `current_year`). Returns its idempotency key when readable, whatever else is wrong, and the
/// mutation or every problem found with it (field values are checked once the envelope is
/// right). A mutation the server cannot represent (a number out of range, a lone surrogate,
/// nesting past the parser's depth) is rejected as `invalid_format`.
pub fn read_mutation(
    raw: &str,
    device: Uuid,
    current_year: i32,
) -> (Option<i64>, Result<CheckedMutation, Rejection>) {
    let keys = match serde_json::from_str::<RawKeys>(raw) {
        Ok(keys) => keys,
        Err(e) if e.classify() == serde_json::error::Category::Data => {
            let must = ErrorDetail::record(ErrorCode::InvalidFormat, "a mutation must be an object");
            return (
                None,
                Err(Rejection {
                    id: None,
                    errors: vec![must],
                }),
            );
        }
        Err(e) => return unreadable_keys(raw, &e),
    };
    let mutation_id = keys.mutation_id();
    (mutation_id, check(keys, device, current_year))
}

/// A mutation whose keys cannot be read: its mutation id and id are read leniently (every other
/// key skipped unread), each on its own, so that an id that is no string does not hide a
/// readable mutation id.
fn unreadable_keys(raw: &str, e: &serde_json::Error) -> (Option<i64>, Result<CheckedMutation, Rejection>) {
    #[derive(Deserialize)]
    struct Key {
        mutation_id: Option<i64>,
    }
    #[derive(Deserialize)]
    struct Id {
        id: Option<String>,
    }
    let key = serde_json::from_str::<Key>(raw).ok();
    let id = serde_json::from_str::<Id>(raw).ok().and_then(|i| i.id);
    let mutation_id = key.and_then(|k| k.mutation_id).filter(|id| *id > 0);
    (
        mutation_id,
        Err(Rejection {
            id,
            errors: vec![unreadable(e)],
        }),
    )
}

/// The envelope rules, then the fields'. Every envelope problem is reported, not just the first.
fn check(mut keys: RawKeys, device: Uuid, current_year: i32) -> Result<CheckedMutation, Rejection> {
    let id_read = keys.read::<Text>("id");
    let id_text: Option<Cow<str>> = match &id_read {
        Ok(Some(t)) => Some(t.0.clone()),
        _ => None,
    };
    let texts = (|| {
        Ok((
            keys.read::<Text>("type")?,
            keys.read::<Text>("op")?,
            keys.read::<Text>("hlc")?,
        ))
    })();
    let base = match keys.get("base_version") {
        raw if is_null(raw) => Ok(Some(0)),
        _ => keys.read::<i64>("base_version"),
    };
    // A value the server cannot read at all rejects the mutation whole, with the parser's words.
    let (type_text, op_text, hlc_text, base) = match (id_read, texts, base) {
        (Ok(_), Ok((t, o, h)), Ok(b)) => (t, o, h, b),
        (Err(e), ..) | (_, Err(e), _) | (.., Err(e)) => {
            return Err(Rejection {
                id: id_text.map(Cow::into_owned),
                errors: vec![unreadable(&e)],
            });
        }
    };
    let mut errors: Vec<ErrorDetail> = keys
        .unknown
        .iter()
        .map(|key| {
            ErrorDetail::field(
                key.clone(),
                ErrorCode::UnknownField,
                format!("mutations have no {key:?}"),
            )
        })
        .collect();
    let record_type = match type_text.map(|t| t.0.parse::<RecordType>()) {
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
    let op = match op_text.as_ref().map(AsRef::as_ref) {
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
    let base_version = match base {
        Some(b) if b >= 0 => b,
        _ => {
            errors.push(ErrorDetail::field(
                "base_version",
                ErrorCode::InvalidValue,
                "base_version must be a non-negative integer",
            ));
            0
        }
    };
    let hlc = match hlc_text.map(|t| t.0.parse::<Hlc>()) {
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
    let rejected = |errors| Rejection {
        id: id_text.as_deref().map(str::to_owned),
        errors,
    };
    let fields = match (op, keys.fields.take()) {
        (Some(Op::Upsert), Some(SentFields::Object(members))) => Some(members),
        (Some(Op::Upsert), _) => {
            errors.push(ErrorDetail::field(
                "fields",
                ErrorCode::Required,
                "an upsert needs a fields object",
            ));
            None
        }
        (Some(Op::Delete), None | Some(SentFields::Null)) => None,
        (Some(Op::Delete), Some(SentFields::Object(members))) if members.0.is_empty() => None,
        (Some(Op::Delete), Some(_)) => {
            errors.push(ErrorDetail::field(
                "fields",
                ErrorCode::InvalidValue,
                "a delete carries no fields",
            ));
            None
        }
        (None, _) => None,
    };
    let (Some(record_type), Some(id), Some(op), Some(hlc), true) =
        (record_type, id, op, hlc, errors.is_empty())
    else {
        return Err(rejected(errors));
    };
    let fields = match fields {
        None => BTreeMap::new(),
        Some(members) => validate_fields_owned(record_type, members.0, current_year).map_err(rejected)?,
    };
    Ok(CheckedMutation {
        record_type,
        id,
        op,
        base_version,
        hlc,
        fields,
    })
}

fn is_null(raw: Option<&RawValue>) -> bool {
    raw.is_none_or(|r| r.get().trim() == "null")
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

    fn read(raw: &Value) -> (Option<i64>, Result<CheckedMutation, Rejection>) {
        read_mutation(&raw.to_string(), dev(), 2026)
    }

    #[test]
    fn reads_a_good_mutation() {
        let raw = json!({ "mutation_id": 41, "type": "household", "id": "01a20754-270d-72ee-9b9c-3ae28999a980",
            "op": "upsert", "base_version": 3, "hlc": format!("2026-11-20T08:15:00.123Z/0005/{DEV}"),
            "fields": { "head_name": "  A  ", "fixed_broadband": "yes" } });
        let (key, m) = read(&raw);
        let m = m.unwrap();
        assert_eq!(key, Some(41));
        assert_eq!(
            (m.base_version, m.op, m.record_type),
            (3, Op::Upsert, RecordType::Household)
        );
        assert_eq!(m.hlc.to_string(), format!("2026-11-20T08:15:00.123Z/0005/{DEV}"));
        // Values normalised or kept as sent, keyed by the schema's names.
        assert_eq!(m.fields.get("head_name"), Some(&json!("A")));
        assert_eq!(m.fields.get("fixed_broadband"), Some(&json!("yes")));
        // Escaped keys and values read the same as plain ones; a delete may carry {} or null.
        let escaped = r#"{"mutation_id": 2, "type": "household", "id": "01a20754-270d-72ee-9b9c-3ae28999a980",
            "op": "upsert", "hlc": "2026-11-20T08:15:00.123Z/0005/6f9619ff-8b86-d011-b42d-00c04fc964ff",
            "fields": {"head\u005fname": "Nh\u00e0"}}"#;
        let m = read_mutation(escaped, dev(), 2026).1.unwrap();
        assert_eq!(m.fields.get("head_name"), Some(&json!("Nhà")));
        for fields in [json!({}), Value::Null] {
            let mut delete = raw.clone();
            delete["op"] = json!("delete");
            delete["fields"] = fields;
            assert!(read(&delete).1.unwrap().fields.is_empty());
        }
    }

    #[test]
    fn a_clients_mutations_read_back_as_sent() {
        let hlc: Hlc = format!("2026-11-20T08:15:00.123Z/0005/{DEV}").parse().unwrap();
        let id: Uuid = "01a20754-270d-72ee-9b9c-3ae28999a980".parse().unwrap();
        let mut fields = Map::new();
        fields.insert("head_name".into(), json!("Nhà \"Một\""));
        let upsert = Mutation {
            mutation_id: 7,
            record_type: RecordType::Household,
            id,
            op: Op::Upsert,
            base_version: 2,
            hlc,
            fields,
        };
        let delete = Mutation {
            mutation_id: 8,
            op: Op::Delete,
            fields: Map::new(),
            ..upsert.clone()
        };
        let text = serde_json::to_string(&PushBatch {
            device_id: dev(),
            mutations: &[upsert.clone(), delete],
        })
        .unwrap();
        let body: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(body["device_id"], DEV);
        assert!(
            body["mutations"][1].get("fields").is_none(),
            "a delete carries no fields: {text}"
        );
        let read: Vec<_> = body["mutations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| read_mutation(&m.to_string(), dev(), 2026))
            .collect();
        let (key, first) = &read[0];
        let first = first.as_ref().unwrap();
        assert_eq!(
            (*key, first.op, first.base_version, first.hlc, first.id),
            (Some(7), Op::Upsert, 2, hlc, id)
        );
        assert_eq!(first.fields.get("head_name"), Some(&json!("Nhà \"Một\"")));
        assert_eq!(read[1].0, Some(8));
        assert_eq!(read[1].1.as_ref().unwrap().op, Op::Delete);
    }

    #[test]
    fn unreadable_envelope_values_and_repeated_keys() {
        let head = |extra: &str| {
            format!(
                r#"{{"mutation_id": 4, "type": "household", "id": "01a20754-270d-72ee-9b9c-3ae28999a980", "op": "upsert", "hlc": "2026-11-20T08:15:00.123Z/0005/{DEV}"{extra}}}"#
            )
        };
        // What cannot be read is an invalid_format of the whole mutation, in the envelope too.
        for (extra, problem) in [
            (
                r#", "base_version": 1e400, "fields": {"head_name": "A"}"#,
                "number out of range",
            ),
            (r#", "op": "\ud800", "fields": {"head_name": "A"}"#, "hex escape"),
            (r#", "fields": [1e400]"#, "number out of range"),
        ] {
            let (key, r) = read_mutation(&head(extra), dev(), 2026);
            let r = r.unwrap_err();
            assert_eq!(key, Some(4), "{extra}");
            assert_eq!(
                r.id.as_deref(),
                Some("01a20754-270d-72ee-9b9c-3ae28999a980"),
                "{extra}"
            );
            assert_eq!(r.errors[0].code, ErrorCode::InvalidFormat, "{extra}");
            assert!(r.errors[0].message.contains(problem), "{}", r.errors[0].message);
        }
        // A key given twice keeps its last value; an unknown one is reported once.
        let twice = head(r#", "fields": {"head_name": 5, "head_name": "B"}"#);
        let m = read_mutation(&twice, dev(), 2026).1.unwrap();
        assert_eq!(m.fields.get("head_name"), Some(&json!("B")));
        let unknown = head(r#", "x": 1, "x": 2, "fields": {"head_name": "B"}"#);
        let errors = read_mutation(&unknown, dev(), 2026).1.unwrap_err().errors;
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].code, ErrorCode::UnknownField);
    }

    #[test]
    fn reports_every_problem() {
        let raw =
            json!({ "mutation_id": 1, "type": "cow", "id": "nope", "op": "merge", "hlc": "x", "extra": 1 });
        let (key, r) = read(&raw);
        let r = r.unwrap_err();
        assert_eq!(key, Some(1));
        assert_eq!(r.id.as_deref(), Some("nope"));
        let fields: Vec<_> = r.errors.iter().map(|e| e.field.clone().unwrap()).collect();
        for f in ["extra", "type", "id", "op", "hlc"] {
            assert!(fields.contains(&f.to_owned()), "{f} in {fields:?}");
        }
        let other_node = json!({ "mutation_id": 1, "type": "member", "id": "01a20754-270d-72ee-9b9c-3ae28999a980",
            "op": "delete", "hlc": "2026-11-20T08:15:00.123Z/0005/01a20754-270d-72ee-9b9c-3ae28999a980" });
        assert_eq!(
            read(&other_node).1.unwrap_err().errors[0].field.as_deref(),
            Some("hlc")
        );
        let (key, r) = read(&json!(5));
        assert_eq!(key, None);
        assert_eq!(r.unwrap_err().errors[0].message, "a mutation must be an object");
        for unusable in [json!(0), json!("3"), json!(-2), json!(1.5), Value::Null] {
            assert_eq!(read(&json!({ "mutation_id": unusable })).0, None, "{unusable}");
        }
    }

    #[test]
    fn field_rules_apply_once_the_envelope_is_right() {
        let good = json!({ "mutation_id": 9, "type": "member", "id": "01a20754-270d-72ee-9b9c-3ae28999a980",
            "op": "upsert", "hlc": format!("2026-11-20T08:15:00.123Z/0005/{DEV}"),
            "fields": { "birth_year": 1890, "colour": "red" } });
        let r = read(&good).1.unwrap_err();
        let fields: Vec<_> = r.errors.iter().map(|e| e.field.clone().unwrap()).collect();
        assert_eq!(fields, ["birth_year", "colour"]);
        assert_eq!(r.id.as_deref(), Some("01a20754-270d-72ee-9b9c-3ae28999a980"));
        // An envelope problem hides the fields' (they are not read).
        let mut bad = good.clone();
        bad["op"] = json!("merge");
        let fields: Vec<_> = read(&bad)
            .1
            .unwrap_err()
            .errors
            .iter()
            .map(|e| e.field.clone().unwrap())
            .collect();
        assert_eq!(fields, ["op"]);
        for (fields, code) in [
            (json!(5), ErrorCode::Required),
            (Value::Null, ErrorCode::Required),
        ] {
            let mut m = good.clone();
            m["fields"] = fields;
            assert_eq!(read(&m).1.unwrap_err().errors[0].code, code);
        }
        let mut delete = good.clone();
        delete["op"] = json!("delete");
        assert_eq!(
            read(&delete).1.unwrap_err().errors[0].code,
            ErrorCode::InvalidValue
        );
    }

    #[test]
    fn what_cannot_be_represented_is_rejected_whole_with_its_keys() {
        let head = format!(
            r#""mutation_id": 4, "type": "household", "id": "01a20754-270d-72ee-9b9c-3ae28999a980", "op": "upsert", "hlc": "2026-11-20T08:15:00.123Z/0005/{DEV}""#
        );
        for (fields, problem) in [
            (r#"{"head_name": "A", "x": 1e400}"#, "number out of range"),
            (r#"{"head_name": "\ud800"}"#, "hex escape"),
            (
                &*format!(r#"{{"head_name": {}}}"#, "[".repeat(300) + &"]".repeat(300)),
                "recursion limit",
            ),
        ] {
            let (key, r) = read_mutation(&format!("{{{head}, \"fields\": {fields}}}"), dev(), 2026);
            let r = r.unwrap_err();
            assert_eq!(key, Some(4), "{problem}");
            assert_eq!(r.id.as_deref(), Some("01a20754-270d-72ee-9b9c-3ae28999a980"));
            assert_eq!(r.errors[0].code, ErrorCode::InvalidFormat);
            assert!(r.errors[0].message.contains(problem), "{}", r.errors[0].message);
        }
        // A key that cannot be read hides every key after it from any parser.
        let (_, r) = read_mutation(&format!(r#"{{{head}, "\udc00": 1}}"#), dev(), 2026);
        assert_eq!(r.unwrap_err().errors[0].code, ErrorCode::InvalidFormat);
        // A value no rule reads as JSON is skipped unread.
        let (key, r) = read_mutation(
            &format!(r#"{{"x": [1e400], {head}, "fields": {{"head_name": "A"}}}}"#),
            dev(),
            2026,
        );
        assert_eq!(key, Some(4));
        assert_eq!(r.unwrap_err().errors[0].field.as_deref(), Some("x"));
    }
}
