//! `OpportunityService`: opportunities, their stages and history, the pipeline and the stage
//! configuration (O1–O4).

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use crm_platform::{auth::Caller, values::timestamp};
use crm_proto::{
    events as ev,
    opportunities::{self as pb, opportunity_service_server::OpportunityService},
};
use sqlx::{PgConnection, Postgres, Transaction};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::MoneyFields as _;
use super::{
    Fields, MANAGER_ROLES, OpportunitiesApi, Page, SALES_ROLES, caller, check_version, convert,
    like_literal,
};
use crate::{
    domain::{
        money::{Currency, Money, PerCurrency},
        opportunity::{Cause, Opportunity, StageChange},
        stages::{self, Level, Stage, StageConfig},
    },
    error::{OpportunitiesError, Result},
    store::{
        self, NewestFirstCursor,
        opportunities::{Filter, PipelineQuery},
    },
};

/// Largest potential value, in minor units (ten thousand billion units of any currency): keeps
/// every sum of the pipeline far inside `i64`.
const MAX_POTENTIAL: i64 = 1_000_000_000_000_000;
/// Most items of one BatchCreateOpportunities.
const MAX_BATCH: usize = 500;
/// Fields UpdateOpportunity may change: never ids, owner, stage or audit fields (X5).
const UPDATABLE: &[&str] = &[
    "title",
    "potential_value",
    "probability_percent",
    "expected_signing_date",
    "campaign_id",
    "description",
];
/// The service whose calls name campaigns that may not have reached the catalogue yet.
const MARKETING_SERVICE: &str = "marketing";

/// A valid opportunity to create.
struct NewOpportunity {
    partner_id: Uuid,
    campaign_id: Option<Uuid>,
    title: String,
    owner_staff_id: Uuid,
    potential: Money,
    probability_percent: Option<i32>,
    expected_signing_date: Option<chrono::NaiveDate>,
    description: String,
}

/// Parses the opportunity of a create request; fields are named under `at` ("opportunity").
fn parse_new(o: &pb::Opportunity, at: &str, f: &mut Fields) -> Option<NewOpportunity> {
    let partner_id = f.id(&format!("{at}.partner_id"), &o.partner_id);
    let campaign_id = f.optional_id(&format!("{at}.campaign_id"), &o.campaign_id);
    let title = f.text(&format!("{at}.title"), &o.title, 200, true);
    let owner_staff_id = f.id(&format!("{at}.owner_staff_id"), &o.owner_staff_id);
    let potential = f.money(
        &format!("{at}.potential_value"),
        o.potential_value.as_ref(),
        MAX_POTENTIAL,
    );
    let probability = probability(
        f,
        &format!("{at}.probability_percent"),
        o.probability_percent,
    );
    let signing = f.date(
        &format!("{at}.expected_signing_date"),
        o.expected_signing_date.as_ref(),
    );
    let description = f.text(&format!("{at}.description"), &o.description, 4000, false);
    Some(NewOpportunity {
        partner_id: partner_id?,
        campaign_id: campaign_id?,
        title: title?,
        owner_staff_id: owner_staff_id?,
        potential: potential?.unwrap_or_else(|| Money::new(0, Currency::default_currency())),
        probability_percent: probability?,
        expected_signing_date: signing?,
        description: description?,
    })
}

fn probability(f: &mut Fields, field: &str, raw: Option<i32>) -> Option<Option<i32>> {
    match raw {
        Some(p) if !(0..=100).contains(&p) => {
            f.add(field, "must be between 0 and 100");
            None
        }
        other => Some(other),
    }
}

impl OpportunitiesApi {
    /// The stage configuration now.
    pub(crate) async fn stage_config(&self, conn: &mut PgConnection) -> Result<StageConfig> {
        Ok(store::catalogues::get_stage_config(conn, false).await?.0)
    }

    /// Checks the campaigns named by a create: known ones pass; unknown ones named by the
    /// marketing service (for itself or for a user) are recorded (marketing owns campaigns, and its events may
    /// trail its call); others are unknown, by id.
    async fn unknown_campaigns(
        &self,
        conn: &mut PgConnection,
        caller: &Caller,
        ids: impl IntoIterator<Item = Uuid>,
    ) -> Result<HashSet<Uuid>> {
        let mut unknown = HashSet::new();
        for id in ids.into_iter().collect::<HashSet<_>>() {
            if store::catalogues::get_campaign(conn, id).await?.is_some() {
                continue;
            }
            // Marketing's own call, or marketing acting for a user (M7).
            if caller.is_from_service(MARKETING_SERVICE) {
                store::catalogues::announce_campaign(conn, id, self.clock.now()).await?;
            } else {
                unknown.insert(id);
            }
        }
        Ok(unknown)
    }

    /// Creates one opportunity in `tx`, or returns the one `request_id` created before
    /// (`false`).
    async fn insert_new(
        &self,
        tx: &mut PgConnection,
        caller: &Caller,
        new: NewOpportunity,
        request_id: &str,
        config: &StageConfig,
    ) -> Result<(Opportunity, bool)> {
        let now = self.clock.now();
        let id = Uuid::now_v7();
        if !request_id.is_empty()
            && let Some(existing) = store::claim_request(
                tx,
                "opportunity",
                &caller.request_scope(),
                request_id,
                id,
                now,
            )
            .await?
        {
            let opportunity = store::opportunities::get(tx, existing, false)
                .await?
                .ok_or_else(|| OpportunitiesError::not_found("opportunity", existing))?;
            return Ok((opportunity, false));
        }
        let opportunity = Opportunity {
            id,
            partner_id: new.partner_id,
            campaign_id: new.campaign_id,
            title: new.title,
            owner_staff_id: new.owner_staff_id,
            potential: new.potential,
            probability_percent: new.probability_percent,
            expected_signing_date: new.expected_signing_date,
            stage: Stage::New,
            next_follow_up_date: None,
            next_follow_up_note: String::new(),
            lost_reason_id: None,
            lost_note: String::new(),
            description: new.description,
            stage_change_time: now,
            close_time: None,
            create_time: now,
            update_time: now,
            creator: caller.subject.clone(),
            updater: caller.subject.clone(),
            version: 1,
        };
        store::opportunities::insert(tx, &opportunity).await?;
        let first = StageChange::of(&opportunity, None, &caller.subject);
        store::opportunities::insert_stage_change(tx, &first).await?;
        self.events
            .publish(
                tx,
                opportunity.partner_id,
                &caller.subject,
                &ev::OpportunityCreated {
                    opportunity: Some(convert::opportunity(&opportunity, config)),
                },
                now,
            )
            .await?;
        Ok((opportunity, true))
    }

