//! The gRPC handlers of every service of `crm.opportunities.v1`: request → domain values
//! (validation), authorisation, calls to the store in one transaction with the outbox,
//! domain → response. No SQL here. One type, [`OpportunitiesApi`], implements every service
//! trait, one file per service; what they share is in this module.

mod articles;
mod attachments;
mod billing;
mod contracts;
pub(crate) mod convert;
mod documents;
mod invoices;
mod lost_reasons;
mod number_series;
mod offers;
mod opportunities;
mod orders;
mod payments;
mod render;

use std::{ops::Deref, sync::Arc};

use chrono::{NaiveDate, Utc};
use crm_platform::{auth::Caller, blob::BlobStore, clock::Clock};
use crm_proto::common;
use sqlx::PgPool;
use tonic::{Request, Status};

use crate::{
    config::CompanySettings,
    domain::{
        calendar,
        money::{Currency, Money},
    },
    error::{OpportunitiesError, Result},
    events::Events,
    partners::Partners,
};

/// Roles that read opportunities and the pipeline.
const SALES_ROLES: &[&str] = &["sales", "marketing", "manager"];
/// Roles that read and change the sales documents.
const DOCUMENT_ROLES: &[&str] = &["sales", "manager"];
/// Roles that manage: reassign owners, reopen won opportunities, read loss reports.
const MANAGER_ROLES: &[&str] = &["manager"];
/// Only admins change settings (stage configuration, number series).
const ADMIN_ONLY: &[&str] = &[];
/// Every role may read the article catalogue.
const EVERY_ROLE: &[&str] = &["sales", "marketing", "manager", "service"];

/// The handlers of every opportunities service and what they need. Cheap to clone.
#[derive(Clone)]
pub struct OpportunitiesApi(Arc<Inner>);

/// What the handlers share.
pub struct Inner {
    /// The service's database.
    pub pool: PgPool,
    /// Its events.
    pub events: Events,
    /// Its time source.
    pub clock: Clock,
    /// The company issuing the documents, and its calendar.
    pub company: CompanySettings,
    /// The partners it knows.
    pub partners: Partners,
    /// Where rendered documents go, and where attachments are read from.
    pub blobs: BlobStore,
    /// Checks that new attachments were uploaded by their caller.
    pub uploads: crm_platform::files::UploadTokens,
}

impl Deref for OpportunitiesApi {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl OpportunitiesApi {
    /// Handlers over `inner`.
    pub fn new(inner: Inner) -> Self {
        Self(Arc::new(inner))
    }

    /// Today in the company's calendar.
    pub(crate) fn today(&self) -> NaiveDate {
        calendar::day_of(self.clock.now(), self.company.time_zone)
    }

    /// The company day of an instant.
    pub(crate) fn day_of(&self, at: chrono::DateTime<Utc>) -> NaiveDate {
        calendar::day_of(at, self.company.time_zone)
    }
}

/// The caller of `request`, refused unless it has one of `roles` (admin and services pass).
fn caller<T>(request: &Request<T>, roles: &[&str]) -> Result<Caller, Status> {
    let caller = Caller::of(request)?.clone();
    caller.require_any_role(roles)?;
    Ok(caller)
}

pub(crate) use crm_platform::input::Fields;

/// What opportunities reads besides the platform's fields: currencies and amounts.
pub(crate) trait MoneyFields {
    /// A currency code; empty means RON.
    fn currency(&mut self, field: &str, raw: &str) -> Option<Currency>;
    /// An optional amount, not negative, at most `max` minor units.
    fn money(
        &mut self,
        field: &str,
        raw: Option<&common::Money>,
        max: i64,
    ) -> Option<Option<Money>>;
}

impl MoneyFields for Fields {
    fn currency(&mut self, field: &str, raw: &str) -> Option<Currency> {
        self.0.check(field, Currency::parse(raw))
    }

    fn money(
        &mut self,
        field: &str,
        raw: Option<&common::Money>,
        max: i64,
    ) -> Option<Option<Money>> {
        let Some(m) = raw else { return Some(None) };
        let currency = self.currency(&format!("{field}.currency_code"), &m.currency_code)?;
        if m.units < 0 {
            self.0.add(format!("{field}.units"), "must not be negative");
            return None;
        }
        if m.units > max {
            self.0
                .add(format!("{field}.units"), format!("must be at most {max}"));
            return None;
        }
        Some(Some(Money::new(m.units, currency)))
    }
}

/// Checks the version behind an etag: ABORTED when someone changed the record since.
fn check_version(kind: &'static str, expected: i64, actual: i64) -> Result<()> {
    if expected == actual {
        Ok(())
    } else {
        Err(OpportunitiesError::StaleEtag(kind))
    }
}

/// Escapes `%`, `_` and `\` so user text matches literally in LIKE.
fn like_literal(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

use crm_platform::paging::Page;
