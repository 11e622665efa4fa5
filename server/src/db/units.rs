//! Queries on `units` and `unit_closure`.

use super::DbConn;
use super::schema::{reorganisations, unit_closure, unit_history, units};
use diesel::prelude::*;

#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = units)]
#[diesel(treat_none_as_default_value = false)]
pub struct UnitRow {
    pub id: String,
    pub code: Option<String>,
    pub name: String,
    pub level: String,
    pub parent_id: Option<String>,
    pub created_us: i64,
    pub retired_us: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Queryable, Insertable)]
#[diesel(table_name = unit_closure)]
#[diesel(treat_none_as_default_value = false)]
pub struct ClosureRow {
    pub ancestor_id: String,
    pub descendant_id: String,
    pub depth: i32,
}

/// Most rows one multi-row INSERT carries (SQLite allows 32,766 bound parameters).
const INSERT_CHUNK: usize = 500;

pub fn find(conn: &mut DbConn, id: &str) -> QueryResult<Option<UnitRow>> {
    units::table
        .find(id)
        .select(UnitRow::as_select())
        .first(conn)
        .optional()
}

/// The live unit that holds `code`, if any.
pub fn find_live_by_code(conn: &mut DbConn, code: &str) -> QueryResult<Option<UnitRow>> {
    units::table
        .filter(units::code.eq(code))
        .filter(units::retired_us.is_null())
        .select(UnitRow::as_select())
        .first(conn)
        .optional()
}

/// The live units holding any of `codes`.
pub fn find_live_by_codes(conn: &mut DbConn, codes: &[String]) -> QueryResult<Vec<UnitRow>> {
    let mut found = Vec::new();
    for chunk in codes.chunks(INSERT_CHUNK) {
        found.extend(
            units::table
                .filter(units::code.eq_any(chunk))
                .filter(units::retired_us.is_null())
                .select(UnitRow::as_select())
                .load(conn)?,
        );
    }
    Ok(found)
}

/// The unit's ancestors and itself, root first.
pub fn path(conn: &mut DbConn, id: &str) -> QueryResult<Vec<UnitRow>> {
    unit_closure::table
        .inner_join(units::table.on(units::id.eq(unit_closure::ancestor_id)))
        .filter(unit_closure::descendant_id.eq(id))
        .order(unit_closure::depth.desc())
        .select(UnitRow::as_select())
        .load(conn)
}

/// Live children, ordered by code then name.
pub fn children(conn: &mut DbConn, id: &str) -> QueryResult<Vec<UnitRow>> {
    units::table
        .filter(units::parent_id.eq(id))
        .filter(units::retired_us.is_null())
        .order((units::code.asc(), units::name.asc()))
        .select(UnitRow::as_select())
        .load(conn)
}

/// Closure rows whose descendant is one of `ids` (each unit's ancestors, itself included).
pub fn ancestors_of(conn: &mut DbConn, ids: &[String]) -> QueryResult<Vec<ClosureRow>> {
    let mut rows = Vec::new();
    for chunk in ids.chunks(INSERT_CHUNK) {
        rows.extend(
            unit_closure::table
                .filter(unit_closure::descendant_id.eq_any(chunk))
                .load::<ClosureRow>(conn)?,
        );
    }
    Ok(rows)
}

/// Whether `descendant` lies in the subtree of any of `ancestors` (a unit covers itself).
pub fn any_covers(conn: &mut DbConn, ancestors: &[String], descendant: &str) -> QueryResult<bool> {
    use diesel::dsl::{exists, select};
    select(exists(
        unit_closure::table
            .filter(unit_closure::ancestor_id.eq_any(ancestors))
            .filter(unit_closure::descendant_id.eq(descendant)),
    ))
    .get_result(conn)
}

