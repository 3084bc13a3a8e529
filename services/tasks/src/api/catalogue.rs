//! `ServiceCatalogService`: the post-sale services a task can request, and whether a partner's
//! request is covered (T7).

use crm_platform::values;
use crm_proto::tasks::{self as pb, service_catalog_service_server::ServiceCatalogService};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::{
    CATALOGUE_ROLES, EVERY_ROLE, Fields, Page, TasksApi, caller, check_version, convert,
    text_filter,
};
use crate::{
    domain::staff::PostSaleService,
    error::{Result, TasksError},
    opportunities::CoverageAnswer,
    store,
};

/// Fields UpdatePostSaleService may change.
const UPDATABLE: &[&str] = &["name", "description", "article_id", "hourly_rate", "active"];
/// Largest hourly rate, in minor units (10 million a hour).
const MAX_RATE: i64 = 1_000_000_000;

#[derive(Default)]
struct ServiceFields {
    name: Option<String>,
    description: Option<String>,
    article_id: Option<Uuid>,
    rate: Option<(i64, String)>,
}

fn parse(f: &mut Fields, s: &pb::PostSaleService, paths: &[&str]) -> ServiceFields {
    let mut out = ServiceFields::default();
    for path in paths {
        match *path {
            "name" => out.name = f.text("post_sale_service.name", &s.name, 200, true),
            "description" => {
                out.description =
                    f.text("post_sale_service.description", &s.description, 2000, false);
            }
            "article_id" => out.article_id = f.id("post_sale_service.article_id", &s.article_id),
            "hourly_rate" => match &s.hourly_rate {
                None => f.add("post_sale_service.hourly_rate", "is required"),
                Some(m) => {
                    let currency = f.0.check(
                        "post_sale_service.hourly_rate.currency_code",
                        values::currency_code(&m.currency_code),
                    );
                    if !(0..=MAX_RATE).contains(&m.units) {
                        f.add(
                            "post_sale_service.hourly_rate.units",
                            format!("must be between 0 and {MAX_RATE}"),
                        );
                    } else if let Some(currency) = currency {
                        out.rate = Some((m.units, currency));
                    }
                }
            },
            _ => {}
        }
    }
    out
}

impl TasksApi {
    async fn create_service(
        &self,
        caller: &crm_platform::auth::Caller,
        request: pb::CreatePostSaleServiceRequest,
    ) -> Result<PostSaleService> {
        let mut f = Fields::new();
        let request_id = f.text("request_id", &request.request_id, 100, false);
        let Some(given) = request.post_sale_service else {
            f.add("post_sale_service", "is required");
            return Err(f.finish().expect_err("refused").into());
        };
        let fields = parse(
            &mut f,
            &given,
            &["name", "description", "article_id", "hourly_rate"],
        );
        f.finish()?;
        let now = self.clock.now();
        let (units, currency) = fields.rate.expect("checked");
        let service = PostSaleService {
            id: Uuid::now_v7(),
            name: fields.name.expect("checked"),
            description: fields.description.expect("checked"),
            article_id: fields.article_id.expect("checked"),
            hourly_rate_units: units,
            hourly_rate_currency: currency,
            // New services can be requested: proto3 cannot tell "false" from "unset".
            active: true,
            create_time: now,
            update_time: now,
            version: 1,
        };
        let mut tx = self.pool.begin().await?;
        let request_id = request_id.expect("checked");
        if !request_id.is_empty()
            && let Some(existing) = store::claim_request(
                &mut tx,
                "post_sale_service",
                &caller.request_scope(),
                &request_id,
                service.id,
                now,
            )
            .await?
        {
            return store::services::get(&mut tx, existing)
                .await?
                .ok_or_else(|| TasksError::not_found("post-sale service", existing));
        }
        match store::services::insert(&mut tx, &service).await {
            Ok(()) => {}
            Err(err) if store::services::is_name_taken(&err) => {
                return Err(TasksError::AlreadyExists(format!(
                    "a post-sale service named {:?} exists",
                    service.name
                )));
            }
            Err(err) => return Err(err.into()),
        }
        tx.commit().await?;
        Ok(service)
    }

    async fn update_service(
        &self,
        request: pb::UpdatePostSaleServiceRequest,
    ) -> Result<PostSaleService> {
        let mut f = Fields::new();
        let paths = f.mask(request.update_mask.as_ref(), UPDATABLE);
        let version = f.etag(&request.etag);
        let Some(given) = request.post_sale_service else {
            f.add("post_sale_service", "is required");
            return Err(f.finish().expect_err("refused").into());
        };
        let id = f.id("post_sale_service.id", &given.id);
        let path_refs: Vec<&str> = paths.iter().map(String::as_str).collect();
        let fields = parse(&mut f, &given, &path_refs);
        f.finish()?;
        let id = id.expect("checked");
        let mut tx = self.pool.begin().await?;
        let current = store::services::get(&mut tx, id)
            .await?
            .ok_or_else(|| TasksError::not_found("post-sale service", id))?;
        check_version(
            "post-sale service",
            version.expect("checked"),
            current.version,
        )?;
        let mut updated = PostSaleService {
            update_time: self.clock.now(),
            version: current.version + 1,
            ..current.clone()
        };
        if let Some(v) = fields.name {
            updated.name = v;
        }
        if let Some(v) = fields.description {
            updated.description = v;
        }
        if let Some(v) = fields.article_id {
            updated.article_id = v;
        }
        if let Some((units, currency)) = fields.rate {
            updated.hourly_rate_units = units;
            updated.hourly_rate_currency = currency;
        }
        if paths.iter().any(|p| p == "active") {
            updated.active = given.active;
        }
        match store::services::update(&mut tx, &updated, current.version).await {
            Ok(true) => {}
            Ok(false) => return Err(TasksError::StaleEtag("post-sale service")),
            Err(err) if store::services::is_name_taken(&err) => {
                return Err(TasksError::AlreadyExists(format!(
                    "a post-sale service named {:?} exists",
                    updated.name
                )));
            }
            Err(err) => return Err(err.into()),
        }
        tx.commit().await?;
        Ok(updated)
    }

