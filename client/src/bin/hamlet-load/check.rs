//! The pull phase and the final check: pulled records and the server's aggregates against what
//! the phones sent, computed here independently from the contract's definitions (§7).

use crate::Args;
use crate::setup::Site;
use crate::stats::Latencies;
use crate::workload::{MEMBER_TRI_FIELDS, Plan};
use hamlet_client::retry::RetryPolicy;
use hamlet_shared::aggregates::{Aggregate, ChildAggregates, Indicator};
use hamlet_shared::sync::Change;
use hamlet_shared::{RecordType, UnitId};
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// What every device pulled.
pub struct Pulled {
    /// Per device, the last state of each record it pulled.
    pub by_device: Vec<HashMap<Uuid, Change>>,
    pub changes: u64,
    pub pages: u64,
    pub wall: Duration,
    pub latencies: Latencies,
}

impl Pulled {
    pub fn summary(&self) -> String {
        format!(
            "{} changes in {} pages in {:.2} s = {:.0} changes/s; page latency {}",
            self.changes,
            self.pages,
            self.wall.as_secs_f64(),
            self.changes as f64 / self.wall.as_secs_f64().max(1e-9),
            self.latencies.summary()
        )
    }
}

/// Every device pulls its village from scratch, all at once.
pub fn pull_all(args: &Args, site: &Site) -> Result<Pulled, String> {
    let started = Instant::now();
    let policy = RetryPolicy {
        max_attempts: 8,
        base: Duration::from_millis(50),
        cap: Duration::from_secs(10),
    };
    type Walk = Result<(HashMap<Uuid, Change>, u64, u64, Latencies), String>;
    let walks: Vec<Walk> = std::thread::scope(|s| {
        let handles: Vec<_> = site
            .devices
            .iter()
            .map(|device| {
                s.spawn(move || {
                    let (mut records, mut changes, mut pages) = (HashMap::new(), 0u64, 0u64);
                    let mut latencies = Latencies::default();
                    let mut cursor: Option<String> = None;
                    loop {
                        let t = Instant::now();
                        let page = policy
                            .run(|| device.api.pull(cursor.as_deref(), args.pull_limit), &|_| {})
                            .map_err(|e| format!("pull by device {}: {e}", device.id))?;
                        latencies.record(t.elapsed());
                        pages += 1;
                        changes += page.changes.len() as u64;
                        for c in page.changes {
                            let newer = records
                                .get(&c.id)
                                .is_none_or(|old: &Change| old.version <= c.version);
                            if newer {
                                records.insert(c.id, c);
                            }
                        }
                        cursor = Some(page.cursor);
                        if !page.has_more {
                            break;
                        }
                    }
                    Ok((records, changes, pages, latencies))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("a pull thread panicked".into())))
            .collect()
    });
    let mut pulled = Pulled {
        by_device: Vec::new(),
        changes: 0,
        pages: 0,
        wall: started.elapsed(),
        latencies: Latencies::default(),
    };
    for walk in walks {
        let (records, changes, pages, latencies) = walk?;
        pulled.by_device.push(records);
        pulled.changes += changes;
        pulled.pages += pages;
        pulled.latencies.merge(latencies);
    }
    Ok(pulled)
}

/// Each device pulled exactly its village's records, in their final state.
pub fn records(plan: &Plan, site: &Site, pulled: &Pulled) -> Vec<String> {
    let mut problems = Vec::new();
    for (d, got) in pulled.by_device.iter().enumerate() {
        let village = site.devices[d].village;
        let mut expected = 0;
        for h in plan.households.iter().filter(|h| h.village == village) {
            expected += 1;
            match got.get(&h.id) {
                Some(c) if c.record_type == RecordType::Household && !c.deleted => {
                    if c.fields.get("fixed_broadband").and_then(|v| v.as_str()) != Some(h.fixed_broadband) {
                        problems.push(format!(
                            "device {d}: household {} pulled with another fixed_broadband",
                            h.id
                        ));
                    }
                }
                Some(c) => problems.push(format!(
                    "device {d}: household {} pulled as deleted={} (version {})",
                    h.id, c.deleted, c.version
                )),
                None => problems.push(format!("device {d}: household {} not pulled", h.id)),
            }
        }
        for m in plan
            .members
            .iter()
            .filter(|m| plan.households[m.household].village == village)
        {
            expected += 1;
            match got.get(&m.id) {
                Some(c) if c.deleted != m.deleted => problems.push(format!(
                    "device {d}: member {} pulled with deleted={}",
                    m.id, c.deleted
                )),
                Some(c) if !m.deleted => {
                    for (field, answer) in MEMBER_TRI_FIELDS.iter().zip(m.answers) {
                        if c.fields.get(*field).and_then(|v| v.as_str()) != Some(answer) {
                            problems.push(format!(
                                "device {d}: member {} {field} pulled as {:?}, expected {answer}",
                                m.id,
                                c.fields.get(*field)
                            ));
                        }
                    }
                }
                Some(_) => {}
                None => problems.push(format!("device {d}: member {} not pulled", m.id)),
            }
        }
        if got.len() != expected {
            problems.push(format!(
                "device {d}: pulled {} records, its village has {expected}",
                got.len()
            ));
        }
    }
    problems
}

/// Yes/no/unknown counts for one indicator.
#[derive(Default, Clone, Copy)]
struct Count {
    yes: i64,
    no: i64,
    unknown: i64,
}

impl Count {
    fn add(&mut self, answer: &str) {
        match answer {
            "yes" => self.yes += 1,
            "no" => self.no += 1,
            _ => self.unknown += 1,
        }
    }
}

/// `(households, members, indicator key -> count)` for the households selected by `village`.
fn expected(
    plan: &Plan,
    year: i32,
    adult_age: i32,
    village: Option<usize>,
) -> (i64, i64, BTreeMap<&'static str, Count>) {
    let mut counts: BTreeMap<&'static str, Count> = BTreeMap::new();
    let (mut households, mut members) = (0, 0);
    let mut live_members: Vec<Vec<usize>> = vec![Vec::new(); plan.households.len()];
    for (i, m) in plan.members.iter().enumerate() {
        if !m.deleted {
            live_members[m.household].push(i);
        }
    }
    for (h, hp) in plan.households.iter().enumerate() {
        if village.is_some_and(|v| v != hp.village) {
            continue;
        }
        households += 1;
        counts
            .entry("households_with_fixed_broadband")
            .or_default()
            .add(hp.fixed_broadband);
        let answers: Vec<&str> = live_members[h]
            .iter()
            .map(|&m| plan.members[m].answers[0])
            .collect();
        if !answers.is_empty() {
            let household = if answers.contains(&"yes") {
                "yes"
            } else if answers.contains(&"no") {
                "no"
            } else {
                "unknown"
            };
            counts
                .entry("households_with_smartphone")
                .or_default()
                .add(household);
        }
        for &m in &live_members[h] {
            let mp = &plan.members[m];
            members += 1;
            counts
                .entry("population_with_smartphone")
                .or_default()
                .add(mp.answers[0]);
            if year - mp.birth_year >= adult_age {
                let adult = [
                    "adults_with_smartphone",
                    "adults_with_transaction_account",
                    "adults_with_vneid_level2",
                    "adults_using_online_public_services",
                    "adults_using_cashless_payment",
                    "adults_with_digital_signature",
                ];
                for (key, answer) in adult.iter().zip(mp.answers) {
                    counts.entry(key).or_default().add(answer);
                }
            }
        }
    }
    (households, members, counts)
}

fn compare(
    what: &str,
    got: &Aggregate,
    want: (i64, i64, BTreeMap<&'static str, Count>),
    problems: &mut Vec<String>,
) {
    let (households, members, counts) = want;
    if got.households != households || got.members != members {
        problems.push(format!(
            "{what}: {} households and {} members, expected {households} and {members}",
            got.households, got.members
        ));
    }
    for Indicator {
        key,
        numerator,
        denominator,
        unknown,
        ..
    } in &got.indicators
    {
        let c = counts.get(key.as_str()).copied().unwrap_or_default();
        if (*numerator, *denominator, *unknown) != (c.yes, c.yes + c.no, c.unknown) {
            problems.push(format!(
                "{what} {key}: {numerator}/{denominator} unknown {unknown}, expected {}/{} unknown {}",
                c.yes,
                c.yes + c.no,
                c.unknown
            ));
        }
    }
}

fn get<T: serde::de::DeserializeOwned>(site: &Site, path: &str) -> Result<T, String> {
    let url = format!("{}{path}", site.admin.base());
    let token = site.admin.token().unwrap_or_default();
    let mut res = ureq::get(&url)
        .header("Authorization", &format!("Bearer {token}"))
        .call()
        .map_err(|e| format!("GET {path}: {e}"))?;
    res.body_mut()
        .read_json::<T>()
        .map_err(|e| format!("GET {path}: {e}"))
}

/// The commune's aggregate and each village's, against the expected state.
pub fn aggregates(args: &Args, site: &Site, plan: &Plan) -> Result<Vec<String>, String> {
    let year = time::OffsetDateTime::now_utc().year();
    let mut problems = Vec::new();
    let commune: Aggregate = get(site, &format!("/api/v1/aggregates/{}?year={year}", site.commune))?;
    compare(
        "commune",
        &commune,
        expected(plan, year, args.adult_age, None),
        &mut problems,
    );
    let children: ChildAggregates = get(
        site,
        &format!("/api/v1/aggregates/{}/children?year={year}", site.commune),
    )?;
    let index: HashMap<UnitId, usize> = site.villages.iter().enumerate().map(|(i, v)| (*v, i)).collect();
    if children.children.len() != site.villages.len() {
        problems.push(format!(
            "{} children, expected {} villages",
            children.children.len(),
            site.villages.len()
        ));
    }
    for child in &children.children {
        match index.get(&child.unit.id) {
            Some(&v) => compare(
                &format!("village {}", child.unit.name),
                child,
                expected(plan, year, args.adult_age, Some(v)),
                &mut problems,
            ),
            None => problems.push(format!("unexpected child {}", child.unit.id)),
        }
    }
    Ok(problems)
}

/// Open conflicts listed for review in the run's commune.
pub fn open_conflicts(_args: &Args, site: &Site) -> Result<usize, String> {
    let list: hamlet_shared::sync::ConflictList = get(
        site,
        &format!(
            "/api/v1/conflicts?unit_id={}&resolved=false&limit=1000",
            site.commune
        ),
    )?;
    Ok(list.conflicts.len())
}