    async fn create(
        &self,
        caller: &Caller,
        request: pb::CreateOpportunityRequest,
    ) -> Result<pb::Opportunity> {
        let mut f = Fields::new();
        let request_id = f.text("request_id", &request.request_id, 100, false);
        let new = match &request.opportunity {
            Some(o) => parse_new(o, "opportunity", &mut f),
            None => {
                f.add("opportunity", "is required");
                None
            }
        };
        let (Some(new), Some(request_id)) = (new, request_id) else {
            return Err(f.finish().expect_err("a field was refused").into());
        };
        f.finish()?;
        if caller.via_service.is_none() {
            self.partners
                .usable(new.partner_id, "opportunity.partner_id")
                .await?;
        }
        let mut tx = self.pool.begin().await?;
        if self
            .unknown_campaigns(&mut tx, caller, new.campaign_id)
            .await?
            .contains(&new.campaign_id.unwrap_or_default())
        {
            return Err(OpportunitiesError::invalid(
                "opportunity.campaign_id",
                "is not a known campaign",
            ));
        }
        let config = self.stage_config(&mut tx).await?;
        let (opportunity, _) = self
            .insert_new(&mut tx, caller, new, &request_id, &config)
            .await?;
        self.events.commit(tx).await?;
        Ok(convert::opportunity(&opportunity, &config))
    }

    /// Creates every valid item of a batch in one transaction, each behind a savepoint so one
    /// failure costs only its item.
    async fn batch_create(
        &self,
        caller: &Caller,
        request: pb::BatchCreateOpportunitiesRequest,
    ) -> Result<pb::BatchCreateOpportunitiesResponse> {
        if request.requests.is_empty() || request.requests.len() > MAX_BATCH {
            return Err(OpportunitiesError::invalid(
                "requests",
                format!("must hold 1 to {MAX_BATCH} items"),
            ));
        }
        let mut results: Vec<pb::BatchCreateOpportunitiesResult> = request
            .requests
            .iter()
            .map(|r| pb::BatchCreateOpportunitiesResult {
                request_id: r.request_id.clone(),
                ..Default::default()
            })
            .collect();
        let mut valid: Vec<(usize, NewOpportunity, String)> = Vec::new();
        let mut seen_request_ids = HashSet::new();
        for (i, item) in request.requests.iter().enumerate() {
            let at = format!("requests[{i}]");
            let mut f = Fields::new();
            let request_id = f.text(&format!("{at}.request_id"), &item.request_id, 100, true);
            if let Some(id) = &request_id
                && !id.is_empty()
                && !seen_request_ids.insert(id.clone())
            {
                f.add(
                    format!("{at}.request_id"),
                    "is used by an earlier item of this batch",
                );
            }
            let new = match &item.opportunity {
                Some(o) => parse_new(o, &format!("{at}.opportunity"), &mut f),
                None => {
                    f.add(format!("{at}.opportunity"), "is required");
                    None
                }
            };
            match (new, request_id, f.is_empty()) {
                (Some(new), Some(request_id), true) => valid.push((i, new, request_id)),
                _ => results[i] = failed(&item.request_id, f.0),
            }
        }

        let mut tx = self.pool.begin().await?;
        let unknown = self
            .unknown_campaigns(
                &mut tx,
                caller,
                valid.iter().filter_map(|(_, n, _)| n.campaign_id),
            )
            .await?;
        let config = self.stage_config(&mut tx).await?;
        for (i, new, request_id) in valid {
            if let Some(campaign) = new.campaign_id.filter(|c| unknown.contains(c)) {
                let mut f = Fields::new();
                f.add(
                    format!("requests[{i}].opportunity.campaign_id"),
                    format!("{campaign} is not a known campaign"),
                );
                results[i] = failed(&request_id, f.0);
                continue;
            }
            // Partners named by a CRM service (marketing's campaign members) are trusted: the
            // directory learns them from marketing's events.
            if caller.via_service.is_none()
                && let Err(err) = self
                    .partners
                    .usable_on(
                        &mut tx,
                        new.partner_id,
                        &format!("requests[{i}].opportunity.partner_id"),
                    )
                    .await
            {
                results[i] = failed_with(&request_id, err);
                continue;
            }
            // A savepoint: one item's failure undoes only that item.
            let mut item_tx = sqlx::Connection::begin(&mut *tx).await?;
            match self
                .insert_new(&mut item_tx, caller, new, &request_id, &config)
                .await
            {
                Ok((opportunity, created)) => {
                    item_tx.commit().await?;
                    results[i] = pb::BatchCreateOpportunitiesResult {
                        opportunity: Some(convert::opportunity(&opportunity, &config)),
                        outcome: if created {
                            pb::BatchItemOutcome::Created
                        } else {
                            pb::BatchItemOutcome::AlreadyExisted
                        } as i32,
                        error: None,
                        request_id,
                    };
                }
                Err(err) => {
                    item_tx.rollback().await?;
                    results[i] = failed_with(&request_id, err);
                }
            }
        }
        self.events.commit(tx).await?;
        Ok(pb::BatchCreateOpportunitiesResponse { results })
    }

