//! Tasks (T2, T3, T9) and the figures availability needs (T6).

use chrono::{DateTime, NaiveDate, Utc};
use crm_platform::files::Attachment;
use sqlx::{PgConnection, QueryBuilder, Row as _, postgres::PgRow, types::Json};
use uuid::Uuid;

use crate::domain::{
    availability::{BookedTask, Placement},
    reminders::ReminderChoice,
    task::{Billing, Origin, Source, Status, Task},
};

/// Every column of a task, with its pending reminder's due time.
const COLUMNS: &str = "t.id, t.title, t.description, t.partner_id, t.post_sale_service_id, \
     t.contract_id, t.deadline_date, t.responsible_staff_id, t.creator, t.creator_staff_id, \
     t.scheduled_start_time, t.expected_duration_minutes, t.status, t.billable, t.source, \
     t.source_reference, t.origin_kind, t.origin_id, t.origin_number, t.broadcast_id, \
     t.reminder_email, t.reminder_in_app, t.reminder_days_before, t.reminder_sent_time, \
     r.due_time AS reminder_due_time, t.attachments, t.start_time, t.resolve_time, \
     t.worked_minutes, t.resolution_note, t.cancel_time, t.cancel_reason, t.billing_status, t.billing_error, \
     t.billing_attempt, t.invoice_id, t.estimate_offer_id, t.drafted_contract_id, \
     t.reply_count, t.create_time, t.update_time, t.version";

const FROM: &str = "tasks t LEFT JOIN reminders r ON r.task_id = t.id";

fn non_negative(row: &PgRow, column: &str) -> sqlx::Result<u32> {
    let value: i32 = row.try_get(column)?;
    u32::try_from(value).map_err(|_| super::decode_error(column, value))
}

fn task_of(row: &PgRow) -> sqlx::Result<Task> {
    let status: String = row.try_get("status")?;
    let source: String = row.try_get("source")?;
    let billing: String = row.try_get("billing_status")?;
    let origin_kind: Option<i32> = row.try_get("origin_kind")?;
    let origin_id: Option<Uuid> = row.try_get("origin_id")?;
    let days_before: Option<i32> = row.try_get("reminder_days_before")?;
    let Json(attachments): Json<Vec<Attachment>> = row.try_get("attachments")?;
    Ok(Task {
        id: row.try_get("id")?,
        title: row.try_get("title")?,
        description: row.try_get("description")?,
        partner_id: row.try_get("partner_id")?,
        post_sale_service_id: row.try_get("post_sale_service_id")?,
        contract_id: row.try_get("contract_id")?,
        deadline_date: row.try_get("deadline_date")?,
        responsible_staff_id: row.try_get("responsible_staff_id")?,
        creator: row.try_get("creator")?,
        creator_staff_id: row.try_get("creator_staff_id")?,
        scheduled_start_time: row.try_get("scheduled_start_time")?,
        expected_duration_minutes: non_negative(row, "expected_duration_minutes")?,
        status: Status::from_db(&status).ok_or_else(|| super::decode_error("status", &status))?,
        billable: row.try_get("billable")?,
        source: Source::from_db(&source).ok_or_else(|| super::decode_error("source", &source))?,
        source_reference: row.try_get("source_reference")?,
        origin: match (origin_kind, origin_id) {
            (Some(kind), Some(id)) => Some(Origin {
                kind,
                id,
                number: row.try_get("origin_number")?,
            }),
            _ => None,
        },
        broadcast_id: row.try_get("broadcast_id")?,
        reminder: ReminderChoice {
            email: row.try_get("reminder_email")?,
            in_app: row.try_get("reminder_in_app")?,
            days_before: days_before.and_then(|d| u32::try_from(d).ok()),
        },
        reminder_due_time: row.try_get("reminder_due_time")?,
        reminder_sent_time: row.try_get("reminder_sent_time")?,
        attachments,
        start_time: row.try_get("start_time")?,
        resolve_time: row.try_get("resolve_time")?,
        worked_minutes: non_negative(row, "worked_minutes")?,
        resolution_note: row.try_get("resolution_note")?,
        cancel_time: row.try_get("cancel_time")?,
        cancel_reason: row.try_get("cancel_reason")?,
        billing: Billing::from_db(&billing)
            .ok_or_else(|| super::decode_error("billing_status", &billing))?,
        billing_error: row.try_get("billing_error")?,
        billing_attempt: non_negative(row, "billing_attempt")?,
        invoice_id: row.try_get("invoice_id")?,
        estimate_offer_id: row.try_get("estimate_offer_id")?,
        drafted_contract_id: row.try_get("drafted_contract_id")?,
        reply_count: row.try_get("reply_count")?,
        create_time: row.try_get("create_time")?,
        update_time: row.try_get("update_time")?,
        version: row.try_get("version")?,
    })
}

