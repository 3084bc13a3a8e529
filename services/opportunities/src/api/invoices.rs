//! `InvoiceService`: invoices from orders, from subscription contracts (per month) and by hand
//! (O8); task invoices come from the `IssueTaskInvoice` command (billing.rs).

use std::collections::HashMap;

use chrono::{Days, NaiveDate};
use crm_platform::{auth::Caller, values::timestamp};
use crm_proto::{
    common::DocumentKind,
    events as ev,
    opportunities::{self as pb, invoice_service_server::InvoiceService},
};
use sqlx::PgConnection;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::{
    DOCUMENT_ROLES, Fields, MANAGER_ROLES, OpportunitiesApi, Page, caller, check_version, convert,
    documents::{
        HeaderFields, LineRequest, date, header_proto, id_text, new_header, owner_ref,
        parse_header, parse_header_changes,
    },
};
use crate::{
    domain::{
        catalogue::{DocKind, PartnerCard},
        documents::{
            Contract, ContractKind, ContractStatus, Invoice, InvoiceSource, InvoiceStatus, Order,
            OrderStatus, active_in_month, check_has_lines, fully_invoiced, last_active_day,
            month_end, subscription_invoice_date, uninvoiced,
        },
        lines::Line,
        opportunity::Cause,
        payments::{PaidState, paid_state},
    },
    error::{OpportunitiesError, Result},
    store::{self, NewestFirstCursor, invoices::Filter},
};

/// Roles that read invoices: sales roles, and `service` for task invoices only.
const READERS: &[&str] = &["sales", "manager", "service"];
/// Fields UpdateInvoice may change (of a draft; `attachments` always).
const UPDATABLE: &[&str] = &[
    "lines",
    "notes",
    "attachments",
    "series_id",
    "currency_code",
    "invoice_date",
    "due_date",
];

/// An invoice as the proto message.
pub(crate) fn to_proto(i: &Invoice) -> pb::Invoice {
    let h = header_proto(&i.doc);
    let with_vat = i.doc.totals().with_vat;
    pb::Invoice {
        id: h.id,
        number: h.number,
        series_id: h.series_id,
        partner_id: h.partner_id,
        source: match i.source {
            InvoiceSource::Manual => pb::InvoiceSource::Manual,
            InvoiceSource::Order => pb::InvoiceSource::Order,
            InvoiceSource::Subscription => pb::InvoiceSource::Subscription,
            InvoiceSource::Task => pb::InvoiceSource::Task,
        } as i32,
        order_id: id_text(i.order_id),
        contract_id: id_text(i.contract_id),
        billing_month: date(i.billing_month),
        task_id: id_text(i.task_id),
        estimate_offer_id: id_text(i.estimate_offer_id),
        opportunity_id: h.opportunity_id,
        campaign_id: h.campaign_id,
        invoice_date: date(i.invoice_date),
        due_date: date(i.due_date),
        status: match i.status {
            InvoiceStatus::Draft => pb::InvoiceStatus::Draft,
            InvoiceStatus::Issued => pb::InvoiceStatus::Issued,
            InvoiceStatus::Cancelled => pb::InvoiceStatus::Cancelled,
        } as i32,
        payment_status: match paid_state(with_vat, i.paid) {
            PaidState::Unpaid => pb::InvoicePaymentStatus::Unpaid,
            PaidState::PartiallyPaid => pb::InvoicePaymentStatus::PartiallyPaid,
            PaidState::Paid => pb::InvoicePaymentStatus::Paid,
        } as i32,
        currency_code: h.currency_code,
        lines: h.lines,
        totals: h.totals,
        paid_amount: Some(convert::amount(i.paid, &i.doc.currency)),
        notes: h.notes,
        attachments: h.attachments,
        issue_time: i.issue_time.map(timestamp),
        create_time: h.create_time,
        update_time: h.update_time,
        creator: h.creator,
        etag: h.etag,
        task_billing_attempt: i.task_billing_attempt.unwrap_or(0),
    }
}

fn header_fields(i: &pb::Invoice) -> HeaderFields<'_> {
    HeaderFields {
        series_id: &i.series_id,
        partner_id: &i.partner_id,
        opportunity_id: "",
        campaign_id: "",
        currency_code: &i.currency_code,
        notes: &i.notes,
        notes_max: 4000,
        attachments: &i.attachments,
        lines: &i.lines,
    }
}

