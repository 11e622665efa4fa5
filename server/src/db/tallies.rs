//! Queries on the aggregate counters: village tallies, unfolded deltas and folded unit totals.

use super::DbConn;
use super::records::{HouseholdRow, MemberRow};
use super::schema::{households, members, tally_deltas, unit_closure, unit_tallies, village_tallies};
use crate::aggregates::tallies::{Count, Metric, Tally};
use diesel::prelude::*;
use diesel::upsert::excluded;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Insertable, Queryable, Selectable)]
#[diesel(table_name = village_tallies)]
#[diesel(treat_none_as_default_value = false)]
pub(super) struct VillageRow {
    pub(super) village_id: String,
    pub(super) metric: String,
    pub(super) birth_year: i32,
    pub(super) yes: i64,
    pub(super) no: i64,
    pub(super) unknown: i64,
}

#[derive(Debug, Clone, Insertable, Queryable, Selectable)]
#[diesel(table_name = unit_tallies)]
#[diesel(treat_none_as_default_value = false)]
pub(super) struct UnitRow {
    pub(super) unit_id: String,
    pub(super) metric: String,
    pub(super) birth_year: i32,
    pub(super) yes: i64,
    pub(super) no: i64,
    pub(super) unknown: i64,
}

/// One write's counter moves in one village: `counts` is JSON grouped by metric,
/// `{"metric": [[birth year, yes, no, unknown], ...], ...}` (one row per write instead of one
/// per key; each metric's name once instead of once per birth year: rows half as long). Rows
/// written before migration 000006 (or by an older binary) hold
/// `[[metric, birth year, yes, no, unknown], ...]`; both are read.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = tally_deltas)]
#[diesel(treat_none_as_default_value = false)]
struct NewDelta {
    village_id: String,
    counts: String,
}

type CountRow = (String, String, i32, i64, i64, i64);

/// Delta rows `(village, counts)` as one counter row per key.
fn expand(rows: Vec<(String, String)>) -> QueryResult<Vec<CountRow>> {
    fn parse<'a, T: serde::Deserialize<'a>>(text: &'a str) -> QueryResult<T> {
        serde_json::from_str(text).map_err(|e| diesel::result::Error::DeserializationError(Box::new(e)))
    }
    let mut out = Vec::new();
    for (village, counts) in rows {
        if counts.trim_start().starts_with('[') {
            let keys: Vec<(String, i32, i64, i64, i64)> = parse(&counts)?;
            out.extend(
                keys.into_iter().map(|(metric, year, yes, no, unknown)| {
                    (village.clone(), metric, year, yes, no, unknown)
                }),
            );
        } else {
            let by_metric: BTreeMap<String, Vec<(i32, i64, i64, i64)>> = parse(&counts)?;
            for (metric, keys) in by_metric {
                out.extend(keys.into_iter().map(|(year, yes, no, unknown)| {
                    (village.clone(), metric.clone(), year, yes, no, unknown)
                }));
            }
        }
    }
    Ok(out)
}

const CHUNK: usize = 500;

/// Counter rows as read; a metric Hamlet does not count is a corrupt row, refused.
fn into_tally(rows: impl IntoIterator<Item = (String, String, i32, i64, i64, i64)>) -> QueryResult<Tally> {
    let mut t = Tally::default();
    for (unit, metric, year, yes, no, unknown) in rows {
        let Some(metric) = Metric::parse(&metric) else {
            return Err(diesel::result::Error::DeserializationError(
                format!("unknown tally metric {metric:?}").into(),
            ));
        };
        t.add(&unit, metric, year, Count { yes, no, unknown });
    }
    Ok(t)
}

/// The bundles of `ids` (households and every member naming them). With `lock`, the household
/// rows are locked first, in id order, on PostgreSQL: writers of one bundle then take turns, so
/// their before/after snapshots never overlap.
pub fn bundles(
    conn: &mut DbConn,
    ids: &[String],
    lock: bool,
) -> QueryResult<(Vec<HouseholdRow>, Vec<MemberRow>)> {
    let mut hs = Vec::new();
    let mut ms = Vec::new();
    for chunk in ids.chunks(CHUNK) {
        let mut found: Vec<HouseholdRow> = match conn {
            DbConn::Pg(c) if lock => households::table
                .filter(households::id.eq_any(chunk))
                .order(households::id)
                .select(HouseholdRow::as_select())
                .for_update()
                .load(c)?,
            _ => households::table
                .filter(households::id.eq_any(chunk))
                .select(HouseholdRow::as_select())
                .load(conn)?,
        };
        hs.append(&mut found);
        ms.extend(
            members::table
                .filter(members::household_id.eq_any(chunk))
                .select(MemberRow::as_select())
                .load(conn)?,
        );
    }
    Ok((hs, ms))
}

