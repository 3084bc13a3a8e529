//! WatchNewTasks (T10): the caller's new tasks, live, on whichever replica they were made.
//!
//! Each replica reads tasks' event stream itself ([`FanOut`]); a call picks the events that
//! assign a task to the caller's staff record (`TaskCreated`, and `TaskUpdated` whose changed
//! fields include the responsible). A position in that stream is the resume token: replaying
//! from it gives exactly what came after, reassignments included and nothing twice. The call
//! subscribes before it replays, then drops live events it already replayed, so nothing falls
//! in between; a call too slow for the live buffer catches up from its last position.

use std::{pin::Pin, sync::Arc, time::Duration};

use crm_platform::{
    auth::Caller,
    events::{
        decode_payload,
        fanout::{FanOut, FannedEvent, StreamPosition},
    },
    values,
};
use crm_proto::{
    events as ev,
    tasks::{self as pb, NewTaskReason},
};
use futures::Stream;
use tokio::sync::{broadcast::error::RecvError, mpsc};
use tonic::Status;
use uuid::Uuid;

use super::{Fields, TasksApi};
use crate::{
    error::{Result, TasksError},
    store,
};

/// The stream of a WatchNewTasks call.
pub type WatchStream =
    Pin<Box<dyn Stream<Item = Result<pb::WatchNewTasksResponse, Status>> + Send>>;

/// Entries replayed per read.
const REPLAY_BATCH: usize = 500;

/// The task an event assigns to `staff`, and why; `None` for any other event.
fn assigned_to(event: &FannedEvent, staff: Uuid) -> Option<(pb::Task, NewTaskReason)> {
    let envelope = event.envelope.as_ref()?;
    let staff = staff.to_string();
    if let Ok(Some(created)) = decode_payload::<ev::TaskCreated>(envelope) {
        let task = created.task?;
        return (task.responsible_staff_id == staff).then_some((task, NewTaskReason::Created));
    }
    if let Ok(Some(updated)) = decode_payload::<ev::TaskUpdated>(envelope)
        && updated
            .changed_fields
            .iter()
            .any(|f| f == "responsible_staff_id")
    {
        let task = updated.task?;
        return (task.responsible_staff_id == staff).then_some((task, NewTaskReason::Reassigned));
    }
    None
}

fn task_message(
    task: pb::Task,
    reason: NewTaskReason,
    at: StreamPosition,
) -> pb::WatchNewTasksResponse {
    pb::WatchNewTasksResponse {
        task: Some(task),
        heartbeat: false,
        resume_token: at.to_string(),
        replay_done: false,
        reason: reason as i32,
    }
}

/// Sends what came after `after` for `staff`; returns the last position read.
async fn replay(
    feed: &FanOut,
    staff: Uuid,
    mut after: StreamPosition,
    out: &mpsc::Sender<Result<pb::WatchNewTasksResponse, Status>>,
) -> Result<StreamPosition, ()> {
    loop {
        let batch = match feed.range(after, REPLAY_BATCH).await {
            Ok(batch) => batch,
            Err(err) => {
                tracing::warn!(error = %err, "replaying new tasks failed");
                let _ = out
                    .send(Err(Status::unavailable(
                        "the task feed is unavailable; reconnect with your resume token",
                    )))
                    .await;
                return Err(());
            }
        };
        let full = batch.len() == REPLAY_BATCH;
        for event in &batch {
            after = event.position;
            if let Some((task, reason)) = assigned_to(event, staff)
                && out
                    .send(Ok(task_message(task, reason, after)))
                    .await
                    .is_err()
            {
                return Err(());
            }
        }
        if !full {
            return Ok(after);
        }
    }
}