/// Whether the caller may see every invoice, or (the `service` role alone) only task invoices.
fn sees_all(caller: &Caller) -> bool {
    caller.has_any_role(DOCUMENT_ROLES)
}

impl OpportunitiesApi {
    /// What each line of `order` still has to invoice: its quantity less what lines on
    /// invoices in `statuses` (but `except`) took from it.
    async fn open_quantities(
        &self,
        conn: &mut PgConnection,
        order: &Order,
        statuses: &[&str],
        except: Option<Uuid>,
    ) -> Result<HashMap<Uuid, i64>> {
        let ids: Vec<Uuid> = order.doc.lines.iter().map(|l| l.id).collect();
        let taken = store::documents::invoiced_quantities(conn, &ids, statuses, except).await?;
        Ok(order
            .doc
            .lines
            .iter()
            .map(|l| {
                (
                    l.id,
                    uninvoiced(
                        l.values.quantity_milli,
                        taken.get(&l.id).copied().unwrap_or(0),
                    ),
                )
            })
            .collect())
    }

    /// Checks that `lines` (of an invoice on `order`) each name a line of the order and stay
    /// within what is left to invoice of it (`open`).
    fn check_order_lines(lines: &[Line], open: &HashMap<Uuid, i64>, field: &str) -> Result<()> {
        let mut f = Fields::new();
        let mut asked: HashMap<Uuid, i64> = HashMap::new();
        for (i, line) in lines.iter().enumerate() {
            let Some(source) = line.source_line_id else {
                f.add(
                    format!("{field}[{i}].source_line_id"),
                    "is required: name the order line this line invoices",
                );
                continue;
            };
            let Some(left) = open.get(&source) else {
                f.add(
                    format!("{field}[{i}].source_line_id"),
                    "is not a line of the order",
                );
                continue;
            };
            let total = asked.entry(source).or_default();
            *total += line.values.quantity_milli;
            if *total > *left {
                f.add(
                    format!("{field}[{i}].quantity_milli"),
                    format!("is more than the order line has left to invoice ({left} thousandths)"),
                );
            }
        }
        Ok(f.finish()?)
    }

