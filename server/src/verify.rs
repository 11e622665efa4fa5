//! `hamlet verify`: recomputes derived data from its sources and reports any difference.
//! Today it checks the unit closure table against the parent links; the aggregate tallies are
//! checked here too once they exist (issue: aggregates).

use crate::db::units::ClosureRow;
use crate::db::{self, DbConn};
use crate::error::AppResult;
use diesel::Connection;
use std::collections::{HashMap, HashSet};

/// What verification found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// One line per difference found, capped at [`MAX_LISTED`] (the counts are exact).
    pub problems: Vec<String>,
    pub missing_closure_rows: usize,
    pub extra_closure_rows: usize,
    pub repaired: bool,
}

impl VerifyReport {
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

pub const MAX_LISTED: usize = 20;

/// The closure rows implied by the parent links; a parent cycle is reported, not followed.
fn expected_closure(parents: &[(String, Option<String>)], problems: &mut Vec<String>) -> Vec<ClosureRow> {
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

/// Checks everything derived; with `repair`, rewrites what differs in one transaction.
pub fn verify(conn: &mut DbConn, repair: bool) -> AppResult<VerifyReport> {
    conn.transaction(|conn| {
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
        Ok(report)
    })
}
