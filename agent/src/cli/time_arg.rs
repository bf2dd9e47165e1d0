//! Time arguments of the query commands: an RFC 3339 time, or a duration ago (`90s`, `15m`, `2h`, `7d`).
use time::{format_description::well_known::Rfc3339, macros::format_description, OffsetDateTime};

const MICROS_PER_SECOND: i64 = 1_000_000;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TimeArgError {
    #[error(
        "`{0}` is neither an RFC 3339 time (2026-11-20T22:10:14Z), a date (2026-11-20) \
         nor a duration ago (90s, 15m, 2h, 7d, 2w)"
    )]
    Unrecognized(String),
    #[error("`{0}` is too far back")]
    OutOfRange(String),
}

/// Unix time in microseconds that `text` names, with durations counted back from `now_us`.
pub fn parse_time_arg(text: &str, now_us: i64) -> Result<i64, TimeArgError> {
    let text = text.trim();
    if let Some(ago_seconds) = parse_duration(text) {
        let since_us = i128::from(now_us) - ago_seconds * i128::from(MICROS_PER_SECOND);
        return i64::try_from(since_us).map_err(|_| TimeArgError::OutOfRange(text.to_string()));
    }
    if let Ok(at) = OffsetDateTime::parse(text, &Rfc3339) {
        return Ok(unix_micros(at));
    }
    // A bare date is the start of that day, in UTC like every time the store shows.
    if let Ok(date) = time::Date::parse(text, format_description!("[year]-[month]-[day]")) {
        return Ok(unix_micros(date.midnight().assume_utc()));
    }
    Err(TimeArgError::Unrecognized(text.to_string()))
}

/// The clap value parser for `--since` / `--until`: resolved against the clock when parsed.
pub fn parse_time_arg_now(text: &str) -> Result<i64, TimeArgError> {
    parse_time_arg(text, unix_micros(OffsetDateTime::now_utc()))
}

/// Seconds in `90s`, `15m`, `2h`, `7d` or `2w`; None when `text` is not such a duration.
/// i128 so that no count of digits overflows: a duration too long is refused as out of range.
fn parse_duration(text: &str) -> Option<i128> {
    let unit_at = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(unit_at);
    let seconds_per_unit = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return None,
    };
    Some(i128::from(number.parse::<u64>().ok()?) * seconds_per_unit)
}

fn unix_micros(at: OffsetDateTime) -> i64 {
    // i128 nanoseconds since the epoch fit in i64 microseconds for every year time can represent.
    (at.unix_timestamp_nanos() / 1_000) as i64
}

/// `2026-11-20 22:10:14` (UTC) for an RFC 3339 time; the text unchanged if it is not one.
pub fn table_time(rfc3339: &str) -> String {
    OffsetDateTime::parse(rfc3339, &Rfc3339)
        .ok()
        .and_then(|at| {
            at.to_offset(time::UtcOffset::UTC)
                .format(format_description!(
                    "[year]-[month]-[day] [hour]:[minute]:[second]"
                ))
                .ok()
        })
        .unwrap_or_else(|| rfc3339.to_string())
}

/// RFC 3339 UTC with milliseconds, for times the records hold as Unix microseconds.
pub fn rfc3339_from_micros(unix_us: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(unix_us) * 1_000)
        .ok()
        .and_then(|at| {
            at.format(format_description!(
                "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
            ))
            .ok()
        })
        .unwrap_or_else(|| format!("{unix_us}us"))
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2026-11-20T22:10:14Z
    const NOW_US: i64 = 1_795_212_614 * MICROS_PER_SECOND;

    #[test]
    fn durations_count_back_from_now() {
        let cases = [
            ("90s", 90),
            ("15m", 15 * 60),
            ("2h", 2 * 3600),
            ("7d", 7 * 86_400),
            ("2w", 14 * 86_400),
            ("0s", 0),
        ];
        for (text, seconds) in cases {
            assert_eq!(
                parse_time_arg(text, NOW_US),
                Ok(NOW_US - seconds * MICROS_PER_SECOND),
                "{text}"
            );
        }
    }

    #[test]
    fn rfc3339_times_are_absolute() {
        assert_eq!(parse_time_arg("2026-11-20T22:10:14Z", 0), Ok(NOW_US));
        assert_eq!(
            parse_time_arg("2026-11-20T23:10:14.5+01:00", 0),
            Ok(NOW_US + 500_000)
        );
        assert_eq!(
            parse_time_arg("2026-11-20", 0),
            Ok(NOW_US - (22 * 3600 + 10 * 60 + 14) * MICROS_PER_SECOND)
        );
    }

    #[test]
    fn anything_else_is_refused_with_the_accepted_forms() {
        for text in [
            "",
            "2",
            "h",
            "2x",
            "-2h",
            "2 h",
            "1h30m",
            "yesterday",
            "2026-13-01",
        ] {
            let error = parse_time_arg(text, NOW_US).unwrap_err();
            assert!(error.to_string().contains("RFC 3339"), "{text}: {error}");
        }
        assert_eq!(
            parse_time_arg("99999999999999w", NOW_US),
            Err(TimeArgError::OutOfRange("99999999999999w".into()))
        );
    }

    #[test]
    fn table_times_are_utc_to_the_second() {
        assert_eq!(
            table_time("2026-11-20T22:10:14.123456Z"),
            "2026-11-20 22:10:14"
        );
        assert_eq!(
            table_time("2026-11-20T23:10:14+01:00"),
            "2026-11-20 22:10:14"
        );
        assert_eq!(table_time("not a time"), "not a time");
        assert_eq!(
            rfc3339_from_micros(NOW_US + 123_456),
            "2026-11-20T22:10:14.123Z"
        );
    }
}
