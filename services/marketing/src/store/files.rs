//! Uploads of the file service.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, Row as _};
use uuid::Uuid;

/// An upload as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upload {
    /// Its id (the attachment id it returned).
    pub id: Uuid,
    /// SHA-256 of the bytes.
    pub blob_key: String,
    /// File name.
    pub file_name: String,
    /// Sniffed media type.
    pub content_type: String,
    /// Size in bytes.
    pub size_bytes: i64,
    /// Who uploaded it.
    pub uploader: String,
    /// When.
    pub create_time: DateTime<Utc>,
    /// Whether it brought the bytes into the store.
    pub blob_was_new: bool,
}

/// Records an upload.
pub async fn insert_upload(conn: &mut PgConnection, u: &Upload) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO uploads (id, blob_key, file_name, content_type, size_bytes, uploader, \
         create_time, blob_was_new) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(u.id)
    .bind(&u.blob_key)
    .bind(&u.file_name)
    .bind(&u.content_type)
    .bind(u.size_bytes)
    .bind(&u.uploader)
    .bind(u.create_time)
    .bind(u.blob_was_new)
    .execute(conn)
    .await?;
    Ok(())
}

/// Marks the uploads of `blob_keys` claimed by a record at `at`.
pub async fn claim_uploads(
    conn: &mut PgConnection,
    blob_keys: &[String],
    at: DateTime<Utc>,
) -> sqlx::Result<u64> {
    Ok(sqlx::query(
        "UPDATE uploads SET claim_time = $2 WHERE blob_key = ANY($1) AND claim_time IS NULL",
    )
    .bind(blob_keys)
    .bind(at)
    .execute(conn)
    .await?
    .rows_affected())
}

/// Removes up to `limit` uploads unclaimed since before `before`; returns how many it removed
/// and the blob keys whose bytes may go with them: those the removed uploads brought into the
/// store and that no remaining upload (claimed, or still within its day) uses. (The statement
/// sees the table as before its own DELETE, hence the removed ids are left out explicitly.)
pub async fn collect_unclaimed(
    conn: &mut PgConnection,
    before: DateTime<Utc>,
    limit: i64,
) -> sqlx::Result<(i64, Vec<String>)> {
    let row = sqlx::query(
        "WITH gone AS ( \
           DELETE FROM uploads WHERE id IN ( \
             SELECT id FROM uploads WHERE claim_time IS NULL AND create_time < $1 \
             ORDER BY create_time LIMIT $2 FOR UPDATE SKIP LOCKED) \
           RETURNING id, blob_key, blob_was_new) \
         SELECT (SELECT count(*) FROM gone) AS removed, \
           ARRAY(SELECT DISTINCT g.blob_key FROM gone g WHERE g.blob_was_new \
             AND NOT EXISTS (SELECT 1 FROM uploads u WHERE u.blob_key = g.blob_key \
                             AND u.id NOT IN (SELECT id FROM gone))) AS keys",
    )
    .bind(before)
    .bind(limit)
    .fetch_one(conn)
    .await?;
    Ok((row.try_get("removed")?, row.try_get("keys")?))
}