    /// Opens the transaction of a change to opportunity `id` and loads it locked, checked
    /// against the version of the etag.
    async fn begin_change(
        &self,
        id: Uuid,
        version: i64,
    ) -> Result<(Transaction<'static, Postgres>, Opportunity, StageConfig)> {
        let mut tx = self.pool.begin().await?;
        let current = store::opportunities::get(&mut tx, id, true)
            .await?
            .ok_or_else(|| OpportunitiesError::not_found("opportunity", id))?;
        check_version("opportunity", version, current.version)?;
        let config = self.stage_config(&mut tx).await?;
        Ok((tx, current, config))
    }

    /// Stores `updated` over `current` and publishes `OpportunityUpdated` naming `changed`.
    async fn save_update(
        &self,
        mut tx: Transaction<'static, Postgres>,
        current: &Opportunity,
        updated: &Opportunity,
        changed: Vec<String>,
        config: &StageConfig,
    ) -> Result<pb::Opportunity> {
        if !store::opportunities::update(&mut tx, updated, current.version).await? {
            return Err(OpportunitiesError::StaleEtag("opportunity"));
        }
        let proto = convert::opportunity(updated, config);
        self.events
            .publish(
                &mut tx,
                updated.partner_id,
                &updated.updater,
                &ev::OpportunityUpdated {
                    opportunity: Some(proto.clone()),
                    changed_fields: changed,
                },
                updated.update_time,
            )
            .await?;
        self.events.commit(tx).await?;
        Ok(proto)
    }

    async fn update(
        &self,
        caller: &Caller,
        request: pb::UpdateOpportunityRequest,
    ) -> Result<pb::Opportunity> {
        let mut f = Fields::new();
        let paths = f.mask(request.update_mask.as_ref(), UPDATABLE);
        let version = f.etag(&request.etag);
        let Some(changes) = request.opportunity else {
            f.add("opportunity", "is required");
            return Err(f.finish().expect_err("refused").into());
        };
        let id = f.id("opportunity.id", &changes.id);
        // Parse only the masked fields: others are not changed, whatever they hold.
        let mut title = None;
        let mut potential = None;
        let mut probability_value = None;
        let mut signing = None;
        let mut campaign = None;
        let mut description = None;
        for path in &paths {
            match path.as_str() {
                "title" => title = f.text("opportunity.title", &changes.title, 200, true),
                "potential_value" => {
                    potential = f
                        .money(
                            "opportunity.potential_value",
                            changes.potential_value.as_ref(),
                            MAX_POTENTIAL,
                        )
                        .map(|m| m.unwrap_or_else(|| Money::new(0, Currency::default_currency())));
                }
                "probability_percent" => {
                    probability_value = probability(
                        &mut f,
                        "opportunity.probability_percent",
                        changes.probability_percent,
                    );
                }
                "expected_signing_date" => {
                    signing = f.date(
                        "opportunity.expected_signing_date",
                        changes.expected_signing_date.as_ref(),
                    );
                }
                "campaign_id" => {
                    campaign = f.optional_id("opportunity.campaign_id", &changes.campaign_id);
                }
                "description" => {
                    description =
                        f.text("opportunity.description", &changes.description, 4000, false);
                }
                _ => {}
            }
        }
        f.finish()?;
        let (id, version) = (id.expect("checked"), version.expect("checked"));
        let (mut tx, current, config) = self.begin_change(id, version).await?;
        if !current.stage.is_open() {
            return Err(OpportunitiesError::precondition(
                stages::StageRuleError::Closed(current.stage),
            ));
        }
        if let Some(Some(campaign_id)) = campaign
            && Some(campaign_id) != current.campaign_id
            && !self
                .unknown_campaigns(&mut tx, caller, [campaign_id])
                .await?
                .is_empty()
        {
            return Err(OpportunitiesError::invalid(
                "opportunity.campaign_id",
                "is not a known campaign",
            ));
        }
        let mut updated = current.next_version(&caller.subject, self.clock.now());
        if let Some(title) = title {
            updated.title = title;
        }
        if let Some(potential) = potential {
            updated.potential = potential;
        }
        if let Some(p) = probability_value {
            updated.probability_percent = p;
        }
        if let Some(s) = signing {
            updated.expected_signing_date = s;
        }
        if let Some(c) = campaign {
            updated.campaign_id = c;
        }
        if let Some(d) = description {
            updated.description = d;
        }
        let changed: Vec<String> = paths
            .iter()
            .filter(|path| match path.as_str() {
                "title" => updated.title != current.title,
                "potential_value" => updated.potential != current.potential,
                "probability_percent" => updated.probability_percent != current.probability_percent,
                "expected_signing_date" => {
                    updated.expected_signing_date != current.expected_signing_date
                }
                "campaign_id" => updated.campaign_id != current.campaign_id,
                "description" => updated.description != current.description,
                _ => false,
            })
            .cloned()
            .collect();
        if changed.is_empty() {
            tx.rollback().await?;
            return Ok(convert::opportunity(&current, &config));
        }
        self.save_update(tx, &current, &updated, changed, &config)
            .await
    }

