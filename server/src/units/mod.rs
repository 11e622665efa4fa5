//! Administrative units: the tree, its invariants, and the CSV import.

pub mod import;
pub mod reform;
pub mod reorg;

use crate::auth::{Action, Principal, authorize, require_role};
use crate::db::{self, DbConn, units::UnitRow};
use crate::error::{AppError, AppResult};
use hamlet_shared::{
    ErrorCode, ErrorDetail, NewUnit, PathEntry, Unit, UnitCode, UnitId, UnitLevel, UnitName, UnitWithPath,
};

/// A row read back from the database as a domain unit. Rows are written only by this module,
/// so a row that does not parse is a bug, reported as an internal error.
pub fn unit_from_row(row: UnitRow) -> AppResult<Unit> {
    let corrupt = |what: &str| AppError::Internal(format!("unit row {} has a bad {what}", row.id));
    Ok(Unit {
        id: row.id.parse().map_err(|_| corrupt("id"))?,
        level: row.level.parse().map_err(|_| corrupt("level"))?,
        parent_id: match &row.parent_id {
            Some(p) => Some(p.parse().map_err(|_| corrupt("parent_id"))?),
            None => None,
        },
        code: row.code,
        name: row.name,
    })
}

/// A live unit, or 404.
pub fn get(conn: &mut DbConn, id: UnitId) -> AppResult<Unit> {
    match db::units::find(conn, &id.to_string())? {
        Some(row) if row.retired_us.is_none() => unit_from_row(row),
        _ => Err(AppError::not_found(format!("unit {id}"))),
    }
}

/// A live unit that a request body names (a parent, a merge target): 422 on `field` when it
/// does not exist, since 404 is for the resource the URL names.
pub fn get_referenced(conn: &mut DbConn, id: UnitId, field: &str) -> AppResult<Unit> {
    get(conn, id).map_err(|e| match e {
        AppError::NotFound(_) => AppError::invalid(ErrorDetail::field(
            field,
            ErrorCode::InvalidValue,
            format!("unit {id} does not exist"),
        )),
        other => other,
    })
}

/// The unit with its path from the root.
pub fn get_with_path(conn: &mut DbConn, id: UnitId) -> AppResult<UnitWithPath> {
    let unit = get(conn, id)?;
    let path = db::units::path(conn, &id.to_string())?
        .into_iter()
        .map(|row| {
            unit_from_row(row).map(|u| PathEntry {
                id: u.id,
                name: u.name,
                level: u.level,
            })
        })
        .collect::<AppResult<Vec<_>>>()?;
    Ok(UnitWithPath { unit, path })
}

/// Names of the given units (retired ones included), for labelling lists.
pub fn names(conn: &mut DbConn, ids: &[UnitId]) -> AppResult<std::collections::HashMap<UnitId, String>> {
    let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
    db::units::find_many(conn, &ids)?
        .into_iter()
        .map(|row| unit_from_row(row).map(|u| (u.id, u.name)))
        .collect()
}

/// The live children of a live unit.
pub fn children(conn: &mut DbConn, id: UnitId) -> AppResult<Vec<Unit>> {
    get(conn, id)?;
    db::units::children(conn, &id.to_string())?
        .into_iter()
        .map(unit_from_row)
        .collect()
}

/// A validated request to create a unit under an existing parent.
#[derive(Debug, Clone)]
pub struct UnitDraft {
    pub code: Option<UnitCode>,
    pub name: UnitName,
    pub level: UnitLevel,
    pub parent_id: UnitId,
}

impl UnitDraft {
    /// Parses the wire body, collecting every field problem into one 422.
    pub fn parse(new: NewUnit) -> AppResult<Self> {
        let code = new.code.as_deref().map(UnitCode::parse).transpose();
        let name = UnitName::parse(&new.name);
        match (code, name) {
            (Ok(code), Ok(name)) => Ok(Self {
                code,
                name,
                level: new.level,
                parent_id: new.parent_id,
            }),
            (code, name) => Err(AppError::invalid_many(
                code.err().into_iter().chain(name.err()).collect(),
            )),
        }
    }
}

/// Creates a unit under a live parent of a higher level, in the caller's scope; its code must
/// be free among live units.
pub fn create(conn: &mut DbConn, principal: &Principal, draft: UnitDraft) -> AppResult<Unit> {
    require_role(
        principal,
        Action::CreateUnit {
            parent: draft.parent_id,
        },
    )?;
    crate::db::tx::write(conn, |conn| {
        let parent = get_referenced(conn, draft.parent_id, "parent_id")?;
        authorize(conn, principal, Action::CreateUnit { parent: parent.id })?;
        if !draft.level.may_have_parent(parent.level) {
            return Err(AppError::invalid(ErrorDetail::field(
                "level",
                ErrorCode::InvalidValue,
                format!("a {} cannot be placed under a {}", draft.level, parent.level),
            )));
        }
        if let Some(code) = &draft.code
            && db::units::find_live_by_code(conn, code.as_str())?.is_some()
        {
            return Err(AppError::Conflict(format!(
                "a unit with code {} already exists",
                code.as_str()
            )));
        }
        let id = UnitId::new();
        let row = UnitRow {
            id: id.to_string(),
            code: draft.code.map(UnitCode::into_inner),
            name: draft.name.into_inner(),
            level: draft.level.as_str().to_owned(),
            parent_id: Some(parent.id.to_string()),
            created_us: crate::clock::now_us(),
            retired_us: None,
        };
        let parent_ancestors = db::units::ancestors_of(conn, &[parent.id.to_string()])?;
        let closure = import::closure_rows(&row.id, &parent_ancestors);
        db::units::insert_all(conn, std::slice::from_ref(&row), &closure)?;
        unit_from_row(row)
    })
}
