//! Records as merge states, and the one place record rows are written. Every write goes
//! through [`save`], so counters (aggregates) can follow each state change.

use super::merge::{Clocks, FieldClock, Fields, RecordState};
use crate::db::records::{HouseholdRow, MemberRow};
use crate::db::{self, DbConn};
use crate::error::{AppError, AppResult};
use hamlet_shared::{Hlc, RecordType};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::collections::BTreeMap;

/// A stored record: its merge state and where it sits.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    pub record_type: RecordType,
    pub id: String,
    pub state: RecordState,
    /// The village the record counts in and is pulled from; None for a member waiting for its household.
    pub village: Option<String>,
    /// Members only: the user whose push created it.
    pub pushed_by: Option<String>,
    pub created_us: i64,
}

fn text(v: Option<String>) -> Value {
    v.map_or(Value::Null, Value::from)
}

fn get_str(fields: &Fields, name: &str) -> Option<String> {
    fields.get(name).and_then(Value::as_str).map(str::to_owned)
}

fn req_str(fields: &Fields, name: &str) -> AppResult<String> {
    get_str(fields, name).ok_or_else(|| AppError::Internal(format!("record state lacks {name}")))
}

/// Stored clocks, compact form: one entry per distinct clock with the fields it stamps
/// (`[{"h": hlc, "m": mutation id, "v": version, "f": [field, ...]}, ...]`). The fields one
/// mutation wrote share its clock, every field of a new record: a member's clocks take ~300
/// bytes this way instead of ~1,100 as a map of field to clock, and read with one HLC parse.
#[derive(Debug, Serialize, Deserialize)]
struct ClockGroup<'a> {
    #[serde(rename = "h", with = "super::merge::hlc_text")]
    hlc: Hlc,
    #[serde(rename = "m")]
    mutation_id: i64,
    #[serde(rename = "v")]
    version: i64,
    #[serde(rename = "f", borrow)]
    fields: Vec<Cow<'a, str>>,
}

/// Reads stored clocks in either form: the compact one (a JSON array) or the map of field to
/// clock that rows written before it hold.
fn clocks_from(record_type: RecordType, text: &str, id: &str) -> AppResult<Clocks> {
    let unreadable =
        |e: serde_json::Error| AppError::Internal(format!("record {id} has unreadable clocks: {e}"));
    let field = |name: &str| {
        record_type.spec(name).map(|spec| spec.name).ok_or_else(|| {
            AppError::Internal(format!(
                "record {id} has a clock for {name:?}, no field of a {record_type}"
            ))
        })
    };
    if text.trim_start().starts_with('[') {
        let groups: Vec<ClockGroup> = serde_json::from_str(text).map_err(unreadable)?;
        let mut clocks = Clocks::new();
        for g in groups {
            let clock = FieldClock {
                hlc: g.hlc,
                mutation_id: g.mutation_id,
                version: g.version,
            };
            for name in &g.fields {
                if clocks.insert(field(name)?, clock).is_some() {
                    return Err(AppError::Internal(format!(
                        "record {id} has two clocks for {name:?}"
                    )));
                }
            }
        }
        return Ok(clocks);
    }
    let stored: BTreeMap<String, FieldClock> = serde_json::from_str(text).map_err(unreadable)?;
    stored
        .into_iter()
        .map(|(name, clock)| Ok((field(&name)?, clock)))
        .collect()
}

/// A record's clocks grouped by clock, in the order of each group's first field (a record has
/// one to a few).
fn clock_groups(clocks: &Clocks) -> Vec<ClockGroup<'static>> {
    let mut groups: Vec<ClockGroup> = Vec::new();
    for (&field, c) in clocks {
        match groups
            .iter_mut()
            .find(|g| (g.hlc, g.mutation_id, g.version) == (c.hlc, c.mutation_id, c.version))
        {
            Some(g) => g.fields.push(Cow::Borrowed(field)),
            None => {
                let mut fields = Vec::with_capacity(clocks.len());
                fields.push(Cow::Borrowed(field));
                groups.push(ClockGroup {
                    hlc: c.hlc,
                    mutation_id: c.mutation_id,
                    version: c.version,
                    fields,
                });
            }
        }
    }
    groups
}

/// The stored text of a record's clocks, in the compact form: what `serde_json` writes for the
/// groups (a test holds them equal), written directly; this runs for every record a push stores.
fn clocks_to(clocks: &Clocks) -> String {
    let groups = clock_groups(clocks);
    let mut out = String::with_capacity(2 + groups.len() * 110 + clocks.len() * 32);
    out.push('[');
    for (i, g) in groups.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"h\":\"");
        g.hlc.push_text(&mut out);
        out.push_str("\",\"m\":");
        out.push_str(itoa::Buffer::new().format(g.mutation_id));
        out.push_str(",\"v\":");
        out.push_str(itoa::Buffer::new().format(g.version));
        out.push_str(",\"f\":[");
        for (j, field) in g.fields.iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            // A schema field name: a plain identifier, nothing to escape (a test holds this).
            debug_assert!(!field.contains(['"', '\\']) && !field.contains(char::is_control));
            out.push('"');
            out.push_str(field);
            out.push('"');
        }
        out.push_str("]}");
    }
    out.push(']');
    out
}