    async fn reassign(
        &self,
        caller: &Caller,
        request: pb::ReassignOpportunityRequest,
    ) -> Result<pb::Opportunity> {
        let mut f = Fields::new();
        let id = f.id("id", &request.id);
        let version = f.etag(&request.etag);
        let owner = f.id("owner_staff_id", &request.owner_staff_id);
        f.text("note", &request.note, 2000, false);
        f.finish()?;
        let (id, version, owner) = (
            id.expect("checked"),
            version.expect("checked"),
            owner.expect("checked"),
        );
        let (tx, current, config) = self.begin_change(id, version).await?;
        if current.owner_staff_id == owner {
            return Err(OpportunitiesError::invalid(
                "owner_staff_id",
                "is already the owner",
            ));
        }
        let updated = Opportunity {
            owner_staff_id: owner,
            ..current.next_version(&caller.subject, self.clock.now())
        };
        self.save_update(
            tx,
            &current,
            &updated,
            vec!["owner_staff_id".into()],
            &config,
        )
        .await
    }

    /// Records a stage change of `updated` (already in its new stage) over `current`, and
    /// publishes it with `event`.
    async fn save_stage_change(
        &self,
        tx: &mut PgConnection,
        current: &Opportunity,
        updated: &Opportunity,
        change: &StageChange,
        config: &StageConfig,
        lost_reason_name: Option<String>,
    ) -> Result<pb::Opportunity> {
        store::opportunities::insert_stage_change(tx, change).await?;
        if !store::opportunities::update(tx, updated, current.version).await? {
            return Err(OpportunitiesError::StaleEtag("opportunity"));
        }
        let proto = convert::opportunity(updated, config);
        let actor = if change.changed_by.is_empty() {
            "service:opportunities"
        } else {
            change.changed_by.as_str()
        };
        match lost_reason_name {
            Some(name) => {
                self.events
                    .publish(
                        tx,
                        updated.partner_id,
                        actor,
                        &ev::OpportunityLost {
                            opportunity: Some(proto.clone()),
                            stage_change: Some(convert::stage_change(change)),
                            lost_reason_name: name,
                        },
                        change.change_time,
                    )
                    .await?;
            }
            None => {
                self.events
                    .publish(
                        tx,
                        updated.partner_id,
                        actor,
                        &ev::OpportunityStageChanged {
                            opportunity: Some(proto.clone()),
                            stage_change: Some(convert::stage_change(change)),
                        },
                        change.change_time,
                    )
                    .await?;
            }
        }
        Ok(proto)
    }

    /// The opportunity as a repeated request id left it: the first call's result.
    async fn repeated(
        &self,
        tx: Transaction<'static, Postgres>,
        id: Uuid,
    ) -> Result<pb::Opportunity> {
        tx.rollback().await?;
        let mut conn = self.pool.acquire().await?;
        let config = self.stage_config(&mut conn).await?;
        let current = store::opportunities::get(&mut conn, id, false)
            .await?
            .ok_or_else(|| OpportunitiesError::not_found("opportunity", id))?;
        Ok(convert::opportunity(&current, &config))
    }

    async fn change_stage(
        &self,
        caller: &Caller,
        request: pb::ChangeOpportunityStageRequest,
    ) -> Result<pb::Opportunity> {
        let mut f = Fields::new();
        let id = f.id("id", &request.id);
        let version = f.etag(&request.etag);
        let target = match convert::stage_from(request.stage) {
            Ok(Some(stage)) => Some(stage),
            Ok(None) => {
                f.add("stage", "is required");
                None
            }
            Err(reason) => {
                f.add("stage", reason);
                None
            }
        };
        let delegate = f.optional_id("delegate_staff_id", &request.delegate_staff_id);
        let follow_up = f.date("follow_up_date", request.follow_up_date.as_ref());
        let note = f.text("follow_up_note", &request.follow_up_note, 2000, false);
        let allocated = f.money(
            "allocated_value",
            request.allocated_value.as_ref(),
            MAX_POTENTIAL,
        );
        let request_id = f.text("request_id", &request.request_id, 100, false);
        if let Some(Some(day)) = follow_up {
            if day < self.today() {
                f.add("follow_up_date", "must be today or later");
            }
            if delegate == Some(None) {
                f.add(
                    "delegate_staff_id",
                    "is required with a follow-up date: the follow-up task is the delegate's",
                );
            }
        }
        f.finish()?;
        let id = id.expect("checked");
        let target = target.expect("checked");
        let follow_up = follow_up.expect("checked");
        let allocated = allocated.expect("checked");
        let request_id = request_id.expect("checked");

        let (mut tx, current, config) = self.begin_change(id, version.expect("checked")).await?;
        let now = self.clock.now();
        let change_id = Uuid::now_v7();
        if !request_id.is_empty()
            && store::claim_request(
                &mut tx,
                &format!("stage_change:{id}"),
                &caller.request_scope(),
                &request_id,
                change_id,
                now,
            )
            .await?
            .is_some()
        {
            return self.repeated(tx, id).await;
        }
        if let Some(m) = &allocated
            && m.currency != current.potential.currency
        {
            return Err(OpportunitiesError::invalid(
                "allocated_value.currency_code",
                format!(
                    "must be the opportunity's currency, {}",
                    current.potential.currency
                ),
            ));
        }
        let has_document =
            target == Stage::Sale && store::opportunities::has_sale_document(&mut tx, id).await?;
        stages::check_change(current.stage, target, follow_up.is_some(), has_document)?;
        let mut updated = current.next_version(&caller.subject, now);
        if target != current.stage {
            updated.enter(target, now);
        }
        if let Some(day) = follow_up {
            updated.next_follow_up_date = Some(day);
            updated.next_follow_up_note = note.clone().unwrap_or_default();
        }
        let change = StageChange {
            id: change_id,
            delegate_staff_id: delegate.flatten(),
            follow_up_date: follow_up,
            follow_up_note: note.unwrap_or_default(),
            allocated,
            change_time: now,
            ..StageChange::of(&updated, Some(current.stage), &caller.subject)
        };
        let proto = self
            .save_stage_change(&mut tx, &current, &updated, &change, &config, None)
            .await?;
        self.events.commit(tx).await?;
        Ok(proto)
    }

