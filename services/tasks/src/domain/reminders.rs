//! When and how a task's responsible is reminded (T8).
//!
//! A reminder is due at the company's send time (`send_at_minute`, local) on the deadline day
//! minus `days_before`. It is planned when a task is created and planned again whenever what it
//! depends on changes (deadline, reminder choice, responsible, status); a plan for a time that
//! has already passed is due at once — it is sent, never skipped, and never before its time.
//! The company's switches (in-app, email) are applied when it is sent, so turning a channel off
//! stops reminders already planned.

use chrono::{DateTime, Days, NaiveDate, Utc};
use chrono_tz::Tz;
use crm_platform::calendar::at_minute;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Most days before a deadline a reminder may be sent.
pub const MAX_DAYS_BEFORE: u32 = 3;

/// The company's reminder settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReminderSettings {
    /// Send in-app reminders at all.
    pub send_in_app: bool,
    /// Send email reminders at all.
    pub send_email: bool,
    /// Days before the deadline when a task does not say.
    pub default_days_before: u32,
    /// Local time of day reminders go out, minutes after midnight.
    pub send_at_minute: u32,
}

/// How a task wants its responsible reminded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReminderChoice {
    /// By email.
    pub email: bool,
    /// In the app.
    pub in_app: bool,
    /// Days before the deadline; `None` follows the company's default.
    pub days_before: Option<u32>,
}

impl ReminderChoice {
    /// The choice of a task that does not make one: the company's channels and default day.
    pub fn company_default(settings: &ReminderSettings) -> Self {
        Self {
            email: settings.send_email,
            in_app: settings.send_in_app,
            days_before: None,
        }
    }

    /// Whether any channel is chosen.
    pub fn any(&self) -> bool {
        self.email || self.in_app
    }
}

/// A reminder to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlannedReminder {
    /// When it is due.
    pub due_time: DateTime<Utc>,
    /// By email.
    pub email: bool,
    /// In the app.
    pub in_app: bool,
}

/// When a reminder `days_before` the `deadline` is due: that day at the send time, local.
pub fn due_time(
    deadline: NaiveDate,
    days_before: u32,
    send_at_minute: u32,
    zone: Tz,
) -> DateTime<Utc> {
    let day = deadline
        .checked_sub_days(Days::new(u64::from(days_before)))
        .unwrap_or(deadline);
    at_minute(day, send_at_minute, zone)
}

/// The reminder of an open task with `choice` and `deadline`, or `None` when it wants none.
pub fn plan(
    choice: &ReminderChoice,
    deadline: NaiveDate,
    settings: &ReminderSettings,
    zone: Tz,
) -> Option<PlannedReminder> {
    if !choice.any() {
        return None;
    }
    let days_before = choice.days_before.unwrap_or(settings.default_days_before);
    Some(PlannedReminder {
        due_time: due_time(deadline, days_before, settings.send_at_minute, zone),
        email: choice.email,
        in_app: choice.in_app,
    })
}

/// The channels a due reminder actually uses once the company's switches apply.
pub fn channels_at_send(
    planned_email: bool,
    planned_in_app: bool,
    settings: &ReminderSettings,
) -> (bool, bool) {
    (
        planned_email && settings.send_email,
        planned_in_app && settings.send_in_app,
    )
}

/// The idempotency key of the notification of `task`'s reminder due at `due_time`: the same
/// reminder always has the same key, so notifications delivers it once however often it is
/// emitted; a reminder moved to another time is another reminder.
pub fn idempotency_key(task: Uuid, due_time: DateTime<Utc>) -> String {
    format!("reminder:{task}:{}", due_time.timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ZONE: Tz = chrono_tz::Europe::Bucharest;

    fn settings() -> ReminderSettings {
        ReminderSettings {
            send_in_app: true,
            send_email: true,
            default_days_before: 1,
            send_at_minute: 9 * 60,
        }
    }

    fn day(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    #[test]
    fn due_at_the_send_time_that_many_days_before_local() {
        // 1 day before 10 December at 09:00 Bucharest (UTC+2) = 9 December 07:00 UTC.
        let planned = plan(
            &ReminderChoice {
                email: true,
                in_app: false,
                days_before: None,
            },
            day(2026, 12, 10),
            &settings(),
            ZONE,
        )
        .unwrap();
        assert_eq!(planned.due_time.to_rfc3339(), "2026-12-09T07:00:00+00:00");
        assert!(planned.email && !planned.in_app);
        // On the deadline day, in summer (UTC+3).
        let due = due_time(day(2026, 7, 1), 0, 9 * 60, ZONE);
        assert_eq!(due.to_rfc3339(), "2026-07-01T06:00:00+00:00");
        // Three days before, across the DST change of 29 March (UTC+2 before, +3 after).
        let due = due_time(day(2026, 3, 31), 3, 9 * 60, ZONE);
        assert_eq!(due.to_rfc3339(), "2026-03-28T07:00:00+00:00");
    }

    #[test]
    fn no_channel_no_reminder() {
        let none = ReminderChoice {
            email: false,
            in_app: false,
            days_before: Some(2),
        };
        assert_eq!(plan(&none, day(2026, 12, 10), &settings(), ZONE), None);
    }

    #[test]
    fn company_switches_apply_when_sent() {
        let mut s = settings();
        s.send_email = false;
        assert_eq!(channels_at_send(true, true, &s), (false, true));
        assert_eq!(
            ReminderChoice::company_default(&s),
            ReminderChoice {
                email: false,
                in_app: true,
                days_before: None
            }
        );
    }

    #[test]
    fn the_same_reminder_has_the_same_key() {
        let task = Uuid::from_u128(7);
        let at = due_time(day(2026, 12, 10), 1, 540, ZONE);
        assert_eq!(idempotency_key(task, at), idempotency_key(task, at));
        assert_ne!(
            idempotency_key(task, at),
            idempotency_key(task, at + chrono::Duration::days(1))
        );
    }
}
