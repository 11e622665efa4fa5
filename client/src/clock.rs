//! This device's hybrid logical clock, persisted in the store's state row so that a restart
//! (or a wall clock set backwards) never yields a reading at or below one already handed out.
//! Both functions run inside the caller's transaction.

use crate::error::{Error, Result};
use crate::schema::state;
use crate::store::{load_state, parse_uuid};
use diesel::prelude::*;
use diesel::sqlite::SqliteConnection;
use hamlet_shared::Hlc;

/// The phone's wall time in milliseconds since the Unix epoch (UTC).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

fn last(c: &mut SqliteConnection) -> Result<(Option<Hlc>, uuid::Uuid)> {
    let s = load_state(c)?;
    let node = parse_uuid(&s.device_id)?;
    let counter = u32::try_from(s.hlc_counter).map_err(|_| Error::Store("bad clock counter".into()))?;
    Ok((s.hlc_wall_ms.map(|w| Hlc::new(w, counter, node)), node))
}

fn persist(c: &mut SqliteConnection, h: Hlc) -> Result<()> {
    diesel::update(state::table)
        .set((
            state::hlc_wall_ms.eq(h.wall_ms),
            state::hlc_counter.eq(i64::from(h.counter)),
        ))
        .execute(c)?;
    Ok(())
}

/// 2000-01-01, the earliest wall time a clock may carry. A phone whose clock was reset to 1970
/// would otherwise write clocks the server refuses; floored, its edits still go through (and
/// lose concurrent edits, as any slow clock does).
const EARLIEST_WALL_MS: i64 = 946_684_800_000;

/// The next reading, for a local edit at wall time `now_ms`.
pub(crate) fn tick(c: &mut SqliteConnection, now_ms: i64) -> Result<Hlc> {
    let (last, node) = last(c)?;
    let next = Hlc::tick(last, now_ms.max(EARLIEST_WALL_MS), node);
    persist(c, next)?;
    Ok(next)
}

/// Moves the clock past a time learnt from the server (a push's `server_time`), so later local
/// edits order after what the server has seen.
pub(crate) fn receive(c: &mut SqliteConnection, remote_wall_ms: i64, now_ms: i64) -> Result<Hlc> {
    let (last, node) = last(c)?;
    let next = Hlc::receive(
        last,
        Hlc::new(remote_wall_ms, 0, node),
        now_ms.max(EARLIEST_WALL_MS),
        node,
    );
    persist(c, next)?;
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    #[test]
    fn a_clock_reset_to_1970_still_writes_valid_readings() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("s.db")).unwrap();
        let h = s.write(|c| tick(c, 0)).unwrap();
        assert_eq!(h.to_string().parse::<Hlc>().unwrap(), h);
    }
}