    async fn mark_lost(
        &self,
        caller: &Caller,
        request: pb::MarkOpportunityLostRequest,
    ) -> Result<pb::Opportunity> {
        let mut f = Fields::new();
        let id = f.id("id", &request.id);
        let version = f.etag(&request.etag);
        let reason_id = f.id("lost_reason_id", &request.lost_reason_id);
        let note = f.text("note", &request.note, 2000, false);
        let request_id = f.text("request_id", &request.request_id, 100, false);
        f.finish()?;
        let (id, reason_id) = (id.expect("checked"), reason_id.expect("checked"));
        let (mut tx, current, config) = self.begin_change(id, version.expect("checked")).await?;
        let now = self.clock.now();
        let change_id = Uuid::now_v7();
        let request_id = request_id.expect("checked");
        if !request_id.is_empty()
            && store::claim_request(
                &mut tx,
                &format!("stage_change:{id}"),
                &caller.request_scope(),
                &request_id,
                change_id,
                now,
            )
            .await?
            .is_some()
        {
            return self.repeated(tx, id).await;
        }
        let reason = store::lost_reasons::get(&mut tx, reason_id)
            .await?
            .filter(|r| r.active)
            .ok_or_else(|| {
                OpportunitiesError::invalid("lost_reason_id", "is not an active lost reason")
            })?;
        stages::check_lost(current.stage)?;
        let mut updated = current.next_version(&caller.subject, now);
        updated.enter(Stage::Lost, now);
        updated.lost_reason_id = Some(reason.id);
        updated.lost_note = note.clone().unwrap_or_default();
        let change = StageChange {
            id: change_id,
            lost_reason_id: Some(reason.id),
            lost_note: note.unwrap_or_default(),
            ..StageChange::of(&updated, Some(current.stage), &caller.subject)
        };
        let proto = self
            .save_stage_change(
                &mut tx,
                &current,
                &updated,
                &change,
                &config,
                Some(reason.name),
            )
            .await?;
        self.events.commit(tx).await?;
        Ok(proto)
    }

    async fn reopen(
        &self,
        caller: &Caller,
        request: pb::ReopenOpportunityRequest,
    ) -> Result<pb::Opportunity> {
        let mut f = Fields::new();
        let id = f.id("id", &request.id);
        let version = f.etag(&request.etag);
        let target = f.0.check("stage", convert::stage_from(request.stage));
        let note = f.text("note", &request.note, 2000, true);
        let request_id = f.text("request_id", &request.request_id, 100, false);
        f.finish()?;
        let id = id.expect("checked");
        let (mut tx, current, config) = self.begin_change(id, version.expect("checked")).await?;
        if current.stage == Stage::Sale && !caller.has_any_role(MANAGER_ROLES) {
            return Err(OpportunitiesError::PermissionDenied(
                "reopening a won opportunity needs the manager or admin role".into(),
            ));
        }
        let now = self.clock.now();
        let change_id = Uuid::now_v7();
        let request_id = request_id.expect("checked");
        if !request_id.is_empty()
            && store::claim_request(
                &mut tx,
                &format!("stage_change:{id}"),
                &caller.request_scope(),
                &request_id,
                change_id,
                now,
            )
            .await?
            .is_some()
        {
            return self.repeated(tx, id).await;
        }
        let last_open = store::opportunities::last_open_stage(&mut tx, id)
            .await?
            .unwrap_or(Stage::New);
        let stage = stages::reopen_stage(current.stage, target.flatten(), last_open)?;
        let mut updated = current.next_version(&caller.subject, now);
        updated.enter(stage, now);
        let change = StageChange {
            id: change_id,
            reopen_note: note.unwrap_or_default(),
            ..StageChange::of(&updated, Some(current.stage), &caller.subject)
        };
        let proto = self
            .save_stage_change(&mut tx, &current, &updated, &change, &config, None)
            .await?;
        self.events.commit(tx).await?;
        Ok(proto)
    }

    /// Moves the open opportunity `id` to SALE because `cause` (a signed contract, an issued
    /// invoice) says it is won (O2), in the caller's transaction. A closed opportunity is left
    /// as it is.
    pub(crate) async fn win_by_document(
        &self,
        tx: &mut PgConnection,
        id: Uuid,
        cause: Cause,
        at: DateTime<Utc>,
    ) -> Result<()> {
        let Some(current) = store::opportunities::get(tx, id, true).await? else {
            return Ok(());
        };
        if !stages::document_wins(current.stage) {
            return Ok(());
        }
        let config = self.stage_config(tx).await?;
        let mut updated = current.next_version("", at);
        updated.enter(Stage::Sale, at);
        let change = StageChange {
            cause: Some(cause),
            ..StageChange::of(&updated, Some(current.stage), "")
        };
        self.save_stage_change(tx, &current, &updated, &change, &config, None)
            .await?;
        Ok(())
    }

