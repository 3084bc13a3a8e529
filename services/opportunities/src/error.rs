//! The opportunities service's failures and their one mapping to `tonic::Status`.

use crm_platform::error::{self, FieldViolations};
use tonic::Status;

/// Everything an opportunities call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum OpportunitiesError {
    /// Bad input: every bad field with its reason.
    #[error("invalid request")]
    Invalid(FieldViolations),
    /// A record does not exist (or the caller may not see it).
    #[error("{kind} {id} not found")]
    NotFound {
        /// What was looked for ("offer").
        kind: &'static str,
        /// Its id as given.
        id: String,
    },
    /// The etag is stale: someone changed the record since it was read.
    #[error("stale etag of {0}")]
    StaleEtag(&'static str),
    /// The call does not fit the record's current state.
    #[error("{0}")]
    FailedPrecondition(String),
    /// A record with the same unique key exists.
    #[error("{0}")]
    AlreadyExists(String),
    /// The caller's roles do not allow the call.
    #[error("{0}")]
    PermissionDenied(String),
    /// A sibling service needed for the answer is unavailable.
    #[error("{0}")]
    Unavailable(String),
    /// The database failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// The outbox failed.
    #[error("events: {0}")]
    Events(#[from] crm_platform::events::EventError),
    /// The blob store failed.
    #[error("blob store: {0}")]
    Blob(#[from] crm_platform::blob::BlobError),
    /// Rendering a document failed.
    #[error("rendering: {0}")]
    Render(String),
    /// A refusal already in gRPC terms (a bad page token or page size).
    #[error("{0}")]
    Refused(Status),
}

/// Results of this service.
pub type Result<T, E = OpportunitiesError> = std::result::Result<T, E>;

impl OpportunitiesError {
    /// NOT_FOUND for a `kind` with `id`.
    pub fn not_found(kind: &'static str, id: impl std::fmt::Display) -> Self {
        Self::NotFound {
            kind,
            id: id.to_string(),
        }
    }

    /// INVALID_ARGUMENT for one field.
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        let mut violations = FieldViolations::new();
        violations.add(field, reason);
        Self::Invalid(violations)
    }

    /// FAILED_PRECONDITION with `reason`.
    pub fn precondition(reason: impl std::fmt::Display) -> Self {
        Self::FailedPrecondition(reason.to_string())
    }
}

impl From<Status> for OpportunitiesError {
    fn from(status: Status) -> Self {
        Self::Refused(status)
    }
}

impl From<FieldViolations> for OpportunitiesError {
    fn from(violations: FieldViolations) -> Self {
        Self::Invalid(violations)
    }
}

impl From<crate::domain::documents::StateError> for OpportunitiesError {
    fn from(err: crate::domain::documents::StateError) -> Self {
        Self::FailedPrecondition(err.0)
    }
}

impl From<crate::domain::stages::StageRuleError> for OpportunitiesError {
    fn from(err: crate::domain::stages::StageRuleError) -> Self {
        Self::FailedPrecondition(err.to_string())
    }
}

impl From<OpportunitiesError> for Status {
    fn from(err: OpportunitiesError) -> Self {
        match err {
            OpportunitiesError::Invalid(violations) => violations.into_status(),
            OpportunitiesError::NotFound { kind, id } => error::not_found(kind, id),
            OpportunitiesError::StaleEtag(kind) => error::stale_etag(kind),
            OpportunitiesError::FailedPrecondition(reason) => Status::failed_precondition(reason),
            OpportunitiesError::AlreadyExists(reason) => Status::already_exists(reason),
            OpportunitiesError::PermissionDenied(reason) => Status::permission_denied(reason),
            OpportunitiesError::Unavailable(reason) => Status::unavailable(reason),
            OpportunitiesError::Database(err) => error::from_sqlx(&err),
            OpportunitiesError::Events(err) => error::internal(&err),
            OpportunitiesError::Blob(err) => error::internal(&err),
            OpportunitiesError::Render(reason) => error::internal(&std::io::Error::other(reason)),
            OpportunitiesError::Refused(status) => status,
        }
    }
}
