//! What the tracking report reads (T11).

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, Row as _};
use uuid::Uuid;

use crate::domain::{availability::Placement, tracking::TrackedTask};

/// The tasks of `staff` that matter between `from` and `to`: created before `to`, and neither
/// resolved nor cancelled before `from`.
pub async fn tasks_between(
    conn: &mut PgConnection,
    staff: &[Uuid],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> sqlx::Result<Vec<TrackedTask>> {
    let rows = sqlx::query(
        "SELECT responsible_staff_id, create_time, resolve_time, cancel_time, deadline_date, \
         scheduled_start_time, expected_duration_minutes, worked_minutes FROM tasks \
         WHERE responsible_staff_id = ANY($1) AND create_time < $3 \
         AND (resolve_time IS NULL OR resolve_time >= $2) \
         AND (cancel_time IS NULL OR cancel_time >= $2)",
    )
    .bind(staff)
    .bind(from)
    .bind(to)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|row| {
            let minutes: i32 = row.try_get("expected_duration_minutes")?;
            let minutes = u32::try_from(minutes).unwrap_or(0);
            let worked: i32 = row.try_get("worked_minutes")?;
            let start: Option<DateTime<Utc>> = row.try_get("scheduled_start_time")?;
            let deadline = row.try_get("deadline_date")?;
            Ok(TrackedTask {
                staff_id: row.try_get("responsible_staff_id")?,
                create_time: row.try_get("create_time")?,
                resolve_time: row.try_get("resolve_time")?,
                cancel_time: row.try_get("cancel_time")?,
                deadline_date: deadline,
                placement: match start {
                    Some(start) => Placement::Scheduled { start, minutes },
                    None => Placement::Unscheduled { deadline, minutes },
                },
                worked_minutes: u32::try_from(worked).unwrap_or(0),
            })
        })
        .collect()
}
