//! Opportunities with the real marketing beside it, through the gateway: a partner created in
//! marketing gets an opportunity and documents in opportunities (its directory fed by
//! marketing's events), a task billing command (as tasks will send it) becomes an issued
//! estimate and invoice or a rejection, the invoice renders to a PDF a reader can read, and
//! every RPC of crm.opportunities.v1 answers an empty request with a caller's code.

#![allow(
    clippy::inconsistent_digit_grouping,
    reason = "money is written as units_cents: 145_50 is 145.50"
)]

use std::{process::Command, time::Duration};

use crm_proto::{
    common, events as ev,
    marketing::{self as mpb, partner_service_client::PartnerServiceClient},
    opportunities::{
        self as pb, article_service_client::ArticleServiceClient,
        document_render_service_client::DocumentRenderServiceClient,
        invoice_service_client::InvoiceServiceClient,
        opportunity_service_client::OpportunityServiceClient,
        payment_service_client::PaymentServiceClient,
    },
};
use crm_tests::{Stack, authed};
use tonic::Code;
use uuid::Uuid;

const OPPORTUNITIES: &str = "crm.events.opportunities";

fn ron(units: i64) -> Option<common::Money> {
    Some(common::Money {
        units,
        currency_code: "RON".into(),
    })
}

async fn partner(stack: &Stack, name: &str) -> String {
    let mut partners = PartnerServiceClient::new(stack.gateway_channel().await);
    partners
        .create_partner(authed(
            mpb::CreatePartnerRequest {
                partner: Some(mpb::Partner {
                    kind: mpb::PartnerKind::Customer as i32,
                    name: name.into(),
                    city: "Oradea".into(),
                    county: "Bihor".into(),
                    sites: vec![mpb::Site {
                        label: "Sediu".into(),
                        address: "Calea Țării 14".into(),
                        city: "Oradea".into(),
                        head_office: true,
                        ..Default::default()
                    }],
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

async fn service_article(stack: &Stack) -> pb::Article {
    ArticleServiceClient::new(stack.gateway_channel().await)
        .create_article(authed(
            pb::CreateArticleRequest {
                article: Some(pb::Article {
                    code: "SRV-POMPE".into(),
                    name: "Service pompe".into(),
                    unit: "h".into(),
                    unit_price: ron(100_00),
                    vat_rate_bp: 1900,
                    kind: pb::ArticleKind::Service as i32,
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

#[tokio::test]
async fn a_marketing_partner_gets_an_opportunity_and_its_balance_through_the_gateway() {
    let stack = Stack::start().await;
    let partner_id = partner(&stack, "Agroserv SRL").await;
    let mut opportunities = OpportunityServiceClient::new(stack.gateway_channel().await);
    let created = opportunities
        .create_opportunity(authed(
            pb::CreateOpportunityRequest {
                opportunity: Some(pb::Opportunity {
                    partner_id: partner_id.clone(),
                    title: "Irigații".into(),
                    owner_staff_id: Uuid::now_v7().to_string(),
                    potential_value: ron(500_000_00),
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
    assert_eq!(created.partner_id, partner_id);
    let (envelope, _) = stack
        .wait_event::<ev::OpportunityCreated>(OPPORTUNITIES, |e| {
            e.opportunity.as_ref().unwrap().id == created.id
        })
        .await;
    assert_eq!(envelope.actor, "ana");
    let balance = PaymentServiceClient::new(stack.gateway_channel().await)
        .get_partner_balance(authed(
            pb::GetPartnerBalanceRequest {
                partner_id: partner_id.clone(),
                as_of: None,
            },
            "sam",
            &["service"],
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(balance.balances[0].balance.as_ref().unwrap().units, 0);
}

#[tokio::test]
async fn a_task_billing_command_becomes_an_estimate_and_an_invoice_or_a_rejection() {
    let stack = Stack::start().await;
    let partner_id = partner(&stack, "Șțefănescu Îngrășăminte SRL").await;
    let article = service_article(&stack).await;
    let task = Uuid::now_v7();
    let command = |attempt: i32, minutes: i32| ev::IssueTaskInvoice {
        task_id: task.to_string(),
        task_title: "Reparație pompă".into(),
        partner_id: partner_id.clone(),
        article_id: article.id.clone(),
        hourly_rate: ron(120_00),
        worked_minutes: minutes,
        resolve_time: Some(std::time::SystemTime::now().into()),
        resolved_by: "ion".into(),
        billing_attempt: attempt,
        ..Default::default()
    };
    // As tasks will send it: a command on opportunities' command stream.
    stack
        .publish("crm.commands.opportunities", "tasks", &command(1, 0))
        .await;
    let (_, rejected) = stack
        .wait_event::<ev::TaskInvoiceRejected>(OPPORTUNITIES, |e| e.task_id == task.to_string())
        .await;
    assert_eq!(rejected.billing_attempt, 1);
    assert!(rejected.reason.contains("worked"), "{}", rejected.reason);

    stack
        .publish("crm.commands.opportunities", "tasks", &command(2, 45))
        .await;
    let (_, estimate) = stack
        .wait_event::<ev::OfferIssued>(OPPORTUNITIES, |e| {
            e.offer.as_ref().unwrap().task_id == task.to_string()
        })
        .await;
    let (envelope, issued) = stack
        .wait_event::<ev::InvoiceIssued>(OPPORTUNITIES, |e| {
            e.invoice.as_ref().unwrap().task_id == task.to_string()
        })
        .await;
    assert_eq!(envelope.partner_id, partner_id);
    let invoice = issued.invoice.unwrap();
    assert_eq!(invoice.estimate_offer_id, estimate.offer.unwrap().id);
    // 45 minutes = 0.75 h × 120.00 = 90.00 + 19% = 107.10.
    assert_eq!(
        invoice
            .totals
            .as_ref()
            .unwrap()
            .total_with_vat
            .as_ref()
            .unwrap()
            .units,
        107_10
    );

    // Readable through the gateway, also by the service role (T9), and printable.
    let read = InvoiceServiceClient::new(stack.gateway_channel().await)
        .get_invoice(authed(
            pb::GetInvoiceRequest {
                id: invoice.id.clone(),
            },
            "sam",
            &["service"],
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(read.number, invoice.number);
    let rendered = DocumentRenderServiceClient::new(stack.gateway_channel().await)
        .render_document(authed(
            pb::RenderDocumentRequest {
                document: Some(common::DocumentRef {
                    kind: common::DocumentKind::Invoice as i32,
                    id: invoice.id.clone(),
                    number: String::new(),
                }),
                include_content: true,
                ..Default::default()
            },
            "ana",
            &["sales"],
        ))
        .await
        .unwrap()
        .into_inner();
    let pdf = rendered.rendered.unwrap().content;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("invoice.pdf");
    std::fs::write(&path, &pdf).unwrap();
    let out = Command::new("pdftotext")
        .arg(&path)
        .arg("-")
        .output()
        .expect("pdftotext is installed (cargo xtask test installs poppler-utils)");
    let text = String::from_utf8(out.stdout).unwrap();
    for expected in [
        invoice.number.as_str(),
        "Șțefănescu Îngrășăminte SRL",
        "Calea Țării 14",
        "107,10",
    ] {
        assert!(text.contains(expected), "{expected:?} not in:\n{text}");
    }
}

/// Every method of every service of `package`, as `/pkg.Service/Method` paths.
fn methods(package: &str) -> Vec<String> {
    use prost::Message as _;
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
async fn every_opportunities_rpc_answers_an_empty_request_with_a_callers_code() {
    let stack = Stack::start().await;
    let channel = stack.gateway_channel().await;
    let token = format!("Bearer {}", crm_tests::token("root", &["admin"]));
    let methods = methods("crm.opportunities.v1");
    // 61 unary methods and AttachmentService.DownloadAttachment (a server stream: its refusal
    // reaches a unary caller just the same).
    assert_eq!(methods.len(), 62, "{methods:?}");
    for path in methods {
        let mut grpc = tonic::client::Grpc::new(channel.clone());
        grpc.ready().await.unwrap();
        let mut request = tonic::Request::new(bytes::Bytes::new());
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
                matches!(status.code(), Code::InvalidArgument | Code::NotFound),
                "{path}: {status:?}"
            ),
        }
    }
}
