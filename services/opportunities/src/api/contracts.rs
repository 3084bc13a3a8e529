//! `ContractService`: commercial and subscription contracts, and contract coverage (O6, O9,
//! T7).

use crm_platform::{auth::Caller, values::date_to_proto};
use crm_proto::{
    common::DocumentKind,
    events as ev,
    opportunities::{self as pb, contract_service_server::ContractService},
};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::{
    DOCUMENT_ROLES, Fields, OpportunitiesApi, Page, caller, check_version, convert,
    documents::{
        HeaderFields, LineRequest, date, header_proto, id_text, new_header, owner_ref,
        parse_header, parse_header_changes,
    },
};
use crate::{
    domain::{
        catalogue::DocKind,
        documents::{
            Contract, ContractKind, ContractStatus, OfferStatus, OrderStatus, check_has_lines,
            last_active_day,
        },
        opportunity::Cause,
        stages::Stage,
    },
    error::{OpportunitiesError, Result},
    store::{self, NewestFirstCursor, contracts::Filter},
};

/// Roles that read contracts and ask for coverage: sales roles and `service` (T7).
const READERS: &[&str] = &["sales", "manager", "service"];
/// Fields UpdateContract may change (of a draft; `attachments` and `end_date` always).
const UPDATABLE: &[&str] = &[
    "lines",
    "notes",
    "attachments",
    "series_id",
    "currency_code",
    "campaign_id",
    "start_date",
    "end_date",
    "billing_day",
];

/// A contract as the proto message.
pub(crate) fn to_proto(c: &Contract) -> pb::Contract {
    let h = header_proto(&c.doc);
    pb::Contract {
        id: h.id,
        number: h.number,
        series_id: h.series_id,
        kind: match c.kind {
            ContractKind::Commercial => pb::ContractKind::Commercial,
            ContractKind::Subscription => pb::ContractKind::Subscription,
        } as i32,
        partner_id: h.partner_id,
        opportunity_id: h.opportunity_id,
        campaign_id: h.campaign_id,
        order_id: id_text(c.order_id),
        task_id: id_text(c.task_id),
        status: match c.status {
            ContractStatus::Draft => pb::ContractStatus::Draft,
            ContractStatus::Signed => pb::ContractStatus::Signed,
            ContractStatus::Terminated => pb::ContractStatus::Terminated,
            ContractStatus::Cancelled => pb::ContractStatus::Cancelled,
        } as i32,
        signing_date: date(c.signing_date),
        start_date: date(c.start_date),
        end_date: date(c.end_date),
        termination_date: date(c.termination_date),
        billing_day: c.billing_day,
        currency_code: h.currency_code,
        lines: h.lines,
        totals: h.totals,
        notes: h.notes,
        attachments: h.attachments,
        create_time: h.create_time,
        update_time: h.update_time,
        creator: h.creator,
        etag: h.etag,
        offer_id: id_text(c.offer_id),
    }
}

fn header_fields(c: &pb::Contract) -> HeaderFields<'_> {
    HeaderFields {
        series_id: &c.series_id,
        partner_id: &c.partner_id,
        opportunity_id: &c.opportunity_id,
        campaign_id: &c.campaign_id,
        currency_code: &c.currency_code,
        notes: &c.notes,
        notes_max: 8000,
        attachments: &c.attachments,
        lines: &c.lines,
    }
}

fn billing_day(f: &mut Fields, raw: i32) -> Option<i32> {
    if (0..=28).contains(&raw) {
        Some(raw)
    } else {
        f.add(
            "contract.billing_day",
            "must be between 1 and 28 (0 means the 1st)",
        );
        None
    }
}

