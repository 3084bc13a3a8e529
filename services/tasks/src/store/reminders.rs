//! Pending reminders (T8): one row per task with a reminder to send, changed in the same
//! transaction as the task; the scheduler claims due rows and removes them as it emits their
//! notifications.

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::{PgConnection, Row as _};
use uuid::Uuid;

use crate::domain::reminders::PlannedReminder;

/// Sets (or moves) `task`'s pending reminder. The table's trigger tells the scheduler at
/// commit, so an earlier reminder wakes it.
pub async fn set(
    conn: &mut PgConnection,
    task: Uuid,
    planned: &PlannedReminder,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO reminders (task_id, due_time, email, in_app) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (task_id) DO UPDATE SET due_time = EXCLUDED.due_time, \
         email = EXCLUDED.email, in_app = EXCLUDED.in_app",
    )
    .bind(task)
    .bind(planned.due_time)
    .bind(planned.email)
    .bind(planned.in_app)
    .execute(conn)
    .await?;
    Ok(())
}

/// Sets reminders for many tasks at once (a broadcast).
pub async fn set_many(
    conn: &mut PgConnection,
    tasks: &[Uuid],
    planned: &PlannedReminder,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO reminders (task_id, due_time, email, in_app) \
         SELECT t, $2, $3, $4 FROM unnest($1::uuid[]) AS t \
         ON CONFLICT (task_id) DO UPDATE SET due_time = EXCLUDED.due_time, \
         email = EXCLUDED.email, in_app = EXCLUDED.in_app",
    )
    .bind(tasks)
    .bind(planned.due_time)
    .bind(planned.email)
    .bind(planned.in_app)
    .execute(conn)
    .await?;
    Ok(())
}

/// Removes `task`'s pending reminder, if any.
pub async fn clear(conn: &mut PgConnection, task: Uuid) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM reminders WHERE task_id = $1")
        .bind(task)
        .execute(conn)
        .await?;
    Ok(())
}

/// A reminder claimed for sending, with what its notification says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DueReminder {
    /// The task.
    pub task_id: Uuid,
    /// Its title.
    pub title: String,
    /// Its deadline.
    pub deadline_date: NaiveDate,
    /// Its partner.
    pub partner_id: Option<Uuid>,
    /// When the reminder was due.
    pub due_time: DateTime<Utc>,
    /// By email.
    pub email: bool,
    /// In the app.
    pub in_app: bool,
    /// The responsible.
    pub staff_id: Uuid,
    /// Their name.
    pub staff_name: String,
    /// Their email; empty when none.
    pub staff_email: String,
    /// Their user name; `None` when not a user.
    pub staff_user: Option<String>,
}

/// Claims up to `limit` reminders due at `now` (rows other replicas hold are skipped), removes
/// them and records the send time on their tasks, in `tx`: the caller emits their
/// notifications in the same transaction, so a crash before commit leaves them due.
pub async fn claim_due(
    tx: &mut PgConnection,
    now: DateTime<Utc>,
    limit: i64,
) -> sqlx::Result<Vec<DueReminder>> {
    let rows = sqlx::query(
        "WITH due AS ( \
           SELECT task_id FROM reminders WHERE due_time <= $1 \
           ORDER BY due_time LIMIT $2 FOR UPDATE SKIP LOCKED), \
         gone AS ( \
           DELETE FROM reminders r USING due WHERE r.task_id = due.task_id \
           RETURNING r.task_id, r.due_time, r.email, r.in_app) \
         UPDATE tasks t SET reminder_sent_time = $1 FROM gone, staff s \
         WHERE t.id = gone.task_id AND s.id = t.responsible_staff_id \
         RETURNING t.id, t.title, t.deadline_date, t.partner_id, gone.due_time, gone.email, \
           gone.in_app, s.id AS staff_id, s.name AS staff_name, s.email AS staff_email, \
           s.user_name AS staff_user",
    )
    .bind(now)
    .bind(limit)
    .fetch_all(tx)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(DueReminder {
                task_id: row.try_get("id")?,
                title: row.try_get("title")?,
                deadline_date: row.try_get("deadline_date")?,
                partner_id: row.try_get("partner_id")?,
                due_time: row.try_get("due_time")?,
                email: row.try_get("email")?,
                in_app: row.try_get("in_app")?,
                staff_id: row.try_get("staff_id")?,
                staff_name: row.try_get("staff_name")?,
                staff_email: row.try_get("staff_email")?,
                staff_user: row.try_get("staff_user")?,
            })
        })
        .collect()
}

/// When the next pending reminder is due, if any.
pub async fn next_due(conn: &mut PgConnection) -> sqlx::Result<Option<DateTime<Utc>>> {
    sqlx::query_scalar("SELECT min(due_time) FROM reminders")
        .fetch_one(conn)
        .await
}
