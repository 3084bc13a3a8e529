//! The tracking report (T11): per staff member and company day, tasks resolved, open at the
//! end of the day, overdue among those, and minutes booked against minutes available.
//!
//! Booked minutes of a day are those of the tasks still open at the day's end (as availability
//! books them: scheduled ones within working hours, unscheduled ones on their deadline day)
//! plus the worked minutes of the tasks resolved that day.

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use crm_platform::calendar::start_of_day;
use uuid::Uuid;

use super::availability::{Placement, WorkSchedule};

/// What the report needs of a task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrackedTask {
    /// Its responsible.
    pub staff_id: Uuid,
    /// Created.
    pub create_time: DateTime<Utc>,
    /// Resolved, if it was.
    pub resolve_time: Option<DateTime<Utc>>,
    /// Cancelled, if it was.
    pub cancel_time: Option<DateTime<Utc>>,
    /// Deadline.
    pub deadline_date: NaiveDate,
    /// Where it sits in time.
    pub placement: Placement,
    /// Minutes worked (resolved tasks).
    pub worked_minutes: u32,
}

/// One staff member's figures on one day.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DayFigures {
    /// Tasks resolved that day.
    pub resolved: u32,
    /// Tasks open or in progress at the end of the day.
    pub open: u32,
    /// Of those, past their deadline.
    pub overdue: u32,
    /// Minutes booked.
    pub booked_minutes: u32,
    /// Minutes available.
    pub available_minutes: u32,
}

/// The figures of `day` for a staff member with `schedule` and `tasks` (theirs).
pub fn day_figures(
    day: NaiveDate,
    schedule: &WorkSchedule,
    tasks: &[TrackedTask],
    zone: Tz,
) -> DayFigures {
    let start = start_of_day(day, zone);
    let end = start_of_day(day.succ_opt().expect("a next day"), zone);
    let mut f = DayFigures {
        available_minutes: schedule.available_on(day),
        ..DayFigures::default()
    };
    for t in tasks {
        if let Some(resolved) = t.resolve_time
            && resolved >= start
            && resolved < end
        {
            f.resolved += 1;
            f.booked_minutes += t.worked_minutes;
        }
        let open_at_end = t.create_time < end
            && t.resolve_time.is_none_or(|r| r >= end)
            && t.cancel_time.is_none_or(|c| c >= end);
        if open_at_end {
            f.open += 1;
            if t.deadline_date < day {
                f.overdue += 1;
            }
            f.booked_minutes += t.placement.minutes_on(day, schedule, zone).0;
        }
    }
    f
}

#[cfg(test)]
mod tests {
    use crm_platform::calendar::at_minute;

    use super::*;

    const ZONE: Tz = chrono_tz::Europe::Bucharest;

    fn day(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 12, d).unwrap()
    }

    fn at(d: u32, hour: u32) -> DateTime<Utc> {
        at_minute(day(d), hour * 60, ZONE)
    }

    fn schedule() -> WorkSchedule {
        WorkSchedule {
            available_minutes_per_day: 480,
            work_start_minute: 540,
            work_end_minute: 1020,
            working_weekdays: (1..=5).collect(),
            active: true,
        }
    }

    fn task(created: DateTime<Utc>, deadline: NaiveDate) -> TrackedTask {
        TrackedTask {
            staff_id: Uuid::nil(),
            create_time: created,
            resolve_time: None,
            cancel_time: None,
            deadline_date: deadline,
            placement: Placement::Unscheduled {
                deadline,
                minutes: 60,
            },
            worked_minutes: 0,
        }
    }

    #[test]
    fn a_day_counts_what_ended_it_open_and_what_was_resolved_in_it() {
        let resolved = TrackedTask {
            resolve_time: Some(at(2, 15)),
            worked_minutes: 90,
            ..task(at(1, 10), day(2))
        };
        let overdue = task(at(1, 10), day(1));
        let due_today = task(at(2, 10), day(2));
        // Created after the day: not counted.
        let later = task(at(3, 10), day(3));
        // Cancelled during the day: not open at its end.
        let cancelled = TrackedTask {
            cancel_time: Some(at(2, 12)),
            ..task(at(1, 10), day(2))
        };
        let f = day_figures(
            day(2),
            &schedule(),
            &[resolved, overdue, due_today, later, cancelled],
            ZONE,
        );
        assert_eq!(
            f,
            DayFigures {
                resolved: 1,
                open: 2,
                overdue: 1,
                // 90 worked + 60 of the task due that day (the overdue one books on its own
                // deadline day, the 1st).
                booked_minutes: 150,
                available_minutes: 480,
            }
        );
        // A resolved task was open at the end of the day before.
        let f = day_figures(day(1), &schedule(), &[task(at(1, 9), day(2))], ZONE);
        assert_eq!((f.open, f.resolved, f.booked_minutes), (1, 0, 0));
        // Saturday has nothing available.
        assert_eq!(
            day_figures(day(5), &schedule(), &[], ZONE).available_minutes,
            0
        );
    }
}
