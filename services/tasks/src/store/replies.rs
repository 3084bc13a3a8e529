//! Replies in tasks' threads (T4).

use chrono::{DateTime, Utc};
use crm_platform::files::Attachment;
use sqlx::{PgConnection, Row as _, postgres::PgRow, types::Json};
use uuid::Uuid;

use crate::domain::task::Reply;

const COLUMNS: &str = "r.id, r.task_id, t.title AS task_title, r.text, r.attachments, r.author, \
     r.author_staff_id, r.create_time";

fn of(row: &PgRow) -> sqlx::Result<Reply> {
    let Json(attachments): Json<Vec<Attachment>> = row.try_get("attachments")?;
    Ok(Reply {
        id: row.try_get("id")?,
        task_id: row.try_get("task_id")?,
        task_title: row.try_get("task_title")?,
        text: row.try_get("text")?,
        attachments,
        author: row.try_get("author")?,
        author_staff_id: row.try_get("author_staff_id")?,
        create_time: row.try_get("create_time")?,
    })
}

/// Inserts a reply.
pub async fn insert(conn: &mut PgConnection, r: &Reply) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO task_replies (id, task_id, text, attachments, author, author_staff_id, \
         create_time) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(r.id)
    .bind(r.task_id)
    .bind(&r.text)
    .bind(Json(&r.attachments))
    .bind(&r.author)
    .bind(r.author_staff_id)
    .bind(r.create_time)
    .execute(conn)
    .await?;
    Ok(())
}

/// One reply.
pub async fn get(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<Reply>> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM task_replies r JOIN tasks t ON t.id = r.task_id WHERE r.id = $1"
    )))
    .bind(id)
    .fetch_optional(conn)
    .await?
    .map(|row| of(&row))
    .transpose()
}

/// The key of a page of replies: the time and id of the last reply of the previous page.
pub type Cursor = (DateTime<Utc>, Uuid);

/// A page of one task's replies, oldest first, after `after`.
pub async fn of_task(
    conn: &mut PgConnection,
    task_id: Uuid,
    after: Option<&Cursor>,
    limit: i64,
) -> sqlx::Result<Vec<Reply>> {
    let (time, id) = after.copied().unzip();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM task_replies r JOIN tasks t ON t.id = r.task_id \
         WHERE r.task_id = $1 AND ($2::timestamptz IS NULL OR (r.create_time, r.id) > ($2, $3)) \
         ORDER BY r.create_time, r.id LIMIT $4"
    )))
    .bind(task_id)
    .bind(time)
    .bind(id)
    .bind(limit)
    .fetch_all(conn)
    .await?
    .iter()
    .map(of)
    .collect()
}

/// A page of the replies to the tasks `creator` created, newest first, before `after`,
/// written within [from, to), the creator's own left out when `exclude_own`.
pub async fn to_tasks_of(
    conn: &mut PgConnection,
    creator: &str,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    exclude_own: bool,
    after: Option<&Cursor>,
    limit: i64,
) -> sqlx::Result<Vec<Reply>> {
    let (time, id) = after.copied().unzip();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM task_replies r JOIN tasks t ON t.id = r.task_id \
         WHERE t.creator = $1 AND ($2::timestamptz IS NULL OR r.create_time >= $2) \
         AND ($3::timestamptz IS NULL OR r.create_time < $3) AND (NOT $4 OR r.author <> $1) \
         AND ($5::timestamptz IS NULL OR (r.create_time, r.id) < ($5, $6)) \
         ORDER BY r.create_time DESC, r.id DESC LIMIT $7"
    )))
    .bind(creator)
    .bind(from)
    .bind(to)
    .bind(exclude_own)
    .bind(time)
    .bind(id)
    .bind(limit)
    .fetch_all(conn)
    .await?
    .iter()
    .map(of)
    .collect()
}