impl OpportunitiesApi {
    async fn create_contract(
        &self,
        caller: &Caller,
        request: pb::CreateContractRequest,
    ) -> Result<Contract> {
        let mut f = Fields::new();
        let request_id = f.text("request_id", &request.request_id, 100, false);
        let task_id = f.optional_id("task_id", &request.task_id);
        let Some(given) = request.contract else {
            f.add("contract", "is required");
            return Err(f.finish().expect_err("refused").into());
        };
        let header = parse_header(&mut f, "contract", &header_fields(&given));
        let kind = match pb::ContractKind::try_from(given.kind) {
            Ok(pb::ContractKind::Commercial) => Some(ContractKind::Commercial),
            Ok(pb::ContractKind::Subscription) => Some(ContractKind::Subscription),
            _ => {
                f.add("contract.kind", "is required: COMMERCIAL or SUBSCRIPTION");
                None
            }
        };
        let offer_id = f.optional_id("contract.offer_id", &given.offer_id);
        let order_id = f.optional_id("contract.order_id", &given.order_id);
        let start = f.date("contract.start_date", given.start_date.as_ref());
        let end = f.date("contract.end_date", given.end_date.as_ref());
        let billing_day = billing_day(&mut f, given.billing_day);
        if let (Some(Some(start)), Some(Some(end))) = (start, end)
            && end < start
        {
            f.add("contract.end_date", "must not be before start_date");
        }
        if let Some(Some(_)) = task_id
            && let Some(h) = &header
        {
            if h.partner_id.is_none() {
                f.add(
                    "contract.partner_id",
                    "is required for a contract drafted from a task",
                );
            }
            if h.lines.is_empty() {
                f.add(
                    "contract.lines",
                    "is required for a contract drafted from a task",
                );
            }
        }
        if let (Some(h), Some(None), Some(None), Some(None)) =
            (&header, offer_id, order_id, task_id)
            && h.partner_id.is_none()
            && h.opportunity_id.is_none()
        {
            f.add(
                "contract.partner_id",
                "is required (or give opportunity_id, offer_id or order_id)",
            );
        }
        f.finish()?;
        let mut header = header.expect("checked");
        let (offer_id, order_id, task_id) = (
            offer_id.expect("checked"),
            order_id.expect("checked"),
            task_id.expect("checked"),
        );
        let mut conn = self.pool.acquire().await?;
        if let Some(task_id) = task_id
            && let Some(existing) = store::contracts::id_of_task(&mut conn, task_id).await?
        {
            // One contract per task: the draft made the first time.
            return store::contracts::get(&mut conn, existing, false)
                .await?
                .ok_or_else(|| OpportunitiesError::not_found("contract", existing));
        }
        // A source document gives the partner, opportunity, campaign and (when none are given)
        // the lines, each remembering the line it came from.
        let source = if let Some(offer_id) = offer_id {
            let offer = store::offers::get(&mut conn, offer_id, false)
                .await?
                .ok_or_else(|| OpportunitiesError::invalid("contract.offer_id", "no such offer"))?;
            if offer.status != OfferStatus::Accepted {
                return Err(OpportunitiesError::precondition(format!(
                    "a contract is made from an accepted offer; this one is {}",
                    offer.status.as_db()
                )));
            }
            Some(offer.doc)
        } else if let Some(order_id) = order_id {
            let order = store::orders::get(&mut conn, order_id, false)
                .await?
                .ok_or_else(|| OpportunitiesError::invalid("contract.order_id", "no such order"))?;
            if !matches!(order.status, OrderStatus::Confirmed | OrderStatus::Invoiced) {
                return Err(OpportunitiesError::precondition(format!(
                    "a contract is made from a confirmed order; this one is {}",
                    order.status.as_db()
                )));
            }
            Some(order.doc)
        } else {
            None
        };
        let (partner_id, campaign_id) = match &source {
            Some(doc) => {
                if header.partner_id.is_some_and(|p| p != doc.partner_id) {
                    return Err(OpportunitiesError::invalid(
                        "contract.partner_id",
                        "is not the source document's partner: leave it empty",
                    ));
                }
                header.opportunity_id = header.opportunity_id.or(doc.opportunity_id);
                if header.lines.is_empty() {
                    header.currency = doc.currency.clone();
                    header.lines = doc
                        .lines
                        .iter()
                        .map(|l| LineRequest::copy_of(l, &doc.currency, l.values.quantity_milli))
                        .collect();
                }
                (doc.partner_id, header.campaign_id.or(doc.campaign_id))
            }
            None => {
                self.document_parties(
                    &mut conn,
                    "contract",
                    header.partner_id,
                    header.opportunity_id,
                    header.campaign_id,
                    &[Stage::Negotiation],
                    "a contract",
                )
                .await?
            }
        };
        let lines = self
            .resolve_lines(
                &mut conn,
                "contract.lines",
                header.lines,
                &header.currency,
                &[],
            )
            .await?;
        drop(conn);
        let now = self.clock.now();
        let mut doc = new_header(partner_id, header.currency, &caller.subject, now);
        doc.series_id = header.series_id;
        doc.opportunity_id = header.opportunity_id;
        doc.campaign_id = campaign_id;
        doc.lines = lines;
        doc.notes = header.notes;
        doc.attachments = header.attachments;
        let contract = Contract {
            doc,
            status: ContractStatus::Draft,
            kind: kind.expect("checked"),
            order_id,
            offer_id,
            task_id,
            signing_date: None,
            start_date: start.flatten(),
            end_date: end.flatten(),
            termination_date: None,
            billing_day: billing_day.expect("checked"),
            status_note: String::new(),
        };
        let new_files =
            self.new_uploads(caller, "contract.attachments", &given.attachments, &[])?;
        let mut tx = self.pool.begin().await?;
        let request_id = request_id.expect("checked");
        if !request_id.is_empty()
            && let Some(existing) = store::claim_request(
                &mut tx,
                "contract",
                &caller.request_scope(),
                &request_id,
                contract.doc.id,
                now,
            )
            .await?
        {
            return store::contracts::get(&mut tx, existing, false)
                .await?
                .ok_or_else(|| OpportunitiesError::not_found("contract", existing));
        }
        if !store::contracts::insert(&mut tx, &contract).await? {
            // A concurrent draft for the same task won: answer with it.
            tx.rollback().await?;
            let mut conn = self.pool.acquire().await?;
            let task_id = contract.task_id.expect("only a task's contract conflicts");
            let existing = store::contracts::id_of_task(&mut conn, task_id)
                .await?
                .ok_or_else(|| OpportunitiesError::not_found("contract", task_id))?;
            return store::contracts::get(&mut conn, existing, false)
                .await?
                .ok_or_else(|| OpportunitiesError::not_found("contract", existing));
        }
        self.files_attached(
            &mut tx,
            owner_ref(DocumentKind::Contract, contract.doc.id),
            new_files,
            &caller.subject,
        )
        .await?;
        self.events.commit(tx).await?;
        Ok(contract)
    }

