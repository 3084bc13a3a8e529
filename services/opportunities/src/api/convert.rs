//! Domain → proto for what several services return (money, stages, lines, totals,
//! attachments), and proto → domain for the enums.

use crm_platform::values::{date_to_proto, etag_of, timestamp};
use crm_proto::{common, opportunities as pb};

use crate::domain::{
    catalogue::Attachment,
    lines::{Line, Totals},
    money::{Currency, Money},
    opportunity::{Opportunity, StageChange},
    stages::{Level, Stage, StageConfig},
};

/// Money as the proto message.
pub fn money(m: &Money) -> common::Money {
    common::Money {
        units: m.units,
        currency_code: m.currency.as_str().to_owned(),
    }
}

/// `units` of `currency` as the proto message.
pub fn amount(units: i64, currency: &Currency) -> common::Money {
    common::Money {
        units,
        currency_code: currency.as_str().to_owned(),
    }
}

/// A stage as the proto enum.
pub fn stage(s: Stage) -> pb::OpportunityStage {
    match s {
        Stage::New => pb::OpportunityStage::New,
        Stage::Presentation => pb::OpportunityStage::Presentation,
        Stage::Offer => pb::OpportunityStage::Offer,
        Stage::Negotiation => pb::OpportunityStage::Negotiation,
        Stage::Sale => pb::OpportunityStage::Sale,
        Stage::Lost => pb::OpportunityStage::Lost,
    }
}

/// The stage of a proto enum value; `Ok(None)` for UNSPECIFIED, `Err` for an unknown number.
pub fn stage_from(raw: i32) -> Result<Option<Stage>, String> {
    match pb::OpportunityStage::try_from(raw) {
        Ok(pb::OpportunityStage::Unspecified) => Ok(None),
        Ok(pb::OpportunityStage::New) => Ok(Some(Stage::New)),
        Ok(pb::OpportunityStage::Presentation) => Ok(Some(Stage::Presentation)),
        Ok(pb::OpportunityStage::Offer) => Ok(Some(Stage::Offer)),
        Ok(pb::OpportunityStage::Negotiation) => Ok(Some(Stage::Negotiation)),
        Ok(pb::OpportunityStage::Sale) => Ok(Some(Stage::Sale)),
        Ok(pb::OpportunityStage::Lost) => Ok(Some(Stage::Lost)),
        Err(_) => Err(format!("{raw} is not a stage")),
    }
}

/// A level as the proto enum.
pub fn level(l: Level) -> pb::PotentialLevel {
    match l {
        Level::Zero => pb::PotentialLevel::Zero,
        Level::Low => pb::PotentialLevel::Low,
        Level::Medium => pb::PotentialLevel::Medium,
        Level::High => pb::PotentialLevel::High,
        Level::VeryHigh => pb::PotentialLevel::VeryHigh,
    }
}

/// The level of a proto enum value; `Ok(None)` for UNSPECIFIED.
pub fn level_from(raw: i32) -> Result<Option<Level>, String> {
    match pb::PotentialLevel::try_from(raw) {
        Ok(pb::PotentialLevel::Unspecified) => Ok(None),
        Ok(pb::PotentialLevel::Zero) => Ok(Some(Level::Zero)),
        Ok(pb::PotentialLevel::Low) => Ok(Some(Level::Low)),
        Ok(pb::PotentialLevel::Medium) => Ok(Some(Level::Medium)),
        Ok(pb::PotentialLevel::High) => Ok(Some(Level::High)),
        Ok(pb::PotentialLevel::VeryHigh) => Ok(Some(Level::VeryHigh)),
        Err(_) => Err(format!("{raw} is not a potential level")),
    }
}

