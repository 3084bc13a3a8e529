//! The reminder scheduler (T8): sends each due reminder once, from any number of replicas.
//!
//! It claims due rows with `FOR UPDATE SKIP LOCKED` (replicas never take the same row), removes
//! them and writes their `NotificationRequested` commands to the outbox in the same
//! transaction: a replica that dies before committing leaves its rows due for another, one that
//! dies after has emitted them. The notification's idempotency key is the task and the due
//! time, so even a command relayed twice is delivered once. Between rounds it sleeps until the
//! next due time (at most `reminders.max_sleep_ms`), and PostgreSQL wakes it (LISTEN/NOTIFY, at
//! commit) whenever a reminder is set, so an earlier one is never late: no polling loop.

use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use crm_platform::{clock::Clock, values};
use crm_proto::{
    common::DocumentKind,
    events::{self as ev},
    notifications::NotificationKind,
};
use sqlx::{PgPool, postgres::PgListener};
use tokio::sync::watch;

use crate::{
    config::ReminderSchedulerSettings,
    domain::reminders::{channels_at_send, idempotency_key},
    events::Events,
    opportunities::document_ref,
    store::{self, reminders::DueReminder},
};

/// The channel the reminders table's trigger notifies.
pub const CHANNEL: &str = "tasks_reminders";

/// The scheduler and what it needs.
pub struct Scheduler {
    /// The service's database.
    pub pool: PgPool,
    /// Where the commands go.
    pub events: Events,
    /// The time source.
    pub clock: Clock,
    /// The company's time zone (for the message text).
    pub zone: Tz,
    /// Batch size and longest sleep.
    pub settings: ReminderSchedulerSettings,
}

impl Scheduler {
    /// Sends due reminders until `stop`.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let max_sleep = Duration::from_millis(self.settings.max_sleep_ms);
        let mut listener: Option<PgListener> = None;
        loop {
            if *stop.borrow() {
                return;
            }
            if listener.is_none() {
                listener = match PgListener::connect_with(&self.pool).await {
                    Ok(mut l) => match l.listen(CHANNEL).await {
                        Ok(()) => Some(l),
                        Err(err) => {
                            tracing::warn!(error = %err, "reminders: LISTEN failed; polling instead");
                            None
                        }
                    },
                    Err(err) => {
                        tracing::warn!(error = %err, "reminders: no listener connection; polling instead");
                        None
                    }
                };
            }
            let sleep = match self.send_due().await {
                // A full batch: more may be due right away.
                Ok(Some(sent)) if sent >= self.settings.batch_size => Duration::ZERO,
                Ok(_) => match self.until_next().await {
                    Ok(wait) => wait.min(max_sleep),
                    Err(err) => {
                        tracing::warn!(error = %err, "reminders: next due time unknown");
                        Duration::from_secs(1)
                    }
                },
                Err(err) => {
                    tracing::warn!(error = %err, "reminders: sending failed; retrying");
                    Duration::from_secs(1)
                }
            };
            if sleep.is_zero() {
                continue;
            }
            match listener.as_mut() {
                Some(l) => {
                    tokio::select! {
                        () = tokio::time::sleep(sleep) => {}
                        notified = l.recv() => {
                            if notified.is_err() {
                                // The listener's connection broke: make a new one next round.
                                listener = None;
                            }
                        }
                        _ = stop.wait_for(|s| *s) => return,
                    }
                }
                None => {
                    tokio::select! {
                        () = tokio::time::sleep(sleep.min(Duration::from_secs(1))) => {}
                        _ = stop.wait_for(|s| *s) => return,
                    }
                }
            }
        }
    }

    /// How long until the next reminder is due (zero when one is due now).
    async fn until_next(&self) -> anyhow::Result<Duration> {
        let mut conn = self.pool.acquire().await?;
        let Some(next) = store::reminders::next_due(&mut conn).await? else {
            return Ok(Duration::MAX);
        };
        Ok((next - self.clock.now()).to_std().unwrap_or(Duration::ZERO))
    }

    /// One round: claims a batch of due reminders and emits their notifications. Returns how
    /// many were claimed.
    pub async fn send_due(&self) -> anyhow::Result<Option<i64>> {
        let now = self.clock.now();
        let mut tx = self.pool.begin().await?;
        let due = store::reminders::claim_due(&mut tx, now, self.settings.batch_size).await?;
        if due.is_empty() {
            tx.rollback().await?;
            return Ok(None);
        }
        let (settings, _, _) = store::settings::get(&mut tx).await?;
        let mut sent = 0;
        for reminder in &due {
            let (email, in_app) = channels_at_send(reminder.email, reminder.in_app, &settings);
            let Some(command) = notification(reminder, email, in_app, self.zone, now) else {
                tracing::info!(task = %reminder.task_id, "reminder has no channel left to use");
                continue;
            };
            self.events
                .notify(&mut tx, "service:tasks", &command, now)
                .await?;
            sent += 1;
        }
        self.events.commit(tx).await?;
        let lag_ms = due
            .iter()
            .map(|r| (now - r.due_time).num_milliseconds())
            .max()
            .unwrap_or(0);
        tracing::debug!(claimed = due.len(), sent, lag_ms, "reminders sent");
        Ok(Some(i64::try_from(due.len()).unwrap_or(i64::MAX)))
    }
}

/// The notification of a due reminder by the channels left, or `None` when none can deliver
/// it (no channel, or a channel without an address).
fn notification(
    r: &DueReminder,
    email: bool,
    in_app: bool,
    zone: Tz,
    now: DateTime<Utc>,
) -> Option<ev::NotificationRequested> {
    let in_app = in_app && r.staff_user.is_some();
    let email = email && !r.staff_email.is_empty();
    if !in_app && !email {
        return None;
    }
    let due_day = crm_platform::calendar::day_of(r.due_time, zone);
    let when = if due_day >= r.deadline_date {
        "today".to_owned()
    } else {
        format!("on {}", r.deadline_date)
    };
    Some(ev::NotificationRequested {
        idempotency_key: idempotency_key(r.task_id, r.due_time),
        kind: NotificationKind::TaskReminder as i32,
        in_app,
        email,
        recipient_user: r.staff_user.clone().unwrap_or_default(),
        recipient_email: if email {
            r.staff_email.clone()
        } else {
            String::new()
        },
        recipient_name: r.staff_name.clone(),
        recipient_staff_id: r.staff_id.to_string(),
        title: format!("Reminder: {}", crate::api::truncate(&r.title, 180)),
        body_text: format!("The task \"{}\" is due {when}.", r.title),
        document: Some(document_ref(DocumentKind::Task, r.task_id)),
        partner_id: r.partner_id.map(|p| p.to_string()).unwrap_or_default(),
        // Sent however late (never skipped), but one that waited a week in a failing
        // notifications queue is no longer worth delivering.
        expire_time: Some(values::timestamp(now + chrono::Duration::days(7))),
    })
}
