//! `hamlet units reform`: a national reorganisation given as the new list of units and an
//! old->new code mapping (the reform of 2025-07-01: 63 provinces into 34, districts abolished,
//! 10,035 communes into 3,321), applied in one transaction, effective on a date.
//!
//! Nothing is guessed, and no village, household or member moves except with its commune:
//! - a unit of the new list whose code belongs to a live unit of the same level that maps
//!   wholly into it keeps that unit (id, villages, history), renamed and moved as listed;
//! - an old unit that maps wholly into one new unit hands its children to it and is retired;
//! - an old unit split between several new units is retired if it holds no villages; if it
//!   does, only an admin knows which village went where: it stays live under the new province
//!   as a *pending split* (its code freed if a new unit takes it) and its villages are listed,
//!   to be moved with `hamlet units move` before `hamlet units merge` retires it;
//! - every unit the files do not mention (districts, old provinces) is retired once empty; one
//!   that would still hold a unit stops the reform, with the list of what it holds.
//!
//! The same files applied again change nothing (recognised by their digest).

use super::import::{LineError, Row, csv_error_message};
use crate::aggregates::fold;
use crate::db::units::{ClosureRow, UnitRow};
use crate::db::{self, DbConn};
use crate::error::AppError;
use hamlet_shared::{UnitCode, UnitId, UnitLevel};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

pub const MAPPING_HEADER: [&str; 2] = ["old_code", "new_code"];

#[derive(Debug, thiserror::Error)]
pub enum ReformError {
    #[error("{} invalid line(s) in the units file; nothing was changed", .0.len())]
    Units(Vec<LineError>),
    #[error("{} invalid line(s) in the mapping file; nothing was changed", .0.len())]
    Mapping(Vec<LineError>),
    #[error("{} problem(s) with the reform; nothing was changed", .0.len())]
    Plan(Vec<String>),
    #[error(transparent)]
    App(#[from] AppError),
}

impl From<diesel::result::Error> for ReformError {
    fn from(e: diesel::result::Error) -> Self {
        Self::App(e.into())
    }
}

/// The two files, parsed and checked line by line.
pub struct ReformInput {
    units: Vec<Row>,
    /// old code -> (new codes, line of its first pair)
    mapping: BTreeMap<String, (BTreeSet<String>, u64)>,
    digest: String,
}

/// An old unit split between several new ones that still holds villages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingSplit {
    pub unit_id: String,
    pub old_code: String,
    pub name: String,
    /// Codes of the new units it was split between.
    pub targets: Vec<String>,
    /// `(id, name)` of its villages, which an admin must move to the right new unit.
    pub villages: Vec<(String, String)>,
}

/// What a reform did (or, in a dry run, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReformReport {
    pub effective_on: String,
    /// The same files were applied before: nothing was changed.
    pub already_applied: bool,
    pub dry_run: bool,
    /// Units of the new list that kept an existing unit.
    pub kept: usize,
    pub renamed: usize,
    /// New units by level.
    pub created: BTreeMap<String, usize>,
    /// Retired units by level.
    pub retired: BTreeMap<String, usize>,
    /// Existing units (villages included) placed under another parent.
    pub moved: usize,
    pub pending: Vec<PendingSplit>,
    /// `(username, unit)` of users whose scope names a retired unit: they need a new scope.
    pub stale_scopes: Vec<(String, String)>,
}

fn line_error(line: u64, message: impl Into<String>) -> LineError {
    LineError {
        line,
        message: message.into(),
    }
}