    async fn create_invoice(
        &self,
        caller: &Caller,
        request: pb::CreateInvoiceRequest,
    ) -> Result<Invoice> {
        let mut f = Fields::new();
        let request_id = f.text("request_id", &request.request_id, 100, false);
        let Some(given) = request.invoice else {
            f.add("invoice", "is required");
            return Err(f.finish().expect_err("refused").into());
        };
        let header = parse_header(&mut f, "invoice", &header_fields(&given));
        let order_id = f.optional_id("invoice.order_id", &given.order_id);
        let contract_id = f.optional_id("invoice.contract_id", &given.contract_id);
        let month = f.date("invoice.billing_month", given.billing_month.as_ref());
        let invoice_date = f.date("invoice.invoice_date", given.invoice_date.as_ref());
        let due_date = f.date("invoice.due_date", given.due_date.as_ref());
        if !given.task_id.is_empty() {
            f.add(
                "invoice.task_id",
                "task invoices are made by task billing (IssueTaskInvoice), not by hand",
            );
        }
        if let (Some(Some(_)), Some(Some(_))) = (order_id, contract_id) {
            f.add(
                "invoice.contract_id",
                "give one source: order_id or contract_id",
            );
        }
        if let Some(Some(_)) = contract_id {
            match month {
                Some(Some(m)) if m.format("%d").to_string() != "01" => f.add(
                    "invoice.billing_month",
                    "must be the first day of the month",
                ),
                Some(None) => f.add("invoice.billing_month", "is required with contract_id"),
                _ => {}
            }
        }
        if let (Some(h), Some(None), Some(None)) = (&header, order_id, contract_id)
            && h.partner_id.is_none()
        {
            f.add(
                "invoice.partner_id",
                "is required (or give order_id or contract_id)",
            );
        }
        if let (Some(Some(from)), Some(Some(due))) = (invoice_date, due_date)
            && due < from
        {
            f.add("invoice.due_date", "must not be before invoice_date");
        }
        f.finish()?;
        let header = header.expect("checked");
        let now = self.clock.now();
        let mut conn = self.pool.acquire().await?;
        let mut invoice = match (order_id.expect("checked"), contract_id.expect("checked")) {
            (Some(order_id), _) => {
                let order = store::orders::get(&mut conn, order_id, false)
                    .await?
                    .ok_or_else(|| {
                        OpportunitiesError::invalid("invoice.order_id", "no such order")
                    })?;
                order.status.check_invoice()?;
                let open = self
                    .open_quantities(&mut conn, &order, &["draft", "issued"], None)
                    .await?;
                let requests = if header.lines.is_empty() {
                    order
                        .doc
                        .lines
                        .iter()
                        .filter(|l| open[&l.id] > 0)
                        .map(|l| LineRequest::copy_of(l, &order.doc.currency, open[&l.id]))
                        .collect()
                } else {
                    header.lines
                };
                if requests.is_empty() {
                    return Err(OpportunitiesError::precondition(
                        "every line of the order is invoiced (or on a draft invoice)",
                    ));
                }
                let lines = self
                    .resolve_lines(
                        &mut conn,
                        "invoice.lines",
                        requests,
                        &order.doc.currency,
                        &[],
                    )
                    .await?;
                Self::check_order_lines(&lines, &open, "invoice.lines")?;
                let mut doc = new_header(
                    order.doc.partner_id,
                    order.doc.currency.clone(),
                    &caller.subject,
                    now,
                );
                doc.opportunity_id = order.doc.opportunity_id;
                doc.campaign_id = order.doc.campaign_id;
                doc.lines = lines;
                blank_invoice(doc, InvoiceSource::Order, Some(order.doc.id))
            }
            (None, Some(contract_id)) => {
                let contract = store::contracts::get(&mut conn, contract_id, false)
                    .await?
                    .ok_or_else(|| {
                        OpportunitiesError::invalid("invoice.contract_id", "no such contract")
                    })?;
                let month = month.flatten().expect("checked");
                self.subscription_invoice(&contract, month, &caller.subject)?
            }
            (None, None) => {
                let partner_id = header.partner_id.expect("checked");
                self.partners
                    .usable_on(&mut conn, partner_id, "invoice.partner_id")
                    .await?;
                let lines = self
                    .resolve_lines(
                        &mut conn,
                        "invoice.lines",
                        header.lines,
                        &header.currency,
                        &[],
                    )
                    .await?;
                let mut doc = new_header(partner_id, header.currency, &caller.subject, now);
                doc.lines = lines;
                blank_invoice(doc, InvoiceSource::Manual, None)
            }
        };
        drop(conn);
        invoice.doc.series_id = header.series_id;
        invoice.doc.notes = header.notes;
        invoice.doc.attachments = header.attachments;
        if let Some(day) = invoice_date.flatten() {
            invoice.invoice_date = Some(day);
        }
        invoice.due_date = due_date.flatten();
        let customer = if request.issue {
            Some(self.customer(invoice.doc.partner_id).await?)
        } else {
            None
        };
        let new_files = self.new_uploads(caller, "invoice.attachments", &given.attachments, &[])?;
        let mut tx = self.pool.begin().await?;
        let request_id = request_id.expect("checked");
        if !request_id.is_empty()
            && let Some(existing) = store::claim_request(
                &mut tx,
                "invoice",
                &caller.request_scope(),
                &request_id,
                invoice.doc.id,
                now,
            )
            .await?
        {
            return store::invoices::get(&mut tx, existing, false)
                .await?
                .ok_or_else(|| OpportunitiesError::not_found("invoice", existing));
        }
        if !store::invoices::insert(&mut tx, &invoice).await? {
            return Err(OpportunitiesError::AlreadyExists(
                "the contract already has an invoice for that month".into(),
            ));
        }
        self.files_attached(
            &mut tx,
            owner_ref(DocumentKind::Invoice, invoice.doc.id),
            new_files,
            &caller.subject,
        )
        .await?;
        let invoice = match customer {
            Some(customer) => {
                self.issue_invoice_in(&mut tx, &invoice, customer, &caller.subject)
                    .await?
            }
            None => invoice,
        };
        self.events.commit(tx).await?;
        Ok(invoice)
    }

