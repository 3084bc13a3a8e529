//! Tasks (T2, T3, T6, X5): creation with availability, views and filters, who sees what,
//! updates through an allow-listed mask, status changes, cancellation, attachments by upload.

mod common;

use common::*;
use crm_platform::{auth::AuthSettings, files::UploadTokens};
use crm_proto::{common as cpb, events as ev, notifications::NotificationKind, tasks as pb};
use tonic::Code;

fn bucharest(day: chrono::NaiveDate, hour: u32) -> prost_types::Timestamp {
    crm_platform::values::timestamp(crm_platform::calendar::at_minute(
        day,
        hour * 60,
        chrono_tz::Europe::Bucharest,
    ))
}

#[tokio::test]
async fn a_task_is_created_with_the_responsibles_availability_and_announced() {
    let mut s = start().await;
    let ion = s.staff_member("Ion", "ion").await;
    s.staff_member("Ana", "ana").await;
    // Wednesday 9 December 2026, 4 h already booked 09:00–13:00.
    let wednesday = day(2026, 12, 9);
    let booked = s
        .tasks
        .create_task(sales(
            pb::CreateTaskRequest {
                task: Some(pb::Task {
                    title: "Montaj pompă".into(),
                    responsible_staff_id: ion.id.clone(),
                    deadline_date: Some(date_of(wednesday)),
                    scheduled_start_time: Some(bucharest(wednesday, 9)),
                    expected_duration_minutes: 240,
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            "ana",
        ))
        .await
        .unwrap()
        .into_inner();
    let first = booked.task.unwrap();
    assert_eq!(first.status, pb::TaskStatus::Open as i32);
    assert_eq!(first.source, pb::TaskSource::Manual as i32);
    assert_eq!(first.creator, "ana");
    assert_eq!(first.billing_status, pb::BillingStatus::NotBillable as i32);
    // The company's default reminder: both channels, 1 day before at 09:00.
    let reminder = first.reminder.unwrap();
    assert!(reminder.email && reminder.in_app && reminder.days_before.is_none());
    assert_eq!(reminder.due_time, Some(bucharest(day(2026, 12, 8), 9)));
    assert!(!booked.availability.unwrap().warning);

    // A second task 12:00–15:00 the same day: 1 h overlaps, 4 + 3 h fit in 8 h.
    let second = s
        .tasks
        .create_task(sales(
            pb::CreateTaskRequest {
                task: Some(pb::Task {
                    title: "Revizie".into(),
                    responsible_staff_id: ion.id.clone(),
                    deadline_date: Some(date_of(wednesday)),
                    scheduled_start_time: Some(bucharest(wednesday, 12)),
                    expected_duration_minutes: 180,
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            "ana",
        ))
        .await
        .unwrap()
        .into_inner();
    let availability = second.availability.unwrap();
    assert!(availability.warning);
    assert_eq!(availability.days.len(), 1);
    let load = &availability.days[0];
    assert_eq!(
        (
            load.booked_minutes,
            load.requested_minutes,
            load.available_minutes
        ),
        (240, 180, 480)
    );
    assert!(!load.overbooked);
    assert_eq!(availability.overlaps.len(), 1);
    assert_eq!(availability.overlaps[0].task_id, first.id);
    assert_eq!(availability.overlaps[0].overlap_minutes, 60);
    // Ana created the first task: she may see its title.
    assert_eq!(availability.overlaps[0].title, "Montaj pompă");
    assert!(availability.summary.contains("1 overlapping task"));

    // TaskCreated, and an in-app notice to Ion (someone else assigned it).
    let (envelope, created) = s
        .wait_message::<ev::TaskCreated>(TASKS, |e| e.task.as_ref().unwrap().id == first.id)
        .await;
    assert_eq!(envelope.actor, "ana");
    assert_eq!(created.task.unwrap().title, "Montaj pompă");
    let (_, notice) = s
        .wait_message::<ev::NotificationRequested>(NOTIFICATIONS, |n| {
            n.idempotency_key == format!("assigned:{}:1", first.id)
        })
        .await;
    assert_eq!(notice.kind, NotificationKind::TaskAssigned as i32);
    assert_eq!(notice.recipient_user, "ion");
    assert!(notice.in_app && !notice.email);
}

#[tokio::test]
async fn bad_tasks_name_every_field() {
    let mut s = start().await;
    let err = s
        .tasks
        .create_task(sales(
            pb::CreateTaskRequest {
                task: Some(pb::Task {
                    title: String::new(),
                    partner_id: "x".into(),
                    deadline_date: None,
                    responsible_staff_id: String::new(),
                    expected_duration_minutes: 20_000,
                    status: pb::TaskStatus::Resolved as i32,
                    reminder: Some(pb::TaskReminder {
                        days_before: Some(5),
                        ..Default::default()
                    }),
                    origin_document: Some(cpb::DocumentRef {
                        kind: cpb::DocumentKind::Partner as i32,
                        id: "y".into(),
                        number: String::new(),
                    }),
                    attachments: vec![cpb::AttachmentRef {
                        blob_key: "nope".into(),
                        file_name: "a.pdf".into(),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            "ana",
        ))
        .await
        .unwrap_err();
    assert_eq!(
        violated_fields(&err),
        [
            "task.title",
            "task.partner_id",
            "task.deadline_date",
            "task.responsible_staff_id",
            "task.expected_duration_minutes",
            "task.reminder.days_before",
            "task.origin_document.kind",
            "task.origin_document.id",
            "task.status",
            "task.attachments[0].blob_key",
        ]
    );
    let err = s
        .tasks
        .create_task(sales(pb::CreateTaskRequest::default(), "ana"))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&err), ["task"]);
    // A responsible who is not active staff.
    let err = s
        .tasks
        .create_task(sales(
            pb::CreateTaskRequest {
                task: Some(pb::Task {
                    title: "x".into(),
                    responsible_staff_id: uuid::Uuid::now_v7().to_string(),
                    deadline_date: Some(date_of(today())),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            "ana",
        ))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&err), ["task.responsible_staff_id"]);
    // Billable needs a partner and a service.
    let ion = s.staff_member("Ion", "ion").await;
    let err = s
        .tasks
        .create_task(sales(
            pb::CreateTaskRequest {
                task: Some(pb::Task {
                    title: "x".into(),
                    responsible_staff_id: ion.id,
                    deadline_date: Some(date_of(today())),
                    billable: true,
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            "ana",
        ))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&err), ["task.billable"]);
}

#[tokio::test]
async fn others_tasks_do_not_exist_for_a_user_and_views_pick_mine() {
    let mut s = start().await;
    let ion = s.staff_member("Ion", "ion").await;
    let ana = s.staff_member("Ana", "ana").await;
    let dan = s.staff_member("Dan", "dan").await;
    let d = day(2026, 12, 10);
    // Ana gives Ion a task; Dan gives himself one; Ion gives Ana one.
    let for_ion = s.task_by("ana", "Pentru Ion", &ion, d).await;
    let dans = s.task_by("dan", "A lui Dan", &dan, d).await;
    let for_ana = s
        .task_by("ion", "Pentru Ana", &ana, d.succ_opt().unwrap())
        .await;

    // Ion sees the task he is responsible for and the one he created; not Dan's.
    let seen = |list: pb::ListTasksResponse| -> Vec<String> {
        list.tasks.into_iter().map(|t| t.title).collect()
    };
    let all = s
        .tasks
        .list_tasks(sales(pb::ListTasksRequest::default(), "ion"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(seen(all), ["Pentru Ion", "Pentru Ana"]);
    let for_me = s
        .tasks
        .list_tasks(sales(
            pb::ListTasksRequest {
                view: pb::TaskView::ForMe as i32,
                ..Default::default()
            },
            "ion",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(seen(for_me), ["Pentru Ion"]);
    let from_me = s
        .tasks
        .list_tasks(sales(
            pb::ListTasksRequest {
                view: pb::TaskView::FromMe as i32,
                ..Default::default()
            },
            "ion",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(seen(from_me), ["Pentru Ana"]);
    // A manager sees all three.
    let managed = s
        .tasks
        .list_tasks(manager(pb::ListTasksRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(managed.tasks.len(), 3);

    // Dan's task is NOT_FOUND for Ion in every call that takes its id.
    let id = dans.id.clone();
    let not_found = |r: Result<(), tonic::Status>| {
        let err = r.unwrap_err();
        assert_eq!(err.code(), Code::NotFound, "{err:?}");
    };
    not_found(
        s.tasks
            .get_task(sales(pb::GetTaskRequest { id: id.clone() }, "ion"))
            .await
            .map(|_| ()),
    );
    not_found(
        s.tasks
            .update_task(sales(
                pb::UpdateTaskRequest {
                    task: Some(pb::Task {
                        id: id.clone(),
                        title: "mine now".into(),
                        ..Default::default()
                    }),
                    update_mask: mask(&["title"]),
                    etag: dans.etag.clone(),
                },
                "ion",
            ))
            .await
            .map(|_| ()),
    );
    not_found(
        s.tasks
            .resolve_task(sales(
                pb::ResolveTaskRequest {
                    id: id.clone(),
                    etag: dans.etag.clone(),
                    ..Default::default()
                },
                "ion",
            ))
            .await
            .map(|_| ()),
    );
    not_found(
        s.tasks
            .cancel_task(sales(
                pb::CancelTaskRequest {
                    id: id.clone(),
                    etag: dans.etag.clone(),
                    reason: String::new(),
                },
                "ion",
            ))
            .await
            .map(|_| ()),
    );
    not_found(
        s.tasks
            .create_task_reply(sales(
                pb::CreateTaskReplyRequest {
                    task_id: id.clone(),
                    reply: Some(pb::TaskReply {
                        text: "hi".into(),
                        ..Default::default()
                    }),
                    request_id: String::new(),
                },
                "ion",
            ))
            .await
            .map(|_| ()),
    );
    not_found(
        s.tasks
            .list_task_replies(sales(
                pb::ListTaskRepliesRequest {
                    task_id: id.clone(),
                    ..Default::default()
                },
                "ion",
            ))
            .await
            .map(|_| ()),
    );
    not_found(
        s.tasks
            .draft_contract_from_task(sales(
                pb::DraftContractFromTaskRequest {
                    id: id.clone(),
                    contract_kind: crm_proto::opportunities::ContractKind::Commercial as i32,
                    request_id: String::new(),
                },
                "ion",
            ))
            .await
            .map(|_| ()),
    );
    not_found(
        s.tasks
            .retry_task_billing(sales(
                pb::RetryTaskBillingRequest {
                    id: id.clone(),
                    etag: dans.etag.clone(),
                },
                "ion",
            ))
            .await
            .map(|_| ()),
    );
    // Ion may read his own.
    s.tasks
        .get_task(sales(pb::GetTaskRequest { id: for_ion.id }, "ion"))
        .await
        .unwrap();
    s.tasks
        .get_task(sales(pb::GetTaskRequest { id: for_ana.id }, "ion"))
        .await
        .unwrap();
}

#[tokio::test]
async fn lists_filter_by_status_period_partner_text_and_page() {
    let mut s = start().await;
    let ion = s.staff_member("Ion", "ion").await;
    let partner = uuid::Uuid::now_v7().to_string();
    let mut ids = Vec::new();
    for (i, d) in [
        day(2026, 12, 7),
        day(2026, 12, 8),
        day(2026, 12, 9),
        day(2026, 12, 10),
    ]
    .into_iter()
    .enumerate()
    {
        let task = s
            .tasks
            .create_task(sales(
                pb::CreateTaskRequest {
                    task: Some(pb::Task {
                        title: format!("Sarcina {i} 50% gata"),
                        responsible_staff_id: ion.id.clone(),
                        deadline_date: Some(date_of(d)),
                        partner_id: if i % 2 == 0 {
                            partner.clone()
                        } else {
                            String::new()
                        },
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
        ids.push(task);
    }
    // Resolve the first.
    s.tasks
        .resolve_task(sales(
            pb::ResolveTaskRequest {
                id: ids[0].id.clone(),
                etag: ids[0].etag.clone(),
                ..Default::default()
            },
            "ana",
        ))
        .await
        .unwrap();
    let list = |r: pb::ListTasksRequest| {
        let mut tasks = s.tasks.clone();
        async move {
            tasks
                .list_tasks(manager(r))
                .await
                .unwrap()
                .into_inner()
                .tasks
                .into_iter()
                .map(|t| t.title)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        list(pb::ListTasksRequest {
            statuses: vec![pb::TaskStatus::Resolved as i32],
            ..Default::default()
        })
        .await,
        ["Sarcina 0 50% gata"]
    );
    assert_eq!(
        list(pb::ListTasksRequest {
            period: Some(cpb::DateRange {
                start_date: Some(date_of(day(2026, 12, 8))),
                end_date: Some(date_of(day(2026, 12, 9))),
            }),
            ..Default::default()
        })
        .await,
        ["Sarcina 1 50% gata", "Sarcina 2 50% gata"]
    );
    assert_eq!(
        list(pb::ListTasksRequest {
            partner_id: partner.clone(),
            ..Default::default()
        })
        .await,
        ["Sarcina 0 50% gata", "Sarcina 2 50% gata"]
    );
    // Resolved today: by the resolution day.
    assert_eq!(
        list(pb::ListTasksRequest {
            period: Some(cpb::DateRange {
                start_date: Some(date_of(today())),
                end_date: Some(date_of(today())),
            }),
            period_basis: pb::TaskPeriodBasis::Resolved as i32,
            ..Default::default()
        })
        .await,
        ["Sarcina 0 50% gata"]
    );
    // "%" is a character, not a wildcard.
    assert_eq!(
        list(pb::ListTasksRequest {
            text_contains: "3 50%".into(),
            ..Default::default()
        })
        .await,
        ["Sarcina 3 50% gata"]
    );
    assert!(
        list(pb::ListTasksRequest {
            text_contains: "3 5_%".into(),
            ..Default::default()
        })
        .await
        .is_empty()
    );
    // Pages of one, in deadline order.
    let mut titles = Vec::new();
    let mut token = String::new();
    loop {
        let page = s
            .tasks
            .list_tasks(manager(pb::ListTasksRequest {
                page_size: 1,
                page_token: token.clone(),
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner();
        titles.extend(page.tasks.into_iter().map(|t| t.title));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(titles.len(), 4);
    assert!(titles.windows(2).all(|w| w[0] < w[1]));
    let err = s
        .tasks
        .list_tasks(manager(pb::ListTasksRequest {
            statuses: vec![42],
            billing_statuses: vec![42],
            partner_id: "z".into(),
            period: Some(cpb::DateRange {
                start_date: Some(date_of(day(2026, 12, 9))),
                end_date: Some(date_of(day(2026, 12, 8))),
            }),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(
        violated_fields(&err),
        [
            "statuses[0]",
            "billing_statuses[0]",
            "period.end_date",
            "partner_id"
        ]
    );
}

#[tokio::test]
async fn updates_follow_the_allow_list_and_reassigning_checks_the_new_responsible() {
    let mut s = start().await;
    let ion = s.staff_member("Ion", "ion").await;
    let ana = s.staff_member("Ana", "ana").await;
    let task = s
        .task_by("ana", "Verificare", &ion, day(2026, 12, 10))
        .await;
    for path in [
        "id",
        "creator",
        "source",
        "invoiced",
        "billing_status",
        "etag",
    ] {
        let err = s
            .tasks
            .update_task(sales(
                pb::UpdateTaskRequest {
                    task: Some(pb::Task {
                        id: task.id.clone(),
                        ..Default::default()
                    }),
                    update_mask: mask(&[path]),
                    etag: task.etag.clone(),
                },
                "ana",
            ))
            .await
            .unwrap_err();
        assert_eq!(violated_fields(&err), ["update_mask"], "{path}");
    }
    // Reassign to Ana and move the deadline: availability comes back, the reminder moves.
    let updated = s
        .tasks
        .update_task(sales(
            pb::UpdateTaskRequest {
                task: Some(pb::Task {
                    id: task.id.clone(),
                    responsible_staff_id: ana.id.clone(),
                    deadline_date: Some(date_of(day(2026, 12, 14))),
                    status: pb::TaskStatus::InProgress as i32,
                    ..Default::default()
                }),
                update_mask: mask(&["responsible_staff_id", "deadline_date", "status"]),
                etag: task.etag.clone(),
            },
            "ion",
        ))
        .await
        .unwrap()
        .into_inner();
    let t = updated.task.unwrap();
    assert_eq!(t.responsible_staff_id, ana.id);
    assert_eq!(t.status, pb::TaskStatus::InProgress as i32);
    assert!(t.start_time.is_some());
    assert_eq!(
        t.reminder.unwrap().due_time,
        Some(bucharest(day(2026, 12, 13), 9))
    );
    assert_eq!(updated.availability.unwrap().staff_id, ana.id);
    let (_, changed) = s
        .wait_message::<ev::TaskUpdated>(TASKS, |e| e.task.as_ref().unwrap().id == task.id)
        .await;
    assert_eq!(
        changed.changed_fields,
        ["responsible_staff_id", "deadline_date", "status"]
    );
    // Ana heard of it (Ion assigned it to her).
    s.wait_message::<ev::NotificationRequested>(NOTIFICATIONS, |n| {
        n.recipient_user == "ana" && n.kind == NotificationKind::TaskAssigned as i32
    })
    .await;
    // Only open ↔ in progress through updates.
    let err = s
        .tasks
        .update_task(sales(
            pb::UpdateTaskRequest {
                task: Some(pb::Task {
                    id: task.id.clone(),
                    status: pb::TaskStatus::Resolved as i32,
                    ..Default::default()
                }),
                update_mask: mask(&["status"]),
                etag: t.etag.clone(),
            },
            "ana",
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);

    // Cancelled: the reminder goes, only attachments change from then on.
    let cancelled = s
        .tasks
        .cancel_task(sales(
            pb::CancelTaskRequest {
                id: task.id.clone(),
                etag: t.etag.clone(),
                reason: "Clientul a renunțat".into(),
            },
            "ana",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cancelled.status, pb::TaskStatus::Cancelled as i32);
    assert!(cancelled.reminder.unwrap().due_time.is_none());
    let pending: i64 = sqlx::query_scalar("SELECT count(*) FROM reminders")
        .fetch_one(&s.pool)
        .await
        .unwrap();
    assert_eq!(pending, 0);
    let err = s
        .tasks
        .update_task(sales(
            pb::UpdateTaskRequest {
                task: Some(pb::Task {
                    id: task.id.clone(),
                    title: "x".into(),
                    ..Default::default()
                }),
                update_mask: mask(&["title"]),
                etag: cancelled.etag.clone(),
            },
            "ana",
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    let err = s
        .tasks
        .cancel_task(sales(
            pb::CancelTaskRequest {
                id: task.id.clone(),
                etag: cancelled.etag.clone(),
                reason: String::new(),
            },
            "ana",
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
}

#[tokio::test]
async fn files_are_attached_by_upload_token_and_downloaded_by_who_sees_the_task() {
    let mut s = start().await;
    let ion = s.staff_member("Ion", "ion").await;
    s.staff_member("Dan", "dan").await;
    // A file as the file service would have stored and signed it for Ana.
    let bytes = format!("fișă tehnică {}", uuid::Uuid::now_v7()).into_bytes();
    let key = crm_platform::blob::BlobStore::local(&s.settings.base.blob.root)
        .unwrap()
        .put(bytes.clone().into())
        .await
        .unwrap();
    let mut file = cpb::AttachmentRef {
        blob_key: key.clone(),
        file_name: "fisa.txt".into(),
        content_type: "text/plain; charset=utf-8".into(),
        size_bytes: i64::try_from(bytes.len()).unwrap(),
        id: uuid::Uuid::now_v7().to_string(),
        upload_token: String::new(),
    };
    let tokens = UploadTokens::new(&AuthSettings::development());
    let signed = cpb::AttachmentRef {
        upload_token: tokens.sign(
            &file,
            "ana",
            chrono::Utc::now() + chrono::Duration::hours(1),
        ),
        ..file.clone()
    };
    // Without a token, or someone else's, it is refused.
    for (given, user) in [(file.clone(), "ana"), (signed.clone(), "dan")] {
        let err = s
            .tasks
            .create_task(sales(
                pb::CreateTaskRequest {
                    task: Some(pb::Task {
                        title: "Cu fișă".into(),
                        responsible_staff_id: ion.id.clone(),
                        deadline_date: Some(date_of(today())),
                        attachments: vec![given],
                        ..Default::default()
                    }),
                    request_id: String::new(),
                },
                user,
            ))
            .await
            .unwrap_err();
        assert_eq!(violated_fields(&err), ["task.attachments[0].upload_token"]);
    }
    let task = s
        .tasks
        .create_task(sales(
            pb::CreateTaskRequest {
                task: Some(pb::Task {
                    title: "Cu fișă".into(),
                    responsible_staff_id: ion.id.clone(),
                    deadline_date: Some(date_of(today())),
                    attachments: vec![signed],
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
    assert_eq!(task.attachments.len(), 1);
    assert!(task.attachments[0].upload_token.is_empty());
    // The file service hears that the upload is claimed.
    let (_, attached) = s
        .wait_message::<ev::FilesAttached>(TASKS, |e| e.owner.as_ref().unwrap().id == task.id)
        .await;
    assert_eq!(attached.blob_keys, [key]);

    // Ion (responsible) downloads it; Dan does not see the task: NOT_FOUND.
    let request = |user: &str| {
        authed(
            crm_proto::files::DownloadAttachmentRequest {
                owner: Some(cpb::DocumentRef {
                    kind: cpb::DocumentKind::Task as i32,
                    id: task.id.clone(),
                    number: String::new(),
                }),
                attachment_id: task.attachments[0].id.clone(),
            },
            user,
            &["service"],
        )
    };
    let mut stream = s
        .attachments
        .download_attachment(request("ion"))
        .await
        .unwrap()
        .into_inner();
    let mut got = Vec::new();
    while let Some(chunk) = stream.message().await.unwrap() {
        if let Some(crm_proto::files::file_chunk::Part::Data(data)) = chunk.part {
            got.extend(data);
        }
    }
    assert_eq!(got, bytes);
    let err = s
        .attachments
        .download_attachment(request("dan"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    // Keeping the file on an update needs no token.
    file.id = task.attachments[0].id.clone();
    s.tasks
        .update_task(sales(
            pb::UpdateTaskRequest {
                task: Some(pb::Task {
                    id: task.id.clone(),
                    attachments: vec![file],
                    ..Default::default()
                }),
                update_mask: mask(&["attachments"]),
                etag: task.etag.clone(),
            },
            "ana",
        ))
        .await
        .unwrap();
}

#[tokio::test]
async fn check_availability_answers_for_a_planned_slot_and_names_bad_fields() {
    let mut s = start().await;
    let ion = s.staff_member("Ion", "ion").await;
    let saturday = day(2026, 12, 12);
    let answer = s
        .tasks
        .check_availability(sales(
            pb::CheckAvailabilityRequest {
                staff_id: ion.id.clone(),
                deadline_date: Some(date_of(saturday)),
                expected_duration_minutes: 60,
                ..Default::default()
            },
            "ana",
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(answer.warning);
    assert_eq!(answer.days[0].available_minutes, 0);
    assert!(
        answer.summary.contains("not a working day"),
        "{}",
        answer.summary
    );
    let err = s
        .tasks
        .check_availability(sales(pb::CheckAvailabilityRequest::default(), "ana"))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&err), ["staff_id", "deadline_date"]);
}
