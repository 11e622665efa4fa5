//! Time as stored (microseconds since the Unix epoch, UTC) and as sent (RFC 3339).

use time::OffsetDateTime;

/// Now, in microseconds since the Unix epoch.
pub fn now_us() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000) as i64
}

/// RFC 3339 UTC with exactly three fraction digits, e.g. `2026-11-20T08:15:00.120Z`: the
/// form HLC wall times take, so a client can reuse it.
pub fn rfc3339(us: i64) -> String {
    hamlet_shared::hlc::format_wall_ms(us.div_euclid(1000))
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_utc_millis() {
        assert_eq!(super::rfc3339(1_763_626_500_123_456), "2025-11-20T08:15:00.123Z");
        assert_eq!(super::rfc3339(1_763_626_500_120_000), "2025-11-20T08:15:00.120Z");
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00.000Z");
    }
}