/// Inserts units, their closure rows and their first placement in the history, in chunks.
pub fn insert_all(conn: &mut DbConn, rows: &[UnitRow], closure: &[ClosureRow]) -> QueryResult<()> {
    for chunk in rows.chunks(INSERT_CHUNK) {
        crate::per_backend!(&mut *conn, |c| diesel::insert_into(units::table)
            .values(chunk)
            .execute(c))?;
        // Every unit starts with an open-ended placement under its parent.
        let history: Vec<_> = chunk
            .iter()
            .map(|u| {
                (
                    unit_history::unit_id.eq(u.id.clone()),
                    unit_history::parent_id.eq(u.parent_id.clone()),
                    unit_history::created_us.eq(u.created_us),
                )
            })
            .collect();
        crate::per_backend!(&mut *conn, |c| diesel::insert_into(unit_history::table)
            .values(&history)
            .execute(c))?;
    }
    for chunk in closure.chunks(INSERT_CHUNK) {
        crate::per_backend!(&mut *conn, |c| diesel::insert_into(unit_closure::table)
            .values(chunk)
            .execute(c))?;
    }
    Ok(())
}

pub fn rename(conn: &mut DbConn, id: &str, name: &str) -> QueryResult<usize> {
    diesel::update(units::table.find(id))
        .set(units::name.eq(name))
        .execute(conn)
}

/// Which of `candidates` lie in the subtrees of `ancestors`.
pub fn covered(conn: &mut DbConn, ancestors: &[String], candidates: &[String]) -> QueryResult<Vec<String>> {
    unit_closure::table
        .filter(unit_closure::ancestor_id.eq_any(ancestors))
        .filter(unit_closure::descendant_id.eq_any(candidates))
        .select(unit_closure::descendant_id)
        .distinct()
        .load(conn)
}

/// Whether any of `units` is a root (has no parent): its holder's scope is the whole tree.
pub fn any_root(conn: &mut DbConn, ids: &[String]) -> QueryResult<bool> {
    use diesel::dsl::{exists, select};
    select(exists(
        units::table
            .filter(units::id.eq_any(ids))
            .filter(units::parent_id.is_null()),
    ))
    .get_result(conn)
}

/// Every unit's id and parent id (retired units included: their closure rows stay for history).
pub fn all_parents(conn: &mut DbConn) -> QueryResult<Vec<(String, Option<String>)>> {
    units::table.select((units::id, units::parent_id)).load(conn)
}

pub fn all_closure(conn: &mut DbConn) -> QueryResult<Vec<ClosureRow>> {
    unit_closure::table.load(conn)
}

/// Replaces the whole closure table (repair).
pub fn replace_closure(conn: &mut DbConn, rows: &[ClosureRow]) -> QueryResult<()> {
    diesel::delete(unit_closure::table).execute(conn)?;
    insert_all(conn, &[], rows)
}

/// The live units of a subtree, the root included.
pub fn subtree(conn: &mut DbConn, root: &str) -> QueryResult<Vec<UnitRow>> {
    unit_closure::table
        .inner_join(units::table.on(units::id.eq(unit_closure::descendant_id)))
        .filter(unit_closure::ancestor_id.eq(root))
        .filter(units::retired_us.is_null())
        .select(UnitRow::as_select())
        .load(conn)
}

/// `(unit, parent)` edges of the tree as it was on `date` (YYYY-MM-DD).
pub fn edges_on(conn: &mut DbConn, date: &str) -> QueryResult<Vec<(String, Option<String>)>> {
    unit_history::table
        .filter(
            unit_history::valid_from
                .is_null()
                .or(unit_history::valid_from.le(date)),
        )
        .filter(
            unit_history::valid_to
                .is_null()
                .or(unit_history::valid_to.gt(date)),
        )
        .select((unit_history::unit_id, unit_history::parent_id))
        .load(conn)
}

/// Whether the tree changed after `date`: if not, the current tree is the tree of that date.
pub fn changed_after(conn: &mut DbConn, date: &str) -> QueryResult<bool> {
    use diesel::dsl::{exists, select};
    select(exists(
        unit_history::table.filter(
            unit_history::valid_from
                .gt(date)
                .or(unit_history::valid_to.gt(date)),
        ),
    ))
    .get_result(conn)
}

/// The start of the unit's current placement (None: since before records).
pub fn current_since(conn: &mut DbConn, unit: &str) -> QueryResult<Option<Option<String>>> {
    unit_history::table
        .filter(unit_history::unit_id.eq(unit))
        .filter(unit_history::valid_to.is_null())
        .select(unit_history::valid_from)
        .first(conn)
        .optional()
}

