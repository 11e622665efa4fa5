//! `POST /api/v1/sync/push`: idempotent, per-mutation outcomes, one transaction per request.

use super::merge::{Clash, Fields, Outcome, Write, merge_delete, merge_upsert};
use super::store::{self, Stored};
use super::{Ctx, StoredResult};
use crate::aggregates::tallies::{self, Tally};
use crate::auth::{Action, Principal, authorize};
use crate::db::records::{HouseholdRow, MemberRow};
use crate::db::sync::BatchRow;
use crate::db::{self, DbConn};
use crate::error::{AppError, AppResult};
use foldhash::{HashMap, HashMapExt, HashSet};
use hamlet_shared::sync::{
    CheckedMutation, MutationResult, MutationStatus, Op, PushResponse, PushSummary, Rejection, read_mutation,
};
use hamlet_shared::{ErrorCode, ErrorDetail, RecordType, UnitLevel};
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;
use std::collections::BTreeSet;
use uuid::Uuid;

/// How often a push transaction is retried after losing a race with another one.
const MAX_ATTEMPTS: u32 = 5;

/// The push body as the server reads it (the contract's `PushRequest`): each mutation is kept
/// as its JSON text and parsed on its own, so that one the server cannot represent (a number
/// beyond the range of a float, say) is rejected alone instead of failing the whole request.
#[derive(Debug, Deserialize)]
pub struct PushBody {
    pub device_id: Uuid,
    pub mutations: Vec<Box<RawValue>>,
}

/// One mutation of a push, parsed and validated once (the transaction may run more than once).
pub struct Incoming {
    /// `None` when it is not a positive integer: the envelope check refuses the request.
    mutation_id: Option<i64>,
    parsed: Result<CheckedMutation, Rejection>,
}

impl Incoming {
    /// The idempotency key, once [`check_envelope`] has passed.
    fn key(&self) -> i64 {
        self.mutation_id.unwrap_or_default()
    }

    /// Reads and validates one mutation of `device`'s push (which reads nothing but the
    /// mutation; see [`read_mutation`]).
    fn parse(raw: &RawValue, device: Uuid, current_year: i32) -> Self {
        let (mutation_id, parsed) = read_mutation(raw.get(), device, current_year);
        Self { mutation_id, parsed }
    }
}

/// Parses and validates every mutation of a push body.
pub fn parse_body(body: &PushBody, ctx: &Ctx) -> Vec<Incoming> {
    body.mutations
        .iter()
        .map(|raw| Incoming::parse(raw, ctx.principal.device_id, ctx.current_year))
        .collect()
}

/// Envelope rules: role, device and size, checked before any mutation is parsed; then
/// [`check_mutation_ids`]. Any failure refuses the whole request.
pub fn check_envelope(principal: &Principal, body: &PushBody, max_mutations: usize) -> AppResult<()> {
    crate::auth::authz::require_role(principal, Action::Push)?;
    if body.device_id != principal.device_id {
        return Err(AppError::Forbidden(
            "device_id is not the device of this session".to_owned(),
        ));
    }
    if body.mutations.len() > max_mutations {
        return Err(AppError::invalid(ErrorDetail::field(
            "mutations",
            ErrorCode::OutOfRange,
            format!(
                "at most {max_mutations} mutations per push, got {}",
                body.mutations.len()
            ),
        )));
    }
    Ok(())
}

/// The envelope's last rule: every mutation id readable, positive and increasing.
pub fn check_mutation_ids(mutations: &[Incoming]) -> AppResult<()> {
    let mut details = Vec::new();
    let mut last = 0;
    for (i, m) in mutations.iter().enumerate() {
        match m.mutation_id {
            None => details.push(ErrorDetail::field(
                format!("mutations[{i}].mutation_id"),
                ErrorCode::InvalidValue,
                "mutation_id must be a positive integer",
            )),
            Some(id) if id <= last => details.push(ErrorDetail::field(
                format!("mutations[{i}].mutation_id"),
                ErrorCode::InvalidValue,
                "mutation ids must increase within a push",
            )),
            Some(id) => last = id,
        }
    }
    if details.is_empty() {
        Ok(())
    } else {
        Err(AppError::invalid_many(details))
    }
}

