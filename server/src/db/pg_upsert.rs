//! PostgreSQL upserts of record rows (and of the fold's counter rows) with one array parameter
//! per column:
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
use super::tallies::{UnitRow, VillageRow};
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::serialize::{IsNull, Output, ToSql};
use diesel::sql_types::{Array, BigInt, HasSqlType, Integer, Nullable, Text};
use diesel::{PgConnection, QueryResult, RunQueryDsl};
use std::io::Write;
use std::sync::LazyLock;

/// One column's values, bound as a PostgreSQL array in its binary form. Encoded into a buffer of
/// the exact size, written to diesel's bind in one piece: diesel's own array encoding copies each
/// element twice and grows the bind by doubling (6 % of the push's instructions, and page
/// faults for every push, as freed memory is returned at once).
#[derive(Debug)]
struct Column<T>(Vec<T>);

/// An array element's binary form: `None` for SQL NULL.
trait Element {
    fn encoded_len(&self) -> Option<usize>;
    fn encode(&self, buf: &mut Vec<u8>);
}

impl Element for &str {
    fn encoded_len(&self) -> Option<usize> {
        Some(self.len())
    }
    fn encode(&self, buf: &mut Vec<u8>) {
        buf.extend_from_slice(self.as_bytes());
    }
}

impl Element for i32 {
    fn encoded_len(&self) -> Option<usize> {
        Some(4)
    }
    fn encode(&self, buf: &mut Vec<u8>) {
        buf.extend_from_slice(&self.to_be_bytes());
    }
}

impl Element for i64 {
    fn encoded_len(&self) -> Option<usize> {
        Some(8)
    }
    fn encode(&self, buf: &mut Vec<u8>) {
        buf.extend_from_slice(&self.to_be_bytes());
    }
}

impl<T: Element> Element for Option<T> {
    fn encoded_len(&self) -> Option<usize> {
        self.as_ref().and_then(Element::encoded_len)
    }
    fn encode(&self, buf: &mut Vec<u8>) {
        if let Some(v) = self {
            v.encode(buf);
        }
    }
}

impl<ST, T> ToSql<Array<ST>, Pg> for Column<T>
where
    Pg: HasSqlType<ST>,
    T: Element + std::fmt::Debug,
{
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> diesel::serialize::Result {
        let oid = <Pg as HasSqlType<ST>>::metadata(out.metadata_lookup()).oid()?;
        let lens: Vec<Option<usize>> = self.0.iter().map(Element::encoded_len).collect();
        // Header (dimensions, flags, element type, length, lower bound), then each element's
        // length (-1 for NULL) and bytes.
        let size = 20 + 4 * lens.len() + lens.iter().flatten().sum::<usize>();
        let mut buf = Vec::with_capacity(size);
        let has_null = lens.iter().any(Option::is_none);
        buf.extend_from_slice(&1i32.to_be_bytes());
        buf.extend_from_slice(&i32::from(has_null).to_be_bytes());
        buf.extend_from_slice(&oid.to_be_bytes());
        buf.extend_from_slice(&i32::try_from(lens.len())?.to_be_bytes());
        buf.extend_from_slice(&1i32.to_be_bytes());
        for (value, len) in self.0.iter().zip(&lens) {
            match len {
                Some(len) => {
                    buf.extend_from_slice(&i32::try_from(*len)?.to_be_bytes());
                    value.encode(&mut buf);
                }
                None => buf.extend_from_slice(&(-1i32).to_be_bytes()),
            }
        }
        debug_assert_eq!(buf.len(), size);
        out.write_all(&buf)?;
        Ok(IsNull::No)
    }
}

/// Columns a record upsert never replaces: the key it conflicts on and the creation time.
const KEPT_ON_CONFLICT: [&str; 2] = ["id", "created_us"];