/// An opportunity as the proto message, with what the stage configuration derives.
pub fn opportunity(o: &Opportunity, config: &StageConfig) -> pb::Opportunity {
    pb::Opportunity {
        id: o.id.to_string(),
        partner_id: o.partner_id.to_string(),
        campaign_id: o.campaign_id.map(|id| id.to_string()).unwrap_or_default(),
        title: o.title.clone(),
        owner_staff_id: o.owner_staff_id.to_string(),
        potential_value: Some(money(&o.potential)),
        probability_percent: o.probability_percent,
        expected_signing_date: o.expected_signing_date.map(date_to_proto),
        stage: stage(o.stage) as i32,
        potential_level: level(config.level(o.stage)) as i32,
        effective_probability_percent: o.effective_probability(config),
        weighted_value: Some(money(&o.weighted_value(config))),
        next_follow_up_date: o.next_follow_up_date.map(date_to_proto),
        next_follow_up_note: o.next_follow_up_note.clone(),
        lost_reason_id: o
            .lost_reason_id
            .map(|id| id.to_string())
            .unwrap_or_default(),
        lost_note: o.lost_note.clone(),
        description: o.description.clone(),
        stage_change_time: Some(timestamp(o.stage_change_time)),
        close_time: o.close_time.map(timestamp),
        create_time: Some(timestamp(o.create_time)),
        update_time: Some(timestamp(o.update_time)),
        creator: o.creator.clone(),
        etag: etag_of(o.version),
        stage_code: o.stage.seed_code().to_owned(),
        stage_name: config.name(o.stage).to_owned(),
    }
}

/// A stage-change row as the proto message.
pub fn stage_change(c: &StageChange) -> pb::StageChange {
    pb::StageChange {
        id: c.id.to_string(),
        opportunity_id: c.opportunity_id.to_string(),
        stage: stage(c.stage) as i32,
        previous_stage: c
            .previous_stage
            .map_or(pb::OpportunityStage::Unspecified, stage) as i32,
        change_time: Some(timestamp(c.change_time)),
        delegate_staff_id: c
            .delegate_staff_id
            .map(|id| id.to_string())
            .unwrap_or_default(),
        follow_up_date: c.follow_up_date.map(date_to_proto),
        follow_up_note: c.follow_up_note.clone(),
        allocated_value: c.allocated.as_ref().map(money),
        changed_by: c.changed_by.clone(),
        lost_reason_id: c
            .lost_reason_id
            .map(|id| id.to_string())
            .unwrap_or_default(),
        lost_note: c.lost_note.clone(),
        follow_up_task_id: c
            .follow_up_task_id
            .map(|id| id.to_string())
            .unwrap_or_default(),
        cause: c.cause.as_ref().map(|cause| common::DocumentRef {
            kind: if cause.kind == "contract" {
                common::DocumentKind::Contract
            } else {
                common::DocumentKind::Invoice
            } as i32,
            id: cause.id.to_string(),
            number: cause.number.clone(),
        }),
        stage_code: c.stage.seed_code().to_owned(),
        reopen_note: c.reopen_note.clone(),
    }
}

/// An attachment as the proto message.
pub fn attachment(a: &Attachment) -> common::AttachmentRef {
    a.to_proto()
}

/// A line as the proto message.
pub fn line(l: &Line, currency: &Currency) -> pb::DocumentLine {
    pb::DocumentLine {
        id: l.id.to_string(),
        article_id: l.article_id.to_string(),
        article_code: l.article_code.clone(),
        description: l.description.clone(),
        unit: l.unit.clone(),
        quantity_milli: l.values.quantity_milli,
        unit_price: Some(amount(l.values.unit_price, currency)),
        vat_rate_bp: Some(l.values.vat_rate_bp),
        discount_bp: l.values.discount_bp,
        amount_without_vat: Some(amount(l.amounts.without_vat, currency)),
        vat_amount: Some(amount(l.amounts.vat, currency)),
        amount_with_vat: Some(amount(l.amounts.with_vat, currency)),
        source_line_id: l
            .source_line_id
            .map(|id| id.to_string())
            .unwrap_or_default(),
    }
}

/// Totals as the proto message.
pub fn totals(t: &Totals, currency: &Currency) -> pb::DocumentTotals {
    pb::DocumentTotals {
        total_without_vat: Some(amount(t.without_vat, currency)),
        total_vat: Some(amount(t.vat, currency)),
        total_with_vat: Some(amount(t.with_vat, currency)),
        vat_breakdown: t
            .breakdown
            .iter()
            .map(|b| pb::VatBreakdown {
                vat_rate_bp: b.vat_rate_bp,
                taxable_amount: Some(amount(b.taxable, currency)),
                vat_amount: Some(amount(b.vat, currency)),
            })
            .collect(),
    }
}