/// Runs a whole push (mutations that passed [`check_envelope`]), retrying the transaction when
/// it lost a race (deadlock, a concurrent replay of the same batch, a busy SQLite).
pub fn push(conn: &mut DbConn, ctx: &Ctx, incoming: &[Incoming]) -> AppResult<PushResponse> {
    authorize(conn, &ctx.principal, Action::Push)?;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let result = crate::db::tx::write(conn, |conn| run_batch(conn, ctx, incoming));
        match result {
            Err(AppError::Contention(_) | AppError::Conflict(_)) if attempt < MAX_ATTEMPTS => {
                std::thread::sleep(std::time::Duration::from_millis(10 * u64::from(attempt)));
            }
            Err(AppError::Conflict(m)) => return Err(AppError::Contention(m)),
            other => return other,
        }
    }
}

fn run_batch(conn: &mut DbConn, ctx: &Ctx, mutations: &[Incoming]) -> AppResult<PushResponse> {
    let device = ctx.principal.device_id.to_string();
    db::sync::lock_device(conn, &device)?;
    let ids: Vec<i64> = mutations.iter().map(Incoming::key).collect();
    let mut seen: HashMap<i64, StoredResult> = HashMap::new();
    if let (Some(&first), Some(&last)) = (ids.iter().min(), ids.iter().max()) {
        let wanted: HashSet<i64> = ids.iter().copied().collect();
        for row in db::sync::batches_overlapping(conn, &device, first, last)? {
            for stored in StoredResult::decode_all(&row.results)? {
                if wanted.contains(&stored.mutation_id) {
                    seen.insert(stored.mutation_id, stored);
                }
            }
        }
    }
    let mut batch = Batch::new(ctx);
    batch.prefetch(conn, mutations, &seen)?;
    let mut results = Vec::with_capacity(mutations.len());
    let mut summary = PushSummary::default();
    let mut stored = Vec::new();
    for incoming in mutations {
        let mutation_id = incoming.key();
        let result = match seen.remove(&mutation_id) {
            Some(first) => first.replay(),
            None => {
                let result = batch.process(conn, incoming)?;
                stored.push(StoredResult::of(&result));
                result
            }
        };
        summary.count(result.status);
        results.push(result);
    }
    batch.flush(conn)?;
    // Mutation ids increase within a push (checked with the envelope).
    if let (Some(first), Some(last)) = (stored.first(), stored.last()) {
        db::sync::insert_batch(
            conn,
            &BatchRow {
                device_id: batch.device.clone(),
                first_mutation_id: first.mutation_id,
                last_mutation_id: last.mutation_id,
                results: StoredResult::encode_all(&stored)?,
                created_us: ctx.now_us,
            },
        )?;
    }
    db::sync::mark_device_synced(
        conn,
        &batch.device,
        &ctx.principal.user_id.to_string(),
        ctx.now_us,
    )?;
    Ok(PushResponse {
        results,
        summary,
        server_time: crate::clock::rfc3339(ctx.now_us),
    })
}

fn rejected(mutation_id: i64, id: Option<String>, errors: Vec<ErrorDetail>) -> MutationResult {
    MutationResult {
        mutation_id,
        id,
        status: MutationStatus::Rejected,
        version: None,
        conflicts: Vec::new(),
        errors,
        original_status: None,
    }
}

fn forbidden(message: &str) -> ErrorDetail {
    ErrorDetail::record(ErrorCode::Forbidden, message)
}