    /// The draft invoice of a signed subscription `contract` for the month starting on
    /// `month`: its lines, dated on its billing day.
    fn subscription_invoice(
        &self,
        contract: &Contract,
        month: NaiveDate,
        who: &str,
    ) -> Result<Invoice> {
        if contract.kind != ContractKind::Subscription {
            return Err(OpportunitiesError::precondition(
                "only a subscription contract is invoiced per month",
            ));
        }
        if !matches!(
            contract.status,
            ContractStatus::Signed | ContractStatus::Terminated
        ) {
            return Err(OpportunitiesError::precondition(format!(
                "the contract is {}: only a signed contract is invoiced",
                contract.status.as_db()
            )));
        }
        let start = contract.start_date.expect("a signed contract has a start");
        if !active_in_month(
            start,
            last_active_day(contract.end_date, contract.termination_date),
            month,
        ) {
            return Err(OpportunitiesError::precondition(format!(
                "the contract is not active in {}",
                month.format("%Y-%m")
            )));
        }
        let mut doc = new_header(
            contract.doc.partner_id,
            contract.doc.currency.clone(),
            who,
            self.clock.now(),
        );
        doc.opportunity_id = contract.doc.opportunity_id;
        doc.campaign_id = contract.doc.campaign_id;
        doc.lines = contract
            .doc
            .lines
            .iter()
            .map(|l| Line {
                id: Uuid::now_v7(),
                source_line_id: Some(l.id),
                ..l.clone()
            })
            .collect();
        let mut invoice = blank_invoice(doc, InvoiceSource::Subscription, None);
        invoice.contract_id = Some(contract.doc.id);
        invoice.billing_month = Some(month);
        invoice.invoice_date = Some(subscription_invoice_date(month, contract.billing_day));
        Ok(invoice)
    }

    /// Issues `invoice` (a draft, locked or new in `tx`): checks an order invoice against what
    /// its order still has to invoice, numbers it, freezes the customer, dates it, publishes
    /// `InvoiceIssued`, marks a fully invoiced order INVOICED and wins the linked opportunity.
    pub(crate) async fn issue_invoice_in(
        &self,
        tx: &mut PgConnection,
        invoice: &Invoice,
        customer: PartnerCard,
        who: &str,
    ) -> Result<Invoice> {
        invoice.status.check_issue()?;
        check_has_lines(invoice.doc.lines.len())?;
        let now = self.clock.now();
        let today = self.day_of(now);
        let order = match invoice.order_id {
            Some(order_id) => {
                let order = store::orders::get(tx, order_id, true)
                    .await?
                    .ok_or_else(|| OpportunitiesError::not_found("order", order_id))?;
                order.status.check_invoice()?;
                let open = self
                    .open_quantities(tx, &order, &["issued"], Some(invoice.doc.id))
                    .await?;
                Self::check_order_lines(&invoice.doc.lines, &open, "lines").map_err(|_| {
                    OpportunitiesError::precondition(
                        "the invoice asks for more than its order has left to invoice",
                    )
                })?;
                Some(order)
            }
            None => None,
        };
        let (series_id, number) = self
            .take_number(tx, DocKind::Invoice, invoice.doc.series_id, today)
            .await?;
        let mut issued = invoice.clone();
        issued.doc.touch(who, now);
        issued.doc.series_id = Some(series_id);
        issued.doc.number = Some(number.clone());
        issued.doc.customer = Some(customer);
        issued.status = InvoiceStatus::Issued;
        issued.issue_time = Some(now);
        let invoice_date = *issued.invoice_date.get_or_insert(today);
        if issued.due_date.is_none() {
            issued.due_date =
                invoice_date.checked_add_days(Days::new(u64::from(self.company.payment_term_days)));
        }
        if !store::invoices::update(tx, &issued, invoice.doc.version, false).await? {
            return Err(OpportunitiesError::StaleEtag("invoice"));
        }
        if let Some(order) = &order {
            self.mark_order_invoiced(tx, order, who).await?;
        }
        self.events
            .publish(
                tx,
                issued.doc.partner_id,
                who,
                &ev::InvoiceIssued {
                    invoice: Some(to_proto(&issued)),
                    order_adds_to_campaign_revenues: order
                        .as_ref()
                        .is_some_and(|o| o.add_to_campaign_revenues),
                },
                now,
            )
            .await?;
        if let Some(opportunity_id) = issued.doc.opportunity_id {
            self.win_by_document(
                tx,
                opportunity_id,
                Cause {
                    kind: "invoice",
                    id: issued.doc.id,
                    number,
                },
                now,
            )
            .await?;
        }
        Ok(issued)
    }