    async fn begin_contract_change(
        &self,
        id: Uuid,
        version: i64,
    ) -> Result<(sqlx::Transaction<'static, sqlx::Postgres>, Contract)> {
        let mut tx = self.pool.begin().await?;
        let contract = store::contracts::get(&mut tx, id, true)
            .await?
            .ok_or_else(|| OpportunitiesError::not_found("contract", id))?;
        check_version("contract", version, contract.doc.version)?;
        Ok((tx, contract))
    }

    async fn update_contract(
        &self,
        caller: &Caller,
        request: pb::UpdateContractRequest,
    ) -> Result<Contract> {
        let mut f = Fields::new();
        let paths = f.mask(request.update_mask.as_ref(), UPDATABLE);
        let version = f.etag(&request.etag);
        let Some(given) = request.contract else {
            f.add("contract", "is required");
            return Err(f.finish().expect_err("refused").into());
        };
        let id = f.id("contract.id", &given.id);
        let changes = parse_header_changes(&mut f, "contract", &paths, &header_fields(&given));
        let has = |name: &str| paths.iter().any(|p| p == name);
        let start = f.date("contract.start_date", given.start_date.as_ref());
        let end = f.date("contract.end_date", given.end_date.as_ref());
        let day = billing_day(&mut f, given.billing_day);
        f.finish()?;
        let (mut tx, current) = self
            .begin_contract_change(id.expect("checked"), version.expect("checked"))
            .await?;
        let editable_after_signing = paths.iter().all(|p| p == "attachments" || p == "end_date");
        let allowed = current.status.is_editable()
            || (current.status == ContractStatus::Signed && editable_after_signing)
            || (current.status != ContractStatus::Cancelled
                && paths.iter().all(|p| p == "attachments"));
        if !allowed {
            return Err(OpportunitiesError::precondition(format!(
                "only a draft contract changes (this one is {}); a signed one's attachments and \
                 end date excepted",
                current.status.as_db()
            )));
        }
        let new_files = if paths.iter().any(|p| p == "attachments") {
            self.new_uploads(
                caller,
                "contract.attachments",
                &given.attachments,
                &current.doc.attachments,
            )?
        } else {
            Vec::new()
        };
        let mut updated = current.clone();
        updated.doc.touch(&caller.subject, self.clock.now());
        let lines_changed = self
            .apply_header_changes(&mut tx, "contract", &mut updated.doc, changes)
            .await?;
        if has("start_date") {
            updated.start_date = start.flatten();
        }
        if has("end_date") {
            updated.end_date = end.flatten();
        }
        if has("billing_day") {
            updated.billing_day = day.expect("checked");
        }
        if let (Some(start), Some(end)) = (updated.start_date, updated.end_date)
            && end < start
        {
            return Err(OpportunitiesError::invalid(
                "contract.end_date",
                "must not be before start_date",
            ));
        }
        if !store::contracts::update(&mut tx, &updated, current.doc.version, lines_changed).await? {
            return Err(OpportunitiesError::StaleEtag("contract"));
        }
        self.files_attached(
            &mut tx,
            owner_ref(DocumentKind::Contract, updated.doc.id),
            new_files,
            &caller.subject,
        )
        .await?;
        self.events.commit(tx).await?;
        Ok(updated)
    }