/// What one write (a push, a conflict resolution) accumulates while it runs.
pub(crate) struct Batch<'a> {
    ctx: &'a Ctx,
    device: String,
    /// Changes to log in the feed: (village, record type, id), in order.
    changes: Vec<(String, RecordType, String)>,
    conflicts: Vec<db::sync::ConflictRow>,
    /// village id -> whether the pusher's scope covers it
    scope_cache: HashMap<String, bool>,
    /// unit id -> whether it is a live village
    villages: HashMap<String, bool>,
    /// user id -> scope, for attaching members pushed by others
    user_scopes: HashMap<String, Vec<hamlet_shared::UnitId>>,
    /// (user id, village id) -> whether that user's scope covers the village
    user_villages: HashMap<(String, String), bool>,
    /// Households whose bundles this write changes, and what they counted before it.
    touched: std::collections::BTreeSet<String>,
    counted_before: Tally,
    /// Records read or written by this write: latest state, None when there is no such record.
    records: HashMap<(RecordType, String), Option<Stored>>,
    /// Household id -> its village (None: no such household), as read or written.
    household_villages: HashMap<String, Option<String>>,
    /// Prefetched bundles, read before any change: what each counted, and its members' rows.
    before: HashMap<String, Tally>,
    bundle_households: HashMap<String, HouseholdRow>,
    bundle_members: HashMap<String, Vec<MemberRow>>,
    /// Member ids of `records` by the household their latest state names.
    members_by_household: HashMap<String, BTreeSet<String>>,
    /// Records this write changed, in first-change order: [`Batch::flush`] writes their latest
    /// state (from `records`) together.
    pending: Vec<(RecordType, String)>,
    pending_keys: HashSet<(RecordType, String)>,
}

impl<'a> Batch<'a> {
    pub(crate) fn new(ctx: &'a Ctx) -> Self {
        Self {
            ctx,
            device: ctx.principal.device_id.to_string(),
            changes: Vec::new(),
            conflicts: Vec::new(),
            scope_cache: HashMap::new(),
            villages: HashMap::new(),
            user_scopes: HashMap::new(),
            user_villages: HashMap::new(),
            touched: Default::default(),
            counted_before: Tally::default(),
            records: HashMap::new(),
            household_villages: HashMap::new(),
            before: HashMap::new(),
            bundle_households: HashMap::new(),
            bundle_members: HashMap::new(),
            members_by_household: HashMap::new(),
            pending: Vec::new(),
            pending_keys: Default::default(),
        }
    }

    /// Reads, in a few statements, everything the batch's mutations will read one by one: the
    /// records they name and the bundles of every household they may touch. Locks are taken in
    /// one order for every push (the members named, then the households, each in id order), so
    /// concurrent pushes wait for each other instead of deadlocking. Anything not prefetched
    /// is still read when needed.
    fn prefetch(
        &mut self,
        conn: &mut DbConn,
        mutations: &[Incoming],
        seen: &HashMap<i64, StoredResult>,
    ) -> AppResult<()> {
        let mut household_ids = BTreeSet::new();
        let mut member_ids = BTreeSet::new();
        let mut bundle_ids = BTreeSet::new();
        for incoming in mutations {
            if seen.contains_key(&incoming.key()) {
                continue;
            }
            let Ok(m) = &incoming.parsed else {
                continue;
            };
            match m.record_type {
                RecordType::Household => {
                    household_ids.insert(m.id.to_string());
                }
                RecordType::Member => {
                    member_ids.insert(m.id.to_string());
                    if let Some(h) = m.fields.get("household_id").and_then(Value::as_str)
                        && let Ok(h) = Uuid::parse_str(h)
                    {
                        bundle_ids.insert(h.to_string());
                    }
                }
            }
        }
        let member_ids: Vec<String> = member_ids.into_iter().collect();
        for id in &member_ids {
            self.remember((RecordType::Member, id.clone()), None);
        }
        for row in db::records::members_by_ids_locked(conn, &member_ids)? {
            bundle_ids.insert(row.household_id.clone());
            self.remember(
                (RecordType::Member, row.id.clone()),
                Some(Stored::from_member(row)?),
            );
        }
        bundle_ids.extend(household_ids.iter().cloned());
        let bundle_ids: Vec<String> = bundle_ids.into_iter().collect();
        let (households, members) = db::tallies::bundles(conn, &bundle_ids, true)?;
        for id in &household_ids {
            self.records.insert((RecordType::Household, id.clone()), None);
        }
        let mut rows: HashMap<String, HouseholdRow> = HashMap::new();
        for id in &bundle_ids {
            self.household_villages.insert(id.clone(), None);
            self.bundle_members.insert(id.clone(), Vec::new());
        }
        for row in households {
            self.household_villages
                .insert(row.id.clone(), Some(row.village_id.clone()));
            if household_ids.contains(&row.id) {
                self.records.insert(
                    (RecordType::Household, row.id.clone()),
                    Some(Stored::from_household(row.clone())?),
                );
            }
            rows.insert(row.id.clone(), row);
        }
        for m in members {
            if let Some(list) = self.bundle_members.get_mut(&m.household_id) {
                list.push(m);
            }
        }
        for id in &bundle_ids {
            let household: Vec<HouseholdRow> = rows.remove(id).into_iter().collect();
            let counted = tallies::of_bundles(&household, &self.bundle_members[id]);
            self.before.insert(id.clone(), counted);
            if let Some(row) = household.into_iter().next() {
                self.bundle_households.insert(id.clone(), row);
            }
        }
        Ok(())
    }

