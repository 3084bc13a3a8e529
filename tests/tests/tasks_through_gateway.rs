//! Tasks with the real marketing and opportunities beside it, through the gateway: follow-ups
//! from stage changes (O4), coverage and balance with opportunities up and down and a contract
//! drafted from a task (T7), billing a resolved task into a real invoice and retrying a refused
//! one (T9), a task from an imported message (E3), the live feed across two replicas and over
//! gRPC-Web (T10), and every RPC of crm.tasks.v1 answering an empty request with a caller's
//! code.

#![allow(
    clippy::inconsistent_digit_grouping,
    reason = "money is written as units_cents: 145_50 is 145.50"
)]

use std::time::Duration;

use bytes::{Buf as _, BufMut as _, Bytes, BytesMut};
use crm_proto::{
    common, email_import as epb, events as ev,
    marketing::{self as mpb, partner_service_client::PartnerServiceClient},
    notifications::NotificationKind,
    opportunities::{
        self as opb, article_service_client::ArticleServiceClient,
        contract_service_client::ContractServiceClient,
        opportunity_service_client::OpportunityServiceClient,
    },
    tasks::{
        self as pb, service_catalog_service_client::ServiceCatalogServiceClient,
        staff_service_client::StaffServiceClient, task_service_client::TaskServiceClient,
    },
};
use crm_tests::{Stack, authed, token};
use http_body_util::{BodyExt as _, Full};
use prost::Message as _;
use tonic::Code;

const TASKS: &str = "crm.events.tasks";

fn ron(units: i64) -> Option<common::Money> {
    Some(common::Money {
        units,
        currency_code: "RON".into(),
    })
}

fn today() -> chrono::NaiveDate {
    crm_platform::calendar::day_of(chrono::Utc::now(), chrono_tz::Europe::Bucharest)
}

fn date(d: chrono::NaiveDate) -> Option<common::Date> {
    Some(crm_platform::values::date_to_proto(d))
}

fn manager<T>(m: T) -> tonic::Request<T> {
    authed(m, "mara", &["manager"])
}

