//! `GET /api/v1/sync/pull`: the change feed of the caller's scope, behind an opaque cursor.
//!
//! Changes are read in (transaction id, sequence) order, and on PostgreSQL only from
//! transactions older than the oldest one still running: a change whose transaction commits
//! after a pull can then never sit behind that pull's cursor. Each change is sent as the
//! record's current state; a record no longer in scope is sent as deleted with its placement.

use crate::auth::{Action, Principal, authorize};
use crate::db::records::{PulledHousehold, PulledMember};
use crate::db::{self, DbConn};
use crate::error::{AppError, AppResult};
use base64::Engine;
use hamlet_shared::RecordType;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};

pub const DEFAULT_LIMIT: i64 = 500;
pub const MAX_LIMIT: i64 = 5000;

/// A place in the feed: after feed row `(txid, seq)` whole, or after only its first
/// `consumed` records (a feed row lists every record of one type a write changed in a village,
/// and a page may end inside it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pos {
    txid: i64,
    seq: i64,
    consumed: Option<usize>,
}

/// Position before every change.
const START: Pos = Pos {
    txid: -1,
    seq: -1,
    consumed: None,
};

fn encode(pos: Pos) -> String {
    let text = match pos.consumed {
        None => format!("1.{}.{}", pos.txid, pos.seq),
        Some(n) => format!("2.{}.{}.{n}", pos.txid, pos.seq),
    };
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}

fn decode(cursor: &str) -> AppResult<Pos> {
    let bad = || AppError::BadRequest("invalid cursor: pass back the cursor of a previous pull".to_owned());
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| bad())?;
    let text = String::from_utf8(raw).map_err(|_| bad())?;
    let (txid, seq, consumed) = match text.split('.').collect::<Vec<_>>().as_slice() {
        ["1", txid, seq] => (*txid, *seq, None),
        ["2", txid, seq, n] => (*txid, *seq, Some(n.parse().map_err(|_| bad())?)),
        _ => return Err(bad()),
    };
    Ok(Pos {
        txid: txid.parse().map_err(|_| bad())?,
        seq: seq.parse().map_err(|_| bad())?,
        consumed,
    })
}

/// Most feed rows read in one statement while filling a page.
const ROWS_PER_READ: usize = 256;

/// The next `want` changes (position, record type, record id) in villages under `scope` after
/// `after`, below `horizon` when given.
fn entries_after(
    conn: &mut DbConn,
    scope: &[String],
    after: Pos,
    horizon: Option<i64>,
    want: usize,
) -> AppResult<Vec<(Pos, String, String)>> {
    let mut out = Vec::new();
    // A row only partly sent is read again, its first records skipped.
    let mut from = match after.consumed {
        Some(_) => (after.txid, after.seq - 1),
        None => (after.txid, after.seq),
    };
    loop {
        let fetch = (want - out.len()).clamp(1, ROWS_PER_READ);
        let rows = db::sync::changes_after(conn, scope, from, horizon, fetch as i64)?;
        for row in &rows {
            let skip = match after.consumed {
                Some(n) if (row.txid, row.seq) == (after.txid, after.seq) => n,
                _ => 0,
            };
            let ids: Vec<&str> = row.record_ids.split(',').collect();
            for (i, id) in ids.iter().enumerate().skip(skip) {
                let consumed = (i + 1 < ids.len()).then_some(i + 1);
                let pos = Pos {
                    txid: row.txid,
                    seq: row.seq,
                    consumed,
                };
                out.push((pos, row.record_type.clone(), (*id).to_owned()));
                if out.len() >= want {
                    return Ok(out);
                }
            }
        }
        match rows.last() {
            Some(last) if rows.len() == fetch => from = (last.txid, last.seq),
            _ => return Ok(out),
        }
    }
}

