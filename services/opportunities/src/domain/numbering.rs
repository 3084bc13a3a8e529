//! Document numbers from number series (O6).
//!
//! A number is taken inside the transaction that issues the document, with the series row
//! locked: two concurrent issues queue on the lock and get consecutive numbers, and a rolled
//! back issue rolls the counter back with it, so a series has no gaps and no repeats.

/// The counter of a series, as stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counter {
    /// The number the next document gets.
    pub next_number: i64,
    /// The year `next_number` counts in (yearly series); 0 before the first number.
    pub counter_year: i32,
    /// Whether the series restarts at 1 every year.
    pub yearly_restart: bool,
}

/// A number taken from a series: its value, its year and the counter after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Taken {
    /// The document's number within the series.
    pub number: i64,
    /// The year it counts in (yearly series).
    pub year: i32,
    /// The counter to store.
    pub after: Counter,
}

impl Counter {
    /// Takes the next number on a day of `year`. A yearly series restarts at 1 in a year later
    /// than the one it counts in; never in an earlier one (a clock set back must not repeat
    /// numbers): it keeps counting in its year.
    pub fn take(self, year: i32) -> Taken {
        if self.yearly_restart && year > self.counter_year {
            return Taken {
                number: 1,
                year,
                after: Counter {
                    next_number: 2,
                    counter_year: year,
                    ..self
                },
            };
        }
        Taken {
            number: self.next_number,
            year: self.counter_year,
            after: Counter {
                next_number: self.next_number + 1,
                ..self
            },
        }
    }
}

/// The printed number: `prefix`, the year and "-" for a yearly series, then `number`
/// zero-padded to `min_digits` ("FCT-" + 2026 + 42 → "FCT-2026-0042").
pub fn format_number(
    prefix: &str,
    yearly_restart: bool,
    year: i32,
    number: i64,
    min_digits: i32,
) -> String {
    let width = usize::try_from(min_digits).unwrap_or(1);
    if yearly_restart {
        format!("{prefix}{year}-{number:0width$}")
    } else {
        format!("{prefix}{number:0width$}")
    }
}

/// Checks a prefix: up to 20 letters, digits, "-", "/" and ".".
pub fn check_prefix(prefix: &str) -> Result<(), String> {
    if prefix.chars().count() > 20 {
        return Err("must be at most 20 characters".into());
    }
    if prefix
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-/.".contains(c))
    {
        Ok(())
    } else {
        Err(format!(
            "{prefix:?} may hold only letters, digits, \"-\", \"/\" and \".\""
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yearly(next_number: i64, counter_year: i32) -> Counter {
        Counter {
            next_number,
            counter_year,
            yearly_restart: true,
        }
    }

    #[test]
    fn a_yearly_series_restarts_in_a_new_year_only() {
        let first = yearly(1, 0).take(2026);
        assert_eq!((first.number, first.year), (1, 2026));
        let second = first.after.take(2026);
        assert_eq!((second.number, second.year), (2, 2026));
        let next_year = second.after.take(2027);
        assert_eq!((next_year.number, next_year.year), (1, 2027));
        // A day of an earlier year (a clock set back) keeps counting in the later year.
        let back = next_year.after.take(2026);
        assert_eq!((back.number, back.year), (2, 2027));
    }

    #[test]
    fn a_plain_series_never_restarts() {
        let plain = Counter {
            next_number: 41,
            counter_year: 0,
            yearly_restart: false,
        };
        let taken = plain.take(2030);
        assert_eq!(taken.number, 41);
        assert_eq!(taken.after.next_number, 42);
    }

    #[test]
    fn numbers_are_printed_with_prefix_year_and_padding() {
        assert_eq!(format_number("FCT-", true, 2026, 42, 4), "FCT-2026-0042");
        assert_eq!(format_number("OF/", false, 0, 7, 3), "OF/007");
        assert_eq!(format_number("", false, 0, 123_456, 4), "123456");
        assert!(check_prefix("CMD-2026/.").is_ok());
        assert!(check_prefix("FCT 1").is_err());
        assert!(check_prefix(&"A".repeat(21)).is_err());
    }
}
