//! Reorganising the map: moving a unit under another parent and merging units, effective on a
//! date. Households and members never move: villages keep their records and their counters;
//! the roll-ups above them follow the tree, and the tree of any past date stays answerable.

use crate::aggregates::{fold, tallies::Tally};
use crate::auth::{Action, Principal, authorize, require_role};
use crate::db::units::ClosureRow;
use crate::db::{self, DbConn};
use crate::error::{AppError, AppResult};
use hamlet_shared::{ErrorCode, ErrorDetail, ReorgReport, Unit, UnitId, UnitLevel};
use std::collections::{BTreeSet, HashMap, HashSet};

fn invalid(field: &str, message: impl Into<String>) -> AppError {
    AppError::invalid(ErrorDetail::field(field, ErrorCode::InvalidValue, message))
}

/// An effective date: `YYYY-MM-DD`, not in the future.
pub fn parse_effective(s: &str) -> AppResult<time::Date> {
    let date =
        time::Date::parse(s, time::macros::format_description!("[year]-[month]-[day]")).map_err(|_| {
            AppError::invalid(ErrorDetail::field(
                "effective_on",
                ErrorCode::InvalidFormat,
                "effective_on must be YYYY-MM-DD",
            ))
        })?;
    if date > time::OffsetDateTime::now_utc().date() {
        return Err(invalid(
            "effective_on",
            "effective_on must not be in the future: record a reorganisation when it takes effect",
        ));
    }
    Ok(date)
}

/// Moves `unit` (with its whole subtree) under `to`, effective `date`.
pub fn move_unit(
    conn: &mut DbConn,
    actor: Option<&Principal>,
    unit: UnitId,
    to: UnitId,
    date: time::Date,
) -> AppResult<ReorgReport> {
    // The role first: who may not reorganise learns nothing about the units it names.
    if let Some(a) = actor {
        require_role(a, Action::Reorganise { units: &[] })?;
    }
    crate::db::tx::consistent(conn, |conn| {
        fold::lock(conn)?;
        fold::fold_locked(conn)?;
        let (x, p) = (
            super::get(conn, unit)?,
            super::get_referenced(conn, to, "parent_id")?,
        );
        if let Some(a) = actor {
            authorize(conn, a, Action::Reorganise { units: &[x.id, p.id] })?;
        }
        move_inner(conn, &x, &p, &date.to_string())?;
        let detail = serde_json::json!({ "unit": x.id, "from": x.parent_id, "to": p.id });
        record(conn, actor, "move", &date.to_string(), &detail)?;
        Ok(ReorgReport {
            moved: vec![x.id],
            retired: vec![],
            effective_on: date.to_string(),
        })
    })
}

/// Merges `sources` into `into` (same level, not villages), effective `date`: every child of a
/// source moves under `into`, and the sources are retired (their codes become free).
pub fn merge_units(
    conn: &mut DbConn,
    actor: Option<&Principal>,
    sources: &[UnitId],
    into: UnitId,
    date: time::Date,
) -> AppResult<ReorgReport> {
    if let Some(a) = actor {
        require_role(a, Action::Reorganise { units: &[] })?;
    }
    crate::db::tx::consistent(conn, |conn| {
        fold::lock(conn)?;
        fold::fold_locked(conn)?;
        let target = super::get_referenced(conn, into, "into")?;
        // Every unit the body names exists (422 on its field otherwise) before scope is checked:
        // an unknown id is the caller's typo, not a unit outside its scope.
        let mut source_units = Vec::with_capacity(sources.len());
        for (i, id) in sources.iter().enumerate() {
            source_units.push(super::get_referenced(conn, *id, &format!("sources[{i}]"))?);
        }
        let mut all = vec![target.id];
        all.extend_from_slice(sources);
        if let Some(a) = actor {
            authorize(conn, a, Action::Reorganise { units: &all })?;
        }
        if sources.is_empty() {
            return Err(invalid("sources", "name at least one unit to merge"));
        }
        if target.level == UnitLevel::Village {
            return Err(invalid(
                "into",
                "villages are not merged (their households would have to move); move villages instead",
            ));
        }
        let day = date.to_string();
        let now = crate::clock::now_us();
        let mut report = ReorgReport {
            effective_on: day.clone(),
            ..Default::default()
        };
        for source in source_units {
            if source.id == target.id || source.level != target.level {
                return Err(invalid(
                    "sources",
                    format!("{} must be another unit of level {}", source.id, target.level),
                ));
            }
            for child in db::units::children(conn, &source.id.to_string())? {
                let child = super::unit_from_row(child)?;
                move_inner(conn, &child, &target, &day)?;
                report.moved.push(child.id);
            }
            check_effective(conn, &source, &day)?;
            db::units::retire(conn, &source.id.to_string(), now)?;
            db::units::reparent_history(conn, &source.id.to_string(), None, &day, now)?;
            report.retired.push(source.id);
        }
        let detail = serde_json::json!({ "sources": sources, "into": target.id, "moved": report.moved });
        record(conn, actor, "merge", &day, &detail)?;
        Ok(report)
    })
}