    /// The coverage information of `partner` for `service` on `date`, as the caller may see it.
    pub(crate) async fn coverage_info(
        &self,
        caller: &crm_platform::auth::Caller,
        partner: Uuid,
        service: &PostSaleService,
        date: chrono::NaiveDate,
    ) -> pb::ServiceCoverageInfo {
        let CoverageAnswer {
            coverage,
            balance,
            unavailable_reason,
        } = self
            .opportunities
            .coverage(caller, partner, service.article_id, date)
            .await;
        let available = unavailable_reason.is_empty();
        pb::ServiceCoverageInfo {
            partner_id: partner.to_string(),
            post_sale_service_id: service.id.to_string(),
            available,
            can_draft_contract: coverage.as_ref().is_some_and(|c| !c.covered),
            coverage,
            balance,
            unavailable_reason,
        }
    }
}

#[tonic::async_trait]
impl ServiceCatalogService for TasksApi {
    #[tracing::instrument(skip_all)]
    async fn create_post_sale_service(
        &self,
        request: Request<pb::CreatePostSaleServiceRequest>,
    ) -> Result<Response<pb::PostSaleService>, Status> {
        let caller = caller(&request, CATALOGUE_ROLES)?;
        let service = self.create_service(&caller, request.into_inner()).await?;
        Ok(Response::new(convert::post_sale_service(&service)))
    }

    #[tracing::instrument(skip_all)]
    async fn get_post_sale_service(
        &self,
        request: Request<pb::GetPostSaleServiceRequest>,
    ) -> Result<Response<pb::PostSaleService>, Status> {
        caller(&request, EVERY_ROLE)?;
        let mut f = Fields::new();
        let id = f.id("id", &request.get_ref().id);
        f.finish()?;
        let id = id.expect("checked");
        let mut conn = self.pool.acquire().await.map_err(TasksError::from)?;
        let service = store::services::get(&mut conn, id)
            .await
            .map_err(TasksError::from)?
            .ok_or_else(|| TasksError::not_found("post-sale service", id))?;
        Ok(Response::new(convert::post_sale_service(&service)))
    }

    #[tracing::instrument(skip_all)]
    async fn update_post_sale_service(
        &self,
        request: Request<pb::UpdatePostSaleServiceRequest>,
    ) -> Result<Response<pb::PostSaleService>, Status> {
        caller(&request, CATALOGUE_ROLES)?;
        let service = self.update_service(request.into_inner()).await?;
        Ok(Response::new(convert::post_sale_service(&service)))
    }

    #[tracing::instrument(skip_all)]
    async fn list_post_sale_services(
        &self,
        request: Request<pb::ListPostSaleServicesRequest>,
    ) -> Result<Response<pb::ListPostSaleServicesResponse>, Status> {
        caller(&request, EVERY_ROLE)?;
        let request = request.into_inner();
        let mut f = Fields::new();
        let name_like = text_filter(&mut f, "name_contains", &request.name_contains);
        f.finish()?;
        let page = Page::<(String, Uuid)>::of(
            request.page_size,
            &request.page_token,
            &(&name_like, request.include_inactive),
        )?;
        let mut conn = self.pool.acquire().await.map_err(TasksError::from)?;
        let mut rows = store::services::list(
            &mut conn,
            name_like.as_deref(),
            request.include_inactive,
            page.after.as_ref(),
            page.limit(),
        )
        .await
        .map_err(TasksError::from)?;
        let next_page_token = page.finish(&mut rows, |s| (s.name.to_lowercase(), s.id));
        Ok(Response::new(pb::ListPostSaleServicesResponse {
            post_sale_services: rows.iter().map(convert::post_sale_service).collect(),
            next_page_token,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn get_service_coverage(
        &self,
        request: Request<pb::GetServiceCoverageRequest>,
    ) -> Result<Response<pb::ServiceCoverageInfo>, Status> {
        let caller = caller(&request, EVERY_ROLE)?;
        let request = request.into_inner();
        let mut f = Fields::new();
        let partner = f.id("partner_id", &request.partner_id);
        let service = f.id("post_sale_service_id", &request.post_sale_service_id);
        let date = f.date("date", request.date.as_ref());
        f.finish()?;
        let service_id = service.expect("checked");
        let mut conn = self.pool.acquire().await.map_err(TasksError::from)?;
        let service = store::services::get(&mut conn, service_id)
            .await
            .map_err(TasksError::from)?
            .ok_or_else(|| TasksError::not_found("post-sale service", service_id))?;
        drop(conn);
        let date = date.flatten().unwrap_or_else(|| self.today());
        Ok(Response::new(
            self.coverage_info(&caller, partner.expect("checked"), &service, date)
                .await,
        ))
    }
}