fn int(v: u32) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

/// Inserts a task. `Ok(false)` when a task of the same event cause exists (a follow-up or an
/// imported message already made one).
pub async fn insert(conn: &mut PgConnection, t: &Task) -> sqlx::Result<bool> {
    let inserted = sqlx::query(
        "INSERT INTO tasks (id, title, description, partner_id, post_sale_service_id, \
         contract_id, deadline_date, responsible_staff_id, creator, creator_staff_id, \
         scheduled_start_time, expected_duration_minutes, status, billable, source, \
         source_reference, origin_kind, origin_id, origin_number, broadcast_id, reminder_email, \
         reminder_in_app, reminder_days_before, attachments, billing_status, create_time, \
         update_time, version) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, \
         $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28) \
         ON CONFLICT (source, source_reference) WHERE source IN ('follow_up', 'email_import') \
         DO NOTHING",
    )
    .bind(t.id)
    .bind(&t.title)
    .bind(&t.description)
    .bind(t.partner_id)
    .bind(t.post_sale_service_id)
    .bind(t.contract_id)
    .bind(t.deadline_date)
    .bind(t.responsible_staff_id)
    .bind(&t.creator)
    .bind(t.creator_staff_id)
    .bind(t.scheduled_start_time)
    .bind(int(t.expected_duration_minutes))
    .bind(t.status.as_db())
    .bind(t.billable)
    .bind(t.source.as_db())
    .bind(&t.source_reference)
    .bind(t.origin.as_ref().map(|o| o.kind))
    .bind(t.origin.as_ref().map(|o| o.id))
    .bind(t.origin.as_ref().map_or("", |o| o.number.as_str()))
    .bind(t.broadcast_id)
    .bind(t.reminder.email)
    .bind(t.reminder.in_app)
    .bind(t.reminder.days_before.map(int))
    .bind(Json(&t.attachments))
    .bind(t.billing.as_db())
    .bind(t.create_time)
    .bind(t.update_time)
    .bind(t.version)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

/// Replaces the changeable state of a task whose version is still `expected_version`.
pub async fn update(
    conn: &mut PgConnection,
    t: &Task,
    expected_version: i64,
) -> sqlx::Result<bool> {
    Ok(sqlx::query(
        "UPDATE tasks SET title = $2, description = $3, partner_id = $4, \
         post_sale_service_id = $5, contract_id = $6, deadline_date = $7, \
         responsible_staff_id = $8, scheduled_start_time = $9, expected_duration_minutes = $10, \
         status = $11, billable = $12, reminder_email = $13, reminder_in_app = $14, \
         reminder_days_before = $15, reminder_sent_time = $16, attachments = $17, \
         start_time = $18, resolve_time = $19, worked_minutes = $20, resolution_note = $21, \
         cancel_reason = $22, billing_status = $23, billing_error = $24, billing_attempt = $25, \
         invoice_id = $26, estimate_offer_id = $27, drafted_contract_id = $28, \
         update_time = $29, version = $30, origin_kind = $31, origin_id = $32, \
         origin_number = $33, cancel_time = $34 \
         WHERE id = $1 AND version = $35",
    )
    .bind(t.id)
    .bind(&t.title)
    .bind(&t.description)
    .bind(t.partner_id)
    .bind(t.post_sale_service_id)
    .bind(t.contract_id)
    .bind(t.deadline_date)
    .bind(t.responsible_staff_id)
    .bind(t.scheduled_start_time)
    .bind(int(t.expected_duration_minutes))
    .bind(t.status.as_db())
    .bind(t.billable)
    .bind(t.reminder.email)
    .bind(t.reminder.in_app)
    .bind(t.reminder.days_before.map(int))
    .bind(t.reminder_sent_time)
    .bind(Json(&t.attachments))
    .bind(t.start_time)
    .bind(t.resolve_time)
    .bind(int(t.worked_minutes))
    .bind(&t.resolution_note)
    .bind(&t.cancel_reason)
    .bind(t.billing.as_db())
    .bind(&t.billing_error)
    .bind(int(t.billing_attempt))
    .bind(t.invoice_id)
    .bind(t.estimate_offer_id)
    .bind(t.drafted_contract_id)
    .bind(t.update_time)
    .bind(t.version)
    .bind(t.origin.as_ref().map(|o| o.kind))
    .bind(t.origin.as_ref().map(|o| o.id))
    .bind(t.origin.as_ref().map_or("", |o| o.number.as_str()))
    .bind(t.cancel_time)
    .bind(expected_version)
    .execute(conn)
    .await?
    .rows_affected()
        == 1)
}

/// One task.
pub async fn get(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<Task>> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM {FROM} WHERE t.id = $1"
    )))
    .bind(id)
    .fetch_optional(conn)
    .await?
    .map(|row| task_of(&row))
    .transpose()
}