    /// Sets the order's status from its issued invoices: INVOICED when every line is, back to
    /// CONFIRMED when an invoice was cancelled.
    async fn mark_order_invoiced(
        &self,
        tx: &mut PgConnection,
        order: &Order,
        who: &str,
    ) -> Result<()> {
        let ids: Vec<Uuid> = order.doc.lines.iter().map(|l| l.id).collect();
        let taken = store::documents::invoiced_quantities(tx, &ids, &["issued"], None).await?;
        let lines: Vec<(i64, i64)> = order
            .doc
            .lines
            .iter()
            .map(|l| {
                (
                    l.values.quantity_milli,
                    taken.get(&l.id).copied().unwrap_or(0),
                )
            })
            .collect();
        let status = if fully_invoiced(&lines) {
            OrderStatus::Invoiced
        } else {
            OrderStatus::Confirmed
        };
        if status != order.status {
            let mut updated = order.clone();
            updated.doc.touch(who, self.clock.now());
            updated.status = status;
            if !store::orders::update(tx, &updated, order.doc.version, false).await? {
                return Err(OpportunitiesError::StaleEtag("order"));
            }
        }
        Ok(())
    }

    async fn begin_invoice_change(
        &self,
        id: Uuid,
        version: i64,
    ) -> Result<(sqlx::Transaction<'static, sqlx::Postgres>, Invoice)> {
        let mut tx = self.pool.begin().await?;
        let invoice = store::invoices::get(&mut tx, id, true)
            .await?
            .ok_or_else(|| OpportunitiesError::not_found("invoice", id))?;
        check_version("invoice", version, invoice.doc.version)?;
        Ok((tx, invoice))
    }

    async fn update_invoice(
        &self,
        caller: &Caller,
        request: pb::UpdateInvoiceRequest,
    ) -> Result<Invoice> {
        let mut f = Fields::new();
        let paths = f.mask(request.update_mask.as_ref(), UPDATABLE);
        let version = f.etag(&request.etag);
        let Some(given) = request.invoice else {
            f.add("invoice", "is required");
            return Err(f.finish().expect_err("refused").into());
        };
        let id = f.id("invoice.id", &given.id);
        let changes = parse_header_changes(&mut f, "invoice", &paths, &header_fields(&given));
        let has = |name: &str| paths.iter().any(|p| p == name);
        let invoice_date = f.date("invoice.invoice_date", given.invoice_date.as_ref());
        let due_date = f.date("invoice.due_date", given.due_date.as_ref());
        f.finish()?;
        let (mut tx, current) = self
            .begin_invoice_change(id.expect("checked"), version.expect("checked"))
            .await?;
        if !current.status.is_editable() && paths.iter().any(|p| p != "attachments") {
            return Err(OpportunitiesError::precondition(format!(
                "only a draft invoice changes (this one is {}); attachments excepted",
                current.status.as_db()
            )));
        }
        if matches!(
            current.source,
            InvoiceSource::Subscription | InvoiceSource::Task
        ) && (has("lines") || has("currency_code"))
        {
            return Err(OpportunitiesError::precondition(
                "the lines of a subscription or task invoice come from its source",
            ));
        }
        let new_files = if paths.iter().any(|p| p == "attachments") {
            self.new_uploads(
                caller,
                "invoice.attachments",
                &given.attachments,
                &current.doc.attachments,
            )?
        } else {
            Vec::new()
        };
        let mut updated = current.clone();
        updated.doc.touch(&caller.subject, self.clock.now());
        let lines_changed = self
            .apply_header_changes(&mut tx, "invoice", &mut updated.doc, changes)
            .await?;
        if lines_changed && let Some(order_id) = current.order_id {
            let order = store::orders::get(&mut tx, order_id, false)
                .await?
                .ok_or_else(|| OpportunitiesError::not_found("order", order_id))?;
            if updated.doc.currency != order.doc.currency {
                return Err(OpportunitiesError::invalid(
                    "invoice.currency_code",
                    "must be the order's currency",
                ));
            }
            let open = self
                .open_quantities(&mut tx, &order, &["draft", "issued"], Some(current.doc.id))
                .await?;
            Self::check_order_lines(&updated.doc.lines, &open, "invoice.lines")?;
        }
        if has("invoice_date") {
            updated.invoice_date = invoice_date.flatten();
        }
        if has("due_date") {
            updated.due_date = due_date.flatten();
        }
        if let (Some(from), Some(due)) = (updated.invoice_date, updated.due_date)
            && due < from
        {
            return Err(OpportunitiesError::invalid(
                "invoice.due_date",
                "must not be before invoice_date",
            ));
        }
        if !store::invoices::update(&mut tx, &updated, current.doc.version, lines_changed).await? {
            return Err(OpportunitiesError::StaleEtag("invoice"));
        }
        self.files_attached(
            &mut tx,
            owner_ref(DocumentKind::Invoice, updated.doc.id),
            new_files,
            &caller.subject,
        )
        .await?;
        self.events.commit(tx).await?;
        Ok(updated)
    }

