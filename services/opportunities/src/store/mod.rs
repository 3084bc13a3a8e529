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
use sqlx::PgConnection;
use uuid::Uuid;

/// Records that `creator` used `request_id` to create a `kind` record with `resource_id`, or
/// returns the record created the first time. A concurrent twin waits on the primary key until
/// the first transaction ends.
pub async fn claim_request(
    conn: &mut PgConnection,
    kind: &str,
    creator: &str,
    request_id: &str,
    resource_id: Uuid,
    at: DateTime<Utc>,
) -> sqlx::Result<Option<Uuid>> {
    let inserted = sqlx::query(
        "INSERT INTO create_requests (kind, creator, request_id, resource_id, create_time) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (kind, creator, request_id) DO NOTHING",
    )
    .bind(kind)
    .bind(creator)
    .bind(request_id)
    .bind(resource_id)
    .bind(at)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if inserted == 1 {
        return Ok(None);
    }
    sqlx::query_scalar(
        "SELECT resource_id FROM create_requests \
         WHERE kind = $1 AND creator = $2 AND request_id = $3",
    )
    .bind(kind)
    .bind(creator)
    .bind(request_id)
    .fetch_one(&mut *conn)
    .await
    .map(Some)
}

/// A stored value that no longer parses means the database was changed behind the service.
pub(crate) fn decode_error(column: &str, value: impl std::fmt::Debug) -> sqlx::Error {
    sqlx::Error::Decode(format!("unexpected {column} {value:?}").into())
}

/// The key of a page: the position after the last row of the previous page in a
/// newest-first list.
pub type NewestFirstCursor = (DateTime<Utc>, Uuid);
