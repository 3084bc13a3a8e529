//! The company's calendar: which day an instant falls on in its time zone, and where a day
//! starts. "Today", the date of an invoice, the year a series counts in and the days of a
//! report are all company days.

use chrono::{DateTime, LocalResult, NaiveDate, TimeZone as _, Utc};
use chrono_tz::Tz;

/// The company day `at` falls on.
pub fn day_of(at: DateTime<Utc>, zone: Tz) -> NaiveDate {
    at.with_timezone(&zone).date_naive()
}

/// The instant a company day starts. On a day whose midnight is skipped by a DST change the
/// day starts at the first instant that exists.
pub fn start_of_day(day: NaiveDate, zone: Tz) -> DateTime<Utc> {
    let midnight = day.and_hms_opt(0, 0, 0).expect("midnight exists");
    match zone.from_local_datetime(&midnight) {
        LocalResult::Single(at) | LocalResult::Ambiguous(at, _) => at.with_timezone(&Utc),
        LocalResult::None => {
            // Walk forward to the first local minute that exists (gaps are at most hours).
            (1..=24 * 60)
                .find_map(|minutes| {
                    zone.from_local_datetime(&(midnight + chrono::Duration::minutes(minutes)))
                        .earliest()
                })
                .map_or_else(|| midnight.and_utc(), |at| at.with_timezone(&Utc))
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
    fn a_day_whose_midnight_is_skipped_starts_at_the_first_real_minute() {
        // Santiago skipped from 00:00 to 01:00 on 2026-09-06.
        let zone: Tz = "America/Santiago".parse().unwrap();
        let day = NaiveDate::from_ymd_opt(2026, 9, 6).unwrap();
        let start = start_of_day(day, zone);
        assert_eq!(day_of(start, zone), day);
        assert!(day_of(start - chrono::Duration::seconds(1), zone) < day);
    }
}