    async fn issue_invoice(
        &self,
        caller: &Caller,
        request: pb::IssueInvoiceRequest,
    ) -> Result<Invoice> {
        let mut f = Fields::new();
        let id = f.id("id", &request.id);
        let version = f.etag(&request.etag);
        f.finish()?;
        let id = id.expect("checked");
        let customer = self.customer_of(DocKind::Invoice, id).await?;
        let (mut tx, current) = self
            .begin_invoice_change(id, version.expect("checked"))
            .await?;
        let issued = self
            .issue_invoice_in(&mut tx, &current, customer, &caller.subject)
            .await?;
        self.events.commit(tx).await?;
        Ok(issued)
    }

    /// Cancels `current` (locked in `tx`) with `reason`; an issued invoice publishes
    /// `InvoiceCancelled` and gives its quantities back to its order.
    pub(crate) async fn cancel_invoice_in(
        &self,
        tx: &mut PgConnection,
        current: &Invoice,
        reason: String,
        who: &str,
    ) -> Result<Invoice> {
        current.status.check_cancel(current.paid > 0)?;
        if current.status == InvoiceStatus::Issued && reason.is_empty() {
            return Err(OpportunitiesError::invalid(
                "reason",
                "is required to cancel an issued invoice",
            ));
        }
        let now = self.clock.now();
        let mut cancelled = current.clone();
        cancelled.doc.touch(who, now);
        cancelled.status = InvoiceStatus::Cancelled;
        cancelled.status_note = reason;
        if !store::invoices::update(tx, &cancelled, current.doc.version, false).await? {
            return Err(OpportunitiesError::StaleEtag("invoice"));
        }
        if current.status == InvoiceStatus::Issued {
            let mut adds_to_revenues = false;
            if let Some(order_id) = current.order_id
                && let Some(order) = store::orders::get(tx, order_id, true).await?
            {
                adds_to_revenues = order.add_to_campaign_revenues;
                if order.status == OrderStatus::Invoiced {
                    self.mark_order_invoiced(tx, &order, who).await?;
                }
            }
            self.events
                .publish(
                    tx,
                    cancelled.doc.partner_id,
                    who,
                    &ev::InvoiceCancelled {
                        invoice: Some(to_proto(&cancelled)),
                        order_adds_to_campaign_revenues: adds_to_revenues,
                    },
                    now,
                )
                .await?;
        }
        Ok(cancelled)
    }

    async fn run_subscription_billing(
        &self,
        caller: &Caller,
        request: pb::RunSubscriptionBillingRequest,
    ) -> Result<pb::RunSubscriptionBillingResponse> {
        let mut f = Fields::new();
        let month = f.date("billing_month", request.billing_month.as_ref());
        f.text("request_id", &request.request_id, 100, false);
        match month {
            Some(Some(m)) if m.format("%d").to_string() != "01" => {
                f.add("billing_month", "must be the first day of the month")
            }
            Some(None) => f.add("billing_month", "is required"),
            _ => {}
        }
        f.finish()?;
        let first = month.flatten().expect("checked");
        let last = month_end(first);
        let mut issued = Vec::new();
        let mut already = 0;
        let mut after = None;
        loop {
            let mut conn = self.pool.acquire().await?;
            let batch =
                store::contracts::subscriptions_in_month(&mut conn, first, last, after, 100)
                    .await?;
            drop(conn);
            let Some(last_id) = batch.last().copied() else {
                break;
            };
            after = Some(last_id);
            for contract_id in batch {
                match self
                    .bill_contract_month(contract_id, first, &caller.subject)
                    .await?
                {
                    Some(id) => issued.push(id.to_string()),
                    None => already += 1,
                }
            }
        }
        Ok(pb::RunSubscriptionBillingResponse {
            issued_invoice_ids: issued,
            already_invoiced_count: already,
        })
    }