/// Parses both files; every bad line of each is reported.
pub fn parse(units: &[u8], mapping: &[u8]) -> Result<ReformInput, ReformError> {
    let rows = super::import::parse(units).map_err(ReformError::Units)?;
    let mut reader = csv::ReaderBuilder::new().has_headers(true).from_reader(mapping);
    match reader.headers() {
        Ok(h) if h.iter().map(str::trim).eq(MAPPING_HEADER) => {}
        Ok(h) => {
            let got: Vec<_> = h.iter().collect();
            return Err(ReformError::Mapping(vec![line_error(
                1,
                format!(
                    "header must be {:?}, found {:?}",
                    MAPPING_HEADER.join(","),
                    got.join(",")
                ),
            )]));
        }
        Err(e) => return Err(ReformError::Mapping(vec![line_error(1, csv_error_message(&e))])),
    }
    let mut errors = Vec::new();
    let mut pairs: BTreeMap<String, (BTreeSet<String>, u64)> = BTreeMap::new();
    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                errors.push(line_error(
                    e.position().map_or(0, |p| p.line()),
                    csv_error_message(&e),
                ));
                continue;
            }
        };
        let line = record.position().map_or(0, |p| p.line());
        match (UnitCode::parse(&record[0]), UnitCode::parse(&record[1])) {
            (Ok(old), Ok(new)) => {
                let entry = pairs
                    .entry(old.as_str().to_owned())
                    .or_insert_with(|| (BTreeSet::new(), line));
                if !entry.0.insert(new.as_str().to_owned()) {
                    errors.push(line_error(
                        line,
                        format!("the pair {},{} appears twice", old.as_str(), new.as_str()),
                    ));
                }
            }
            (old, new) => {
                let problems: Vec<String> = [old.err().map(|d| format!("old_code: {}", d.message))]
                    .into_iter()
                    .chain([new.err().map(|d| format!("new_code: {}", d.message))])
                    .flatten()
                    .collect();
                errors.push(line_error(line, problems.join("; ")));
            }
        }
    }
    if !errors.is_empty() {
        return Err(ReformError::Mapping(errors));
    }
    let mut hasher = ring::digest::Context::new(&ring::digest::SHA256);
    hasher.update(units);
    hasher.update(&[0]);
    hasher.update(mapping);
    let digest = hasher
        .finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(ReformInput {
        units: rows,
        mapping: pairs,
        digest,
    })
}

/// How each row of the new list is realised.
#[derive(Clone)]
enum Realised {
    Kept(UnitRow),
    Created(String),
}

impl Realised {
    fn id(&self) -> &str {
        match self {
            Self::Kept(u) => &u.id,
            Self::Created(id) => id,
        }
    }
}

/// Everything a reform writes, decided before anything is written.
#[derive(Default)]
struct Plan {
    created: Vec<UnitRow>,
    renames: Vec<(String, String)>,
    /// Existing unit -> its new parent.
    moves: BTreeMap<String, String>,
    retired: Vec<UnitRow>,
    freed_codes: Vec<String>,
    pending: Vec<PendingSplit>,
    kept: usize,
}

fn label(u: &UnitRow) -> String {
    match &u.code {
        Some(c) => format!("{} {} ({})", u.level, c, u.name),
        None => format!("{} {} ({})", u.level, u.id, u.name),
    }
}

fn level_of(u: &UnitRow) -> Result<UnitLevel, ReformError> {
    u.level
        .parse()
        .map_err(|_| ReformError::App(AppError::Internal(format!("unit {} has a bad level", u.id))))
}