    /// A record's latest state in this write (read and locked on first use).
    fn load(&mut self, conn: &mut DbConn, record_type: RecordType, id: &str) -> AppResult<Option<Stored>> {
        let key = (record_type, id.to_owned());
        if let Some(known) = self.records.get(&key) {
            return Ok(known.clone());
        }
        let loaded = store::load(conn, record_type, id)?;
        self.remember(key, loaded.clone());
        Ok(loaded)
    }

    /// Sets a record's latest state in this write, keeping `members_by_household` in step.
    fn remember(&mut self, key: (RecordType, String), state: Option<Stored>) {
        if key.0 == RecordType::Member {
            let household_of = |s: &Option<Stored>| {
                s.as_ref()
                    .and_then(|m| m.state.fields.get("household_id"))
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            };
            let old = self.records.get(&key).and_then(household_of);
            let new = household_of(&state);
            if old != new {
                if let Some(set) = old.and_then(|h| self.members_by_household.get_mut(&h)) {
                    set.remove(&key.1);
                }
                if let Some(h) = new {
                    self.members_by_household
                        .entry(h)
                        .or_default()
                        .insert(key.1.clone());
                }
            }
        }
        self.records.insert(key, state);
    }

    /// The village of a household (None: no such household).
    fn household_village(&mut self, conn: &mut DbConn, id: &str) -> AppResult<Option<String>> {
        if let Some(known) = self.household_villages.get(id) {
            return Ok(known.clone());
        }
        let village = db::records::household(conn, id, false)?.map(|row| row.village_id);
        self.household_villages.insert(id.to_owned(), village.clone());
        Ok(village)
    }

    /// Stores a record's new state. Rows wait for [`Batch::flush`] to be written together;
    /// every read of this write sees them through its own state.
    fn save(&mut self, record: Stored) {
        let key = (record.record_type, record.id.clone());
        if self.pending_keys.insert(key.clone()) {
            self.pending.push(key.clone());
        }
        if record.record_type == RecordType::Household {
            self.household_villages
                .insert(record.id.clone(), record.village.clone());
        }
        self.remember(key, Some(record));
    }

    /// The members naming `household`, as this write leaves them: placed in a village
    /// (`attached`) or waiting for the household.
    fn members_of(&mut self, conn: &mut DbConn, household: &str, attached: bool) -> AppResult<Vec<Stored>> {
        let rows = match self.bundle_members.get(household) {
            Some(rows) => rows.clone(),
            None => db::records::members_of_household(conn, household, attached)?,
        };
        Ok(self
            .overlay(household, rows)?
            .into_iter()
            .filter(|m| m.village.is_some() == attached)
            .collect())
    }

    /// `rows` (members of `household` as read) with this write's changes on top.
    fn overlay(&self, household: &str, rows: Vec<MemberRow>) -> AppResult<Vec<Stored>> {
        let mut out: std::collections::BTreeMap<String, Stored> = std::collections::BTreeMap::new();
        for row in rows {
            // A member this write knows is taken from its own state (below), if it still names
            // this household.
            if !self.records.contains_key(&(RecordType::Member, row.id.clone())) {
                out.insert(row.id.clone(), Stored::from_member(row)?);
            }
        }
        for id in self.members_by_household.get(household).into_iter().flatten() {
            if let Some(Some(m)) = self.records.get(&(RecordType::Member, id.clone())) {
                out.insert(id.clone(), m.clone());
            }
        }
        Ok(out.into_values().collect())
    }

