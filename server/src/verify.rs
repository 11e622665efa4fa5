//! `hamlet verify`: recomputes derived data from its sources and reports any difference: the
//! unit closure table against the parent links, and every aggregate counter (village tallies
//! and the folded roll-ups) against the records.

use crate::aggregates::tallies::{self, Tally};
use crate::db::units::ClosureRow;
use crate::db::{self, DbConn};
use crate::error::AppResult;
use std::collections::{HashMap, HashSet};

/// What verification found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// One line per difference found, capped at [`MAX_LISTED`] (the counts are exact).
    pub problems: Vec<String>,
    pub missing_closure_rows: usize,
    pub extra_closure_rows: usize,
    /// Counter rows (village or roll-up) that differ from a recomputation.
    pub tally_differences: usize,
    pub repaired: bool,
}

impl VerifyReport {
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty() && self.tally_differences == 0
    }
}

pub const MAX_LISTED: usize = 20;

/// The closure rows implied by the parent links; a parent cycle is reported, not followed.
pub(crate) fn expected_closure(
    parents: &[(String, Option<String>)],
    problems: &mut Vec<String>,
) -> Vec<ClosureRow> {
    let parent_of: HashMap<&str, Option<&str>> = parents
        .iter()
        .map(|(id, p)| (id.as_str(), p.as_deref()))
        .collect();
    let mut rows = Vec::new();
    for (id, _) in parents {
        let mut seen = HashSet::new();
        let mut current = Some(id.as_str());
        let mut depth = 0;
        while let Some(unit) = current {
            if !seen.insert(unit) {
                problems.push(format!("unit {id}: its parent chain has a cycle"));
                break;
            }
            rows.push(ClosureRow {
                ancestor_id: unit.to_owned(),
                descendant_id: id.clone(),
                depth,
            });
            depth += 1;
            current = parent_of.get(unit).copied().flatten();
        }
    }
    rows
}

/// Checks everything derived; with `repair`, rewrites what differs in one transaction. Safe
/// while the server runs: it reads one snapshot.
pub fn verify(conn: &mut DbConn, repair: bool) -> AppResult<VerifyReport> {
    crate::aggregates::fold::fold(conn)?;
    crate::db::tx::consistent(conn, |conn| {
        let mut report = VerifyReport::default();
        let parents = db::units::all_parents(conn)?;
        let expected = expected_closure(&parents, &mut report.problems);
        let actual = db::units::all_closure(conn)?;
        let key = |r: &ClosureRow| (r.ancestor_id.clone(), r.descendant_id.clone(), r.depth);
        let expected_set: HashSet<_> = expected.iter().map(key).collect();
        let actual_set: HashSet<_> = actual.iter().map(key).collect();
        let mut missing: Vec<_> = expected_set.difference(&actual_set).collect();
        let mut extra: Vec<_> = actual_set.difference(&expected_set).collect();
        missing.sort();
        extra.sort();
        report.missing_closure_rows = missing.len();
        report.extra_closure_rows = extra.len();
        for (a, d, depth) in missing.iter().take(MAX_LISTED) {
            report
                .problems
                .push(format!("unit_closure: missing {a} -> {d} (depth {depth})"));
        }
        for (a, d, depth) in extra.iter().take(MAX_LISTED) {
            report
                .problems
                .push(format!("unit_closure: unexpected {a} -> {d} (depth {depth})"));
        }
        if repair && (!missing.is_empty() || !extra.is_empty()) {
            db::units::replace_closure(conn, &expected)?;
            report.repaired = true;
        }
        verify_tallies(conn, repair, &mut report)?;
        Ok(report)
    })
}

/// Village counters and roll-ups recomputed from every household and member.
fn expected_tallies(conn: &mut DbConn) -> AppResult<(Tally, Tally)> {
    let (households, members) = db::tallies::all_bundles(conn)?;
    let villages = tallies::of_bundles(&households, &members);
    let units = crate::aggregates::fold::roll_up(conn, &villages)?;
    Ok((villages.without_zeros(), units))
}

fn compare(table: &str, stored: &Tally, expected: &Tally, report: &mut VerifyReport) {
    let keys: std::collections::BTreeSet<_> = stored.iter().chain(expected.iter()).map(|(k, _)| k).collect();
    for k in keys {
        let (s, e) = (stored.get(k), expected.get(k));
        if s != e {
            report.tally_differences += 1;
            if report.problems.len() < 2 * MAX_LISTED {
                report.problems.push(format!(
                    "{table}: {} {} {}: stored yes/no/unknown {}/{}/{}, records say {}/{}/{}",
                    k.unit, k.metric, k.birth_year, s.yes, s.no, s.unknown, e.yes, e.no, e.unknown
                ));
            }
        }
    }
}

/// Compares every counter with a recomputation from the records (deltas not folded yet count
/// towards the roll-ups they belong to); with `repair`, rewrites them all.
fn verify_tallies(conn: &mut DbConn, repair: bool, report: &mut VerifyReport) -> AppResult<()> {
    let (villages, units) = expected_tallies(conn)?;
    let stored_villages = db::tallies::all_villages(conn)?.without_zeros();
    let mut stored_units = db::tallies::all_units(conn)?;
    let ids: Vec<String> = db::units::all_parents(conn)?
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    stored_units.merge(&db::tallies::of_units_deltas_only(conn, &ids)?, 1);
    let before = report.tally_differences;
    compare("village_tallies", &stored_villages, &villages, report);
    compare("unit_tallies", &stored_units.without_zeros(), &units, report);
    if repair && report.tally_differences > before {
        db::tallies::replace_all(conn, &villages, &units)?;
        report.repaired = true;
    }
    Ok(())
}