/// A record upsert's tail: every column but the kept ones replaced.
fn replace_record(columns: &[&str]) -> String {
    let replaced: Vec<String> = columns
        .iter()
        .filter(|c| !KEPT_ON_CONFLICT.contains(c))
        .map(|c| format!("{c} = excluded.{c}"))
        .collect();
    format!("ON CONFLICT (id) DO UPDATE SET {}", replaced.join(", "))
}

/// A counter upsert's tail: the key is every column but the three counts, which are added.
fn add_counts(table: &str, columns: &[&str]) -> String {
    const COUNTS: [&str; 3] = ["yes", "no", "unknown"];
    let key: Vec<&str> = columns.iter().copied().filter(|c| !COUNTS.contains(c)).collect();
    let added: Vec<String> = COUNTS
        .iter()
        .map(|c| format!("{c} = {table}.{c} + excluded.{c}"))
        .collect();
    format!(
        "ON CONFLICT ({}) DO UPDATE SET {}",
        key.join(", "),
        added.join(", ")
    )
}

/// A query bound to arrays it owns (diesel borrows binds for as long as the query lives).
/// Each column is declared once (name, Rust element, SQL type, how to read it from a row): the
/// INSERT list, the arrays and the ON CONFLICT update list are all generated from it, so they
/// cannot fall out of order or miss a column (a swap of two text columns would type-check).
/// `$run` is the public function writing a slice of rows in one statement (none for no rows);
/// `on_conflict` makes the statement's tail from its column names.
macro_rules! array_upsert {
    ($(#[$doc:meta])* fn $run:ident, $name:ident, $table:literal, $row:ty {
        $($col:ident: $elem:ty => $st:ty = $get:expr),* $(,)?
    }, on_conflict: $on_conflict:expr) => {
        $(#[$doc])*
        pub fn $run(conn: &mut PgConnection, rows: &[$row]) -> QueryResult<()> {
            if rows.is_empty() {
                return Ok(());
            }
            $name::of(rows).execute(conn).map(drop)
        }

        struct $name<'a> {
            $($col: Column<$elem>,)*
        }

        impl<'a> $name<'a> {
            fn of(rows: &'a [$row]) -> Self {
                Self {
                    $($col: Column(rows.iter().map($get).collect()),)*
                }
            }
        }

        impl QueryId for $name<'_> {
            type QueryId = $name<'static>;
            const HAS_STATIC_QUERY_ID: bool = true;
        }

        impl QueryFragment<Pg> for $name<'_> {
            fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
                // Built once per statement type: diesel walks the query on every execution.
                static INSERT: LazyLock<String> = LazyLock::new(|| {
                    let columns = [$(stringify!($col)),*];
                    format!("INSERT INTO {} ({}) SELECT * FROM unnest(", $table, columns.join(", "))
                });
                static UPDATE: LazyLock<String> = LazyLock::new(|| {
                    let on_conflict: fn(&[&str]) -> String = $on_conflict;
                    format!(") {}", on_conflict(&[$(stringify!($col)),*]))
                });
                out.push_sql(&INSERT);
                let mut first = true;
                $(
                    if !std::mem::take(&mut first) {
                        out.push_sql(", ");
                    }
                    out.push_bind_param::<Array<$st>, _>(&self.$col)?;
                )*
                out.push_sql(&UPDATE);
                Ok(())
            }
        }

        impl diesel::query_builder::Query for $name<'_> {
            type SqlType = diesel::sql_types::Untyped;
        }

        impl RunQueryDsl<PgConnection> for $name<'_> {}
    };
}

