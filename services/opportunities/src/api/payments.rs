//! `PaymentService`: payments, their allocation to invoices, and partner balances (O8).

use crm_platform::{
    auth::Caller,
    values::{date_to_proto, etag_of, timestamp},
};
use crm_proto::{
    events as ev,
    opportunities::{self as pb, payment_service_server::PaymentService},
};
use sqlx::PgConnection;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::MoneyFields as _;
use super::{DOCUMENT_ROLES, Fields, OpportunitiesApi, Page, caller, check_version, convert};
use crate::{
    domain::{
        documents::{PaymentMethod, PaymentStatus},
        money::{Currency, Money},
        payments::{Allocation, Payment, check_allocations},
    },
    error::{OpportunitiesError, Result},
    store::{self, NewestFirstCursor, payments::Filter},
};

/// Roles that read balances: sales roles and `service` (T7).
const BALANCE_READERS: &[&str] = &["sales", "manager", "service"];
/// Most allocations of one payment.
const MAX_ALLOCATIONS: usize = 100;
/// Largest payment, in minor units.
const MAX_PAYMENT: i64 = 1_000_000_000_000_000;

fn to_proto(p: &Payment) -> pb::Payment {
    let allocated = p.allocated();
    pb::Payment {
        id: p.id.to_string(),
        partner_id: p.partner_id.to_string(),
        amount: Some(convert::money(&p.amount)),
        payment_date: Some(date_to_proto(p.payment_date)),
        method: match p.method {
            PaymentMethod::BankTransfer => pb::PaymentMethod::BankTransfer,
            PaymentMethod::Cash => pb::PaymentMethod::Cash,
            PaymentMethod::Card => pb::PaymentMethod::Card,
            PaymentMethod::Other => pb::PaymentMethod::Other,
        } as i32,
        reference: p.reference.clone(),
        notes: p.notes.clone(),
        status: match p.status {
            PaymentStatus::Recorded => pb::PaymentStatus::Recorded,
            PaymentStatus::Cancelled => pb::PaymentStatus::Cancelled,
        } as i32,
        create_time: Some(timestamp(p.create_time)),
        creator: p.creator.clone(),
        etag: etag_of(p.version),
        allocations: p
            .allocations
            .iter()
            .map(|(invoice_id, amount, number)| pb::PaymentAllocation {
                invoice_id: invoice_id.to_string(),
                amount: Some(convert::amount(*amount, &p.amount.currency)),
                invoice_number: number.clone(),
            })
            .collect(),
        allocated_amount: Some(convert::amount(allocated, &p.amount.currency)),
        unallocated_amount: Some(convert::amount(
            p.amount.units - allocated,
            &p.amount.currency,
        )),
    }
}