    async fn list(
        &self,
        request: pb::ListOpportunitiesRequest,
    ) -> Result<pb::ListOpportunitiesResponse> {
        let mut f = Fields::new();
        let partner_id = f.optional_id("partner_id", &request.partner_id);
        let campaign_id = f.optional_id("campaign_id", &request.campaign_id);
        let owner = f.optional_id("owner_staff_id", &request.owner_staff_id);
        let mut stages = Vec::new();
        for (i, raw) in request.stages.iter().enumerate() {
            match convert::stage_from(*raw) {
                Ok(Some(stage)) => stages.push(stage.as_db()),
                Ok(None) => {}
                Err(reason) => f.add(format!("stages[{i}]"), reason),
            }
        }
        let (follow_up_from, follow_up_to) =
            f.period("follow_up_period", request.follow_up_period.as_ref());
        let (signing_from, signing_to) = f.period(
            "expected_signing_period",
            request.expected_signing_period.as_ref(),
        );
        let title = f.text("title_contains", &request.title_contains, 200, false);
        f.finish()?;
        let filter = Filter {
            partner_id: partner_id.flatten(),
            campaign_id: campaign_id.flatten(),
            owner_staff_id: owner.flatten(),
            stages,
            open_only: request.open_only,
            follow_up_from,
            follow_up_to,
            signing_from,
            signing_to,
            title_contains: title.filter(|t| !t.is_empty()).map(|t| like_literal(&t)),
        };
        let page: Page<NewestFirstCursor> =
            Page::of(request.page_size, &request.page_token, &filter)?;
        let mut conn = self.pool.acquire().await?;
        let mut rows =
            store::opportunities::list(&mut conn, &filter, page.after.as_ref(), page.limit())
                .await?;
        let next_page_token = page.finish(&mut rows, |o| (o.create_time, o.id));
        let config = self.stage_config(&mut conn).await?;
        Ok(pb::ListOpportunitiesResponse {
            opportunities: rows
                .iter()
                .map(|o| convert::opportunity(o, &config))
                .collect(),
            next_page_token,
        })
    }

    async fn list_stage_changes(
        &self,
        request: pb::ListStageChangesRequest,
    ) -> Result<pb::ListStageChangesResponse> {
        let mut f = Fields::new();
        let id = f.id("opportunity_id", &request.opportunity_id);
        f.finish()?;
        let id = id.expect("checked");
        let page: Page<NewestFirstCursor> = Page::of(request.page_size, &request.page_token, &id)?;
        let mut conn = self.pool.acquire().await?;
        if store::opportunities::get(&mut conn, id, false)
            .await?
            .is_none()
        {
            return Err(OpportunitiesError::not_found("opportunity", id));
        }
        let mut rows = store::opportunities::list_stage_changes(
            &mut conn,
            id,
            page.after.as_ref(),
            page.limit(),
        )
        .await?;
        let next_page_token = page.finish(&mut rows, |c| (c.change_time, c.id));
        Ok(pb::ListStageChangesResponse {
            stage_changes: rows.iter().map(convert::stage_change).collect(),
            next_page_token,
        })
    }

    async fn pipeline(&self, request: pb::GetPipelineRequest) -> Result<pb::Pipeline> {
        let mut f = Fields::new();
        let owner = f.optional_id("owner_staff_id", &request.owner_staff_id);
        let campaign = f.optional_id("campaign_id", &request.campaign_id);
        let (signing_from, signing_to) = f.period(
            "expected_signing_period",
            request.expected_signing_period.as_ref(),
        );
        f.finish()?;
        let query = PipelineQuery {
            by_owner: request.group_by_owner,
            by_campaign: request.group_by_campaign,
            owner_staff_id: owner.flatten(),
            campaign_id: campaign.flatten(),
            signing_from,
            signing_to,
            include_closed: request.include_closed,
        };
        let mut conn = self.pool.acquire().await?;
        let config = self.stage_config(&mut conn).await?;
        let probabilities: Vec<(Stage, i32)> = Stage::ALL
            .iter()
            .map(|s| (*s, config.probability(*s)))
            .collect();
        let mut groups = store::opportunities::pipeline(&mut conn, &query, &probabilities).await?;
        groups.sort_by(|a, b| {
            (
                a.stage.position(),
                a.owner_staff_id,
                a.campaign_id,
                &a.currency,
            )
                .cmp(&(
                    b.stage.position(),
                    b.owner_staff_id,
                    b.campaign_id,
                    &b.currency,
                ))
        });
        let row = |stage: Stage,
                   owner: Option<Uuid>,
                   campaign: Option<Uuid>,
                   currency: &Currency,
                   count: i64,
                   potential: i64,
                   weighted: i64| pb::PipelineRow {
            stage: convert::stage(stage) as i32,
            potential_level: convert::level(config.level(stage)) as i32,
            owner_staff_id: owner.map(|id| id.to_string()).unwrap_or_default(),
            campaign_id: campaign.map(|id| id.to_string()).unwrap_or_default(),
            count: i32::try_from(count).unwrap_or(i32::MAX),
            potential_value: Some(convert::amount(potential, currency)),
            weighted_value: Some(convert::amount(weighted, currency)),
            stage_code: stage.seed_code().to_owned(),
        };
        let mut stage_totals: BTreeMap<(i32, Currency), (Stage, i64, i64, i64)> = BTreeMap::new();
        let mut counts: HashMap<Currency, i64> = HashMap::new();
        let (mut potentials, mut weighteds) = (PerCurrency::new(), PerCurrency::new());
        for g in &groups {
            let entry = stage_totals
                .entry((g.stage.position(), g.currency.clone()))
                .or_insert((g.stage, 0, 0, 0));
            entry.1 += g.count;
            entry.2 += g.potential;
            entry.3 += g.weighted;
            *counts.entry(g.currency.clone()).or_default() += g.count;
            potentials.add(&g.currency, g.potential);
            weighteds.add(&g.currency, g.weighted);
        }
        let weighted_by_currency: HashMap<Currency, i64> = weighteds
            .totals(false)
            .into_iter()
            .map(|m| (m.currency, m.units))
            .collect();
        Ok(pb::Pipeline {
            rows: groups
                .iter()
                .map(|g| {
                    row(
                        g.stage,
                        g.owner_staff_id,
                        g.campaign_id,
                        &g.currency,
                        g.count,
                        g.potential,
                        g.weighted,
                    )
                })
                .collect(),
            stage_totals: stage_totals
                .into_iter()
                .map(|((_, currency), (stage, count, potential, weighted))| {
                    row(stage, None, None, &currency, count, potential, weighted)
                })
                .collect(),
            totals: potentials
                .totals(true)
                .into_iter()
                .map(|m| pb::PipelineTotal {
                    currency_code: m.currency.as_str().to_owned(),
                    count: i32::try_from(counts.get(&m.currency).copied().unwrap_or(0))
                        .unwrap_or(i32::MAX),
                    potential_value: Some(convert::money(&m)),
                    weighted_value: Some(convert::amount(
                        weighted_by_currency.get(&m.currency).copied().unwrap_or(0),
                        &m.currency,
                    )),
                })
                .collect(),
        })
    }