pub fn pull(
    conn: &mut DbConn,
    principal: &Principal,
    cursor: Option<&str>,
    limit: Option<i64>,
) -> AppResult<Page> {
    authorize(conn, principal, Action::Pull)?;
    let limit = limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(AppError::BadRequest(format!(
            "limit must be within 1..={MAX_LIMIT}"
        )));
    }
    let after = match cursor {
        Some(c) if !c.is_empty() => decode(c)?,
        _ => START,
    };
    let scope = principal.scope_ids();
    // A page left empty only because a transaction older than the waiting changes is still
    // running: wait a little for it rather than send the phone straight back.
    let mut waits = 0;
    loop {
        let (response, held_back) = crate::db::tx::snapshot(conn, |conn| page(conn, &scope, after, limit))?;
        if !(held_back && response.changes.is_empty()) || waits >= HELD_BACK_WAITS {
            return Ok(response);
        }
        waits += 1;
        std::thread::sleep(std::time::Duration::from_millis(40));
    }
}

/// How many times (of 40 ms) a pull waits for the horizon before answering an empty page.
const HELD_BACK_WAITS: u32 = 25;

/// One page, read from one snapshot, and whether committed changes wait behind the horizon
/// (then `has_more` is true: the phone must come back for them).
fn page(conn: &mut DbConn, scope: &[String], after: Pos, limit: i64) -> AppResult<(Page, bool)> {
    let horizon = db::sync::pg_horizon(conn)?;
    let limit = usize::try_from(limit).unwrap_or(0);
    let mut rows = entries_after(conn, scope, after, horizon, limit + 1)?;
    let mut has_more = rows.len() > limit;
    let held_back = match horizon {
        Some(h) if !has_more => db::sync::any_change_from(conn, scope, (after.txid, after.seq), h)?,
        _ => false,
    };
    has_more |= held_back;
    rows.truncate(limit);
    let next = rows.last().map_or(after, |r| r.0);

    // A record changed twice in the page is sent once, at its last position.
    let mut last_at: HashMap<(&str, &str), usize> = HashMap::new();
    for (i, (_, record_type, id)) in rows.iter().enumerate() {
        last_at.insert((record_type.as_str(), id.as_str()), i);
    }
    let ids = |t: RecordType| -> Vec<String> {
        rows.iter()
            .filter(|r| r.1 == t.as_str())
            .map(|r| r.2.clone())
            .collect::<HashSet<_>>()
            .into_iter()
            .collect()
    };
    let mut records: HashMap<(RecordType, String), Pulled> = HashMap::new();
    for row in db::records::households_to_pull(conn, &ids(RecordType::Household))? {
        records.insert((RecordType::Household, row.id.clone()), Pulled::Household(row));
    }
    for row in db::records::members_to_pull(conn, &ids(RecordType::Member))? {
        records.insert((RecordType::Member, row.id.clone()), Pulled::Member(row));
    }
    let villages: Vec<String> = records
        .values()
        .filter_map(|r| r.village().map(str::to_owned))
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let visible: HashSet<String> = db::units::covered(conn, scope, &villages)?.into_iter().collect();

    let mut changes = Vec::with_capacity(rows.len());
    for (i, (_, record_type, record_id)) in rows.iter().enumerate() {
        if last_at.get(&(record_type.as_str(), record_id.as_str())) != Some(&i) {
            continue;
        }
        let record_type: RecordType = record_type.parse().map_err(AppError::Internal)?;
        // Each record is sent once (at its last position), so its row moves into the page.
        let Some(record) = records.remove(&(record_type, record_id.clone())) else {
            continue;
        };
        changes.push(SentChange::of(record, &visible));
    }
    Ok((
        Page {
            changes,
            cursor: encode(next),
            has_more,
        },
        held_back,
    ))
}

/// A record as read for a pull.
enum Pulled {
    Household(PulledHousehold),
    Member(PulledMember),
}

impl Pulled {
    /// The village the record is pulled from (None: a member waiting for its household).
    fn village(&self) -> Option<&str> {
        match self {
            Pulled::Household(h) => Some(&h.village_id),
            Pulled::Member(m) => m.village_id.as_deref(),
        }
    }
}