    async fn sign_contract(
        &self,
        caller: &Caller,
        request: pb::SignContractRequest,
    ) -> Result<Contract> {
        let mut f = Fields::new();
        let id = f.id("id", &request.id);
        let version = f.etag(&request.etag);
        let signing = f.date("signing_date", request.signing_date.as_ref());
        f.finish()?;
        let id = id.expect("checked");
        let customer = self.customer_of(DocKind::Contract, id).await?;
        let (mut tx, current) = self
            .begin_contract_change(id, version.expect("checked"))
            .await?;
        current.status.check_sign()?;
        check_has_lines(current.doc.lines.len())?;
        if current.start_date.is_none() {
            return Err(OpportunitiesError::precondition(
                "a contract is signed with its start date: set start_date first",
            ));
        }
        let now = self.clock.now();
        let today = self.day_of(now);
        let (series_id, number) = self
            .take_number(&mut tx, DocKind::Contract, current.doc.series_id, today)
            .await?;
        let mut signed = current.clone();
        signed.doc.touch(&caller.subject, now);
        signed.doc.series_id = Some(series_id);
        signed.doc.number = Some(number.clone());
        signed.doc.customer = Some(customer);
        signed.status = ContractStatus::Signed;
        signed.signing_date = Some(signing.flatten().unwrap_or(today));
        if !store::contracts::update(&mut tx, &signed, current.doc.version, false).await? {
            return Err(OpportunitiesError::StaleEtag("contract"));
        }
        self.events
            .publish(
                &mut tx,
                signed.doc.partner_id,
                &caller.subject,
                &ev::ContractSigned {
                    contract: Some(to_proto(&signed)),
                },
                now,
            )
            .await?;
        if let Some(opportunity_id) = signed.doc.opportunity_id {
            self.win_by_document(
                &mut tx,
                opportunity_id,
                Cause {
                    kind: "contract",
                    id: signed.doc.id,
                    number,
                },
                now,
            )
            .await?;
        }
        self.events.commit(tx).await?;
        Ok(signed)
    }

