//! What tasks does with its siblings' events and what it commands them: billing a resolved task
//! and the answers (T9), follow-ups from stage changes (O4), tasks from imported email (E3).

#![allow(
    clippy::inconsistent_digit_grouping,
    reason = "money is written as units_cents: 150_00 is 150.00"
)]

mod common;

use common::*;
use crm_proto::{
    common as cpb, email_import as epb, events as ev,
    notifications::NotificationKind,
    opportunities::{self as opb, OpportunityStage},
    tasks as pb,
};
use tonic::Code;

async fn billable_task(s: &mut Service) -> (pb::Task, pb::PostSaleService, String) {
    let ion = s.staff_member("Ion", "ion").await;
    let article = uuid::Uuid::now_v7().to_string();
    let service = s
        .catalogue
        .create_post_sale_service(manager(pb::CreatePostSaleServiceRequest {
            post_sale_service: Some(pb::PostSaleService {
                name: "Reparație".into(),
                article_id: article,
                hourly_rate: Some(cpb::Money {
                    units: 150_00,
                    currency_code: "RON".into(),
                }),
                ..Default::default()
            }),
            request_id: String::new(),
        }))
        .await
        .unwrap()
        .into_inner();
    let partner = uuid::Uuid::now_v7().to_string();
    let created = s
        .tasks
        .create_task(sales(
            pb::CreateTaskRequest {
                task: Some(pb::Task {
                    title: "Pompă defectă".into(),
                    responsible_staff_id: ion.id,
                    deadline_date: Some(date_of(today())),
                    partner_id: partner.clone(),
                    post_sale_service_id: service.id.clone(),
                    billable: true,
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            "ana",
        ))
        .await
        .unwrap()
        .into_inner();
    // The partner and the service are named: the answer carries the coverage information,
    // unavailable here (no opportunities), and the task is saved regardless.
    let coverage = created.coverage.unwrap();
    assert!(!coverage.available);
    let task = created.task.unwrap();
    assert_eq!(task.billing_status, pb::BillingStatus::NotYetDue as i32);
    (task, service, partner)
}

fn invoice(task: &pb::Task, attempt: i32) -> opb::Invoice {
    opb::Invoice {
        id: uuid::Uuid::now_v7().to_string(),
        task_id: task.id.clone(),
        task_billing_attempt: attempt,
        ..Default::default()
    }
}

#[tokio::test]
async fn resolving_a_billable_task_bills_it_and_the_answers_move_its_billing() {
    let mut s = start().await;
    let (task, service, partner) = billable_task(&mut s).await;
    let resolved = s
        .tasks
        .resolve_task(sales(
            pb::ResolveTaskRequest {
                id: task.id.clone(),
                etag: task.etag.clone(),
                worked_minutes: Some(90),
                resolution_note: "Înlocuit rulment".into(),
                resolve_time: None,
            },
            "ana",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resolved.status, pb::TaskStatus::Resolved as i32);
    assert_eq!(resolved.worked_minutes, 90);
    assert_eq!(resolved.billing_status, pb::BillingStatus::Pending as i32);
    assert_eq!(resolved.billing_attempt, 1);

    // The command, written with the resolution.
    let (envelope, command) = s
        .wait_message::<ev::IssueTaskInvoice>(BILLING, |c| c.task_id == task.id)
        .await;
    assert_eq!(envelope.actor, "ana");
    assert_eq!(command.partner_id, partner);
    assert_eq!(command.article_id, service.article_id);
    assert_eq!(command.hourly_rate.unwrap().units, 150_00);
    assert_eq!(command.worked_minutes, 90);
    assert_eq!(command.billing_attempt, 1);
    assert_eq!(command.resolution_note, "Înlocuit rulment");
    s.wait_message::<ev::TaskResolved>(TASKS, |e| e.task.as_ref().unwrap().id == task.id)
        .await;

    // Opportunities refuses: FAILED with the reason; the task can be found by it.
    s.publish(
        OPPORTUNITIES,
        "service:opportunities",
        &ev::TaskInvoiceRejected {
            task_id: task.id.clone(),
            reason: "the article is inactive".into(),
            command_id: envelope.id.clone(),
            billing_attempt: 1,
        },
    )
    .await;
    let failed = s
        .wait_task(&task.id, |t| {
            t.billing_status == pb::BillingStatus::Failed as i32
        })
        .await;
    assert_eq!(failed.billing_error, "the article is inactive");
    let listed = s
        .tasks
        .list_tasks(manager(pb::ListTasksRequest {
            billing_statuses: vec![pb::BillingStatus::Failed as i32],
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.tasks.len(), 1);

    // Retry: attempt 2, once per etag.
    let retried = s
        .tasks
        .retry_task_billing(sales(
            pb::RetryTaskBillingRequest {
                id: task.id.clone(),
                etag: failed.etag.clone(),
            },
            "ana",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(retried.billing_attempt, 2);
    assert_eq!(retried.billing_status, pb::BillingStatus::Pending as i32);
    assert!(retried.billing_error.is_empty());
    let err = s
        .tasks
        .retry_task_billing(sales(
            pb::RetryTaskBillingRequest {
                id: task.id.clone(),
                etag: failed.etag.clone(),
            },
            "ana",
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Aborted);
    s.wait_message::<ev::IssueTaskInvoice>(BILLING, |c| {
        c.task_id == task.id && c.billing_attempt == 2
    })
    .await;
    // A late answer about attempt 1 changes nothing.
    s.publish(
        OPPORTUNITIES,
        "service:opportunities",
        &ev::InvoiceIssued {
            invoice: Some(invoice(&task, 1)),
            order_adds_to_campaign_revenues: false,
        },
    )
    .await;
    // The invoice of attempt 2 makes it invoiced.
    let second = invoice(&task, 2);
    s.publish(
        OPPORTUNITIES,
        "service:opportunities",
        &ev::InvoiceIssued {
            invoice: Some(second.clone()),
            order_adds_to_campaign_revenues: false,
        },
    )
    .await;
    let invoiced = s.wait_task(&task.id, |t| t.invoiced).await;
    assert_eq!(invoiced.invoice_id, second.id);
    assert_eq!(invoiced.billing_status, pb::BillingStatus::Invoiced as i32);
    // The invoice is cancelled: billing CANCELLED, and retry is allowed again.
    s.publish(
        OPPORTUNITIES,
        "service:opportunities",
        &ev::InvoiceCancelled {
            invoice: Some(second),
            order_adds_to_campaign_revenues: false,
        },
    )
    .await;
    let cancelled = s
        .wait_task(&task.id, |t| {
            t.billing_status == pb::BillingStatus::Cancelled as i32
        })
        .await;
    assert!(!cancelled.invoiced);
    s.tasks
        .retry_task_billing(sales(
            pb::RetryTaskBillingRequest {
                id: task.id.clone(),
                etag: cancelled.etag,
            },
            "ana",
        ))
        .await
        .unwrap();
    // The estimate of a task is recorded from OfferIssued.
    let offer_id = uuid::Uuid::now_v7().to_string();
    s.publish(
        OPPORTUNITIES,
        "service:opportunities",
        &ev::OfferIssued {
            offer: Some(opb::Offer {
                id: offer_id.clone(),
                task_id: task.id.clone(),
                purpose: opb::OfferPurpose::ServiceEstimate as i32,
                ..Default::default()
            }),
        },
    )
    .await;
    s.wait_task(&task.id, |t| t.estimate_offer_id == offer_id)
        .await;
}

#[tokio::test]
async fn resolution_times_are_checked_and_a_resolved_task_is_final() {
    let mut s = start().await;
    let ion = s.staff_member("Ion", "ion").await;
    let task = s.task_by("ana", "Test", &ion, today()).await;
    let err = s
        .tasks
        .resolve_task(sales(
            pb::ResolveTaskRequest {
                id: task.id.clone(),
                etag: task.etag.clone(),
                resolve_time: Some(crm_platform::values::timestamp(
                    chrono::Utc::now() + chrono::Duration::hours(1),
                )),
                worked_minutes: Some(0),
                ..Default::default()
            },
            "ana",
        ))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&err), ["worked_minutes"]);
    let err = s
        .tasks
        .resolve_task(sales(
            pb::ResolveTaskRequest {
                id: task.id.clone(),
                etag: task.etag.clone(),
                resolve_time: Some(crm_platform::values::timestamp(
                    chrono::Utc::now() + chrono::Duration::hours(1),
                )),
                ..Default::default()
            },
            "ana",
        ))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&err), ["resolve_time"]);
    let resolved = s
        .tasks
        .resolve_task(sales(
            pb::ResolveTaskRequest {
                id: task.id.clone(),
                etag: task.etag.clone(),
                ..Default::default()
            },
            "ana",
        ))
        .await
        .unwrap()
        .into_inner();
    // Resolved within its first minute: one minute worked; not billable, no command.
    assert_eq!(resolved.worked_minutes, 1);
    assert_eq!(
        resolved.billing_status,
        pb::BillingStatus::NotBillable as i32
    );
    let err = s
        .tasks
        .resolve_task(sales(
            pb::ResolveTaskRequest {
                id: task.id.clone(),
                etag: resolved.etag.clone(),
                ..Default::default()
            },
            "ana",
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    let err = s
        .tasks
        .retry_task_billing(sales(
            pb::RetryTaskBillingRequest {
                id: task.id.clone(),
                etag: resolved.etag.clone(),
            },
            "ana",
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        s.messages::<ev::IssueTaskInvoice>(BILLING, |_| true)
            .await
            .is_empty()
    );
}

fn stage_change(
    opportunity: &opb::Opportunity,
    stage: OpportunityStage,
    previous: OpportunityStage,
    delegate: &str,
    follow_up: Option<chrono::NaiveDate>,
) -> ev::OpportunityStageChanged {
    ev::OpportunityStageChanged {
        opportunity: Some(opportunity.clone()),
        stage_change: Some(opb::StageChange {
            id: uuid::Uuid::now_v7().to_string(),
            opportunity_id: opportunity.id.clone(),
            stage: stage as i32,
            previous_stage: previous as i32,
            change_time: Some(crm_platform::values::timestamp(chrono::Utc::now())),
            delegate_staff_id: delegate.into(),
            follow_up_date: follow_up.map(date_of),
            follow_up_note: "Sunați pentru demonstrație".into(),
            changed_by: "ana".into(),
            ..Default::default()
        }),
    }
}

#[tokio::test]
async fn a_follow_up_becomes_a_task_for_a_user_and_an_email_for_anyone_else() {
    let mut s = start().await;
    let ion = s.staff_member("Ion", "ion").await;
    let ana = s.staff_member("Ana", "ana").await;
    // Gheorghe does not log in.
    let gheorghe = s.staff_member("Gheorghe", "").await;
    let opportunity = opb::Opportunity {
        id: uuid::Uuid::now_v7().to_string(),
        partner_id: uuid::Uuid::now_v7().to_string(),
        title: "Irigații 2027".into(),
        owner_staff_id: ana.id.clone(),
        ..Default::default()
    };
    let follow_up = day(2027, 1, 15);
    let change = stage_change(
        &opportunity,
        OpportunityStage::Presentation,
        OpportunityStage::New,
        &ion.id,
        Some(follow_up),
    );
    let change_id = change.stage_change.as_ref().unwrap().id.clone();
    // Delivered twice (at least once): one task.
    s.publish(OPPORTUNITIES, "ana", &change).await;
    s.publish(OPPORTUNITIES, "ana", &change).await;
    let (_, created) = s
        .wait_message::<ev::TaskCreated>(TASKS, |e| {
            e.task.as_ref().unwrap().source_reference == change_id
        })
        .await;
    let task = created.task.unwrap();
    assert_eq!(task.source, pb::TaskSource::FollowUp as i32);
    assert_eq!(task.responsible_staff_id, ion.id);
    assert_eq!(task.deadline_date, Some(date_of(follow_up)));
    assert_eq!(task.creator, "ana");
    assert_eq!(task.creator_staff_id, ana.id);
    assert_eq!(task.partner_id, opportunity.partner_id);
    assert_eq!(task.title, "Follow-up: Irigații 2027");
    assert_eq!(task.description, "Sunați pentru demonstrație");
    assert_eq!(
        task.origin_document.as_ref().unwrap().kind,
        cpb::DocumentKind::Opportunity as i32
    );
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(
        s.messages::<ev::TaskCreated>(TASKS, |e| {
            e.task.as_ref().unwrap().source_reference == change_id
        })
        .await
        .len(),
        1
    );
    // "From me" for the user who changed the stage.
    let from_ana = s
        .tasks
        .list_tasks(sales(
            pb::ListTasksRequest {
                view: pb::TaskView::FromMe as i32,
                ..Default::default()
            },
            "ana",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(from_ana.tasks.len(), 1);

    // The opportunity moves on: the follow-up stays open, with a note in its thread.
    let later = stage_change(
        &opportunity,
        OpportunityStage::Offer,
        OpportunityStage::Presentation,
        "",
        None,
    );
    s.publish(OPPORTUNITIES, "ana", &later).await;
    let noted = s.wait_task(&task.id, |t| t.reply_count == 1).await;
    assert_eq!(noted.status, pb::TaskStatus::Open as i32);
    let replies = s
        .tasks
        .list_task_replies(manager(pb::ListTaskRepliesRequest {
            task_id: task.id.clone(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(replies.replies[0].author.is_empty());
    assert!(
        replies.replies[0]
            .text
            .contains("from presentation to offer"),
        "{}",
        replies.replies[0].text
    );
    // Lost: noted too.
    let lost = ev::OpportunityLost {
        opportunity: Some(opportunity.clone()),
        stage_change: Some(opb::StageChange {
            id: uuid::Uuid::now_v7().to_string(),
            stage: OpportunityStage::Lost as i32,
            lost_note: "Buget tăiat".into(),
            ..Default::default()
        }),
        lost_reason_name: "Preț".into(),
    };
    s.publish(OPPORTUNITIES, "ana", &lost).await;
    s.wait_task(&task.id, |t| t.reply_count == 2).await;

    // A delegate who does not log in gets an email notice instead.
    let for_gheorghe = stage_change(
        &opportunity,
        OpportunityStage::Negotiation,
        OpportunityStage::Offer,
        &gheorghe.id,
        Some(follow_up),
    );
    let key = format!(
        "follow-up:{}",
        for_gheorghe.stage_change.as_ref().unwrap().id
    );
    s.publish(OPPORTUNITIES, "ana", &for_gheorghe).await;
    let (_, notice) = s
        .wait_message::<ev::NotificationRequested>(NOTIFICATIONS, |n| n.idempotency_key == key)
        .await;
    assert_eq!(notice.kind, NotificationKind::FollowUpNotice as i32);
    assert!(notice.email && !notice.in_app);
    assert_eq!(notice.recipient_email, "gheorghe@example.ro");
    assert!(
        notice.body_text.contains("2027-01-15"),
        "{}",
        notice.body_text
    );
}

#[tokio::test]
async fn an_imported_message_becomes_a_task_with_its_text_and_files() {
    let mut s = start_with(crm_platform::clock::Clock::system(), |settings| {
        settings.email_tasks.deadline_working_days = 2;
    })
    .await;
    let vasile = s.staff_member("Vasile", "vasile").await;
    let partner = uuid::Uuid::now_v7().to_string();
    let file = cpb::AttachmentRef {
        blob_key: "a".repeat(64),
        file_name: "factura.pdf".into(),
        content_type: "application/pdf".into(),
        size_bytes: 1234,
        id: uuid::Uuid::now_v7().to_string(),
        upload_token: String::new(),
    };
    let long_body = "Bună ziua,\n".to_owned() + &"pompa nu pornește. ".repeat(2000);
    // Thursday 3 December 2026, 10:00 Bucharest: due Monday 7 December.
    let imported_at =
        crm_platform::calendar::at_minute(day(2026, 12, 3), 600, chrono_tz::Europe::Bucharest);
    let message = epb::ImportedMessage {
        id: uuid::Uuid::now_v7().to_string(),
        from_address: "client@agroserv.ro".into(),
        from_name: "Ion Client".into(),
        subject: "Pompa".into(),
        body_text: long_body.clone(),
        attachments: vec![
            epb::ImportedAttachment {
                file_name: "factura.pdf".into(),
                file: Some(file.clone()),
            },
            // Named only (an Outlook text export): nothing to attach.
            epb::ImportedAttachment {
                file_name: "poza.jpg".into(),
                file: None,
            },
        ],
        partner_id: partner.clone(),
        importer: "vasile".into(),
        import_time: Some(crm_platform::values::timestamp(imported_at)),
        ..Default::default()
    };
    let event = ev::EmailImported {
        message: Some(message.clone()),
        responsible_staff_id: vasile.id.clone(),
        task_title: "Pompa".into(),
    };
    s.publish(EMAIL_IMPORT, "vasile", &event).await;
    s.publish(EMAIL_IMPORT, "vasile", &event).await;
    let (_, created) = s
        .wait_message::<ev::TaskCreated>(TASKS, |e| {
            e.task.as_ref().unwrap().source_reference == message.id
        })
        .await;
    let task = created.task.unwrap();
    assert_eq!(task.source, pb::TaskSource::EmailImport as i32);
    assert_eq!(task.partner_id, partner);
    assert_eq!(task.responsible_staff_id, vasile.id);
    assert_eq!(task.deadline_date, Some(date_of(day(2026, 12, 7))));
    assert!(
        task.description
            .starts_with("From: Ion Client <client@agroserv.ro>")
    );
    assert!(task.description.chars().count() <= 20_000);
    assert!(
        task.description
            .ends_with("(the whole message is attached)")
    );
    // The whole text as a file, then the message's own file.
    assert_eq!(task.attachments.len(), 2);
    assert_eq!(task.attachments[0].file_name, "message.txt");
    assert_eq!(task.attachments[1].blob_key, file.blob_key);
    let whole = crm_platform::blob::BlobStore::local(&s.settings.base.blob.root)
        .unwrap()
        .get(&task.attachments[0].blob_key)
        .await
        .unwrap();
    assert!(
        String::from_utf8(whole.to_vec())
            .unwrap()
            .ends_with(&long_body)
    );
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM tasks WHERE source = 'email_import'")
        .fetch_one(&s.pool)
        .await
        .unwrap();
    assert_eq!(count, 1);
}

#[tokio::test]
async fn an_imported_message_without_a_responsible_uses_the_configured_default() {
    let default = uuid::Uuid::now_v7();
    let mut s = start_with(crm_platform::clock::Clock::system(), |settings| {
        settings.email_tasks.default_responsible_staff_id = default.to_string();
    })
    .await;
    // The configured default must be staff: create one with that id through the database,
    // as an operator would configure an existing staff member's id.
    let staff = s.staff_member("Receptie", "receptie").await;
    sqlx::query("UPDATE staff SET id = $1 WHERE id = $2")
        .bind(default)
        .bind(uuid::Uuid::parse_str(&staff.id).unwrap())
        .execute(&s.pool)
        .await
        .unwrap();
    let message = epb::ImportedMessage {
        id: uuid::Uuid::now_v7().to_string(),
        from_address: "x@y.ro".into(),
        body_text: "Salut".into(),
        partner_id: uuid::Uuid::now_v7().to_string(),
        ..Default::default()
    };
    s.publish(
        EMAIL_IMPORT,
        "service:email-import",
        &ev::EmailImported {
            message: Some(message.clone()),
            responsible_staff_id: String::new(),
            task_title: String::new(),
        },
    )
    .await;
    let (_, created) = s
        .wait_message::<ev::TaskCreated>(TASKS, |e| {
            e.task.as_ref().unwrap().source_reference == message.id
        })
        .await;
    let task = created.task.unwrap();
    assert_eq!(task.responsible_staff_id, default.to_string());
    assert_eq!(task.title, "Email from x@y.ro");
}