    /// What the touched bundles count now: from this write's own state where the bundle was
    /// prefetched (its household row is locked, so nobody else changed it), else read back.
    /// `written_*` are the rows [`Batch::flush`] just wrote: counted as they are, not rebuilt.
    fn counted_after(
        &self,
        conn: &mut DbConn,
        ids: &[String],
        written_households: &[HouseholdRow],
        written_members: &[MemberRow],
    ) -> AppResult<Tally> {
        let now = self.ctx.now_us;
        let written_h: HashMap<&str, &HouseholdRow> =
            written_households.iter().map(|r| (r.id.as_str(), r)).collect();
        let written_m: HashMap<&str, &MemberRow> =
            written_members.iter().map(|r| (r.id.as_str(), r)).collect();
        let mut households: Vec<&HouseholdRow> = Vec::new();
        let mut members: Vec<&MemberRow> = Vec::new();
        // States this write holds but did not write (loaded, unchanged).
        let mut held_households = Vec::new();
        let mut held_members = Vec::new();
        let mut unknown = Vec::new();
        for h in ids {
            let Some(rows) = self.bundle_members.get(h) else {
                unknown.push(h.clone());
                continue;
            };
            match self.records.get(&(RecordType::Household, h.clone())) {
                Some(Some(stored)) => match written_h.get(h.as_str()) {
                    Some(row) => households.push(row),
                    None => held_households.push(stored.household_row_for_tally(now)?),
                },
                Some(None) => {}
                None => households.extend(self.bundle_households.get(h)),
            }
            // As `overlay`, without building merge states: rows this write did not touch as
            // read, then the members it left naming this household.
            for row in rows {
                if !self.records.contains_key(&(RecordType::Member, row.id.clone())) {
                    members.push(row);
                }
            }
            for id in self.members_by_household.get(h).into_iter().flatten() {
                if let Some(Some(m)) = self.records.get(&(RecordType::Member, id.clone())) {
                    match written_m.get(id.as_str()) {
                        Some(row) => members.push(row),
                        None => held_members.push(m.member_row_for_tally(now)?),
                    }
                }
            }
        }
        let (read_households, read_members) = if unknown.is_empty() {
            (Vec::new(), Vec::new())
        } else {
            db::tallies::bundles(conn, &unknown, false)?
        };
        Ok(tallies::of_bundles(
            households
                .into_iter()
                .chain(&held_households)
                .chain(&read_households),
            members.into_iter().chain(&held_members).chain(&read_members),
        ))
    }

    /// Locks a household bundle and records what it counts, before its first change in this
    /// write. Every record write calls it for each bundle the write changes.
    fn touch(&mut self, conn: &mut DbConn, household_id: &str) -> AppResult<()> {
        if self.touched.insert(household_id.to_owned()) {
            if let Some(counted) = self.before.remove(household_id) {
                self.counted_before.merge(&counted, 1);
                return Ok(());
            }
            let (households, members) = db::tallies::bundles(conn, &[household_id.to_owned()], true)?;
            self.counted_before
                .merge(&tallies::of_bundles(&households, &members), 1);
        }
        Ok(())
    }

    /// Moves the counters by what the touched bundles count now minus what they counted before,
    /// then appends the change log entries and conflicts gathered so far.
    pub(crate) fn flush(&mut self, conn: &mut DbConn) -> AppResult<()> {
        let now = self.ctx.now_us;
        let mut households = Vec::new();
        let mut members = Vec::new();
        self.pending_keys.clear();
        for key in std::mem::take(&mut self.pending) {
            let Some(Some(record)) = self.records.get(&key) else {
                return Err(AppError::Internal(format!("saved record {} vanished", key.1)));
            };
            match key.0 {
                RecordType::Household => households.push(record.household_row(now)?),
                RecordType::Member => members.push(record.member_row(now)?),
            }
        }
        db::records::upsert_households(conn, &households)?;
        db::records::upsert_members(conn, &members)?;
        if !self.touched.is_empty() {
            let ids: Vec<String> = std::mem::take(&mut self.touched).into_iter().collect();
            let after = self.counted_after(conn, &ids, &households, &members)?;
            let delta = Tally::delta(&std::mem::take(&mut self.counted_before), &after);
            db::tallies::add_to_villages(conn, &delta)?;
        }
        let changes = super::feed_rows(&std::mem::take(&mut self.changes), self.ctx.now_us);
        db::sync::insert_changes(conn, &changes)?;
        db::sync::insert_conflicts(conn, &std::mem::take(&mut self.conflicts))?;
        Ok(())
    }

