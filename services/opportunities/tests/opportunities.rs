//! OpportunityService and LostReasonService end to end on real PostgreSQL and Redis: create
//! and validation, stages and their rules, history, ownership, reopening, pipeline per
//! currency, batch creation with per-item results and the campaign race, stage configuration,
//! the loss report, and the events (O1–O5, X2, X3, X5).

#![allow(
    clippy::inconsistent_digit_grouping,
    reason = "money is written as units_cents: 145_50 is 145.50"
)]

mod common;

use common::*;
use crm_proto::{
    events as ev, marketing,
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

#[tokio::test]
async fn a_bad_create_names_every_field_and_an_unknown_partner_is_refused() {
    let mut s = start().await;
    let status = s
        .opportunities
        .create_opportunity(sales(pb::CreateOpportunityRequest {
            opportunity: Some(pb::Opportunity {
                partner_id: "nope".into(),
                title: "  ".into(),
                potential_value: Some(crm_proto::common::Money {
                    units: -5,
                    currency_code: "ron".into(),
                }),
                probability_percent: Some(120),
                ..Default::default()
            }),
            request_id: String::new(),
        }))
        .await
        .unwrap_err();
    assert_eq!(
        violated_fields(&status),
        [
            "opportunity.partner_id",
            "opportunity.title",
            "opportunity.owner_staff_id",
            "opportunity.potential_value.currency_code",
            "opportunity.probability_percent",
        ]
    );
    // An empty request names the missing message, never INTERNAL.
    let status = s
        .opportunities
        .create_opportunity(sales(pb::CreateOpportunityRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["opportunity"]);

    // A partner nobody announced, and marketing cannot be asked (it is not running here).
    let status = s
        .opportunities
        .create_opportunity(sales(pb::CreateOpportunityRequest {
            opportunity: Some(pb::Opportunity {
                partner_id: Uuid::now_v7().to_string(),
                title: "X".into(),
                owner_staff_id: Uuid::now_v7().to_string(),
                ..Default::default()
            }),
            request_id: String::new(),
        }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");

    // A competitor gets no opportunity.
    let competitor = s
        .partner("Rival SRL", marketing::PartnerKind::Competitor)
        .await;
    let status = s
        .opportunities
        .create_opportunity(sales(pb::CreateOpportunityRequest {
            opportunity: Some(pb::Opportunity {
                partner_id: competitor.to_string(),
                title: "X".into(),
                owner_staff_id: Uuid::now_v7().to_string(),
                ..Default::default()
            }),
            request_id: String::new(),
        }))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["opportunity.partner_id"]);
}

#[tokio::test]
async fn an_opportunity_is_created_once_per_request_id_and_read_back() {
    let mut s = start().await;
    let partner = s.customer("Agroserv SRL").await;
    let request = pb::CreateOpportunityRequest {
        opportunity: Some(pb::Opportunity {
            partner_id: partner.to_string(),
            title: "Irigații 2027".into(),
            owner_staff_id: Uuid::now_v7().to_string(),
            potential_value: ron(1_000_000),
            expected_signing_date: date(2027, 3, 1),
            ..Default::default()
        }),
        request_id: "form-7".into(),
    };
    let first = s
        .opportunities
        .create_opportunity(sales(request.clone()))
        .await
        .unwrap()
        .into_inner();
    let again = s
        .opportunities
        .create_opportunity(sales(request))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.id, again.id);
    assert_eq!(first.stage, pb::OpportunityStage::New as i32);
    assert_eq!(first.stage_code, "0");
    assert_eq!(first.potential_level, pb::PotentialLevel::Zero as i32);
    assert_eq!(first.effective_probability_percent, 0);
    assert_eq!(first.creator, "ana");
    let read = s
        .opportunities
        .get_opportunity(sales(pb::GetOpportunityRequest {
            id: first.id.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(read, first);
    let (envelope, created) = s
        .event::<ev::OpportunityCreated>(|e| e.opportunity.as_ref().unwrap().id == first.id)
        .await;
    assert_eq!(envelope.partner_id, partner.to_string());
    assert_eq!(envelope.actor, "ana");
    assert_eq!(created.opportunity.unwrap().title, "Irigații 2027");
    assert_eq!(s.count_events::<ev::OpportunityCreated>().await, 1);

    let status = s
        .opportunities
        .get_opportunity(sales(pb::GetOpportunityRequest {
            id: Uuid::now_v7().to_string(),
        }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
}

#[tokio::test]
async fn updates_are_allow_listed_and_ownership_changes_only_by_reassignment() {
    let mut s = start().await;
    let partner = s.customer("Agroserv SRL").await;
    let o = s.opportunity(partner, ron(50_000)).await;
    // Owner, stage and partner are not in the allow-list.
    for field in ["owner_staff_id", "stage", "partner_id", "creator"] {
        let status = s
            .opportunities
            .update_opportunity(sales(pb::UpdateOpportunityRequest {
                opportunity: Some(pb::Opportunity {
                    id: o.id.clone(),
                    ..Default::default()
                }),
                update_mask: mask(&[field]),
                etag: o.etag.clone(),
            }))
            .await
            .unwrap_err();
        assert_eq!(violated_fields(&status), ["update_mask"], "{field}");
    }
    let updated = s
        .opportunities
        .update_opportunity(sales(pb::UpdateOpportunityRequest {
            opportunity: Some(pb::Opportunity {
                id: o.id.clone(),
                title: "Irigații, faza 2".into(),
                probability_percent: Some(45),
                ..Default::default()
            }),
            update_mask: mask(&["title", "probability_percent"]),
            etag: o.etag.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.title, "Irigații, faza 2");
    assert_eq!(updated.effective_probability_percent, 45);
    assert_eq!(updated.weighted_value.unwrap().units, 22_500);
    let (_, event) = s
        .event::<ev::OpportunityUpdated>(|e| e.opportunity.as_ref().unwrap().id == o.id)
        .await;
    assert_eq!(event.changed_fields, ["title", "probability_percent"]);

    // The old etag is stale.
    let status = s
        .opportunities
        .update_opportunity(sales(pb::UpdateOpportunityRequest {
            opportunity: Some(pb::Opportunity {
                id: o.id.clone(),
                title: "Altceva".into(),
                ..Default::default()
            }),
            update_mask: mask(&["title"]),
            etag: o.etag.clone(),
        }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Aborted);

    // Reassignment needs a manager.
    let new_owner = Uuid::now_v7().to_string();
    let reassign = pb::ReassignOpportunityRequest {
        id: o.id.clone(),
        etag: updated.etag.clone(),
        owner_staff_id: new_owner.clone(),
        note: "concediu".into(),
    };
    let status = s
        .opportunities
        .reassign_opportunity(sales(reassign.clone()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let reassigned = s
        .opportunities
        .reassign_opportunity(manager(reassign))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reassigned.owner_staff_id, new_owner);
}

#[tokio::test]
async fn stages_move_back_and_forth_and_every_change_is_a_history_row() {
    let mut s = start().await;
    let partner = s.customer("Agroserv SRL").await;
    let o = s.opportunity(partner, ron(100_000)).await;
    let o = s.move_to(&o, pb::OpportunityStage::Offer).await;
    assert_eq!(o.stage_code, "2");
    assert_eq!(o.effective_probability_percent, 30);
    // Back to presentation, with a follow-up for a delegate and a value allocated.
    let delegate = Uuid::now_v7().to_string();
    let follow_up = today() + chrono::Days::new(3);
    let o = s
        .opportunities
        .change_opportunity_stage(sales(pb::ChangeOpportunityStageRequest {
            id: o.id.clone(),
            etag: o.etag.clone(),
            stage: pb::OpportunityStage::Presentation as i32,
            delegate_staff_id: delegate.clone(),
            follow_up_date: proto_date(follow_up),
            follow_up_note: "Demonstrație la fermă".into(),
            allocated_value: ron(40_000),
            request_id: "move-1".into(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(o.stage, pb::OpportunityStage::Presentation as i32);
    assert_eq!(o.next_follow_up_date, proto_date(follow_up));
    assert_eq!(o.next_follow_up_note, "Demonstrație la fermă");

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
    let stages: Vec<&str> = history.iter().map(|c| c.stage_code.as_str()).collect();
    assert_eq!(stages, ["0", "2", "1"]);
    let last = history.last().unwrap();
    assert_eq!(last.previous_stage, pb::OpportunityStage::Offer as i32);
    assert_eq!(last.delegate_staff_id, delegate);
    assert_eq!(last.allocated_value.as_ref().unwrap().units, 40_000);
    assert_eq!(last.changed_by, "ana");

    // The event that tasks turns into the follow-up task (O4).
    let (_, changed) = s
        .event::<ev::OpportunityStageChanged>(|e| {
            e.stage_change.as_ref().unwrap().follow_up_date.is_some()
        })
        .await;
    let change = changed.stage_change.unwrap();
    assert_eq!(change.delegate_staff_id, delegate);
    assert_eq!(change.id, last.id);

    // Tasks announces the follow-up task: it is recorded on the stage change.
    let task_id = Uuid::now_v7();
    s.publish(
        "crm.events.tasks",
        "tasks",
        &ev::TaskCreated {
            task: Some(crm_proto::tasks::Task {
                id: task_id.to_string(),
                source: crm_proto::tasks::TaskSource::FollowUp as i32,
                source_reference: last.id.clone(),
                ..Default::default()
            }),
        },
    )
    .await;
    s.wait_for(
        "SELECT count(*) FROM stage_changes WHERE follow_up_task_id = $1",
        task_id,
        1,
    )
    .await;

    // A repeated request id records nothing more.
    s.opportunities
        .change_opportunity_stage(sales(pb::ChangeOpportunityStageRequest {
            id: o.id.clone(),
            etag: o.etag.clone(),
            stage: pb::OpportunityStage::Negotiation as i32,
            request_id: "move-1".into(),
            ..Default::default()
        }))
        .await
        .unwrap();
    let count = s
        .opportunities
        .list_stage_changes(sales(pb::ListStageChangesRequest {
            opportunity_id: o.id.clone(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .stage_changes
        .len();
    assert_eq!(count, 3);

    // A follow-up in the past, or without a delegate, is refused.
    let status = s
        .opportunities
        .change_opportunity_stage(sales(pb::ChangeOpportunityStageRequest {
            id: o.id.clone(),
            etag: o.etag.clone(),
            stage: pb::OpportunityStage::Offer as i32,
            follow_up_date: proto_date(today() - chrono::Days::new(1)),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(
        violated_fields(&status),
        ["follow_up_date", "delegate_staff_id"]
    );
}

#[tokio::test]
async fn sale_needs_a_document_lost_needs_a_reason_and_closed_ones_reopen() {
    let mut s = start().await;
    let partner = s.customer("Agroserv SRL").await;
    let o = s.opportunity(partner, ron(10_000)).await;
    let o = s.move_to(&o, pb::OpportunityStage::Negotiation).await;
    let status = s
        .opportunities
        .change_opportunity_stage(sales(pb::ChangeOpportunityStageRequest {
            id: o.id.clone(),
            etag: o.etag.clone(),
            stage: pb::OpportunityStage::Sale as i32,
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(status.message().contains("contract"), "{status:?}");
    let status = s
        .opportunities
        .change_opportunity_stage(sales(pb::ChangeOpportunityStageRequest {
            id: o.id.clone(),
            etag: o.etag.clone(),
            stage: pb::OpportunityStage::Lost as i32,
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);

    // Lost needs an active reason from the catalogue.
    let status = s
        .opportunities
        .mark_opportunity_lost(sales(pb::MarkOpportunityLostRequest {
            id: o.id.clone(),
            etag: o.etag.clone(),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["lost_reason_id"]);
    let reasons = s
        .lost_reasons
        .list_lost_reasons(sales(pb::ListLostReasonsRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .lost_reasons;
    assert!(reasons.len() >= 5, "the seed's reasons are there");
    let prices = reasons
        .iter()
        .find(|r| r.name == "Prețuri prea mari")
        .unwrap();
    let lost = s
        .opportunities
        .mark_opportunity_lost(sales(pb::MarkOpportunityLostRequest {
            id: o.id.clone(),
            etag: o.etag.clone(),
            lost_reason_id: prices.id.clone(),
            note: "au ales oferta concurenței".into(),
            request_id: String::new(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(lost.stage_code, "X");
    assert!(lost.close_time.is_some());
    let (_, event) = s.event::<ev::OpportunityLost>(|_| true).await;
    assert_eq!(event.lost_reason_name, "Prețuri prea mari");

    // Closed: no update, no stage change, no second loss.
    let status = s
        .opportunities
        .update_opportunity(sales(pb::UpdateOpportunityRequest {
            opportunity: Some(pb::Opportunity {
                id: o.id.clone(),
                title: "Y".into(),
                ..Default::default()
            }),
            update_mask: mask(&["title"]),
            etag: lost.etag.clone(),
        }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    let status = s
        .opportunities
        .change_opportunity_stage(sales(pb::ChangeOpportunityStageRequest {
            id: o.id.clone(),
            etag: lost.etag.clone(),
            stage: pb::OpportunityStage::Offer as i32,
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);

    // Reopening needs a reason and goes back to the last open stage.
    let status = s
        .opportunities
        .reopen_opportunity(sales(pb::ReopenOpportunityRequest {
            id: o.id.clone(),
            etag: lost.etag.clone(),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["note"]);
    let reopened = s
        .opportunities
        .reopen_opportunity(sales(pb::ReopenOpportunityRequest {
            id: o.id.clone(),
            etag: lost.etag.clone(),
            note: "clientul a revenit".into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reopened.stage, pb::OpportunityStage::Negotiation as i32);
    assert!(reopened.close_time.is_none());
    assert!(reopened.lost_reason_id.is_empty());
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
    assert_eq!(history.last().unwrap().reopen_note, "clientul a revenit");
}

#[tokio::test]
async fn the_pipeline_sums_per_stage_owner_and_currency_never_across_currencies() {
    let mut s = start().await;
    let partner = s.customer("Agroserv SRL").await;
    let owner = Uuid::now_v7().to_string();
    let create = |potential, probability: Option<i32>| pb::CreateOpportunityRequest {
        opportunity: Some(pb::Opportunity {
            partner_id: partner.to_string(),
            title: "O".into(),
            owner_staff_id: owner.clone(),
            potential_value: potential,
            probability_percent: probability,
            ..Default::default()
        }),
        request_id: String::new(),
    };
    for (potential, probability) in [
        (ron(100_00), None),
        (ron(200_05), Some(50)),
        (eur(300_00), None),
    ] {
        let o = s
            .opportunities
            .create_opportunity(sales(create(potential, probability)))
            .await
            .unwrap()
            .into_inner();
        s.move_to(&o, pb::OpportunityStage::Offer).await;
    }
    // A lost one is not in the pipeline.
    let lost = s
        .opportunities
        .create_opportunity(sales(create(ron(999_00), None)))
        .await
        .unwrap()
        .into_inner();
    let reasons = s
        .lost_reasons
        .list_lost_reasons(sales(pb::ListLostReasonsRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .lost_reasons;
    s.opportunities
        .mark_opportunity_lost(sales(pb::MarkOpportunityLostRequest {
            id: lost.id.clone(),
            etag: lost.etag.clone(),
            lost_reason_id: reasons[0].id.clone(),
            ..Default::default()
        }))
        .await
        .unwrap();

    let pipeline = s
        .opportunities
        .get_pipeline(sales(pb::GetPipelineRequest {
            group_by_owner: true,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    // Offer stage: RON 100.00 at 30% = 30.00 and 200.05 at 50% = 100.025 → 100.03 (half away
    // from zero), per opportunity; EUR 300.00 at 30% = 90.00. Never added together.
    let offer_rows: Vec<&pb::PipelineRow> = pipeline
        .rows
        .iter()
        .filter(|r| r.stage == pb::OpportunityStage::Offer as i32)
        .collect();
    assert_eq!(offer_rows.len(), 2, "{offer_rows:?}");
    let ron_row = offer_rows
        .iter()
        .find(|r| r.potential_value.as_ref().unwrap().currency_code == "RON")
        .unwrap();
    assert_eq!(ron_row.count, 2);
    assert_eq!(ron_row.owner_staff_id, owner);
    assert_eq!(ron_row.potential_value.as_ref().unwrap().units, 300_05);
    assert_eq!(
        ron_row.weighted_value.as_ref().unwrap().units,
        30_00 + 100_03
    );
    assert_eq!(ron_row.stage_code, "2");
    let eur_row = offer_rows
        .iter()
        .find(|r| r.potential_value.as_ref().unwrap().currency_code == "EUR")
        .unwrap();
    assert_eq!(eur_row.weighted_value.as_ref().unwrap().units, 90_00);
    let totals: Vec<(String, i64, i32)> = pipeline
        .totals
        .iter()
        .map(|t| {
            (
                t.currency_code.clone(),
                t.potential_value.as_ref().unwrap().units,
                t.count,
            )
        })
        .collect();
    assert_eq!(
        totals,
        [("RON".to_owned(), 300_05, 2), ("EUR".to_owned(), 300_00, 1)]
    );
    assert!(
        pipeline
            .rows
            .iter()
            .all(|r| r.stage != pb::OpportunityStage::Lost as i32)
    );

    // Changing the level probabilities changes the weighted values (O3).
    let config = s
        .opportunities
        .get_stage_config(sales(pb::GetStageConfigRequest {}))
        .await
        .unwrap()
        .into_inner();
    let mut levels = config.level_probabilities.clone();
    for l in &mut levels {
        if l.level == pb::PotentialLevel::Medium as i32 {
            l.probability_percent = 40;
        }
    }
    let update = pb::UpdateStageConfigRequest {
        config: Some(pb::StageConfig {
            level_probabilities: levels,
            ..Default::default()
        }),
        update_mask: mask(&["level_probabilities"]),
        etag: config.etag.clone(),
    };
    let status = s
        .opportunities
        .update_stage_config(manager(update.clone()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "admin only");
    s.opportunities
        .update_stage_config(authed(update, "root", &["admin"]))
        .await
        .unwrap();
    let pipeline = s
        .opportunities
        .get_pipeline(sales(pb::GetPipelineRequest::default()))
        .await
        .unwrap()
        .into_inner();
    let eur_total = pipeline
        .totals
        .iter()
        .find(|t| t.currency_code == "EUR")
        .unwrap();
    assert_eq!(eur_total.weighted_value.as_ref().unwrap().units, 120_00);
}

#[tokio::test]
async fn a_batch_reports_each_item_and_trusts_marketing_with_its_new_campaigns() {
    let mut s = start().await;
    let partner = s.customer("Agroserv SRL").await;
    let campaign = Uuid::now_v7();
    let item = |request_id: &str, partner: &str, title: &str| pb::CreateOpportunityRequest {
        opportunity: Some(pb::Opportunity {
            partner_id: partner.into(),
            campaign_id: campaign.to_string(),
            title: title.into(),
            owner_staff_id: Uuid::now_v7().to_string(),
            ..Default::default()
        }),
        request_id: request_id.into(),
    };
    let batch = pb::BatchCreateOpportunitiesRequest {
        requests: vec![
            item("campaign:c:partner:1", &partner.to_string(), "Din campanie"),
            item("campaign:c:partner:2", "not-a-uuid", "Rău"),
            item("campaign:c:partner:3", &partner.to_string(), ""),
        ],
    };
    // A user naming a campaign opportunities has not heard of: that item fails, alone.
    let results = s
        .opportunities
        .batch_create_opportunities(sales(batch.clone()))
        .await
        .unwrap()
        .into_inner()
        .results;
    let outcomes: Vec<i32> = results.iter().map(|r| r.outcome).collect();
    let failed = pb::BatchItemOutcome::Failed as i32;
    assert_eq!(outcomes, [failed, failed, failed]);
    let fields = |r: &pb::BatchCreateOpportunitiesResult| -> Vec<String> {
        r.error
            .as_ref()
            .unwrap()
            .field_violations
            .iter()
            .map(|v| v.field.clone())
            .collect()
    };
    assert_eq!(fields(&results[0]), ["requests[0].opportunity.campaign_id"]);
    assert_eq!(fields(&results[1]), ["requests[1].opportunity.partner_id"]);
    assert_eq!(fields(&results[2]), ["requests[2].opportunity.title"]);

    // Marketing, for the user who asked (M7), right after creating the campaign (before its
    // event): created, recording the user, not the service. The bad items still fail alone.
    let results = s
        .opportunities
        .batch_create_opportunities(on_behalf(batch.clone(), "marketing", "ana", &["marketing"]))
        .await
        .unwrap()
        .into_inner()
        .results;
    assert_eq!(results[0].outcome, pb::BatchItemOutcome::Created as i32);
    assert_eq!(results[0].opportunity.as_ref().unwrap().creator, "ana");
    assert_eq!(results[1].outcome, failed);
    assert_eq!(results[2].outcome, failed);
    let created = results[0].opportunity.clone().unwrap();
    assert_eq!(created.campaign_id, campaign.to_string());

    // The campaign's event arrives later and completes the catalogue; a rerun creates nothing.
    s.publish(
        "crm.events.marketing",
        "marketing",
        &ev::CampaignCreated {
            campaign: Some(marketing::Campaign {
                id: campaign.to_string(),
                name: "Primăvara 2027".into(),
                etag: "W/\"1\"".into(),
                ..Default::default()
            }),
        },
    )
    .await;
    s.wait_for(
        "SELECT count(*) FROM campaigns WHERE id = $1 AND confirmed AND name <> ''",
        campaign,
        1,
    )
    .await;
    let rerun = s
        .opportunities
        .batch_create_opportunities(on_behalf(batch.clone(), "marketing", "ana", &["marketing"]))
        .await
        .unwrap()
        .into_inner()
        .results;
    assert_eq!(
        rerun[0].outcome,
        pb::BatchItemOutcome::AlreadyExisted as i32
    );
    assert_eq!(rerun[0].opportunity.as_ref().unwrap().id, created.id);
    // Marketing's request ids are marketing's: another user's run of the same campaign does
    // not duplicate either.
    let other_user = s
        .opportunities
        .batch_create_opportunities(on_behalf(batch.clone(), "marketing", "ion", &["marketing"]))
        .await
        .unwrap()
        .into_inner()
        .results;
    assert_eq!(
        other_user[0].outcome,
        pb::BatchItemOutcome::AlreadyExisted as i32
    );
    assert_eq!(s.count_events::<ev::OpportunityCreated>().await, 1);
    // Now a user may name the campaign too.
    let results = s
        .opportunities
        .batch_create_opportunities(sales(pb::BatchCreateOpportunitiesRequest {
            requests: vec![item("user-1", &partner.to_string(), "De mână")],
        }))
        .await
        .unwrap()
        .into_inner()
        .results;
    assert_eq!(results[0].outcome, pb::BatchItemOutcome::Created as i32);

    // An empty batch is malformed as a whole.
    let status = s
        .opportunities
        .batch_create_opportunities(sales(pb::BatchCreateOpportunitiesRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["requests"]);
}

#[tokio::test]
async fn lists_filter_and_page_in_a_stable_order() {
    let mut s = start().await;
    let a = s.customer("Agroserv SRL").await;
    let b = s.customer("Baltic SRL").await;
    let mut ids = Vec::new();
    for i in 0..7 {
        let partner = if i % 2 == 0 { a } else { b };
        ids.push(s.opportunity(partner, ron(100 * i)).await.id);
    }
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = s
            .opportunities
            .list_opportunities(sales(pb::ListOpportunitiesRequest {
                page_size: 3,
                page_token: token.clone(),
                partner_id: a.to_string(),
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner();
        seen.extend(page.opportunities.into_iter().map(|o| o.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let expected: Vec<String> = ids.iter().step_by(2).rev().cloned().collect();
    assert_eq!(seen, expected, "newest first, every one once");
    // A token is bound to its filter.
    let page = s
        .opportunities
        .list_opportunities(sales(pb::ListOpportunitiesRequest {
            page_size: 1,
            partner_id: a.to_string(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    let status = s
        .opportunities
        .list_opportunities(sales(pb::ListOpportunitiesRequest {
            page_size: 1,
            page_token: page.next_page_token,
            partner_id: b.to_string(),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["page_token"]);
    // Stage filter.
    let open = s
        .opportunities
        .list_opportunities(sales(pb::ListOpportunitiesRequest {
            stages: vec![pb::OpportunityStage::New as i32],
            open_only: true,
            title_contains: "IRIGA".into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(open.opportunities.len(), 7);
}

#[tokio::test]
async fn the_loss_report_counts_by_reason_and_sums_per_currency() {
    let mut s = start().await;
    let partner = s.customer("Agroserv SRL").await;
    let reason = s
        .lost_reasons
        .create_lost_reason(manager(pb::CreateLostReasonRequest {
            lost_reason: Some(pb::LostReason {
                name: "Termen de livrare prea lung".into(),
                ..Default::default()
            }),
            request_id: String::new(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(reason.active);
    // A name is unique, case-insensitively.
    let status = s
        .lost_reasons
        .create_lost_reason(manager(pb::CreateLostReasonRequest {
            lost_reason: Some(pb::LostReason {
                name: "TERMEN DE LIVRARE PREA LUNG".into(),
                ..Default::default()
            }),
            request_id: String::new(),
        }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists);
    for potential in [ron(100), ron(250), eur(70)] {
        let o = s.opportunity(partner, potential).await;
        s.opportunities
            .mark_opportunity_lost(sales(pb::MarkOpportunityLostRequest {
                id: o.id.clone(),
                etag: o.etag.clone(),
                lost_reason_id: reason.id.clone(),
                ..Default::default()
            }))
            .await
            .unwrap();
    }
    let report = s
        .lost_reasons
        .get_loss_report(manager(pb::GetLossReportRequest {
            period: Some(crm_proto::common::DateRange {
                start_date: proto_date(today() - chrono::Days::new(1)),
                end_date: proto_date(today()),
            }),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(report.total_count, 3);
    let row = &report.rows[0];
    assert_eq!(row.lost_reason_name, "Termen de livrare prea lung");
    assert_eq!(row.count, 3);
    let sums: Vec<(String, i64)> = row
        .lost_potential_values
        .iter()
        .map(|m| (m.currency_code.clone(), m.units))
        .collect();
    assert_eq!(sums, [("RON".to_owned(), 350), ("EUR".to_owned(), 70)]);
    // A sales user may not read the report; a period is required.
    let status = s
        .lost_reasons
        .get_loss_report(sales(pb::GetLossReportRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let status = s
        .lost_reasons
        .get_loss_report(manager(pb::GetLossReportRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["period"]);
}

#[tokio::test]
async fn a_partner_snapshot_only_replaces_an_older_one() {
    let mut s = start().await;
    let id = s.customer("Agroserv SRL").await;
    let snapshot = |name: &str, version: u32| marketing::Partner {
        id: id.to_string(),
        kind: marketing::PartnerKind::Customer as i32,
        name: name.into(),
        etag: format!("W/\"{version}\""),
        ..Default::default()
    };
    s.publish(
        "crm.events.marketing",
        "marketing",
        &ev::PartnerUpdated {
            partner: Some(snapshot("Agroserv SA", 3)),
            changed_fields: vec!["name".into()],
        },
    )
    .await;
    s.wait_for(
        "SELECT count(*) FROM partners WHERE id = $1 AND name = 'Agroserv SA'",
        id,
        1,
    )
    .await;
    // A reclaimed older snapshot arrives late: ignored.
    s.publish(
        "crm.events.marketing",
        "marketing",
        &ev::PartnerUpdated {
            partner: Some(snapshot("Agroserv vechi", 2)),
            changed_fields: vec!["name".into()],
        },
    )
    .await;
    // A newer one after it proves the old one was consumed (in order) and skipped.
    s.publish(
        "crm.events.marketing",
        "marketing",
        &ev::PartnerUpdated {
            partner: Some(snapshot("Agroserv Grup", 4)),
            changed_fields: vec!["name".into()],
        },
    )
    .await;
    s.wait_for(
        "SELECT count(*) FROM partners WHERE id = $1 AND name = 'Agroserv Grup'",
        id,
        1,
    )
    .await;
    let versions: i64 = sqlx::query_scalar("SELECT source_version FROM partners WHERE id = $1")
        .bind(id)
        .fetch_one(&s.pool)
        .await
        .unwrap();
    assert_eq!(versions, 4);
}
