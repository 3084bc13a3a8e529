//! Opportunities and their stage history as records (O1, O2).

use chrono::{DateTime, NaiveDate, Utc};
use uuid::Uuid;

use super::{
    money::Money,
    stages::{Stage, StageConfig, weighted_value},
};

/// An opportunity as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Opportunity {
    /// Its id.
    pub id: Uuid,
    /// The partner (lead or customer).
    pub partner_id: Uuid,
    /// The campaign it comes from.
    pub campaign_id: Option<Uuid>,
    /// Title.
    pub title: String,
    /// The owner (staff).
    pub owner_staff_id: Uuid,
    /// Potential value without VAT.
    pub potential: Money,
    /// Probability set by hand, in percent; `None` uses the stage's default.
    pub probability_percent: Option<i32>,
    /// Probable signing date.
    pub expected_signing_date: Option<NaiveDate>,
    /// Current stage.
    pub stage: Stage,
    /// Next follow-up, from the latest stage change that has one.
    pub next_follow_up_date: Option<NaiveDate>,
    /// Its note.
    pub next_follow_up_note: String,
    /// The lost reason, when lost.
    pub lost_reason_id: Option<Uuid>,
    /// The note given when lost.
    pub lost_note: String,
    /// Free description.
    pub description: String,
    /// When the current stage was entered.
    pub stage_change_time: DateTime<Utc>,
    /// When it was won or lost.
    pub close_time: Option<DateTime<Utc>>,
    /// Audit: created.
    pub create_time: DateTime<Utc>,
    /// Audit: last changed.
    pub update_time: DateTime<Utc>,
    /// Audit: who created it.
    pub creator: String,
    /// Audit: who changed it last.
    pub updater: String,
    /// Incremented by every change; the etag is derived from it.
    pub version: i64,
}

impl Opportunity {
    /// The probability in use: set by hand, or the stage's default.
    pub fn effective_probability(&self, config: &StageConfig) -> i32 {
        self.probability_percent
            .unwrap_or_else(|| config.probability(self.stage))
    }

    /// Potential × effective probability, rounded half away from zero.
    pub fn weighted_value(&self, config: &StageConfig) -> Money {
        Money::new(
            weighted_value(self.potential.units, self.effective_probability(config)),
            self.potential.currency.clone(),
        )
    }

    /// A copy for the next version, changed by `who` at `at`.
    pub fn next_version(&self, who: &str, at: DateTime<Utc>) -> Self {
        Self {
            update_time: at,
            updater: who.to_owned(),
            version: self.version + 1,
            ..self.clone()
        }
    }

    /// Moves it into `stage` at `at` (close time set for SALE and LOST, cleared otherwise).
    pub fn enter(&mut self, stage: Stage, at: DateTime<Utc>) {
        self.stage = stage;
        self.stage_change_time = at;
        self.close_time = (!stage.is_open()).then_some(at);
        if stage != Stage::Lost {
            self.lost_reason_id = None;
            self.lost_note.clear();
        }
    }
}

/// Why a stage changed automatically.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cause {
    /// "contract" or "invoice".
    pub kind: &'static str,
    /// The document.
    pub id: Uuid,
    /// Its number.
    pub number: String,
}

/// One row of an opportunity's stage history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StageChange {
    /// Its id.
    pub id: Uuid,
    /// The opportunity.
    pub opportunity_id: Uuid,
    /// Stage entered.
    pub stage: Stage,
    /// Stage left (`None` for the first row).
    pub previous_stage: Option<Stage>,
    /// When.
    pub change_time: DateTime<Utc>,
    /// Delegate (staff) who carries the stage.
    pub delegate_staff_id: Option<Uuid>,
    /// Follow-up date (a task for the delegate, O4).
    pub follow_up_date: Option<NaiveDate>,
    /// Follow-up note.
    pub follow_up_note: String,
    /// Potential value allocated to the stage.
    pub allocated: Option<Money>,
    /// Who made the change (empty when automatic).
    pub changed_by: String,
    /// Lost reason, for a change to LOST.
    pub lost_reason_id: Option<Uuid>,
    /// Lost note.
    pub lost_note: String,
    /// The follow-up task tasks created.
    pub follow_up_task_id: Option<Uuid>,
    /// The document that caused an automatic change.
    pub cause: Option<Cause>,
    /// Why it was reopened.
    pub reopen_note: String,
}

impl StageChange {
    /// A row for `opportunity` entering its current stage from `previous` at `at`, by `who`.
    pub fn of(opportunity: &Opportunity, previous: Option<Stage>, who: &str) -> Self {
        Self {
            id: Uuid::now_v7(),
            opportunity_id: opportunity.id,
            stage: opportunity.stage,
            previous_stage: previous,
            change_time: opportunity.stage_change_time,
            delegate_staff_id: None,
            follow_up_date: None,
            follow_up_note: String::new(),
            allocated: None,
            changed_by: who.to_owned(),
            lost_reason_id: None,
            lost_note: String::new(),
            follow_up_task_id: None,
            cause: None,
            reopen_note: String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::money::Currency;

    #[test]
    fn the_weighted_value_uses_the_stage_default_unless_set() {
        let at = Utc::now();
        let mut o = Opportunity {
            id: Uuid::now_v7(),
            partner_id: Uuid::now_v7(),
            campaign_id: None,
            title: "t".into(),
            owner_staff_id: Uuid::now_v7(),
            potential: Money::new(10_000, Currency::default_currency()),
            probability_percent: None,
            expected_signing_date: None,
            stage: Stage::Offer,
            next_follow_up_date: None,
            next_follow_up_note: String::new(),
            lost_reason_id: None,
            lost_note: String::new(),
            description: String::new(),
            stage_change_time: at,
            close_time: None,
            create_time: at,
            update_time: at,
            creator: "ana".into(),
            updater: "ana".into(),
            version: 1,
        };
        let config = StageConfig::default();
        assert_eq!(o.weighted_value(&config).units, 3_000);
        o.probability_percent = Some(55);
        assert_eq!(o.weighted_value(&config).units, 5_500);
        o.lost_reason_id = Some(Uuid::now_v7());
        o.enter(Stage::Sale, at);
        assert_eq!(o.close_time, Some(at));
        assert_eq!(o.lost_reason_id, None);
        o.enter(Stage::Offer, at);
        assert_eq!(o.close_time, None);
    }
}
