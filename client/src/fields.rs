//! Record fields typed in by a user, checked with the shared crate's field specs and validation,
//! so the client accepts exactly what the server does.

use crate::error::{Error, Result};
use hamlet_shared::records::{FieldKind, FieldSpec, RecordType, missing_required, validate_fields};
use serde_json::{Map, Value};

/// The current UTC year, the upper bound of `birth_year`.
pub fn current_year() -> i32 {
    time::OffsetDateTime::now_utc().year()
}

/// A typed value for `spec` from command-line text: an integer for a year, text otherwise, and
/// null for empty text (which clears an optional field).
pub fn value_for(spec: &FieldSpec, raw: &str) -> Value {
    if raw.is_empty() {
        return Value::Null;
    }
    match spec.kind {
        // Not a number stays text, so the shared validation reports it as the server would.
        FieldKind::BirthYear => raw
            .trim()
            .parse::<i64>()
            .map(Value::from)
            .unwrap_or_else(|_| Value::from(raw)),
        _ => Value::from(raw),
    }
}

/// The field names of a record type, for error messages.
pub fn names(t: RecordType) -> String {
    t.fields().iter().map(|f| f.name).collect::<Vec<_>>().join(", ")
}

/// Reads `NAME=VALUE` arguments into fields of `t`.
pub fn parse_assignments<S: AsRef<str>>(t: RecordType, args: &[S]) -> Result<Map<String, Value>> {
    let mut out = Map::new();
    for arg in args {
        let arg = arg.as_ref();
        let Some((name, raw)) = arg.split_once('=') else {
            return Err(Error::Invalid(format!(
                "expected NAME=VALUE, got {arg:?} (an empty VALUE clears an optional field)"
            )));
        };
        let name = name.trim();
        let spec = t.spec(name).ok_or_else(|| {
            Error::Invalid(format!(
                "a {t} has no field {name:?}; its fields are {}",
                names(t)
            ))
        })?;
        if out.insert(name.to_owned(), value_for(spec, raw)).is_some() {
            return Err(Error::Invalid(format!("{name} is given twice")));
        }
    }
    Ok(out)
}

/// Checks fields with the shared rules and returns them normalised. A new record must also
/// carry every required field.
pub fn validate(t: RecordType, fields: &Map<String, Value>, new: bool) -> Result<Map<String, Value>> {
    let mut errors = if new {
        missing_required(t, fields)
    } else {
        Vec::new()
    };
    match validate_fields(t, fields, current_year()) {
        Ok(clean) if errors.is_empty() => Ok(clean),
        Ok(_) => Err(Error::Validation(errors)),
        Err(mut more) => {
            errors.append(&mut more);
            Err(Error::Validation(errors))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn assignments_are_typed_by_spec() {
        let f = parse_assignments(
            RecordType::Member,
            &[
                "birth_year=1990",
                "full_name= Lan ",
                "sex=",
                "owns_smartphone=yes",
            ],
        )
        .unwrap();
        assert_eq!(f["birth_year"], json!(1990));
        assert_eq!(f["sex"], Value::Null);
        let clean = validate(RecordType::Member, &f, false).unwrap();
        assert_eq!(clean["full_name"], "Lan");
    }

    #[test]
    fn errors_name_the_field() {
        let e = parse_assignments(RecordType::Household, &["colour=red"]).unwrap_err();
        assert!(e.to_string().contains("head_name"), "{e}");
        assert!(parse_assignments(RecordType::Household, &["head_name"]).is_err());
        assert!(parse_assignments(RecordType::Household, &["head_name=a", "head_name=b"]).is_err());
        let f = parse_assignments(RecordType::Member, &["birth_year=abc"]).unwrap();
        let e = validate(RecordType::Member, &f, true).unwrap_err().to_string();
        assert!(e.contains("birth_year must be an integer year"), "{e}");
        assert!(e.contains("full_name is required"), "{e}");
    }
}
