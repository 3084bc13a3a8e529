//! Request values every service parses the same way: trimmed text with a length limit, ids,
//! currency codes, calendar dates, instants, etags, email addresses and phone numbers. Each parser refuses bad input with a
//! reason in words; the caller adds the field's name (see [`crate::error::FieldViolations`]).

use std::fmt;

use chrono::{DateTime, Datelike as _, NaiveDate, Utc};
use crm_proto::common;
use prost_types::Timestamp;
use uuid::Uuid;

/// The company's default currency, used when a request leaves a currency empty.
pub const DEFAULT_CURRENCY: &str = "RON";

/// Trimmed text of at most `max` characters; `required` refuses empty text.
pub fn text(raw: &str, max: usize, required: bool) -> Result<String, String> {
    let trimmed = raw.trim();
    if required && trimmed.is_empty() {
        return Err("is required".into());
    }
    if trimmed.chars().count() > max {
        return Err(format!("must be at most {max} characters"));
    }
    Ok(trimmed.to_owned())
}

/// A UUID given as text.
pub fn uuid(raw: &str) -> Result<Uuid, String> {
    Uuid::parse_str(raw.trim()).map_err(|_| format!("{raw:?} is not a valid id (a UUID)"))
}

/// A UUID given as text, or none when empty.
pub fn optional_uuid(raw: &str) -> Result<Option<Uuid>, String> {
    if raw.trim().is_empty() {
        Ok(None)
    } else {
        uuid(raw).map(Some)
    }
}

/// An ISO 4217 alphabetic code; empty means [`DEFAULT_CURRENCY`].
pub fn currency_code(raw: &str) -> Result<String, String> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(DEFAULT_CURRENCY.to_owned());
    }
    if raw.len() == 3 && raw.chars().all(|c| c.is_ascii_uppercase()) {
        Ok(raw.to_owned())
    } else {
        Err(format!(
            "{raw:?} is not an ISO 4217 currency code (three upper-case letters)"
        ))
    }
}

/// A calendar date; `None` when the message is unset.
pub fn date(raw: Option<&common::Date>) -> Result<Option<NaiveDate>, String> {
    let Some(d) = raw else { return Ok(None) };
    let (Ok(month), Ok(day)) = (u32::try_from(d.month), u32::try_from(d.day)) else {
        return Err(format!("{}-{}-{} is not a date", d.year, d.month, d.day));
    };
    if !(1..=9999).contains(&d.year) {
        return Err(format!("year {} is outside 1..9999", d.year));
    }
    NaiveDate::from_ymd_opt(d.year, month, day)
        .map(Some)
        .ok_or_else(|| format!("{}-{:02}-{:02} is not a date", d.year, d.month, d.day))
}

/// A date as the proto message.
pub fn date_to_proto(date: NaiveDate) -> common::Date {
    common::Date {
        year: date.year(),
        month: i32::try_from(date.month()).unwrap_or_default(),
        day: i32::try_from(date.day()).unwrap_or_default(),
    }
}

/// An instant as the proto timestamp.
pub fn timestamp(at: DateTime<Utc>) -> Timestamp {
    Timestamp {
        seconds: at.timestamp(),
        nanos: i32::try_from(at.timestamp_subsec_nanos()).unwrap_or_default(),
    }
}

/// A proto timestamp as an instant; `None` when unset.
pub fn instant(raw: Option<&Timestamp>) -> Result<Option<DateTime<Utc>>, String> {
    let Some(t) = raw else { return Ok(None) };
    let nanos = u32::try_from(t.nanos).map_err(|_| "has negative nanos".to_owned())?;
    DateTime::from_timestamp(t.seconds, nanos)
        .map(Some)
        .ok_or_else(|| "is not a valid instant".to_owned())
}

/// The etag of a record at `version`: a weak entity tag, cheap to compare and enough to detect
/// any concurrent change.
pub fn etag_of(version: i64) -> String {
    format!("W/\"{version}\"")
}

/// The version an etag made by [`etag_of`] stands for.
pub fn version_of(etag: &str) -> Option<i64> {
    etag.strip_prefix("W/\"")?.strip_suffix('"')?.parse().ok()
}

/// An email address: an RFC 5322 addr-spec of the common form `local@domain.tld`, as typed (case
/// kept), compared case-insensitively.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    /// Parses a trimmed address.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        let invalid = || format!("{raw:?} is not a valid email address");
        if raw.len() > 254 {
            return Err("is longer than 254 characters".into());
        }
        let (local, domain) = raw.rsplit_once('@').ok_or_else(invalid)?;
        let local_ok = !local.is_empty()
            && local.len() <= 64
            && !local.starts_with('.')
            && !local.ends_with('.')
            && !local.contains("..")
            && local
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+/=?^_`{|}~.-".contains(c));
        let labels: Vec<&str> = domain.split('.').collect();
        let domain_ok = labels.len() >= 2
            && labels.iter().all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && !l.starts_with('-')
                    && !l.ends_with('-')
                    && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            })
            && labels
                .last()
                .is_some_and(|tld| tld.len() >= 2 && tld.chars().all(|c| c.is_ascii_alphabetic()));
        if local_ok && domain_ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(invalid())
        }
    }

    /// The address as typed.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A phone number: digits, spaces and `+ - ( ) .`, at most 30 characters, at least 3 digits.
pub fn phone(raw: &str) -> Result<String, String> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(String::new());
    }
    let ok = raw.len() <= 30
        && raw
            .chars()
            .all(|c| c.is_ascii_digit() || " +-().".contains(c))
        && raw.chars().filter(char::is_ascii_digit).count() >= 3;
    if ok {
        Ok(raw.to_owned())
    } else {
        Err(format!(
            "{raw:?} is not a phone number (digits, spaces and + - ( ) . only)"
        ))
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_checked_and_round_trip() {
        let d = common::Date {
            year: 2024,
            month: 2,
            day: 29,
        };
        let parsed = date(Some(&d)).unwrap().unwrap();
        assert_eq!(date_to_proto(parsed), d);
        for bad in [(2023, 2, 29), (2024, 13, 1), (0, 1, 1), (2024, -1, 1)] {
            let d = common::Date {
                year: bad.0,
                month: bad.1,
                day: bad.2,
            };
            assert!(date(Some(&d)).is_err(), "{bad:?}");
        }
        assert_eq!(date(None).unwrap(), None);
    }

    #[test]
    fn etags_round_trip() {
        assert_eq!(version_of(&etag_of(42)), Some(42));
        assert_eq!(version_of("42"), None);
    }

    #[test]
    fn text_is_trimmed_and_bounded() {
        assert_eq!(text("  a ", 3, true).unwrap(), "a");
        assert!(text("   ", 3, true).is_err());
        assert!(text("abcd", 3, false).is_err());
        assert_eq!(currency_code("").unwrap(), "RON");
        assert!(currency_code("ron").is_err());
    }
}
