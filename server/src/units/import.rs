//! `hamlet units import FILE.csv`: header `code,name,level,parent_code`, rows in any order.
//!
//! The whole file is validated before anything is written, and written in one transaction:
//! a file with a bad row imports nothing. Re-importing the same file changes nothing; a row
//! whose unit exists with another name renames it; a row that would move an existing unit to
//! another parent or level is an error (that is a reorganisation, not an import).

use super::unit_from_row;
use crate::db::units::{ClosureRow, UnitRow};
use crate::db::{self, DbConn};
use crate::error::AppError;
use hamlet_shared::{UnitCode, UnitId, UnitLevel, UnitName};
use std::collections::{HashMap, HashSet};
use std::io::Read;

pub const HEADER: [&str; 4] = ["code", "name", "level", "parent_code"];

/// One rejected line of the input file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    pub line: u64,
    pub message: String,
}

impl std::fmt::Display for LineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{} invalid line(s); nothing was imported", .0.len())]
    Invalid(Vec<LineError>),
    #[error(transparent)]
    App(#[from] AppError),
}

impl From<diesel::result::Error> for ImportError {
    fn from(e: diesel::result::Error) -> Self {
        Self::App(e.into())
    }
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    pub rows: usize,
    pub created: usize,
    pub renamed: usize,
    pub unchanged: usize,
}

/// Import settings.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// Rows with an empty `parent_code` go under this existing unit instead of becoming roots
    /// (e.g. the national files list provinces without their country).
    pub root_parent: Option<UnitId>,
}

pub(super) struct Row {
    pub line: u64,
    pub code: UnitCode,
    pub name: UnitName,
    pub level: UnitLevel,
    pub parent_code: Option<UnitCode>,
}

/// The closure rows of a new unit: itself at depth 0, then each ancestor of its parent one deeper.
pub fn closure_rows(id: &str, parent_ancestors: &[ClosureRow]) -> Vec<ClosureRow> {
    std::iter::once(ClosureRow {
        ancestor_id: id.to_owned(),
        descendant_id: id.to_owned(),
        depth: 0,
    })
    .chain(parent_ancestors.iter().map(|a| ClosureRow {
        ancestor_id: a.ancestor_id.clone(),
        descendant_id: id.to_owned(),
        depth: a.depth + 1,
    }))
    .collect()
}

/// Parses every line, collecting every error rather than stopping at the first.
pub(super) fn parse(input: impl Read) -> Result<Vec<Row>, Vec<LineError>> {
    let mut reader = csv::ReaderBuilder::new().has_headers(true).from_reader(input);
    let mut errors = Vec::new();
    match reader.headers() {
        Ok(h) if h.iter().map(str::trim).eq(HEADER) => {}
        Ok(h) => {
            let got: Vec<_> = h.iter().collect();
            return Err(vec![LineError {
                line: 1,
                message: format!("header must be {:?}, found {:?}", HEADER.join(","), got.join(",")),
            }]);
        }
        Err(e) => {
            return Err(vec![LineError {
                line: 1,
                message: e.to_string(),
            }]);
        }
    }
    let mut rows = Vec::new();
    let mut seen: HashMap<String, u64> = HashMap::new();
    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                errors.push(LineError {
                    line,
                    message: csv_error_message(&e),
                });
                continue;
            }
        };
        let line = record.position().map_or(0, |p| p.line());
        let mut problems = Vec::new();
        let code = UnitCode::parse(&record[0])
            .map_err(|d| problems.push(d.message))
            .ok();
        let name = UnitName::parse(&record[1])
            .map_err(|d| problems.push(d.message))
            .ok();
        let level = record[2]
            .trim()
            .parse::<UnitLevel>()
            .map_err(|m| problems.push(m))
            .ok();
        let parent_code = match record[3].trim() {
            "" => Some(None),
            raw => UnitCode::parse(raw)
                .map(Some)
                .map_err(|d| problems.push(format!("parent_code: {}", d.message)))
                .ok(),
        };
        if let Some(code) = &code
            && let Some(first) = seen.insert(code.as_str().to_owned(), line)
        {
            problems.push(format!("code {} already appears on line {first}", code.as_str()));
        }
        match (code, name, level, parent_code, problems.is_empty()) {
            (Some(code), Some(name), Some(level), Some(parent_code), true) => rows.push(Row {
                line,
                code,
                name,
                level,
                parent_code,
            }),
            _ => errors.push(LineError {
                line,
                message: problems.join("; "),
            }),
        }
    }
    if errors.is_empty() { Ok(rows) } else { Err(errors) }
}

pub(super) fn csv_error_message(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => {
            format!("expected {expected_len} fields, found {len}")
        }
        csv::ErrorKind::Utf8 { .. } => "not valid UTF-8".to_owned(),
        _ => e.to_string(),
    }
}

/// Where a row's parent is.
#[derive(Clone)]
enum Parent {
    Root,
    Existing { id: String, level: UnitLevel },
    InFile(usize),
}

