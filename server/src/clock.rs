//! Time as stored (microseconds since the Unix epoch, UTC) and as sent (RFC 3339).

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Now, in microseconds since the Unix epoch.
pub fn now_us() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000) as i64
}

/// RFC 3339 UTC with millisecond precision, e.g. `2026-11-20T08:15:00.123Z`.
pub fn rfc3339(us: i64) -> String {
    let t = OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let t = t
        .replace_nanosecond(t.millisecond() as u32 * 1_000_000)
        .unwrap_or(t);
    t.format(&Rfc3339).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_utc_millis() {
        assert_eq!(super::rfc3339(1_763_626_500_123_456), "2025-11-20T08:15:00.123Z");
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
    }
}
