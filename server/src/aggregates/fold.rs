//! Folding counter deltas into the village counters and the roll-ups of every unit above.

use super::tallies::Tally;
use crate::db::{self, DbConn};
use crate::error::AppResult;
use std::collections::HashMap;

/// Arbitrary constant naming the fold's advisory lock on PostgreSQL.
const FOLD_LOCK_KEY: i64 = 0x4841_4d4c_4654;

/// Moves every committed delta into `village_tallies` and `unit_tallies` (one fold at a time
/// across processes).
/// Returns how many delta rows were folded; 0 when another process is folding.
pub fn fold(conn: &mut DbConn) -> AppResult<usize> {
    crate::db::tx::write(
        conn,
        |conn| if try_lock(conn)? { fold_locked(conn) } else { Ok(0) },
    )
}

#[derive(diesel::QueryableByName)]
struct Got {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    locked: bool,
}

/// Takes the fold lock for this transaction if free (always free on SQLite: one writer).
fn try_lock(conn: &mut DbConn) -> AppResult<bool> {
    match conn {
        DbConn::Pg(c) => {
            let sql = format!("SELECT pg_try_advisory_xact_lock({FOLD_LOCK_KEY}) AS locked");
            Ok(diesel::RunQueryDsl::get_result::<Got>(diesel::sql_query(sql), c)?.locked)
        }
        DbConn::Sqlite(_) => Ok(true),
    }
}

/// Waits for the fold lock (for reorganisations, which must see every delta folded).
pub fn lock(conn: &mut DbConn) -> AppResult<()> {
    if let DbConn::Pg(c) = conn {
        diesel::RunQueryDsl::execute(
            diesel::sql_query(format!("SELECT pg_advisory_xact_lock({FOLD_LOCK_KEY})")),
            c,
        )?;
    }
    Ok(())
}

/// Folds, in the caller's transaction, which must hold the fold lock.
pub fn fold_locked(conn: &mut DbConn) -> AppResult<usize> {
    let deltas = db::tallies::take_deltas(conn)?;
    if deltas.is_empty() {
        return Ok(0);
    }
    db::tallies::fold_into_villages(conn, &deltas)?;
    let units = roll_up(conn, &deltas)?;
    db::tallies::add_to_units(conn, &units)?;
    Ok(deltas.len())
}

/// Village-keyed counts re-keyed to every unit above each village (the village itself excluded).
pub fn roll_up(conn: &mut DbConn, villages: &Tally) -> AppResult<Tally> {
    let ids: Vec<String> = villages.units().map(str::to_owned).collect();
    let mut above: HashMap<String, Vec<String>> = HashMap::new();
    for (village, ancestor) in db::tallies::ancestors_above(conn, &ids)? {
        above.entry(village).or_default().push(ancestor);
    }
    let mut units = Tally::default();
    for (k, c) in villages.iter() {
        for ancestor in above.get(k.unit).into_iter().flatten() {
            units.add(ancestor, k.metric, k.birth_year, c);
        }
    }
    Ok(units.without_zeros())
}
