//! The push phase (every phone at once, in batches, some replayed) and the concurrent edits.

use crate::Args;
use crate::setup::Site;
use crate::stats::Latencies;
use crate::workload::{Item, Plan};
use hamlet_client::api::Api;
use hamlet_client::retry::RetryPolicy;
use hamlet_shared::sync::{Mutation, MutationStatus, Op, PushResponse};
use hamlet_shared::{Hlc, RecordType};
use indicatif::{ProgressBar, ProgressStyle};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// A phone's clock and mutation counter.
struct Phone<'a> {
    id: Uuid,
    api: &'a Api,
    next_mutation: i64,
    last: Option<Hlc>,
}

impl Phone<'_> {
    fn mutation(
        &mut self,
        record_type: RecordType,
        id: Uuid,
        op: Op,
        base_version: i64,
        fields: serde_json::Map<String, serde_json::Value>,
    ) -> Mutation {
        let now_ms = (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64;
        let hlc = Hlc::tick(self.last, now_ms, self.id);
        self.last = Some(hlc);
        self.next_mutation += 1;
        Mutation {
            mutation_id: self.next_mutation,
            record_type,
            id,
            op,
            base_version,
            hlc,
            fields,
        }
    }
}

/// What the push phase measured.
#[derive(Default)]
pub struct PushStats {
    pub requests: u64,
    pub mutations: u64,
    /// Households and members created (first answers, not replays).
    pub records: u64,
    pub replays: u64,
    pub retries: u64,
    pub latencies: Latencies,
    pub wall: Duration,
    pub problems: Vec<String>,
}

impl PushStats {
    pub fn records_per_s(&self) -> f64 {
        self.records as f64 / self.wall.as_secs_f64().max(1e-9)
    }

    pub fn summary(&self) -> String {
        format!(
            "{} records ({} mutations) in {:.2} s = {:.0} records/s; {} requests ({} replays, {} retries); latency {}",
            self.records,
            self.mutations,
            self.wall.as_secs_f64(),
            self.records_per_s(),
            self.requests,
            self.replays,
            self.retries,
            self.latencies.summary()
        )
    }
}

fn policy() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 8,
        base: Duration::from_millis(50),
        cap: Duration::from_secs(10),
    }
}

/// One push with retries; the latency of the attempt that answered is recorded.
fn send(
    api: &Api,
    device_id: Uuid,
    mutations: &[Mutation],
    latencies: &Mutex<Latencies>,
    retries: &AtomicU64,
) -> Result<PushResponse, String> {
    policy()
        .run(
            || {
                let t = Instant::now();
                let r = api.push_mutations(device_id, mutations);
                if r.is_ok()
                    && let Ok(mut l) = latencies.lock()
                {
                    l.record(t.elapsed());
                }
                r
            },
            &|_| {
                retries.fetch_add(1, Ordering::Relaxed);
            },
        )
        .map_err(|e| format!("push by device {device_id}: {e}"))
}

fn bar(args: &Args, len: u64, what: &str) -> ProgressBar {
    if args.quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{{bar:40}} {{pos}}/{{len}} {what} {{elapsed}} {{per_sec}}"
        ))
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