/// Decides the reform against the live subtree of `root`; reads only.
fn plan(conn: &mut DbConn, input: &ReformInput, root: &UnitRow, day: &str) -> Result<Plan, ReformError> {
    let mut problems = Vec::new();
    let live: Vec<UnitRow> = db::units::subtree(conn, &root.id)?
        .into_iter()
        .filter(|u| u.id != root.id)
        .collect();
    let by_id: HashMap<&str, &UnitRow> = live.iter().map(|u| (u.id.as_str(), u)).collect();
    let by_code: HashMap<&str, &UnitRow> = live
        .iter()
        .filter_map(|u| u.code.as_deref().map(|c| (c, u)))
        .collect();
    let mut children: HashMap<&str, Vec<&UnitRow>> = HashMap::new();
    for u in &live {
        if let Some(p) = &u.parent_id {
            children.entry(p.as_str()).or_default().push(u);
        }
    }
    let rows = &input.units;
    let index: HashMap<&str, usize> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| (r.code.as_str(), i))
        .collect();
    let root_level = level_of(root)?;

    // The files must agree with each other and with the live tree.
    for (old, (targets, line)) in &input.mapping {
        for t in targets {
            if !index.contains_key(t.as_str()) {
                problems.push(format!(
                    "mapping line {line}: new code {t} is not in the units file"
                ));
            }
        }
        match by_code.get(old.as_str()) {
            None => problems.push(format!(
                "mapping line {line}: old code {old} is not a live unit under {}",
                root.name
            )),
            Some(u) if u.level == UnitLevel::Village.as_str() => problems.push(format!(
                "mapping line {line}: {old} is a village; villages move with their commune"
            )),
            Some(_) => {}
        }
    }
    for row in rows {
        let parent_level = match &row.parent_code {
            None => Some(root_level),
            Some(p) => match index.get(p.as_str()) {
                Some(&i) => Some(rows[i].level),
                None => {
                    problems.push(format!(
                        "units line {}: parent_code {} is not in the units file",
                        row.line,
                        p.as_str()
                    ));
                    None
                }
            },
        };
        if let Some(pl) = parent_level
            && !row.level.may_have_parent(pl)
        {
            problems.push(format!(
                "units line {}: a {} cannot be placed under a {pl}",
                row.line, row.level
            ));
        }
    }
    if !problems.is_empty() {
        return Err(ReformError::Plan(problems));
    }

    // Each row of the new list keeps the live unit of its code when that unit maps wholly into it.
    let now = crate::clock::now_us();
    let mut plan = Plan::default();
    let realised: Vec<Realised> = rows
        .iter()
        .map(|row| {
            let code = row.code.as_str();
            let whole_into_itself = input
                .mapping
                .get(code)
                .is_none_or(|(t, _)| t.len() == 1 && t.contains(code));
            match by_code.get(code) {
                Some(u) if u.level == row.level.as_str() && whole_into_itself => Realised::Kept((*u).clone()),
                _ => Realised::Created(UnitId::new().to_string()),
            }
        })
        .collect();
    let realised_id = |code: &str| index.get(code).map(|&i| realised[i].id().to_owned());
    let parent_of_row = |row: &Row| match &row.parent_code {
        None => root.id.clone(),
        Some(p) => realised_id(p.as_str()).unwrap_or_default(),
    };
    // Final parent of every unit that stays live.
    let mut parent: HashMap<String, String> = HashMap::new();
    let mut mentioned: HashSet<String> = HashSet::new();
    for (row, r) in rows.iter().zip(&realised) {
        parent.insert(r.id().to_owned(), parent_of_row(row));
        match r {
            Realised::Kept(u) => {
                plan.kept += 1;
                mentioned.insert(u.id.clone());
                if u.name != row.name.as_str() {
                    plan.renames.push((u.id.clone(), row.name.as_str().to_owned()));
                }
            }
            Realised::Created(id) => plan.created.push(UnitRow {
                id: id.clone(),
                code: Some(row.code.as_str().to_owned()),
                name: row.name.as_str().to_owned(),
                level: row.level.as_str().to_owned(),
                parent_id: Some(parent_of_row(row)),
                created_us: now,
                retired_us: None,
            }),
        }
    }
    let kept_ids: HashSet<&str> = realised
        .iter()
        .filter_map(|r| match r {
            Realised::Kept(u) => Some(u.id.as_str()),
            Realised::Created(_) => None,
        })
        .collect();
    let mut retired: Vec<&UnitRow> = Vec::new();
    for (old, (targets, line)) in &input.mapping {
        let Some(&unit) = by_code.get(old.as_str()) else {
            continue;
        };
        if mentioned.contains(&unit.id) {
            continue; // kept as its own new unit
        }
        mentioned.insert(unit.id.clone());
        let own: Vec<&UnitRow> = children.get(unit.id.as_str()).cloned().unwrap_or_default();
        if targets.len() == 1 {
            let into = realised_id(targets.iter().next().map_or("", String::as_str)).unwrap_or_default();
            for child in own {
                // A child the files place themselves goes where they say.
                let placed = kept_ids.contains(child.id.as_str())
                    || child
                        .code
                        .as_deref()
                        .is_some_and(|c| input.mapping.contains_key(c));
                if !placed {
                    parent.insert(child.id.clone(), into.clone());
                }
            }
            retired.push(unit);
        } else if own
            .iter()
            .all(|c| c.code.as_deref().is_some_and(|c| input.mapping.contains_key(c)))
        {
            retired.push(unit);
        } else {
            let homes: BTreeSet<String> = targets
                .iter()
                .filter_map(|t| index.get(t.as_str()).map(|&i| parent_of_row(&rows[i])))
                .collect();
            if homes.len() != 1 {
                problems.push(format!(
                    "mapping line {line}: {} is split between units under different parents; \
                     move its villages first",
                    label(unit)
                ));
                continue;
            }
            parent.insert(unit.id.clone(), homes.into_iter().next().unwrap_or_default());
            if index.contains_key(old.as_str()) {
                plan.freed_codes.push(unit.id.clone());
            }
            let mut villages: Vec<(String, String)> =
                own.iter().map(|c| (c.id.clone(), c.name.clone())).collect();
            villages.sort_by(|a, b| a.1.cmp(&b.1));
            plan.pending.push(PendingSplit {
                unit_id: unit.id.clone(),
                old_code: old.clone(),
                name: unit.name.clone(),
                targets: targets.iter().cloned().collect(),
                villages,
            });
        }
    }
    // Units the files do not mention stay where they are if they are villages, and are retired
    // otherwise (they must end up empty).
    for u in &live {
        if mentioned.contains(&u.id) {
            continue;
        }
        if u.level == UnitLevel::Village.as_str() {
            parent
                .entry(u.id.clone())
                .or_insert_with(|| u.parent_id.clone().unwrap_or_default());
        } else if !parent.contains_key(&u.id) {
            retired.push(u);
        }
    }
    let retired_ids: HashSet<&str> = retired.iter().map(|u| u.id.as_str()).collect();
    let mut stranded: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (unit, p) in &parent {
        if retired_ids.contains(p.as_str())
            && let Some(u) = by_id.get(unit.as_str())
        {
            stranded.entry(p.as_str()).or_default().push(label(u));
        }
    }
    for (p, held) in stranded {
        let shown: Vec<_> = held.iter().take(5).cloned().collect();
        problems.push(format!(
            "{} is neither kept by the units file nor in the mapping, but would still hold {} unit(s): {}{}",
            by_id.get(p).map_or_else(|| p.to_owned(), |u| label(u)),
            held.len(),
            shown.join(", "),
            if held.len() > 5 { ", ..." } else { "" }
        ));
    }
    // A new unit's code must be free once the retirements are done.
    let creating: Vec<String> = plan.created.iter().filter_map(|u| u.code.clone()).collect();
    for holder in db::units::find_live_by_codes(conn, &creating)? {
        let inside = by_id.contains_key(holder.id.as_str());
        if !(inside && (retired_ids.contains(holder.id.as_str()) || plan.freed_codes.contains(&holder.id))) {
            problems.push(format!(
                "code {} is taken by {}, which the reform keeps",
                holder.code.as_deref().unwrap_or_default(),
                label(&holder)
            ));
        }
    }
    let mut levels: HashMap<&str, UnitLevel> = HashMap::new();
    for u in live.iter().chain(&plan.created).chain([root]) {
        levels.insert(u.id.as_str(), level_of(u)?);
    }
    for (unit, p) in &parent {
        let Some(u) = by_id.get(unit.as_str()) else {
            continue;
        };
        if u.parent_id.as_deref() == Some(p.as_str()) {
            continue;
        }
        if let (Some(ul), Some(pl)) = (levels.get(unit.as_str()), levels.get(p.as_str()))
            && !ul.may_have_parent(*pl)
        {
            problems.push(format!("{} would have to move under a {pl}", label(u)));
        }
        plan.moves.insert(unit.clone(), p.clone());
    }
    // Nothing may be reorganised before its current placement began.
    let touched: Vec<String> = plan
        .moves
        .keys()
        .cloned()
        .chain(retired.iter().map(|u| u.id.clone()))
        .collect();
    for (unit, since) in db::units::current_since_many(conn, &touched)? {
        if let Some(since) = since
            && since.as_str() > day
            && let Some(u) = by_id.get(unit.as_str())
        {
            problems.push(format!(
                "{} has been where it is since {since}; the reform cannot take effect before",
                label(u)
            ));
        }
    }
    if !problems.is_empty() {
        problems.sort();
        return Err(ReformError::Plan(problems));
    }
    plan.retired = retired.into_iter().cloned().collect();
    plan.pending.sort_by(|a, b| a.old_code.cmp(&b.old_code));
    Ok(plan)
}