    async fn get_stage_config_proto(&self) -> Result<pb::StageConfig> {
        let mut conn = self.pool.acquire().await?;
        let (config, update_time, version) =
            store::catalogues::get_stage_config(&mut conn, false).await?;
        Ok(stage_config_proto(&config, update_time, version))
    }

    async fn update_stage_config(
        &self,
        request: pb::UpdateStageConfigRequest,
    ) -> Result<pb::StageConfig> {
        let mut f = Fields::new();
        let paths = f.mask(
            request.update_mask.as_ref(),
            &["stages", "level_probabilities"],
        );
        let version = f.etag(&request.etag);
        let Some(given) = request.config else {
            f.add("config", "is required");
            return Err(f.finish().expect_err("refused").into());
        };
        f.finish()?;
        let mut tx = self.pool.begin().await?;
        let (mut config, _, stored_version) =
            store::catalogues::get_stage_config(&mut tx, true).await?;
        check_version(
            "stage configuration",
            version.expect("checked"),
            stored_version,
        )?;
        let mut f = Fields::new();
        if paths.iter().any(|p| p == "stages") {
            let mut seen = HashSet::new();
            for (i, def) in given.stages.iter().enumerate() {
                let Some(stage) = f.0.check(
                    format!("config.stages[{i}].stage"),
                    convert::stage_from(def.stage),
                ) else {
                    continue;
                };
                let Some(stage) = stage else {
                    f.add(format!("config.stages[{i}].stage"), "is required");
                    continue;
                };
                if !seen.insert(stage) {
                    f.add(format!("config.stages[{i}].stage"), "appears twice");
                }
                config.names.insert(stage, def.name.trim().to_owned());
                match convert::level_from(def.potential_level) {
                    Ok(Some(level)) => {
                        config.levels.insert(stage, level);
                    }
                    Ok(None) => {
                        config.levels.remove(&stage);
                    }
                    Err(reason) => f.add(format!("config.stages[{i}].potential_level"), reason),
                }
            }
            if seen.len() != Stage::ALL.len() {
                f.add("config.stages", "must list every stage exactly once");
            }
        }
        if paths.iter().any(|p| p == "level_probabilities") {
            let mut seen = HashSet::new();
            for (i, lp) in given.level_probabilities.iter().enumerate() {
                match convert::level_from(lp.level) {
                    Ok(Some(level)) => {
                        if !seen.insert(level) {
                            f.add(
                                format!("config.level_probabilities[{i}].level"),
                                "appears twice",
                            );
                        }
                        config.probabilities.insert(level, lp.probability_percent);
                    }
                    Ok(None) => f.add(
                        format!("config.level_probabilities[{i}].level"),
                        "is required",
                    ),
                    Err(reason) => f.add(format!("config.level_probabilities[{i}].level"), reason),
                }
            }
            if seen.len() != Level::ALL.len() {
                f.add(
                    "config.level_probabilities",
                    "must list every level exactly once",
                );
            }
        }
        if f.is_empty() {
            for (field, reason) in config.check() {
                f.add(field, reason);
            }
        }
        f.finish()?;
        let now = self.clock.now();
        store::catalogues::put_stage_config(&mut tx, &config, now, stored_version + 1).await?;
        tx.commit().await?;
        Ok(stage_config_proto(&config, now, stored_version + 1))
    }
}

fn stage_config_proto(
    config: &StageConfig,
    update_time: DateTime<Utc>,
    version: i64,
) -> pb::StageConfig {
    pb::StageConfig {
        stages: Stage::ALL
            .iter()
            .map(|s| pb::StageDefinition {
                stage: convert::stage(*s) as i32,
                seed_code: s.seed_code().to_owned(),
                name: config.name(*s).to_owned(),
                position: s.position(),
                potential_level: convert::level(config.level(*s)) as i32,
                default_probability_percent: config.probability(*s),
                closed: !s.is_open(),
            })
            .collect(),
        level_probabilities: Level::ALL
            .iter()
            .map(|l| pb::LevelProbability {
                level: convert::level(*l) as i32,
                probability_percent: config
                    .probabilities
                    .get(l)
                    .copied()
                    .unwrap_or_else(|| l.default_probability()),
            })
            .collect(),
        update_time: Some(timestamp(update_time)),
        etag: crm_platform::values::etag_of(version),
    }
}

/// A FAILED batch result naming the bad fields.
fn failed(
    request_id: &str,
    violations: crm_platform::error::FieldViolations,
) -> pb::BatchCreateOpportunitiesResult {
    failed_with(request_id, OpportunitiesError::Invalid(violations))
}

/// A FAILED batch result with the status `err` would have given the item alone.
fn failed_with(request_id: &str, err: OpportunitiesError) -> pb::BatchCreateOpportunitiesResult {
    let field_violations = match &err {
        OpportunitiesError::Invalid(v) => v
            .violations()
            .iter()
            .map(|v| pb::BatchFieldViolation {
                field: v.field.clone(),
                description: v.description.clone(),
            })
            .collect(),
        _ => Vec::new(),
    };
    let status = Status::from(err);
    pb::BatchCreateOpportunitiesResult {
        opportunity: None,
        outcome: pb::BatchItemOutcome::Failed as i32,
        error: Some(pb::BatchItemError {
            code: status.code() as i32,
            message: status.message().to_owned(),
            field_violations,
        }),
        request_id: request_id.to_owned(),
    }
}