/// Every device pushes its stream at once; versions the server gives are written into the plan.
pub fn run(args: &Args, site: &Site, plan: &mut Plan) -> Result<PushStats, String> {
    let progress = bar(args, plan.mutation_count() as u64, "mutations");
    let latencies = Mutex::new(Latencies::default());
    let retries = AtomicU64::new(0);
    let started = Instant::now();
    let shared: &Plan = plan;
    let outcomes: Vec<Result<DeviceOutcome, String>> = std::thread::scope(|s| {
        let handles: Vec<_> = site
            .devices
            .iter()
            .enumerate()
            .map(|(d, device)| {
                let (progress, latencies, retries) = (&progress, &latencies, &retries);
                s.spawn(move || {
                    let mut phone = Phone {
                        id: device.id,
                        api: &device.api,
                        next_mutation: 0,
                        last: None,
                    };
                    push_stream(args, site, shared, d, &mut phone, progress, latencies, retries)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("a device thread panicked".into()))
            })
            .collect()
    });
    progress.finish_and_clear();
    let mut stats = PushStats {
        wall: started.elapsed(),
        retries: retries.load(Ordering::Relaxed),
        latencies: latencies.into_inner().unwrap_or_default(),
        ..Default::default()
    };
    for outcome in outcomes {
        let o = outcome?;
        stats.requests += o.requests;
        stats.mutations += o.mutations;
        stats.records += o.records;
        stats.replays += o.replays;
        stats.problems.extend(o.problems);
        for (item, version) in o.versions {
            match item {
                Item::Household(h) => plan.households[h].version = version,
                Item::Member(m) | Item::DeleteMember(m) => plan.members[m].version = version,
            }
        }
    }
    Ok(stats)
}

#[derive(Default)]
struct DeviceOutcome {
    requests: u64,
    mutations: u64,
    records: u64,
    replays: u64,
    versions: Vec<(Item, i64)>,
    problems: Vec<String>,
}

#[allow(clippy::too_many_arguments)]
fn push_stream(
    args: &Args,
    site: &Site,
    plan: &Plan,
    d: usize,
    phone: &mut Phone,
    progress: &ProgressBar,
    latencies: &Mutex<Latencies>,
    retries: &AtomicU64,
) -> Result<DeviceOutcome, String> {
    let mut rng = StdRng::seed_from_u64(args.seed ^ (d as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let mut out = DeviceOutcome::default();
    let mut member_versions = std::collections::HashMap::new();
    for chunk in plan.streams[d].chunks(args.batch) {
        let mutations: Vec<Mutation> = chunk
            .iter()
            .map(|&item| {
                let (record_type, id) = plan.record_of(item);
                match item {
                    Item::DeleteMember(m) => {
                        let base = member_versions.get(&m).copied().unwrap_or(0);
                        phone.mutation(record_type, id, Op::Delete, base, Default::default())
                    }
                    _ => phone.mutation(
                        record_type,
                        id,
                        Op::Upsert,
                        0,
                        plan.fields(item, &site.villages).unwrap_or_default(),
                    ),
                }
            })
            .collect();
        let response = send(phone.api, phone.id, &mutations, latencies, retries)?;
        out.requests += 1;
        out.mutations += chunk.len() as u64;
        if response.results.len() != chunk.len() {
            out.problems.push(format!(
                "device {d}: {} results for {} mutations",
                response.results.len(),
                chunk.len()
            ));
            continue;
        }
        for ((&item, m), r) in chunk.iter().zip(&mutations).zip(&response.results) {
            // A retried request may answer `duplicate` for what the lost attempt applied.
            let status = match (r.status, r.original_status) {
                (MutationStatus::Duplicate, Some(first)) => first,
                (s, _) => s,
            };
            match (status, r.version) {
                (MutationStatus::Applied, Some(version)) if r.mutation_id == m.mutation_id => {
                    out.versions.push((item, version));
                    match item {
                        Item::Member(mi) => {
                            member_versions.insert(mi, version);
                            out.records += 1;
                        }
                        Item::Household(_) => out.records += 1,
                        Item::DeleteMember(_) => {}
                    }
                }
                _ => out.problems.push(format!(
                    "device {d} mutation {}: {:?} {:?} {:?}",
                    m.mutation_id, r.status, r.conflicts, r.errors
                )),
            }
        }
        // A phone that lost the response sends the same batch again: nothing may change.
        if rng.random_bool(args.duplicates.clamp(0.0, 1.0)) {
            let replay = send(phone.api, phone.id, &mutations, latencies, retries)?;
            out.requests += 1;
            out.replays += 1;
            for (first, again) in response.results.iter().zip(&replay.results) {
                if again.status != MutationStatus::Duplicate || again.version != first.version {
                    out.problems.push(format!(
                        "device {d} replayed mutation {}: {:?} version {:?}, first answered version {:?}",
                        again.mutation_id, again.status, again.version, first.version
                    ));
                }
            }
        }
        progress.inc(chunk.len() as u64);
    }
    Ok(out)
}

/// What the concurrent edits did.
#[derive(Default)]
pub struct EditStats {
    pub pairs: usize,
    /// Mutations answered `conflict` (the losing write arrived second).
    pub conflict_answers: usize,
    /// Conflicts the server lists for review in the commune.
    pub listed: usize,
    pub problems: Vec<String>,
}

impl EditStats {
    pub fn summary(&self) -> String {
        format!(
            "{} pairs of concurrent edits: {} answered conflict, {} conflicts listed for review",
            self.pairs, self.conflict_answers, self.listed
        )
    }
}

/// Two phones of a village set the same member's `owns_smartphone` from the same base version;
/// the later clock must win wherever it arrives, and the loser must be kept for review.
pub fn concurrent_edits(args: &Args, site: &Site, plan: &mut Plan) -> Result<EditStats, String> {
    let mut stats = EditStats {
        pairs: plan.edits.len(),
        ..Default::default()
    };
    if plan.edits.is_empty() {
        return Ok(stats);
    }
    // Each phone sends its side of every pair it takes part in, in one push, all phones at once;
    // mutation ids continue after the push phase's (a fresh id range per phone: its stream length).
    let mut per_device: Vec<Vec<(usize, usize)>> = vec![Vec::new(); site.devices.len()];
    for (p, pair) in plan.edits.iter().enumerate() {
        for side in 0..2 {
            per_device[pair.devices[side]].push((p, side));
        }
    }
    let latencies = Mutex::new(Latencies::default());
    let retries = AtomicU64::new(0);
    let shared: &Plan = plan;
    // Per phone: (pair, side, clock sent, answer).
    type Sent = Result<Vec<(usize, usize, Hlc, MutationStatus)>, String>;
    let sent: Vec<Sent> = std::thread::scope(|s| {
        let handles: Vec<_> = per_device
            .iter()
            .enumerate()
            .filter(|(_, sides)| !sides.is_empty())
            .map(|(d, sides)| {
                let (latencies, retries) = (&latencies, &retries);
                s.spawn(move || {
                    let device = &site.devices[d];
                    let mut phone = Phone {
                        id: device.id,
                        api: &device.api,
                        next_mutation: shared.streams[d].len() as i64,
                        last: None,
                    };
                    let mutations: Vec<Mutation> = sides
                        .iter()
                        .map(|&(p, side)| {
                            let pair = &shared.edits[p];
                            let m = &shared.members[pair.member];
                            let mut fields = serde_json::Map::new();
                            fields.insert("owns_smartphone".into(), pair.values[side].into());
                            phone.mutation(RecordType::Member, m.id, Op::Upsert, m.version, fields)
                        })
                        .collect();
                    let response = send(phone.api, phone.id, &mutations, latencies, retries)?;
                    Ok(sides
                        .iter()
                        .zip(&mutations)
                        .zip(&response.results)
                        .map(|((&(p, side), m), r)| (p, side, m.hlc, r.status))
                        .collect())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("an edit thread panicked".into())))
            .collect()
    });
    let mut clocks: Vec<[Option<Hlc>; 2]> = vec![[None, None]; plan.edits.len()];
    for result in sent {
        for (p, side, hlc, status) in result? {
            clocks[p][side] = Some(hlc);
            match status {
                MutationStatus::Conflict => stats.conflict_answers += 1,
                MutationStatus::Applied => {}
                other => stats.problems.push(format!("edit pair {p}: {other:?}")),
            }
        }
    }
    // The later clock wins: that is the value the server must hold.
    for (p, pair) in plan.edits.iter().enumerate() {
        let [Some(a), Some(b)] = clocks[p] else {
            stats.problems.push(format!("edit pair {p} was not sent"));
            continue;
        };
        let winner = if a > b { 0 } else { 1 };
        plan.members[pair.member].answers[0] = pair.values[winner];
    }
    stats.listed = crate::check::open_conflicts(args, site)?;
    // The conflict list answers at most 1,000 rows.
    if stats.listed != plan.edits.len().min(1000) {
        stats.problems.push(format!(
            "{} concurrent edit pairs, but {} conflicts listed for review",
            plan.edits.len(),
            stats.listed
        ));
    }
    if stats.conflict_answers > plan.edits.len() {
        stats.problems.push(format!(
            "{} conflict answers for {} pairs: at most one side of a pair loses",
            stats.conflict_answers,
            plan.edits.len()
        ));
    }
    Ok(stats)
}
