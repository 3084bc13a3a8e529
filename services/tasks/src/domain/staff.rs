//! The rules of a staff member's working time (T1): the defaults of a new record and the checks
//! of what may be stored.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::availability::WorkSchedule;

/// A staff member (T1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Staff {
    /// Its id.
    pub id: Uuid,
    /// Full name.
    pub name: String,
    /// Work email; empty when none.
    pub email: String,
    /// The token subject they log in with; `None` when not a user.
    pub user_name: Option<String>,
    /// Categories (teams).
    pub category_ids: Vec<Uuid>,
    /// Working time.
    pub schedule: WorkSchedule,
    /// Phone.
    pub phone: String,
    /// Created.
    pub create_time: DateTime<Utc>,
    /// Last changed.
    pub update_time: DateTime<Utc>,
    /// Version behind the etag.
    pub version: i64,
}

/// A category (team) of staff.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StaffCategory {
    /// Its id.
    pub id: Uuid,
    /// Name, unique case-insensitively.
    pub name: String,
    /// What it does.
    pub description: String,
    /// Active members (read only).
    pub member_count: i64,
    /// Created.
    pub create_time: DateTime<Utc>,
    /// Last changed.
    pub update_time: DateTime<Utc>,
    /// Version behind the etag.
    pub version: i64,
}

/// A post-sale service that can be requested on a task (T7).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PostSaleService {
    /// Its id.
    pub id: Uuid,
    /// Name, unique case-insensitively.
    pub name: String,
    /// What it consists of.
    pub description: String,
    /// The article (O7) that invoices it and that contracts cover.
    pub article_id: Uuid,
    /// Price per hour without VAT, in minor units.
    pub hourly_rate_units: i64,
    /// Its currency.
    pub hourly_rate_currency: String,
    /// Whether it can be requested on new tasks.
    pub active: bool,
    /// Created.
    pub create_time: DateTime<Utc>,
    /// Last changed.
    pub update_time: DateTime<Utc>,
    /// Version behind the etag.
    pub version: i64,
}

/// Minutes available per working day when none are given (8 h).
pub const DEFAULT_AVAILABLE_MINUTES: u32 = 480;
/// Start of the working day when none is given (09:00).
pub const DEFAULT_WORK_START: u32 = 9 * 60;
/// End of the working day when none is given (17:00).
pub const DEFAULT_WORK_END: u32 = 17 * 60;

/// Monday to Friday.
pub fn default_weekdays() -> BTreeSet<u32> {
    (1..=5).collect()
}

/// Minutes available per day: 0..=1440.
pub fn check_available_minutes(minutes: i32) -> Result<u32, String> {
    u32::try_from(minutes)
        .ok()
        .filter(|m| *m <= 1440)
        .ok_or_else(|| "must be between 0 and 1440".to_owned())
}

/// A start of day: 0..=1439.
pub fn check_start_minute(minute: i32) -> Result<u32, String> {
    u32::try_from(minute)
        .ok()
        .filter(|m| *m <= 1439)
        .ok_or_else(|| "must be between 0 and 1439 (minutes after midnight)".to_owned())
}

/// An end of day after `start`: ..=1440.
pub fn check_end_minute(minute: i32, start: u32) -> Result<u32, String> {
    let end = u32::try_from(minute)
        .ok()
        .filter(|m| (1..=1440).contains(m))
        .ok_or_else(|| "must be between 1 and 1440 (minutes after midnight)".to_owned())?;
    if end <= start {
        return Err(format!(
            "must be after work_start_minute ({start}); a working day does not cross midnight"
        ));
    }
    Ok(end)
}

/// Working weekdays: ISO numbers 1..=7 without duplicates; empty means Monday to Friday.
pub fn check_weekdays(days: &[i32]) -> Result<BTreeSet<u32>, String> {
    if days.is_empty() {
        return Ok(default_weekdays());
    }
    let mut set = BTreeSet::new();
    for d in days {
        let d = u32::try_from(*d)
            .ok()
            .filter(|d| (1..=7).contains(d))
            .ok_or_else(|| format!("{d} is not an ISO weekday (1 = Monday … 7 = Sunday)"))?;
        if !set.insert(d) {
            return Err(format!("{d} is given twice"));
        }
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn working_time_is_checked() {
        assert_eq!(check_available_minutes(480), Ok(480));
        assert!(check_available_minutes(-1).is_err());
        assert!(check_available_minutes(1441).is_err());
        assert_eq!(check_start_minute(540), Ok(540));
        assert!(check_start_minute(1440).is_err());
        assert_eq!(check_end_minute(1440, 540), Ok(1440));
        assert!(check_end_minute(540, 540).is_err());
        assert_eq!(check_weekdays(&[]), Ok(default_weekdays()));
        assert_eq!(check_weekdays(&[6, 7]), Ok([6, 7].into_iter().collect()));
        assert!(check_weekdays(&[1, 1]).is_err());
        assert!(check_weekdays(&[0]).is_err());
    }
}
