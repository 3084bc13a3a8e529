//! The tasks service's failures and their one mapping to `tonic::Status`.

use crm_platform::error::{self, FieldViolations};
use tonic::Status;

/// Everything a tasks call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum TasksError {
    /// Bad input: every bad field with its reason.
    #[error("invalid request")]
    Invalid(FieldViolations),
    /// A record does not exist (or the caller may not see it).
    #[error("{kind} {id} not found")]
    NotFound {
        /// What was looked for ("task").
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
    /// A refusal already in gRPC terms (a bad page token, a sibling's answer).
    #[error("{0}")]
    Refused(Status),
}

/// Results of this service.
pub type Result<T, E = TasksError> = std::result::Result<T, E>;

impl TasksError {
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

impl From<Status> for TasksError {
    fn from(status: Status) -> Self {
        Self::Refused(status)
    }
}

impl From<FieldViolations> for TasksError {
    fn from(violations: FieldViolations) -> Self {
        Self::Invalid(violations)
    }
}

impl From<crate::domain::task::StateError> for TasksError {
    fn from(err: crate::domain::task::StateError) -> Self {
        Self::FailedPrecondition(err.0)
    }
}

impl From<TasksError> for Status {
    fn from(err: TasksError) -> Self {
        match err {
            TasksError::Invalid(violations) => violations.into_status(),
            TasksError::NotFound { kind, id } => error::not_found(kind, id),
            TasksError::StaleEtag(kind) => error::stale_etag(kind),
            TasksError::FailedPrecondition(reason) => Status::failed_precondition(reason),
            TasksError::AlreadyExists(reason) => Status::already_exists(reason),
            TasksError::Unavailable(reason) => Status::unavailable(reason),
            TasksError::Database(err) => error::from_sqlx(&err),
            TasksError::Events(err) => error::internal(&err),
            TasksError::Blob(err) => error::internal(&err),
            TasksError::Refused(status) => status,
        }
    }
}
