//! The outbox: local edits as mutations with ids that are never reused or skipped.
//!
//! Every function runs inside the caller's transaction. An id is taken from the state row's
//! counter and its row written in the same transaction, so a crash leaves either both or
//! neither. A row that was sent once is never changed again (the server may hold it under its
//! id); only unsent rows are folded together.

use crate::clock;
use crate::error::{Error, Result};
use crate::schema::{outbox, state};
use crate::store::{load_state, now_us, parse_object, parse_type, parse_uuid, server_copy};
use diesel::prelude::*;
use diesel::sqlite::SqliteConnection;
use hamlet_shared::records::RecordType;
use hamlet_shared::sync::{Mutation, MutationStatus, Op, PushResponse, PushSummary};
use hamlet_shared::{ErrorDetail, Hlc};
use serde_json::{Map, Value};
use std::collections::HashMap;
use uuid::Uuid;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = outbox)]
#[diesel(check_for_backend(diesel::sqlite::Sqlite))]
struct OutboxRow {
    mutation_id: i64,
    record_type: String,
    record_id: String,
    op: String,
    base_version: i64,
    hlc: String,
    fields: String,
    sent: bool,
    rejected: bool,
    errors: Option<String>,
    created_us: i64,
}

/// One outbox entry: a pending mutation, or a rejected one with the server's reasons.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct OutboxEntry {
    pub mutation_id: i64,
    #[serde(rename = "type")]
    pub record_type: RecordType,
    pub record_id: Uuid,
    pub op: Op,
    pub base_version: i64,
    #[serde(serialize_with = "as_text")]
    pub hlc: Hlc,
    pub fields: Map<String, Value>,
    /// Sent at least once (its answer may have been lost), so it is never changed again.
    pub sent: bool,
    pub rejected: bool,
    /// The server's reasons, for a rejected mutation.
    pub errors: Vec<ErrorDetail>,
}

fn as_text<S: serde::Serializer>(h: &Hlc, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.collect_str(h)
}

fn op_str(op: Op) -> &'static str {
    match op {
        Op::Upsert => "upsert",
        Op::Delete => "delete",
    }
}

impl TryFrom<OutboxRow> for OutboxEntry {
    type Error = Error;
    fn try_from(r: OutboxRow) -> Result<Self> {
        Ok(Self {
            mutation_id: r.mutation_id,
            record_type: parse_type(&r.record_type)?,
            record_id: parse_uuid(&r.record_id)?,
            op: match r.op.as_str() {
                "upsert" => Op::Upsert,
                "delete" => Op::Delete,
                other => return Err(Error::Store(format!("bad op {other:?} in the outbox"))),
            },
            base_version: r.base_version,
            hlc: r
                .hlc
                .parse()
                .map_err(|e| Error::Store(format!("bad clock in the outbox: {e}")))?,
            fields: parse_object(&r.fields)?,
            sent: r.sent,
            rejected: r.rejected,
            errors: match r.errors {
                Some(e) => serde_json::from_str(&e).map_err(|e| Error::Store(e.to_string()))?,
                None => Vec::new(),
            },
        })
    }
}

impl OutboxEntry {
    /// The mutation as it goes on the wire.
    pub fn mutation(&self) -> Mutation {
        Mutation {
            mutation_id: self.mutation_id,
            record_type: self.record_type,
            id: self.record_id,
            op: self.op,
            base_version: self.base_version,
            hlc: self.hlc,
            fields: self.fields.clone(),
        }
    }
}

/// A local edit about to enter the outbox.
#[derive(Debug, Clone)]
pub(crate) struct Edit {
    pub record_type: RecordType,
    pub id: Uuid,
    pub op: Op,
    /// The server copy's version when the edit was made (0 for a new record).
    pub base_version: i64,
    pub fields: Map<String, Value>,
}

fn rows_of_record(c: &mut SqliteConnection, t: RecordType, id: Uuid) -> Result<Vec<OutboxRow>> {
    Ok(outbox::table
        .filter(outbox::record_type.eq(t.as_str()))
        .filter(outbox::record_id.eq(id.to_string()))
        .filter(outbox::rejected.eq(false))
        .order(outbox::mutation_id)
        .select(OutboxRow::as_select())
        .load(c)?)
}

fn json(v: &Map<String, Value>) -> String {
    Value::Object(v.clone()).to_string()
}