async fn partner(stack: &Stack, name: &str) -> String {
    PartnerServiceClient::new(stack.gateway_channel().await)
        .create_partner(authed(
            mpb::CreatePartnerRequest {
                partner: Some(mpb::Partner {
                    kind: mpb::PartnerKind::Customer as i32,
                    name: name.into(),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            "ana",
            &["sales"],
        ))
        .await
        .unwrap()
        .into_inner()
        .id
}

async fn staff(stack: &Stack, name: &str, user: &str) -> pb::Staff {
    StaffServiceClient::new(stack.gateway_channel().await)
        .create_staff(manager(pb::CreateStaffRequest {
            staff: Some(pb::Staff {
                name: name.into(),
                user_name: user.into(),
                email: format!("{}@example.ro", name.to_lowercase()),
                ..Default::default()
            }),
            request_id: String::new(),
        }))
        .await
        .unwrap()
        .into_inner()
}

async fn service_article(stack: &Stack, code: &str) -> opb::Article {
    ArticleServiceClient::new(stack.gateway_channel().await)
        .create_article(authed(
            opb::CreateArticleRequest {
                article: Some(opb::Article {
                    code: code.into(),
                    name: format!("Service {code}"),
                    unit: "h".into(),
                    unit_price: ron(100_00),
                    vat_rate_bp: 1900,
                    kind: opb::ArticleKind::Service as i32,
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            "ana",
            &["sales"],
        ))
        .await
        .unwrap()
        .into_inner()
}

async fn post_sale_service(stack: &Stack, name: &str, article_id: &str) -> pb::PostSaleService {
    ServiceCatalogServiceClient::new(stack.gateway_channel().await)
        .create_post_sale_service(manager(pb::CreatePostSaleServiceRequest {
            post_sale_service: Some(pb::PostSaleService {
                name: name.into(),
                article_id: article_id.into(),
                hourly_rate: ron(150_00),
                ..Default::default()
            }),
            request_id: String::new(),
        }))
        .await
        .unwrap()
        .into_inner()
}

async fn wait_task(stack: &Stack, id: &str, check: impl Fn(&pb::Task) -> bool) -> pb::Task {
    let mut tasks = TaskServiceClient::new(stack.gateway_channel().await);
    for _ in 0..400 {
        let task = tasks
            .get_task(manager(pb::GetTaskRequest { id: id.into() }))
            .await
            .unwrap()
            .into_inner();
        if check(&task) {
            return task;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("task {id} never reached the expected state");
}

#[tokio::test]
async fn a_stage_change_with_a_follow_up_becomes_a_task_or_an_email_notice() {
    let stack = Stack::start().await;
    let partner_id = partner(&stack, "Agroserv SRL").await;
    let ion = staff(&stack, "Ion", "ion").await;
    let gheorghe = staff(&stack, "Gheorghe", "").await;
    let ana = staff(&stack, "Ana", "ana").await;
    let mut opportunities = OpportunityServiceClient::new(stack.gateway_channel().await);
    let created = opportunities
        .create_opportunity(authed(
            opb::CreateOpportunityRequest {
                opportunity: Some(opb::Opportunity {
                    partner_id,
                    title: "Irigații".into(),
                    owner_staff_id: ana.id.clone(),
                    potential_value: ron(50_000_00),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            "ana",
            &["sales"],
        ))
        .await
        .unwrap()
        .into_inner();
    let follow_up = today() + chrono::Days::new(10);
    let moved = opportunities
        .change_opportunity_stage(authed(
            opb::ChangeOpportunityStageRequest {
                id: created.id.clone(),
                etag: created.etag.clone(),
                stage: opb::OpportunityStage::Presentation as i32,
                delegate_staff_id: ion.id.clone(),
                follow_up_date: date(follow_up),
                follow_up_note: "Demonstrație".into(),
                ..Default::default()
            },
            "ana",
            &["sales"],
        ))
        .await
        .unwrap()
        .into_inner();
    // Tasks made the follow-up task, for Ion, created by Ana (who changed the stage).
    let (_, task_created) = stack
        .wait_event::<ev::TaskCreated>(TASKS, |e| {
            e.task.as_ref().unwrap().source == pb::TaskSource::FollowUp as i32
        })
        .await;
    let task = task_created.task.unwrap();
    assert_eq!(task.responsible_staff_id, ion.id);
    assert_eq!(task.creator, "ana");
    assert_eq!(task.deadline_date, date(follow_up));
    // Ion finds it in his list through the gateway.
    let mine = TaskServiceClient::new(stack.gateway_channel().await)
        .list_tasks(authed(
            pb::ListTasksRequest {
                view: pb::TaskView::ForMe as i32,
                ..Default::default()
            },
            "ion",
            &["service"],
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(mine.tasks.len(), 1);
    // Opportunities recorded the task on its stage change.
    for _ in 0..400 {
        let changes = opportunities
            .list_stage_changes(authed(
                opb::ListStageChangesRequest {
                    opportunity_id: created.id.clone(),
                    ..Default::default()
                },
                "ana",
                &["sales"],
            ))
            .await
            .unwrap()
            .into_inner();
        if changes
            .stage_changes
            .iter()
            .any(|c| c.follow_up_task_id == task.id)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }

    // Gheorghe does not log in: the next follow-up is an email notice for him.
    opportunities
        .change_opportunity_stage(authed(
            opb::ChangeOpportunityStageRequest {
                id: created.id.clone(),
                etag: moved.etag.clone(),
                stage: opb::OpportunityStage::Offer as i32,
                delegate_staff_id: gheorghe.id.clone(),
                follow_up_date: date(follow_up),
                follow_up_note: "Trimiteți oferta".into(),
                ..Default::default()
            },
            "ana",
            &["sales"],
        ))
        .await
        .unwrap();
    let (_, notice) = stack
        .wait_event::<ev::NotificationRequested>("crm.commands.notifications", |n| {
            n.kind == NotificationKind::FollowUpNotice as i32
        })
        .await;
    assert!(notice.email && !notice.in_app);
    assert_eq!(notice.recipient_email, "gheorghe@example.ro");
    // And Ion's open follow-up got a note that the opportunity moved on.
    wait_task(&stack, &task.id, |t| t.reply_count == 1).await;
}

#[tokio::test]
async fn a_service_request_shows_coverage_drafts_a_contract_and_survives_opportunities_down() {
    let mut stack = Stack::start().await;
    let partner_id = partner(&stack, "Ferma Verde SRL").await;
    let vasile = staff(&stack, "Vasile", "vasile").await;
    let covered_article = service_article(&stack, "SRV-POMPE").await;
    let uncovered_article = service_article(&stack, "SRV-IRIG").await;
    // A signed contract covers the pump service.
    let mut contracts = ContractServiceClient::new(stack.gateway_channel().await);
    let contract = contracts
        .create_contract(authed(
            opb::CreateContractRequest {
                contract: Some(opb::Contract {
                    kind: opb::ContractKind::Subscription as i32,
                    partner_id: partner_id.clone(),
                    start_date: date(today() - chrono::Days::new(30)),
                    end_date: date(today() + chrono::Days::new(300)),
                    lines: vec![opb::DocumentLine {
                        article_id: covered_article.id.clone(),
                        quantity_milli: 1000,
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
                request_id: String::new(),
                task_id: String::new(),
            },
            "ana",
            &["sales"],
        ))
        .await
        .unwrap()
        .into_inner();
    contracts
        .sign_contract(authed(
            opb::SignContractRequest {
                id: contract.id.clone(),
                etag: contract.etag.clone(),
                signing_date: None,
            },
            "ana",
            &["sales"],
        ))
        .await
        .unwrap();
    let pumps = post_sale_service(&stack, "Reparație pompe", &covered_article.id).await;
    let irrigation = post_sale_service(&stack, "Irigații", &uncovered_article.id).await;
    let mut tasks = TaskServiceClient::new(stack.gateway_channel().await);
    let request = |service: &pb::PostSaleService| {
        authed(
            pb::CreateTaskRequest {
                task: Some(pb::Task {
                    title: format!("Cerere: {}", service.name),
                    partner_id: partner_id.clone(),
                    post_sale_service_id: service.id.clone(),
                    responsible_staff_id: vasile.id.clone(),
                    deadline_date: date(today()),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            "ana",
            &["sales"],
        )
    };
    let covered = tasks
        .create_task(request(&pumps))
        .await
        .unwrap()
        .into_inner();
    let info = covered.coverage.unwrap();
    assert!(info.available, "{}", info.unavailable_reason);
    assert!(info.coverage.as_ref().unwrap().covered);
    assert!(!info.can_draft_contract);
    assert_eq!(info.balance.unwrap().partner_id, partner_id);

    let uncovered = tasks
        .create_task(request(&irrigation))
        .await
        .unwrap()
        .into_inner();
    let info = uncovered.coverage.unwrap();
    assert!(info.available && !info.coverage.unwrap().covered && info.can_draft_contract);
    let task = uncovered.task.unwrap();
    let drafted = tasks
        .draft_contract_from_task(authed(
            pb::DraftContractFromTaskRequest {
                id: task.id.clone(),
                contract_kind: opb::ContractKind::Commercial as i32,
                request_id: String::new(),
            },
            "ana",
            &["sales"],
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        drafted.task.unwrap().drafted_contract_id,
        drafted.contract_id
    );
    let draft = contracts
        .get_contract(authed(
            opb::GetContractRequest {
                id: drafted.contract_id.clone(),
            },
            "ana",
            &["sales"],
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(draft.task_id, task.id);
    assert_eq!(draft.partner_id, partner_id);
    assert_eq!(draft.lines[0].article_id, uncovered_article.id);
    assert_eq!(draft.status, opb::ContractStatus::Draft as i32);
    // Once per task.
    let again = tasks
        .draft_contract_from_task(authed(
            pb::DraftContractFromTaskRequest {
                id: task.id.clone(),
                contract_kind: opb::ContractKind::Commercial as i32,
                request_id: String::new(),
            },
            "ana",
            &["sales"],
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.contract_id, drafted.contract_id);

    // Opportunities stops: the task is still saved; the information is "unavailable".
    stack.stop("opportunities").await;
    let started = std::time::Instant::now();
    let saved = tasks
        .create_task(request(&pumps))
        .await
        .unwrap()
        .into_inner();
    assert!(started.elapsed() < Duration::from_secs(5));
    let info = saved.coverage.unwrap();
    assert!(!info.available);
    assert!(!info.unavailable_reason.is_empty());
    assert!(!saved.task.unwrap().id.is_empty());
}

#[tokio::test]
async fn a_resolved_billable_task_is_invoiced_and_a_refused_one_is_retried() {
    let stack = Stack::start().await;
    let partner_id = partner(&stack, "Service Client SRL").await;
    let vasile = staff(&stack, "Vasile", "vasile").await;
    // The service names an article opportunities does not have: the first billing is refused.
    let service = post_sale_service(&stack, "Intervenție", &uuid::Uuid::now_v7().to_string()).await;
    let mut tasks = TaskServiceClient::new(stack.gateway_channel().await);
    let task = tasks
        .create_task(authed(
            pb::CreateTaskRequest {
                task: Some(pb::Task {
                    title: "Pompă blocată".into(),
                    partner_id: partner_id.clone(),
                    post_sale_service_id: service.id.clone(),
                    responsible_staff_id: vasile.id.clone(),
                    deadline_date: date(today()),
                    billable: true,
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            "ana",
            &["sales"],
        ))
        .await
        .unwrap()
        .into_inner()
        .task
        .unwrap();
    tasks
        .resolve_task(authed(
            pb::ResolveTaskRequest {
                id: task.id.clone(),
                etag: task.etag.clone(),
                worked_minutes: Some(120),
                resolution_note: "Curățat filtrul".into(),
                ..Default::default()
            },
            "vasile",
            &["service"],
        ))
        .await
        .unwrap();
    let failed = wait_task(&stack, &task.id, |t| {
        t.billing_status == pb::BillingStatus::Failed as i32
    })
    .await;
    assert!(
        failed.billing_error.contains("article does not exist"),
        "{}",
        failed.billing_error
    );
    // Fix the service's article, then retry: a real estimate and invoice.
    let article = service_article(&stack, "SRV-INT").await;
    ServiceCatalogServiceClient::new(stack.gateway_channel().await)
        .update_post_sale_service(manager(pb::UpdatePostSaleServiceRequest {
            post_sale_service: Some(pb::PostSaleService {
                id: service.id.clone(),
                article_id: article.id.clone(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["article_id".into()],
            }),
            etag: service.etag.clone(),
        }))
        .await
        .unwrap();
    tasks
        .retry_task_billing(authed(
            pb::RetryTaskBillingRequest {
                id: task.id.clone(),
                etag: failed.etag.clone(),
            },
            "vasile",
            &["service"],
        ))
        .await
        .unwrap();
    let invoiced = wait_task(&stack, &task.id, |t| t.invoiced).await;
    assert_eq!(invoiced.billing_attempt, 2);
    assert!(!invoiced.invoice_id.is_empty());
    let estimate = wait_task(&stack, &task.id, |t| !t.estimate_offer_id.is_empty()).await;
    // The invoice bills 2 h at 150.00 RON.
    let (_, issued) = stack
        .wait_event::<ev::InvoiceIssued>("crm.events.opportunities", |e| {
            e.invoice.as_ref().unwrap().id == invoiced.invoice_id
        })
        .await;
    let invoice = issued.invoice.unwrap();
    assert_eq!(invoice.task_id, task.id);
    assert_eq!(invoice.partner_id, partner_id);
    assert_eq!(invoice.lines[0].quantity_milli, 2000);
    assert_eq!(invoice.lines[0].unit_price.as_ref().unwrap().units, 150_00);
    assert!(!estimate.estimate_offer_id.is_empty());
}

#[tokio::test]
async fn an_imported_message_becomes_a_task_on_its_partner() {
    let stack = Stack::start().await;
    let partner_id = partner(&stack, "Agro Import SRL").await;
    let vasile = staff(&stack, "Vasile", "vasile").await;
    let message = epb::ImportedMessage {
        id: uuid::Uuid::now_v7().to_string(),
        from_address: "client@agroimport.ro".into(),
        subject: "Ofertă semințe".into(),
        body_text: "Vă rog o ofertă.".into(),
        partner_id: partner_id.clone(),
        attachments: vec![epb::ImportedAttachment {
            file_name: "lista.xlsx".into(),
            file: Some(common::AttachmentRef {
                blob_key: "b".repeat(64),
                file_name: "lista.xlsx".into(),
                content_type: "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
                    .into(),
                size_bytes: 2048,
                id: uuid::Uuid::now_v7().to_string(),
                upload_token: String::new(),
            }),
        }],
        import_time: Some(crm_platform::values::timestamp(chrono::Utc::now())),
        ..Default::default()
    };
    stack
        .publish(
            "crm.events.email-import",
            "email-import",
            &ev::EmailImported {
                message: Some(message.clone()),
                responsible_staff_id: vasile.id.clone(),
                task_title: "Ofertă semințe".into(),
            },
        )
        .await;
    let (_, created) = stack
        .wait_event::<ev::TaskCreated>(TASKS, |e| {
            e.task.as_ref().unwrap().source_reference == message.id
        })
        .await;
    let task = created.task.unwrap();
    let read = TaskServiceClient::new(stack.gateway_channel().await)
        .get_task(authed(
            pb::GetTaskRequest {
                id: task.id.clone(),
            },
            "vasile",
            &["service"],
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(read.partner_id, partner_id);
    assert_eq!(read.title, "Ofertă semințe");
    assert_eq!(read.attachments.len(), 1);
    assert_eq!(read.attachments[0].file_name, "lista.xlsx");
    assert!(read.description.contains("Vă rog o ofertă."));
}

/// One gRPC-Web frame of `message`.
fn grpc_web_frame(message: &impl prost::Message) -> Bytes {
    let bytes = message.encode_to_vec();
    let mut frame = BytesMut::new();
    frame.put_u8(0);
    frame.put_u32(u32::try_from(bytes.len()).unwrap());
    frame.put_slice(&bytes);
    frame.freeze()
}

#[tokio::test]
async fn a_browser_watches_new_tasks_over_grpc_web_made_on_another_replica() {
    let mut stack = Stack::start().await;
    let ion = staff(&stack, "Ion", "ion").await;
    let replica = stack.start_tasks_replica().await;
    let http1 = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let request = hyper::Request::post(format!(
        "http://{}/crm.tasks.v1.TaskService/WatchNewTasks",
        stack.gateway
    ))
    .version(hyper::Version::HTTP_11)
    .header("content-type", "application/grpc-web+proto")
    .header("x-grpc-web", "1")
    .header("origin", "http://localhost:3000")
    .header(
        "authorization",
        format!("Bearer {}", token("ion", &["service"])),
    )
    .body(Full::new(grpc_web_frame(
        &pb::WatchNewTasksRequest::default(),
    )))
    .unwrap();
    let response = http1.request(request).await.unwrap();
    assert_eq!(response.version(), hyper::Version::HTTP_11);
    let mut body = response.into_body();
    let mut buffer = BytesMut::new();
    // Reads frames until one that decodes into a message matching `want`.
    let mut next_message = async |want: &dyn Fn(&pb::WatchNewTasksResponse) -> bool| loop {
        while buffer.len() >= 5 {
            let len = u32::from_be_bytes(buffer[1..5].try_into().unwrap()) as usize;
            if buffer.len() < 5 + len {
                break;
            }
            let flag = buffer.get_u8();
            buffer.advance(4);
            let payload = buffer.split_to(len);
            assert_eq!(flag & 0x80, 0, "the stream ended: {payload:?}");
            let message = pb::WatchNewTasksResponse::decode(payload).unwrap();
            if want(&message) {
                return message;
            }
        }
        let frame = tokio::time::timeout(Duration::from_secs(10), body.frame())
            .await
            .expect("a frame within 10 s")
            .expect("the body goes on")
            .unwrap();
        if let Ok(data) = frame.into_data() {
            buffer.extend_from_slice(&data);
        }
    };
    let marker = next_message(&|m| m.replay_done).await;
    assert!(!marker.resume_token.is_empty());
    // Made through the other replica, directly.
    let created = TaskServiceClient::new(crm_tests::channel(replica).await)
        .create_task(authed(
            pb::CreateTaskRequest {
                task: Some(pb::Task {
                    title: "Din browser".into(),
                    responsible_staff_id: ion.id.clone(),
                    deadline_date: date(today()),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            "ana",
            &["sales"],
        ))
        .await
        .unwrap()
        .into_inner()
        .task
        .unwrap();
    let arrived = next_message(&|m| m.task.is_some()).await;
    assert_eq!(arrived.task.unwrap().id, created.id);
    assert_eq!(arrived.reason, pb::NewTaskReason::Created as i32);
}

fn methods(package: &str) -> Vec<String> {
    let set = prost_types::FileDescriptorSet::decode(crm_proto::FILE_DESCRIPTOR_SET).unwrap();
    set.file
        .iter()
        .filter(|f| f.package() == package)
        .flat_map(|f| {
            f.service.iter().flat_map(move |s| {
                s.method
                    .iter()
                    .map(move |m| format!("/{}.{}/{}", f.package(), s.name(), m.name()))
            })
        })
        .collect()
}

#[tokio::test]
async fn every_tasks_rpc_answers_an_empty_request_with_a_callers_code() {
    let stack = Stack::start().await;
    let channel = stack.gateway_channel().await;
    let token = format!("Bearer {}", token("root", &["admin"]));
    let methods = methods("crm.tasks.v1");
    // 34 methods, two of them server streams (WatchNewTasks, DownloadAttachment).
    assert_eq!(methods.len(), 34, "{methods:?}");
    for path in methods {
        let mut grpc = tonic::client::Grpc::new(channel.clone());
        grpc.ready().await.unwrap();
        let mut request = tonic::Request::new(Bytes::new());
        request
            .metadata_mut()
            .insert("authorization", token.parse().unwrap());
        request.set_timeout(Duration::from_secs(10));
        let outcome = grpc
            .unary(request, path.parse().unwrap(), crm_tests::raw::RawCodec)
            .await;
        match outcome {
            Ok(_) => {}
            Err(status) => assert!(
                matches!(
                    status.code(),
                    Code::InvalidArgument | Code::NotFound | Code::FailedPrecondition
                ),
                "{path}: {status:?}"
            ),
        }
    }
}
