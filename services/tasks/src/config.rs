//! The tasks service's settings: the platform's sections ([`BaseSettings`]) plus the company's
//! calendar, how to reach opportunities, and the tuning of reminders, the live feed and the
//! tasks made from imported email.

use std::{path::Path, time::Duration};

use crm_platform::settings::{
    BaseSettings, SettingsError, SiblingSettings, Validate, load_service,
};
use serde::Deserialize;
use uuid::Uuid;

/// Tasks' built-in defaults on top of the platform's: every key can be overridden by the
/// settings file or by `CRM__SECTION__KEY` variables (e.g. `CRM__REMINDERS__BATCH_SIZE`).
pub const DEFAULTS: &str = r#"
[server]
listen_addr = "127.0.0.1:50063"

[database]
schema = "tasks"

[company]
time_zone = "Europe/Bucharest"

[opportunities]
url = "http://127.0.0.1:50062"
timeout_ms = 5000

[coverage]
timeout_ms = 800

[reminders]
batch_size = 500
max_sleep_ms = 60000

[feed]
heartbeat_ms = 30000
replay_days = 7

[email_tasks]
deadline_working_days = 2
default_responsible_staff_id = ""
"#;

/// Everything the tasks service is configured with.
#[derive(Clone, Debug, Deserialize)]
pub struct Settings {
    /// Server, database, Redis, auth, telemetry, blobs, relay and consumers.
    #[serde(flatten)]
    pub base: BaseSettings,
    /// The company's calendar.
    pub company: CompanySettings,
    /// Where opportunities is: coverage, balances, documents' partners, drafted contracts.
    pub opportunities: SiblingSettings,
    /// The short deadline of the informative coverage answer (T7).
    pub coverage: CoverageSettings,
    /// The reminder scheduler (T8).
    pub reminders: ReminderSchedulerSettings,
    /// The live feed of new tasks (T10).
    pub feed: FeedSettings,
    /// Tasks made from imported email (E3).
    pub email_tasks: EmailTaskSettings,
}

/// The company's calendar (`[company]`).
#[derive(Clone, Debug, Deserialize)]
pub struct CompanySettings {
    /// IANA time zone: deadline days, working hours, reminder times, report days.
    pub time_zone: chrono_tz::Tz,
}

/// `[coverage]`: how long a task's create or update waits for opportunities' coverage and
/// balance before answering "unavailable" (the task is saved either way).
#[derive(Clone, Debug, Deserialize)]
pub struct CoverageSettings {
    /// In ms.
    pub timeout_ms: u64,
}

impl CoverageSettings {
    /// The deadline of the coverage calls.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

/// `[reminders]`: the scheduler that sends due reminders.
#[derive(Clone, Debug, Deserialize)]
pub struct ReminderSchedulerSettings {
    /// Reminders claimed per transaction.
    pub batch_size: i64,
    /// Longest sleep without looking at the table (a safety net: a new earlier reminder wakes
    /// the scheduler at once).
    pub max_sleep_ms: u64,
}

/// `[feed]`: WatchNewTasks.
#[derive(Clone, Debug, Deserialize)]
pub struct FeedSettings {
    /// Keep-alive interval of a quiet stream, in ms.
    pub heartbeat_ms: u64,
    /// How far back a stream may replay, in days.
    pub replay_days: u32,
}

/// `[email_tasks]`: tasks made from imported messages (E3).
#[derive(Clone, Debug, Deserialize)]
pub struct EmailTaskSettings {
    /// The task's deadline: this many working days (Monday to Friday) after the import.
    pub deadline_working_days: u32,
    /// Staff id of the responsible when the event names none; empty means none configured
    /// (the event is then dead-lettered with the reason, to be replayed once one is set).
    pub default_responsible_staff_id: String,
}

impl EmailTaskSettings {
    /// The configured default responsible, if any.
    pub fn default_responsible(&self) -> Option<Uuid> {
        Uuid::parse_str(self.default_responsible_staff_id.trim()).ok()
    }
}

impl Settings {
    /// Loads defaults, then `file`, then `CRM__…` variables, and validates them.
    pub fn load(file: Option<&Path>) -> Result<Self, SettingsError> {
        load_service(DEFAULTS, file)
    }
}

impl Validate for Settings {
    fn validate(&self) -> Result<(), SettingsError> {
        self.base.validate()?;
        self.opportunities.validate("opportunities")?;
        if !(1..=10_000).contains(&self.reminders.batch_size) {
            return Err(SettingsError::invalid(
                "reminders.batch_size",
                "must be between 1 and 10000",
            ));
        }
        if self.reminders.max_sleep_ms == 0 {
            return Err(SettingsError::invalid(
                "reminders.max_sleep_ms",
                "must be more than 0",
            ));
        }
        if self.feed.heartbeat_ms < 100 {
            return Err(SettingsError::invalid(
                "feed.heartbeat_ms",
                "must be at least 100",
            ));
        }
        if !(1..=30).contains(&self.feed.replay_days) {
            return Err(SettingsError::invalid(
                "feed.replay_days",
                "must be between 1 and 30",
            ));
        }
        if self.email_tasks.deadline_working_days > 60 {
            return Err(SettingsError::invalid(
                "email_tasks.deadline_working_days",
                "must be at most 60",
            ));
        }
        let default = self.email_tasks.default_responsible_staff_id.trim();
        if !default.is_empty() && Uuid::parse_str(default).is_err() {
            return Err(SettingsError::invalid(
                "email_tasks.default_responsible_staff_id",
                "must be a staff id (a UUID) or empty",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_load_and_validate() {
        let s = Settings::load(None).unwrap();
        assert_eq!(s.base.server.listen_addr.port(), 50063);
        assert_eq!(s.company.time_zone, chrono_tz::Europe::Bucharest);
        assert_eq!(s.email_tasks.default_responsible(), None);
        assert_eq!(s.feed.replay_days, 7);
    }
}