/// Adds `$rows` to a counter table keyed by `($key...)` on SQLite (PostgreSQL binds arrays:
/// `pg_upsert`), incrementing rows that exist: one statement per chunk, rows in the caller's
/// (key) order.
macro_rules! sqlite_add_counts {
    ($conn:expr, $table:ident, $rows:expr, ($($key:ident),+)) => {{
        use $table::dsl as t;
        for chunk in $rows.chunks(CHUNK) {
            diesel::insert_into(t::$table)
                .values(chunk)
                .on_conflict(($(t::$key),+))
                .do_update()
                .set((
                    t::yes.eq(t::yes + excluded(t::yes)),
                    t::no.eq(t::no + excluded(t::no)),
                    t::unknown.eq(t::unknown + excluded(t::unknown)),
                ))
                .execute($conn)?;
        }
        Ok(())
    }};
}

fn village_rows(t: &Tally) -> Vec<VillageRow> {
    t.iter()
        .map(|(k, c)| VillageRow {
            village_id: k.unit.to_owned(),
            metric: k.metric.as_str().to_owned(),
            birth_year: k.birth_year,
            yes: c.yes,
            no: c.no,
            unknown: c.unknown,
        })
        .collect()
}

/// Appends `delta` (village-keyed) as insert-only delta rows: a push never updates a counter
/// row, so pushes from phones of one village never wait for each other on counters. The fold
/// moves deltas into the village counters and every roll-up above; reads add the unfolded tail.
pub fn add_to_villages(conn: &mut DbConn, delta: &Tally) -> QueryResult<()> {
    /// One village's counter moves as stored: by metric, then (birth year, yes, no, unknown).
    type Stored<'a> = BTreeMap<&'a str, Vec<(i32, i64, i64, i64)>>;
    let mut by_village: BTreeMap<&str, Stored> = BTreeMap::new();
    for (k, c) in delta.iter() {
        by_village
            .entry(k.unit)
            .or_default()
            .entry(k.metric.as_str())
            .or_default()
            .push((k.birth_year, c.yes, c.no, c.unknown));
    }
    let deltas: Vec<NewDelta> = by_village
        .into_iter()
        .map(|(village, counts)| {
            Ok(NewDelta {
                village_id: village.to_owned(),
                counts: serde_json::to_string(&counts)
                    .map_err(|e| diesel::result::Error::SerializationError(Box::new(e)))?,
            })
        })
        .collect::<QueryResult<_>>()?;
    for chunk in deltas.chunks(CHUNK) {
        crate::per_backend!(&mut *conn, |c| diesel::insert_into(tally_deltas::table)
            .values(chunk)
            .execute(c))?;
    }
    Ok(())
}

/// Adds folded deltas to the village counters (in key order: village first).
pub fn fold_into_villages(conn: &mut DbConn, delta: &Tally) -> QueryResult<()> {
    let rows = village_rows(delta);
    match conn {
        DbConn::Pg(c) => super::pg_upsert::village_counts(c, &rows),
        DbConn::Sqlite(c) => sqlite_add_counts!(c, village_tallies, rows, (village_id, metric, birth_year)),
    }
}

/// Adds `delta` to the folded unit totals (in key order).
pub fn add_to_units(conn: &mut DbConn, delta: &Tally) -> QueryResult<()> {
    let rows: Vec<UnitRow> = delta
        .iter()
        .map(|(k, c)| UnitRow {
            unit_id: k.unit.to_owned(),
            metric: k.metric.as_str().to_owned(),
            birth_year: k.birth_year,
            yes: c.yes,
            no: c.no,
            unknown: c.unknown,
        })
        .collect();
    match conn {
        DbConn::Pg(c) => super::pg_upsert::unit_counts(c, &rows),
        DbConn::Sqlite(c) => sqlite_add_counts!(c, unit_tallies, rows, (unit_id, metric, birth_year)),
    }
}

/// Removes and returns every visible unfolded delta, keyed by village.
pub fn take_deltas(conn: &mut DbConn) -> QueryResult<Tally> {
    let rows: Vec<(String, String)> = crate::per_backend!(conn, |c| {
        use tally_deltas::dsl as t;
        diesel::delete(t::tally_deltas)
            .returning((t::village_id, t::counts))
            .get_results(c)
    })?;
    into_tally(expand(rows)?)
}

/// Each village's ancestors above it (depth >= 1).
pub fn ancestors_above(conn: &mut DbConn, villages: &[String]) -> QueryResult<Vec<(String, String)>> {
    let mut out = Vec::new();
    for chunk in villages.chunks(CHUNK) {
        out.extend(
            unit_closure::table
                .filter(unit_closure::descendant_id.eq_any(chunk))
                .filter(unit_closure::depth.ge(1))
                .select((unit_closure::descendant_id, unit_closure::ancestor_id))
                .load::<(String, String)>(conn)?,
        );
    }
    Ok(out)
}

/// Counters of the given villages: folded rows plus the deltas not folded yet. Call inside one
/// snapshot (see [`of_units`]).
pub fn of_villages(conn: &mut DbConn, villages: &[String]) -> QueryResult<Tally> {
    let mut rows = Vec::new();
    for chunk in villages.chunks(CHUNK) {
        use village_tallies::dsl as t;
        rows.extend(
            t::village_tallies
                .filter(t::village_id.eq_any(chunk))
                .select((t::village_id, t::metric, t::birth_year, t::yes, t::no, t::unknown))
                .load::<(String, String, i32, i64, i64, i64)>(conn)?,
        );
        use tally_deltas::dsl as d;
        rows.extend(expand(
            d::tally_deltas
                .filter(d::village_id.eq_any(chunk))
                .select((d::village_id, d::counts))
                .load(conn)?,
        )?);
    }
    into_tally(rows)
}

