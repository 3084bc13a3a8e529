//! Billing a resolved task (T9): the `IssueTaskInvoice` command becomes an issued service
//! estimate and an issued invoice, once per task and billing attempt, or `TaskInvoiceRejected`
//! with the reason. Everything that can refuse a command is checked before anything is
//! written, so a rejection leaves no half-made documents; a failure after that (the database,
//! marketing unavailable) rolls the consumer's transaction back and the command is retried.

use crm_platform::values;
use crm_proto::events as ev;
use sqlx::PgConnection;
use uuid::Uuid;

use super::{OpportunitiesApi, documents::new_header, invoices::blank_task_invoice};
use crate::{
    domain::{
        catalogue::{Article, PartnerCard},
        documents::{Offer, OfferPurpose, OfferStatus},
        lines::{Line, LineValues, MAX_QUANTITY_MILLI, MAX_UNIT_PRICE, hours_milli_from_minutes},
        money::Money,
    },
    error::{OpportunitiesError, Result},
    store::{self, renderings::BillingOutcome},
};

/// A command that passed every check: what the documents are made of.
struct Billable {
    task_id: Uuid,
    attempt: i32,
    customer: PartnerCard,
    article: Article,
    rate: Money,
    hours_milli: i64,
    day: chrono::NaiveDate,
    description: String,
}

impl OpportunitiesApi {
    /// Applies one `IssueTaskInvoice` command in the consumer's transaction `tx`.
    pub(crate) async fn bill_task(
        &self,
        tx: &mut PgConnection,
        command: &ev::IssueTaskInvoice,
        command_id: Uuid,
        envelope_actor: &str,
    ) -> Result<()> {
        let actor = [command.resolved_by.as_str(), envelope_actor]
            .into_iter()
            .find(|a| !a.is_empty())
            .unwrap_or("service:opportunities")
            .to_owned();
        let Ok(task_id) = values::uuid(&command.task_id) else {
            tracing::warn!(task = %command.task_id, "billing command without a task id");
            return Ok(());
        };
        let attempt = command.billing_attempt.max(1);
        if store::renderings::billing_done(tx, task_id, attempt).await? {
            return Ok(());
        }
        match self.check_billable(tx, task_id, attempt, command).await? {
            Ok(billable) => {
                let (offer_id, invoice_id) =
                    self.issue_task_documents(tx, &billable, &actor).await?;
                store::renderings::record_billing(
                    tx,
                    task_id,
                    attempt,
                    command_id,
                    &BillingOutcome::Invoiced {
                        offer_id,
                        invoice_id,
                    },
                    self.clock.now(),
                )
                .await?;
            }
            Err(reason) => {
                tracing::info!(%task_id, attempt, %reason, "task billing rejected");
                store::renderings::record_billing(
                    tx,
                    task_id,
                    attempt,
                    command_id,
                    &BillingOutcome::Rejected(reason.clone()),
                    self.clock.now(),
                )
                .await?;
                let partner_id = values::uuid(&command.partner_id).unwrap_or_default();
                self.events
                    .publish(
                        tx,
                        partner_id,
                        &actor,
                        &ev::TaskInvoiceRejected {
                            task_id: task_id.to_string(),
                            reason,
                            command_id: command_id.to_string(),
                            billing_attempt: attempt,
                        },
                        self.clock.now(),
                    )
                    .await?;
            }
        }
        Ok(())
    }

