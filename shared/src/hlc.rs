//! Hybrid logical clocks: `WALL/COUNTER/NODE`, e.g.
//! `2026-11-20T08:15:00.123Z/0005/6f9619ff-8b86-d011-b42d-00c04fc964ff`.
//!
//! Clocks compare as the tuple (wall, counter, node), never as strings.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

/// One hybrid logical clock reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Hlc {
    /// Wall time, milliseconds since the Unix epoch (UTC).
    pub wall_ms: i64,
    pub counter: u32,
    /// The device that produced the reading.
    pub node: Uuid,
}

impl Ord for Hlc {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.wall_ms, self.counter, self.node).cmp(&(other.wall_ms, other.counter, other.node))
    }
}

impl PartialOrd for Hlc {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Why a clock string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid HLC: {0}; expected WALL/COUNTER/NODE like 2026-11-20T08:15:00.123Z/0005/<device uuid>")]
pub struct HlcError(pub String);

/// Earliest and latest accepted wall times (years 2000 to 9999).
const MIN_WALL_MS: i64 = 946_684_800_000;
const MAX_WALL_MS: i64 = 253_402_300_799_999;

impl Hlc {
    pub fn new(wall_ms: i64, counter: u32, node: Uuid) -> Self {
        Self {
            wall_ms,
            counter,
            node,
        }
    }

    /// The next reading on `node` for a local event at physical time `now_ms`, after `last`.
    pub fn tick(last: Option<Hlc>, now_ms: i64, node: Uuid) -> Self {
        match last {
            Some(l) if l.wall_ms >= now_ms => Self::new(l.wall_ms, l.counter.saturating_add(1), node),
            _ => Self::new(now_ms, 0, node),
        }
    }

    /// The reading after receiving `remote` (e.g. from a pull), so later local edits order after it.
    pub fn receive(local: Option<Hlc>, remote: Hlc, now_ms: i64, node: Uuid) -> Self {
        let local = local.unwrap_or(Self::new(i64::MIN, 0, node));
        let wall = now_ms.max(local.wall_ms).max(remote.wall_ms);
        let counter = if wall == local.wall_ms && wall == remote.wall_ms {
            local.counter.max(remote.counter).saturating_add(1)
        } else if wall == local.wall_ms {
            local.counter.saturating_add(1)
        } else if wall == remote.wall_ms {
            remote.counter.saturating_add(1)
        } else {
            0
        };
        Self::new(wall, counter, node)
    }

