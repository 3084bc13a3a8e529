//! Whether a staff member is free for a task (T6): the hours booked on each day the task
//! touches against the hours they have, and the overlaps with their other tasks. A warning
//! with the figures, never a refusal. Pure arithmetic over the company's calendar.
//!
//! How a task books time:
//! - A **scheduled** task occupies the interval [start, start + expected duration). On each
//!   company day it touches, it books the minutes of that interval that fall inside the staff
//!   member's working hours of that day (their working window on a working weekday). Minutes
//!   outside working hours (an evening, a weekend) are not booked; for the task being checked
//!   they are reported as `outside_working_minutes` and warned about. A multi-day task thus
//!   books each day's share of working time it covers.
//! - An **unscheduled** task books its whole expected duration on its deadline day.
//! - A task with no expected duration books nothing.
//! - Days are company days (midnight to midnight in the company's time zone) and working hours
//!   are local times, so a DST change neither shifts 09:00–17:00 nor loses or adds a booked
//!   minute: a 23- or 25-hour day keeps its 8-hour window.
//! - Available minutes of a working day are the staff member's `available_minutes_per_day`
//!   (which may be less than the window, e.g. part of the day goes to other work); a
//!   non-working day has none.
//! - Two tasks overlap when their intervals share minutes within the working hours; only
//!   scheduled tasks can overlap.

use std::collections::BTreeSet;

use chrono::{DateTime, Datelike as _, Duration, NaiveDate, Utc};
use chrono_tz::Tz;
use crm_platform::calendar::{at_minute, day_of, start_of_day};
use uuid::Uuid;

/// When a staff member works.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkSchedule {
    /// Minutes available for tasks on a working day.
    pub available_minutes_per_day: u32,
    /// Start of the working day, minutes after local midnight.
    pub work_start_minute: u32,
    /// End of the working day, minutes after local midnight (after the start, up to 1440).
    pub work_end_minute: u32,
    /// Working days, ISO weekday numbers (1 = Monday).
    pub working_weekdays: BTreeSet<u32>,
    /// Whether tasks may be assigned to them.
    pub active: bool,
}

impl WorkSchedule {
    /// Whether `day` is a working day.
    pub fn works_on(&self, day: NaiveDate) -> bool {
        self.working_weekdays
            .contains(&day.weekday().number_from_monday())
    }

    /// The working window of `day`, or `None` on a non-working day.
    pub fn window(&self, day: NaiveDate, zone: Tz) -> Option<Interval> {
        self.works_on(day).then(|| Interval {
            start: at_minute(day, self.work_start_minute, zone),
            end: at_minute(day, self.work_end_minute, zone),
        })
    }

    /// Minutes available on `day`.
    pub fn available_on(&self, day: NaiveDate) -> u32 {
        if self.works_on(day) {
            self.available_minutes_per_day
        } else {
            0
        }
    }
}

/// A half-open interval of time [start, end).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interval {
    /// First instant in it.
    pub start: DateTime<Utc>,
    /// First instant after it.
    pub end: DateTime<Utc>,
}

impl Interval {
    /// The interval of `minutes` from `start`.
    pub fn of(start: DateTime<Utc>, minutes: u32) -> Self {
        Self {
            start,
            end: start + Duration::minutes(i64::from(minutes)),
        }
    }

    /// The part shared with `other`, if any.
    pub fn intersect(&self, other: &Interval) -> Option<Interval> {
        let start = self.start.max(other.start);
        let end = self.end.min(other.end);
        (start < end).then_some(Interval { start, end })
    }

    /// Whole minutes in it.
    pub fn minutes(&self) -> u32 {
        u32::try_from((self.end - self.start).num_minutes()).unwrap_or(u32::MAX)
    }

    /// The company day `day` as an interval.
    pub fn day(day: NaiveDate, zone: Tz) -> Self {
        Self {
            start: start_of_day(day, zone),
            end: start_of_day(day.succ_opt().expect("a next day"), zone),
        }
    }
}

