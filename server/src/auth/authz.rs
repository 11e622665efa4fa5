//! The one authorization decision: may this principal do this action here?
//! Every handler asks it; none checks roles or scopes on its own.

use super::Principal;
use crate::db::{self, DbConn};
use crate::error::{AppError, AppResult};
use hamlet_shared::{Role, UnitId};

/// Something a caller wants to do, with the units it touches.
#[derive(Debug, Clone, Copy)]
pub enum Action<'a> {
    /// Read a unit and its children.
    ReadUnit(UnitId),
    /// Create a unit under `parent`.
    CreateUnit { parent: UnitId },
    /// Create, disable or enable a user whose scope is these units.
    ManageUser { scope: &'a [UnitId] },
    /// Read aggregates of a unit.
    ReadAggregates(UnitId),
    /// Push records (each record's village is checked with `WriteVillage`).
    Push,
    /// Pull the records of one's scope.
    Pull,
    /// Create or change a record in a village.
    WriteVillage(UnitId),
    /// Read or resolve the conflicts of a unit's subtree.
    ManageConflicts(UnitId),
    /// Read the audit log.
    ReadAudit,
    /// Move or merge units: every unit named (and so their subtrees) must be in scope.
    Reorganise { units: &'a [UnitId] },
}

impl Action<'_> {
    fn role_allows(self, role: Role) -> bool {
        use Role::*;
        match self {
            Action::ReadUnit(_) | Action::ReadAggregates(_) => true,
            Action::Push | Action::Pull | Action::WriteVillage(_) => matches!(role, Enumerator | Admin),
            Action::CreateUnit { .. }
            | Action::ManageUser { .. }
            | Action::ManageConflicts(_)
            | Action::ReadAudit
            | Action::Reorganise { .. } => role == Admin,
        }
    }

    fn units(self) -> Vec<UnitId> {
        match self {
            Action::ReadUnit(u)
            | Action::ReadAggregates(u)
            | Action::WriteVillage(u)
            | Action::ManageConflicts(u)
            | Action::CreateUnit { parent: u } => vec![u],
            Action::ManageUser { scope } => scope.to_vec(),
            Action::Reorganise { units } => units.to_vec(),
            Action::Push | Action::Pull | Action::ReadAudit => Vec::new(),
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Action::ReadUnit(_) => "read this unit",
            Action::CreateUnit { .. } => "create units",
            Action::ManageUser { .. } => "manage users",
            Action::ReadAggregates(_) => "read these aggregates",
            Action::Push => "push records",
            Action::Pull => "pull records",
            Action::WriteVillage(_) => "write records in this village",
            Action::ManageConflicts(_) => "manage conflicts",
            Action::ReadAudit => "read the audit log",
            Action::Reorganise { .. } => "reorganise units",
        }
    }
}

/// Ok when the principal's role allows the action and every unit it touches lies in the
/// principal's scope (a scope unit covers its whole subtree); 403 `forbidden` otherwise.
pub fn authorize(conn: &mut DbConn, principal: &Principal, action: Action<'_>) -> AppResult<()> {
    require_role(principal, action)?;
    let units = action.units();
    if !units.is_empty() && !scope_covers(conn, &principal.scope, &units)? {
        return Err(AppError::Forbidden(format!(
            "outside your scope: you may not {}",
            action.describe()
        )));
    }
    Ok(())
}

/// The role half of [`authorize`], for checks that must come before any database work
/// (e.g. a viewer's push is refused before its envelope is read).
pub fn require_role(principal: &Principal, action: Action<'_>) -> AppResult<()> {
    if action.role_allows(principal.role) {
        Ok(())
    } else {
        Err(AppError::Forbidden(format!(
            "a {} may not {}",
            principal.role,
            action.describe()
        )))
    }
}

/// Whether every unit of `units` lies in the subtree of some unit of `scope`.
pub fn scope_covers(conn: &mut DbConn, scope: &[UnitId], units: &[UnitId]) -> AppResult<bool> {
    let scope: Vec<String> = scope.iter().map(ToString::to_string).collect();
    let mut wanted: Vec<String> = units.iter().map(ToString::to_string).collect();
    wanted.sort();
    wanted.dedup();
    if scope.is_empty() {
        return Ok(wanted.is_empty());
    }
    let covered = db::units::covered(conn, &scope, &wanted)?;
    Ok(covered.len() == wanted.len())
}
