//! The windows limits count in: the UTC minute, day and month an instant falls in, and when each
//! turns (the moment to retry).
/// Window starts, unix µs, for an instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Windows {
    pub minute: i64,
    pub day: i64,
    pub month: i64,
}

const MINUTE_US: i64 = 60_000_000;
const DAY_US: i64 = 24 * 60 * MINUTE_US;

impl Windows {
    pub fn at(now_us: i64) -> Windows {
        let minute = now_us - now_us.rem_euclid(MINUTE_US);
        let day = now_us - now_us.rem_euclid(DAY_US);
        Windows {
            minute,
            day,
            month: month_start(day),
        }
    }

    pub fn minute_end(self) -> i64 {
        self.minute + MINUTE_US
    }

    pub fn day_end(self) -> i64 {
        self.day + DAY_US
    }

    pub fn month_end(self) -> i64 {
        next_month_start(self.month)
    }
}

/// The first day of the month of `day_start_us` (UTC), from the civil calendar.
fn month_start(day_start_us: i64) -> i64 {
    let days = day_start_us.div_euclid(DAY_US);
    let (_, _, day) = civil_from_days(days);
    (days - (i64::from(day) - 1)) * DAY_US
}

fn next_month_start(month_start_us: i64) -> i64 {
    let days = month_start_us.div_euclid(DAY_US);
    let (year, month, _) = civil_from_days(days);
    let (year, month) = if month == 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    };
    days_from_civil(year, month, 1) * DAY_US
}

/// Howard Hinnant's days → (y, m, d), proleptic Gregorian.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-12-07T14:30:15Z.
    const NOW: i64 = 1_796_653_815_000_000;

    #[test]
    fn windows_align_to_the_utc_minute_day_and_month() {
        let windows = Windows::at(NOW);
        assert_eq!(windows.minute, 1_796_653_800_000_000); // 14:30:00
        assert_eq!(windows.day, 1_796_601_600_000_000); // 2026-12-07T00:00Z
        assert_eq!(windows.month, 1_796_083_200_000_000); // 2026-12-01T00:00Z
        assert_eq!(windows.month_end(), 1_798_761_600_000_000); // 2027-01-01T00:00Z
        assert_eq!(Windows::at(windows.month_end()).month, windows.month_end());
        // February of a leap year.
        let feb_2028 = days_from_civil(2028, 2, 10) * DAY_US;
        assert_eq!(
            Windows::at(feb_2028).month_end(),
            days_from_civil(2028, 3, 1) * DAY_US
        );
        assert_eq!(civil_from_days(days_from_civil(2026, 12, 7)), (2026, 12, 7));
    }
}
