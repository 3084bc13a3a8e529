//! Renderings of documents (O6, N2), and the outcome of task billing commands (T9).

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, Row as _};
use uuid::Uuid;

use crate::domain::catalogue::Attachment;

/// A document version rendered in a format, as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rendering {
    /// The file.
    pub file: Attachment,
    /// When it was first rendered.
    pub render_time: DateTime<Utc>,
}

/// The rendering of version `version` of `document_id` in `format`.
pub async fn get(
    conn: &mut PgConnection,
    document_id: Uuid,
    version: i64,
    format: &str,
) -> sqlx::Result<Option<Rendering>> {
    let row = sqlx::query(
        "SELECT blob_key, file_name, content_type, size_bytes, render_time FROM renderings \
         WHERE document_id = $1 AND version = $2 AND format = $3",
    )
    .bind(document_id)
    .bind(version)
    .bind(format)
    .fetch_optional(conn)
    .await?;
    row.map(|row| {
        Ok(Rendering {
            file: Attachment {
                id: document_id,
                blob_key: row.try_get("blob_key")?,
                file_name: row.try_get("file_name")?,
                content_type: row.try_get("content_type")?,
                size_bytes: row.try_get("size_bytes")?,
            },
            render_time: row.try_get("render_time")?,
        })
    })
    .transpose()
}

/// Records a rendering; when a concurrent call recorded one first, keeps that one (same
/// content, same key) and returns it.
pub async fn put(
    conn: &mut PgConnection,
    document_id: Uuid,
    version: i64,
    format: &str,
    rendering: &Rendering,
) -> sqlx::Result<Rendering> {
    sqlx::query(
        "INSERT INTO renderings (document_id, version, format, blob_key, file_name, \
         content_type, size_bytes, render_time) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
         ON CONFLICT DO NOTHING",
    )
    .bind(document_id)
    .bind(version)
    .bind(format)
    .bind(&rendering.file.blob_key)
    .bind(&rendering.file.file_name)
    .bind(&rendering.file.content_type)
    .bind(rendering.file.size_bytes)
    .bind(rendering.render_time)
    .execute(&mut *conn)
    .await?;
    Ok(get(conn, document_id, version, format)
        .await?
        .unwrap_or_else(|| rendering.clone()))
}

/// What a task billing attempt ended with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BillingOutcome {
    /// Estimate and invoice issued.
    Invoiced {
        /// The estimate.
        offer_id: Uuid,
        /// The invoice.
        invoice_id: Uuid,
    },
    /// Refused, with the reason.
    Rejected(String),
}

/// Records the outcome of billing attempt `attempt` of `task_id`; false when it was recorded
/// already (a command delivered twice under another envelope id).
pub async fn record_billing(
    conn: &mut PgConnection,
    task_id: Uuid,
    attempt: i32,
    command_id: Uuid,
    outcome: &BillingOutcome,
    at: DateTime<Utc>,
) -> sqlx::Result<bool> {
    let (kind, offer_id, invoice_id, reason) = match outcome {
        BillingOutcome::Invoiced {
            offer_id,
            invoice_id,
        } => ("invoiced", Some(*offer_id), Some(*invoice_id), ""),
        BillingOutcome::Rejected(reason) => ("rejected", None, None, reason.as_str()),
    };
    let inserted = sqlx::query(
        "INSERT INTO task_billings (task_id, billing_attempt, command_id, outcome, offer_id, \
         invoice_id, reason, create_time) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
         ON CONFLICT DO NOTHING",
    )
    .bind(task_id)
    .bind(attempt)
    .bind(command_id)
    .bind(kind)
    .bind(offer_id)
    .bind(invoice_id)
    .bind(reason)
    .bind(at)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

/// Whether billing attempt `attempt` of `task_id` was handled already.
pub async fn billing_done(
    conn: &mut PgConnection,
    task_id: Uuid,
    attempt: i32,
) -> sqlx::Result<bool> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM task_billings WHERE task_id = $1 AND billing_attempt = $2)",
    )
    .bind(task_id)
    .bind(attempt)
    .fetch_one(conn)
    .await
}
