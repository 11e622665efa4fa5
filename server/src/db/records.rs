//! Rows of the record tables (households, members).

use super::DbConn;
use super::schema::{households, members};
use diesel::prelude::*;

#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = households)]
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

#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = members)]
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
