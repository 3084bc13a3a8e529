//! Reminders (T8) on a clock the test sets: never early, sent once (also with two replicas),
//! moved with the deadline, cancelled with the task, sent at once when already due, and the
//! company's switches applied when sent.

mod common;

use chrono::{DateTime, Utc};
use common::*;
use crm_platform::clock::Clock;
use crm_proto::{events as ev, notifications::NotificationKind, tasks as pb};

fn at(d: chrono::NaiveDate, hour: u32) -> DateTime<Utc> {
    crm_platform::calendar::at_minute(d, hour * 60, chrono_tz::Europe::Bucharest)
}

/// A service on a clock fixed at `now`, its scheduler looking at least every 50 ms.
async fn on_clock(now: DateTime<Utc>) -> Service {
    start_with(Clock::fixed(now), |settings| {
        settings.reminders.max_sleep_ms = 50;
    })
    .await
}

async fn reminders_of(s: &mut Service, task: &str) -> Vec<ev::NotificationRequested> {
    s.messages::<ev::NotificationRequested>(NOTIFICATIONS, |n| {
        n.kind == NotificationKind::TaskReminder as i32
            && n.document.as_ref().is_some_and(|d| d.id == task)
    })
    .await
    .into_iter()
    .map(|(_, n)| n)
    .collect()
}

async fn settle() {
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
}

