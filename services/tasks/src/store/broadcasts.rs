//! Broadcasts (T5).

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, Row as _, postgres::PgRow, types::Json};
use uuid::Uuid;

use crate::domain::{
    reminders::ReminderChoice,
    task::{Broadcast, Origin},
};

const COLUMNS: &str = "b.id, b.title, b.description, b.staff_ids, b.category_ids, b.partner_id, \
     b.deadline_date, b.reminder, b.origin_kind, b.origin_id, b.origin_number, b.creator, \
     b.create_time, ARRAY(SELECT t.id FROM tasks t WHERE t.broadcast_id = b.id ORDER BY t.id) \
     AS task_ids";

fn of(row: &PgRow) -> sqlx::Result<Broadcast> {
    let reminder: Option<Json<ReminderChoice>> = row.try_get("reminder")?;
    let origin_kind: Option<i32> = row.try_get("origin_kind")?;
    let origin_id: Option<Uuid> = row.try_get("origin_id")?;
    Ok(Broadcast {
        id: row.try_get("id")?,
        title: row.try_get("title")?,
        description: row.try_get("description")?,
        staff_ids: row.try_get("staff_ids")?,
        category_ids: row.try_get("category_ids")?,
        partner_id: row.try_get("partner_id")?,
        deadline_date: row.try_get("deadline_date")?,
        reminder: reminder.map(|Json(r)| r),
        origin: match (origin_kind, origin_id) {
            (Some(kind), Some(id)) => Some(Origin {
                kind,
                id,
                number: row.try_get("origin_number")?,
            }),
            _ => None,
        },
        task_ids: row.try_get("task_ids")?,
        creator: row.try_get("creator")?,
        create_time: row.try_get("create_time")?,
    })
}

/// Inserts a broadcast (before its tasks, which reference it).
pub async fn insert(conn: &mut PgConnection, b: &Broadcast) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO broadcasts (id, title, description, staff_ids, category_ids, partner_id, \
         deadline_date, reminder, origin_kind, origin_id, origin_number, creator, create_time) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
    )
    .bind(b.id)
    .bind(&b.title)
    .bind(&b.description)
    .bind(&b.staff_ids)
    .bind(&b.category_ids)
    .bind(b.partner_id)
    .bind(b.deadline_date)
    .bind(b.reminder.map(Json))
    .bind(b.origin.as_ref().map(|o| o.kind))
    .bind(b.origin.as_ref().map(|o| o.id))
    .bind(b.origin.as_ref().map_or("", |o| o.number.as_str()))
    .bind(&b.creator)
    .bind(b.create_time)
    .execute(conn)
    .await?;
    Ok(())
}

/// One broadcast with its tasks.
pub async fn get(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<Broadcast>> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM broadcasts b WHERE b.id = $1"
    )))
    .bind(id)
    .fetch_optional(conn)
    .await?
    .map(|row| of(&row))
    .transpose()
}

/// The key of a page: time and id of the last broadcast of the previous page.
pub type Cursor = (DateTime<Utc>, Uuid);

/// A page of broadcasts, newest first, launched by `creator` (all when `None`) within
/// [from, to), before `after`.
pub async fn list(
    conn: &mut PgConnection,
    creator: Option<&str>,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    after: Option<&Cursor>,
    limit: i64,
) -> sqlx::Result<Vec<Broadcast>> {
    let (time, id) = after.copied().unzip();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM broadcasts b \
         WHERE ($1::text IS NULL OR b.creator = $1) \
         AND ($2::timestamptz IS NULL OR b.create_time >= $2) \
         AND ($3::timestamptz IS NULL OR b.create_time < $3) \
         AND ($4::timestamptz IS NULL OR (b.create_time, b.id) < ($4, $5)) \
         ORDER BY b.create_time DESC, b.id DESC LIMIT $6"
    )))
    .bind(creator)
    .bind(from)
    .bind(to)
    .bind(time)
    .bind(id)
    .bind(limit)
    .fetch_all(conn)
    .await?
    .iter()
    .map(of)
    .collect()
}
