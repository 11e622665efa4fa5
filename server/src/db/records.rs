//! Rows of the record tables (households, members).

use super::DbConn;
use super::schema::{households, members};
use diesel::prelude::*;

#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = households)]
#[diesel(treat_none_as_null = true)]
#[diesel(treat_none_as_default_value = false)]
pub struct HouseholdRow {
    pub id: String,
    pub village_id: String,
    pub head_name: String,
    pub address: Option<String>,
    pub fixed_broadband: String,
    pub surveyed_on: Option<String>,
    pub version: i64,
    pub clocks: String,
    pub deleted_us: Option<i64>,
    pub created_us: i64,
    pub updated_us: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = members)]
#[diesel(treat_none_as_null = true)]
#[diesel(treat_none_as_default_value = false)]
pub struct MemberRow {
    pub id: String,
    pub household_id: String,
    pub village_id: Option<String>,
    pub full_name: String,
    pub birth_year: i32,
    pub sex: Option<String>,
    pub owns_smartphone: String,
    pub has_transaction_account: String,
    pub vneid_level2: String,
    pub uses_online_public_services: String,
    pub uses_cashless_payment: String,
    pub has_digital_signature: String,
    pub version: i64,
    pub clocks: String,
    pub pushed_by: Option<String>,
    pub deleted_us: Option<i64>,
    pub created_us: i64,
    pub updated_us: i64,
}

const CHUNK: usize = 500;

pub fn insert_households(conn: &mut DbConn, rows: &[HouseholdRow]) -> QueryResult<()> {
    for chunk in rows.chunks(CHUNK) {
        crate::per_backend!(&mut *conn, |c| diesel::insert_into(households::table)
            .values(chunk)
            .execute(c))?;
    }
    Ok(())
}

/// Writes household rows, new or not, in multi-row statements (every column but the id and
/// the creation time replaced); on PostgreSQL as one array per column (`pg_upsert`).
pub fn upsert_households(conn: &mut DbConn, rows: &[HouseholdRow]) -> QueryResult<()> {
    use diesel::upsert::excluded;
    use households::dsl as h;
    for chunk in rows.chunks(CHUNK) {
        match &mut *conn {
            DbConn::Pg(c) => super::pg_upsert::households(c, chunk)?,
            DbConn::Sqlite(c) => diesel::insert_into(h::households)
                .values(chunk)
                .on_conflict(h::id)
                .do_update()
                .set((
                    h::village_id.eq(excluded(h::village_id)),
                    h::head_name.eq(excluded(h::head_name)),
                    h::address.eq(excluded(h::address)),
                    h::fixed_broadband.eq(excluded(h::fixed_broadband)),
                    h::surveyed_on.eq(excluded(h::surveyed_on)),
                    h::version.eq(excluded(h::version)),
                    h::clocks.eq(excluded(h::clocks)),
                    h::deleted_us.eq(excluded(h::deleted_us)),
                    h::updated_us.eq(excluded(h::updated_us)),
                ))
                .execute(c)
                .map(drop)?,
        }
    }
    Ok(())
}

/// Writes member rows, new or not, in multi-row statements (see [`upsert_households`]).
pub fn upsert_members(conn: &mut DbConn, rows: &[MemberRow]) -> QueryResult<()> {
    use diesel::upsert::excluded;
    use members::dsl as m;
    for chunk in rows.chunks(CHUNK) {
        match &mut *conn {
            DbConn::Pg(c) => super::pg_upsert::members(c, chunk)?,
            DbConn::Sqlite(c) => diesel::insert_into(m::members)
                .values(chunk)
                .on_conflict(m::id)
                .do_update()
                .set((
                    (
                        m::household_id.eq(excluded(m::household_id)),
                        m::village_id.eq(excluded(m::village_id)),
                        m::full_name.eq(excluded(m::full_name)),
                        m::birth_year.eq(excluded(m::birth_year)),
                        m::sex.eq(excluded(m::sex)),
                        m::owns_smartphone.eq(excluded(m::owns_smartphone)),
                        m::has_transaction_account.eq(excluded(m::has_transaction_account)),
                        m::vneid_level2.eq(excluded(m::vneid_level2)),
                    ),
                    (
                        m::uses_online_public_services.eq(excluded(m::uses_online_public_services)),
                        m::uses_cashless_payment.eq(excluded(m::uses_cashless_payment)),
                        m::has_digital_signature.eq(excluded(m::has_digital_signature)),
                        m::version.eq(excluded(m::version)),
                        m::clocks.eq(excluded(m::clocks)),
                        m::pushed_by.eq(excluded(m::pushed_by)),
                        m::deleted_us.eq(excluded(m::deleted_us)),
                        m::updated_us.eq(excluded(m::updated_us)),
                    ),
                ))
                .execute(c)
                .map(drop)?,
        }
    }
    Ok(())
}

pub fn insert_members(conn: &mut DbConn, rows: &[MemberRow]) -> QueryResult<()> {
    for chunk in rows.chunks(CHUNK) {
        crate::per_backend!(&mut *conn, |c| diesel::insert_into(members::table)
            .values(chunk)
            .execute(c))?;
    }
    Ok(())
}

