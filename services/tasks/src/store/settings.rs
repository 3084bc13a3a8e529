//! The company's reminder settings (T8): one row.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, Row as _};

use crate::domain::reminders::ReminderSettings;

/// The settings, their last change and version.
pub async fn get(conn: &mut PgConnection) -> sqlx::Result<(ReminderSettings, DateTime<Utc>, i64)> {
    let row = sqlx::query(
        "SELECT send_in_app, send_email, default_days_before, send_at_minute, update_time, \
         version FROM reminder_settings",
    )
    .fetch_one(conn)
    .await?;
    let days: i32 = row.try_get("default_days_before")?;
    let minute: i32 = row.try_get("send_at_minute")?;
    Ok((
        ReminderSettings {
            send_in_app: row.try_get("send_in_app")?,
            send_email: row.try_get("send_email")?,
            default_days_before: u32::try_from(days)
                .map_err(|_| super::decode_error("default_days_before", days))?,
            send_at_minute: u32::try_from(minute)
                .map_err(|_| super::decode_error("send_at_minute", minute))?,
        },
        row.try_get("update_time")?,
        row.try_get("version")?,
    ))
}

/// Replaces the settings when their version is still `expected_version`.
pub async fn update(
    conn: &mut PgConnection,
    s: &ReminderSettings,
    at: DateTime<Utc>,
    expected_version: i64,
) -> sqlx::Result<bool> {
    Ok(sqlx::query(
        "UPDATE reminder_settings SET send_in_app = $1, send_email = $2, \
         default_days_before = $3, send_at_minute = $4, update_time = $5, version = version + 1 \
         WHERE version = $6",
    )
    .bind(s.send_in_app)
    .bind(s.send_email)
    .bind(i32::try_from(s.default_days_before).unwrap_or(0))
    .bind(i32::try_from(s.send_at_minute).unwrap_or(0))
    .bind(at)
    .bind(expected_version)
    .execute(conn)
    .await?
    .rows_affected()
        == 1)
}
