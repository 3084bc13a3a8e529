//! What tasks asks opportunities, always for the calling user (an on-behalf-of token, so
//! opportunities applies the user's rights): the coverage and balance shown with a service
//! request (T7, informative: a short deadline, and "unavailable" instead of a failure), the
//! partner of the document a task is created from (T2), and the contract drafted from a task
//! (T7).

use std::time::Duration;

use chrono::NaiveDate;
use crm_platform::{
    auth::{Caller, OnBehalfInterceptor, ServiceCallInterceptor},
    settings::SiblingSettings,
    values,
};
use crm_proto::{
    common::{self, DocumentKind},
    opportunities::{
        self as opb, contract_service_client::ContractServiceClient,
        invoice_service_client::InvoiceServiceClient, offer_service_client::OfferServiceClient,
        opportunity_service_client::OpportunityServiceClient,
        order_service_client::OrderServiceClient, payment_service_client::PaymentServiceClient,
    },
};
use tonic::{Code, Status, codegen::InterceptedService, transport::Channel};
use uuid::Uuid;

use crate::{
    domain::task::Origin,
    error::{Result, TasksError},
};

/// The coverage and balance of a partner for a service, or why they are missing.
#[derive(Clone, Debug, Default)]
pub struct CoverageAnswer {
    /// The coverage answer; `None` when unavailable.
    pub coverage: Option<opb::CheckContractCoverageResponse>,
    /// The balance; `None` when unavailable.
    pub balance: Option<opb::PartnerBalance>,
    /// Why something is missing; empty when both arrived.
    pub unavailable_reason: String,
}

/// A client of opportunities.
#[derive(Clone)]
pub struct Opportunities {
    channel: Channel,
    calls: ServiceCallInterceptor,
    timeout: Duration,
    coverage_timeout: Duration,
}

type Client<T> = fn(InterceptedService<Channel, OnBehalfInterceptor>) -> T;