fn record(
    conn: &mut DbConn,
    actor: Option<&Principal>,
    kind: &str,
    day: &str,
    detail: &serde_json::Value,
) -> AppResult<()> {
    let actor_id = actor.map(|a| a.user_id.to_string());
    db::units::record_reorganisation(
        conn,
        &uuid::Uuid::now_v7().to_string(),
        kind,
        day,
        &detail.to_string(),
        actor_id.as_deref(),
        crate::clock::now_us(),
    )?;
    Ok(())
}

/// A reorganisation cannot take effect before the unit's current placement began.
fn check_effective(conn: &mut DbConn, unit: &Unit, day: &str) -> AppResult<()> {
    if let Some(Some(since)) = db::units::current_since(conn, &unit.id.to_string())?
        && day < since.as_str()
    {
        return Err(invalid(
            "effective_on",
            format!(
                "{} has been where it is since {since}; effective_on must not be earlier",
                unit.id
            ),
        ));
    }
    Ok(())
}

/// The move itself, inside a transaction that holds the fold lock with every delta folded.
fn move_inner(conn: &mut DbConn, x: &Unit, p: &Unit, day: &str) -> AppResult<()> {
    let (xs, ps) = (x.id.to_string(), p.id.to_string());
    if x.parent_id.is_none() {
        return Err(invalid("unit", "a root unit cannot be moved"));
    }
    if x.parent_id == Some(p.id) {
        return Err(invalid("parent_id", "the unit is already there"));
    }
    if !x.level.may_have_parent(p.level) {
        return Err(invalid(
            "parent_id",
            format!("a {} cannot be placed under a {}", x.level, p.level),
        ));
    }
    if db::units::any_covers(conn, std::slice::from_ref(&xs), &ps)? {
        return Err(invalid("parent_id", "a unit cannot move under its own subtree"));
    }
    check_effective(conn, x, day)?;

    // The subtree's totals leave the old ancestors and join the new ones.
    let totals: Tally = if x.level == UnitLevel::Village {
        db::tallies::of_villages(conn, std::slice::from_ref(&xs))?
    } else {
        db::tallies::of_units(conn, std::slice::from_ref(&xs))?
    };
    let old: BTreeSet<String> = db::units::ancestors_of(conn, std::slice::from_ref(&xs))?
        .into_iter()
        .filter(|r| r.depth >= 1)
        .map(|r| r.ancestor_id)
        .collect();
    let new_chain = db::units::ancestors_of(conn, std::slice::from_ref(&ps))?;
    let new: BTreeSet<String> = new_chain.iter().map(|r| r.ancestor_id.clone()).collect();
    let mut delta = Tally::default();
    for (k, c) in totals.iter() {
        for a in old.difference(&new) {
            delta.add(
                a,
                k.metric,
                k.birth_year,
                crate::aggregates::tallies::Count {
                    yes: -c.yes,
                    no: -c.no,
                    unknown: -c.unknown,
                },
            );
        }
        for a in new.difference(&old) {
            delta.add(a, k.metric, k.birth_year, c);
        }
    }
    db::tallies::add_to_units(conn, &delta.without_zeros())?;

    // Closure: the subtree keeps its inner rows and hangs under the new parent's chain.
    let below = db::units::closure_below(conn, &xs)?;
    let subtree: HashMap<String, i32> = below
        .iter()
        .filter(|r| r.ancestor_id == xs)
        .map(|r| (r.descendant_id.clone(), r.depth))
        .collect();
    let inside: HashSet<&String> = subtree.keys().collect();
    let outside: Vec<ClosureRow> = below
        .iter()
        .filter(|r| !inside.contains(&r.ancestor_id))
        .cloned()
        .collect();
    db::units::delete_closure(conn, &outside)?;
    let mut rows = Vec::new();
    for a in &new_chain {
        for (d, depth_xd) in &subtree {
            rows.push(ClosureRow {
                ancestor_id: a.ancestor_id.clone(),
                descendant_id: d.clone(),
                depth: a.depth + 1 + depth_xd,
            });
        }
    }
    db::units::insert_all(conn, &[], &rows)?;
    db::units::set_parent(conn, &xs, &ps)?;
    db::units::reparent_history(conn, &xs, Some(&ps), day, crate::clock::now_us())?;
    Ok(())
}