/// Applies (or with `dry_run`, only plans) a reform of the subtree of `root`, effective `date`.
pub fn reform(
    conn: &mut DbConn,
    input: &ReformInput,
    root: UnitId,
    date: time::Date,
    dry_run: bool,
) -> Result<ReformReport, ReformError> {
    let day = date.to_string();
    crate::db::tx::consistent(conn, |conn| {
        fold::lock(conn)?;
        fold::fold_locked(conn)?;
        let root = db::units::find(conn, &root.to_string())?
            .filter(|u| u.retired_us.is_none())
            .ok_or_else(|| AppError::not_found(format!("unit {root}")))?;
        let mut report = ReformReport {
            effective_on: day.clone(),
            dry_run,
            ..Default::default()
        };
        for (effective_on, detail) in db::units::reorganisation_details(conn, "reform")? {
            let same = serde_json::from_str::<serde_json::Value>(&detail)
                .is_ok_and(|d| d["digest"] == input.digest.as_str() && d["root"] == root.id.as_str());
            if same {
                report.already_applied = true;
                report.effective_on = effective_on;
                return Ok(report);
            }
        }
        let plan = plan(conn, input, &root, &day)?;
        report.kept = plan.kept;
        report.renamed = plan.renames.len();
        report.moved = plan.moves.len();
        for u in &plan.created {
            *report.created.entry(u.level.clone()).or_default() += 1;
        }
        for u in &plan.retired {
            *report.retired.entry(u.level.clone()).or_default() += 1;
        }
        let retired_ids: Vec<String> = plan.retired.iter().map(|u| u.id.clone()).collect();
        report.stale_scopes = db::units::users_scoped_to(conn, &retired_ids)?
            .into_iter()
            .map(|(user, unit)| {
                let shown = plan.retired.iter().find(|u| u.id == unit).map_or(unit, label);
                (user, shown)
            })
            .collect();
        report.pending = plan.pending.clone();
        if !dry_run {
            apply(conn, &plan, &day)?;
            let detail = serde_json::json!({
                "digest": input.digest,
                "root": root.id,
                "kept": report.kept,
                "renamed": report.renamed,
                "created": report.created,
                "retired": report.retired,
                "moved": report.moved,
                "pending": plan.pending.iter().map(|p| &p.unit_id).collect::<Vec<_>>(),
            });
            db::units::record_reorganisation(
                conn,
                &uuid::Uuid::now_v7().to_string(),
                "reform",
                &day,
                &detail.to_string(),
                None,
                crate::clock::now_us(),
            )?;
        }
        Ok(report)
    })
}

