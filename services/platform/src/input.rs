//! Reading a request's fields: each parser records what is wrong under the field's name and
//! returns `None`, so one answer names every bad field (INVALID_ARGUMENT with a `BadRequest`).

use chrono::NaiveDate;
use crm_proto::common;
use uuid::Uuid;

use crate::{error::FieldViolations, values};

/// The fields of one request being read, and what was wrong with them.
#[derive(Debug, Default)]
pub struct Fields(pub FieldViolations);

impl Fields {
    /// Nothing read yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// A required id.
    pub fn id(&mut self, field: &str, raw: &str) -> Option<Uuid> {
        if raw.trim().is_empty() {
            self.0.add(field, "is required");
            return None;
        }
        self.0.check(field, values::uuid(raw))
    }

    /// An optional id; `Some(None)` when empty.
    pub fn optional_id(&mut self, field: &str, raw: &str) -> Option<Option<Uuid>> {
        self.0.check(field, values::optional_uuid(raw))
    }

    /// Trimmed text of at most `max` characters.
    pub fn text(&mut self, field: &str, raw: &str, max: usize, required: bool) -> Option<String> {
        self.0.check(field, values::text(raw, max, required))
    }

    /// An optional calendar date.
    pub fn date(&mut self, field: &str, raw: Option<&common::Date>) -> Option<Option<NaiveDate>> {
        self.0.check(field, values::date(raw))
    }

    /// The etag of a change: required. An etag that is not ours can never match, so it reads
    /// as a version that is always stale (ABORTED), not as malformed input.
    pub fn etag(&mut self, raw: &str) -> Option<i64> {
        if raw.is_empty() {
            self.0
                .add("etag", "is required: pass the etag read with the record");
            return None;
        }
        Some(values::version_of(raw).unwrap_or(-1))
    }

    /// The paths of an update mask, each checked against the allow-list `allowed` (X5: ids,
    /// owners and audit fields are never on it).
    pub fn mask(&mut self, mask: Option<&prost_types::FieldMask>, allowed: &[&str]) -> Vec<String> {
        let paths = mask.map(|m| m.paths.clone()).unwrap_or_default();
        if paths.is_empty() {
            self.0
                .add("update_mask", "is required: name the fields to change");
        }
        for path in &paths {
            if !allowed.contains(&path.as_str()) {
                self.0.add(
                    "update_mask",
                    format!(
                        "{path:?} cannot be changed (changeable: {})",
                        allowed.join(", ")
                    ),
                );
            }
        }
        paths
    }

    /// A date range; `None` ends mean unbounded.
    pub fn period(
        &mut self,
        field: &str,
        raw: Option<&common::DateRange>,
    ) -> (Option<NaiveDate>, Option<NaiveDate>) {
        let Some(range) = raw else {
            return (None, None);
        };
        let start = self
            .date(&format!("{field}.start_date"), range.start_date.as_ref())
            .flatten();
        let end = self
            .date(&format!("{field}.end_date"), range.end_date.as_ref())
            .flatten();
        if let (Some(start), Some(end)) = (start, end)
            && end < start
        {
            self.0
                .add(format!("{field}.end_date"), "must not be before start_date");
        }
        (start, end)
    }

    /// Records that `field` is wrong for `reason`.
    pub fn add(&mut self, field: impl Into<String>, reason: impl Into<String>) {
        self.0.add(field, reason);
    }

    /// Whether nothing was wrong so far.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Ok(())` when nothing was wrong, else every violation.
    pub fn finish(self) -> Result<(), FieldViolations> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(self.0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bad_field_is_named_at_once() {
        let mut f = Fields::new();
        assert_eq!(f.id("task.id", ""), None);
        assert_eq!(f.id("staff_id", "x"), None);
        assert_eq!(f.text("title", "  ", 10, true), None);
        let mask = prost_types::FieldMask {
            paths: vec!["title".into(), "id".into()],
        };
        assert_eq!(f.mask(Some(&mask), &["title"]), ["title", "id"]);
        let fields: Vec<String> = f
            .finish()
            .unwrap_err()
            .violations()
            .iter()
            .map(|v| v.field.clone())
            .collect();
        assert_eq!(fields, ["task.id", "staff_id", "title", "update_mask"]);
    }

    #[test]
    fn a_foreign_etag_is_stale_not_malformed() {
        let mut f = Fields::new();
        assert_eq!(f.etag("whatever"), Some(-1));
        assert!(f.finish().is_ok());
    }

    #[test]
    fn a_period_ending_before_it_starts_is_refused() {
        let mut f = Fields::new();
        let range = common::DateRange {
            start_date: Some(common::Date {
                year: 2026,
                month: 12,
                day: 2,
            }),
            end_date: Some(common::Date {
                year: 2026,
                month: 12,
                day: 1,
            }),
        };
        f.period("period", Some(&range));
        assert_eq!(
            f.finish().unwrap_err().violations()[0].field,
            "period.end_date"
        );
    }
}