impl TasksApi {
    pub(super) async fn watch(
        &self,
        caller: &Caller,
        request: pb::WatchNewTasksRequest,
    ) -> Result<WatchStream> {
        let mut f = Fields::new();
        let now = self.clock.now();
        let window = chrono::Duration::days(i64::from(self.settings.feed.replay_days));
        let oldest_ms = u64::try_from((now - window).timestamp_millis()).unwrap_or(0);
        let token = if request.resume_token.is_empty() {
            None
        } else {
            f.0.check(
                "resume_token",
                request
                    .resume_token
                    .parse::<StreamPosition>()
                    .map_err(|_| "is not a resume token of this stream"),
            )
        };
        let since =
            f.0.check("since_time", values::instant(request.since_time.as_ref()))
                .flatten();
        if let Some(since) = since
            && since < now - window
        {
            f.add(
                "since_time",
                format!(
                    "must be within the last {} days",
                    self.settings.feed.replay_days
                ),
            );
        }
        f.finish()?;
        let mut conn = self.pool.acquire().await?;
        let staff = store::staff::id_of_user(&mut conn, &caller.subject)
            .await?
            .ok_or_else(|| {
                TasksError::precondition(format!(
                    "no staff record is linked to user {:?}: nobody assigns tasks to you",
                    caller.subject
                ))
            })?;
        drop(conn);

        // Subscribe first: whatever is published from now on reaches this call.
        let mut live = self.feed.subscribe();
        let bounds = self.feed.bounds().await.map_err(|err| {
            tracing::warn!(error = %err, "the task feed is unavailable");
            TasksError::Unavailable("the task feed is unavailable; try again".into())
        })?;
        let start = match (token, since) {
            (Some(token), _) => {
                // Entries after the token were trimmed away: they cannot be replayed.
                let trimmed = self
                    .feed
                    .max_deleted()
                    .await
                    .map_err(|err| {
                        tracing::warn!(error = %err, "the task feed is unavailable");
                        TasksError::Unavailable("the task feed is unavailable; try again".into())
                    })?
                    .is_some_and(|deleted| token < deleted);
                if token.ms < oldest_ms || trimmed {
                    return Err(TasksError::Refused(Status::out_of_range(
                        "the resume token is older than the feed keeps: reload with ListTasks \
                         and watch without one",
                    )));
                }
                token
            }
            (None, Some(since)) => {
                StreamPosition::before_ms(u64::try_from(since.timestamp_millis()).unwrap_or(0))
            }
            // Live only: the stream as it is now (an empty one: now, so the token stays young).
            (None, None) => bounds.map_or_else(
                || StreamPosition::before_ms(u64::try_from(now.timestamp_millis()).unwrap_or(0)),
                |(_, last)| last,
            ),
        };

        let (out, rx) = mpsc::channel(64);
        let feed = self.feed.clone();
        let heartbeat = Duration::from_millis(self.settings.feed.heartbeat_ms);
        tokio::spawn(async move {
            let Ok(mut at) = replay(&feed, staff, start, &out).await else {
                return;
            };
            let marker = pb::WatchNewTasksResponse {
                task: None,
                heartbeat: false,
                resume_token: at.to_string(),
                replay_done: true,
                reason: NewTaskReason::Unspecified as i32,
            };
            if out.send(Ok(marker)).await.is_err() {
                return;
            }
            loop {
                let event: Arc<FannedEvent> = tokio::select! {
                    received = live.recv() => match received {
                        Ok(event) => event,
                        Err(RecvError::Lagged(missed)) => {
                            tracing::info!(missed, "a task watcher fell behind; catching up");
                            match replay(&feed, staff, at, &out).await {
                                Ok(caught_up) => { at = caught_up; continue; }
                                Err(()) => return,
                            }
                        }
                        Err(RecvError::Closed) => return,
                    },
                    () = tokio::time::sleep(heartbeat) => {
                        let beat = pb::WatchNewTasksResponse {
                            task: None,
                            heartbeat: true,
                            resume_token: at.to_string(),
                            replay_done: false,
                            reason: NewTaskReason::Unspecified as i32,
                        };
                        if out.send(Ok(beat)).await.is_err() { return; }
                        continue;
                    }
                    () = out.closed() => return,
                };
                // Already replayed (published between the subscription and the replay).
                if event.position <= at {
                    continue;
                }
                at = event.position;
                if let Some((task, reason)) = assigned_to(&event, staff)
                    && out.send(Ok(task_message(task, reason, at))).await.is_err()
                {
                    return;
                }
            }
        });
        Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)))
    }
}