/// Where a task sits in time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// Scheduled from `start` for `minutes`.
    Scheduled {
        /// Scheduled start.
        start: DateTime<Utc>,
        /// Expected duration.
        minutes: u32,
    },
    /// Not scheduled: its duration is booked on its deadline day.
    Unscheduled {
        /// Deadline day.
        deadline: NaiveDate,
        /// Expected duration.
        minutes: u32,
    },
}

impl Placement {
    /// The company days it touches, in order (at least one).
    pub fn days(&self, zone: Tz) -> Vec<NaiveDate> {
        match *self {
            Placement::Unscheduled { deadline, .. } => vec![deadline],
            Placement::Scheduled { start, minutes } => {
                let first = day_of(start, zone);
                let interval = Interval::of(start, minutes);
                // The last instant inside the interval decides the last day.
                let last = if minutes == 0 {
                    first
                } else {
                    day_of(interval.end - Duration::nanoseconds(1), zone)
                };
                first.iter_days().take_while(|d| *d <= last).collect()
            }
        }
    }

    /// The minutes it books on `day` within `schedule`'s working hours, and those of its
    /// interval that fall outside them that day.
    pub fn minutes_on(&self, day: NaiveDate, schedule: &WorkSchedule, zone: Tz) -> (u32, u32) {
        match *self {
            Placement::Unscheduled { deadline, minutes } => {
                if day == deadline {
                    (minutes, 0)
                } else {
                    (0, 0)
                }
            }
            Placement::Scheduled { start, minutes } => {
                let Some(that_day) =
                    Interval::of(start, minutes).intersect(&Interval::day(day, zone))
                else {
                    return (0, 0);
                };
                let inside = schedule
                    .window(day, zone)
                    .and_then(|window| that_day.intersect(&window))
                    .map_or(0, |i| i.minutes());
                (inside, that_day.minutes() - inside)
            }
        }
    }
}

/// Another task of the same staff member, as the check sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BookedTask {
    /// Its id.
    pub id: Uuid,
    /// Its title.
    pub title: String,
    /// Where it sits.
    pub placement: Placement,
}

/// One day's load.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DayLoad {
    /// The day.
    pub day: NaiveDate,
    /// Minutes available.
    pub available_minutes: u32,
    /// Minutes booked by the other tasks.
    pub booked_minutes: u32,
    /// Minutes the checked task would book.
    pub requested_minutes: u32,
    /// Booked + requested exceeds available.
    pub overbooked: bool,
    /// Minutes of the checked task outside working hours.
    pub outside_working_minutes: u32,
}

/// An overlapping task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Overlap {
    /// Its id.
    pub task_id: Uuid,
    /// Its title.
    pub title: String,
    /// Its scheduled start.
    pub start: DateTime<Utc>,
    /// Its expected duration.
    pub minutes: u32,
    /// Minutes shared with the checked task within working hours.
    pub overlap_minutes: u32,
}

/// The answer of a check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Availability {
    /// Something to warn about.
    pub warning: bool,
    /// Each day the checked task touches.
    pub days: Vec<DayLoad>,
    /// Overlapping tasks, by start.
    pub overlaps: Vec<Overlap>,
    /// In words.
    pub summary: String,
}

