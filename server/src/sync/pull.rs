//! `GET /api/v1/sync/pull`: the change feed of the caller's scope, behind an opaque cursor.
//!
//! Changes are read in (transaction id, sequence) order, and on PostgreSQL only from
//! transactions older than the oldest one still running: a change whose transaction commits
//! after a pull can then never sit behind that pull's cursor. Each change is sent as the
//! record's current state; a record no longer in scope is sent as deleted with its placement.

use super::store;
use crate::auth::{Action, Principal, authorize};
use crate::db::{self, DbConn};
use crate::error::{AppError, AppResult};
use base64::Engine;
use hamlet_shared::RecordType;
use hamlet_shared::sync::{Change, PullResponse};
use std::collections::{HashMap, HashSet};

pub const DEFAULT_LIMIT: i64 = 500;
pub const MAX_LIMIT: i64 = 5000;

/// Position before every change.
const START: (i64, i64) = (-1, -1);

fn encode(pos: (i64, i64)) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("1.{}.{}", pos.0, pos.1))
}

fn decode(cursor: &str) -> AppResult<(i64, i64)> {
    let bad = || AppError::BadRequest("invalid cursor: pass back the cursor of a previous pull".to_owned());
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| bad())?;
    let text = String::from_utf8(raw).map_err(|_| bad())?;
    match text.split('.').collect::<Vec<_>>().as_slice() {
        ["1", txid, seq] => Ok((txid.parse().map_err(|_| bad())?, seq.parse().map_err(|_| bad())?)),
        _ => Err(bad()),
    }
}

pub fn pull(
    conn: &mut DbConn,
    principal: &Principal,
    cursor: Option<&str>,
    limit: Option<i64>,
) -> AppResult<PullResponse> {
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
fn page(
    conn: &mut DbConn,
    scope: &[String],
    after: (i64, i64),
    limit: i64,
) -> AppResult<(PullResponse, bool)> {
    let horizon = db::sync::pg_horizon(conn)?;
    let mut rows = db::sync::changes_after(conn, scope, after, horizon, limit + 1)?;
    let mut has_more = rows.len() as i64 > limit;
    let held_back = match horizon {
        Some(h) if !has_more => db::sync::any_change_from(conn, scope, after, h)?,
        _ => false,
    };
    has_more |= held_back;
    rows.truncate(limit as usize);
    let next = rows.last().map_or(after, |r| (r.txid, r.seq));

    // A record changed twice in the page is sent once, at its last position.
    let mut last_at: HashMap<(&str, &str), usize> = HashMap::new();
    for (i, r) in rows.iter().enumerate() {
        last_at.insert((r.record_type.as_str(), r.record_id.as_str()), i);
    }
    let ids = |t: RecordType| -> Vec<String> {
        rows.iter()
            .filter(|r| r.record_type == t.as_str())
            .map(|r| r.record_id.clone())
            .collect::<HashSet<_>>()
            .into_iter()
            .collect()
    };
    // What a pull sends of each record: fields, version, placement (no merge clocks to parse).
    struct Sent {
        fields: serde_json::Map<String, serde_json::Value>,
        version: i64,
        deleted: bool,
        village: Option<String>,
        placement: &'static str,
    }
    let mut records: HashMap<(RecordType, String), Sent> = HashMap::new();
    for row in db::records::households_by_ids(conn, &ids(RecordType::Household))? {
        let sent = Sent {
            fields: store::household_fields(&row),
            version: row.version,
            deleted: row.deleted_us.is_some(),
            village: Some(row.village_id),
            placement: RecordType::Household.placement_field(),
        };
        records.insert((RecordType::Household, row.id), sent);
    }
    for row in db::records::members_by_ids(conn, &ids(RecordType::Member))? {
        let sent = Sent {
            fields: store::member_fields(&row),
            version: row.version,
            deleted: row.deleted_us.is_some(),
            village: row.village_id,
            placement: RecordType::Member.placement_field(),
        };
        records.insert((RecordType::Member, row.id), sent);
    }
    let villages: Vec<String> = records
        .values()
        .filter_map(|r| r.village.clone())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let visible: HashSet<String> = db::units::covered(conn, scope, &villages)?.into_iter().collect();

    let mut changes = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        if last_at.get(&(r.record_type.as_str(), r.record_id.as_str())) != Some(&i) {
            continue;
        }
        let record_type: RecordType = r.record_type.parse().map_err(AppError::Internal)?;
        // Each record is sent once (at its last position), so its fields move into the page.
        let Some(mut record) = records.remove(&(record_type, r.record_id.clone())) else {
            continue;
        };
        let in_scope = record.village.as_ref().is_some_and(|v| visible.contains(v));
        let deleted = record.deleted || !in_scope;
        if deleted {
            let place = record.fields.remove(record.placement).unwrap_or_default();
            record.fields = std::iter::once((record.placement.to_owned(), place)).collect();
        }
        changes.push(Change {
            record_type,
            id: r
                .record_id
                .parse()
                .map_err(|_| AppError::Internal("bad record id".into()))?,
            version: record.version,
            deleted,
            fields: record.fields,
        });
    }
    Ok((
        PullResponse {
            changes,
            cursor: encode(next),
            has_more,
        },
        held_back,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_roundtrip_and_reject_garbage() {
        for pos in [START, (0, 17), (123_456_789, 42)] {
            assert_eq!(decode(&encode(pos)).unwrap(), pos);
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
        ] {
            assert!(decode(&bad).is_err(), "{bad}");
        }
    }
}