    /// This reading with its wall time capped at `max_wall_ms` (for clocks running ahead).
    pub fn clamp(self, max_wall_ms: i64) -> Self {
        if self.wall_ms > max_wall_ms {
            Self {
                wall_ms: max_wall_ms,
                ..self
            }
        } else {
            self
        }
    }
}

/// A wall time in milliseconds as RFC 3339 UTC with exactly three fraction digits.
pub fn format_wall_ms(wall_ms: i64) -> String {
    let mut buf = [0u8; WALL_LEN];
    match write_wall(&mut buf, wall_ms) {
        Some(text) => text.to_owned(),
        None => format_wall_general(wall_ms),
    }
}

/// [`format_wall_ms`] for any wall time, through the date library (epoch if unrepresentable).
fn format_wall_general(wall_ms: i64) -> String {
    let t = OffsetDateTime::from_unix_timestamp_nanos(i128::from(wall_ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// Length of a formatted wall time (`2026-11-20T08:15:00.123Z`).
const WALL_LEN: usize = 24;

/// Writes [`format_wall_ms`]'s text into `buf` for wall times in years 1970..=9999 (None
/// outside: no clock is accepted there). Clocks are formatted for every field of every record
/// a push stores, so this avoids the general date formatter and any allocation.
fn write_wall(buf: &mut [u8; WALL_LEN], wall_ms: i64) -> Option<&str> {
    if !(0..=MAX_WALL_MS).contains(&wall_ms) {
        return None;
    }
    let (days, ms_of_day) = (wall_ms / 86_400_000, wall_ms % 86_400_000);
    let (year, month, day) = civil_from_days(days);
    let secs = ms_of_day / 1000;
    let digits = |out: &mut [u8], mut n: i64| {
        for b in out.iter_mut().rev() {
            *b = b'0' + (n % 10) as u8;
            n /= 10;
        }
    };
    digits(&mut buf[0..4], year);
    digits(&mut buf[5..7], i64::from(month));
    digits(&mut buf[8..10], i64::from(day));
    digits(&mut buf[11..13], secs / 3600);
    digits(&mut buf[14..16], secs / 60 % 60);
    digits(&mut buf[17..19], secs % 60);
    digits(&mut buf[20..23], ms_of_day % 1000);
    for (at, b) in [
        (4, b'-'),
        (7, b'-'),
        (10, b'T'),
        (13, b':'),
        (16, b':'),
        (19, b'.'),
        (23, b'Z'),
    ] {
        buf[at] = b;
    }
    std::str::from_utf8(buf).ok()
}

/// Days since 1970-01-01 as a proleptic Gregorian (year, month, day), for days >= 0
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The inverse of [`format_wall_ms`]: RFC 3339 UTC with exactly three fraction digits
/// (`2026-11-20T08:15:00.123Z`), as an HLC's wall time and a push's `server_time` are written.
pub fn parse_wall_ms(wall: &str) -> Result<i64, HlcError> {
    let err = |m: &str| HlcError(m.to_owned());
    let b = wall.as_bytes();
    if b.len() != 24 || b[10] != b'T' || b[19] != b'.' || b[23] != b'Z' {
        return Err(err("the wall time must be RFC 3339 UTC with milliseconds"));
    }
    let t = OffsetDateTime::parse(wall, &Rfc3339)
        .map_err(|_| err("the wall time is not a valid date and time"))?;
    let wall_ms = (t.unix_timestamp_nanos() / 1_000_000) as i64;
    if !(MIN_WALL_MS..=MAX_WALL_MS).contains(&wall_ms) {
        return Err(err("the wall time is out of range"));
    }
    Ok(wall_ms)
}

impl Hlc {
    /// Appends the text form (as [`fmt::Display`] writes it) to `out` without the formatting
    /// machinery: merge clocks are written for every field of every record a push stores.
    pub fn push_text(&self, out: &mut String) {
        let mut wall = [0u8; WALL_LEN];
        match write_wall(&mut wall, self.wall_ms) {
            Some(wall) => out.push_str(wall),
            None => out.push_str(&format_wall_general(self.wall_ms)),
        }
        out.push('/');
        let mut counter = itoa::Buffer::new();
        let counter = counter.format(self.counter);
        for _ in counter.len()..4 {
            out.push('0');
        }
        out.push_str(counter);
        out.push('/');
        let mut node = [0u8; uuid::fmt::Hyphenated::LENGTH];
        out.push_str(self.node.hyphenated().encode_lower(&mut node));
    }
}

impl fmt::Display for Hlc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = String::with_capacity(WALL_LEN + 6 + uuid::fmt::Hyphenated::LENGTH);
        self.push_text(&mut text);
        f.write_str(&text)
    }
}

impl FromStr for Hlc {
    type Err = HlcError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |m: &str| HlcError(m.to_owned());
        let mut parts = s.split('/');
        let (Some(wall), Some(counter), Some(node), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(err("it must have three parts separated by '/'"));
        };
        let wall_ms = parse_wall_ms(wall)?;
        if counter.len() < 4 || !counter.bytes().all(|c| c.is_ascii_digit()) {
            return Err(err("the counter must be at least 4 decimal digits"));
        }
        let counter: u32 = counter.parse().map_err(|_| err("the counter is too large"))?;
        let node = Uuid::parse_str(node).map_err(|_| err("the node must be a UUID"))?;
        Ok(Self {
            wall_ms,
            counter,
            node,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NODE: &str = "6f9619ff-8b86-d011-b42d-00c04fc964ff";

    #[test]
    fn pushed_text_is_wall_counter_and_node() {
        let node: Uuid = NODE.parse().unwrap();
        for (wall_ms, counter) in [
            (0, 0),
            (1_763_626_500_123, 7),
            (MAX_WALL_MS, 12_345),
            (-5, u32::MAX),
        ] {
            let hlc = Hlc::new(wall_ms, counter, node);
            let mut out = String::from("x");
            hlc.push_text(&mut out);
            assert_eq!(
                out,
                format!("x{}/{counter:04}/{NODE}", format_wall_general(wall_ms))
            );
        }
    }

    /// The fast wall formatter writes what the general date formatter writes, across leap
    /// years, century rules, month ends and the whole accepted range.
    #[test]
    fn wall_times_format_like_the_date_library() {
        let general = format_wall_general;
        let mut wall: i64 = 0;
        let mut step: i64 = 1;
        while wall <= MAX_WALL_MS {
            assert_eq!(format_wall_ms(wall), general(wall), "{wall}");
            // Irregular steps, from a millisecond up to about a month, cover every field.
            step = (step * 7 + 13) % 2_700_000_000 + 1;
            wall += step;
        }
        for wall in [
            MIN_WALL_MS,
            MAX_WALL_MS,
            951_782_400_000,
            4_107_456_000_000,
            86_399_999,
        ] {
            assert_eq!(format_wall_ms(wall), general(wall));
        }
        assert_eq!(format_wall_ms(-1), general(-1));
    }

    #[test]
    fn parses_and_prints_the_contract_example() {
        let s = format!("2026-11-20T08:15:00.123Z/0005/{NODE}");
        let h: Hlc = s.parse().unwrap();
        assert_eq!(h.counter, 5);
        assert_eq!(h.wall_ms % 1000, 123);
        assert_eq!(h.to_string(), s);
        let wide: Hlc = format!("2026-11-20T08:15:00.123Z/123456/{NODE}").parse().unwrap();
        assert_eq!(wide.counter, 123_456);
        assert!(wide.to_string().contains("/123456/"));
    }

    #[test]
    fn compares_as_tuples_not_strings() {
        let a: Hlc = format!("2026-11-20T08:15:00.123Z/0009/{NODE}").parse().unwrap();
        let b: Hlc = format!("2026-11-20T08:15:00.123Z/10000/{NODE}").parse().unwrap();
        assert!(a < b, "counter 9 < 10000 although '0009' > '1000' as strings");
        let c: Hlc = format!("2026-11-20T08:15:00.124Z/0000/{NODE}").parse().unwrap();
        assert!(b < c);
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "2026-11-20T08:15:00.123Z/0005",
            &format!("2026-11-20T08:15:00Z/0005/{NODE}"),
            &format!("2026-11-20T08:15:00.123+07:00/0005/{NODE}"),
            &format!("2026-11-20 08:15:00.123Z/0005/{NODE}"),
            &format!("2026-13-20T08:15:00.123Z/0005/{NODE}"),
            &format!("2026-11-20T08:15:00.123Z/005/{NODE}"),
            &format!("2026-11-20T08:15:00.123Z/00x5/{NODE}"),
            &format!("2026-11-20T08:15:00.123Z/99999999999/{NODE}"),
            "2026-11-20T08:15:00.123Z/0005/not-a-uuid",
            &format!("2026-11-20T08:15:00.123Z/0005/{NODE}/x"),
            &format!("1970-01-01T00:00:00.000Z/0005/{NODE}"),
        ] {
            assert!(bad.parse::<Hlc>().is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn tick_and_receive_are_monotonic() {
        let node = Uuid::parse_str(NODE).unwrap();
        let a = Hlc::tick(None, 1_000, node);
        let b = Hlc::tick(Some(a), 900, node);
        assert!(b > a, "a clock that went backwards still advances");
        let remote = Hlc::new(5_000, 7, Uuid::nil());
        let c = Hlc::receive(Some(b), remote, 1_000, node);
        assert!(c > remote && c > b);
        assert_eq!(Hlc::new(10_000, 3, node).clamp(5_000).wall_ms, 5_000);
    }

    #[test]
    fn wall_times_roundtrip() {
        let ms = parse_wall_ms("2026-11-20T08:15:02.500Z").unwrap();
        assert_eq!(format_wall_ms(ms), "2026-11-20T08:15:02.500Z");
        assert!(parse_wall_ms("2026-11-20T08:15:02Z").is_err());
    }
}