/// One task, locked until the transaction ends (for changes made from events).
pub async fn get_for_update(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<Task>> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM {FROM} WHERE t.id = $1 FOR UPDATE OF t"
    )))
    .bind(id)
    .fetch_optional(conn)
    .await?
    .map(|row| task_of(&row))
    .transpose()
}

/// The tasks with `ids`, in no particular order.
pub async fn get_many(conn: &mut PgConnection, ids: &[Uuid]) -> sqlx::Result<Vec<Task>> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM {FROM} WHERE t.id = ANY($1)"
    )))
    .bind(ids)
    .fetch_all(conn)
    .await?
    .iter()
    .map(task_of)
    .collect()
}

/// The task made for an event cause (`source`, `reference`), if any.
pub async fn by_cause(
    conn: &mut PgConnection,
    source: Source,
    reference: &str,
) -> sqlx::Result<Option<Task>> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM {FROM} WHERE t.source = $1 AND t.source_reference = $2"
    )))
    .bind(source.as_db())
    .bind(reference)
    .fetch_optional(conn)
    .await?
    .map(|row| task_of(&row))
    .transpose()
}

/// The open follow-up tasks of the opportunity `opportunity_id`.
pub async fn open_follow_ups(
    conn: &mut PgConnection,
    opportunity_id: Uuid,
) -> sqlx::Result<Vec<Task>> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM {FROM} WHERE t.origin_id = $1 AND t.source = 'follow_up' \
         AND t.status IN ('open', 'in_progress') ORDER BY t.create_time, t.id"
    )))
    .bind(opportunity_id)
    .fetch_all(conn)
    .await?
    .iter()
    .map(task_of)
    .collect()
}

/// Who may see tasks: everyone's (managers) or their own (responsible for or created).
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub enum Visibility {
    /// Every task.
    All,
    /// Tasks `user` created or their staff record is responsible for.
    Own {
        /// The user (token subject).
        user: String,
        /// Their staff record, if linked.
        staff_id: Option<Uuid>,
    },
}