array_upsert!(
    /// Upserts member rows in one statement (every column but the id and creation time replaced).
    fn members,
    MemberUpsert,
    "members", MemberRow {
    id: &'a str => Text = |m| m.id.as_str(),
    household_id: &'a str => Text = |m| m.household_id.as_str(),
    village_id: Option<&'a str> => Nullable<Text> = |m| m.village_id.as_deref(),
    full_name: &'a str => Text = |m| m.full_name.as_str(),
    birth_year: i32 => Integer = |m| m.birth_year,
    sex: Option<&'a str> => Nullable<Text> = |m| m.sex.as_deref(),
    owns_smartphone: &'a str => Text = |m| m.owns_smartphone.as_str(),
    has_transaction_account: &'a str => Text = |m| m.has_transaction_account.as_str(),
    vneid_level2: &'a str => Text = |m| m.vneid_level2.as_str(),
    uses_online_public_services: &'a str => Text = |m| m.uses_online_public_services.as_str(),
    uses_cashless_payment: &'a str => Text = |m| m.uses_cashless_payment.as_str(),
    has_digital_signature: &'a str => Text = |m| m.has_digital_signature.as_str(),
    version: i64 => BigInt = |m| m.version,
    clocks: &'a str => Text = |m| m.clocks.as_str(),
    pushed_by: Option<&'a str> => Nullable<Text> = |m| m.pushed_by.as_deref(),
    deleted_us: Option<i64> => Nullable<BigInt> = |m| m.deleted_us,
    created_us: i64 => BigInt = |m| m.created_us,
    updated_us: i64 => BigInt = |m| m.updated_us,
}, on_conflict: replace_record);

array_upsert!(
    /// Upserts household rows in one statement (every column but the id and creation time replaced).
    fn households,
    HouseholdUpsert,
    "households", HouseholdRow {
    id: &'a str => Text = |h| h.id.as_str(),
    village_id: &'a str => Text = |h| h.village_id.as_str(),
    head_name: &'a str => Text = |h| h.head_name.as_str(),
    address: Option<&'a str> => Nullable<Text> = |h| h.address.as_deref(),
    fixed_broadband: &'a str => Text = |h| h.fixed_broadband.as_str(),
    surveyed_on: Option<&'a str> => Nullable<Text> = |h| h.surveyed_on.as_deref(),
    version: i64 => BigInt = |h| h.version,
    clocks: &'a str => Text = |h| h.clocks.as_str(),
    deleted_us: Option<i64> => Nullable<BigInt> = |h| h.deleted_us,
    created_us: i64 => BigInt = |h| h.created_us,
    updated_us: i64 => BigInt = |h| h.updated_us,
}, on_conflict: replace_record);

array_upsert!(
    /// Adds counts to village counters in one statement (keys must be distinct).
    fn village_counts,
    VillageCounts,
    "village_tallies", VillageRow {
    village_id: &'a str => Text = |r| r.village_id.as_str(),
    metric: &'a str => Text = |r| r.metric.as_str(),
    birth_year: i32 => Integer = |r| r.birth_year,
    yes: i64 => BigInt = |r| r.yes,
    no: i64 => BigInt = |r| r.no,
    unknown: i64 => BigInt = |r| r.unknown,
}, on_conflict: |columns| add_counts("village_tallies", columns));

array_upsert!(
    /// Adds counts to unit totals in one statement (keys must be distinct).
    fn unit_counts,
    UnitCounts,
    "unit_tallies", UnitRow {
    unit_id: &'a str => Text = |r| r.unit_id.as_str(),
    metric: &'a str => Text = |r| r.metric.as_str(),
    birth_year: i32 => Integer = |r| r.birth_year,
    yes: i64 => BigInt = |r| r.yes,
    no: i64 => BigInt = |r| r.no,
    unknown: i64 => BigInt = |r| r.unknown,
}, on_conflict: |columns| add_counts("unit_tallies", columns));

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
        let sql = diesel::debug_query::<Pg, _>(&UnitCounts::of(&[])).to_string();
        let expected = "INSERT INTO unit_tallies (unit_id, metric, birth_year, yes, no, unknown) \
                        SELECT * FROM unnest($1, $2, $3, $4, $5, $6) \
                        ON CONFLICT (unit_id, metric, birth_year) DO UPDATE SET \
                        yes = unit_tallies.yes + excluded.yes, no = unit_tallies.no + excluded.no, \
                        unknown = unit_tallies.unknown + excluded.unknown";
        assert!(sql.starts_with(expected), "{sql}");
    }
}
