//! The company's calendar: which day an instant falls on in its time zone, where a day starts,
//! and the instant of a local time of day. "Today", the date of an invoice, a task's deadline
//! day, working hours and reminder times are all company days and local times.

use chrono::{DateTime, LocalResult, NaiveDate, TimeZone as _, Utc};
use chrono_tz::Tz;

/// The company day `at` falls on.
pub fn day_of(at: DateTime<Utc>, zone: Tz) -> NaiveDate {
    at.with_timezone(&zone).date_naive()
}

/// The instant a company day starts. On a day whose midnight is skipped by a DST change the
/// day starts at the first instant that exists.
pub fn start_of_day(day: NaiveDate, zone: Tz) -> DateTime<Utc> {
    at_minute(day, 0, zone)
}

/// The instant of local time `minute` (minutes after midnight, 0..=1440; 1440 is the next
/// midnight) on company day `day`. A local time skipped by a DST change (spring forward) is the
/// first instant that exists after it; a repeated one (fall back) is its first occurrence.
pub fn at_minute(day: NaiveDate, minute: u32, zone: Tz) -> DateTime<Utc> {
    let local = day.and_hms_opt(0, 0, 0).expect("midnight exists")
        + chrono::Duration::minutes(i64::from(minute.min(24 * 60)));
    match zone.from_local_datetime(&local) {
        LocalResult::Single(at) | LocalResult::Ambiguous(at, _) => at.with_timezone(&Utc),
        LocalResult::None => {
            // Walk forward to the first local minute that exists (gaps are at most hours).
            (1..=24 * 60)
                .find_map(|minutes| {
                    zone.from_local_datetime(&(local + chrono::Duration::minutes(minutes)))
                        .earliest()
                })
                .map_or_else(|| local.and_utc(), |at| at.with_timezone(&Utc))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_follow_the_company_zone() {
        let zone: Tz = "Europe/Bucharest".parse().unwrap();
        // 22:30 UTC on 31 December is already 1 January in Bucharest (UTC+2).
        let at = DateTime::parse_from_rfc3339("2026-12-31T22:30:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            day_of(at, zone),
            NaiveDate::from_ymd_opt(2027, 1, 1).unwrap()
        );
        let start = start_of_day(NaiveDate::from_ymd_opt(2027, 1, 1).unwrap(), zone);
        assert_eq!(start.to_rfc3339(), "2026-12-31T22:00:00+00:00");
        // In summer Bucharest is UTC+3.
        let start = start_of_day(NaiveDate::from_ymd_opt(2026, 7, 1).unwrap(), zone);
        assert_eq!(start.to_rfc3339(), "2026-06-30T21:00:00+00:00");
    }

    #[test]
    fn local_times_across_dst_changes() {
        let zone: Tz = "Europe/Bucharest".parse().unwrap();
        // 29 March 2026: 03:00 jumps to 04:00 (UTC+2 → UTC+3).
        let spring = NaiveDate::from_ymd_opt(2026, 3, 29).unwrap();
        assert_eq!(
            at_minute(spring, 9 * 60, zone).to_rfc3339(),
            "2026-03-29T06:00:00+00:00"
        );
        // 03:30 does not exist: the first instant after the gap, 04:00 summer time.
        assert_eq!(
            at_minute(spring, 3 * 60 + 30, zone).to_rfc3339(),
            "2026-03-29T01:00:00+00:00"
        );
        // The day is 23 hours long.
        let next = spring.succ_opt().unwrap();
        assert_eq!(
            (start_of_day(next, zone) - start_of_day(spring, zone)).num_hours(),
            23
        );
        // 25 October 2026: 04:00 falls back to 03:00; 03:30 happens twice, the first counts.
        let autumn = NaiveDate::from_ymd_opt(2026, 10, 25).unwrap();
        assert_eq!(
            at_minute(autumn, 3 * 60 + 30, zone).to_rfc3339(),
            "2026-10-25T00:30:00+00:00"
        );
        let next = autumn.succ_opt().unwrap();
        assert_eq!(
            (start_of_day(next, zone) - start_of_day(autumn, zone)).num_hours(),
            25
        );
        // 1440 is the next midnight.
        assert_eq!(at_minute(autumn, 1440, zone), start_of_day(next, zone));
    }

    #[test]
    fn a_day_whose_midnight_is_skipped_starts_at_the_first_real_minute() {
        // Santiago skipped from 00:00 to 01:00 on 2026-09-06.
        let zone: Tz = "America/Santiago".parse().unwrap();
        let day = NaiveDate::from_ymd_opt(2026, 9, 6).unwrap();
        let start = start_of_day(day, zone);
        assert_eq!(day_of(start, zone), day);
        assert!(day_of(start - chrono::Duration::seconds(1), zone) < day);
    }
}
