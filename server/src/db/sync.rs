//! Queries of the sync machinery: idempotency records, the change feed, conflicts.

use super::DbConn;
use super::schema::{conflicts, devices, sync_batches, sync_changes, unit_closure};
use diesel::prelude::*;

/// One push's idempotency record: the first answers of the mutations it applied (JSON, see the
/// migration `compact_sync`), between its first and last mutation id.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = sync_batches)]
#[diesel(treat_none_as_default_value = false)]
pub struct BatchRow {
    pub device_id: String,
    pub first_mutation_id: i64,
    pub last_mutation_id: i64,
    pub results: String,
    pub created_us: i64,
}

/// A change feed row to append: the records of one type one write changed in one village
/// (`record_ids` comma-separated, in change order); `seq` and (on PostgreSQL) `txid` come from
/// the database.
#[derive(Debug, Clone, PartialEq, Eq, Insertable)]
#[diesel(table_name = sync_changes)]
#[diesel(treat_none_as_default_value = false)]
pub struct NewChange {
    pub village_id: String,
    pub record_type: String,
    pub record_ids: String,
    pub created_us: i64,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = sync_changes)]
pub struct ChangeRow {
    pub seq: i64,
    pub village_id: String,
    pub record_type: String,
    pub record_ids: String,
    pub txid: i64,
    pub created_us: i64,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = conflicts)]
#[diesel(treat_none_as_default_value = false)]
pub struct ConflictRow {
    pub id: String,
    pub record_type: String,
    pub record_id: String,
    pub village_id: String,
    pub field: String,
    pub current_value: String,
    pub incoming_value: String,
    pub current_hlc: String,
    pub incoming_hlc: String,
    pub device_id: String,
    pub created_us: i64,
    pub resolved_us: Option<i64>,
    pub resolved_by: Option<String>,
}

const CHUNK: usize = 500;

/// The stored pushes of a device whose mutation id range meets `first..=last`.
pub fn batches_overlapping(
    conn: &mut DbConn,
    device_id: &str,
    first: i64,
    last: i64,
) -> QueryResult<Vec<BatchRow>> {
    sync_batches::table
        .filter(sync_batches::device_id.eq(device_id))
        .filter(sync_batches::last_mutation_id.ge(first))
        .filter(sync_batches::first_mutation_id.le(last))
        .select(BatchRow::as_select())
        .load(conn)
}

pub fn insert_batch(conn: &mut DbConn, row: &BatchRow) -> QueryResult<()> {
    crate::per_backend!(&mut *conn, |c| diesel::insert_into(sync_batches::table)
        .values(row)
        .execute(c))?;
    Ok(())
}

/// Makes pushes of one device take turns (on PostgreSQL; SQLite has one writer): its rows in
/// `devices` (one per user signed in on it) stay locked until the transaction ends. Two pushes
/// of the same mutation ids then never both apply them.
pub fn lock_device(conn: &mut DbConn, device_id: &str) -> QueryResult<()> {
    if let DbConn::Pg(c) = conn {
        devices::table
            .filter(devices::device_id.eq(device_id))
            .select(devices::device_id)
            .for_update()
            .load::<String>(c)?;
    }
    Ok(())
}

pub fn insert_changes(conn: &mut DbConn, rows: &[NewChange]) -> QueryResult<()> {
    for chunk in rows.chunks(CHUNK) {
        crate::per_backend!(&mut *conn, |c| diesel::insert_into(sync_changes::table)
            .values(chunk)
            .execute(c))?;
    }
    Ok(())
}

pub fn insert_conflicts(conn: &mut DbConn, rows: &[ConflictRow]) -> QueryResult<()> {
    for chunk in rows.chunks(CHUNK) {
        crate::per_backend!(&mut *conn, |c| diesel::insert_into(conflicts::table)
            .values(chunk)
            .execute(c))?;
    }
    Ok(())
}

/// PostgreSQL: the oldest transaction that was still running when this transaction's snapshot
/// was taken, leaving out those that provably belong to other databases of the cluster. Every
/// change with a smaller `txid` is already visible or gone for good, so a pull may serve it
/// without ever skipping one that commits later. None when nothing is running (or on SQLite,
/// whose writers are serial). Call it first in a REPEATABLE READ transaction, so that the rows
/// read next come from the same snapshot.
pub fn pg_horizon(conn: &mut DbConn) -> QueryResult<Option<i64>> {
    #[derive(QueryableByName)]
    struct Horizon {
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::BigInt>)]
        horizon: Option<i64>,
    }
    const SQL: &str = "
        WITH running AS (
            SELECT x::text::bigint AS xid FROM pg_snapshot_xip(pg_current_snapshot()) AS x
        ), elsewhere AS (
            SELECT backend_xid::text::bigint AS low FROM pg_stat_activity
            WHERE backend_xid IS NOT NULL AND datname IS DISTINCT FROM current_database()
        )
        SELECT min(xid) AS horizon FROM running
        WHERE (xid & 4294967295) NOT IN (SELECT low FROM elsewhere)";
    match conn {
        DbConn::Pg(c) => diesel::sql_query(SQL).get_result::<Horizon>(c).map(|h| h.horizon),
        DbConn::Sqlite(_) => Ok(None),
    }
}

