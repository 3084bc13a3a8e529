//! `LostReasonService`: the lost-reason catalogue and the loss report (O5).

use std::collections::BTreeMap;

use crm_platform::values::{etag_of, timestamp};
use crm_proto::opportunities::{self as pb, lost_reason_service_server::LostReasonService};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::{
    Fields, MANAGER_ROLES, OpportunitiesApi, Page, SALES_ROLES, caller, check_version, convert,
};
use crate::{
    domain::{calendar, catalogue::LostReason, money::PerCurrency},
    error::{OpportunitiesError, Result},
    store::{self, lost_reasons::Cursor, opportunities::LossQuery},
};

/// The longest loss report period, in days.
const MAX_REPORT_DAYS: i64 = 366;

fn to_proto(r: &LostReason) -> pb::LostReason {
    pb::LostReason {
        id: r.id.to_string(),
        name: r.name.clone(),
        description: r.description.clone(),
        active: r.active,
        sort_order: r.sort_order,
        create_time: Some(timestamp(r.create_time)),
        update_time: Some(timestamp(r.update_time)),
        etag: etag_of(r.version),
    }
}

impl OpportunitiesApi {
    async fn create_lost_reason(
        &self,
        caller: &crm_platform::auth::Caller,
        request: pb::CreateLostReasonRequest,
    ) -> Result<pb::LostReason> {
        let mut f = Fields::new();
        let request_id = f.text("request_id", &request.request_id, 100, false);
        let Some(given) = request.lost_reason else {
            f.add("lost_reason", "is required");
            return Err(f.finish().expect_err("refused").into());
        };
        let name = f.text("lost_reason.name", &given.name, 200, true);
        let description = f.text("lost_reason.description", &given.description, 2000, false);
        f.finish()?;
        let now = self.clock.now();
        let reason = LostReason {
            id: Uuid::now_v7(),
            name: name.expect("checked"),
            description: description.expect("checked"),
            // A new reason is meant to be chosen: proto3 cannot tell "false" from "unset".
            active: true,
            sort_order: given.sort_order,
            create_time: now,
            update_time: now,
            version: 1,
        };
        let mut tx = self.pool.begin().await?;
        let request_id = request_id.expect("checked");
        if !request_id.is_empty()
            && let Some(existing) = store::claim_request(
                &mut tx,
                "lost_reason",
                &caller.request_scope(),
                &request_id,
                reason.id,
                now,
            )
            .await?
        {
            let existing = store::lost_reasons::get(&mut tx, existing)
                .await?
                .ok_or_else(|| OpportunitiesError::not_found("lost reason", existing))?;
            return Ok(to_proto(&existing));
        }
        if !store::lost_reasons::insert(&mut tx, &reason).await? {
            return Err(OpportunitiesError::AlreadyExists(format!(
                "a lost reason named {:?} exists",
                reason.name
            )));
        }
        tx.commit().await?;
        Ok(to_proto(&reason))
    }

    async fn update_lost_reason(
        &self,
        request: pb::UpdateLostReasonRequest,
    ) -> Result<pb::LostReason> {
        let mut f = Fields::new();
        let paths = f.mask(
            request.update_mask.as_ref(),
            &["name", "description", "active", "sort_order"],
        );
        let version = f.etag(&request.etag);
        let Some(given) = request.lost_reason else {
            f.add("lost_reason", "is required");
            return Err(f.finish().expect_err("refused").into());
        };
        let id = f.id("lost_reason.id", &given.id);
        let name = paths
            .iter()
            .any(|p| p == "name")
            .then(|| f.text("lost_reason.name", &given.name, 200, true))
            .flatten();
        let description = paths
            .iter()
            .any(|p| p == "description")
            .then(|| f.text("lost_reason.description", &given.description, 2000, false))
            .flatten();
        f.finish()?;
        let id = id.expect("checked");
        let mut tx = self.pool.begin().await?;
        let current = store::lost_reasons::get(&mut tx, id)
            .await?
            .ok_or_else(|| OpportunitiesError::not_found("lost reason", id))?;
        check_version("lost reason", version.expect("checked"), current.version)?;
        let mut updated = LostReason {
            update_time: self.clock.now(),
            version: current.version + 1,
            ..current.clone()
        };
        if let Some(name) = name {
            updated.name = name;
        }
        if let Some(description) = description {
            updated.description = description;
        }
        if paths.iter().any(|p| p == "active") {
            updated.active = given.active;
        }
        if paths.iter().any(|p| p == "sort_order") {
            updated.sort_order = given.sort_order;
        }
        match store::lost_reasons::update(&mut tx, &updated, current.version).await {
            Ok(true) => {}
            Ok(false) => return Err(OpportunitiesError::StaleEtag("lost reason")),
            Err(err) if store::lost_reasons::is_name_taken(&err) => {
                return Err(OpportunitiesError::AlreadyExists(format!(
                    "a lost reason named {:?} exists",
                    updated.name
                )));
            }
            Err(err) => return Err(err.into()),
        }
        tx.commit().await?;
        Ok(to_proto(&updated))
    }