/// A household's fields as the wire names them.
fn household_fields(row: &HouseholdRow) -> Fields {
    Fields::from([
        ("village_id", Value::from(row.village_id.clone())),
        ("head_name", Value::from(row.head_name.clone())),
        ("address", text(row.address.clone())),
        ("fixed_broadband", Value::from(row.fixed_broadband.clone())),
        ("surveyed_on", text(row.surveyed_on.clone())),
    ])
}

/// A member's fields as the wire names them.
fn member_fields(row: &MemberRow) -> Fields {
    let mut fields = Fields::from([
        ("household_id", Value::from(row.household_id.clone())),
        ("full_name", Value::from(row.full_name.clone())),
        ("birth_year", Value::from(row.birth_year)),
        ("sex", text(row.sex.clone())),
    ]);
    for (name, value) in [
        ("owns_smartphone", &row.owns_smartphone),
        ("has_transaction_account", &row.has_transaction_account),
        ("vneid_level2", &row.vneid_level2),
        ("uses_online_public_services", &row.uses_online_public_services),
        ("uses_cashless_payment", &row.uses_cashless_payment),
        ("has_digital_signature", &row.has_digital_signature),
    ] {
        fields.insert(name, Value::from(value.clone()));
    }
    fields
}

impl Stored {
    pub fn from_household(row: HouseholdRow) -> AppResult<Self> {
        Ok(Self {
            record_type: RecordType::Household,
            state: RecordState {
                fields: household_fields(&row),
                clocks: clocks_from(RecordType::Household, &row.clocks, &row.id)?,
                version: row.version,
                deleted: row.deleted_us.is_some(),
            },
            village: Some(row.village_id),
            id: row.id,
            pushed_by: None,
            created_us: row.created_us,
        })
    }

    pub fn from_member(row: MemberRow) -> AppResult<Self> {
        Ok(Self {
            record_type: RecordType::Member,
            state: RecordState {
                fields: member_fields(&row),
                clocks: clocks_from(RecordType::Member, &row.clocks, &row.id)?,
                version: row.version,
                deleted: row.deleted_us.is_some(),
            },
            id: row.id,
            village: row.village_id,
            pushed_by: row.pushed_by,
            created_us: row.created_us,
        })
    }

    /// The placement a tombstone still shows.
    pub fn placement(&self) -> Map<String, Value> {
        let key = self.record_type.placement_field();
        let mut m = Map::new();
        m.insert(
            key.to_owned(),
            self.state.fields.get(key).cloned().unwrap_or(Value::Null),
        );
        m
    }

    pub(crate) fn household_row(&self, now: i64) -> AppResult<HouseholdRow> {
        let mut row = self.household_row_for_tally(now)?;
        row.clocks = clocks_to(&self.state.clocks);
        Ok(row)
    }

    /// The row without its merge clocks (left empty): what counting the record needs.
    pub(crate) fn household_row_for_tally(&self, now: i64) -> AppResult<HouseholdRow> {
        let f = &self.state.fields;
        Ok(HouseholdRow {
            id: self.id.clone(),
            village_id: req_str(f, "village_id")?,
            head_name: req_str(f, "head_name")?,
            address: get_str(f, "address"),
            fixed_broadband: get_str(f, "fixed_broadband").unwrap_or_else(|| "unknown".into()),
            surveyed_on: get_str(f, "surveyed_on"),
            version: self.state.version,
            clocks: String::new(),
            deleted_us: self.state.deleted.then_some(now),
            created_us: self.created_us,
            updated_us: now,
        })
    }

    pub(crate) fn member_row(&self, now: i64) -> AppResult<MemberRow> {
        let mut row = self.member_row_for_tally(now)?;
        row.clocks = clocks_to(&self.state.clocks);
        Ok(row)
    }

    /// The row without its merge clocks (left empty): what counting the record needs.
    pub(crate) fn member_row_for_tally(&self, now: i64) -> AppResult<MemberRow> {
        let f = &self.state.fields;
        let tri = |name: &str| get_str(f, name).unwrap_or_else(|| "unknown".into());
        Ok(MemberRow {
            id: self.id.clone(),
            household_id: req_str(f, "household_id")?,
            village_id: self.village.clone(),
            full_name: req_str(f, "full_name")?,
            birth_year: f
                .get("birth_year")
                .and_then(Value::as_i64)
                .and_then(|y| i32::try_from(y).ok())
                .ok_or_else(|| AppError::Internal("member state lacks birth_year".into()))?,
            sex: get_str(f, "sex"),
            owns_smartphone: tri("owns_smartphone"),
            has_transaction_account: tri("has_transaction_account"),
            vneid_level2: tri("vneid_level2"),
            uses_online_public_services: tri("uses_online_public_services"),
            uses_cashless_payment: tri("uses_cashless_payment"),
            has_digital_signature: tri("has_digital_signature"),
            version: self.state.version,
            clocks: String::new(),
            pushed_by: self.pushed_by.clone(),
            deleted_us: self.state.deleted.then_some(now),
            created_us: self.created_us,
            updated_us: now,
        })
    }
}

