//! The marketing service's failures and their one mapping to `tonic::Status`.

use crm_platform::error::{self, FieldViolations};
use tonic::Status;
use uuid::Uuid;

/// Everything a marketing call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum MarketingError {
    /// Bad input: every bad field with its reason.
    #[error("invalid request")]
    Invalid(FieldViolations),
    /// The partner does not exist.
    #[error("partner {0} not found")]
    PartnerNotFound(Uuid),
    /// The etag is stale: someone changed the partner since it was read.
    #[error("stale etag")]
    StaleEtag,
    /// The call does not fit the partner's current state.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The database failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// The outbox failed.
    #[error("events: {0}")]
    Events(#[from] crm_platform::events::EventError),
}

impl From<FieldViolations> for MarketingError {
    fn from(violations: FieldViolations) -> Self {
        Self::Invalid(violations)
    }
}

impl From<MarketingError> for Status {
    fn from(err: MarketingError) -> Self {
        match err {
            MarketingError::Invalid(violations) => violations.into_status(),
            MarketingError::PartnerNotFound(id) => error::not_found("partner", id),
            MarketingError::StaleEtag => error::stale_etag("partner"),
            MarketingError::FailedPrecondition(reason) => Status::failed_precondition(reason),
            MarketingError::Database(err) => error::from_sqlx(&err),
            MarketingError::Events(err) => error::internal(&err),
        }
    }
}