impl Visibility {
    /// Whether `task` is visible.
    pub fn sees(&self, task: &Task) -> bool {
        match self {
            Visibility::All => true,
            Visibility::Own { user, staff_id } => {
                task.creator == *user || Some(task.responsible_staff_id) == *staff_id
            }
        }
    }
}

/// Which date a period filter applies to.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub enum Period {
    /// Deadline days within the range (either end open).
    Deadline(Option<NaiveDate>, Option<NaiveDate>),
    /// `column` (create_time, resolve_time, scheduled_start_time) within [from, to).
    Instant {
        /// The column: one of the three above.
        column: &'static str,
        /// First instant.
        from: Option<DateTime<Utc>>,
        /// First instant after.
        to: Option<DateTime<Utc>>,
    },
}

/// The filters of ListTasks, all optional; every one given must match.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct TaskFilter {
    /// Whose tasks may be seen.
    pub visibility: Visibility,
    /// Responsible staff member.
    pub responsible: Option<Uuid>,
    /// Creator (user).
    pub creator: Option<String>,
    /// Statuses (database names); empty means any.
    pub statuses: Vec<&'static str>,
    /// A period.
    pub period: Option<Period>,
    /// Beneficiary partner.
    pub partner_id: Option<Uuid>,
    /// Source (database name).
    pub source: Option<&'static str>,
    /// Overdue on this day (active and past their deadline).
    pub overdue_on: Option<NaiveDate>,
    /// Broadcast.
    pub broadcast_id: Option<Uuid>,
    /// Title or description contains (a lower-case LIKE pattern).
    pub text_like: Option<String>,
    /// Billing states (database names); empty means any.
    pub billing: Vec<&'static str>,
}

/// The key of a page: deadline, creation time, id of the last task of the previous page.
pub type Cursor = (NaiveDate, DateTime<Utc>, Uuid);

/// A page of tasks in list order (deadline, creation time, id) after `after`.
pub async fn list(
    conn: &mut PgConnection,
    filter: &TaskFilter,
    after: Option<&Cursor>,
    limit: i64,
) -> sqlx::Result<Vec<Task>> {
    let mut q = QueryBuilder::new(format!("SELECT {COLUMNS} FROM {FROM} WHERE TRUE"));
    if let Visibility::Own { user, staff_id } = &filter.visibility {
        q.push(" AND (t.creator = ").push_bind(user.clone());
        if let Some(staff) = staff_id {
            q.push(" OR t.responsible_staff_id = ").push_bind(*staff);
        }
        q.push(")");
    }
    if let Some(responsible) = filter.responsible {
        q.push(" AND t.responsible_staff_id = ")
            .push_bind(responsible);
    }
    if let Some(creator) = &filter.creator {
        q.push(" AND t.creator = ").push_bind(creator.clone());
    }
    if !filter.statuses.is_empty() {
        q.push(" AND t.status = ANY(")
            .push_bind(
                filter
                    .statuses
                    .iter()
                    .map(|s| (*s).to_owned())
                    .collect::<Vec<_>>(),
            )
            .push(")");
    }
    match &filter.period {
        None => {}
        Some(Period::Deadline(from, to)) => {
            if let Some(from) = from {
                q.push(" AND t.deadline_date >= ").push_bind(*from);
            }
            if let Some(to) = to {
                q.push(" AND t.deadline_date <= ").push_bind(*to);
            }
        }
        Some(Period::Instant { column, from, to }) => {
            // `column` is one of three literals chosen by the API, never user text.
            if let Some(from) = from {
                q.push(format!(" AND t.{column} >= ")).push_bind(*from);
            }
            if let Some(to) = to {
                q.push(format!(" AND t.{column} < ")).push_bind(*to);
            }
            if from.is_none() && to.is_none() {
                q.push(format!(" AND t.{column} IS NOT NULL"));
            }
        }
    }
    if let Some(partner) = filter.partner_id {
        q.push(" AND t.partner_id = ").push_bind(partner);
    }
    if let Some(source) = filter.source {
        q.push(" AND t.source = ").push_bind(source);
    }
    if let Some(today) = filter.overdue_on {
        q.push(" AND t.status IN ('open', 'in_progress') AND t.deadline_date < ")
            .push_bind(today);
    }
    if let Some(broadcast) = filter.broadcast_id {
        q.push(" AND t.broadcast_id = ").push_bind(broadcast);
    }
    if let Some(like) = &filter.text_like {
        q.push(" AND (lower(t.title) LIKE ")
            .push_bind(like.clone())
            .push(" OR lower(t.description) LIKE ")
            .push_bind(like.clone())
            .push(")");
    }
    if !filter.billing.is_empty() {
        q.push(" AND t.billing_status = ANY(")
            .push_bind(
                filter
                    .billing
                    .iter()
                    .map(|s| (*s).to_owned())
                    .collect::<Vec<_>>(),
            )
            .push(")");
    }
    if let Some((deadline, created, id)) = after {
        q.push(" AND (t.deadline_date, t.create_time, t.id) > (")
            .push_bind(*deadline)
            .push(", ")
            .push_bind(*created)
            .push(", ")
            .push_bind(*id)
            .push(")");
    }
    q.push(" ORDER BY t.deadline_date, t.create_time, t.id LIMIT ")
        .push_bind(limit);
    q.build()
        .fetch_all(conn)
        .await?
        .iter()
        .map(task_of)
        .collect()
}

