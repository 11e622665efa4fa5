//! The two record types (CONTRACT.md §5), their fields, and the validation every upsert passes.

use crate::{ErrorCode, ErrorDetail};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum RecordType {
    Household,
    Member,
}

impl RecordType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Household => "household",
            Self::Member => "member",
        }
    }

    /// The fields a record of this type may carry.
    pub fn fields(self) -> &'static [FieldSpec] {
        match self {
            Self::Household => HOUSEHOLD_FIELDS,
            Self::Member => MEMBER_FIELDS,
        }
    }

    /// The field that places the record: what a tombstone still shows.
    pub fn placement_field(self) -> &'static str {
        match self {
            Self::Household => "village_id",
            Self::Member => "household_id",
        }
    }

    pub fn spec(self, name: &str) -> Option<&'static FieldSpec> {
        self.fields().iter().find(|f| f.name == name)
    }
}

impl fmt::Display for RecordType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RecordType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "household" => Ok(Self::Household),
            "member" => Ok(Self::Member),
            other => Err(format!(
                "unknown record type {other:?}; expected household or member"
            )),
        }
    }
}

/// A yes/no/unknown answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Tri {
    Yes,
    No,
    Unknown,
}

impl Tri {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Yes => "yes",
            Self::No => "no",
            Self::Unknown => "unknown",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "yes" => Some(Self::Yes),
            "no" => Some(Self::No),
            "unknown" => Some(Self::Unknown),
            _ => None,
        }
    }
}

/// What values a field takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    /// A canonical lowercase hyphenated UUID.
    Uuid,
    /// Text, trimmed, 1 to `max_chars` characters, no control characters.
    Text { max_chars: usize },
    /// `yes`, `no` or `unknown`; when optional, null means `unknown`.
    Tri,
    /// `YYYY-MM-DD`.
    Date,
    /// A year within 1900..=the current UTC year.
    BirthYear,
    /// `male`, `female` or `other`.
    Sex,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldSpec {
    pub name: &'static str,
    pub kind: FieldKind,
    /// Must be present on a record's first upsert, and may never be null.
    pub required: bool,
}

const fn field(name: &'static str, kind: FieldKind, required: bool) -> FieldSpec {
    FieldSpec { name, kind, required }
}

pub const NAME_MAX_CHARS: usize = 200;
pub const ADDRESS_MAX_CHARS: usize = 500;

pub const HOUSEHOLD_FIELDS: &[FieldSpec] = &[
    field("village_id", FieldKind::Uuid, true),
    field(
        "head_name",
        FieldKind::Text {
            max_chars: NAME_MAX_CHARS,
        },
        true,
    ),
    field(
        "address",
        FieldKind::Text {
            max_chars: ADDRESS_MAX_CHARS,
        },
        false,
    ),
    field("fixed_broadband", FieldKind::Tri, false),
    field("surveyed_on", FieldKind::Date, false),
];

pub const MEMBER_FIELDS: &[FieldSpec] = &[
    field("household_id", FieldKind::Uuid, true),
    field(
        "full_name",
        FieldKind::Text {
            max_chars: NAME_MAX_CHARS,
        },
        true,
    ),
    field("birth_year", FieldKind::BirthYear, true),
    field("sex", FieldKind::Sex, false),
    field("owns_smartphone", FieldKind::Tri, true),
    field("has_transaction_account", FieldKind::Tri, true),
    field("vneid_level2", FieldKind::Tri, false),
    field("uses_online_public_services", FieldKind::Tri, false),
    field("uses_cashless_payment", FieldKind::Tri, false),
    field("has_digital_signature", FieldKind::Tri, false),
];

/// A canonical UUID string, or None.
pub fn canonical_uuid(s: &str) -> Option<Uuid> {
    Uuid::parse_str(s)
        .ok()
        .filter(|u| u.hyphenated().encode_lower(&mut Uuid::encode_buffer()) == s)
}

fn is_valid_date(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return false;
    }
    let num = |r: std::ops::Range<usize>| s.get(r).and_then(|p| p.parse::<u32>().ok());
    match (num(0..4), num(5..7), num(8..10)) {
        (Some(y), Some(m), Some(d)) if (1900..=9999).contains(&y) => time::Month::try_from(m as u8)
            .ok()
            .and_then(|month| time::Date::from_calendar_date(y as i32, month, d as u8).ok())
            .is_some(),
        _ => false,
    }
}

/// What checking a value found it to be: valid as sent, or valid once normalised.
enum Checked {
    AsSent,
    Normalised(Value),
}

/// Checks one field's value and returns it normalised (text trimmed; an optional field's null
/// kept as null, except an optional tri, whose null means `"unknown"`).
pub fn validate_value(spec: &FieldSpec, value: &Value, current_year: i32) -> Result<Value, ErrorDetail> {
    Ok(match check_value(spec, value, current_year)? {
        Checked::AsSent => value.clone(),
        Checked::Normalised(v) => v,
    })
}