/// Imports a units CSV; `progress` is called with the number of rows written so far.
pub fn import(
    conn: &mut DbConn,
    input: impl Read,
    options: &ImportOptions,
    mut progress: impl FnMut(usize),
) -> Result<ImportReport, ImportError> {
    let rows = parse(input).map_err(ImportError::Invalid)?;
    crate::db::tx::write(conn, |conn| {
        let mut report = ImportReport {
            rows: rows.len(),
            ..Default::default()
        };
        let index: HashMap<&str, usize> = rows
            .iter()
            .enumerate()
            .map(|(i, r)| (r.code.as_str(), i))
            .collect();

        // Every live unit the file names, as a row or as a parent.
        let mut wanted: HashSet<String> = rows.iter().map(|r| r.code.as_str().to_owned()).collect();
        wanted.extend(
            rows.iter()
                .filter_map(|r| r.parent_code.as_ref().map(|p| p.as_str().to_owned())),
        );
        let wanted: Vec<String> = wanted.into_iter().collect();
        let existing: HashMap<String, UnitRow> = db::units::find_live_by_codes(conn, &wanted)?
            .into_iter()
            .filter_map(|u| u.code.clone().map(|c| (c, u)))
            .collect();
        let root_parent = match options.root_parent {
            Some(id) => {
                let unit = super::get(conn, id)?;
                Parent::Existing {
                    id: unit.id.to_string(),
                    level: unit.level,
                }
            }
            None => Parent::Root,
        };

        let mut errors = Vec::new();
        let mut parents = Vec::with_capacity(rows.len());
        for row in &rows {
            let parent = match &row.parent_code {
                None => root_parent.clone(),
                Some(p) => match (index.get(p.as_str()), existing.get(p.as_str())) {
                    (Some(&i), _) => Parent::InFile(i),
                    (None, Some(u)) => Parent::Existing {
                        id: u.id.clone(),
                        level: unit_from_row(u.clone())?.level,
                    },
                    (None, None) => {
                        errors.push(LineError {
                            line: row.line,
                            message: format!(
                                "parent_code {} is neither in the file nor an existing unit",
                                p.as_str()
                            ),
                        });
                        parents.push(Parent::Root);
                        continue;
                    }
                },
            };
            let parent_level = match &parent {
                Parent::Root => None,
                Parent::Existing { level, .. } => Some(*level),
                Parent::InFile(i) => Some(rows[*i].level),
            };
            if let Some(pl) = parent_level
                && !row.level.may_have_parent(pl)
            {
                errors.push(LineError {
                    line: row.line,
                    message: format!("a {} cannot be placed under a {pl}", row.level),
                });
            }
            parents.push(parent);
        }
        if !errors.is_empty() {
            return Err(ImportError::Invalid(errors));
        }

        // Ids: existing units keep theirs, new ones get fresh ids.
        let ids: Vec<String> = rows
            .iter()
            .map(|r| match existing.get(r.code.as_str()) {
                Some(u) => u.id.clone(),
                None => UnitId::new().to_string(),
            })
            .collect();
        let parent_id = |p: &Parent| match p {
            Parent::Root => None,
            Parent::Existing { id, .. } => Some(id.clone()),
            Parent::InFile(i) => Some(ids[*i].clone()),
        };

        let mut renames = Vec::new();
        let mut new_rows = Vec::new();
        for (i, row) in rows.iter().enumerate() {
            match existing.get(row.code.as_str()) {
                Some(current) => {
                    let current_level = unit_from_row(current.clone())?.level;
                    let wanted_parent = parent_id(&parents[i]);
                    if current_level != row.level || current.parent_id != wanted_parent {
                        errors.push(LineError {
                            line: row.line,
                            message: format!(
                                "unit {} already exists with another level or parent; \
                                 moving units is a reorganisation, not an import",
                                row.code.as_str()
                            ),
                        });
                    } else if current.name != row.name.as_str() {
                        renames.push((current.id.clone(), row.name.as_str().to_owned()));
                    } else {
                        report.unchanged += 1;
                    }
                }
                None => new_rows.push(i),
            }
        }
        if !errors.is_empty() {
            return Err(ImportError::Invalid(errors));
        }

        // Parents before children: a child's level always ranks below its parent's.
        new_rows.sort_by_key(|&i| rows[i].level.rank());
        // Parents already in the database: named outside the file, or rows of the file that
        // exist already (a re-import that adds villages under a listed commune).
        let existing_parents: Vec<String> = new_rows
            .iter()
            .filter_map(|&i| match &parents[i] {
                Parent::Existing { id, .. } => Some(id.clone()),
                Parent::InFile(p) if existing.contains_key(rows[*p].code.as_str()) => Some(ids[*p].clone()),
                _ => None,
            })
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let mut ancestors: HashMap<String, Vec<ClosureRow>> = HashMap::new();
        for row in db::units::ancestors_of(conn, &existing_parents)? {
            ancestors.entry(row.descendant_id.clone()).or_default().push(row);
        }
        let now = crate::clock::now_us();
        let mut unit_rows = Vec::with_capacity(new_rows.len());
        let mut closure = Vec::new();
        for &i in &new_rows {
            let row = &rows[i];
            let parent = parent_id(&parents[i]);
            let own = closure_rows(
                &ids[i],
                parent
                    .as_ref()
                    .and_then(|p| ancestors.get(p))
                    .map_or(&[][..], Vec::as_slice),
            );
            closure.extend(own.iter().cloned());
            ancestors.insert(ids[i].clone(), own);
            unit_rows.push(UnitRow {
                id: ids[i].clone(),
                code: Some(row.code.as_str().to_owned()),
                name: row.name.as_str().to_owned(),
                level: row.level.as_str().to_owned(),
                parent_id: parent,
                created_us: now,
                retired_us: None,
            });
        }
        for (n, chunk) in unit_rows.chunks(1000).enumerate() {
            let ids: HashSet<&str> = chunk.iter().map(|u| u.id.as_str()).collect();
            let chunk_closure: Vec<ClosureRow> = closure
                .iter()
                .filter(|c| ids.contains(c.descendant_id.as_str()))
                .cloned()
                .collect();
            db::units::insert_all(conn, chunk, &chunk_closure)?;
            progress(report.unchanged + n * 1000 + chunk.len());
        }
        for (id, name) in &renames {
            db::units::rename(conn, id, name)?;
        }
        report.created = unit_rows.len();
        report.renamed = renames.len();
        progress(report.rows);
        Ok(report)
    })
}