/// Writes `edit` to the outbox with a fresh clock reading. Returns the id of the mutation that
/// now carries it, or `None` when it cancelled an unsent create (both are gone).
///
/// Unsent edits of one record fold into one mutation (fields merged, the newest clock, the
/// original base): sent separately from one base, the second would only be judged concurrent
/// with the first.
pub(crate) fn enqueue(c: &mut SqliteConnection, edit: Edit, now_ms: i64) -> Result<Option<i64>> {
    let hlc = clock::tick(c, now_ms)?.to_string();
    let rows = rows_of_record(c, edit.record_type, edit.id)?;
    if let Some(last) = rows.last().filter(|r| !r.sent) {
        let target = outbox::table.find(last.mutation_id);
        match (last.op.as_str(), edit.op) {
            ("upsert", Op::Upsert) => {
                let mut fields = parse_object(&last.fields)?;
                fields.extend(edit.fields);
                diesel::update(target)
                    .set((outbox::fields.eq(json(&fields)), outbox::hlc.eq(hlc)))
                    .execute(c)?;
                return Ok(Some(last.mutation_id));
            }
            ("upsert", Op::Delete) => {
                let never_on_server = rows.len() == 1
                    && last.base_version == 0
                    && server_copy(c, edit.record_type, edit.id)?.is_none();
                if never_on_server {
                    diesel::delete(target).execute(c)?;
                    return Ok(None);
                }
                diesel::update(target)
                    .set((
                        outbox::op.eq("delete"),
                        outbox::fields.eq("{}"),
                        outbox::hlc.eq(hlc),
                    ))
                    .execute(c)?;
                return Ok(Some(last.mutation_id));
            }
            _ => {}
        }
    }
    let id = load_state(c)?.next_mutation_id;
    diesel::insert_into(outbox::table)
        .values(OutboxRow {
            mutation_id: id,
            record_type: edit.record_type.as_str().to_owned(),
            record_id: edit.id.to_string(),
            op: op_str(edit.op).to_owned(),
            base_version: edit.base_version,
            hlc,
            fields: json(&edit.fields),
            sent: false,
            rejected: false,
            errors: None,
            created_us: now_us(),
        })
        .execute(c)?;
    diesel::update(state::table)
        .set(state::next_mutation_id.eq(id + 1))
        .execute(c)?;
    Ok(Some(id))
}

/// The next `limit` pending mutations in id order, marked as sent before they leave.
pub(crate) fn take_batch(c: &mut SqliteConnection, limit: usize) -> Result<Vec<Mutation>> {
    let rows: Vec<OutboxRow> = outbox::table
        .filter(outbox::rejected.eq(false))
        .order(outbox::mutation_id)
        .limit(limit as i64)
        .select(OutboxRow::as_select())
        .load(c)?;
    let ids: Vec<i64> = rows.iter().map(|r| r.mutation_id).collect();
    diesel::update(outbox::table.filter(outbox::mutation_id.eq_any(&ids)))
        .set(outbox::sent.eq(true))
        .execute(c)?;
    rows.into_iter()
        .map(|r| OutboxEntry::try_from(r).map(|e| e.mutation()))
        .collect()
}

/// What one push's answer did to the outbox.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    /// The server's counts, `duplicate` included.
    pub summary: PushSummary,
    /// Mutations now rejected for good (a duplicate of a rejected one included).
    pub rejected: usize,
    /// Mutations that lost every field to a concurrent edit (kept for admin review).
    pub conflicts: usize,
    /// Sent mutations the answer did not mention; they stay pending.
    pub unanswered: Vec<i64>,
}

/// Settles a push answer: acknowledged mutations (applied, conflict) leave the outbox, rejected
/// ones stay marked with the server's errors, and the clock moves past `server_time`.
pub(crate) fn apply_results(
    c: &mut SqliteConnection,
    sent: &[i64],
    answer: &PushResponse,
    now_ms: i64,
) -> Result<BatchOutcome> {
    let by_id: HashMap<i64, _> = answer.results.iter().map(|r| (r.mutation_id, r)).collect();
    let mut out = BatchOutcome {
        summary: answer.summary.clone(),
        ..BatchOutcome::default()
    };
    for id in sent {
        let Some(result) = by_id.get(id) else {
            out.unanswered.push(*id);
            continue;
        };
        // A duplicate is a replay of the first outcome: settle it as that outcome.
        let status = match result.status {
            MutationStatus::Duplicate => result.original_status.unwrap_or(MutationStatus::Applied),
            s => s,
        };
        let row = outbox::table.find(*id);
        match status {
            MutationStatus::Rejected => {
                let errors =
                    serde_json::to_string(&result.errors).map_err(|e| Error::Store(e.to_string()))?;
                diesel::update(row)
                    .set((outbox::rejected.eq(true), outbox::errors.eq(errors)))
                    .execute(c)?;
                out.rejected += 1;
            }
            MutationStatus::Conflict => {
                diesel::delete(row).execute(c)?;
                out.conflicts += 1;
            }
            MutationStatus::Applied | MutationStatus::Duplicate => {
                diesel::delete(row).execute(c)?;
            }
        }
    }
    if let Ok(server_ms) = hamlet_shared::hlc::parse_wall_ms(&answer.server_time) {
        clock::receive(c, server_ms, now_ms)?;
    }
    Ok(out)
}