/// [`validate_value`] taking the value: one valid as sent is kept, not copied.
fn validate_value_owned(spec: &FieldSpec, value: Value, current_year: i32) -> Result<Value, ErrorDetail> {
    Ok(match check_value(spec, &value, current_year)? {
        Checked::AsSent => value,
        Checked::Normalised(v) => v,
    })
}

fn check_value(spec: &FieldSpec, value: &Value, current_year: i32) -> Result<Checked, ErrorDetail> {
    let bad = |code: ErrorCode, message: String| Err(ErrorDetail::field(spec.name, code, message));
    if value.is_null() {
        return match (spec.required, spec.kind) {
            (true, _) => bad(ErrorCode::Required, format!("{} must not be null", spec.name)),
            (false, FieldKind::Tri) => Ok(Checked::Normalised(Value::from("unknown"))),
            (false, _) => Ok(Checked::AsSent),
        };
    }
    match spec.kind {
        FieldKind::Uuid => match value.as_str().and_then(canonical_uuid) {
            Some(_) => Ok(Checked::AsSent),
            None => bad(
                ErrorCode::InvalidFormat,
                format!("{} must be a lowercase hyphenated UUID", spec.name),
            ),
        },
        FieldKind::Text { max_chars } => {
            let Some(sent) = value.as_str() else {
                return bad(
                    ErrorCode::InvalidFormat,
                    format!("{} must be a string", spec.name),
                );
            };
            let text = sent.trim();
            if text.is_empty() {
                bad(ErrorCode::Required, format!("{} must not be empty", spec.name))
            } else if text.chars().count() > max_chars {
                bad(
                    ErrorCode::TooLong,
                    format!("{} is longer than {max_chars} characters", spec.name),
                )
            } else if text.chars().any(char::is_control) {
                bad(
                    ErrorCode::InvalidFormat,
                    format!("{} must not contain control characters", spec.name),
                )
            } else if text.len() == sent.len() {
                Ok(Checked::AsSent)
            } else {
                Ok(Checked::Normalised(Value::from(text)))
            }
        }
        FieldKind::Tri => match value.as_str().and_then(Tri::parse) {
            Some(t) if value.as_str() == Some(t.as_str()) => Ok(Checked::AsSent),
            Some(t) => Ok(Checked::Normalised(Value::from(t.as_str()))),
            None => bad(
                ErrorCode::InvalidValue,
                format!("{} must be \"yes\", \"no\" or \"unknown\"", spec.name),
            ),
        },
        FieldKind::Date => match value.as_str() {
            Some(s) if is_valid_date(s) => Ok(Checked::AsSent),
            _ => bad(
                ErrorCode::InvalidFormat,
                format!("{} must be a date YYYY-MM-DD", spec.name),
            ),
        },
        FieldKind::BirthYear => match value.as_i64() {
            Some(y) if (1900..=i64::from(current_year)).contains(&y) => {
                Ok(Checked::Normalised(Value::from(y)))
            }
            Some(_) => bad(
                ErrorCode::OutOfRange,
                format!("{} must be within 1900..={current_year}", spec.name),
            ),
            None => bad(
                ErrorCode::InvalidFormat,
                format!("{} must be an integer year", spec.name),
            ),
        },
        FieldKind::Sex => match value.as_str() {
            Some("male" | "female" | "other") => Ok(Checked::AsSent),
            _ => bad(
                ErrorCode::InvalidValue,
                format!("{} must be \"male\", \"female\" or \"other\"", spec.name),
            ),
        },
    }
}

/// Validates an upsert's `fields`: every name known, every value valid. Returns the normalised
/// fields or every problem found.
pub fn validate_fields(
    record_type: RecordType,
    fields: &Map<String, Value>,
    current_year: i32,
) -> Result<Map<String, Value>, Vec<ErrorDetail>> {
    let valid = validate_each(record_type, fields, |spec, v| {
        validate_value(spec, v, current_year)
    })?;
    Ok(valid.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

/// [`validate_fields`] taking the fields, keyed by the schema's own field names (no key
/// allocated, values valid as sent kept, not copied), for the server's merge.
pub fn validate_fields_owned<K: AsRef<str>>(
    record_type: RecordType,
    fields: impl IntoIterator<Item = (K, Value)>,
    current_year: i32,
) -> Result<BTreeMap<&'static str, Value>, Vec<ErrorDetail>> {
    validate_each(record_type, fields, |spec, v| {
        validate_value_owned(spec, v, current_year)
    })
}

fn validate_each<K: AsRef<str>, V>(
    record_type: RecordType,
    fields: impl IntoIterator<Item = (K, V)>,
    validate: impl Fn(&FieldSpec, V) -> Result<Value, ErrorDetail>,
) -> Result<BTreeMap<&'static str, Value>, Vec<ErrorDetail>> {
    let mut out = BTreeMap::new();
    let mut errors = Vec::new();
    for (name, value) in fields {
        let name = name.as_ref();
        match record_type.spec(name) {
            None => errors.push(ErrorDetail::field(
                name.to_owned(),
                ErrorCode::UnknownField,
                format!("{record_type} has no field {name:?}"),
            )),
            Some(spec) => match validate(spec, value) {
                Ok(v) => {
                    out.insert(spec.name, v);
                }
                Err(e) => errors.push(e),
            },
        }
    }
    if errors.is_empty() { Ok(out) } else { Err(errors) }
}

