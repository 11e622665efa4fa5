//! PostgreSQL upserts of record rows with one array parameter per column:
//! `INSERT ... SELECT * FROM unnest($1, ..., $18) ON CONFLICT (id) DO UPDATE ...`, the arrays
//! being the rows' columns.
//!
//! A push writes up to a few hundred rows at once. As diesel's multi-row `VALUES` that is one
//! bind per value (3,600 for 200 members) and a statement text that changes with the row
//! count, so PostgreSQL parses and plans it afresh every time (planning alone was 12 % of the
//! member inserts' time in a 64-phone run). Here the text is fixed and the parameters are 18
//! arrays: diesel prepares it once per connection and binds 18 values. SQLite keeps diesel's
//! multi-row statements (its binds cost little and it has no arrays).

use super::records::{HouseholdRow, MemberRow};
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::sql_types::{Array, BigInt, Integer, Nullable, Text};
use diesel::{PgConnection, QueryResult, RunQueryDsl};

/// Upserts member rows in one statement (every column but the id and creation time replaced).
pub fn members(conn: &mut PgConnection, rows: &[MemberRow]) -> QueryResult<()> {
    if rows.is_empty() {
        return Ok(());
    }
    MemberUpsert::of(rows).execute(conn).map(drop)
}

/// Upserts household rows in one statement (every column but the id and creation time replaced).
pub fn households(conn: &mut PgConnection, rows: &[HouseholdRow]) -> QueryResult<()> {
    if rows.is_empty() {
        return Ok(());
    }
    HouseholdUpsert::of(rows).execute(conn).map(drop)
}

/// A query bound to arrays it owns (diesel borrows binds for as long as the query lives).
macro_rules! array_query {
    ($name:ident, $table:literal { $($col:ident: $elem:ty => $st:ty),* $(,)? }, $on_conflict:expr) => {
        struct $name<'a> {
            $($col: Vec<$elem>,)*
        }

        impl QueryId for $name<'_> {
            type QueryId = $name<'static>;
            const HAS_STATIC_QUERY_ID: bool = true;
        }

        impl QueryFragment<Pg> for $name<'_> {
            fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
                // The column list comes from the same names as the arrays, so the two cannot
                // fall out of order (a swap of two text columns would still type-check).
                out.push_sql(concat!("INSERT INTO ", $table, " ("));
                let mut first = true;
                $(
                    if !std::mem::take(&mut first) {
                        out.push_sql(", ");
                    }
                    out.push_sql(stringify!($col));
                )*
                out.push_sql(") SELECT * FROM unnest(");
                let mut first = true;
                $(
                    if !std::mem::take(&mut first) {
                        out.push_sql(", ");
                    }
                    out.push_bind_param::<Array<$st>, _>(&self.$col)?;
                )*
                out.push_sql(") ");
                out.push_sql($on_conflict);
                Ok(())
            }
        }

        impl diesel::query_builder::Query for $name<'_> {
            type SqlType = diesel::sql_types::Untyped;
        }

        impl RunQueryDsl<PgConnection> for $name<'_> {}
    };
}

array_query!(
    MemberUpsert, "members" {
        id: &'a str => Text,
        household_id: &'a str => Text,
        village_id: Option<&'a str> => Nullable<Text>,
        full_name: &'a str => Text,
        birth_year: i32 => Integer,
        sex: Option<&'a str> => Nullable<Text>,
        owns_smartphone: &'a str => Text,
        has_transaction_account: &'a str => Text,
        vneid_level2: &'a str => Text,
        uses_online_public_services: &'a str => Text,
        uses_cashless_payment: &'a str => Text,
        has_digital_signature: &'a str => Text,
        version: i64 => BigInt,
        clocks: &'a str => Text,
        pushed_by: Option<&'a str> => Nullable<Text>,
        deleted_us: Option<i64> => Nullable<BigInt>,
        created_us: i64 => BigInt,
        updated_us: i64 => BigInt,
    },
    "ON CONFLICT (id) DO UPDATE SET household_id = excluded.household_id, \
     village_id = excluded.village_id, full_name = excluded.full_name, \
     birth_year = excluded.birth_year, sex = excluded.sex, \
     owns_smartphone = excluded.owns_smartphone, \
     has_transaction_account = excluded.has_transaction_account, \
     vneid_level2 = excluded.vneid_level2, \
     uses_online_public_services = excluded.uses_online_public_services, \
     uses_cashless_payment = excluded.uses_cashless_payment, \
     has_digital_signature = excluded.has_digital_signature, version = excluded.version, \
     clocks = excluded.clocks, pushed_by = excluded.pushed_by, deleted_us = excluded.deleted_us, \
     updated_us = excluded.updated_us"
);