    pub(crate) fn covers(&mut self, conn: &mut DbConn, village: &str) -> AppResult<bool> {
        if let Some(&ok) = self.scope_cache.get(village) {
            return Ok(ok);
        }
        let ok = match village.parse() {
            Ok(unit) => match authorize(conn, &self.ctx.principal, Action::WriteVillage(unit)) {
                Ok(()) => true,
                Err(AppError::Forbidden(_)) => false,
                Err(other) => return Err(other),
            },
            Err(_) => false,
        };
        self.scope_cache.insert(village.to_owned(), ok);
        Ok(ok)
    }

    pub(crate) fn is_village(&mut self, conn: &mut DbConn, unit: &str) -> AppResult<bool> {
        if let Some(&ok) = self.villages.get(unit) {
            return Ok(ok);
        }
        let ok = db::units::find(conn, unit)?
            .is_some_and(|u| u.retired_us.is_none() && u.level == UnitLevel::Village.as_str());
        self.villages.insert(unit.to_owned(), ok);
        Ok(ok)
    }

    /// Whether `user`'s scope (not the pusher's) covers `village`.
    fn user_covers(&mut self, conn: &mut DbConn, user: &str, village: &str) -> AppResult<bool> {
        // The pusher's own members: its scope is known and the answer cached (two queries fewer
        // for nearly every push that brings a household after its members).
        if Uuid::parse_str(user).is_ok_and(|u| &u == self.ctx.principal.user_id.as_uuid()) {
            return self.covers(conn, village);
        }
        let key = (user.to_owned(), village.to_owned());
        if let Some(&known) = self.user_villages.get(&key) {
            return Ok(known);
        }
        let covers = self.user_covers_uncached(conn, user, village)?;
        self.user_villages.insert(key, covers);
        Ok(covers)
    }

    fn user_covers_uncached(&mut self, conn: &mut DbConn, user: &str, village: &str) -> AppResult<bool> {
        if !self.user_scopes.contains_key(user) {
            let scope = db::auth::scope_of(conn, user)?
                .iter()
                .filter_map(|s| s.parse().ok())
                .collect();
            self.user_scopes.insert(user.to_owned(), scope);
        }
        let Ok(village) = village.parse() else {
            return Ok(false);
        };
        crate::auth::authz::scope_covers(conn, &self.user_scopes[user], &[village])
    }

    /// Scope rules of contract §6: a record may not be put in, or changed in, a village outside
    /// the pusher's scope. Returns the detail to reject with.
    fn check_scope(
        &mut self,
        conn: &mut DbConn,
        record_type: RecordType,
        current: Option<&Stored>,
        fields: &Fields,
    ) -> AppResult<Option<ErrorDetail>> {
        match record_type {
            RecordType::Household => {
                if let Some(village) = current.and_then(|c| c.village.clone())
                    && !self.covers(conn, &village)?
                {
                    return Ok(Some(forbidden(
                        "this household is in a village outside your scope",
                    )));
                }
                if let Some(village) = fields.get("village_id").and_then(Value::as_str) {
                    if !self.is_village(conn, village)? {
                        return Ok(Some(ErrorDetail::field(
                            "village_id",
                            ErrorCode::InvalidValue,
                            "village_id does not name a village",
                        )));
                    }
                    if !self.covers(conn, village)? {
                        return Ok(Some(ErrorDetail::field(
                            "village_id",
                            ErrorCode::Forbidden,
                            "village_id is outside your scope",
                        )));
                    }
                }
            }
            RecordType::Member => {
                if let Some(cur) = current {
                    match &cur.village {
                        Some(village) if !self.covers(conn, village)? => {
                            return Ok(Some(forbidden("this member is in a village outside your scope")));
                        }
                        None if cur.pushed_by.as_deref() != Some(&self.ctx.principal.user_id.to_string()) => {
                            return Ok(Some(forbidden(
                                "this member waits for its household; until it arrives only the user who pushed the member may change it",
                            )));
                        }
                        _ => {}
                    }
                }
                let household = fields.get("household_id").and_then(Value::as_str).or_else(|| {
                    current
                        .and_then(|c| c.state.fields.get("household_id"))
                        .and_then(Value::as_str)
                });
                if let Some(h) = household
                    && let Some(village) = self.household_village(conn, h)?
                    && !self.covers(conn, &village)?
                {
                    return Ok(Some(ErrorDetail::field(
                        "household_id",
                        ErrorCode::Forbidden,
                        "the household is in a village outside your scope",
                    )));
                }
            }
        }
        Ok(None)
    }

