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

use std::{hash::Hash, ops::Deref, sync::Arc};

use chrono::{NaiveDate, Utc};
use crm_platform::{
    auth::Caller, blob::BlobStore, clock::Clock, error::FieldViolations, paging, values,
};
use crm_proto::common;
use serde::{Serialize, de::DeserializeOwned};
use sqlx::PgPool;
use tonic::{Request, Status};
use uuid::Uuid;

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

/// Collects the fields of one request: each parser records what is wrong under the field's
/// name and returns `None`, so a request reports every bad field at once.
#[derive(Default)]
pub(crate) struct Fields(pub FieldViolations);

impl Fields {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// A required id.
    pub(crate) fn id(&mut self, field: &str, raw: &str) -> Option<Uuid> {
        if raw.trim().is_empty() {
            self.0.add(field, "is required");
            return None;
        }
        self.0.check(field, values::uuid(raw))
    }

    /// An optional id; `Some(None)` when empty.
    pub(crate) fn optional_id(&mut self, field: &str, raw: &str) -> Option<Option<Uuid>> {
        self.0.check(field, values::optional_uuid(raw))
    }

    /// Trimmed text of at most `max` characters.
    pub(crate) fn text(
        &mut self,
        field: &str,
        raw: &str,
        max: usize,
        required: bool,
    ) -> Option<String> {
        self.0.check(field, values::text(raw, max, required))
    }

    /// An optional calendar date.
    pub(crate) fn date(
        &mut self,
        field: &str,
        raw: Option<&common::Date>,
    ) -> Option<Option<NaiveDate>> {
        self.0.check(field, values::date(raw))
    }

    /// A currency code; empty means RON.
    pub(crate) fn currency(&mut self, field: &str, raw: &str) -> Option<Currency> {
        self.0.check(field, Currency::parse(raw))
    }

    /// An optional amount, not negative unless `allow_negative`, at most `max` minor units.
    pub(crate) fn money(
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

    /// The etag of a change: required.
    pub(crate) fn etag(&mut self, raw: &str) -> Option<i64> {
        if raw.is_empty() {
            self.0
                .add("etag", "is required: pass the etag read with the record");
            return None;
        }
        // An etag that is not ours can never match: stale, not malformed.
        Some(values::version_of(raw).unwrap_or(-1))
    }

    /// The paths of an update mask, each checked against `allowed`.
    pub(crate) fn mask(
        &mut self,
        mask: Option<&prost_types::FieldMask>,
        allowed: &[&str],
    ) -> Vec<String> {
        let paths = mask.map(|m| m.paths.clone()).unwrap_or_default();
        if paths.is_empty() {
            self.0
                .add("update_mask", "is required: name the fields to change");
        }
        for path in &paths {
            if !allowed.contains(&path.as_str()) {
                self.0.add(
                    "update_mask",
                    format!(
                        "{path:?} cannot be changed (changeable: {})",
                        allowed.join(", ")
                    ),
                );
            }
        }
        paths
    }

    /// A date range; `None` ends mean unbounded.
    pub(crate) fn period(
        &mut self,
        field: &str,
        raw: Option<&common::DateRange>,
    ) -> (Option<NaiveDate>, Option<NaiveDate>) {
        let Some(range) = raw else {
            return (None, None);
        };
        let start = self
            .date(&format!("{field}.start_date"), range.start_date.as_ref())
            .flatten();
        let end = self
            .date(&format!("{field}.end_date"), range.end_date.as_ref())
            .flatten();
        if let (Some(start), Some(end)) = (start, end)
            && end < start
        {
            self.0
                .add(format!("{field}.end_date"), "must not be before start_date");
        }
        (start, end)
    }

    pub(crate) fn add(&mut self, field: impl Into<String>, reason: impl Into<String>) {
        self.0.add(field, reason);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Ok(())` when nothing was wrong, else INVALID_ARGUMENT listing every field.
    pub(crate) fn finish(self) -> Result<()> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(OpportunitiesError::Invalid(self.0))
        }
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

/// A page of a list: the page size asked, and the position after which it starts, bound to the
/// filter so a token cannot be replayed with other filters.
struct Page<K> {
    size: i64,
    after: Option<K>,
    filter_hash: u64,
}

impl<K: Serialize + DeserializeOwned> Page<K> {
    fn of(page_size: i32, page_token: &str, filter: &impl Hash) -> Result<Self, Status> {
        use std::hash::{DefaultHasher, Hasher as _};
        let mut hasher = DefaultHasher::new();
        filter.hash(&mut hasher);
        let filter_hash = hasher.finish();
        Ok(Self {
            size: paging::page_size(page_size)?,
            after: paging::decode_token(page_token, filter_hash)?,
            filter_hash,
        })
    }

    /// Rows to fetch: one more than the page, to know whether another page follows.
    fn limit(&self) -> i64 {
        self.size + 1
    }

    /// Cuts `rows` to the page and returns the token of the next page (empty on the last).
    fn finish<T>(&self, rows: &mut Vec<T>, key: impl Fn(&T) -> K) -> String {
        if rows.len() as i64 > self.size {
            rows.truncate(usize::try_from(self.size).unwrap_or(usize::MAX));
            rows.last()
                .map(|last| paging::encode_token(&key(last), self.filter_hash))
                .unwrap_or_default()
        } else {
            String::new()
        }
    }
}
