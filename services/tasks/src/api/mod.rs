//! The gRPC handlers of every service of `crm.tasks.v1`: request → domain values (validation),
//! authorisation, calls to the store in one transaction with the outbox, domain → response. No
//! SQL here. One type, [`TasksApi`], implements every service trait, one file per service;
//! what they share is in this module.

mod attachments;
mod broadcasts;
mod catalogue;
pub(crate) mod convert;
mod replies;
mod settings;
mod staff;
mod tasks;
mod tracking;
mod watch;

use std::{ops::Deref, sync::Arc};

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use crm_platform::{auth::Caller, blob::BlobStore, calendar, clock::Clock, files::UploadTokens};
use sqlx::{PgConnection, PgPool};
use tonic::{Request, Status};
use uuid::Uuid;

pub(crate) use crm_platform::{input::Fields, paging::Page};
pub(crate) use tasks::{MAX_DESCRIPTION, MAX_TITLE, truncate};

use crate::{
    config::Settings,
    error::{Result, TasksError},
    events::Events,
    opportunities::Opportunities,
    store::{self, tasks::Visibility},
};

/// Every role of the CRM: all may read staff, the catalogue and settings, and work on tasks.
const EVERY_ROLE: &[&str] = &["sales", "marketing", "manager", "service"];
/// Roles that see and change every task, and manage staff.
const MANAGER_ROLES: &[&str] = &["manager"];
/// Roles that manage the catalogue of post-sale services.
const CATALOGUE_ROLES: &[&str] = &["service", "manager"];
/// Only admins change the company's settings.
const ADMIN_ONLY: &[&str] = &[];

/// The handlers of every tasks service and what they need. Cheap to clone.
#[derive(Clone)]
pub struct TasksApi(Arc<Inner>);

/// What the handlers share.
pub struct Inner {
    /// The service's database.
    pub pool: PgPool,
    /// Its events and commands.
    pub events: Events,
    /// Its time source.
    pub clock: Clock,
    /// The company's time zone.
    pub zone: Tz,
    /// Opportunities, for coverage, balances, documents and drafted contracts.
    pub opportunities: Opportunities,
    /// Attachments' bytes.
    pub blobs: BlobStore,
    /// Checks that new attachments were uploaded by their caller.
    pub uploads: UploadTokens,
    /// The live feed of new tasks.
    pub feed: crm_platform::events::fanout::FanOut,
    /// The settings it runs with.
    pub settings: Settings,
}

impl Deref for TasksApi {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl TasksApi {
    /// Handlers over `inner`.
    pub fn new(inner: Inner) -> Self {
        Self(Arc::new(inner))
    }

    /// Today in the company's calendar.
    pub(crate) fn today(&self) -> NaiveDate {
        calendar::day_of(self.clock.now(), self.zone)
    }

    /// The company day of an instant.
    pub(crate) fn day_of(&self, at: DateTime<Utc>) -> NaiveDate {
        calendar::day_of(at, self.zone)
    }

    /// Which tasks `caller` sees: all for managers and admins (and services), else those they
    /// created or their staff record is responsible for (X5).
    pub(crate) async fn visibility(
        &self,
        conn: &mut PgConnection,
        caller: &Caller,
    ) -> Result<Visibility> {
        if caller.has_any_role(MANAGER_ROLES) {
            return Ok(Visibility::All);
        }
        Ok(Visibility::Own {
            user: caller.subject.clone(),
            staff_id: store::staff::id_of_user(conn, &caller.subject).await?,
        })
    }

    /// The task `id` if `caller` may see it; NOT_FOUND otherwise (X5: another user's task
    /// looks like no task).
    pub(crate) async fn visible_task(
        &self,
        conn: &mut PgConnection,
        caller: &Caller,
        id: Uuid,
    ) -> Result<crate::domain::task::Task> {
        let visibility = self.visibility(conn, caller).await?;
        store::tasks::get(conn, id)
            .await?
            .filter(|t| visibility.sees(t))
            .ok_or_else(|| TasksError::not_found("task", id))
    }
}

/// The caller of `request`, refused unless it has one of `roles` (admin and services pass).
fn caller<T>(request: &Request<T>, roles: &[&str]) -> Result<Caller, Status> {
    let caller = Caller::of(request)?.clone();
    caller.require_any_role(roles)?;
    Ok(caller)
}

/// Checks the version behind an etag: ABORTED when someone changed the record since.
fn check_version(kind: &'static str, expected: i64, actual: i64) -> Result<()> {
    if expected == actual {
        Ok(())
    } else {
        Err(TasksError::StaleEtag(kind))
    }
}

/// A lower-case LIKE pattern matching `text` anywhere, with `%`, `_` and `\` taken literally.
fn contains_pattern(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len() + 2);
    escaped.push('%');
    for c in text.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped.push('%');
    escaped
}

/// Reads an optional non-empty filter text as a LIKE pattern.
fn text_filter(f: &mut Fields, field: &str, raw: &str) -> Option<String> {
    f.text(field, raw, 200, false)
        .filter(|t| !t.is_empty())
        .map(|t| contains_pattern(&t))
}

/// The instants [from, to) of the company days of a date range.
fn day_range(
    start: Option<NaiveDate>,
    end: Option<NaiveDate>,
    zone: Tz,
) -> (Option<DateTime<Utc>>, Option<DateTime<Utc>>) {
    (
        start.map(|d| calendar::start_of_day(d, zone)),
        end.and_then(|d| d.succ_opt())
            .map(|d| calendar::start_of_day(d, zone)),
    )
}

/// An optional time range of a request: both ends optional, the end after the start.
fn time_range(
    f: &mut Fields,
    field: &str,
    raw: Option<&crm_proto::common::TimeRange>,
) -> (Option<DateTime<Utc>>, Option<DateTime<Utc>>) {
    let Some(range) = raw else {
        return (None, None);
    };
    let start =
        f.0.check(
            format!("{field}.start_time"),
            crm_platform::values::instant(range.start_time.as_ref()),
        )
        .flatten();
    let end =
        f.0.check(
            format!("{field}.end_time"),
            crm_platform::values::instant(range.end_time.as_ref()),
        )
        .flatten();
    if let (Some(s), Some(e)) = (start, end)
        && e <= s
    {
        f.add(format!("{field}.end_time"), "must be after start_time");
    }
    (start, end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_match_literally() {
        assert_eq!(contains_pattern("50%_a\\B"), "%50\\%\\_a\\\\b%");
    }
}