#[tokio::test]
async fn a_reminder_is_sent_once_at_its_time_and_never_before() {
    // Monday 7 December 2026, 08:00 in Bucharest.
    let mut s = on_clock(at(day(2026, 12, 7), 8)).await;
    let ion = s.staff_member("Ion", "ion").await;
    let task = s
        .tasks
        .create_task(sales(
            pb::CreateTaskRequest {
                task: Some(pb::Task {
                    title: "Revizie centrală".into(),
                    responsible_staff_id: ion.id.clone(),
                    deadline_date: Some(date_of(day(2026, 12, 9))),
                    reminder: Some(pb::TaskReminder {
                        email: true,
                        in_app: true,
                        days_before: Some(2),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            "ana",
        ))
        .await
        .unwrap()
        .into_inner()
        .task
        .unwrap();
    let due = at(day(2026, 12, 7), 9);
    assert_eq!(
        task.reminder.as_ref().unwrap().due_time,
        Some(crm_platform::values::timestamp(due))
    );
    settle().await;
    assert!(reminders_of(&mut s, &task.id).await.is_empty());
    // One second before: still nothing.
    s.clock.set(due - chrono::Duration::seconds(1));
    settle().await;
    assert!(reminders_of(&mut s, &task.id).await.is_empty());
    // Due: sent, once, however long the clock stays there.
    s.clock.set(due);
    let (_, sent) = s
        .wait_message::<ev::NotificationRequested>(NOTIFICATIONS, |n| {
            n.kind == NotificationKind::TaskReminder as i32
        })
        .await;
    assert_eq!(
        sent.idempotency_key,
        format!("reminder:{}:{}", task.id, due.timestamp())
    );
    assert!(sent.email && sent.in_app);
    assert_eq!(sent.recipient_user, "ion");
    assert_eq!(sent.recipient_email, "ion@example.ro");
    assert!(sent.body_text.contains("2026-12-09"), "{}", sent.body_text);
    s.clock.advance(chrono::Duration::hours(5));
    settle().await;
    assert_eq!(reminders_of(&mut s, &task.id).await.len(), 1);
    let read = s
        .tasks
        .get_task(manager(pb::GetTaskRequest {
            id: task.id.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    let reminder = read.reminder.unwrap();
    assert!(reminder.due_time.is_none());
    assert!(reminder.sent_time.is_some());
}

#[tokio::test]
async fn the_reminder_follows_the_deadline_and_goes_with_the_task() {
    let now = at(day(2026, 12, 7), 8);
    let mut s = on_clock(now).await;
    let ion = s.staff_member("Ion", "ion").await;
    let moved = s.task_by("ana", "Mutată", &ion, day(2026, 12, 8)).await;
    let resolved = s.task_by("ana", "Rezolvată", &ion, day(2026, 12, 8)).await;
    let cancelled = s.task_by("ana", "Anulată", &ion, day(2026, 12, 8)).await;
    // Moved to the 11th: due the 10th at 09:00 (the default: 1 day before).
    let updated = s
        .tasks
        .update_task(sales(
            pb::UpdateTaskRequest {
                task: Some(pb::Task {
                    id: moved.id.clone(),
                    deadline_date: Some(date_of(day(2026, 12, 11))),
                    ..Default::default()
                }),
                update_mask: mask(&["deadline_date"]),
                etag: moved.etag.clone(),
            },
            "ana",
        ))
        .await
        .unwrap()
        .into_inner()
        .task
        .unwrap();
    assert_eq!(
        updated.reminder.unwrap().due_time,
        Some(crm_platform::values::timestamp(at(day(2026, 12, 10), 9)))
    );
    s.tasks
        .resolve_task(sales(
            pb::ResolveTaskRequest {
                id: resolved.id.clone(),
                etag: resolved.etag.clone(),
                ..Default::default()
            },
            "ana",
        ))
        .await
        .unwrap();
    s.tasks
        .cancel_task(sales(
            pb::CancelTaskRequest {
                id: cancelled.id.clone(),
                etag: cancelled.etag.clone(),
                reason: String::new(),
            },
            "ana",
        ))
        .await
        .unwrap();
    // The old due time (the 7th at 09:00) passes: nothing is sent for any of them.
    s.clock.set(at(day(2026, 12, 7), 10));
    settle().await;
    for task in [&moved, &resolved, &cancelled] {
        assert!(
            reminders_of(&mut s, &task.id).await.is_empty(),
            "{}",
            task.title
        );
    }
    // The moved one goes at its new time.
    s.clock.set(at(day(2026, 12, 10), 9));
    s.wait_message::<ev::NotificationRequested>(NOTIFICATIONS, |n| {
        n.kind == NotificationKind::TaskReminder as i32
            && n.document.as_ref().is_some_and(|d| d.id == moved.id)
    })
    .await;
}

#[tokio::test]
async fn a_reminder_already_due_when_set_is_sent_at_once() {
    // 15:00 on the deadline's eve: the default time (09:00 that day) has passed.
    let mut s = on_clock(at(day(2026, 12, 7), 15)).await;
    let ion = s.staff_member("Ion", "ion").await;
    let task = s.task_by("ana", "Urgentă", &ion, day(2026, 12, 8)).await;
    let (_, sent) = s
        .wait_message::<ev::NotificationRequested>(NOTIFICATIONS, |n| {
            n.kind == NotificationKind::TaskReminder as i32
                && n.document.as_ref().is_some_and(|d| d.id == task.id)
        })
        .await;
    assert_eq!(sent.kind, NotificationKind::TaskReminder as i32);
}

#[tokio::test]
async fn the_company_switches_apply_when_a_reminder_is_sent() {
    let now = at(day(2026, 12, 7), 8);
    let mut s = on_clock(now).await;
    let ion = s.staff_member("Ion", "ion").await;
    let task = s
        .task_by("ana", "Doar în aplicație", &ion, day(2026, 12, 8))
        .await;
    let settings = s
        .reminders
        .get_reminder_settings(manager(pb::GetReminderSettingsRequest {}))
        .await
        .unwrap()
        .into_inner();
    s.reminders
        .update_reminder_settings(authed(
            pb::UpdateReminderSettingsRequest {
                settings: Some(pb::ReminderSettings {
                    send_email: false,
                    ..Default::default()
                }),
                update_mask: mask(&["send_email"]),
                etag: settings.etag,
            },
            "root",
            &["admin"],
        ))
        .await
        .unwrap();
    s.clock.set(at(day(2026, 12, 7), 9));
    let (_, sent) = s
        .wait_message::<ev::NotificationRequested>(NOTIFICATIONS, |n| {
            n.kind == NotificationKind::TaskReminder as i32
                && n.document.as_ref().is_some_and(|d| d.id == task.id)
        })
        .await;
    assert!(sent.in_app && !sent.email);
    assert!(sent.recipient_email.is_empty());
}

#[tokio::test]
async fn two_replicas_send_each_reminder_once() {
    let now = at(day(2026, 12, 7), 8);
    let mut s = on_clock(now).await;
    let _second = s.replica().await;
    let ion = s.staff_member("Ion", "ion").await;
    let mut ids = Vec::new();
    for i in 0..40 {
        ids.push(
            s.task_by("ana", &format!("Sarcina {i}"), &ion, day(2026, 12, 8))
                .await
                .id,
        );
    }
    // All due at the same instant, for both schedulers.
    s.clock.set(at(day(2026, 12, 7), 9));
    for _ in 0..400 {
        let sent = s
            .messages::<ev::NotificationRequested>(NOTIFICATIONS, |n| {
                n.kind == NotificationKind::TaskReminder as i32
            })
            .await;
        if sent.len() >= ids.len() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    settle().await;
    let sent = s
        .messages::<ev::NotificationRequested>(NOTIFICATIONS, |n| {
            n.kind == NotificationKind::TaskReminder as i32
        })
        .await;
    let mut keys: Vec<String> = sent.into_iter().map(|(_, n)| n.idempotency_key).collect();
    assert_eq!(keys.len(), ids.len(), "each reminder once");
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), ids.len());
}
