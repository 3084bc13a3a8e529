//! Turning failures into `tonic::Status`, the one way every service does it (X2): bad input is
//! INVALID_ARGUMENT with a `BadRequest` field violation per bad field; internal causes are logged
//! with their chain and never sent to the caller.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt as _};

/// One field that was refused, with the reason in words a frontend developer can show.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldViolation {
    /// Path of the field in the request, e.g. `partner.sites[1].email`.
    pub field: String,
    /// What is wrong, e.g. `is not a valid email address`.
    pub description: String,
}

/// Collects every bad field of a request, so the caller learns all of them at once.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldViolations(Vec<FieldViolation>);

impl FieldViolations {
    /// No violations yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that `field` is wrong.
    pub fn add(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.0.push(FieldViolation {
            field: field.into(),
            description: description.into(),
        });
    }

    /// Keeps the value of `result`, or records its error against `field`.
    pub fn check<T, E: std::fmt::Display>(
        &mut self,
        field: impl Into<String>,
        result: Result<T, E>,
    ) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(err) => {
                self.add(field, err.to_string());
                None
            }
        }
    }

    /// Whether nothing was refused.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The violations recorded.
    pub fn violations(&self) -> &[FieldViolation] {
        &self.0
    }

    /// `Ok(())` when empty, else the violations themselves.
    pub fn into_violations_result(self) -> Result<(), FieldViolations> {
        if self.is_empty() { Ok(()) } else { Err(self) }
    }

    /// `Ok(())` when empty, else the INVALID_ARGUMENT status listing every violation.
    pub fn into_result(self) -> Result<(), Status> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(self.into_status())
        }
    }

    /// The INVALID_ARGUMENT status listing every violation.
    pub fn into_status(self) -> Status {
        let message = self
            .0
            .iter()
            .map(|v| format!("{}: {}", v.field, v.description))
            .collect::<Vec<_>>()
            .join("; ");
        let mut details = ErrorDetails::new();
        for v in self.0 {
            details.add_bad_request_violation(v.field, v.description);
        }
        Status::with_error_details(Code::InvalidArgument, message, details)
    }
}

impl From<FieldViolations> for Status {
    fn from(violations: FieldViolations) -> Self {
        violations.into_status()
    }
}

/// INVALID_ARGUMENT for one bad field.
pub fn invalid_field(field: impl Into<String>, description: impl Into<String>) -> Status {
    let mut violations = FieldViolations::new();
    violations.add(field, description);
    violations.into_status()
}

/// NOT_FOUND for a missing `kind` (e.g. "partner") with `id`.
pub fn not_found(kind: &str, id: impl std::fmt::Display) -> Status {
    Status::not_found(format!("{kind} {id} not found"))
}

/// ABORTED for a stale etag.
pub fn stale_etag(kind: &str) -> Status {
    Status::aborted(format!(
        "the {kind} was changed by someone else since it was read (stale etag): read it again"
    ))
}

/// INTERNAL for a failure that is not the caller's fault: the chain is logged, the caller gets
/// a generic message with nothing internal in it.
pub fn internal(err: &(dyn std::error::Error + 'static)) -> Status {
    let mut chain = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        chain.push_str(": ");
        chain.push_str(&cause.to_string());
        source = cause.source();
    }
    tracing::error!(error = %chain, "internal error");
    Status::internal("internal error")
}

/// UNAVAILABLE when a dependency (database, Redis, a sibling) cannot be reached; the cause is
/// logged.
pub fn unavailable(dependency: &str, err: &(dyn std::error::Error + 'static)) -> Status {
    tracing::warn!(dependency, error = %err, "dependency unavailable");
    Status::unavailable(format!("{dependency} is unavailable, try again"))
}

/// Maps a database error: connection trouble is UNAVAILABLE, the rest INTERNAL.
pub fn from_sqlx(err: &sqlx::Error) -> Status {
    match err {
        sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => {
            unavailable("database", err)
        }
        other => internal(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_violation_is_reported_with_its_field() {
        let mut v = FieldViolations::new();
        v.add("partner.name", "is required");
        v.add("partner.sites[0].email", "is not a valid email address");
        let status = v.into_result().unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        let details = status.get_details_bad_request().unwrap();
        let fields: Vec<_> = details
            .field_violations
            .iter()
            .map(|f| f.field.as_str())
            .collect();
        assert_eq!(fields, ["partner.name", "partner.sites[0].email"]);
        assert!(status.message().contains("partner.name: is required"));
    }
}