#[tonic::async_trait]
impl OpportunityService for OpportunitiesApi {
    #[tracing::instrument(skip_all)]
    async fn create_opportunity(
        &self,
        request: Request<pb::CreateOpportunityRequest>,
    ) -> Result<Response<pb::Opportunity>, Status> {
        let caller = caller(&request, SALES_ROLES)?;
        Ok(Response::new(
            self.create(&caller, request.into_inner()).await?,
        ))
    }

    #[tracing::instrument(skip_all)]
    async fn batch_create_opportunities(
        &self,
        request: Request<pb::BatchCreateOpportunitiesRequest>,
    ) -> Result<Response<pb::BatchCreateOpportunitiesResponse>, Status> {
        let caller = caller(&request, SALES_ROLES)?;
        Ok(Response::new(
            self.batch_create(&caller, request.into_inner()).await?,
        ))
    }

    #[tracing::instrument(skip_all)]
    async fn get_opportunity(
        &self,
        request: Request<pb::GetOpportunityRequest>,
    ) -> Result<Response<pb::Opportunity>, Status> {
        caller(&request, SALES_ROLES)?;
        let mut f = Fields::new();
        let id = f.id("id", &request.get_ref().id);
        f.finish()?;
        let id = id.expect("checked");
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(OpportunitiesError::from)?;
        let opportunity = store::opportunities::get(&mut conn, id, false)
            .await
            .map_err(OpportunitiesError::from)?
            .ok_or_else(|| OpportunitiesError::not_found("opportunity", id))?;
        let config = self.stage_config(&mut conn).await?;
        Ok(Response::new(convert::opportunity(&opportunity, &config)))
    }

    #[tracing::instrument(skip_all)]
    async fn update_opportunity(
        &self,
        request: Request<pb::UpdateOpportunityRequest>,
    ) -> Result<Response<pb::Opportunity>, Status> {
        let caller = caller(&request, SALES_ROLES)?;
        Ok(Response::new(
            self.update(&caller, request.into_inner()).await?,
        ))
    }

    #[tracing::instrument(skip_all)]
    async fn reassign_opportunity(
        &self,
        request: Request<pb::ReassignOpportunityRequest>,
    ) -> Result<Response<pb::Opportunity>, Status> {
        let caller = caller(&request, MANAGER_ROLES)?;
        Ok(Response::new(
            self.reassign(&caller, request.into_inner()).await?,
        ))
    }

    #[tracing::instrument(skip_all)]
    async fn reopen_opportunity(
        &self,
        request: Request<pb::ReopenOpportunityRequest>,
    ) -> Result<Response<pb::Opportunity>, Status> {
        let caller = caller(&request, SALES_ROLES)?;
        Ok(Response::new(
            self.reopen(&caller, request.into_inner()).await?,
        ))
    }

    #[tracing::instrument(skip_all)]
    async fn list_opportunities(
        &self,
        request: Request<pb::ListOpportunitiesRequest>,
    ) -> Result<Response<pb::ListOpportunitiesResponse>, Status> {
        caller(&request, SALES_ROLES)?;
        Ok(Response::new(self.list(request.into_inner()).await?))
    }

    #[tracing::instrument(skip_all)]
    async fn change_opportunity_stage(
        &self,
        request: Request<pb::ChangeOpportunityStageRequest>,
    ) -> Result<Response<pb::Opportunity>, Status> {
        let caller = caller(&request, SALES_ROLES)?;
        Ok(Response::new(
            self.change_stage(&caller, request.into_inner()).await?,
        ))
    }

    #[tracing::instrument(skip_all)]
    async fn mark_opportunity_lost(
        &self,
        request: Request<pb::MarkOpportunityLostRequest>,
    ) -> Result<Response<pb::Opportunity>, Status> {
        let caller = caller(&request, SALES_ROLES)?;
        Ok(Response::new(
            self.mark_lost(&caller, request.into_inner()).await?,
        ))
    }

    #[tracing::instrument(skip_all)]
    async fn list_stage_changes(
        &self,
        request: Request<pb::ListStageChangesRequest>,
    ) -> Result<Response<pb::ListStageChangesResponse>, Status> {
        caller(&request, SALES_ROLES)?;
        Ok(Response::new(
            OpportunitiesApi::list_stage_changes(self, request.into_inner()).await?,
        ))
    }

    #[tracing::instrument(skip_all)]
    async fn get_pipeline(
        &self,
        request: Request<pb::GetPipelineRequest>,
    ) -> Result<Response<pb::Pipeline>, Status> {
        caller(&request, SALES_ROLES)?;
        Ok(Response::new(self.pipeline(request.into_inner()).await?))
    }

    #[tracing::instrument(skip_all)]
    async fn get_stage_config(
        &self,
        request: Request<pb::GetStageConfigRequest>,
    ) -> Result<Response<pb::StageConfig>, Status> {
        caller(&request, SALES_ROLES)?;
        Ok(Response::new(self.get_stage_config_proto().await?))
    }

    #[tracing::instrument(skip_all)]
    async fn update_stage_config(
        &self,
        request: Request<pb::UpdateStageConfigRequest>,
    ) -> Result<Response<pb::StageConfig>, Status> {
        caller(&request, super::ADMIN_ONLY)?;
        Ok(Response::new(
            OpportunitiesApi::update_stage_config(self, request.into_inner()).await?,
        ))
    }
}