/// Checks `requested` against the staff member's `schedule` and their `others` tasks (open or
/// in progress, the checked task itself left out), in the company's `zone`.
pub fn check(
    schedule: &WorkSchedule,
    requested: Placement,
    others: &[BookedTask],
    zone: Tz,
) -> Availability {
    let days: Vec<DayLoad> = requested
        .days(zone)
        .into_iter()
        .map(|day| {
            let (requested_minutes, outside_working_minutes) =
                requested.minutes_on(day, schedule, zone);
            let booked_minutes: u32 = others
                .iter()
                .map(|t| t.placement.minutes_on(day, schedule, zone).0)
                .sum();
            let available_minutes = schedule.available_on(day);
            DayLoad {
                day,
                available_minutes,
                booked_minutes,
                requested_minutes,
                overbooked: booked_minutes + requested_minutes > available_minutes,
                outside_working_minutes,
            }
        })
        .collect();

    let mut overlaps = Vec::new();
    if let Placement::Scheduled { start, minutes } = requested
        && minutes > 0
    {
        let mine = Interval::of(start, minutes);
        let windows: Vec<Interval> = requested
            .days(zone)
            .into_iter()
            .filter_map(|day| schedule.window(day, zone))
            .collect();
        for other in others {
            let Placement::Scheduled {
                start: other_start,
                minutes: other_minutes,
            } = other.placement
            else {
                continue;
            };
            let Some(shared) = mine.intersect(&Interval::of(other_start, other_minutes)) else {
                continue;
            };
            let overlap_minutes: u32 = windows
                .iter()
                .filter_map(|w| shared.intersect(w))
                .map(|i| i.minutes())
                .sum();
            if overlap_minutes > 0 {
                overlaps.push(Overlap {
                    task_id: other.id,
                    title: other.title.clone(),
                    start: other_start,
                    minutes: other_minutes,
                    overlap_minutes,
                });
            }
        }
        overlaps.sort_by_key(|o| (o.start, o.task_id));
    }

    let mut notes = Vec::new();
    if !schedule.active {
        notes.push("the staff member is inactive".to_owned());
    }
    for d in &days {
        let mut line = format!(
            "{}: {} booked of {}",
            d.day,
            hours(d.booked_minutes),
            hours(d.available_minutes)
        );
        if d.requested_minutes > 0 {
            line.push_str(&format!(", this task {}", hours(d.requested_minutes)));
        }
        if d.available_minutes == 0 {
            line.push_str(" (not a working day)");
        } else if d.overbooked {
            line.push_str(" (overbooked)");
        }
        if d.outside_working_minutes > 0 {
            line.push_str(&format!(
                "; {} outside working hours",
                hours(d.outside_working_minutes)
            ));
        }
        notes.push(line);
    }
    match overlaps.len() {
        0 => {}
        1 => notes.push("1 overlapping task".to_owned()),
        n => notes.push(format!("{n} overlapping tasks")),
    }
    let warning = !schedule.active
        || !overlaps.is_empty()
        || days
            .iter()
            .any(|d| d.overbooked || d.outside_working_minutes > 0);
    Availability {
        warning,
        days,
        overlaps,
        summary: notes.join("; "),
    }
}