/// One page of a pull: [`hamlet_shared::sync::PullResponse`]'s wire shape, serialised straight
/// from the rows read (no JSON trees: a page holds up to 5,000 records).
#[derive(Serialize)]
pub struct Page {
    changes: Vec<SentChange>,
    cursor: String,
    has_more: bool,
}

/// One change of a page ([`hamlet_shared::sync::Change`] on the wire).
#[derive(Serialize)]
struct SentChange {
    #[serde(rename = "type")]
    record_type: RecordType,
    id: String,
    version: i64,
    deleted: bool,
    fields: SentFields,
}

/// The whole record when live; only its placement when deleted or out of the puller's scope.
#[derive(Serialize)]
#[serde(untagged)]
enum SentFields {
    Household(HouseholdFields),
    Member(MemberFields),
    Placement(BTreeMap<&'static str, String>),
}

/// A household's fields as the contract names them.
#[derive(Serialize)]
struct HouseholdFields {
    village_id: String,
    head_name: String,
    address: Option<String>,
    fixed_broadband: String,
    surveyed_on: Option<String>,
}

/// A member's fields as the contract names them.
#[derive(Serialize)]
struct MemberFields {
    household_id: String,
    full_name: String,
    birth_year: i32,
    sex: Option<String>,
    owns_smartphone: String,
    has_transaction_account: String,
    vneid_level2: String,
    uses_online_public_services: String,
    uses_cashless_payment: String,
    has_digital_signature: String,
}

impl SentChange {
    fn of(record: Pulled, visible: &HashSet<String>) -> Self {
        let in_scope = record.village().is_some_and(|v| visible.contains(v));
        let placement =
            |field: &'static str, value: String| SentFields::Placement(BTreeMap::from([(field, value)]));
        match record {
            Pulled::Household(h) => {
                let deleted = h.deleted_us.is_some() || !in_scope;
                let fields = if deleted {
                    placement(RecordType::Household.placement_field(), h.village_id)
                } else {
                    SentFields::Household(HouseholdFields {
                        village_id: h.village_id,
                        head_name: h.head_name,
                        address: h.address,
                        fixed_broadband: h.fixed_broadband,
                        surveyed_on: h.surveyed_on,
                    })
                };
                Self {
                    record_type: RecordType::Household,
                    id: h.id,
                    version: h.version,
                    deleted,
                    fields,
                }
            }
            Pulled::Member(m) => {
                let deleted = m.deleted_us.is_some() || !in_scope;
                let fields = if deleted {
                    placement(RecordType::Member.placement_field(), m.household_id)
                } else {
                    SentFields::Member(MemberFields {
                        household_id: m.household_id,
                        full_name: m.full_name,
                        birth_year: m.birth_year,
                        sex: m.sex,
                        owns_smartphone: m.owns_smartphone,
                        has_transaction_account: m.has_transaction_account,
                        vneid_level2: m.vneid_level2,
                        uses_online_public_services: m.uses_online_public_services,
                        uses_cashless_payment: m.uses_cashless_payment,
                        has_digital_signature: m.has_digital_signature,
                    })
                };
                Self {
                    record_type: RecordType::Member,
                    id: m.id,
                    version: m.version,
                    deleted,
                    fields,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_roundtrip_and_reject_garbage() {
        let pos = |txid, seq, consumed| Pos { txid, seq, consumed };
        for p in [
            START,
            pos(0, 17, None),
            pos(123_456_789, 42, None),
            pos(5, 6, Some(199)),
        ] {
            assert_eq!(decode(&encode(p)).unwrap(), p);
        }
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        for bad in [
            String::new(),
            "x".into(),
            "!!!".into(),
            b64("2.1.1"),
            b64("1.x.2"),
            b64("1.1"),
            b64("1.1.2.3"),
            b64("2.1.2"),
            b64("2.1.2.x"),
            b64("2.1.2.3.4"),
        ] {
            assert!(decode(&bad).is_err(), "{bad}");
        }
    }
}