    async fn terminate_contract(
        &self,
        caller: &Caller,
        request: pb::TerminateContractRequest,
    ) -> Result<Contract> {
        let mut f = Fields::new();
        let id = f.id("id", &request.id);
        let version = f.etag(&request.etag);
        let termination = f.date("termination_date", request.termination_date.as_ref());
        let reason = f.text("reason", &request.reason, 2000, false);
        f.finish()?;
        let (mut tx, current) = self
            .begin_contract_change(id.expect("checked"), version.expect("checked"))
            .await?;
        let status = current.status.after_terminate()?;
        let now = self.clock.now();
        let mut updated = current.clone();
        updated.doc.touch(&caller.subject, now);
        updated.status = status;
        updated.status_note = reason.expect("checked");
        if status == ContractStatus::Terminated {
            let Some(day) = termination.flatten() else {
                return Err(OpportunitiesError::invalid(
                    "termination_date",
                    "is required to terminate a signed contract",
                ));
            };
            let start = current.start_date.expect("a signed contract has a start");
            if day < start {
                return Err(OpportunitiesError::invalid(
                    "termination_date",
                    "must not be before the contract's start_date",
                ));
            }
            if let Some(last) = last_active_day(current.end_date, None)
                && day > last
            {
                return Err(OpportunitiesError::invalid(
                    "termination_date",
                    "must not be after the contract's end_date",
                ));
            }
            updated.termination_date = Some(day);
        }
        if !store::contracts::update(&mut tx, &updated, current.doc.version, false).await? {
            return Err(OpportunitiesError::StaleEtag("contract"));
        }
        if status == ContractStatus::Terminated {
            self.events
                .publish(
                    &mut tx,
                    updated.doc.partner_id,
                    &caller.subject,
                    &ev::ContractTerminated {
                        contract: Some(to_proto(&updated)),
                    },
                    now,
                )
                .await?;
        }
        self.events.commit(tx).await?;
        Ok(updated)
    }

    async fn coverage(
        &self,
        request: pb::CheckContractCoverageRequest,
    ) -> Result<pb::CheckContractCoverageResponse> {
        let mut f = Fields::new();
        let partner_id = f.id("partner_id", &request.partner_id);
        let article_id = f.id("article_id", &request.article_id);
        let day = f.date("date", request.date.as_ref());
        f.finish()?;
        let day = day.flatten().unwrap_or_else(|| self.today());
        let mut conn = self.pool.acquire().await?;
        let Some((contract_id, line_id)) = store::contracts::coverage(
            &mut conn,
            partner_id.expect("checked"),
            article_id.expect("checked"),
            day,
        )
        .await?
        else {
            return Ok(pb::CheckContractCoverageResponse {
                covered: false,
                contract: None,
                line: None,
                date: Some(date_to_proto(day)),
            });
        };
        let contract = store::contracts::get(&mut conn, contract_id, false)
            .await?
            .ok_or_else(|| OpportunitiesError::not_found("contract", contract_id))?;
        let line = contract
            .doc
            .lines
            .iter()
            .find(|l| l.id == line_id)
            .map(|l| convert::line(l, &contract.doc.currency));
        Ok(pb::CheckContractCoverageResponse {
            covered: true,
            contract: Some(to_proto(&contract)),
            line,
            date: Some(date_to_proto(day)),
        })
    }
}

#[tonic::async_trait]
impl ContractService for OpportunitiesApi {
    #[tracing::instrument(skip_all)]
    async fn create_contract(
        &self,
        request: Request<pb::CreateContractRequest>,
    ) -> Result<Response<pb::Contract>, Status> {
        let caller = caller(&request, DOCUMENT_ROLES)?;
        let contract =
            OpportunitiesApi::create_contract(self, &caller, request.into_inner()).await?;
        Ok(Response::new(to_proto(&contract)))
    }

    #[tracing::instrument(skip_all)]
    async fn get_contract(
        &self,
        request: Request<pb::GetContractRequest>,
    ) -> Result<Response<pb::Contract>, Status> {
        caller(&request, READERS)?;
        let mut f = Fields::new();
        let id = f.id("id", &request.get_ref().id);
        f.finish()?;
        let id = id.expect("checked");
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(OpportunitiesError::from)?;
        let contract = store::contracts::get(&mut conn, id, false)
            .await
            .map_err(OpportunitiesError::from)?
            .ok_or_else(|| OpportunitiesError::not_found("contract", id))?;
        Ok(Response::new(to_proto(&contract)))
    }