    /// Creates and issues the invoice of `contract_id` for the month starting on `month`, in a
    /// transaction of its own; `None` when the month is invoiced already.
    async fn bill_contract_month(
        &self,
        contract_id: Uuid,
        month: NaiveDate,
        who: &str,
    ) -> Result<Option<Uuid>> {
        let mut conn = self.pool.acquire().await?;
        if store::invoices::of_contract_month(&mut conn, contract_id, month)
            .await?
            .is_some()
        {
            return Ok(None);
        }
        let contract = store::contracts::get(&mut conn, contract_id, false)
            .await?
            .ok_or_else(|| OpportunitiesError::not_found("contract", contract_id))?;
        drop(conn);
        let invoice = self.subscription_invoice(&contract, month, who)?;
        let customer = self.customer(contract.doc.partner_id).await?;
        let mut tx = self.pool.begin().await?;
        if !store::invoices::insert(&mut tx, &invoice).await? {
            // A concurrent run invoiced it first.
            return Ok(None);
        }
        let issued = self
            .issue_invoice_in(&mut tx, &invoice, customer, who)
            .await?;
        self.events.commit(tx).await?;
        Ok(Some(issued.doc.id))
    }
}

/// A draft invoice of `source` over `doc`.
fn blank_invoice(
    doc: crate::domain::documents::DocHeader,
    source: InvoiceSource,
    order_id: Option<Uuid>,
) -> Invoice {
    Invoice {
        doc,
        status: InvoiceStatus::Draft,
        source,
        order_id,
        contract_id: None,
        billing_month: None,
        task_id: None,
        task_billing_attempt: None,
        estimate_offer_id: None,
        invoice_date: None,
        due_date: None,
        issue_time: None,
        status_note: String::new(),
        paid: 0,
    }
}

/// A draft task invoice over `doc` (billing.rs).
pub(crate) fn blank_task_invoice(doc: crate::domain::documents::DocHeader) -> Invoice {
    blank_invoice(doc, InvoiceSource::Task, None)
}

#[tonic::async_trait]
impl InvoiceService for OpportunitiesApi {
    #[tracing::instrument(skip_all)]
    async fn create_invoice(
        &self,
        request: Request<pb::CreateInvoiceRequest>,
    ) -> Result<Response<pb::Invoice>, Status> {
        let caller = caller(&request, DOCUMENT_ROLES)?;
        let invoice = OpportunitiesApi::create_invoice(self, &caller, request.into_inner()).await?;
        Ok(Response::new(to_proto(&invoice)))
    }

    #[tracing::instrument(skip_all)]
    async fn get_invoice(
        &self,
        request: Request<pb::GetInvoiceRequest>,
    ) -> Result<Response<pb::Invoice>, Status> {
        let caller = caller(&request, READERS)?;
        let mut f = Fields::new();
        let id = f.id("id", &request.get_ref().id);
        f.finish()?;
        let id = id.expect("checked");
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(OpportunitiesError::from)?;
        let invoice = store::invoices::get(&mut conn, id, false)
            .await
            .map_err(OpportunitiesError::from)?
            .filter(|i| sees_all(&caller) || i.task_id.is_some())
            .ok_or_else(|| OpportunitiesError::not_found("invoice", id))?;
        Ok(Response::new(to_proto(&invoice)))
    }

    #[tracing::instrument(skip_all)]
    async fn update_invoice(
        &self,
        request: Request<pb::UpdateInvoiceRequest>,
    ) -> Result<Response<pb::Invoice>, Status> {
        let caller = caller(&request, DOCUMENT_ROLES)?;
        let invoice = OpportunitiesApi::update_invoice(self, &caller, request.into_inner()).await?;
        Ok(Response::new(to_proto(&invoice)))
    }

