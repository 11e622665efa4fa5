//! `GET /api/v1/aggregates/{unit_id}/export`: one row per unit of the subtree (the unit first),
//! CSV streamed in chunks of units, or XLSX written in constant memory.

use super::{AggregateSettings, Request, build, tallies_of};
use crate::auth::{Action, Principal, authorize};
use crate::db::{self, DbConn};
use crate::error::{AppError, AppResult};
use crate::units::unit_from_row;
use hamlet_shared::aggregates::{Aggregate, INDICATOR_KEYS};
use hamlet_shared::{Role, Unit, UnitId};
use std::collections::HashMap;

/// Units per chunk of the CSV stream.
pub const CHUNK_UNITS: usize = 500;

/// The export's header row.
pub fn header() -> Vec<String> {
    let mut h: Vec<String> = [
        "unit_id",
        "code",
        "name",
        "level",
        "path",
        "households",
        "members",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for key in INDICATOR_KEYS {
        for part in ["numerator", "denominator", "unknown", "ratio"] {
            h.push(format!("{key}_{part}"));
        }
    }
    h
}

/// The units of the export, ordered by path, with their paths.
pub struct Plan {
    pub units: Vec<(Unit, String)>,
    pub role: Role,
}

/// Loads the subtree's units and paths (not their figures) after checking access.
pub fn plan(conn: &mut DbConn, principal: &Principal, id: UnitId) -> AppResult<Plan> {
    let root = crate::units::get(conn, id)?;
    authorize(conn, principal, Action::ReadAggregates(id))?;
    let prefix: Vec<String> = db::units::path(conn, &id.to_string())?
        .into_iter()
        .map(|u| u.name)
        .collect();
    let rows = db::units::subtree(conn, &id.to_string())?;
    let mut parent_of: HashMap<String, Option<String>> = HashMap::new();
    let mut name_of: HashMap<String, String> = HashMap::new();
    let mut units = Vec::with_capacity(rows.len());
    for row in rows {
        parent_of.insert(row.id.clone(), row.parent_id.clone());
        name_of.insert(row.id.clone(), row.name.clone());
        units.push(unit_from_row(row)?);
    }
    let root_id = root.id.to_string();
    let mut path_of: HashMap<String, String> = HashMap::new();
    path_of.insert(root_id.clone(), prefix.join(" / "));
    let mut out: Vec<(Unit, String)> = Vec::with_capacity(units.len());
    for unit in units {
        let path = path_string(&unit.id.to_string(), &parent_of, &name_of, &mut path_of);
        out.push((unit, path));
    }
    out.sort_by(|a, b| (a.1.as_str(), a.0.id).cmp(&(b.1.as_str(), b.0.id)));
    Ok(Plan {
        units: out,
        role: principal.role,
    })
}

/// A unit's path below a root whose own path is memoised (the tree is at most five deep).
fn path_string(
    id: &str,
    parent_of: &HashMap<String, Option<String>>,
    name_of: &HashMap<String, String>,
    memo: &mut HashMap<String, String>,
) -> String {
    if let Some(p) = memo.get(id) {
        return p.clone();
    }
    let parent = parent_of.get(id).cloned().flatten().unwrap_or_default();
    let path = format!(
        "{} / {}",
        path_string(&parent, parent_of, name_of, memo),
        name_of.get(id).map_or("", String::as_str)
    );
    memo.insert(id.to_owned(), path.clone());
    path
}

/// The figures of one chunk of the plan.
pub fn chunk(
    conn: &mut DbConn,
    units: &[(Unit, String)],
    req: &Request,
    settings: &AggregateSettings,
    role: Role,
) -> AppResult<Vec<(Aggregate, Unit, String)>> {
    let list: Vec<Unit> = units.iter().map(|(u, _)| u.clone()).collect();
    let mut t = tallies_of(conn, &list)?;
    Ok(units
        .iter()
        .map(|(u, path)| {
            (
                build(
                    u,
                    &t.remove(&u.id.to_string()).unwrap_or_default(),
                    req,
                    settings,
                    role,
                ),
                u.clone(),
                path.clone(),
            )
        })
        .collect())
}

/// One export row as text cells (a null ratio is an empty cell).
pub fn row_cells(a: &Aggregate, unit: &Unit, path: &str) -> Vec<String> {
    let mut cells = vec![
        unit.id.to_string(),
        unit.code.clone().unwrap_or_default(),
        unit.name.clone(),
        unit.level.to_string(),
        path.to_owned(),
        a.households.to_string(),
        a.members.to_string(),
    ];
    for i in &a.indicators {
        cells.push(i.numerator.to_string());
        cells.push(i.denominator.to_string());
        cells.push(i.unknown.to_string());
        cells.push(i.ratio.map(|r| r.to_string()).unwrap_or_default());
    }
    cells
}

/// CSV text of some rows (with the header first when asked).
pub fn csv_bytes(rows: &[(Aggregate, Unit, String)], with_header: bool) -> AppResult<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let fail = |e: csv::Error| AppError::Internal(format!("csv: {e}"));
    if with_header {
        w.write_record(header()).map_err(fail)?;
    }
    for (a, u, p) in rows {
        w.write_record(row_cells(a, u, p)).map_err(fail)?;
    }
    w.into_inner()
        .map_err(|e| AppError::Internal(format!("csv: {e}")))
}

/// The whole export as an XLSX workbook: text cells for ids and names, numbers for counts and
/// ratios, empty cells for null ratios. Rows go to a temporary file as they are written.
pub fn xlsx(
    conn: &mut DbConn,
    plan: &Plan,
    req: &Request,
    settings: &AggregateSettings,
) -> AppResult<Vec<u8>> {
    use rust_xlsxwriter::Workbook;
    let fail = |e: rust_xlsxwriter::XlsxError| AppError::Internal(format!("xlsx: {e}"));
    let mut workbook = Workbook::new();
    let sheet = workbook.add_worksheet_with_constant_memory().map_err(fail)?;
    sheet.set_name("aggregates").map_err(fail)?;
    for (c, title) in header().iter().enumerate() {
        sheet.write_string(0, c as u16, title).map_err(fail)?;
    }
    let mut r: u32 = 1;
    for units in plan.units.chunks(CHUNK_UNITS) {
        for (a, u, path) in chunk(conn, units, req, settings, plan.role)? {
            let cells = row_cells(&a, &u, &path);
            for (c, text) in cells.iter().enumerate().take(5) {
                sheet.write_string(r, c as u16, text).map_err(fail)?;
            }
            let mut numbers: Vec<Option<f64>> = vec![Some(a.households as f64), Some(a.members as f64)];
            for i in &a.indicators {
                numbers.extend([
                    Some(i.numerator as f64),
                    Some(i.denominator as f64),
                    Some(i.unknown as f64),
                    i.ratio,
                ]);
            }
            for (k, n) in numbers.into_iter().enumerate() {
                if let Some(n) = n {
                    sheet.write_number(r, (5 + k) as u16, n).map_err(fail)?;
                }
            }
            r += 1;
        }
    }
    workbook.save_to_buffer().map_err(fail)
}