/// Live households and members in the given villages.
pub fn count_live(conn: &mut DbConn, villages: &[String]) -> QueryResult<(i64, i64)> {
    let h = households::table
        .filter(households::village_id.eq_any(villages))
        .filter(households::deleted_us.is_null())
        .count()
        .get_result(conn)?;
    let m = members::table
        .filter(members::village_id.eq_any(villages))
        .filter(members::deleted_us.is_null())
        .count()
        .get_result(conn)?;
    Ok((h, m))
}

/// A household, its row locked for the transaction on PostgreSQL when `lock`.
pub fn household(conn: &mut DbConn, id: &str, lock: bool) -> QueryResult<Option<HouseholdRow>> {
    match conn {
        DbConn::Pg(c) if lock => households::table
            .find(id)
            .select(HouseholdRow::as_select())
            .for_update()
            .first(c)
            .optional(),
        _ => households::table
            .find(id)
            .select(HouseholdRow::as_select())
            .first(conn)
            .optional(),
    }
}

/// A member, its row locked for the transaction on PostgreSQL when `lock`.
pub fn member(conn: &mut DbConn, id: &str, lock: bool) -> QueryResult<Option<MemberRow>> {
    match conn {
        DbConn::Pg(c) if lock => members::table
            .find(id)
            .select(MemberRow::as_select())
            .for_update()
            .first(c)
            .optional(),
        _ => members::table
            .find(id)
            .select(MemberRow::as_select())
            .first(conn)
            .optional(),
    }
}

/// What a pull reads of a household: the contract's fields, version and whether deleted (no
/// merge clocks, the largest column).
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = households)]
pub struct PulledHousehold {
    pub id: String,
    pub village_id: String,
    pub head_name: String,
    pub address: Option<String>,
    pub fixed_broadband: String,
    pub surveyed_on: Option<String>,
    pub version: i64,
    pub deleted_us: Option<i64>,
}

/// What a pull reads of a member (see [`PulledHousehold`]).
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = members)]
pub struct PulledMember {
    pub id: String,
    pub household_id: String,
    pub village_id: Option<String>,
    pub full_name: String,
    pub birth_year: i32,
    pub sex: Option<String>,
    pub owns_smartphone: String,
    pub has_transaction_account: String,
    pub vneid_level2: String,
    pub uses_online_public_services: String,
    pub uses_cashless_payment: String,
    pub has_digital_signature: String,
    pub version: i64,
    pub deleted_us: Option<i64>,
}

pub fn households_to_pull(conn: &mut DbConn, ids: &[String]) -> QueryResult<Vec<PulledHousehold>> {
    households::table
        .filter(households::id.eq_any(ids))
        .select(PulledHousehold::as_select())
        .load(conn)
}

pub fn members_to_pull(conn: &mut DbConn, ids: &[String]) -> QueryResult<Vec<PulledMember>> {
    members::table
        .filter(members::id.eq_any(ids))
        .select(PulledMember::as_select())
        .load(conn)
}

/// Members by id, locked in id order on PostgreSQL (a push's first lock: see `sync::push`).
pub fn members_by_ids_locked(conn: &mut DbConn, ids: &[String]) -> QueryResult<Vec<MemberRow>> {
    let mut out = Vec::new();
    for chunk in ids.chunks(CHUNK) {
        macro_rules! query {
            () => {
                members::table
                    .filter(members::id.eq_any(chunk))
                    .order(members::id)
                    .select(MemberRow::as_select())
            };
        }
        out.extend(match conn {
            DbConn::Pg(c) => query!().for_update().load(c)?,
            DbConn::Sqlite(c) => query!().load(c)?,
        });
    }
    Ok(out)
}

pub fn insert_household(conn: &mut DbConn, row: &HouseholdRow) -> QueryResult<usize> {
    diesel::insert_into(households::table).values(row).execute(conn)
}

pub fn update_household(conn: &mut DbConn, row: &HouseholdRow) -> QueryResult<usize> {
    diesel::update(households::table.find(&row.id))
        .set(row)
        .execute(conn)
}

pub fn insert_member(conn: &mut DbConn, row: &MemberRow) -> QueryResult<usize> {
    diesel::insert_into(members::table).values(row).execute(conn)
}

pub fn update_member(conn: &mut DbConn, row: &MemberRow) -> QueryResult<usize> {
    diesel::update(members::table.find(&row.id))
        .set(row)
        .execute(conn)
}

/// Members that name `household_id`, locked on PostgreSQL; `attached` picks those placed in a
/// village (true) or those waiting for their household (false).
pub fn members_of_household(
    conn: &mut DbConn,
    household_id: &str,
    attached: bool,
) -> QueryResult<Vec<MemberRow>> {
    // Locked on PostgreSQL: the caller rewrites these rows, and a concurrent edit of one of them
    // must wait rather than be overwritten with a stale copy.
    macro_rules! query {
        () => {
            members::table
                .filter(members::household_id.eq(household_id))
                .filter(members::village_id.is_not_null().eq(attached))
                .order(members::id)
                .select(MemberRow::as_select())
        };
    }
    match conn {
        DbConn::Pg(c) => query!().for_update().load(c),
        DbConn::Sqlite(c) => query!().load(c),
    }
}