/// Outbox entries in id order: the pending ones, or the rejected ones.
pub(crate) fn entries(c: &mut SqliteConnection, rejected: bool) -> Result<Vec<OutboxEntry>> {
    outbox::table
        .filter(outbox::rejected.eq(rejected))
        .order(outbox::mutation_id)
        .select(OutboxRow::as_select())
        .load(c)?
        .into_iter()
        .map(OutboxEntry::try_from)
        .collect()
}

/// Pending entries of one record, in id order.
pub(crate) fn pending_of(c: &mut SqliteConnection, t: RecordType, id: Uuid) -> Result<Vec<OutboxEntry>> {
    rows_of_record(c, t, id)?
        .into_iter()
        .map(OutboxEntry::try_from)
        .collect()
}

/// Forgets rejected mutations: one by id, or all. Returns how many went.
pub(crate) fn dismiss(c: &mut SqliteConnection, mutation_id: Option<i64>) -> Result<usize> {
    let q = outbox::table.filter(outbox::rejected.eq(true));
    Ok(match mutation_id {
        Some(id) => diesel::delete(q.filter(outbox::mutation_id.eq(id))).execute(c)?,
        None => diesel::delete(q).execute(c)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Store, apply_change};
    use hamlet_shared::sync::{Change, MutationResult};
    use hamlet_shared::{ErrorCode, ErrorDetail};
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    fn edit(id: Uuid, op: Op, base_version: i64, fields: Value) -> Edit {
        Edit {
            record_type: RecordType::Household,
            id,
            op,
            base_version,
            fields: obj(fields),
        }
    }

    fn open(dir: &tempfile::TempDir) -> Store {
        Store::open(&dir.path().join("s.db")).unwrap()
    }

    fn result(mutation_id: i64, status: MutationStatus) -> MutationResult {
        MutationResult {
            mutation_id,
            id: None,
            status,
            version: Some(1),
            conflicts: vec![],
            errors: vec![],
            original_status: None,
        }
    }

    #[test]
    fn ids_continue_across_reopen_and_the_clock_never_goes_back() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let mut s = open(&dir);
        let device = s.device_id().unwrap();
        let first = s
            .write(|c| {
                enqueue(
                    c,
                    edit(a, Op::Upsert, 0, json!({"head_name": "A"})),
                    1_800_000_000_000,
                )
            })
            .unwrap();
        drop(s);
        let mut s = open(&dir);
        assert_eq!(s.device_id().unwrap(), device, "the device id is kept");
        // The wall clock went backwards in between: the reading still advances.
        let second = s
            .write(|c| {
                enqueue(
                    c,
                    edit(b, Op::Upsert, 0, json!({"head_name": "B"})),
                    1_700_000_000_000,
                )
            })
            .unwrap();
        assert_eq!((first, second), (Some(1), Some(2)));
        let rows = s.read(|c| entries(c, false)).unwrap();
        assert!(rows[1].hlc > rows[0].hlc, "{:?} > {:?}", rows[1].hlc, rows[0].hlc);
        assert_eq!(rows[1].hlc.node, device);
        assert_eq!(s.state().unwrap().next_mutation_id, 3);
    }

    #[test]
    fn unsent_edits_fold_and_sent_ones_are_never_changed() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = open(&dir);
        let h = Uuid::now_v7();
        let now = 1_700_000_000_000;
        s.write(|c| {
            enqueue(
                c,
                edit(h, Op::Upsert, 0, json!({"head_name": "A", "village_id": "v"})),
                now,
            )
        })
        .unwrap();
        let folded = s
            .write(|c| enqueue(c, edit(h, Op::Upsert, 0, json!({"head_name": "B"})), now))
            .unwrap();
        assert_eq!(folded, Some(1));
        let rows = s.read(|c| entries(c, false)).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].fields, obj(json!({"head_name": "B", "village_id": "v"})));

        // Once sent, a row stays as it went out: the next edit is a new mutation.
        let batch = s.write(|c| take_batch(c, 10)).unwrap();
        assert_eq!(batch.len(), 1);
        let next = s
            .write(|c| enqueue(c, edit(h, Op::Upsert, 0, json!({"head_name": "C"})), now))
            .unwrap();
        assert_eq!(next, Some(2));
        // A delete folds into the unsent upsert, which is no longer the record's only row.
        let del = s
            .write(|c| enqueue(c, edit(h, Op::Delete, 0, json!({})), now))
            .unwrap();
        assert_eq!(del, Some(2));
        let rows = s.read(|c| entries(c, false)).unwrap();
        assert_eq!((rows.len(), rows[0].sent, rows[1].op), (2, true, Op::Delete));
        assert_eq!(rows[0].fields["head_name"], "B", "the sent row is unchanged");
    }

    #[test]
    fn deleting_an_unsent_create_drops_both() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = open(&dir);
        let (h, kept) = (Uuid::now_v7(), Uuid::now_v7());
        s.write(|c| enqueue(c, edit(h, Op::Upsert, 0, json!({"head_name": "A"})), 1))
            .unwrap();
        assert_eq!(
            s.write(|c| enqueue(c, edit(h, Op::Delete, 0, json!({})), 1))
                .unwrap(),
            None
        );
        assert!(s.read(|c| entries(c, false)).unwrap().is_empty());
        // The dropped id is not handed out again.
        let id = s
            .write(|c| enqueue(c, edit(kept, Op::Upsert, 0, json!({"head_name": "K"})), 1))
            .unwrap();
        assert_eq!(id, Some(2));

        // A record the server has (a pulled copy) gets a real delete.
        let known = Uuid::now_v7();
        s.write(|c| {
            apply_change(
                c,
                &Change {
                    record_type: RecordType::Household,
                    id: known,
                    version: 3,
                    deleted: false,
                    fields: obj(json!({"head_name": "K"})),
                },
            )
        })
        .unwrap();
        s.write(|c| enqueue(c, edit(known, Op::Upsert, 3, json!({"head_name": "L"})), 1))
            .unwrap();
        assert_eq!(
            s.write(|c| enqueue(c, edit(known, Op::Delete, 3, json!({})), 1))
                .unwrap(),
            Some(3)
        );
    }

    #[test]
    fn answers_settle_the_outbox() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = open(&dir);
        for _ in 0..5 {
            s.write(|c| {
                enqueue(
                    c,
                    edit(Uuid::now_v7(), Op::Upsert, 0, json!({"head_name": "x"})),
                    1,
                )
            })
            .unwrap();
        }
        let sent: Vec<i64> = s
            .write(|c| take_batch(c, 10))
            .unwrap()
            .iter()
            .map(|m| m.mutation_id)
            .collect();
        let mut rejected = result(3, MutationStatus::Rejected);
        rejected.errors = vec![ErrorDetail::field(
            "village_id",
            ErrorCode::Forbidden,
            "outside your scope",
        )];
        let mut dup_of_rejected = result(4, MutationStatus::Duplicate);
        dup_of_rejected.original_status = Some(MutationStatus::Rejected);
        let mut dup_of_applied = result(2, MutationStatus::Duplicate);
        dup_of_applied.original_status = Some(MutationStatus::Applied);
        let answer = PushResponse {
            results: vec![
                result(1, MutationStatus::Applied),
                dup_of_applied,
                rejected,
                dup_of_rejected,
            ],
            summary: PushSummary::default(),
            server_time: "2099-01-01T00:00:00.000Z".to_owned(),
        };
        let out = s
            .write(|c| apply_results(c, &sent, &answer, 1_700_000_000_000))
            .unwrap();
        assert_eq!((out.rejected, out.unanswered.clone()), (2, vec![5]));
        let pending = s.read(|c| entries(c, false)).unwrap();
        assert_eq!(pending.iter().map(|e| e.mutation_id).collect::<Vec<_>>(), [5]);
        let rejected = s.read(|c| entries(c, true)).unwrap();
        assert_eq!(rejected.len(), 2);
        assert_eq!(rejected[0].errors[0].code, ErrorCode::Forbidden);
        // The clock moved past the server's time.
        let next = s
            .write(|c| {
                enqueue(
                    c,
                    edit(Uuid::now_v7(), Op::Upsert, 0, json!({"head_name": "y"})),
                    1,
                )
            })
            .unwrap();
        let last = s.read(|c| entries(c, false)).unwrap();
        assert_eq!(next, Some(6));
        assert!(
            last[1].hlc.wall_ms >= hamlet_shared::hlc::parse_wall_ms("2099-01-01T00:00:00.000Z").unwrap()
        );
        assert_eq!(s.write(|c| dismiss(c, None)).unwrap(), 2);
    }
}
