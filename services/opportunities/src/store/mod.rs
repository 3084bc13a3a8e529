//! SQL for the opportunities schema, one module per family of tables. Every statement is a
//! literal with bound parameters (dynamic list filters use `QueryBuilder` with binds); the
//! pool's `search_path` is the service's own schema.

pub mod articles;
pub mod catalogues;
pub mod contracts;
pub mod documents;
pub mod invoices;
pub mod lost_reasons;
pub mod offers;
pub mod opportunities;
pub mod orders;
pub mod payments;
pub mod renderings;
pub mod series;

use chrono::{DateTime, Utc};
use uuid::Uuid;

pub use crm_platform::db::claim_request;

/// A stored value that no longer parses means the database was changed behind the service.
pub(crate) fn decode_error(column: &str, value: impl std::fmt::Debug) -> sqlx::Error {
    sqlx::Error::Decode(format!("unexpected {column} {value:?}").into())
}

/// The key of a page: the position after the last row of the previous page in a
/// newest-first list.
pub type NewestFirstCursor = (DateTime<Utc>, Uuid);