/// Ends the unit's current placement on `date`, and starts one under `parent` (unless retired).
pub fn reparent_history(
    conn: &mut DbConn,
    unit: &str,
    parent: Option<&str>,
    date: &str,
    now_us: i64,
) -> QueryResult<()> {
    diesel::update(
        unit_history::table
            .filter(unit_history::unit_id.eq(unit))
            .filter(unit_history::valid_to.is_null()),
    )
    .set(unit_history::valid_to.eq(date))
    .execute(conn)?;
    if let Some(p) = parent {
        diesel::insert_into(unit_history::table)
            .values((
                unit_history::unit_id.eq(unit),
                unit_history::parent_id.eq(p),
                unit_history::valid_from.eq(date),
                unit_history::created_us.eq(now_us),
            ))
            .execute(conn)?;
    }
    Ok(())
}

pub fn set_parent(conn: &mut DbConn, unit: &str, parent: &str) -> QueryResult<usize> {
    diesel::update(units::table.find(unit))
        .set(units::parent_id.eq(parent))
        .execute(conn)
}

pub fn retire(conn: &mut DbConn, unit: &str, now_us: i64) -> QueryResult<usize> {
    diesel::update(units::table.find(unit))
        .set(units::retired_us.eq(now_us))
        .execute(conn)
}

/// Closure rows whose descendant lies in the subtree of `root` (the subtree's own rows included).
pub fn closure_below(conn: &mut DbConn, root: &str) -> QueryResult<Vec<ClosureRow>> {
    let subtree: Vec<String> = unit_closure::table
        .filter(unit_closure::ancestor_id.eq(root))
        .select(unit_closure::descendant_id)
        .load(conn)?;
    ancestors_of(conn, &subtree)
}

pub fn delete_closure(conn: &mut DbConn, rows: &[ClosureRow]) -> QueryResult<()> {
    for r in rows {
        diesel::delete(unit_closure::table.find((&r.ancestor_id, &r.descendant_id))).execute(conn)?;
    }
    Ok(())
}

pub fn record_reorganisation(
    conn: &mut DbConn,
    id: &str,
    kind: &str,
    effective_on: &str,
    detail: &str,
    actor: Option<&str>,
    now_us: i64,
) -> QueryResult<usize> {
    diesel::insert_into(reorganisations::table)
        .values((
            reorganisations::id.eq(id),
            reorganisations::kind.eq(kind),
            reorganisations::effective_on.eq(effective_on),
            reorganisations::detail.eq(detail),
            reorganisations::actor_user_id.eq(actor),
            reorganisations::created_us.eq(now_us),
        ))
        .execute(conn)
}

/// Units by id, retired ones included.
pub fn find_many(conn: &mut DbConn, ids: &[String]) -> QueryResult<Vec<UnitRow>> {
    let mut out = Vec::new();
    for chunk in ids.chunks(INSERT_CHUNK) {
        out.extend(
            units::table
                .filter(units::id.eq_any(chunk))
                .select(UnitRow::as_select())
                .load(conn)?,
        );
    }
    Ok(out)
}

// Bulk statements for a reform, which reorganises thousands of units in one transaction.

pub fn retire_many(conn: &mut DbConn, ids: &[String], now_us: i64) -> QueryResult<()> {
    for chunk in ids.chunks(INSERT_CHUNK) {
        diesel::update(units::table.filter(units::id.eq_any(chunk)))
            .set(units::retired_us.eq(now_us))
            .execute(conn)?;
    }
    Ok(())
}

/// Clears the codes of units that stay live while another unit takes their code.
pub fn clear_codes(conn: &mut DbConn, ids: &[String]) -> QueryResult<()> {
    for chunk in ids.chunks(INSERT_CHUNK) {
        diesel::update(units::table.filter(units::id.eq_any(chunk)))
            .set(units::code.eq(None::<String>))
            .execute(conn)?;
    }
    Ok(())
}

pub fn set_parent_many(conn: &mut DbConn, ids: &[String], parent: &str) -> QueryResult<()> {
    for chunk in ids.chunks(INSERT_CHUNK) {
        diesel::update(units::table.filter(units::id.eq_any(chunk)))
            .set(units::parent_id.eq(parent))
            .execute(conn)?;
    }
    Ok(())
}