/// The active tasks of `staff_id` that may book time between the days `first` and `last`
/// (unscheduled with a deadline in them, or scheduled to start before the day after `last`
/// and end after `first` starts), `exclude` left out. `from`/`to` bound the scheduled ones.
pub async fn booked(
    conn: &mut PgConnection,
    staff_id: Uuid,
    first: NaiveDate,
    last: NaiveDate,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    exclude: Option<Uuid>,
) -> sqlx::Result<Vec<BookedTask>> {
    let rows = sqlx::query(
        "SELECT id, title, scheduled_start_time, expected_duration_minutes, deadline_date \
         FROM tasks WHERE responsible_staff_id = $1 AND status IN ('open', 'in_progress') \
         AND ($6::uuid IS NULL OR id <> $6) AND ( \
           (scheduled_start_time IS NULL AND deadline_date BETWEEN $2 AND $3) OR \
           (scheduled_start_time IS NOT NULL AND scheduled_start_time < $5 AND \
            scheduled_start_time + make_interval(mins => expected_duration_minutes) > $4)) \
         ORDER BY scheduled_start_time NULLS LAST, id",
    )
    .bind(staff_id)
    .bind(first)
    .bind(last)
    .bind(from)
    .bind(to)
    .bind(exclude)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|row| {
            let minutes = non_negative(row, "expected_duration_minutes")?;
            let start: Option<DateTime<Utc>> = row.try_get("scheduled_start_time")?;
            Ok(BookedTask {
                id: row.try_get("id")?,
                title: row.try_get("title")?,
                placement: match start {
                    Some(start) => Placement::Scheduled { start, minutes },
                    None => Placement::Unscheduled {
                        deadline: row.try_get("deadline_date")?,
                        minutes,
                    },
                },
            })
        })
        .collect()
}

/// Adds one to a task's reply count (and its version: the etag changes with every reply).
pub async fn count_reply(conn: &mut PgConnection, id: Uuid, at: DateTime<Utc>) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE tasks SET reply_count = reply_count + 1, update_time = $2, version = version + 1 \
         WHERE id = $1",
    )
    .bind(id)
    .bind(at)
    .execute(conn)
    .await?;
    Ok(())
}

/// Every task of a broadcast, by id.
pub async fn ids_of_broadcast(conn: &mut PgConnection, broadcast: Uuid) -> sqlx::Result<Vec<Uuid>> {
    sqlx::query_scalar("SELECT id FROM tasks WHERE broadcast_id = $1 ORDER BY id")
        .bind(broadcast)
        .fetch_all(conn)
        .await
}
