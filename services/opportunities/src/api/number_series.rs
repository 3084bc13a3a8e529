//! `NumberSeriesService`: how documents are numbered (O6).

use crm_platform::values::{etag_of, timestamp};
use crm_proto::{
    common,
    opportunities::{self as pb, number_series_service_server::NumberSeriesService},
};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::{ADMIN_ONLY, DOCUMENT_ROLES, Fields, OpportunitiesApi, Page, caller, check_version};
use crate::{
    domain::{
        catalogue::{DocKind, NumberSeries},
        numbering::{Counter, check_prefix},
    },
    error::{OpportunitiesError, Result},
    store::{self, series::Cursor},
};

/// Fields UpdateNumberSeries may change.
const UPDATABLE: &[&str] = &[
    "prefix",
    "next_number",
    "min_digits",
    "is_default",
    "active",
    "yearly_restart",
];

/// The document kind of a proto value; `Ok(None)` for UNSPECIFIED.
pub(crate) fn doc_kind_from(raw: i32) -> Result<Option<DocKind>, String> {
    match common::DocumentKind::try_from(raw) {
        Ok(common::DocumentKind::Unspecified) => Ok(None),
        Ok(common::DocumentKind::Offer) => Ok(Some(DocKind::Offer)),
        Ok(common::DocumentKind::Order) => Ok(Some(DocKind::Order)),
        Ok(common::DocumentKind::Contract) => Ok(Some(DocKind::Contract)),
        Ok(common::DocumentKind::Invoice) => Ok(Some(DocKind::Invoice)),
        _ => Err(format!(
            "{raw} is not a numbered document kind (OFFER, ORDER, CONTRACT, INVOICE)"
        )),
    }
}

/// A document kind as the proto enum.
pub(crate) fn doc_kind(kind: DocKind) -> common::DocumentKind {
    match kind {
        DocKind::Offer => common::DocumentKind::Offer,
        DocKind::Order => common::DocumentKind::Order,
        DocKind::Contract => common::DocumentKind::Contract,
        DocKind::Invoice => common::DocumentKind::Invoice,
    }
}

fn to_proto(s: &NumberSeries) -> pb::NumberSeries {
    pb::NumberSeries {
        id: s.id.to_string(),
        document_kind: doc_kind(s.document_kind) as i32,
        prefix: s.prefix.clone(),
        next_number: s.counter.next_number,
        min_digits: s.min_digits,
        is_default: s.is_default,
        active: s.active,
        create_time: Some(timestamp(s.create_time)),
        update_time: Some(timestamp(s.update_time)),
        etag: etag_of(s.version),
        yearly_restart: s.counter.yearly_restart,
        counter_year: s.counter.counter_year,
    }
}

fn check_digits(f: &mut Fields, digits: i32) -> Option<i32> {
    if (1..=12).contains(&digits) {
        Some(digits)
    } else {
        f.add("number_series.min_digits", "must be between 1 and 12");
        None
    }
}

impl OpportunitiesApi {
    async fn create_series(
        &self,
        caller: &crm_platform::auth::Caller,
        request: pb::CreateNumberSeriesRequest,
    ) -> Result<pb::NumberSeries> {
        let mut f = Fields::new();
        let request_id = f.text("request_id", &request.request_id, 100, false);
        let Some(given) = request.number_series else {
            f.add("number_series", "is required");
            return Err(f.finish().expect_err("refused").into());
        };
        let kind = match doc_kind_from(given.document_kind) {
            Ok(Some(kind)) => Some(kind),
            Ok(None) => {
                f.add("number_series.document_kind", "is required");
                None
            }
            Err(reason) => {
                f.add("number_series.document_kind", reason);
                None
            }
        };
        let prefix = given.prefix.trim().to_owned();
        f.0.check("number_series.prefix", check_prefix(&prefix));
        let next_number = if given.next_number == 0 {
            1
        } else {
            given.next_number
        };
        if next_number < 1 {
            f.add("number_series.next_number", "must be at least 1");
        }
        let digits = check_digits(
            &mut f,
            if given.min_digits == 0 {
                4
            } else {
                given.min_digits
            },
        );
        f.finish()?;
        let now = self.clock.now();
        let series = NumberSeries {
            id: Uuid::now_v7(),
            document_kind: kind.expect("checked"),
            prefix,
            counter: Counter {
                next_number,
                counter_year: 0,
                yearly_restart: given.yearly_restart,
            },
            min_digits: digits.expect("checked"),
            is_default: given.is_default,
            // A new series is meant to be used: proto3 cannot tell "false" from "unset".
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
                "number_series",
                &caller.request_scope(),
                &request_id,
                series.id,
                now,
            )
            .await?
        {
            let existing = store::series::get(&mut tx, existing, false)
                .await?
                .ok_or_else(|| OpportunitiesError::not_found("number series", existing))?;
            return Ok(to_proto(&existing));
        }
        if series.is_default {
            store::series::clear_other_defaults(&mut tx, series.document_kind, series.id).await?;
        }
        if !store::series::insert(&mut tx, &series).await? {
            return Err(OpportunitiesError::AlreadyExists(format!(
                "a {} series with prefix {:?} exists",
                series.document_kind.as_db(),
                series.prefix
            )));
        }
        tx.commit().await?;
        Ok(to_proto(&series))
    }

