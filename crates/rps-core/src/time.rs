//! Calendar arithmetic on epoch milliseconds (UTC), without a time-zone database.

const DAY_MS: i64 = 86_400_000;

/// Hour of day, 0..24 (UTC).
pub fn hour_of_day(ts_ms: i64) -> u32 {
    u32::try_from(ts_ms.rem_euclid(DAY_MS) / 3_600_000).unwrap_or(0)
}

/// Day of week with Monday = 0 … Sunday = 6 (ISO order, as pandas' `dayofweek`).
pub fn day_of_week(ts_ms: i64) -> u32 {
    // 1970-01-01 was a Thursday (ISO index 3).
    let days = ts_ms.div_euclid(DAY_MS);
    u32::try_from((days + 3).rem_euclid(7)).unwrap_or(0)
}

/// Year and month (1..=12) of a timestamp, by Howard Hinnant's civil-from-days algorithm.
pub fn year_month(ts_ms: i64) -> (i32, u32) {
    let z = ts_ms.div_euclid(DAY_MS) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    (
        i32::try_from(y).unwrap_or(i32::MAX),
        u32::try_from(m).unwrap_or(1),
    )
}

/// Epoch milliseconds of the first instant of a month.
pub fn month_start(year: i32, month: u32) -> i64 {
    let (y, m) = (i64::from(year), i64::from(month));
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe - 719_468) * DAY_MS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar() {
        // 2018-12-31T23:00:00Z was a Monday.
        let ts = 1_546_297_200_000;
        assert_eq!(hour_of_day(ts), 23);
        assert_eq!(day_of_week(ts), 0);
        assert_eq!(year_month(ts), (2018, 12));
        // 2017-07-01T11:00:00Z was a Saturday.
        let ts = 1_498_906_800_000;
        assert_eq!(day_of_week(ts), 5);
        assert_eq!(hour_of_day(ts), 11);
        assert_eq!(month_start(2017, 7), 1_498_867_200_000);
        assert_eq!(month_start(2024, 3), 1_709_251_200_000);
        assert_eq!(year_month(month_start(2024, 2)), (2024, 2));
        assert_eq!(year_month(-1), (1969, 12));
    }
}
