//! Timestamps in the text layout the Go SQLite driver writes.

use chrono::{DateTime, Timelike, Utc};

/// Formats `ts` in Go's `2006-01-02 15:04:05.999999999` layout: space separator,
/// no zone, fraction with trailing zeros trimmed and omitted when zero.
///
/// Readers sort `ended_at` as text, so the layout must match exactly. The time
/// is written in UTC (the reference writes local wall-clock time; pods run in UTC).
pub fn format_go_timestamp(ts: DateTime<Utc>) -> String {
    let mut out = ts.format("%Y-%m-%d %H:%M:%S").to_string();
    // Leap-second nanos (≥ 1e9) cannot occur in a Go time; fold them into range.
    let nanos = ts.nanosecond() % 1_000_000_000;
    if nanos != 0 {
        let frac = format!("{nanos:09}");
        out.push('.');
        out.push_str(frac.trim_end_matches('0'));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(nanos: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 8, 22, 10, 15, 3)
            .single()
            .and_then(|t| t.with_nanosecond(nanos))
            .unwrap()
    }

    #[test]
    fn trims_trailing_zeros() {
        assert_eq!(
            format_go_timestamp(at(123_400_000)),
            "2026-08-22 10:15:03.1234"
        );
        assert_eq!(format_go_timestamp(at(1)), "2026-08-22 10:15:03.000000001");
        assert_eq!(
            format_go_timestamp(at(500_000_000)),
            "2026-08-22 10:15:03.5"
        );
    }

    #[test]
    fn omits_zero_fraction() {
        assert_eq!(format_go_timestamp(at(0)), "2026-08-22 10:15:03");
    }
}
