//! Replies (T4), broadcasts (T5) and the tracking report (T11).

mod common;

use common::*;
use crm_proto::{common as cpb, events as ev, notifications::NotificationKind, tasks as pb};
use tonic::Code;

#[tokio::test]
async fn a_thread_per_task_and_the_replies_to_everything_i_issued() {
    let mut s = start().await;
    let ion = s.staff_member("Ion", "ion").await;
    s.staff_member("Ana", "ana").await;
    let first = s.task_by("ana", "Prima", &ion, today()).await;
    let second = s.task_by("ana", "A doua", &ion, today()).await;
    let reply = |task: &pb::Task, user: &str, text: &str, request_id: &str| {
        authed(
            pb::CreateTaskReplyRequest {
                task_id: task.id.clone(),
                reply: Some(pb::TaskReply {
                    text: text.into(),
                    ..Default::default()
                }),
                request_id: request_id.into(),
            },
            user,
            &["sales"],
        )
    };
    let r1 = s
        .tasks
        .create_task_reply(reply(&first, "ion", "Am ajuns la client", "r1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r1.author, "ion");
    assert_eq!(r1.author_staff_id, ion.id);
    assert_eq!(r1.task_title, "Prima");
    // The same request id: the same reply, not a second one.
    let again = s
        .tasks
        .create_task_reply(reply(&first, "ion", "Am ajuns la client", "r1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.id, r1.id);
    s.tasks
        .create_task_reply(reply(&first, "ana", "Mulțumesc", ""))
        .await
        .unwrap();
    s.tasks
        .create_task_reply(reply(&second, "ion", "Rezolvat", ""))
        .await
        .unwrap();
    let thread = s
        .tasks
        .list_task_replies(sales(
            pb::ListTaskRepliesRequest {
                task_id: first.id.clone(),
                ..Default::default()
            },
            "ion",
        ))
        .await
        .unwrap()
        .into_inner();
    let texts: Vec<&str> = thread.replies.iter().map(|r| r.text.as_str()).collect();
    assert_eq!(texts, ["Am ajuns la client", "Mulțumesc"]);
    let counted = s
        .tasks
        .get_task(sales(
            pb::GetTaskRequest {
                id: first.id.clone(),
            },
            "ana",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(counted.reply_count, 2);
    // Ana issued both tasks: every reply, newest first; without her own on request.
    let to_me = s
        .tasks
        .list_replies_to_my_tasks(sales(
            pb::ListRepliesToMyTasksRequest {
                exclude_own: true,
                ..Default::default()
            },
            "ana",
        ))
        .await
        .unwrap()
        .into_inner();
    let texts: Vec<&str> = to_me.replies.iter().map(|r| r.text.as_str()).collect();
    assert_eq!(texts, ["Rezolvat", "Am ajuns la client"]);
    // Ion issued nothing.
    let none = s
        .tasks
        .list_replies_to_my_tasks(sales(pb::ListRepliesToMyTasksRequest::default(), "ion"))
        .await
        .unwrap()
        .into_inner();
    assert!(none.replies.is_empty());
    // Ion's reply told Ana (the creator) in the app; Ana's told Ion (the responsible).
    s.wait_message::<ev::NotificationRequested>(NOTIFICATIONS, |n| {
        n.kind == NotificationKind::TaskReply as i32
            && n.recipient_user == "ana"
            && n.idempotency_key == format!("reply:{}:ana", r1.id)
    })
    .await;
    s.wait_message::<ev::NotificationRequested>(NOTIFICATIONS, |n| {
        n.kind == NotificationKind::TaskReply as i32 && n.recipient_user == "ion"
    })
    .await;
    let (_, added) = s
        .wait_message::<ev::TaskReplyAdded>(TASKS, |e| e.reply.as_ref().unwrap().id == r1.id)
        .await;
    assert_eq!(added.task_creator, "ana");
    let err = s
        .tasks
        .create_task_reply(sales(pb::CreateTaskReplyRequest::default(), "ana"))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&err), ["task_id", "reply"]);
}

#[tokio::test]
async fn a_broadcast_gives_each_distinct_recipient_one_task() {
    let mut s = start().await;
    let team = s
        .staff
        .create_staff_category(manager(pb::CreateStaffCategoryRequest {
            category: Some(pb::StaffCategory {
                name: "Teren".into(),
                ..Default::default()
            }),
            request_id: String::new(),
        }))
        .await
        .unwrap()
        .into_inner();
    let mut members = Vec::new();
    for name in ["Ion", "Vasile"] {
        members.push(
            s.staff
                .create_staff(manager(pb::CreateStaffRequest {
                    staff: Some(pb::Staff {
                        name: name.into(),
                        user_name: name.to_lowercase(),
                        category_ids: vec![team.id.clone()],
                        ..Default::default()
                    }),
                    request_id: String::new(),
                }))
                .await
                .unwrap()
                .into_inner(),
        );
    }
    let ana = s.staff_member("Ana", "ana").await;
    let request = |request_id: &str| {
        sales(
            pb::CreateBroadcastRequest {
                broadcast: Some(pb::Broadcast {
                    title: "Inventar".into(),
                    description: "Numărați stocul".into(),
                    // Ion named directly and through the team: one task.
                    staff_ids: vec![members[0].id.clone(), ana.id.clone()],
                    category_ids: vec![team.id.clone()],
                    deadline_date: Some(date_of(today())),
                    ..Default::default()
                }),
                request_id: request_id.into(),
            },
            "mara",
        )
    };
    let broadcast = s
        .tasks
        .create_broadcast(request("inv-1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(broadcast.task_ids.len(), 3);
    let again = s
        .tasks
        .create_broadcast(request("inv-1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.id, broadcast.id);
    assert_eq!(again.task_ids, broadcast.task_ids);
    let tasks = s
        .tasks
        .list_tasks(manager(pb::ListTasksRequest {
            broadcast_id: broadcast.id.clone(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .tasks;
    let mut responsibles: Vec<String> = tasks
        .iter()
        .map(|t| t.responsible_staff_id.clone())
        .collect();
    responsibles.sort();
    let mut expected = vec![members[0].id.clone(), members[1].id.clone(), ana.id.clone()];
    expected.sort();
    assert_eq!(responsibles, expected);
    assert!(
        tasks
            .iter()
            .all(|t| t.source == pb::TaskSource::Broadcast as i32
                && t.broadcast_id == broadcast.id
                && t.creator == "mara")
    );
    // The launcher and managers see it; another user does not.
    s.tasks
        .get_broadcast(sales(
            pb::GetBroadcastRequest {
                id: broadcast.id.clone(),
            },
            "mara",
        ))
        .await
        .unwrap();
    let err = s
        .tasks
        .get_broadcast(sales(
            pb::GetBroadcastRequest {
                id: broadcast.id.clone(),
            },
            "ion",
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let mine = s
        .tasks
        .list_broadcasts(sales(pb::ListBroadcastsRequest::default(), "ion"))
        .await
        .unwrap()
        .into_inner();
    assert!(mine.broadcasts.is_empty());
    let all = s
        .tasks
        .list_broadcasts(manager(pb::ListBroadcastsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.broadcasts.len(), 1);

    // Unknown recipients are named; no recipient at all is refused.
    let err = s
        .tasks
        .create_broadcast(sales(
            pb::CreateBroadcastRequest {
                broadcast: Some(pb::Broadcast {
                    title: "x".into(),
                    staff_ids: vec![uuid::Uuid::now_v7().to_string()],
                    category_ids: vec![uuid::Uuid::now_v7().to_string()],
                    deadline_date: Some(date_of(today())),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            "mara",
        ))
        .await
        .unwrap_err();
    assert_eq!(
        violated_fields(&err),
        ["broadcast.staff_ids[0]", "broadcast.category_ids[0]"]
    );
    let err = s
        .tasks
        .create_broadcast(sales(
            pb::CreateBroadcastRequest {
                broadcast: Some(pb::Broadcast {
                    title: "x".into(),
                    deadline_date: Some(date_of(today())),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            "mara",
        ))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&err), ["broadcast.staff_ids"]);
}

#[tokio::test]
async fn tracking_counts_per_person_and_day_in_pages_of_days() {
    let mut s = start().await;
    let ion = s.staff_member("Ion", "ion").await;
    let dan = s.staff_member("Dan", "dan").await;
    // Ion: one task due yesterday (overdue), one resolved today; Dan: one due tomorrow.
    let yesterday = today().pred_opt().unwrap();
    let tomorrow = today().succ_opt().unwrap();
    s.task_by("mara", "Restantă", &ion, yesterday).await;
    let done = s.task_by("mara", "Gata", &ion, today()).await;
    s.tasks
        .resolve_task(manager(pb::ResolveTaskRequest {
            id: done.id.clone(),
            etag: done.etag.clone(),
            worked_minutes: Some(45),
            ..Default::default()
        }))
        .await
        .unwrap();
    s.task_by("mara", "Mâine", &dan, tomorrow).await;

    let report = s
        .tasks
        .get_tracking_report(manager(pb::GetTrackingReportRequest {
            period: Some(cpb::DateRange {
                start_date: Some(date_of(today())),
                end_date: Some(date_of(tomorrow)),
            }),
            staff_ids: Vec::new(),
            page_days: 1,
            page_token: String::new(),
        }))
        .await
        .unwrap()
        .into_inner();
    // Page 1: today, Dan then Ion (by name).
    let rows: Vec<(&str, i32, i32, i32, i32)> = report
        .rows
        .iter()
        .map(|r| {
            (
                r.staff_name.as_str(),
                r.resolved_count,
                r.open_count,
                r.overdue_count,
                r.booked_minutes,
            )
        })
        .collect();
    assert_eq!(rows, [("Dan", 0, 1, 0, 0), ("Ion", 1, 1, 1, 45)]);
    assert!(!report.next_page_token.is_empty());
    let next = s
        .tasks
        .get_tracking_report(manager(pb::GetTrackingReportRequest {
            period: Some(cpb::DateRange {
                start_date: Some(date_of(today())),
                end_date: Some(date_of(tomorrow)),
            }),
            staff_ids: Vec::new(),
            page_days: 1,
            page_token: report.next_page_token.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next.rows.len(), 2);
    assert_eq!(next.rows[0].day, Some(date_of(tomorrow)));
    assert!(next.next_page_token.is_empty());

    // Ion sees himself only; asking for Dan is NOT_FOUND.
    let own = s
        .tasks
        .get_tracking_report(sales(
            pb::GetTrackingReportRequest {
                period: Some(cpb::DateRange {
                    start_date: Some(date_of(today())),
                    end_date: Some(date_of(today())),
                }),
                ..Default::default()
            },
            "ion",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(own.rows.len(), 1);
    assert_eq!(own.rows[0].staff_id, ion.id);
    let err = s
        .tasks
        .get_tracking_report(sales(
            pb::GetTrackingReportRequest {
                period: Some(cpb::DateRange {
                    start_date: Some(date_of(today())),
                    end_date: Some(date_of(today())),
                }),
                staff_ids: vec![dan.id.clone()],
                ..Default::default()
            },
            "ion",
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = s
        .tasks
        .get_tracking_report(manager(pb::GetTrackingReportRequest {
            page_days: 100,
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&err), ["period", "page_days"]);
}