    async fn update_series(
        &self,
        request: pb::UpdateNumberSeriesRequest,
    ) -> Result<pb::NumberSeries> {
        let mut f = Fields::new();
        let paths = f.mask(request.update_mask.as_ref(), UPDATABLE);
        let version = f.etag(&request.etag);
        let Some(given) = request.number_series else {
            f.add("number_series", "is required");
            return Err(f.finish().expect_err("refused").into());
        };
        let id = f.id("number_series.id", &given.id);
        let has = |name: &str| paths.iter().any(|p| p == name);
        let prefix = given.prefix.trim().to_owned();
        if has("prefix") {
            f.0.check("number_series.prefix", check_prefix(&prefix));
        }
        let digits = if has("min_digits") {
            check_digits(&mut f, given.min_digits)
        } else {
            None
        };
        f.finish()?;
        let id = id.expect("checked");
        let mut tx = self.pool.begin().await?;
        let current = store::series::get(&mut tx, id, true)
            .await?
            .ok_or_else(|| OpportunitiesError::not_found("number series", id))?;
        check_version("number series", version.expect("checked"), current.version)?;
        let mut updated = NumberSeries {
            update_time: self.clock.now(),
            version: current.version + 1,
            ..current.clone()
        };
        if has("prefix") {
            updated.prefix = prefix;
        }
        if has("next_number") {
            if given.next_number < current.counter.next_number {
                return Err(OpportunitiesError::invalid(
                    "number_series.next_number",
                    format!(
                        "may only grow: numbers up to {} may be in use",
                        current.counter.next_number - 1
                    ),
                ));
            }
            updated.counter.next_number = given.next_number;
        }
        if let Some(digits) = digits {
            updated.min_digits = digits;
        }
        if has("is_default") {
            if current.is_default && !given.is_default {
                return Err(OpportunitiesError::invalid(
                    "number_series.is_default",
                    "a kind always has a default series: make another series the default",
                ));
            }
            updated.is_default = given.is_default;
        }
        if has("active") {
            if updated.is_default && !given.active {
                return Err(OpportunitiesError::invalid(
                    "number_series.active",
                    "the default series stays active",
                ));
            }
            updated.active = given.active;
        }
        if has("yearly_restart") {
            updated.counter.yearly_restart = given.yearly_restart;
        }
        if updated.is_default && !current.is_default {
            store::series::clear_other_defaults(&mut tx, updated.document_kind, updated.id).await?;
        }
        match store::series::update(&mut tx, &updated, current.version).await {
            Ok(true) => {}
            Ok(false) => return Err(OpportunitiesError::StaleEtag("number series")),
            Err(err) if store::series::is_prefix_taken(&err) => {
                return Err(OpportunitiesError::AlreadyExists(format!(
                    "a {} series with prefix {:?} exists",
                    updated.document_kind.as_db(),
                    updated.prefix
                )));
            }
            Err(err) => return Err(err.into()),
        }
        tx.commit().await?;
        Ok(to_proto(&updated))
    }
}

#[tonic::async_trait]
impl NumberSeriesService for OpportunitiesApi {
    #[tracing::instrument(skip_all)]
    async fn create_number_series(
        &self,
        request: Request<pb::CreateNumberSeriesRequest>,
    ) -> Result<Response<pb::NumberSeries>, Status> {
        let caller = caller(&request, ADMIN_ONLY)?;
        Ok(Response::new(
            self.create_series(&caller, request.into_inner()).await?,
        ))
    }

    #[tracing::instrument(skip_all)]
    async fn get_number_series(
        &self,
        request: Request<pb::GetNumberSeriesRequest>,
    ) -> Result<Response<pb::NumberSeries>, Status> {
        caller(&request, DOCUMENT_ROLES)?;
        let mut f = Fields::new();
        let id = f.id("id", &request.get_ref().id);
        f.finish()?;
        let id = id.expect("checked");
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(OpportunitiesError::from)?;
        let series = store::series::get(&mut conn, id, false)
            .await
            .map_err(OpportunitiesError::from)?
            .ok_or_else(|| OpportunitiesError::not_found("number series", id))?;
        Ok(Response::new(to_proto(&series)))
    }

    #[tracing::instrument(skip_all)]
    async fn update_number_series(
        &self,
        request: Request<pb::UpdateNumberSeriesRequest>,
    ) -> Result<Response<pb::NumberSeries>, Status> {
        caller(&request, ADMIN_ONLY)?;
        Ok(Response::new(
            self.update_series(request.into_inner()).await?,
        ))
    }

    #[tracing::instrument(skip_all)]
    async fn list_number_series(
        &self,
        request: Request<pb::ListNumberSeriesRequest>,
    ) -> Result<Response<pb::ListNumberSeriesResponse>, Status> {
        caller(&request, DOCUMENT_ROLES)?;
        let request = request.into_inner();
        let mut f = Fields::new();
        let kind =
            f.0.check("document_kind", doc_kind_from(request.document_kind));
        f.finish()?;
        let kind = kind.flatten();
        let page: Page<Cursor> = Page::of(
            request.page_size,
            &request.page_token,
            &kind.map(DocKind::as_db),
        )?;
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(OpportunitiesError::from)?;
        let mut rows = store::series::list(&mut conn, kind, page.after.as_ref(), page.limit())
            .await
            .map_err(OpportunitiesError::from)?;
        let next_page_token = page.finish(&mut rows, |(_, cursor)| cursor.clone());
        Ok(Response::new(pb::ListNumberSeriesResponse {
            number_series: rows.iter().map(|(s, _)| to_proto(s)).collect(),
            next_page_token,
        }))
    }
}