/// Parses allocations given under `field` ("payment.allocations").
fn parse_allocations(
    f: &mut Fields,
    field: &str,
    given: &[pb::PaymentAllocation],
) -> Option<Vec<(Allocation, Option<Currency>)>> {
    if given.len() > MAX_ALLOCATIONS {
        f.add(
            field,
            format!("must hold at most {MAX_ALLOCATIONS} allocations"),
        );
        return None;
    }
    let mut out = Vec::with_capacity(given.len());
    let mut ok = true;
    for (i, a) in given.iter().enumerate() {
        let id = f.id(&format!("{field}[{i}].invoice_id"), &a.invoice_id);
        let currency = match &a.amount {
            Some(m) if !m.currency_code.is_empty() => f.currency(
                &format!("{field}[{i}].amount.currency_code"),
                &m.currency_code,
            ),
            _ => None,
        };
        let amount = a.amount.as_ref().map_or(0, |m| m.units);
        match id {
            Some(id) => out.push((
                Allocation {
                    invoice_id: id,
                    amount,
                },
                currency,
            )),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

impl OpportunitiesApi {
    /// Checks `allocations` of `payment` (which has `available` minor units not allocated)
    /// against the invoices they name, locked in `tx`; violations are named under `field`.
    async fn allocate(
        &self,
        tx: &mut PgConnection,
        payment: &Payment,
        available: i64,
        allocations: &[(Allocation, Option<Currency>)],
        field: &str,
    ) -> Result<Vec<(Uuid, i64, String)>> {
        let mut f = Fields::new();
        for (i, (_, currency)) in allocations.iter().enumerate() {
            if let Some(currency) = currency
                && *currency != payment.amount.currency
            {
                f.add(
                    format!("{field}[{i}].amount.currency_code"),
                    format!(
                        "must be the payment's currency, {}",
                        payment.amount.currency
                    ),
                );
            }
        }
        let ids: Vec<Uuid> = allocations.iter().map(|(a, _)| a.invoice_id).collect();
        let invoices = store::payments::invoices_to_pay(tx, &ids).await?;
        let plain: Vec<Allocation> = allocations.iter().map(|(a, _)| *a).collect();
        for (path, reason) in check_allocations(
            payment.partner_id,
            &payment.amount.currency,
            available,
            &plain,
            &invoices,
        ) {
            f.add(format!("{field}{path}"), reason);
        }
        f.finish()?;
        let numbers = store::invoices::numbers(tx, &ids).await?;
        Ok(plain
            .iter()
            .map(|a| {
                (
                    a.invoice_id,
                    a.amount,
                    numbers.get(&a.invoice_id).cloned().unwrap_or_default(),
                )
            })
            .collect())
    }

    async fn create_payment(
        &self,
        caller: &Caller,
        request: pb::CreatePaymentRequest,
    ) -> Result<Payment> {
        let mut f = Fields::new();
        let request_id = f.text("request_id", &request.request_id, 100, false);
        let Some(given) = request.payment else {
            f.add("payment", "is required");
            return Err(f.finish().expect_err("refused").into());
        };
        let partner_id = f.id("payment.partner_id", &given.partner_id);
        let amount = match f.money("payment.amount", given.amount.as_ref(), MAX_PAYMENT) {
            Some(Some(m)) if m.units > 0 => Some(m),
            Some(_) => {
                f.add("payment.amount", "is required and must be greater than 0");
                None
            }
            None => None,
        };
        let day = f.date("payment.payment_date", given.payment_date.as_ref());
        match day {
            Some(None) => f.add("payment.payment_date", "is required"),
            Some(Some(d)) if d > self.today() => {
                f.add("payment.payment_date", "must not be in the future")
            }
            _ => {}
        }
        let method = match pb::PaymentMethod::try_from(given.method) {
            Ok(pb::PaymentMethod::BankTransfer) => Some(PaymentMethod::BankTransfer),
            Ok(pb::PaymentMethod::Cash) => Some(PaymentMethod::Cash),
            Ok(pb::PaymentMethod::Card) => Some(PaymentMethod::Card),
            Ok(pb::PaymentMethod::Other | pb::PaymentMethod::Unspecified) => {
                Some(PaymentMethod::Other)
            }
            Err(_) => {
                f.add(
                    "payment.method",
                    format!("{} is not a payment method", given.method),
                );
                None
            }
        };
        let reference = f.text("payment.reference", &given.reference, 100, false);
        let notes = f.text("payment.notes", &given.notes, 2000, false);
        let allocations = parse_allocations(&mut f, "payment.allocations", &given.allocations);
        f.finish()?;
        let partner_id = partner_id.expect("checked");
        self.partners
            .usable(partner_id, "payment.partner_id")
            .await?;
        let now = self.clock.now();
        let mut payment = Payment {
            id: Uuid::now_v7(),
            partner_id,
            amount: amount.expect("checked"),
            payment_date: day.flatten().expect("checked"),
            method: method.expect("checked"),
            reference: reference.expect("checked"),
            notes: notes.expect("checked"),
            status: PaymentStatus::Recorded,
            cancel_reason: String::new(),
            allocations: Vec::new(),
            create_time: now,
            update_time: now,
            creator: caller.subject.clone(),
            version: 1,
        };
        let mut tx = self.pool.begin().await?;
        let request_id = request_id.expect("checked");
        if !request_id.is_empty()
            && let Some(existing) = store::claim_request(
                &mut tx,
                "payment",
                &caller.request_scope(),
                &request_id,
                payment.id,
                now,
            )
            .await?
        {
            return store::payments::get(&mut tx, existing, false)
                .await?
                .ok_or_else(|| OpportunitiesError::not_found("payment", existing));
        }
        payment.allocations = self
            .allocate(
                &mut tx,
                &payment,
                payment.amount.units,
                &allocations.expect("checked"),
                "payment.allocations",
            )
            .await?;
        store::payments::insert(&mut tx, &payment).await?;
        self.events
            .publish(
                &mut tx,
                payment.partner_id,
                &caller.subject,
                &ev::PaymentRecorded {
                    payment: Some(to_proto(&payment)),
                },
                now,
            )
            .await?;
        self.events.commit(tx).await?;
        Ok(payment)
    }

    async fn begin_payment_change(
        &self,
        id: Uuid,
        version: i64,
    ) -> Result<(sqlx::Transaction<'static, sqlx::Postgres>, Payment)> {
        let mut tx = self.pool.begin().await?;
        let payment = store::payments::get(&mut tx, id, true)
            .await?
            .ok_or_else(|| OpportunitiesError::not_found("payment", id))?;
        check_version("payment", version, payment.version)?;
        Ok((tx, payment))
    }

    async fn allocate_payment(
        &self,
        caller: &Caller,
        request: pb::AllocatePaymentRequest,
    ) -> Result<Payment> {
        let mut f = Fields::new();
        let id = f.id("id", &request.id);
        let version = f.etag(&request.etag);
        if request.allocations.is_empty() {
            f.add("allocations", "give at least one allocation");
        }
        let allocations = parse_allocations(&mut f, "allocations", &request.allocations);
        f.finish()?;
        let (mut tx, current) = self
            .begin_payment_change(id.expect("checked"), version.expect("checked"))
            .await?;
        if current.status != PaymentStatus::Recorded {
            return Err(OpportunitiesError::precondition("the payment is cancelled"));
        }
        let available = current.amount.units - current.allocated();
        let added = self
            .allocate(
                &mut tx,
                &current,
                available,
                &allocations.expect("checked"),
                "allocations",
            )
            .await?;
        let now = self.clock.now();
        let mut updated = current.clone();
        updated.update_time = now;
        updated.version += 1;
        store::payments::add_allocations(&mut tx, updated.id, current.allocations.len(), &added)
            .await?;
        updated.allocations.extend(added.iter().cloned());
        if !store::payments::update_status(&mut tx, &updated, current.version).await? {
            return Err(OpportunitiesError::StaleEtag("payment"));
        }
        self.events
            .publish(
                &mut tx,
                updated.partner_id,
                &caller.subject,
                &ev::PaymentAllocated {
                    payment: Some(to_proto(&updated)),
                    new_allocations: added
                        .iter()
                        .map(|(invoice_id, amount, number)| pb::PaymentAllocation {
                            invoice_id: invoice_id.to_string(),
                            amount: Some(convert::amount(*amount, &updated.amount.currency)),
                            invoice_number: number.clone(),
                        })
                        .collect(),
                },
                now,
            )
            .await?;
        self.events.commit(tx).await?;
        Ok(updated)
    }

    async fn cancel_payment(
        &self,
        caller: &Caller,
        request: pb::CancelPaymentRequest,
    ) -> Result<Payment> {
        let mut f = Fields::new();
        let id = f.id("id", &request.id);
        let version = f.etag(&request.etag);
        let reason = f.text("reason", &request.reason, 2000, true);
        f.finish()?;
        let (mut tx, current) = self
            .begin_payment_change(id.expect("checked"), version.expect("checked"))
            .await?;
        if current.status == PaymentStatus::Cancelled {
            return Err(OpportunitiesError::precondition(
                "the payment is already cancelled",
            ));
        }
        let now = self.clock.now();
        let reason = reason.expect("checked");
        let updated = Payment {
            status: PaymentStatus::Cancelled,
            cancel_reason: reason.clone(),
            update_time: now,
            version: current.version + 1,
            ..current.clone()
        };
        if !store::payments::update_status(&mut tx, &updated, current.version).await? {
            return Err(OpportunitiesError::StaleEtag("payment"));
        }
        self.events
            .publish(
                &mut tx,
                updated.partner_id,
                &caller.subject,
                &ev::PaymentCancelled {
                    payment: Some(to_proto(&updated)),
                    reason,
                },
                now,
            )
            .await?;
        self.events.commit(tx).await?;
        Ok(updated)
    }

    async fn balance(&self, request: pb::GetPartnerBalanceRequest) -> Result<pb::PartnerBalance> {
        let mut f = Fields::new();
        let partner_id = f.id("partner_id", &request.partner_id);
        let day = f.date("as_of", request.as_of.as_ref());
        f.finish()?;
        let partner_id = partner_id.expect("checked");
        let day = day.flatten().unwrap_or_else(|| self.today());
        let mut conn = self.pool.acquire().await?;
        let mut rows = store::invoices::balance(&mut conn, partner_id, day).await?;
        let default = Currency::default_currency();
        if !rows.iter().any(|r| r.currency == default) {
            rows.push(store::invoices::CurrencyBalance {
                currency: default.clone(),
                invoiced: 0,
                paid: 0,
                overdue: 0,
            });
        }
        rows.sort_by(|a, b| {
            (a.currency != default, &a.currency).cmp(&(b.currency != default, &b.currency))
        });
        Ok(pb::PartnerBalance {
            partner_id: partner_id.to_string(),
            balances: rows
                .iter()
                .map(|r| pb::CurrencyBalance {
                    invoiced_with_vat: Some(convert::amount(r.invoiced, &r.currency)),
                    paid: Some(convert::amount(r.paid, &r.currency)),
                    balance: Some(convert::money(&Money::new(
                        r.invoiced - r.paid,
                        r.currency.clone(),
                    ))),
                    overdue: Some(convert::amount(r.overdue, &r.currency)),
                })
                .collect(),
            as_of: Some(date_to_proto(day)),
        })
    }
}

#[tonic::async_trait]
impl PaymentService for OpportunitiesApi {
    #[tracing::instrument(skip_all)]
    async fn create_payment(
        &self,
        request: Request<pb::CreatePaymentRequest>,
    ) -> Result<Response<pb::Payment>, Status> {
        let caller = caller(&request, DOCUMENT_ROLES)?;
        let payment = OpportunitiesApi::create_payment(self, &caller, request.into_inner()).await?;
        Ok(Response::new(to_proto(&payment)))
    }

    #[tracing::instrument(skip_all)]
    async fn allocate_payment(
        &self,
        request: Request<pb::AllocatePaymentRequest>,
    ) -> Result<Response<pb::Payment>, Status> {
        let caller = caller(&request, DOCUMENT_ROLES)?;
        let payment =
            OpportunitiesApi::allocate_payment(self, &caller, request.into_inner()).await?;
        Ok(Response::new(to_proto(&payment)))
    }

    #[tracing::instrument(skip_all)]
    async fn get_payment(
        &self,
        request: Request<pb::GetPaymentRequest>,
    ) -> Result<Response<pb::Payment>, Status> {
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
        let payment = store::payments::get(&mut conn, id, false)
            .await
            .map_err(OpportunitiesError::from)?
            .ok_or_else(|| OpportunitiesError::not_found("payment", id))?;
        Ok(Response::new(to_proto(&payment)))
    }

    #[tracing::instrument(skip_all)]
    async fn list_payments(
        &self,
        request: Request<pb::ListPaymentsRequest>,
    ) -> Result<Response<pb::ListPaymentsResponse>, Status> {
        caller(&request, DOCUMENT_ROLES)?;
        let request = request.into_inner();
        let mut f = Fields::new();
        let partner_id = f.optional_id("partner_id", &request.partner_id);
        let invoice_id = f.optional_id("invoice_id", &request.invoice_id);
        let (from, to) = f.period("payment_period", request.payment_period.as_ref());
        let status = match pb::PaymentStatus::try_from(request.status) {
            Ok(pb::PaymentStatus::Unspecified) => None,
            Ok(pb::PaymentStatus::Recorded) => Some(PaymentStatus::Recorded.as_db()),
            Ok(pb::PaymentStatus::Cancelled) => Some(PaymentStatus::Cancelled.as_db()),
            Err(_) => {
                f.add(
                    "status",
                    format!("{} is not a payment status", request.status),
                );
                None
            }
        };
        f.finish()?;
        let filter = Filter {
            partner_id: partner_id.flatten(),
            invoice_id: invoice_id.flatten(),
            from,
            to,
            status,
        };
        let page: Page<NewestFirstCursor> =
            Page::of(request.page_size, &request.page_token, &filter)?;
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(OpportunitiesError::from)?;
        let mut rows = store::payments::list(&mut conn, &filter, page.after.as_ref(), page.limit())
            .await
            .map_err(OpportunitiesError::from)?;
        let next_page_token = page.finish(&mut rows, |p| (p.create_time, p.id));
        Ok(Response::new(pb::ListPaymentsResponse {
            payments: rows.iter().map(to_proto).collect(),
            next_page_token,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn cancel_payment(
        &self,
        request: Request<pb::CancelPaymentRequest>,
    ) -> Result<Response<pb::Payment>, Status> {
        let caller = caller(&request, DOCUMENT_ROLES)?;
        let payment = OpportunitiesApi::cancel_payment(self, &caller, request.into_inner()).await?;
        Ok(Response::new(to_proto(&payment)))
    }

    #[tracing::instrument(skip_all)]
    async fn get_partner_balance(
        &self,
        request: Request<pb::GetPartnerBalanceRequest>,
    ) -> Result<Response<pb::PartnerBalance>, Status> {
        caller(&request, BALANCE_READERS)?;
        Ok(Response::new(self.balance(request.into_inner()).await?))
    }
}