/// The required fields a first upsert lacks.
pub fn missing_required(record_type: RecordType, fields: &Map<String, Value>) -> Vec<ErrorDetail> {
    missing_required_where(record_type, |name| fields.contains_key(name))
}

/// The required fields a first upsert lacks, `present` telling which fields it has.
pub fn missing_required_where(record_type: RecordType, present: impl Fn(&str) -> bool) -> Vec<ErrorDetail> {
    record_type
        .fields()
        .iter()
        .filter(|f| f.required && !present(f.name))
        .map(|f| {
            ErrorDetail::field(
                f.name,
                ErrorCode::Required,
                format!("{} is required on a new {record_type}", f.name),
            )
        })
        .collect()
}

/// A new record's full field set: the given fields plus each optional field's default.
pub fn with_defaults(record_type: RecordType, fields: &Map<String, Value>) -> Map<String, Value> {
    record_type
        .fields()
        .iter()
        .map(|f| {
            (
                f.name.to_owned(),
                fields.get(f.name).cloned().unwrap_or_else(|| default_value(f)),
            )
        })
        .collect()
}

/// What an optional field holds on a new record that does not give it.
pub fn default_value(spec: &FieldSpec) -> Value {
    if spec.kind == FieldKind::Tri {
        Value::from("unknown")
    } else {
        Value::Null
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn member_validation() {
        let ok = validate_fields(
            RecordType::Member,
            &obj(json!({ "full_name": "  Hà Thị Lan ", "birth_year": 1990, "owns_smartphone": "yes", "vneid_level2": null, "sex": null })),
            2026,
        )
        .unwrap();
        assert_eq!(ok["full_name"], "Hà Thị Lan");
        assert_eq!(ok["vneid_level2"], "unknown");
        assert_eq!(ok["sex"], Value::Null);

        let errors = validate_fields(
            RecordType::Member,
            &obj(json!({ "birth_year": 2027, "owns_smartphone": "maybe", "colour": "red", "full_name": "", "household_id": "X" })),
            2026,
        )
        .unwrap_err();
        let mut codes: Vec<(String, ErrorCode)> = errors
            .iter()
            .map(|e| (e.field.clone().unwrap(), e.code))
            .collect();
        codes.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            codes,
            [
                ("birth_year".into(), ErrorCode::OutOfRange),
                ("colour".into(), ErrorCode::UnknownField),
                ("full_name".into(), ErrorCode::Required),
                ("household_id".into(), ErrorCode::InvalidFormat),
                ("owns_smartphone".into(), ErrorCode::InvalidValue),
            ]
        );
        assert!(validate_fields(RecordType::Member, &obj(json!({ "birth_year": 1899 })), 2026).is_err());
        assert!(validate_fields(RecordType::Member, &obj(json!({ "birth_year": 1990.5 })), 2026).is_err());
        assert!(validate_fields(RecordType::Member, &obj(json!({ "birth_year": "1990" })), 2026).is_err());
        assert!(validate_fields(RecordType::Member, &obj(json!({ "owns_smartphone": null })), 2026).is_err());
    }

    #[test]
    fn household_validation() {
        let id = "6f9619ff-8b86-d011-b42d-00c04fc964ff";
        assert!(
            validate_fields(
                RecordType::Household,
                &obj(json!({ "village_id": id, "surveyed_on": "2026-02-28" })),
                2026
            )
            .is_ok()
        );
        for bad in [
            json!({ "village_id": id.to_uppercase() }),
            json!({ "surveyed_on": "2026-02-30" }),
            json!({ "surveyed_on": "28/02/2026" }),
            json!({ "head_name": "a\u{0}b" }),
            json!({ "head_name": "x".repeat(201) }),
            json!({ "fixed_broadband": true }),
        ] {
            assert!(
                validate_fields(RecordType::Household, &obj(bad.clone()), 2026).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn required_and_defaults() {
        let given = obj(json!({ "village_id": "x" }));
        let missing = missing_required(RecordType::Household, &given);
        assert_eq!(missing.len(), 1);
        assert_eq!(missing[0].field.as_deref(), Some("head_name"));
        let full = with_defaults(RecordType::Household, &given);
        assert_eq!(full["fixed_broadband"], "unknown");
        assert_eq!(full["address"], Value::Null);
        assert_eq!(full.len(), HOUSEHOLD_FIELDS.len());
    }
}