impl Opportunities {
    /// Opportunities at `settings`, called with `calls`; coverage waits `coverage_timeout`.
    pub fn new(
        settings: &SiblingSettings,
        calls: ServiceCallInterceptor,
        coverage_timeout: Duration,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            channel: settings.channel()?,
            calls,
            timeout: settings.timeout(),
            coverage_timeout,
        })
    }

    fn client<T>(&self, caller: &Caller, make: Client<T>) -> T {
        make(InterceptedService::new(
            self.channel.clone(),
            self.calls.acting_for(caller),
        ))
    }

    fn request<M>(message: M, timeout: Duration) -> tonic::Request<M> {
        let mut request = tonic::Request::new(message);
        request.set_timeout(timeout);
        request
    }

    /// Whether an active contract of `partner` covers `article` on `date`, and the partner's
    /// balance, asked at the same time; whatever does not arrive within the coverage deadline
    /// is reported unavailable with the reason.
    pub async fn coverage(
        &self,
        caller: &Caller,
        partner: Uuid,
        article: Uuid,
        date: NaiveDate,
    ) -> CoverageAnswer {
        let mut contracts = self.client(caller, ContractServiceClient::new);
        let mut payments = self.client(caller, PaymentServiceClient::new);
        let coverage_request = Self::request(
            opb::CheckContractCoverageRequest {
                partner_id: partner.to_string(),
                article_id: article.to_string(),
                date: Some(values::date_to_proto(date)),
            },
            self.coverage_timeout,
        );
        let balance_request = Self::request(
            opb::GetPartnerBalanceRequest {
                partner_id: partner.to_string(),
                as_of: Some(values::date_to_proto(date)),
            },
            self.coverage_timeout,
        );
        // The deadline also bounds connecting to an opportunities that is down.
        let (coverage, balance) = tokio::join!(
            tokio::time::timeout(
                self.coverage_timeout,
                contracts.check_contract_coverage(coverage_request)
            ),
            tokio::time::timeout(
                self.coverage_timeout,
                payments.get_partner_balance(balance_request)
            ),
        );
        let mut reasons = Vec::new();
        let coverage = settle("coverage", coverage, &mut reasons);
        let balance = settle("balance", balance, &mut reasons);
        CoverageAnswer {
            coverage,
            balance,
            unavailable_reason: reasons.join("; "),
        }
    }

    /// The partner of the document `origin` (an opportunity, offer, order, contract or
    /// invoice), as the caller may read it. INVALID_ARGUMENT on `field` when it does not exist
    /// or the caller may not read it; UNAVAILABLE when opportunities does not answer.
    pub async fn partner_of(&self, caller: &Caller, origin: &Origin, field: &str) -> Result<Uuid> {
        let id = origin.id.to_string();
        let kind = DocumentKind::try_from(origin.kind).unwrap_or(DocumentKind::Unspecified);
        let answer = match kind {
            DocumentKind::Opportunity => self
                .client(caller, OpportunityServiceClient::new)
                .get_opportunity(Self::request(
                    opb::GetOpportunityRequest { id },
                    self.timeout,
                ))
                .await
                .map(|r| r.into_inner().partner_id),
            DocumentKind::Offer => self
                .client(caller, OfferServiceClient::new)
                .get_offer(Self::request(opb::GetOfferRequest { id }, self.timeout))
                .await
                .map(|r| r.into_inner().partner_id),
            DocumentKind::Order => self
                .client(caller, OrderServiceClient::new)
                .get_order(Self::request(opb::GetOrderRequest { id }, self.timeout))
                .await
                .map(|r| r.into_inner().partner_id),
            DocumentKind::Contract => self
                .client(caller, ContractServiceClient::new)
                .get_contract(Self::request(opb::GetContractRequest { id }, self.timeout))
                .await
                .map(|r| r.into_inner().partner_id),
            DocumentKind::Invoice => self
                .client(caller, InvoiceServiceClient::new)
                .get_invoice(Self::request(opb::GetInvoiceRequest { id }, self.timeout))
                .await
                .map(|r| r.into_inner().partner_id),
            _ => {
                return Err(TasksError::invalid(
                    format!("{field}.kind"),
                    "must be OPPORTUNITY, OFFER, ORDER, CONTRACT or INVOICE",
                ));
            }
        };
        match answer {
            Ok(partner) => Uuid::parse_str(&partner).map_err(|_| {
                TasksError::invalid(format!("{field}.id"), "the document names no partner")
            }),
            Err(status) if matches!(status.code(), Code::NotFound | Code::PermissionDenied) => Err(
                TasksError::invalid(format!("{field}.id"), "no such document that you may read"),
            ),
            Err(status) => Err(unavailable("the origin document's partner", &status)),
        }
    }

    /// Drafts a contract of `kind` for `partner` with one line of `article`, from `task`
    /// (opportunities keeps one contract per task: a repeat returns the first draft).
    pub async fn draft_contract(
        &self,
        caller: &Caller,
        task: Uuid,
        partner: Uuid,
        article: Uuid,
        kind: opb::ContractKind,
        notes: String,
    ) -> Result<opb::Contract> {
        let request = opb::CreateContractRequest {
            contract: Some(opb::Contract {
                kind: kind as i32,
                partner_id: partner.to_string(),
                lines: vec![opb::DocumentLine {
                    article_id: article.to_string(),
                    quantity_milli: 1000,
                    ..Default::default()
                }],
                notes,
                ..Default::default()
            }),
            request_id: format!("task:{task}"),
            task_id: task.to_string(),
        };
        self.client(caller, ContractServiceClient::new)
            .create_contract(Self::request(request, self.timeout))
            .await
            .map(tonic::Response::into_inner)
            .map_err(|status| match status.code() {
                // The caller's own refusal (rights, a bad partner or article) is theirs to see.
                Code::InvalidArgument
                | Code::PermissionDenied
                | Code::FailedPrecondition
                | Code::NotFound => TasksError::Refused(status),
                _ => unavailable("drafting the contract", &status),
            })
    }
}

/// The answer of one informative call, or its reason for missing.
fn settle<T>(
    what: &str,
    outcome: std::result::Result<
        std::result::Result<tonic::Response<T>, Status>,
        tokio::time::error::Elapsed,
    >,
    reasons: &mut Vec<String>,
) -> Option<T> {
    match outcome {
        Ok(Ok(response)) => Some(response.into_inner()),
        Ok(Err(status)) => {
            let reason = match status.code() {
                Code::PermissionDenied => format!("{what}: you may not read it"),
                Code::NotFound | Code::InvalidArgument => format!("{what}: {}", status.message()),
                _ => {
                    tracing::warn!(error = %status, "opportunities did not answer {what}");
                    format!("{what}: opportunities unavailable")
                }
            };
            reasons.push(reason);
            None
        }
        Err(_) => {
            tracing::warn!("opportunities did not answer {what} in time");
            reasons.push(format!("{what}: opportunities did not answer in time"));
            None
        }
    }
}

fn unavailable(what: &str, status: &Status) -> TasksError {
    tracing::warn!(error = %status, "opportunities did not answer: {what}");
    TasksError::Unavailable(format!(
        "opportunities is unavailable for {what}; try again"
    ))
}

/// A reference to the record `id` of `kind`.
pub fn document_ref(kind: DocumentKind, id: Uuid) -> common::DocumentRef {
    common::DocumentRef {
        kind: kind as i32,
        id: id.to_string(),
        number: String::new(),
    }
}
