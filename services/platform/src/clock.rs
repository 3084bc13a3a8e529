//! A clock that production reads from the system and tests can set and advance.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, SubsecRound as _, Utc};

/// The time source of a service. Cloning shares the same clock.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    fixed: Option<Arc<Mutex<DateTime<Utc>>>>,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Self { fixed: None }
    }

    /// A clock that stays at `at` until [`Clock::set`] or [`Clock::advance`] moves it.
    pub fn fixed(at: DateTime<Utc>) -> Self {
        Self {
            fixed: Some(Arc::new(Mutex::new(at))),
        }
    }

    /// The current instant, to the microsecond: the precision PostgreSQL keeps, so a value
    /// read back equals the value written.
    pub fn now(&self) -> DateTime<Utc> {
        let now = match &self.fixed {
            Some(at) => *at.lock().expect("clock mutex is never poisoned"),
            None => Utc::now(),
        };
        now.trunc_subsecs(6)
    }

    /// Moves a fixed clock to `at`; does nothing to the system clock.
    pub fn set(&self, at: DateTime<Utc>) {
        if let Some(fixed) = &self.fixed {
            *fixed.lock().expect("clock mutex is never poisoned") = at;
        }
    }

    /// Moves a fixed clock forward by `by`; does nothing to the system clock.
    pub fn advance(&self, by: Duration) {
        if let Some(fixed) = &self.fixed {
            *fixed.lock().expect("clock mutex is never poisoned") += by;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fixed_clock_moves_only_when_told() {
        let start = DateTime::parse_from_rfc3339("2026-01-02T03:04:05Z")
            .unwrap()
            .with_timezone(&Utc);
        let clock = Clock::fixed(start);
        assert_eq!(clock.now(), start);
        clock.advance(Duration::hours(2));
        assert_eq!(clock.clone().now(), start + Duration::hours(2));
    }
}