    async fn loss_report(&self, request: pb::GetLossReportRequest) -> Result<pb::LossReport> {
        let mut f = Fields::new();
        let (start, end) = f.period("period", request.period.as_ref());
        let campaign = f.optional_id("campaign_id", &request.campaign_id);
        let owner = f.optional_id("owner_staff_id", &request.owner_staff_id);
        match (start, end) {
            (Some(start), Some(end)) if (end - start).num_days() >= MAX_REPORT_DAYS => {
                f.add(
                    "period",
                    format!("must span at most {MAX_REPORT_DAYS} days"),
                );
            }
            (Some(_), Some(_)) => {}
            _ => f.add("period", "is required: give both start_date and end_date"),
        }
        f.finish()?;
        let (start, end) = (start.expect("checked"), end.expect("checked"));
        let zone = self.company.time_zone;
        let query = LossQuery {
            from: calendar::start_of_day(start, zone),
            until: calendar::start_of_day(end.succ_opt().unwrap_or(end), zone),
            campaign_id: campaign.flatten(),
            owner_staff_id: owner.flatten(),
            by_owner: request.group_by_owner,
            by_campaign: request.group_by_campaign,
        };
        let mut conn = self.pool.acquire().await?;
        let groups = store::opportunities::losses(&mut conn, &query).await?;
        // One row per reason (owner, campaign), its amounts per currency.
        type Key = (Uuid, Option<Uuid>, Option<Uuid>);
        let mut rows: BTreeMap<Key, (String, i64, PerCurrency)> = BTreeMap::new();
        let mut total_count = 0;
        let mut totals = PerCurrency::new();
        for g in &groups {
            let row = rows
                .entry((g.lost_reason_id, g.owner_staff_id, g.campaign_id))
                .or_insert_with(|| (g.lost_reason_name.clone(), 0, PerCurrency::new()));
            row.1 += g.count;
            row.2.add(&g.currency, g.potential);
            total_count += g.count;
            totals.add(&g.currency, g.potential);
        }
        let mut rows: Vec<pb::LossReportRow> = rows
            .into_iter()
            .map(
                |((reason, owner, campaign), (name, count, sums))| pb::LossReportRow {
                    lost_reason_id: reason.to_string(),
                    lost_reason_name: name,
                    count: i32::try_from(count).unwrap_or(i32::MAX),
                    lost_potential_values: sums.totals(false).iter().map(convert::money).collect(),
                    owner_staff_id: owner.map(|id| id.to_string()).unwrap_or_default(),
                    campaign_id: campaign.map(|id| id.to_string()).unwrap_or_default(),
                },
            )
            .collect();
        rows.sort_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then_with(|| a.lost_reason_name.cmp(&b.lost_reason_name))
                .then_with(|| a.owner_staff_id.cmp(&b.owner_staff_id))
                .then_with(|| a.campaign_id.cmp(&b.campaign_id))
        });
        Ok(pb::LossReport {
            rows,
            total_count: i32::try_from(total_count).unwrap_or(i32::MAX),
            total_lost_potential_values: totals.totals(true).iter().map(convert::money).collect(),
        })
    }
}

#[tonic::async_trait]
impl LostReasonService for OpportunitiesApi {
    #[tracing::instrument(skip_all)]
    async fn create_lost_reason(
        &self,
        request: Request<pb::CreateLostReasonRequest>,
    ) -> Result<Response<pb::LostReason>, Status> {
        let caller = caller(&request, MANAGER_ROLES)?;
        Ok(Response::new(
            OpportunitiesApi::create_lost_reason(self, &caller, request.into_inner()).await?,
        ))
    }

    #[tracing::instrument(skip_all)]
    async fn get_lost_reason(
        &self,
        request: Request<pb::GetLostReasonRequest>,
    ) -> Result<Response<pb::LostReason>, Status> {
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
        let reason = store::lost_reasons::get(&mut conn, id)
            .await
            .map_err(OpportunitiesError::from)?
            .ok_or_else(|| OpportunitiesError::not_found("lost reason", id))?;
        Ok(Response::new(to_proto(&reason)))
    }

    #[tracing::instrument(skip_all)]
    async fn update_lost_reason(
        &self,
        request: Request<pb::UpdateLostReasonRequest>,
    ) -> Result<Response<pb::LostReason>, Status> {
        caller(&request, MANAGER_ROLES)?;
        Ok(Response::new(
            OpportunitiesApi::update_lost_reason(self, request.into_inner()).await?,
        ))
    }

    #[tracing::instrument(skip_all)]
    async fn list_lost_reasons(
        &self,
        request: Request<pb::ListLostReasonsRequest>,
    ) -> Result<Response<pb::ListLostReasonsResponse>, Status> {
        caller(&request, SALES_ROLES)?;
        let request = request.into_inner();
        let page: Page<Cursor> = Page::of(
            request.page_size,
            &request.page_token,
            &request.include_inactive,
        )?;
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(OpportunitiesError::from)?;
        let mut rows = store::lost_reasons::list(
            &mut conn,
            request.include_inactive,
            page.after.as_ref(),
            page.limit(),
        )
        .await
        .map_err(OpportunitiesError::from)?;
        let next_page_token = page.finish(&mut rows, |(_, cursor)| cursor.clone());
        Ok(Response::new(pb::ListLostReasonsResponse {
            lost_reasons: rows.iter().map(|(r, _)| to_proto(r)).collect(),
            next_page_token,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn get_loss_report(
        &self,
        request: Request<pb::GetLossReportRequest>,
    ) -> Result<Response<pb::LossReport>, Status> {
        caller(&request, MANAGER_ROLES)?;
        Ok(Response::new(self.loss_report(request.into_inner()).await?))
    }
}