/// Writes a plan: the tree, its history, its closure and the roll-ups of the new tree.
fn apply(conn: &mut DbConn, plan: &Plan, day: &str) -> Result<(), ReformError> {
    let now = crate::clock::now_us();
    let retired: Vec<String> = plan.retired.iter().map(|u| u.id.clone()).collect();
    db::units::retire_many(conn, &retired, now)?;
    db::units::close_history_many(conn, &retired, day)?;
    db::units::clear_codes(conn, &plan.freed_codes)?;

    // Parents before children: a child's level always ranks below its parent's.
    let mut created = plan.created.clone();
    created.sort_by_key(|u| u.level.parse::<UnitLevel>().map_or(u8::MAX, UnitLevel::rank));
    db::units::insert_all(conn, &created, &[])?;
    let created_ids: Vec<String> = created.iter().map(|u| u.id.clone()).collect();
    db::units::start_history_on(conn, &created_ids, day)?;
    for (id, name) in &plan.renames {
        db::units::rename(conn, id, name)?;
    }
    let mut by_parent: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (unit, p) in &plan.moves {
        by_parent.entry(p.as_str()).or_default().push(unit.clone());
    }
    for (p, units) in &by_parent {
        db::units::set_parent_many(conn, units, p)?;
    }
    let moved: Vec<String> = plan.moves.keys().cloned().collect();
    db::units::close_history_many(conn, &moved, day)?;
    let placements: Vec<(String, String)> = plan.moves.iter().map(|(u, p)| (u.clone(), p.clone())).collect();
    db::units::open_history_many(conn, &placements, day, now)?;

    // The closure of every unit whose chain of ancestors changed.
    let mut problems = Vec::new();
    let expected = crate::verify::expected_closure(&db::units::all_parents(conn)?, &mut problems);
    if !problems.is_empty() {
        return Err(ReformError::Plan(problems));
    }
    let group = |rows: Vec<ClosureRow>| {
        let mut m: HashMap<String, BTreeSet<(String, i32)>> = HashMap::new();
        for r in rows {
            m.entry(r.descendant_id)
                .or_default()
                .insert((r.ancestor_id, r.depth));
        }
        m
    };
    let want = group(expected);
    let have = group(db::units::all_closure(conn)?);
    let mut changed: Vec<String> = want
        .iter()
        .filter(|(d, rows)| have.get(*d) != Some(*rows))
        .map(|(d, _)| d.clone())
        .collect();
    changed.sort();
    let rows: Vec<ClosureRow> = changed
        .iter()
        .flat_map(|d| {
            want[d].iter().map(move |(a, depth)| ClosureRow {
                ancestor_id: a.clone(),
                descendant_id: d.clone(),
                depth: *depth,
            })
        })
        .collect();
    db::units::replace_closure_of(conn, &changed, &rows)?;

    // Every roll-up becomes the sum of its villages under the new tree (the fold lock is held
    // and every delta folded, so the stored roll-ups are complete).
    let villages = db::tallies::all_villages(conn)?;
    let expected = fold::roll_up(conn, &villages)?;
    let stored = db::tallies::all_units(conn)?;
    db::tallies::add_to_units(
        conn,
        &crate::aggregates::tallies::Tally::delta(&stored, &expected),
    )?;
    Ok(())
}