    #[tracing::instrument(skip_all)]
    async fn update_contract(
        &self,
        request: Request<pb::UpdateContractRequest>,
    ) -> Result<Response<pb::Contract>, Status> {
        let caller = caller(&request, DOCUMENT_ROLES)?;
        let contract =
            OpportunitiesApi::update_contract(self, &caller, request.into_inner()).await?;
        Ok(Response::new(to_proto(&contract)))
    }

    #[tracing::instrument(skip_all)]
    async fn list_contracts(
        &self,
        request: Request<pb::ListContractsRequest>,
    ) -> Result<Response<pb::ListContractsResponse>, Status> {
        caller(&request, READERS)?;
        let request = request.into_inner();
        let mut f = Fields::new();
        let partner_id = f.optional_id("partner_id", &request.partner_id);
        let article_id = f.optional_id("article_id", &request.article_id);
        let campaign_id = f.optional_id("campaign_id", &request.campaign_id);
        let opportunity_id = f.optional_id("opportunity_id", &request.opportunity_id);
        let active_on = f.date("active_on", request.active_on.as_ref());
        let kind = match pb::ContractKind::try_from(request.kind) {
            Ok(pb::ContractKind::Unspecified) => None,
            Ok(pb::ContractKind::Commercial) => Some(ContractKind::Commercial.as_db()),
            Ok(pb::ContractKind::Subscription) => Some(ContractKind::Subscription.as_db()),
            Err(_) => {
                f.add("kind", format!("{} is not a contract kind", request.kind));
                None
            }
        };
        let status = match pb::ContractStatus::try_from(request.status) {
            Ok(pb::ContractStatus::Unspecified) => None,
            Ok(pb::ContractStatus::Draft) => Some(ContractStatus::Draft.as_db()),
            Ok(pb::ContractStatus::Signed) => Some(ContractStatus::Signed.as_db()),
            Ok(pb::ContractStatus::Terminated) => Some(ContractStatus::Terminated.as_db()),
            Ok(pb::ContractStatus::Cancelled) => Some(ContractStatus::Cancelled.as_db()),
            Err(_) => {
                f.add(
                    "status",
                    format!("{} is not a contract status", request.status),
                );
                None
            }
        };
        f.finish()?;
        let filter = Filter {
            partner_id: partner_id.flatten(),
            kind,
            status,
            active_on: active_on.flatten(),
            article_id: article_id.flatten(),
            campaign_id: campaign_id.flatten(),
            opportunity_id: opportunity_id.flatten(),
        };
        let page: Page<NewestFirstCursor> =
            Page::of(request.page_size, &request.page_token, &filter)?;
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(OpportunitiesError::from)?;
        let mut rows =
            store::contracts::list(&mut conn, &filter, page.after.as_ref(), page.limit())
                .await
                .map_err(OpportunitiesError::from)?;
        let next_page_token = page.finish(&mut rows, |c| (c.doc.create_time, c.doc.id));
        Ok(Response::new(pb::ListContractsResponse {
            contracts: rows.iter().map(to_proto).collect(),
            next_page_token,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn sign_contract(
        &self,
        request: Request<pb::SignContractRequest>,
    ) -> Result<Response<pb::Contract>, Status> {
        let caller = caller(&request, DOCUMENT_ROLES)?;
        let contract = OpportunitiesApi::sign_contract(self, &caller, request.into_inner()).await?;
        Ok(Response::new(to_proto(&contract)))
    }

    #[tracing::instrument(skip_all)]
    async fn terminate_contract(
        &self,
        request: Request<pb::TerminateContractRequest>,
    ) -> Result<Response<pb::Contract>, Status> {
        let caller = caller(&request, DOCUMENT_ROLES)?;
        let contract =
            OpportunitiesApi::terminate_contract(self, &caller, request.into_inner()).await?;
        Ok(Response::new(to_proto(&contract)))
    }

    #[tracing::instrument(skip_all, fields(covered))]
    async fn check_contract_coverage(
        &self,
        request: Request<pb::CheckContractCoverageRequest>,
    ) -> Result<Response<pb::CheckContractCoverageResponse>, Status> {
        caller(&request, READERS)?;
        let response = self.coverage(request.into_inner()).await?;
        tracing::Span::current().record("covered", response.covered);
        Ok(Response::new(response))
    }
}
