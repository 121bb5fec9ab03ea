//! RFC 3339 timestamps in the one form this method writes: `YYYY-MM-DDTHH:MM:SSZ` (UTC, whole
//! seconds), from Unix seconds and back. The core has no clock: callers pass the time.

/// The last second a four-digit year can write: 9999-12-31T23:59:59Z.
const MAX_SECS: u64 = 253_402_300_799;

/// Days since 1970-01-01 of a civil date (proleptic Gregorian; Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day count since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `secs` (Unix seconds) as `YYYY-MM-DDTHH:MM:SSZ`; times past the year 9999 write its last
/// second.
pub fn timestamp(secs: u64) -> String {
    // At most MAX_SECS, so the conversion cannot fail.
    let secs = i64::try_from(secs.min(MAX_SECS)).unwrap_or_default();
    let (year, month, day) = civil_from_days(secs.div_euclid(86_400));
    let rest = secs.rem_euclid(86_400);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

/// The Unix seconds of a timestamp in the form [`timestamp`] writes (from 1970 on).
pub fn parse_timestamp(text: &str) -> Option<u64> {
    let b = text.as_bytes();
    if b.len() != 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[19] != b'Z' {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |from: usize, to: usize| -> Option<i64> {
        let digits = &b[from..to];
        digits
            .iter()
            .all(u8::is_ascii_digit)
            .then(|| digits.iter().fold(0, |n, d| n * 10 + i64::from(d - b'0')))
    };
    let (year, month, day) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (hour, minute, second) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    if year < 1970 || !(1..=12).contains(&month) || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    // A day past the month's end (2023-02-30) names another date: refused.
    if civil_from_days(days) != (year, month, day) {
        return None;
    }
    u64::try_from(days * 86_400 + hour * 3600 + minute * 60 + second).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_dates() {
        for (secs, text) in [
            (0, "1970-01-01T00:00:00Z"),
            (951_782_400, "2000-02-29T00:00:00Z"),
            (1_700_000_000, "2023-11-14T22:13:20Z"),
            (4_107_542_399, "2100-02-28T23:59:59Z"),
            (MAX_SECS, "9999-12-31T23:59:59Z"),
        ] {
            assert_eq!(timestamp(secs), text);
            assert_eq!(parse_timestamp(text), Some(secs));
        }
        assert_eq!(timestamp(u64::MAX), "9999-12-31T23:59:59Z");
    }

    #[test]
    fn other_forms_are_refused() {
        for bad in [
            "2023-11-14T22:13:20",
            "2023-11-14t22:13:20Z",
            "2023-11-14T22:13:20.5Z",
            "2023-11-14T22:13:20+00:00",
            "2023-02-29T00:00:00Z",
            "2023-13-01T00:00:00Z",
            "2023-11-14T24:00:00Z",
            "2023-11-14T23:60:00Z",
            "2023-11-14T23:59:60Z",
            "1969-12-31T23:59:59Z",
            "+023-11-14T22:13:20Z",
            "２023-11-14T22:13:2Z",
        ] {
            assert_eq!(parse_timestamp(bad), None, "{bad}");
        }
    }

    proptest! {
        #[test]
        fn timestamps_round_trip(secs in 0..=MAX_SECS) {
            prop_assert_eq!(parse_timestamp(&timestamp(secs)), Some(secs));
        }

        #[test]
        fn any_text_parses_or_is_refused(text in "\\PC{0,24}") {
            if let Some(secs) = parse_timestamp(&text) {
                prop_assert_eq!(timestamp(secs), text);
            }
        }
    }
}
