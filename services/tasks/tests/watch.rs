//! WatchNewTasks (T10): live new and reassigned tasks on any replica, the end-of-replay marker,
//! resuming from a token without misses or repeats, keep-alives, bad requests.

mod common;

use std::time::Duration;

use common::*;
use crm_proto::tasks::{self as pb, NewTaskReason, task_service_client::TaskServiceClient};
use tonic::{Code, Streaming, transport::Channel};

async fn watch(
    client: &mut TaskServiceClient<Channel>,
    user: &str,
    request: pb::WatchNewTasksRequest,
) -> Streaming<pb::WatchNewTasksResponse> {
    client
        .watch_new_tasks(authed(request, user, &["service"]))
        .await
        .unwrap()
        .into_inner()
}

/// The next message that is not a keep-alive (within 5 s).
async fn next(stream: &mut Streaming<pb::WatchNewTasksResponse>) -> pb::WatchNewTasksResponse {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(5), stream.message())
            .await
            .expect("a message within 5 s")
            .unwrap()
            .expect("the stream is open");
        if !message.heartbeat {
            return message;
        }
    }
}

#[tokio::test]
async fn new_tasks_arrive_live_after_the_marker_and_only_the_callers() {
    let mut s = start().await;
    let ion = s.staff_member("Ion", "ion").await;
    let dan = s.staff_member("Dan", "dan").await;
    let mut client = s.tasks.clone();
    let mut stream = watch(&mut client, "ion", pb::WatchNewTasksRequest::default()).await;
    let marker = next(&mut stream).await;
    assert!(marker.replay_done && marker.task.is_none());
    assert!(!marker.resume_token.is_empty());

    s.task_by("ana", "Pentru Dan", &dan, today()).await;
    let mine = s.task_by("ana", "Pentru Ion", &ion, today()).await;
    let message = next(&mut stream).await;
    assert_eq!(message.task.unwrap().id, mine.id);
    assert_eq!(message.reason, NewTaskReason::Created as i32);
    assert!(!message.resume_token.is_empty());
    // Quiet: keep-alives, each with the position.
    let beat = tokio::time::timeout(Duration::from_secs(3), stream.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(beat.heartbeat && beat.task.is_none());
    assert_eq!(beat.resume_token, message.resume_token);
}

#[tokio::test]
async fn a_reconnecting_client_gets_exactly_what_it_missed_reassignments_included() {
    let mut s = start().await;
    let ion = s.staff_member("Ion", "ion").await;
    let dan = s.staff_member("Dan", "dan").await;
    let mut client = s.tasks.clone();
    let mut stream = watch(&mut client, "ion", pb::WatchNewTasksRequest::default()).await;
    next(&mut stream).await;
    let first = s.task_by("ana", "Prima", &ion, today()).await;
    let seen = next(&mut stream).await;
    assert_eq!(seen.task.as_ref().unwrap().id, first.id);
    let token = seen.resume_token.clone();
    drop(stream);

    // While away: one created for Ion, one moved from Dan to Ion, one for Dan only.
    let second = s.task_by("ana", "A doua", &ion, today()).await;
    let moved = s.task_by("ana", "Mutată", &dan, today()).await;
    s.task_by("ana", "Doar a lui Dan", &dan, today()).await;
    s.tasks
        .update_task(manager(pb::UpdateTaskRequest {
            task: Some(pb::Task {
                id: moved.id.clone(),
                responsible_staff_id: ion.id.clone(),
                ..Default::default()
            }),
            update_mask: mask(&["responsible_staff_id"]),
            etag: moved.etag.clone(),
        }))
        .await
        .unwrap();
    // Let the relay publish both before reconnecting.
    s.wait_message::<crm_proto::events::TaskUpdated>(TASKS, |e| {
        e.task.as_ref().unwrap().id == moved.id
    })
    .await;

    let mut stream = watch(
        &mut client,
        "ion",
        pb::WatchNewTasksRequest {
            since_time: None,
            resume_token: token,
        },
    )
    .await;
    let a = next(&mut stream).await;
    let b = next(&mut stream).await;
    let marker = next(&mut stream).await;
    assert_eq!(a.task.unwrap().id, second.id);
    assert_eq!(a.reason, NewTaskReason::Created as i32);
    assert_eq!(b.task.unwrap().id, moved.id);
    assert_eq!(b.reason, NewTaskReason::Reassigned as i32);
    assert!(marker.replay_done);
    assert_eq!(marker.resume_token, b.resume_token);
    // Then live again.
    let live = s.task_by("ana", "Live", &ion, today()).await;
    assert_eq!(next(&mut stream).await.task.unwrap().id, live.id);

    // since_time replays by time instead.
    let mut stream = watch(
        &mut client,
        "ion",
        pb::WatchNewTasksRequest {
            since_time: Some(crm_platform::values::timestamp(
                chrono::Utc::now() - chrono::Duration::minutes(5),
            )),
            resume_token: String::new(),
        },
    )
    .await;
    let mut replayed = Vec::new();
    loop {
        let m = next(&mut stream).await;
        if m.replay_done {
            break;
        }
        replayed.push(m.task.unwrap().id);
    }
    assert_eq!(replayed, [first.id, second.id, moved.id, live.id]);
}

#[tokio::test]
async fn a_task_made_on_one_replica_reaches_a_watcher_on_another() {
    let mut s = start().await;
    let ion = s.staff_member("Ion", "ion").await;
    let mut other = s.replica().await;
    let mut stream = watch(&mut other, "ion", pb::WatchNewTasksRequest::default()).await;
    next(&mut stream).await;
    // Created through the first replica.
    let task = s.task_by("ana", "Din altă parte", &ion, today()).await;
    assert_eq!(next(&mut stream).await.task.unwrap().id, task.id);
}

#[tokio::test]
async fn bad_watches_are_refused_with_a_reason() {
    let mut s = start().await;
    s.staff_member("Ion", "ion").await;
    let mut client = s.tasks.clone();
    let err = client
        .watch_new_tasks(authed(
            pb::WatchNewTasksRequest {
                resume_token: "not-a-token".into(),
                since_time: Some(crm_platform::values::timestamp(
                    chrono::Utc::now() - chrono::Duration::days(30),
                )),
            },
            "ion",
            &["service"],
        ))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&err), ["resume_token", "since_time"]);
    // A token from long ago (the feed keeps 7 days).
    let err = client
        .watch_new_tasks(authed(
            pb::WatchNewTasksRequest {
                resume_token: "1500000000000-0".into(),
                since_time: None,
            },
            "ion",
            &["service"],
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::OutOfRange, "{err:?}");
    // Nobody assigns tasks to a user without a staff record.
    let err = client
        .watch_new_tasks(authed(
            pb::WatchNewTasksRequest::default(),
            "ghost",
            &["sales"],
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
}