/// Totals of non-village units: folded rows plus the deltas not folded yet. Call inside one
/// snapshot, or a fold between the two reads could count a delta twice or not at all.
pub fn of_units(conn: &mut DbConn, units: &[String]) -> QueryResult<Tally> {
    let mut rows = Vec::new();
    for chunk in units.chunks(CHUNK) {
        use unit_tallies::dsl as t;
        rows.extend(
            t::unit_tallies
                .filter(t::unit_id.eq_any(chunk))
                .select((t::unit_id, t::metric, t::birth_year, t::yes, t::no, t::unknown))
                .load::<(String, String, i32, i64, i64, i64)>(conn)?,
        );
    }
    // The unfolded tail is short (one fold interval): read it whole, then find which of its
    // villages lie under the asked units by primary-key probes of the closure. Joining from the
    // closure side instead scans every descendant of a large unit.
    let deltas = {
        use tally_deltas::dsl as d;
        expand(d::tally_deltas.select((d::village_id, d::counts)).load(conn)?)?
    };
    if !deltas.is_empty() {
        let villages: Vec<String> = deltas
            .iter()
            .map(|r| r.0.clone())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut under: std::collections::HashMap<String, Vec<String>> = std::collections::HashMap::new();
        for unit_chunk in units.chunks(CHUNK) {
            for village_chunk in villages.chunks(CHUNK) {
                let pairs: Vec<(String, String)> = unit_closure::table
                    .filter(unit_closure::ancestor_id.eq_any(unit_chunk))
                    .filter(unit_closure::descendant_id.eq_any(village_chunk))
                    .filter(unit_closure::depth.ge(1))
                    .select((unit_closure::descendant_id, unit_closure::ancestor_id))
                    .load(conn)?;
                for (village, unit) in pairs {
                    under.entry(village).or_default().push(unit);
                }
            }
        }
        for (village, metric, year, yes, no, unknown) in deltas {
            for unit in under.get(&village).into_iter().flatten() {
                rows.push((unit.clone(), metric.clone(), year, yes, no, unknown));
            }
        }
    }
    into_tally(rows)
}

/// Only the unfolded deltas, rolled up to the given units.
pub fn of_units_deltas_only(conn: &mut DbConn, units: &[String]) -> QueryResult<Tally> {
    let rows: Vec<(String, String)> = tally_deltas::table
        .inner_join(unit_closure::table.on(unit_closure::descendant_id.eq(tally_deltas::village_id)))
        .filter(unit_closure::depth.ge(1))
        .select((unit_closure::ancestor_id, tally_deltas::counts))
        .load(conn)?;
    let wanted: std::collections::HashSet<&String> = units.iter().collect();
    let rows = rows.into_iter().filter(|r| wanted.contains(&r.0)).collect();
    into_tally(expand(rows)?)
}

/// Every village's counters, unfolded deltas included.
pub fn all_villages(conn: &mut DbConn) -> QueryResult<Tally> {
    use tally_deltas::dsl as d;
    use village_tallies::dsl as t;
    let mut rows: Vec<(String, String, i32, i64, i64, i64)> = t::village_tallies
        .select((t::village_id, t::metric, t::birth_year, t::yes, t::no, t::unknown))
        .load(conn)?;
    rows.extend(expand(
        d::tally_deltas.select((d::village_id, d::counts)).load(conn)?,
    )?);
    into_tally(rows)
}

pub fn all_units(conn: &mut DbConn) -> QueryResult<Tally> {
    use unit_tallies::dsl as t;
    into_tally(
        t::unit_tallies
            .select((t::unit_id, t::metric, t::birth_year, t::yes, t::no, t::unknown))
            .load::<(String, String, i32, i64, i64, i64)>(conn)?,
    )
}

/// Replaces every village and unit counter (repair), leaving no unfolded delta.
pub fn replace_all(conn: &mut DbConn, villages: &Tally, units: &Tally) -> QueryResult<()> {
    diesel::delete(tally_deltas::table).execute(conn)?;
    diesel::delete(village_tallies::table).execute(conn)?;
    diesel::delete(unit_tallies::table).execute(conn)?;
    let rows = village_rows(villages);
    for chunk in rows.chunks(CHUNK) {
        crate::per_backend!(&mut *conn, |c| diesel::insert_into(village_tallies::table)
            .values(chunk)
            .execute(c))?;
    }
    add_to_units(conn, units)
}

/// Every household and member (for recomputing all counters).
pub fn all_bundles(conn: &mut DbConn) -> QueryResult<(Vec<HouseholdRow>, Vec<MemberRow>)> {
    Ok((
        households::table.select(HouseholdRow::as_select()).load(conn)?,
        members::table.select(MemberRow::as_select()).load(conn)?,
    ))
}