/// The start of each unit's current placement (None: since before records).
pub fn current_since_many(conn: &mut DbConn, ids: &[String]) -> QueryResult<Vec<(String, Option<String>)>> {
    let mut out = Vec::new();
    for chunk in ids.chunks(INSERT_CHUNK) {
        out.extend(
            unit_history::table
                .filter(unit_history::unit_id.eq_any(chunk))
                .filter(unit_history::valid_to.is_null())
                .select((unit_history::unit_id, unit_history::valid_from))
                .load::<(String, Option<String>)>(conn)?,
        );
    }
    Ok(out)
}

/// Ends the current placement of each unit on `date`.
pub fn close_history_many(conn: &mut DbConn, ids: &[String], date: &str) -> QueryResult<()> {
    for chunk in ids.chunks(INSERT_CHUNK) {
        diesel::update(
            unit_history::table
                .filter(unit_history::unit_id.eq_any(chunk))
                .filter(unit_history::valid_to.is_null()),
        )
        .set(unit_history::valid_to.eq(date))
        .execute(conn)?;
    }
    Ok(())
}

/// Starts a placement `(unit, parent)` on `date` for each pair.
pub fn open_history_many(
    conn: &mut DbConn,
    placements: &[(String, String)],
    date: &str,
    now_us: i64,
) -> QueryResult<()> {
    for chunk in placements.chunks(INSERT_CHUNK) {
        let rows: Vec<_> = chunk
            .iter()
            .map(|(unit, parent)| {
                (
                    unit_history::unit_id.eq(unit.clone()),
                    unit_history::parent_id.eq(Some(parent.clone())),
                    unit_history::valid_from.eq(Some(date.to_owned())),
                    unit_history::created_us.eq(now_us),
                )
            })
            .collect();
        crate::per_backend!(&mut *conn, |c| diesel::insert_into(unit_history::table)
            .values(&rows)
            .execute(c))?;
    }
    Ok(())
}

/// Dates the first placement of units created by a reorganisation (they did not exist before).
pub fn start_history_on(conn: &mut DbConn, ids: &[String], date: &str) -> QueryResult<()> {
    for chunk in ids.chunks(INSERT_CHUNK) {
        diesel::update(unit_history::table.filter(unit_history::unit_id.eq_any(chunk)))
            .set(unit_history::valid_from.eq(date))
            .execute(conn)?;
    }
    Ok(())
}

/// Replaces every closure row of the given descendants.
pub fn replace_closure_of(conn: &mut DbConn, descendants: &[String], rows: &[ClosureRow]) -> QueryResult<()> {
    for chunk in descendants.chunks(INSERT_CHUNK) {
        diesel::delete(unit_closure::table.filter(unit_closure::descendant_id.eq_any(chunk)))
            .execute(conn)?;
    }
    insert_all(conn, &[], rows)
}

/// The details of every reorganisation of `kind`.
pub fn reorganisation_details(conn: &mut DbConn, kind: &str) -> QueryResult<Vec<(String, String)>> {
    reorganisations::table
        .filter(reorganisations::kind.eq(kind))
        .select((reorganisations::effective_on, reorganisations::detail))
        .load(conn)
}

/// `(username, unit id)` of every user whose scope names one of `units`.
pub fn users_scoped_to(conn: &mut DbConn, unit_ids: &[String]) -> QueryResult<Vec<(String, String)>> {
    use super::schema::{user_scopes, users};
    let mut out = Vec::new();
    for chunk in unit_ids.chunks(INSERT_CHUNK) {
        out.extend(
            user_scopes::table
                .inner_join(users::table.on(users::id.eq(user_scopes::user_id)))
                .filter(user_scopes::unit_id.eq_any(chunk))
                .select((users::username, user_scopes::unit_id))
                .load::<(String, String)>(conn)?,
        );
    }
    Ok(out)
}

/// The live units without a parent.
pub fn live_roots(conn: &mut DbConn) -> QueryResult<Vec<UnitRow>> {
    units::table
        .filter(units::parent_id.is_null())
        .filter(units::retired_us.is_null())
        .select(UnitRow::as_select())
        .load(conn)
}