/// Minutes as hours for people: "6 h", "1 h 30 min", "45 min".
fn hours(minutes: u32) -> String {
    match (minutes / 60, minutes % 60) {
        (0, m) => format!("{m} min"),
        (h, 0) => format!("{h} h"),
        (h, m) => format!("{h} h {m} min"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ZONE: Tz = chrono_tz::Europe::Bucharest;

    fn weekdays() -> WorkSchedule {
        WorkSchedule {
            available_minutes_per_day: 480,
            work_start_minute: 9 * 60,
            work_end_minute: 17 * 60,
            working_weekdays: (1..=5).collect(),
            active: true,
        }
    }

    fn day(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    /// Local wall-clock time in Bucharest.
    fn local(y: i32, m: u32, d: u32, hour: u32, minute: u32) -> DateTime<Utc> {
        at_minute(day(y, m, d), hour * 60 + minute, ZONE)
    }

    fn scheduled(id: u128, start: DateTime<Utc>, minutes: u32) -> BookedTask {
        BookedTask {
            id: Uuid::from_u128(id),
            title: format!("task {id}"),
            placement: Placement::Scheduled { start, minutes },
        }
    }

    // Wednesday 2 December 2026.
    const Y: i32 = 2026;

    #[test]
    fn an_unscheduled_task_books_its_duration_on_its_deadline_day() {
        let others = [
            BookedTask {
                id: Uuid::from_u128(1),
                title: "a".into(),
                placement: Placement::Unscheduled {
                    deadline: day(Y, 12, 2),
                    minutes: 300,
                },
            },
            // Another day: not counted.
            BookedTask {
                id: Uuid::from_u128(2),
                title: "b".into(),
                placement: Placement::Unscheduled {
                    deadline: day(Y, 12, 3),
                    minutes: 300,
                },
            },
        ];
        let a = check(
            &weekdays(),
            Placement::Unscheduled {
                deadline: day(Y, 12, 2),
                minutes: 120,
            },
            &others,
            ZONE,
        );
        assert_eq!(a.days.len(), 1);
        assert_eq!(a.days[0].booked_minutes, 300);
        assert_eq!(a.days[0].requested_minutes, 120);
        assert!(!a.days[0].overbooked && !a.warning, "{a:?}");
        // 300 + 240 > 480.
        let a = check(
            &weekdays(),
            Placement::Unscheduled {
                deadline: day(Y, 12, 2),
                minutes: 240,
            },
            &others,
            ZONE,
        );
        assert!(a.days[0].overbooked && a.warning);
        assert_eq!(
            a.summary,
            "2026-12-02: 5 h booked of 8 h, this task 4 h (overbooked)"
        );
    }

    #[test]
    fn a_scheduled_task_books_only_its_working_time_and_warns_about_the_rest() {
        // 15:00 for 4 h: 2 h inside (15–17), 2 h outside (17–19).
        let a = check(
            &weekdays(),
            Placement::Scheduled {
                start: local(Y, 12, 2, 15, 0),
                minutes: 240,
            },
            &[],
            ZONE,
        );
        assert_eq!(a.days.len(), 1);
        assert_eq!(a.days[0].requested_minutes, 120);
        assert_eq!(a.days[0].outside_working_minutes, 120);
        assert!(a.warning);
    }

    #[test]
    fn a_task_across_midnight_books_each_company_day_its_share() {
        // Friday 4 December 16:00 to Monday 7 December 10:00 (66 h): Friday 1 h, the weekend
        // nothing (non-working days), Monday 1 h.
        let start = local(Y, 12, 4, 16, 0);
        let a = check(
            &weekdays(),
            Placement::Scheduled {
                start,
                minutes: 66 * 60,
            },
            &[],
            ZONE,
        );
        let days: Vec<(NaiveDate, u32, u32)> = a
            .days
            .iter()
            .map(|d| (d.day, d.requested_minutes, d.available_minutes))
            .collect();
        assert_eq!(
            days,
            [
                (day(Y, 12, 4), 60, 480),
                (day(Y, 12, 5), 0, 0),
                (day(Y, 12, 6), 0, 0),
                (day(Y, 12, 7), 60, 480),
            ]
        );
        // Ending exactly at midnight does not touch the next day.
        let evening = Placement::Scheduled {
            start: local(Y, 12, 2, 23, 0),
            minutes: 60,
        };
        assert_eq!(evening.days(ZONE), [day(Y, 12, 2)]);
    }

    #[test]
    fn days_are_company_days_not_utc_days() {
        // 00:30 local on 3 December is 22:30 UTC on 2 December: a task then belongs to the 3rd.
        let schedule = WorkSchedule {
            work_start_minute: 0,
            work_end_minute: 1440,
            ..weekdays()
        };
        let start = local(Y, 12, 3, 0, 30);
        assert_eq!(start.to_rfc3339(), "2026-12-02T22:30:00+00:00");
        let p = Placement::Scheduled { start, minutes: 60 };
        assert_eq!(p.days(ZONE), [day(Y, 12, 3)]);
        assert_eq!(p.minutes_on(day(Y, 12, 3), &schedule, ZONE), (60, 0));
        assert_eq!(p.minutes_on(day(Y, 12, 2), &schedule, ZONE), (0, 0));
    }

    #[test]
    fn dst_changes_keep_working_hours_local_and_minutes_exact() {
        // Sunday 29 March 2026 clocks jump 03:00 → 04:00; work every day, all day.
        let schedule = WorkSchedule {
            work_start_minute: 0,
            work_end_minute: 1440,
            working_weekdays: (1..=7).collect(),
            ..weekdays()
        };
        // 02:00 to 05:00 local is two real hours.
        let p = Placement::Scheduled {
            start: local(2026, 3, 29, 2, 0),
            minutes: 120,
        };
        assert_eq!(p.minutes_on(day(2026, 3, 29), &schedule, ZONE), (120, 0));
        // The whole 23-hour day is inside the 00:00–24:00 window.
        let whole = Placement::Scheduled {
            start: local(2026, 3, 29, 0, 0),
            minutes: 23 * 60,
        };
        assert_eq!(whole.days(ZONE), [day(2026, 3, 29)]);
        assert_eq!(
            whole.minutes_on(day(2026, 3, 29), &schedule, ZONE),
            (23 * 60, 0)
        );
        // Autumn, 25 October: a 25-hour day.
        let whole = Placement::Scheduled {
            start: local(2026, 10, 25, 0, 0),
            minutes: 25 * 60,
        };
        assert_eq!(whole.days(ZONE), [day(2026, 10, 25)]);
        // 09:00–17:00 is still eight hours on both change days.
        let nine_to_five = weekdays();
        let nine_to_five = WorkSchedule {
            working_weekdays: (1..=7).collect(),
            ..nine_to_five
        };
        for d in [day(2026, 3, 29), day(2026, 10, 25)] {
            let w = nine_to_five.window(d, ZONE).unwrap();
            assert_eq!(w.minutes(), 480, "{d}");
        }
    }

    #[test]
    fn overlaps_count_only_shared_working_minutes() {
        let others = [
            // 10:00–12:00: overlaps 11:00–12:00 with 11:00–13:00.
            scheduled(1, local(Y, 12, 2, 10, 0), 120),
            // 16:30–18:30 vs a requested 16:00–18:00: shared 16:30–18:00, of which 30 min
            // inside working hours.
            scheduled(2, local(Y, 12, 2, 16, 30), 120),
            // Unscheduled tasks never overlap.
            BookedTask {
                id: Uuid::from_u128(3),
                title: "c".into(),
                placement: Placement::Unscheduled {
                    deadline: day(Y, 12, 2),
                    minutes: 60,
                },
            },
        ];
        let a = check(
            &weekdays(),
            Placement::Scheduled {
                start: local(Y, 12, 2, 11, 0),
                minutes: 120,
            },
            &others,
            ZONE,
        );
        assert_eq!(a.overlaps.len(), 1);
        assert_eq!(a.overlaps[0].task_id, Uuid::from_u128(1));
        assert_eq!(a.overlaps[0].overlap_minutes, 60);
        assert!(a.warning);
        let a = check(
            &weekdays(),
            Placement::Scheduled {
                start: local(Y, 12, 2, 16, 0),
                minutes: 120,
            },
            &others,
            ZONE,
        );
        assert_eq!(
            a.overlaps
                .iter()
                .map(|o| (o.task_id.as_u128(), o.overlap_minutes))
                .collect::<Vec<_>>(),
            [(2, 30)]
        );
        // Booked that day: 2 h + 30 min (inside hours of task 2) + 1 h unscheduled.
        assert_eq!(a.days[0].booked_minutes, 120 + 30 + 60);
    }

    #[test]
    fn an_evening_overlap_outside_working_hours_is_no_overlap() {
        let others = [scheduled(1, local(Y, 12, 2, 18, 0), 60)];
        let a = check(
            &weekdays(),
            Placement::Scheduled {
                start: local(Y, 12, 2, 18, 30),
                minutes: 60,
            },
            &others,
            ZONE,
        );
        assert!(a.overlaps.is_empty());
        // Still a warning: the task itself is outside working hours.
        assert_eq!(a.days[0].outside_working_minutes, 60);
        assert!(a.warning);
    }

    #[test]
    fn a_non_working_day_or_an_inactive_person_warns() {
        let saturday = Placement::Unscheduled {
            deadline: day(Y, 12, 5),
            minutes: 60,
        };
        let a = check(&weekdays(), saturday, &[], ZONE);
        assert_eq!(a.days[0].available_minutes, 0);
        assert!(a.days[0].overbooked && a.warning);
        assert!(a.summary.contains("not a working day"), "{}", a.summary);
        let inactive = WorkSchedule {
            active: false,
            ..weekdays()
        };
        let a = check(
            &inactive,
            Placement::Unscheduled {
                deadline: day(Y, 12, 2),
                minutes: 0,
            },
            &[],
            ZONE,
        );
        assert!(a.warning);
        assert!(a.summary.starts_with("the staff member is inactive"));
    }

    #[test]
    fn hours_read_like_people_write_them() {
        assert_eq!(hours(0), "0 min");
        assert_eq!(hours(45), "45 min");
        assert_eq!(hours(480), "8 h");
        assert_eq!(hours(90), "1 h 30 min");
    }
}