    #[tracing::instrument(skip_all)]
    async fn list_invoices(
        &self,
        request: Request<pb::ListInvoicesRequest>,
    ) -> Result<Response<pb::ListInvoicesResponse>, Status> {
        let caller = caller(&request, READERS)?;
        let request = request.into_inner();
        let mut f = Fields::new();
        let partner_id = f.optional_id("partner_id", &request.partner_id);
        let order_id = f.optional_id("order_id", &request.order_id);
        let contract_id = f.optional_id("contract_id", &request.contract_id);
        let task_id = f.optional_id("task_id", &request.task_id);
        let campaign_id = f.optional_id("campaign_id", &request.campaign_id);
        let (from, to) = f.period("invoice_period", request.invoice_period.as_ref());
        let status = match pb::InvoiceStatus::try_from(request.status) {
            Ok(pb::InvoiceStatus::Unspecified) => None,
            Ok(pb::InvoiceStatus::Draft) => Some(InvoiceStatus::Draft.as_db()),
            Ok(pb::InvoiceStatus::Issued) => Some(InvoiceStatus::Issued.as_db()),
            Ok(pb::InvoiceStatus::Cancelled) => Some(InvoiceStatus::Cancelled.as_db()),
            Err(_) => {
                f.add(
                    "status",
                    format!("{} is not an invoice status", request.status),
                );
                None
            }
        };
        let source = match pb::InvoiceSource::try_from(request.source) {
            Ok(pb::InvoiceSource::Unspecified) => None,
            Ok(pb::InvoiceSource::Manual) => Some(InvoiceSource::Manual.as_db()),
            Ok(pb::InvoiceSource::Order) => Some(InvoiceSource::Order.as_db()),
            Ok(pb::InvoiceSource::Subscription) => Some(InvoiceSource::Subscription.as_db()),
            Ok(pb::InvoiceSource::Task) => Some(InvoiceSource::Task.as_db()),
            Err(_) => {
                f.add(
                    "source",
                    format!("{} is not an invoice source", request.source),
                );
                None
            }
        };
        let payment_state = match pb::InvoicePaymentStatus::try_from(request.payment_status) {
            Ok(pb::InvoicePaymentStatus::Unspecified) => None,
            Ok(pb::InvoicePaymentStatus::Unpaid) => Some("unpaid"),
            Ok(pb::InvoicePaymentStatus::PartiallyPaid) => Some("partially_paid"),
            Ok(pb::InvoicePaymentStatus::Paid) => Some("paid"),
            Err(_) => {
                f.add(
                    "payment_status",
                    format!("{} is not a payment status", request.payment_status),
                );
                None
            }
        };
        f.finish()?;
        let filter = Filter {
            partner_id: partner_id.flatten(),
            status,
            source,
            order_id: order_id.flatten(),
            contract_id: contract_id.flatten(),
            task_id: task_id.flatten(),
            campaign_id: campaign_id.flatten(),
            from,
            to,
            payment_state,
            task_invoices_only: !sees_all(&caller),
        };
        let page: Page<NewestFirstCursor> =
            Page::of(request.page_size, &request.page_token, &filter)?;
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(OpportunitiesError::from)?;
        let mut rows = store::invoices::list(&mut conn, &filter, page.after.as_ref(), page.limit())
            .await
            .map_err(OpportunitiesError::from)?;
        let next_page_token = page.finish(&mut rows, |i| (i.doc.create_time, i.doc.id));
        Ok(Response::new(pb::ListInvoicesResponse {
            invoices: rows.iter().map(to_proto).collect(),
            next_page_token,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn issue_invoice(
        &self,
        request: Request<pb::IssueInvoiceRequest>,
    ) -> Result<Response<pb::Invoice>, Status> {
        let caller = caller(&request, DOCUMENT_ROLES)?;
        let invoice = OpportunitiesApi::issue_invoice(self, &caller, request.into_inner()).await?;
        Ok(Response::new(to_proto(&invoice)))
    }

    #[tracing::instrument(skip_all)]
    async fn cancel_invoice(
        &self,
        request: Request<pb::CancelInvoiceRequest>,
    ) -> Result<Response<pb::Invoice>, Status> {
        let caller = caller(&request, DOCUMENT_ROLES)?;
        let request = request.into_inner();
        let mut f = Fields::new();
        let id = f.id("id", &request.id);
        let version = f.etag(&request.etag);
        let reason = f.text("reason", &request.reason, 2000, false);
        f.finish()?;
        let (mut tx, current) = self
            .begin_invoice_change(id.expect("checked"), version.expect("checked"))
            .await?;
        let cancelled = self
            .cancel_invoice_in(&mut tx, &current, reason.expect("checked"), &caller.subject)
            .await?;
        self.events
            .commit(tx)
            .await
            .map_err(OpportunitiesError::from)?;
        Ok(Response::new(to_proto(&cancelled)))
    }

    #[tracing::instrument(skip_all)]
    async fn run_subscription_billing(
        &self,
        request: Request<pb::RunSubscriptionBillingRequest>,
    ) -> Result<Response<pb::RunSubscriptionBillingResponse>, Status> {
        let caller = caller(&request, MANAGER_ROLES)?;
        Ok(Response::new(
            OpportunitiesApi::run_subscription_billing(self, &caller, request.into_inner()).await?,
        ))
    }
}