    fn process(&mut self, conn: &mut DbConn, incoming: &Incoming) -> AppResult<MutationResult> {
        let mutation_id = incoming.key();
        let m = match &incoming.parsed {
            Ok(m) => m,
            Err(r) => return Ok(rejected(mutation_id, r.id.clone(), r.errors.clone())),
        };
        let id = m.id.to_string();
        let fields = &m.fields;
        let current = self.load(conn, m.record_type, &id)?;
        if let Some(detail) = self.check_scope(conn, m.record_type, current.as_ref(), fields)? {
            return Ok(rejected(mutation_id, Some(id), vec![detail]));
        }
        let write = Write {
            fields,
            hlc: m.hlc.clamp(self.ctx.max_wall_ms),
            mutation_id,
            base_version: m.base_version,
        };
        let outcome = match m.op {
            Op::Upsert => merge_upsert(m.record_type, current.as_ref().map(|s| &s.state), write),
            Op::Delete => merge_delete(current.as_ref().map(|s| &s.state)),
        };
        let lost = outcome.lost_fields();
        let (status, version) = match outcome {
            Outcome::Rejected(errors) => return Ok(rejected(mutation_id, Some(id), errors)),
            Outcome::Conflict { clashes } => {
                let current =
                    current.ok_or_else(|| AppError::Internal("conflict without a record".into()))?;
                self.record_clashes(&current, &clashes);
                (MutationStatus::Conflict, current.state.version)
            }
            Outcome::Applied {
                state,
                changed,
                clashes,
            } => {
                let record = self.apply(conn, m.record_type, id.clone(), current, state, changed)?;
                let version = record.state.version;
                if !clashes.is_empty() {
                    let record = record.clone();
                    self.record_clashes(&record, &clashes);
                }
                (MutationStatus::Applied, version)
            }
        };
        Ok(MutationResult {
            mutation_id,
            id: Some(id),
            status,
            version: Some(version),
            conflicts: lost,
            errors: Vec::new(),
            original_status: None,
        })
    }

    /// Stores a merged state, logs its change in the villages it left and entered, and follows
    /// through on members: a new household collects the members waiting for it, a moved one
    /// takes its members along. Returns the record as stored.
    pub(crate) fn apply(
        &mut self,
        conn: &mut DbConn,
        record_type: RecordType,
        id: String,
        before: Option<Stored>,
        state: super::merge::RecordState,
        changed: bool,
    ) -> AppResult<&Stored> {
        match record_type {
            RecordType::Household => self.touch(conn, &id)?,
            RecordType::Member => {
                let households = before
                    .iter()
                    .map(|b| &b.state)
                    .chain(std::iter::once(&state))
                    .filter_map(|s| {
                        s.fields
                            .get("household_id")
                            .and_then(Value::as_str)
                            .map(str::to_owned)
                    })
                    .collect::<Vec<_>>();
                for h in households {
                    self.touch(conn, &h)?;
                }
            }
        }
        let now = self.ctx.now_us;
        let village = match record_type {
            RecordType::Household => state
                .fields
                .get("village_id")
                .and_then(Value::as_str)
                .map(str::to_owned),
            RecordType::Member => match state.fields.get("household_id").and_then(Value::as_str) {
                Some(h) => self.household_village(conn, h)?,
                None => None,
            },
        };
        let record = Stored {
            record_type,
            id,
            state,
            village,
            pushed_by: match (&before, record_type) {
                (Some(b), _) => b.pushed_by.clone(),
                (None, RecordType::Member) => Some(self.ctx.principal.user_id.to_string()),
                (None, RecordType::Household) => None,
            },
            created_us: before.as_ref().map_or(now, |b| b.created_us),
        };
        let old_village = before.as_ref().and_then(|b| b.village.clone());
        if changed {
            self.log_change(&record, old_village.as_deref());
        }
        if record_type == RecordType::Household {
            // The household's own state is saved after its members': nothing below reads it
            // back from this write.
            if before.is_none() {
                self.attach_waiting_members(conn, &record)?;
            } else if old_village != record.village {
                self.move_members(conn, &record, old_village.as_deref())?;
            }
        }
        let key = (record.record_type, record.id.clone());
        self.save(record);
        match self.records.get(&key) {
            Some(Some(saved)) => Ok(saved),
            _ => Err(AppError::Internal("a saved record vanished".into())),
        }
    }

