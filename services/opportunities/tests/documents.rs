//! The sales documents end to end on real PostgreSQL and Redis: articles, offers, orders,
//! contracts and coverage, invoices with numbering, subscription billing, payments and
//! balances, rendering read back with a real PDF reader, and task billing from the command
//! stream (O6–O9, T9, N2).

#![allow(
    clippy::inconsistent_digit_grouping,
    reason = "money is written as units_cents: 145_50 is 145.50"
)]

mod common;

use std::{collections::HashSet, process::Command};

use chrono::Datelike as _;
use common::*;
use crm_proto::{
    common as cpb, events as ev,
    opportunities::{self as pb},
};
use prost_types::FieldMask;
use tonic::Code;
use uuid::Uuid;

fn mask(paths: &[&str]) -> Option<FieldMask> {
    Some(FieldMask {
        paths: paths.iter().map(|p| (*p).to_owned()).collect(),
    })
}

fn year_prefix(prefix: &str) -> String {
    use chrono::Datelike as _;
    format!("{prefix}{}-", today().year())
}

/// A confirmed order of `partner` with `lines`.
async fn confirmed_order(
    s: &mut Service,
    partner: Uuid,
    lines: Vec<pb::DocumentLine>,
) -> pb::Order {
    let order = s
        .orders
        .create_order(sales(pb::CreateOrderRequest {
            order: Some(pb::Order {
                partner_id: partner.to_string(),
                lines,
                ..Default::default()
            }),
            request_id: String::new(),
        }))
        .await
        .unwrap()
        .into_inner();
    s.orders
        .confirm_order(sales(pb::ConfirmOrderRequest {
            id: order.id,
            etag: order.etag,
        }))
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test]
async fn an_offer_from_an_opportunity_is_numbered_accepted_and_becomes_an_order_and_a_contract() {
    let mut s = start().await;
    let partner = s.customer("Șțefănescu Îngrășăminte SRL").await;
    let seed = s.article("SEM-01", 145_50, false).await;
    let service = s.article("SRV-IRIG", 250_00, true).await;
    let o = s.opportunity(partner, ron(1_000_000)).await;

    // NEW is too early for an offer.
    let offer_request = |lines| pb::CreateOfferRequest {
        offer: Some(pb::Offer {
            opportunity_id: o.id.clone(),
            lines,
            valid_until: proto_date(today() + chrono::Days::new(30)),
            ..Default::default()
        }),
        request_id: String::new(),
    };
    let status = s
        .offers
        .create_offer(sales(offer_request(vec![line(&seed, 12_000)])))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    let o = s.move_to(&o, pb::OpportunityStage::Offer).await;

    // A bad line names itself.
    let status = s
        .offers
        .create_offer(sales(offer_request(vec![
            line(&seed, 12_000),
            pb::DocumentLine {
                article_id: Uuid::now_v7().to_string(),
                quantity_milli: 0,
                ..Default::default()
            },
        ])))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["offer.lines[1].quantity_milli"]);
    let status = s
        .offers
        .create_offer(sales(offer_request(vec![pb::DocumentLine {
            article_id: Uuid::now_v7().to_string(),
            quantity_milli: 1000,
            ..Default::default()
        }])))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["offer.lines[0].article_id"]);

    let offer = s
        .offers
        .create_offer(sales(offer_request(vec![
            line(&seed, 12_000),
            pb::DocumentLine {
                discount_bp: 1000,
                ..line(&service, 1_500)
            },
        ])))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        offer.partner_id,
        partner.to_string(),
        "from the opportunity"
    );
    assert_eq!(offer.status, pb::OfferStatus::Draft as i32);
    assert!(offer.number.is_empty());
    // 12 × 145.50 = 1746.00 (+19% = 331.74); 1.5 × 250.00 − 10% = 337.50 (+64.13 rounded).
    let totals = offer.totals.as_ref().unwrap();
    assert_eq!(
        totals.total_without_vat.as_ref().unwrap().units,
        1746_00 + 337_50
    );
    assert_eq!(totals.total_vat.as_ref().unwrap().units, 331_74 + 64_13);
    assert_eq!(
        totals.total_with_vat.as_ref().unwrap().units,
        1746_00 + 337_50 + 331_74 + 64_13
    );

    let issued = s
        .offers
        .issue_offer(sales(pb::IssueOfferRequest {
            id: offer.id.clone(),
            etag: offer.etag.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(issued.number, format!("{}0001", year_prefix("OF-")));
    assert_eq!(issued.offer_date, proto_date(today()));
    let (envelope, _) = s
        .event::<ev::OfferIssued>(|e| e.offer.as_ref().unwrap().id == offer.id)
        .await;
    assert_eq!(envelope.partner_id, partner.to_string());
    // Issued documents are frozen but for attachments.
    let status = s
        .offers
        .update_offer(sales(pb::UpdateOfferRequest {
            offer: Some(pb::Offer {
                id: offer.id.clone(),
                notes: "altceva".into(),
                ..Default::default()
            }),
            update_mask: mask(&["notes"]),
            etag: issued.etag.clone(),
        }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    let with_file = s
        .offers
        .update_offer(sales(pb::UpdateOfferRequest {
            offer: Some(pb::Offer {
                id: offer.id.clone(),
                attachments: vec![uploaded_by_ana(
                    &"a".repeat(64),
                    "fisa-tehnica.pdf",
                    "application/pdf",
                    1234,
                )],
                ..Default::default()
            }),
            update_mask: mask(&["attachments"]),
            etag: issued.etag.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(with_file.attachments.len(), 1);
    assert!(!with_file.attachments[0].id.is_empty());

    let accepted = s
        .offers
        .answer_offer(sales(pb::AnswerOfferRequest {
            id: offer.id.clone(),
            etag: with_file.etag.clone(),
            accepted: true,
            note: "semnat de director".into(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(accepted.status, pb::OfferStatus::Accepted as i32);
    s.event::<ev::OfferStatusChanged>(|e| e.previous_status == pb::OfferStatus::Issued as i32)
        .await;

    // An order and a contract from the accepted offer copy its lines, remembering them.
    let current = s
        .opportunities
        .get_opportunity(sales(pb::GetOpportunityRequest { id: o.id.clone() }))
        .await
        .unwrap()
        .into_inner();
    s.move_to(&current, pb::OpportunityStage::Negotiation).await;
    let order = s
        .orders
        .create_order(sales(pb::CreateOrderRequest {
            order: Some(pb::Order {
                offer_id: offer.id.clone(),
                ..Default::default()
            }),
            request_id: String::new(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(order.partner_id, partner.to_string());
    assert_eq!(order.opportunity_id, o.id);
    let offer_line_ids: Vec<&str> = accepted.lines.iter().map(|l| l.id.as_str()).collect();
    let sources: Vec<&str> = order
        .lines
        .iter()
        .map(|l| l.source_line_id.as_str())
        .collect();
    assert_eq!(sources, offer_line_ids);
    let contract = s
        .contracts
        .create_contract(sales(pb::CreateContractRequest {
            contract: Some(pb::Contract {
                kind: pb::ContractKind::Commercial as i32,
                offer_id: offer.id.clone(),
                start_date: proto_date(today()),
                ..Default::default()
            }),
            request_id: String::new(),
            task_id: String::new(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(contract.offer_id, offer.id);
    assert_eq!(contract.lines.len(), 2);

    // Signing it wins the opportunity (O2).
    let signed = s
        .contracts
        .sign_contract(sales(pb::SignContractRequest {
            id: contract.id.clone(),
            etag: contract.etag.clone(),
            signing_date: None,
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(signed.number, format!("{}0001", year_prefix("CTR-")));
    let won = s
        .opportunities
        .get_opportunity(sales(pb::GetOpportunityRequest { id: o.id.clone() }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(won.stage, pb::OpportunityStage::Sale as i32);
    let history = s
        .opportunities
        .list_stage_changes(sales(pb::ListStageChangesRequest {
            opportunity_id: o.id.clone(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .stage_changes;
    let cause = history.last().unwrap().cause.clone().unwrap();
    assert_eq!(cause.kind, cpb::DocumentKind::Contract as i32);
    assert_eq!(cause.number, signed.number);
    s.event::<ev::ContractSigned>(|e| e.contract.as_ref().unwrap().id == contract.id)
        .await;
    s.event::<ev::OpportunityStageChanged>(|e| {
        e.opportunity.as_ref().unwrap().stage == pb::OpportunityStage::Sale as i32
    })
    .await;
}

#[tokio::test]
async fn an_order_is_invoiced_line_by_line_and_cancelling_gives_the_quantity_back() {
    let mut s = start().await;
    let partner = s.customer("Agroserv SRL").await;
    let a = s.article("A", 10_00, false).await;
    let b = s.article("B", 3_33, false).await;
    let order = confirmed_order(&mut s, partner, vec![line(&a, 5_000), line(&b, 2_000)]).await;
    assert_eq!(order.status, pb::OrderStatus::Confirmed as i32);

    // Three of the five A, none of B.
    let partial = s
        .invoices
        .create_invoice(sales(pb::CreateInvoiceRequest {
            invoice: Some(pb::Invoice {
                order_id: order.id.clone(),
                lines: vec![pb::DocumentLine {
                    source_line_id: order.lines[0].id.clone(),
                    ..line(&a, 3_000)
                }],
                ..Default::default()
            }),
            request_id: String::new(),
            issue: true,
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(partial.status, pb::InvoiceStatus::Issued as i32);
    assert_eq!(partial.source, pb::InvoiceSource::Order as i32);
    assert_eq!(partial.number, format!("{}0001", year_prefix("FCT-")));
    // Due date: invoice date + the company's 30 days.
    assert_eq!(
        partial.due_date,
        proto_date(today() + chrono::Days::new(30))
    );

    // More than is left is refused, naming the line.
    let status = s
        .invoices
        .create_invoice(sales(pb::CreateInvoiceRequest {
            invoice: Some(pb::Invoice {
                order_id: order.id.clone(),
                lines: vec![pb::DocumentLine {
                    source_line_id: order.lines[0].id.clone(),
                    ..line(&a, 2_001)
                }],
                ..Default::default()
            }),
            request_id: String::new(),
            issue: false,
        }))
        .await
        .unwrap_err();
    assert_eq!(
        violated_fields(&status),
        ["invoice.lines[0].quantity_milli"]
    );

    // The rest, copied: 2 of A and 2 of B.
    let rest = s
        .invoices
        .create_invoice(sales(pb::CreateInvoiceRequest {
            invoice: Some(pb::Invoice {
                order_id: order.id.clone(),
                ..Default::default()
            }),
            request_id: String::new(),
            issue: false,
        }))
        .await
        .unwrap()
        .into_inner();
    let quantities: Vec<i64> = rest.lines.iter().map(|l| l.quantity_milli).collect();
    assert_eq!(quantities, [2_000, 2_000]);
    let order_now = s
        .orders
        .get_order(sales(pb::GetOrderRequest {
            id: order.id.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        order_now.status,
        pb::OrderStatus::Confirmed as i32,
        "a draft does not count"
    );
    assert_eq!(order_now.invoiced_without_vat.unwrap().units, 30_00);
    let rest = s
        .invoices
        .issue_invoice(sales(pb::IssueInvoiceRequest {
            id: rest.id.clone(),
            etag: rest.etag.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rest.number, format!("{}0002", year_prefix("FCT-")));
    let order_now = s
        .orders
        .get_order(sales(pb::GetOrderRequest {
            id: order.id.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(order_now.status, pb::OrderStatus::Invoiced as i32);
    // An invoiced order cannot be cancelled nor have its revenue flag changed.
    let status = s
        .orders
        .cancel_order(sales(pb::CancelOrderRequest {
            id: order.id.clone(),
            etag: order_now.etag.clone(),
            reason: "x".into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);

    // Cancelling an issued invoice needs a reason, publishes it, and reopens the order.
    let status = s
        .invoices
        .cancel_invoice(sales(pb::CancelInvoiceRequest {
            id: rest.id.clone(),
            etag: rest.etag.clone(),
            reason: String::new(),
        }))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["reason"]);
    s.invoices
        .cancel_invoice(sales(pb::CancelInvoiceRequest {
            id: rest.id.clone(),
            etag: rest.etag.clone(),
            reason: "preț greșit".into(),
        }))
        .await
        .unwrap();
    s.event::<ev::InvoiceCancelled>(|e| e.invoice.as_ref().unwrap().id == rest.id)
        .await;
    let order_now = s
        .orders
        .get_order(sales(pb::GetOrderRequest {
            id: order.id.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(order_now.status, pb::OrderStatus::Confirmed as i32);
    assert_eq!(order_now.invoiced_without_vat.unwrap().units, 30_00);
}

#[tokio::test]
async fn the_revenue_flag_changes_until_the_order_is_invoiced_and_is_an_event() {
    let mut s = start().await;
    let partner = s.customer("Agroserv SRL").await;
    let a = s.article("A", 10_00, false).await;
    let campaign = Uuid::now_v7();
    s.publish(
        "crm.events.marketing",
        "marketing",
        &ev::CampaignCreated {
            campaign: Some(crm_proto::marketing::Campaign {
                id: campaign.to_string(),
                name: "Primăvara".into(),
                etag: "W/\"1\"".into(),
                ..Default::default()
            }),
        },
    )
    .await;
    s.wait_for("SELECT count(*) FROM campaigns WHERE id = $1", campaign, 1)
        .await;
    let order = s
        .orders
        .create_order(sales(pb::CreateOrderRequest {
            order: Some(pb::Order {
                partner_id: partner.to_string(),
                campaign_id: campaign.to_string(),
                lines: vec![line(&a, 4_000)],
                ..Default::default()
            }),
            request_id: String::new(),
        }))
        .await
        .unwrap()
        .into_inner();
    let order = s
        .orders
        .confirm_order(sales(pb::ConfirmOrderRequest {
            id: order.id.clone(),
            etag: order.etag.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    let (_, confirmed) = s.event::<ev::OrderConfirmed>(|_| true).await;
    assert!(!confirmed.order.unwrap().add_to_campaign_revenues);
    // Invoice half, then flag it: the event carries the invoice already issued.
    let invoice = s
        .invoices
        .create_invoice(sales(pb::CreateInvoiceRequest {
            invoice: Some(pb::Invoice {
                order_id: order.id.clone(),
                lines: vec![pb::DocumentLine {
                    source_line_id: order.lines[0].id.clone(),
                    ..line(&a, 2_000)
                }],
                ..Default::default()
            }),
            request_id: String::new(),
            issue: true,
        }))
        .await
        .unwrap()
        .into_inner();
    let order = s
        .orders
        .get_order(sales(pb::GetOrderRequest {
            id: order.id.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    let flagged = s
        .orders
        .update_order(sales(pb::UpdateOrderRequest {
            order: Some(pb::Order {
                id: order.id.clone(),
                add_to_campaign_revenues: true,
                ..Default::default()
            }),
            update_mask: mask(&["add_to_campaign_revenues"]),
            etag: order.etag.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(flagged.add_to_campaign_revenues);
    let (_, changed) = s
        .event::<ev::OrderCampaignRevenueFlagChanged>(|_| true)
        .await;
    assert!(changed.order.unwrap().add_to_campaign_revenues);
    assert_eq!(changed.issued_invoices.len(), 1);
    assert_eq!(changed.issued_invoices[0].invoice_id, invoice.id);
    assert_eq!(
        changed.issued_invoices[0]
            .amount_without_vat
            .as_ref()
            .unwrap()
            .units,
        20_00
    );
    // Other fields of a confirmed order do not change.
    let status = s
        .orders
        .update_order(sales(pb::UpdateOrderRequest {
            order: Some(pb::Order {
                id: order.id.clone(),
                customer_reference: "PO-1".into(),
                ..Default::default()
            }),
            update_mask: mask(&["customer_reference"]),
            etag: flagged.etag.clone(),
        }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    // The next invoice on the flagged order says so to marketing.
    s.invoices
        .create_invoice(sales(pb::CreateInvoiceRequest {
            invoice: Some(pb::Invoice {
                order_id: order.id.clone(),
                ..Default::default()
            }),
            request_id: String::new(),
            issue: true,
        }))
        .await
        .unwrap();
    let (_, issued) = s
        .event::<ev::InvoiceIssued>(|e| e.order_adds_to_campaign_revenues)
        .await;
    assert_eq!(issued.invoice.unwrap().campaign_id, campaign.to_string());
}

#[tokio::test]
async fn concurrent_issues_get_consecutive_numbers_and_a_rollback_leaves_no_gap() {
    let mut s = start().await;
    let partner = s.customer("Agroserv SRL").await;
    let a = s.article("A", 1_00, false).await;
    let mut drafts = Vec::new();
    for _ in 0..12 {
        drafts.push(
            s.invoices
                .create_invoice(sales(pb::CreateInvoiceRequest {
                    invoice: Some(pb::Invoice {
                        partner_id: partner.to_string(),
                        lines: vec![line(&a, 1_000)],
                        ..Default::default()
                    }),
                    request_id: String::new(),
                    issue: false,
                }))
                .await
                .unwrap()
                .into_inner(),
        );
    }
    let mut calls = Vec::new();
    for draft in drafts {
        let mut client = s.invoices.clone();
        calls.push(tokio::spawn(async move {
            client
                .issue_invoice(sales(pb::IssueInvoiceRequest {
                    id: draft.id,
                    etag: draft.etag,
                }))
                .await
                .unwrap()
                .into_inner()
                .number
        }));
    }
    let mut numbers = HashSet::new();
    for call in calls {
        numbers.insert(call.await.unwrap());
    }
    let expected: HashSet<String> = (1..=12)
        .map(|n| format!("{}{n:04}", year_prefix("FCT-")))
        .collect();
    assert_eq!(
        numbers, expected,
        "twelve issues, twelve numbers, no gap, no repeat"
    );

    // A transaction that takes a number and rolls back gives it back.
    let series: Uuid = sqlx::query_scalar(
        "SELECT id FROM number_series WHERE document_kind = 'invoice' AND is_default",
    )
    .fetch_one(&s.pool)
    .await
    .unwrap();
    let mut tx = s.pool.begin().await.unwrap();
    let (_, taken) = crm_opportunities::store::series::take_number(
        &mut tx,
        crm_opportunities::domain::catalogue::DocKind::Invoice,
        Some(series),
        chrono::Datelike::year(&today()),
    )
    .await
    .unwrap();
    assert_eq!(taken, format!("{}0013", year_prefix("FCT-")));
    tx.rollback().await.unwrap();
    // The next issue gets the number the rolled-back transaction had taken.
    let next = s
        .invoices
        .create_invoice(sales(pb::CreateInvoiceRequest {
            invoice: Some(pb::Invoice {
                partner_id: partner.to_string(),
                lines: vec![line(&a, 1_000)],
                ..Default::default()
            }),
            request_id: String::new(),
            issue: true,
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next.number, format!("{}0013", year_prefix("FCT-")));
}

#[tokio::test]
async fn an_issue_that_fails_after_taking_its_number_leaves_no_gap() {
    let mut s = start().await;
    let partner = s.customer("Agroserv SRL").await;
    let a = s.article("A", 1_00, false).await;
    let order = confirmed_order(&mut s, partner, vec![line(&a, 1_000)]).await;
    // Two drafts each for the whole order line: the second to be issued asks for more than
    // is left, which is found only inside the issuing transaction.
    let mut drafts = Vec::new();
    for _ in 0..2 {
        drafts.push(
            s.invoices
                .create_invoice(sales(pb::CreateInvoiceRequest {
                    invoice: Some(pb::Invoice {
                        partner_id: partner.to_string(),
                        lines: vec![line(&a, 1_000)],
                        ..Default::default()
                    }),
                    request_id: String::new(),
                    issue: false,
                }))
                .await
                .unwrap()
                .into_inner(),
        );
    }
    // Point both drafts at the order line behind the API's back, as two clerks racing would.
    sqlx::query("UPDATE invoices SET order_id = $1, source = 'order' WHERE id = ANY($2)")
        .bind(Uuid::parse_str(&order.id).unwrap())
        .bind(
            drafts
                .iter()
                .map(|d| Uuid::parse_str(&d.id).unwrap())
                .collect::<Vec<_>>(),
        )
        .execute(&s.pool)
        .await
        .unwrap();
    sqlx::query("UPDATE document_lines SET source_line_id = $1 WHERE document_id = ANY($2)")
        .bind(Uuid::parse_str(&order.lines[0].id).unwrap())
        .bind(
            drafts
                .iter()
                .map(|d| Uuid::parse_str(&d.id).unwrap())
                .collect::<Vec<_>>(),
        )
        .execute(&s.pool)
        .await
        .unwrap();
    let first = s
        .invoices
        .issue_invoice(sales(pb::IssueInvoiceRequest {
            id: drafts[0].id.clone(),
            etag: drafts[0].etag.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.number, format!("{}0001", year_prefix("FCT-")));
    let status = s
        .invoices
        .issue_invoice(sales(pb::IssueInvoiceRequest {
            id: drafts[1].id.clone(),
            etag: drafts[1].etag.clone(),
        }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    let next: i64 = sqlx::query_scalar(
        "SELECT next_number FROM number_series WHERE document_kind = 'invoice' AND is_default",
    )
    .fetch_one(&s.pool)
    .await
    .unwrap();
    assert_eq!(next, 2, "the failed issue's number came back");
}

#[tokio::test]
async fn coverage_finds_the_active_contract_with_the_article_and_subscriptions_bill_once_a_month() {
    let mut s = start().await;
    let partner = s.customer("Agroserv SRL").await;
    let other = s.customer("Baltic SRL").await;
    let service = s.article("SRV-MENT", 80_00, true).await;
    let unrelated = s.article("SRV-ALT", 80_00, true).await;
    let start = today() - chrono::Days::new(40);
    let end = today() + chrono::Days::new(300);
    let contract = s
        .contracts
        .create_contract(sales(pb::CreateContractRequest {
            contract: Some(pb::Contract {
                kind: pb::ContractKind::Subscription as i32,
                partner_id: partner.to_string(),
                start_date: proto_date(start),
                end_date: proto_date(end),
                billing_day: 5,
                lines: vec![line(&service, 1_000)],
                ..Default::default()
            }),
            request_id: String::new(),
            task_id: String::new(),
        }))
        .await
        .unwrap()
        .into_inner();
    let check = |partner: Uuid, article: &pb::Article, day: chrono::NaiveDate| {
        sales(pb::CheckContractCoverageRequest {
            partner_id: partner.to_string(),
            article_id: article.id.clone(),
            date: proto_date(day),
        })
    };
    // A draft covers nothing.
    let answer = s
        .contracts
        .check_contract_coverage(check(partner, &service, today()))
        .await
        .unwrap()
        .into_inner();
    assert!(!answer.covered);
    let signed = s
        .contracts
        .sign_contract(sales(pb::SignContractRequest {
            id: contract.id.clone(),
            etag: contract.etag.clone(),
            signing_date: None,
        }))
        .await
        .unwrap()
        .into_inner();
    let answer = s
        .contracts
        .check_contract_coverage(check(partner, &service, today()))
        .await
        .unwrap()
        .into_inner();
    assert!(answer.covered);
    assert_eq!(answer.contract.unwrap().id, contract.id);
    assert_eq!(answer.line.unwrap().article_id, service.id);
    for (partner, article, day) in [
        (partner, &unrelated, today()),
        (other, &service, today()),
        (partner, &service, start - chrono::Days::new(1)),
        (partner, &service, end + chrono::Days::new(1)),
    ] {
        let answer = s
            .contracts
            .check_contract_coverage(check(partner, article, day))
            .await
            .unwrap()
            .into_inner();
        assert!(!answer.covered, "{partner} {} {day}", article.code);
    }
    // The service role asks for coverage (T7).
    s.contracts
        .check_contract_coverage(authed(
            pb::CheckContractCoverageRequest {
                partner_id: partner.to_string(),
                article_id: service.id.clone(),
                date: None,
            },
            "sam",
            &["service"],
        ))
        .await
        .unwrap();

    // Subscription billing of this month: one invoice; a rerun none.
    let month = chrono::NaiveDate::from_ymd_opt(
        chrono::Datelike::year(&today()),
        chrono::Datelike::month(&today()),
        1,
    )
    .unwrap();
    let run = pb::RunSubscriptionBillingRequest {
        billing_month: proto_date(month),
        request_id: String::new(),
    };
    let status = s
        .invoices
        .run_subscription_billing(sales(run.clone()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let first = s
        .invoices
        .run_subscription_billing(manager(run.clone()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.issued_invoice_ids.len(), 1);
    let second = s
        .invoices
        .run_subscription_billing(manager(run))
        .await
        .unwrap()
        .into_inner();
    assert!(second.issued_invoice_ids.is_empty());
    assert_eq!(second.already_invoiced_count, 1);
    let invoice = s
        .invoices
        .get_invoice(sales(pb::GetInvoiceRequest {
            id: first.issued_invoice_ids[0].clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(invoice.source, pb::InvoiceSource::Subscription as i32);
    assert_eq!(invoice.contract_id, contract.id);
    assert_eq!(
        invoice.invoice_date,
        proto_date(month.with_day0(4).unwrap())
    );
    // By hand, the same month is ALREADY_EXISTS.
    let status = s
        .invoices
        .create_invoice(sales(pb::CreateInvoiceRequest {
            invoice: Some(pb::Invoice {
                contract_id: contract.id.clone(),
                billing_month: proto_date(month),
                ..Default::default()
            }),
            request_id: String::new(),
            issue: false,
        }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists);

    // Terminated before today: no longer covered today.
    let terminated = s
        .contracts
        .terminate_contract(sales(pb::TerminateContractRequest {
            id: contract.id.clone(),
            etag: signed.etag.clone(),
            termination_date: proto_date(today() - chrono::Days::new(1)),
            reason: "reziliere".into(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(terminated.status, pb::ContractStatus::Terminated as i32);
    let answer = s
        .contracts
        .check_contract_coverage(check(partner, &service, today()))
        .await
        .unwrap()
        .into_inner();
    assert!(!answer.covered);
    s.event::<ev::ContractTerminated>(|_| true).await;
}

#[tokio::test]
async fn a_contract_from_a_task_carries_its_own_partner_and_line_once_per_task() {
    let mut s = start().await;
    let partner = s.customer("Agroserv SRL").await;
    let service = s.article("SRV", 80_00, true).await;
    let task = Uuid::now_v7().to_string();
    let request = pb::CreateContractRequest {
        contract: Some(pb::Contract {
            kind: pb::ContractKind::Commercial as i32,
            partner_id: partner.to_string(),
            lines: vec![line(&service, 1_000)],
            ..Default::default()
        }),
        request_id: format!("task:{task}"),
        task_id: task.clone(),
    };
    let first = s
        .contracts
        .create_contract(as_service(request.clone(), "tasks"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.task_id, task);
    let again = s
        .contracts
        .create_contract(as_service(
            pb::CreateContractRequest {
                request_id: "another-id".into(),
                ..request
            },
            "tasks",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.id, first.id, "one contract per task");
    let status = s
        .contracts
        .create_contract(as_service(
            pb::CreateContractRequest {
                contract: Some(pb::Contract {
                    kind: pb::ContractKind::Commercial as i32,
                    ..Default::default()
                }),
                request_id: String::new(),
                task_id: Uuid::now_v7().to_string(),
            },
            "tasks",
        ))
        .await
        .unwrap_err();
    assert_eq!(
        violated_fields(&status),
        ["contract.partner_id", "contract.lines"]
    );
}

#[tokio::test]
async fn payments_are_allocated_within_what_invoices_owe_and_balances_stay_per_currency() {
    let mut s = start().await;
    let partner = s.customer("Agroserv SRL").await;
    let a = s.article("A", 100_00, false).await;
    let invoice = |lines: Vec<pb::DocumentLine>, currency: &str| pb::CreateInvoiceRequest {
        invoice: Some(pb::Invoice {
            partner_id: partner.to_string(),
            currency_code: currency.into(),
            lines,
            ..Default::default()
        }),
        request_id: String::new(),
        issue: true,
    };
    // 2 × 100.00 + 19% = 238.00 RON.
    let first = s
        .invoices
        .create_invoice(sales(invoice(vec![line(&a, 2_000)], "RON")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        first
            .totals
            .as_ref()
            .unwrap()
            .total_with_vat
            .as_ref()
            .unwrap()
            .units,
        238_00
    );
    let second = s
        .invoices
        .create_invoice(sales(invoice(vec![line(&a, 1_000)], "RON")))
        .await
        .unwrap()
        .into_inner();
    // EUR: the article's price is in RON, so the line gives its own EUR price.
    let status = s
        .invoices
        .create_invoice(sales(invoice(vec![line(&a, 1_000)], "EUR")))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["invoice.lines[0].unit_price"]);
    let euro = s
        .invoices
        .create_invoice(sales(invoice(
            vec![pb::DocumentLine {
                unit_price: eur(50_00),
                ..line(&a, 1_000)
            }],
            "EUR",
        )))
        .await
        .unwrap()
        .into_inner();

    let allocation = |invoice: &pb::Invoice, units: i64| pb::PaymentAllocation {
        invoice_id: invoice.id.clone(),
        amount: ron(units),
        invoice_number: String::new(),
    };
    let pay = |amount, allocations| pb::CreatePaymentRequest {
        payment: Some(pb::Payment {
            partner_id: partner.to_string(),
            amount,
            payment_date: proto_date(today()),
            method: pb::PaymentMethod::BankTransfer as i32,
            reference: "OP 123".into(),
            allocations,
            ..Default::default()
        }),
        request_id: String::new(),
    };
    // Over-allocation names the allocation: more than the invoice owes; more than the payment;
    // an invoice in another currency.
    let status = s
        .payments
        .create_payment(sales(pay(ron(1000_00), vec![allocation(&first, 238_01)])))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["payment.allocations[0].amount"]);
    let status = s
        .payments
        .create_payment(sales(pay(
            ron(300_00),
            vec![allocation(&first, 238_00), allocation(&second, 100_00)],
        )))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["payment.allocations[1].amount"]);
    let status = s
        .payments
        .create_payment(sales(pay(ron(10_00), vec![allocation(&euro, 10_00)])))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["payment.allocations[0].amount"]);

    // 300.00 RON: 238.00 settles the first, 50.00 part of the second, 12.00 stays an advance.
    let payment = s
        .payments
        .create_payment(sales(pay(
            ron(300_00),
            vec![allocation(&first, 238_00), allocation(&second, 50_00)],
        )))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(payment.unallocated_amount.as_ref().unwrap().units, 12_00);
    assert_eq!(payment.allocations[0].invoice_number, first.number);
    let paid = s
        .invoices
        .get_invoice(sales(pb::GetInvoiceRequest {
            id: first.id.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(paid.payment_status, pb::InvoicePaymentStatus::Paid as i32);
    // A paid invoice cannot be cancelled.
    let status = s
        .invoices
        .cancel_invoice(sales(pb::CancelInvoiceRequest {
            id: paid.id.clone(),
            etag: paid.etag.clone(),
            reason: "x".into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    // The advance goes to the second invoice later.
    let payment = s
        .payments
        .allocate_payment(sales(pb::AllocatePaymentRequest {
            id: payment.id.clone(),
            etag: payment.etag.clone(),
            allocations: vec![allocation(&second, 12_00)],
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(payment.unallocated_amount.as_ref().unwrap().units, 0);
    s.event::<ev::PaymentAllocated>(|_| true).await;

    let balance = s
        .payments
        .get_partner_balance(authed(
            pb::GetPartnerBalanceRequest {
                partner_id: partner.to_string(),
                as_of: None,
            },
            "sam",
            &["service"],
        ))
        .await
        .unwrap()
        .into_inner();
    let rows: Vec<(String, i64, i64, i64)> = balance
        .balances
        .iter()
        .map(|b| {
            (
                b.balance.as_ref().unwrap().currency_code.clone(),
                b.invoiced_with_vat.as_ref().unwrap().units,
                b.paid.as_ref().unwrap().units,
                b.balance.as_ref().unwrap().units,
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("RON".to_owned(), 238_00 + 119_00, 300_00, 57_00),
            ("EUR".to_owned(), 59_50, 0, 59_50),
        ]
    );
    // Cancelling the payment releases its allocations.
    s.payments
        .cancel_payment(sales(pb::CancelPaymentRequest {
            id: payment.id.clone(),
            etag: payment.etag.clone(),
            reason: "înregistrată greșit".into(),
        }))
        .await
        .unwrap();
    let unpaid = s
        .invoices
        .get_invoice(sales(pb::GetInvoiceRequest {
            id: first.id.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        unpaid.payment_status,
        pb::InvoicePaymentStatus::Unpaid as i32
    );
    s.event::<ev::PaymentCancelled>(|_| true).await;
}

fn pdftotext(pdf: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("doc.pdf");
    std::fs::write(&path, pdf).unwrap();
    let out = Command::new("pdftotext")
        .arg(&path)
        .arg("-")
        .output()
        .expect("pdftotext is installed (cargo xtask test installs poppler-utils)");
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn an_invoice_renders_to_a_pdf_with_its_number_customer_and_totals() {
    let mut s = start().await;
    let partner = s.customer("Șțefănescu Îngrășăminte SRL").await;
    let a = s.article("SEM-PORUMB", 1234_56, false).await;
    let mut picture_article = s.article("POZA", 1_00, false).await;
    picture_article = s
        .articles
        .update_article(sales(pb::UpdateArticleRequest {
            article: Some(pb::Article {
                id: picture_article.id.clone(),
                pictures: vec![uploaded_by_ana(
                    &"b".repeat(64),
                    "poza.png",
                    "image/png",
                    10,
                )],
                ..Default::default()
            }),
            update_mask: mask(&["pictures"]),
            etag: picture_article.etag.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    let invoice = s
        .invoices
        .create_invoice(sales(pb::CreateInvoiceRequest {
            invoice: Some(pb::Invoice {
                partner_id: partner.to_string(),
                lines: vec![line(&a, 3_000), line(&picture_article, 1_000)],
                notes: "Plata în 30 de zile.".into(),
                ..Default::default()
            }),
            request_id: String::new(),
            issue: true,
        }))
        .await
        .unwrap()
        .into_inner();
    let request = |format: pb::RenderFormat, etag: &str| {
        sales(pb::RenderDocumentRequest {
            document: Some(cpb::DocumentRef {
                kind: cpb::DocumentKind::Invoice as i32,
                id: invoice.id.clone(),
                number: String::new(),
            }),
            format: format as i32,
            include_document_attachments: true,
            article_ids_for_pictures: vec![picture_article.id.clone()],
            include_content: true,
            etag: etag.into(),
        })
    };
    let rendered = s
        .render
        .render_document(request(pb::RenderFormat::Pdf, &invoice.etag))
        .await
        .unwrap()
        .into_inner();
    let file = rendered.rendered.as_ref().unwrap();
    assert!(file.content.starts_with(b"%PDF-"));
    let text = pdftotext(&file.content);
    for expected in [
        invoice.number.as_str(),
        "Șțefănescu Îngrășăminte SRL",
        "Calea Țării 14",
        "FACTURĂ",
        "SEM-PORUMB",
        // 3 × 1234.56 = 3703.68 + 1.00; VAT 19% of each line: 703.70 + 0.19.
        "3.704,68",
        "703,89",
        "4.408,57",
    ] {
        assert!(text.contains(expected), "{expected:?} not in:\n{text}");
    }
    let meta = file.file.as_ref().unwrap();
    assert_eq!(meta.content_type, "application/pdf");
    assert_eq!(meta.file_name, format!("factura-{}.pdf", invoice.number));
    assert_eq!(rendered.article_pictures.len(), 1);
    assert_eq!(rendered.partner_id, partner.to_string());
    assert!(rendered.suggested_subject.contains(&invoice.number));

    // The same version again is the same file; HTML is its own rendering.
    let again = s
        .render
        .render_document(request(pb::RenderFormat::Pdf, ""))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        again.rendered.unwrap().file.unwrap().blob_key,
        meta.blob_key
    );
    let html = s
        .render
        .render_document(request(pb::RenderFormat::Html, ""))
        .await
        .unwrap()
        .into_inner();
    let html_text = String::from_utf8(html.rendered.unwrap().content).unwrap();
    assert!(html_text.contains("Șțefănescu Îngrășăminte SRL"));

    // A pinned version that changed is refused; an article not on the document too.
    let status = s
        .render
        .render_document(request(pb::RenderFormat::Pdf, "W/\"1\""))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Aborted);
    let mut bad = request(pb::RenderFormat::Pdf, "");
    bad.get_mut().article_ids_for_pictures = vec![Uuid::now_v7().to_string()];
    let status = s.render.render_document(bad).await.unwrap_err();
    assert_eq!(violated_fields(&status), ["article_ids_for_pictures[0]"]);
    // The service role reads task invoices only: this one is not.
    let status = s
        .render
        .render_document(authed(
            request(pb::RenderFormat::Pdf, "").into_inner(),
            "sam",
            &["service"],
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
}

#[tokio::test]
async fn a_task_billing_command_issues_an_estimate_and_an_invoice_once_per_attempt() {
    let mut s = start().await;
    let partner = s.customer("Agroserv SRL").await;
    let service = s.article("SRV-IRIG", 0, true).await;
    let task = Uuid::now_v7();
    let command = |attempt: i32, article: &str, minutes: i32| ev::IssueTaskInvoice {
        task_id: task.to_string(),
        task_title: "Reparație pompă".into(),
        resolution_note: "Înlocuit garnitura".into(),
        partner_id: partner.to_string(),
        post_sale_service_id: Uuid::now_v7().to_string(),
        article_id: article.into(),
        hourly_rate: ron(120_00),
        worked_minutes: minutes,
        resolve_time: Some(std::time::SystemTime::now().into()),
        contract_id: String::new(),
        resolved_by: "ion".into(),
        billing_attempt: attempt,
    };
    // Attempt 1 names no article: rejected with the reason.
    let first = s
        .publish("crm.commands.opportunities", "tasks", &command(1, "", 90))
        .await;
    let (_, rejected) = s
        .event::<ev::TaskInvoiceRejected>(|e| e.billing_attempt == 1)
        .await;
    assert_eq!(rejected.task_id, task.to_string());
    assert_eq!(rejected.command_id, first.to_string());
    assert!(rejected.reason.contains("article"), "{}", rejected.reason);

    // Attempt 2: 90 minutes at 120.00/h = 180.00 + 19% VAT; delivered twice, billed once.
    let good = command(2, &service.id, 90);
    s.publish("crm.commands.opportunities", "tasks", &good)
        .await;
    s.publish("crm.commands.opportunities", "tasks", &good)
        .await;
    let (envelope, issued) = s
        .event::<ev::InvoiceIssued>(|e| e.invoice.as_ref().unwrap().task_id == task.to_string())
        .await;
    assert_eq!(envelope.actor, "ion");
    let invoice = issued.invoice.unwrap();
    assert_eq!(invoice.source, pb::InvoiceSource::Task as i32);
    assert_eq!(invoice.task_billing_attempt, 2);
    assert_eq!(invoice.lines[0].quantity_milli, 1_500);
    assert_eq!(
        invoice.totals.unwrap().total_with_vat.unwrap().units,
        214_20
    );
    let (_, estimate) = s
        .event::<ev::OfferIssued>(|e| e.offer.as_ref().unwrap().task_id == task.to_string())
        .await;
    let estimate = estimate.offer.unwrap();
    assert_eq!(estimate.purpose, pb::OfferPurpose::ServiceEstimate as i32);
    assert_eq!(invoice.estimate_offer_id, estimate.id);
    // Give the duplicate delivery time to be consumed: still one invoice for the task.
    s.wait_for(
        "SELECT count(*) FROM task_billings WHERE task_id = $1",
        task,
        2,
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let invoices: i64 = sqlx::query_scalar("SELECT count(*) FROM invoices WHERE task_id = $1")
        .bind(task)
        .fetch_one(&s.pool)
        .await
        .unwrap();
    assert_eq!(invoices, 1);
    // The service role reads the task's invoice.
    s.invoices
        .get_invoice(authed(
            pb::GetInvoiceRequest {
                id: invoice.id.clone(),
            },
            "sam",
            &["service"],
        ))
        .await
        .unwrap();
}