/// The next page of changes in villages under `scope`, after `(txid, seq)`, in (txid, seq)
/// order, only below `horizon` when given.
pub fn changes_after(
    conn: &mut DbConn,
    scope: &[String],
    after: (i64, i64),
    horizon: Option<i64>,
    limit: i64,
) -> QueryResult<Vec<ChangeRow>> {
    let (txid, seq) = after;
    let in_scope = unit_closure::table
        .filter(unit_closure::ancestor_id.eq_any(scope.to_vec()))
        .select(unit_closure::descendant_id);
    let q = sync_changes::table
        .filter(sync_changes::village_id.eq_any(in_scope))
        .filter(
            sync_changes::txid
                .gt(txid)
                .or(sync_changes::txid.eq(txid).and(sync_changes::seq.gt(seq))),
        )
        .into_boxed();
    let q = match horizon {
        Some(h) => q.filter(sync_changes::txid.lt(h)),
        None => q,
    };
    q.order((sync_changes::txid.asc(), sync_changes::seq.asc()))
        .limit(limit)
        .select(ChangeRow::as_select())
        .load(conn)
}

/// Whether any change in villages under `scope` after `(txid, seq)` has a transaction id at or
/// above `horizon` (it committed while an older transaction still runs).
pub fn any_change_from(
    conn: &mut DbConn,
    scope: &[String],
    after: (i64, i64),
    horizon: i64,
) -> QueryResult<bool> {
    use diesel::dsl::{exists, select};
    let (txid, seq) = after;
    let in_scope = unit_closure::table
        .filter(unit_closure::ancestor_id.eq_any(scope.to_vec()))
        .select(unit_closure::descendant_id);
    select(exists(
        sync_changes::table
            .filter(sync_changes::village_id.eq_any(in_scope))
            .filter(sync_changes::txid.ge(horizon))
            .filter(
                sync_changes::txid
                    .gt(txid)
                    .or(sync_changes::txid.eq(txid).and(sync_changes::seq.gt(seq))),
            ),
    ))
    .get_result(conn)
}

pub fn conflict(conn: &mut DbConn, id: &str) -> QueryResult<Option<ConflictRow>> {
    conflicts::table
        .find(id)
        .select(ConflictRow::as_select())
        .first(conn)
        .optional()
}

/// Conflicts in villages under `unit`, newest first, optionally only (un)resolved ones.
pub fn conflicts_under(
    conn: &mut DbConn,
    unit: &str,
    resolved: Option<bool>,
    limit: i64,
) -> QueryResult<Vec<ConflictRow>> {
    let villages = unit_closure::table
        .filter(unit_closure::ancestor_id.eq(unit.to_owned()))
        .select(unit_closure::descendant_id);
    let q = conflicts::table
        .filter(conflicts::village_id.eq_any(villages))
        .into_boxed();
    let q = match resolved {
        Some(true) => q.filter(conflicts::resolved_us.is_not_null()),
        Some(false) => q.filter(conflicts::resolved_us.is_null()),
        None => q,
    };
    q.order((conflicts::created_us.desc(), conflicts::id.desc()))
        .limit(limit)
        .select(ConflictRow::as_select())
        .load(conn)
}

pub fn mark_resolved(conn: &mut DbConn, id: &str, by: &str, now_us: i64) -> QueryResult<usize> {
    diesel::update(conflicts::table.find(id).filter(conflicts::resolved_us.is_null()))
        .set((conflicts::resolved_us.eq(now_us), conflicts::resolved_by.eq(by)))
        .execute(conn)
}

pub fn mark_device_synced(
    conn: &mut DbConn,
    device_id: &str,
    user_id: &str,
    now_us: i64,
) -> QueryResult<usize> {
    diesel::update(devices::table.find((device_id, user_id)))
        .set((devices::last_sync_us.eq(now_us), devices::last_seen_us.eq(now_us)))
        .execute(conn)
}