/// Loads a record, locking its row on PostgreSQL for the rest of the transaction.
pub fn load(conn: &mut DbConn, record_type: RecordType, id: &str) -> AppResult<Option<Stored>> {
    match record_type {
        RecordType::Household => db::records::household(conn, id, true)?
            .map(Stored::from_household)
            .transpose(),
        RecordType::Member => db::records::member(conn, id, true)?
            .map(Stored::from_member)
            .transpose(),
    }
}

/// Writes a record's new state (`existed`: whether its row is already there).
pub fn save(conn: &mut DbConn, record: &Stored, existed: bool, now: i64) -> AppResult<()> {
    match record.record_type {
        RecordType::Household => {
            let row = record.household_row(now)?;
            if existed {
                db::records::update_household(conn, &row)?
            } else {
                db::records::insert_household(conn, &row)?
            };
        }
        RecordType::Member => {
            let row = record.member_row(now)?;
            if existed {
                db::records::update_member(conn, &row)?
            } else {
                db::records::insert_member(conn, &row)?
            };
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hamlet_shared::Hlc;

    /// What serde writes for the groups of `clocks` (the grouping itself is checked by the
    /// group count and the round trip below).
    fn serde_text(clocks: &Clocks) -> String {
        serde_json::to_string(&clock_groups(clocks)).unwrap()
    }

    #[test]
    fn field_names_need_no_escaping_in_stored_clocks() {
        for record_type in [RecordType::Household, RecordType::Member] {
            for spec in record_type.fields() {
                assert!(
                    spec.name
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                    "{}",
                    spec.name
                );
            }
        }
    }

    #[test]
    fn clocks_are_written_as_serde_writes_them() {
        let node = uuid::Uuid::now_v7();
        let clock = |wall_ms, counter, mutation_id, version| FieldClock {
            hlc: Hlc::new(wall_ms, counter, node),
            mutation_id,
            version,
        };
        let mut clocks = Clocks::new();
        assert_eq!(clocks_to(&clocks), serde_text(&clocks));
        assert_eq!(clocks_from(RecordType::Member, "[]", "r").unwrap(), clocks);
        clocks.insert("full_name", clock(1_763_626_500_123, 3, 17, 2));
        clocks.insert("birth_year", clock(946_684_800_000, 0, i64::MAX, 1));
        // One mutation's clock on several fields, apart and side by side (one group).
        clocks.insert("owns_smartphone", clock(1_763_626_500_123, 3, 17, 2));
        clocks.insert("sex", clock(1_763_626_500_123, 3, 17, 2));
        // The same HLC from another mutation, or at another version, is another group.
        clocks.insert("has_digital_signature", clock(1_763_626_500_123, 3, 18, 2));
        clocks.insert("uses_cashless_payment", clock(1_763_626_500_123, 3, 17, 3));
        clocks.insert("vneid_level2", clock(253_402_300_799_999, 99_999, -1, -7));
        let text = clocks_to(&clocks);
        assert_eq!(text, serde_text(&clocks));
        assert_eq!(text.matches("\"h\"").count(), 5, "{text}");
        assert_eq!(clocks_from(RecordType::Member, &text, "r").unwrap(), clocks);

        // Rows written before the compact form hold a map of field to clock: still read.
        let old = serde_json::to_string(&clocks).unwrap();
        assert!(old.starts_with('{'));
        assert_eq!(clocks_from(RecordType::Member, &old, "r").unwrap(), clocks);
        assert_eq!(clocks_from(RecordType::Member, "{}", "r").unwrap(), Clocks::new());

        // Read back, a clock for a field the record type does not have is refused, not
        // dropped, in either form (the writer only ever names schema fields).
        clocks.insert("odd \"name\"\n", clock(1, 0, 1, 1));
        let text = serde_text(&clocks);
        assert!(clocks_from(RecordType::Member, &text, "r").is_err());
        assert!(clocks_from(RecordType::Household, &text, "r").is_err());
        let old = serde_json::to_string(&clocks).unwrap();
        assert!(clocks_from(RecordType::Member, &old, "r").is_err());
    }

    #[test]
    fn a_field_with_two_clocks_is_refused() {
        let hlc = Hlc::new(1_763_626_500_123, 0, uuid::Uuid::now_v7());
        let text =
            format!(r#"[{{"h":"{hlc}","m":1,"v":1,"f":["sex"]}},{{"h":"{hlc}","m":2,"v":2,"f":["sex"]}}]"#);
        let err = clocks_from(RecordType::Member, &text, "r").unwrap_err();
        assert!(err.to_string().contains("two clocks"), "{err}");
    }
}