    fn log_change(&mut self, record: &Stored, old_village: Option<&str>) {
        let villages = record
            .village
            .as_deref()
            .into_iter()
            .chain(old_village.filter(|o| Some(*o) != record.village.as_deref()));
        for village in villages {
            self.changes
                .push((village.to_owned(), record.record_type, record.id.clone()));
        }
    }

    fn attach_waiting_members(&mut self, conn: &mut DbConn, household: &Stored) -> AppResult<()> {
        let Some(village) = household.village.clone() else {
            return Ok(());
        };
        for mut member in self.members_of(conn, &household.id, false)? {
            let allowed = match member.pushed_by.clone() {
                Some(user) => self.user_covers(conn, &user, &village)?,
                None => false,
            };
            if allowed {
                member.village = Some(village.clone());
                member.state.version += 1;
                self.log_change(&member, None);
                self.save(member);
            } else {
                // The member's pusher may not write in this household's village: an admin decides.
                let clock = |r: &Stored, f: &str| r.state.clocks.get(f).map(|c| c.hlc);
                let (Some(current_hlc), Some(incoming_hlc)) =
                    (clock(household, "village_id"), clock(&member, "household_id"))
                else {
                    continue;
                };
                self.conflicts.push(db::sync::ConflictRow {
                    id: Uuid::now_v7().to_string(),
                    record_type: RecordType::Member.as_str().to_owned(),
                    record_id: member.id.clone(),
                    village_id: village.clone(),
                    field: "household_id".to_owned(),
                    current_value: "null".to_owned(),
                    incoming_value: Value::from(household.id.clone()).to_string(),
                    current_hlc: current_hlc.to_string(),
                    incoming_hlc: incoming_hlc.to_string(),
                    device_id: incoming_hlc.node.to_string(),
                    created_us: self.ctx.now_us,
                    resolved_us: None,
                    resolved_by: None,
                });
            }
        }
        Ok(())
    }

    fn move_members(
        &mut self,
        conn: &mut DbConn,
        household: &Stored,
        old_village: Option<&str>,
    ) -> AppResult<()> {
        for mut member in self.members_of(conn, &household.id, true)? {
            member.village = household.village.clone();
            member.state.version += 1;
            self.log_change(&member, old_village);
            self.save(member);
        }
        Ok(())
    }

    /// Keeps each concurrent edit's losing value for review.
    fn record_clashes(&mut self, record: &Stored, clashes: &[Clash]) {
        let Some(village) = &record.village else { return };
        for c in clashes {
            self.conflicts.push(db::sync::ConflictRow {
                id: Uuid::now_v7().to_string(),
                record_type: record.record_type.as_str().to_owned(),
                record_id: record.id.clone(),
                village_id: village.clone(),
                field: c.field.to_owned(),
                current_value: c.winner.to_string(),
                incoming_value: c.loser.to_string(),
                current_hlc: c.winner_clock.hlc.to_string(),
                incoming_hlc: c.loser_clock.hlc.to_string(),
                device_id: c.loser_clock.hlc.node.to_string(),
                created_us: self.ctx.now_us,
                resolved_us: None,
                resolved_by: None,
            });
        }
    }
}

/// Builds a push context for `principal` now.
pub fn context(principal: Principal, max_clock_skew_ms: i64) -> Ctx {
    let now_us = crate::clock::now_us();
    Ctx {
        principal,
        now_us,
        max_wall_ms: now_us / 1000 + max_clock_skew_ms,
        current_year: time::OffsetDateTime::now_utc().year(),
    }
}