impl<'a> MemberUpsert<'a> {
    fn of(rows: &'a [MemberRow]) -> Self {
        let col = |f: fn(&'a MemberRow) -> &'a str| rows.iter().map(f).collect::<Vec<_>>();
        Self {
            id: col(|m| &m.id),
            household_id: col(|m| &m.household_id),
            village_id: rows.iter().map(|m| m.village_id.as_deref()).collect(),
            full_name: col(|m| &m.full_name),
            birth_year: rows.iter().map(|m| m.birth_year).collect(),
            sex: rows.iter().map(|m| m.sex.as_deref()).collect(),
            owns_smartphone: col(|m| &m.owns_smartphone),
            has_transaction_account: col(|m| &m.has_transaction_account),
            vneid_level2: col(|m| &m.vneid_level2),
            uses_online_public_services: col(|m| &m.uses_online_public_services),
            uses_cashless_payment: col(|m| &m.uses_cashless_payment),
            has_digital_signature: col(|m| &m.has_digital_signature),
            version: rows.iter().map(|m| m.version).collect(),
            clocks: col(|m| &m.clocks),
            pushed_by: rows.iter().map(|m| m.pushed_by.as_deref()).collect(),
            deleted_us: rows.iter().map(|m| m.deleted_us).collect(),
            created_us: rows.iter().map(|m| m.created_us).collect(),
            updated_us: rows.iter().map(|m| m.updated_us).collect(),
        }
    }
}

array_query!(
    HouseholdUpsert, "households" {
        id: &'a str => Text,
        village_id: &'a str => Text,
        head_name: &'a str => Text,
        address: Option<&'a str> => Nullable<Text>,
        fixed_broadband: &'a str => Text,
        surveyed_on: Option<&'a str> => Nullable<Text>,
        version: i64 => BigInt,
        clocks: &'a str => Text,
        deleted_us: Option<i64> => Nullable<BigInt>,
        created_us: i64 => BigInt,
        updated_us: i64 => BigInt,
    },
    "ON CONFLICT (id) DO UPDATE SET village_id = excluded.village_id, \
     head_name = excluded.head_name, address = excluded.address, \
     fixed_broadband = excluded.fixed_broadband, surveyed_on = excluded.surveyed_on, \
     version = excluded.version, clocks = excluded.clocks, deleted_us = excluded.deleted_us, \
     updated_us = excluded.updated_us"
);

impl<'a> HouseholdUpsert<'a> {
    fn of(rows: &'a [HouseholdRow]) -> Self {
        let col = |f: fn(&'a HouseholdRow) -> &'a str| rows.iter().map(f).collect::<Vec<_>>();
        Self {
            id: col(|h| &h.id),
            village_id: col(|h| &h.village_id),
            head_name: col(|h| &h.head_name),
            address: rows.iter().map(|h| h.address.as_deref()).collect(),
            fixed_broadband: col(|h| &h.fixed_broadband),
            surveyed_on: rows.iter().map(|h| h.surveyed_on.as_deref()).collect(),
            version: rows.iter().map(|h| h.version).collect(),
            clocks: col(|h| &h.clocks),
            deleted_us: rows.iter().map(|h| h.deleted_us).collect(),
            created_us: rows.iter().map(|h| h.created_us).collect(),
            updated_us: rows.iter().map(|h| h.updated_us).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_name_each_column_once_in_array_order() {
        let sql = diesel::debug_query::<Pg, _>(&HouseholdUpsert::of(&[])).to_string();
        let expected = "INSERT INTO households (id, village_id, head_name, address, fixed_broadband, \
                        surveyed_on, version, clocks, deleted_us, created_us, updated_us) \
                        SELECT * FROM unnest($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
                        ON CONFLICT (id) DO UPDATE SET village_id = excluded.village_id,";
        assert!(sql.starts_with(expected), "{sql}");
        let sql = diesel::debug_query::<Pg, _>(&MemberUpsert::of(&[])).to_string();
        assert!(
            sql.starts_with(
                "INSERT INTO members (id, household_id, village_id, full_name, birth_year, sex, "
            ),
            "{sql}"
        );
        assert!(sql.contains("unnest($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18) ON CONFLICT"), "{sql}");
    }
}