    /// Everything that can refuse the command: `Ok(Err(reason))` to reject it for good,
    /// `Err` for a failure worth retrying.
    async fn check_billable(
        &self,
        tx: &mut PgConnection,
        task_id: Uuid,
        attempt: i32,
        c: &ev::IssueTaskInvoice,
    ) -> Result<Result<Billable, String>> {
        let reject = |reason: &str| Ok(Err(reason.to_owned()));
        let Ok(partner_id) = values::uuid(&c.partner_id) else {
            return reject("the command names no partner");
        };
        let Ok(article_id) = values::uuid(&c.article_id) else {
            return reject("the post-sale service has no article");
        };
        if c.worked_minutes <= 0 {
            return reject("no worked time: worked_minutes must be greater than 0");
        }
        let Some(rate) = &c.hourly_rate else {
            return reject("the post-sale service has no hourly rate");
        };
        let Ok(currency) = crate::domain::money::Currency::parse(&rate.currency_code) else {
            return reject("the hourly rate's currency is not an ISO 4217 code");
        };
        if !(0..=MAX_UNIT_PRICE).contains(&rate.units) {
            return reject("the hourly rate is negative or too large");
        }
        let hours_milli = hours_milli_from_minutes(i64::from(c.worked_minutes));
        if hours_milli > MAX_QUANTITY_MILLI {
            return reject("the worked time is too long to invoice at once");
        }
        let Some(article) = store::articles::get(tx, article_id).await? else {
            return reject("the post-sale service's article does not exist");
        };
        if !article.active {
            return reject("the post-sale service's article is inactive");
        }
        let customer = match self.partners.find_on(tx, partner_id).await {
            Ok(Some(card)) => card,
            Ok(None) => return reject("the task's partner does not exist"),
            Err(OpportunitiesError::Unavailable(reason)) => {
                return Err(OpportunitiesError::Unavailable(reason));
            }
            Err(err) => return Err(err),
        };
        if customer.kind == "competitor" {
            return reject("the task's partner is a competitor");
        }
        let resolved = values::instant(c.resolve_time.as_ref()).ok().flatten();
        let day = self.day_of(resolved.unwrap_or_else(|| self.clock.now()));
        let title = c.task_title.trim();
        let description = if title.is_empty() {
            article.name.clone()
        } else {
            format!("{} — {title}", article.name)
        };
        Ok(Ok(Billable {
            task_id,
            attempt,
            customer,
            rate: Money::new(rate.units, currency),
            hours_milli,
            day,
            description: description.chars().take(500).collect(),
            article,
        }))
    }

    /// Creates and issues the estimate and the invoice of a billable task; their ids.
    async fn issue_task_documents(
        &self,
        tx: &mut PgConnection,
        b: &Billable,
        actor: &str,
    ) -> Result<(Uuid, Uuid)> {
        let now = self.clock.now();
        let values = LineValues {
            quantity_milli: b.hours_milli,
            unit_price: b.rate.units,
            vat_rate_bp: b.article.vat_rate_bp,
            discount_bp: 0,
        };
        let amounts = values.amounts().map_err(OpportunitiesError::precondition)?;
        let line = |source: Option<Uuid>| Line {
            id: Uuid::now_v7(),
            article_id: b.article.id,
            article_code: b.article.code.clone(),
            description: b.description.clone(),
            unit: "h".to_owned(),
            values,
            amounts,
            source_line_id: source,
        };
        let mut doc = new_header(b.customer.id, b.rate.currency.clone(), "", now);
        doc.updater = actor.to_owned();
        doc.lines = vec![line(None)];
        let estimate_line = doc.lines[0].id;
        let estimate = Offer {
            doc,
            status: OfferStatus::Draft,
            purpose: OfferPurpose::ServiceEstimate,
            task_id: Some(b.task_id),
            task_billing_attempt: Some(b.attempt),
            offer_date: Some(b.day),
            valid_until: None,
            contact_person_id: None,
            issue_time: None,
            status_note: String::new(),
        };
        store::offers::insert(tx, &estimate).await?;
        let estimate = self
            .issue_offer_in(tx, &estimate, b.customer.clone(), actor)
            .await?;

        let mut doc = new_header(b.customer.id, b.rate.currency.clone(), "", now);
        doc.updater = actor.to_owned();
        doc.lines = vec![line(Some(estimate_line))];
        let mut invoice = blank_task_invoice(doc);
        invoice.task_id = Some(b.task_id);
        invoice.task_billing_attempt = Some(b.attempt);
        invoice.estimate_offer_id = Some(estimate.doc.id);
        invoice.invoice_date = Some(b.day);
        if !store::invoices::insert(tx, &invoice).await? {
            return Err(OpportunitiesError::AlreadyExists(format!(
                "task {} already has an invoice for billing attempt {}",
                b.task_id, b.attempt
            )));
        }
        let invoice = self
            .issue_invoice_in(tx, &invoice, b.customer.clone(), actor)
            .await?;
        Ok((estimate.doc.id, invoice.doc.id))
    }
}
