//! The tracking report (T11): per staff member and day over any period, a page of days at a
//! time. Managers see everyone; others see themselves (anyone else is NOT_FOUND, X5).

use chrono::{Days, NaiveDate};
use crm_platform::{auth::Caller, paging, values::date_to_proto};
use crm_proto::tasks as pb;
use uuid::Uuid;

use super::{Fields, TasksApi, day_range, tasks::is_manager};
use crate::{
    domain::{staff::Staff, tracking::day_figures},
    error::{Result, TasksError},
    store::{self, staff::StaffFilter},
};

/// Days per page when the request says 0.
const DEFAULT_PAGE_DAYS: u32 = 31;
/// Most days per page.
const MAX_PAGE_DAYS: u32 = 93;
/// Most staff named in one request.
const MAX_STAFF: usize = 500;

fn int(v: u32) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

impl TasksApi {
    pub(super) async fn tracking_report(
        &self,
        caller: &Caller,
        request: pb::GetTrackingReportRequest,
    ) -> Result<pb::TrackingReport> {
        let mut f = Fields::new();
        if request.period.is_none() {
            f.add("period", "is required: start_date and end_date");
        }
        let (start, end) = f.period("period", request.period.as_ref());
        if request.period.is_some() && start.is_none() {
            f.add("period.start_date", "is required");
        }
        if request.period.is_some() && end.is_none() {
            f.add("period.end_date", "is required");
        }
        let page_days = match u32::try_from(request.page_days) {
            Ok(0) => DEFAULT_PAGE_DAYS,
            Ok(n) if n <= MAX_PAGE_DAYS => n,
            _ => {
                f.add(
                    "page_days",
                    format!("must be between 0 and {MAX_PAGE_DAYS}"),
                );
                DEFAULT_PAGE_DAYS
            }
        };
        if request.staff_ids.len() > MAX_STAFF {
            f.add("staff_ids", format!("must name at most {MAX_STAFF}"));
        }
        let mut named = Vec::new();
        for (i, raw) in request.staff_ids.iter().enumerate() {
            if let Some(id) = f.id(&format!("staff_ids[{i}]"), raw)
                && !named.contains(&id)
            {
                named.push(id);
            }
        }
        f.finish()?;
        let (start, end) = (start.expect("checked"), end.expect("checked"));
        let filter = (start, end, &named, page_days);
        let page_start: NaiveDate =
            match paging::decode_token::<NaiveDate>(&request.page_token, hash(&filter))? {
                Some(day) if day >= start && day <= end => day,
                Some(_) => {
                    return Err(TasksError::invalid(
                        "page_token",
                        "is not a token returned by this report with the same request",
                    ));
                }
                None => start,
            };
        let page_end = page_start
            .checked_add_days(Days::new(u64::from(page_days - 1)))
            .map_or(end, |d| d.min(end));

        let mut conn = self.pool.acquire().await?;
        let staff: Vec<Staff> = if is_manager(caller) {
            if named.is_empty() {
                let mut all = Vec::new();
                let mut after = None;
                loop {
                    let batch =
                        store::staff::list(&mut conn, &StaffFilter::default(), after.as_ref(), 500)
                            .await?;
                    let done = batch.len() < 500;
                    after = batch.last().map(|s| (s.name.to_lowercase(), s.id));
                    all.extend(batch);
                    if done {
                        break;
                    }
                }
                all
            } else {
                let found = store::staff::get_many(&mut conn, &named).await?;
                if let Some(missing) = named.iter().find(|id| !found.iter().any(|s| s.id == **id)) {
                    return Err(TasksError::not_found("staff", missing));
                }
                found
            }
        } else {
            let own = store::staff::by_user_name(&mut conn, &caller.subject)
                .await?
                .ok_or_else(|| {
                    TasksError::precondition(format!(
                        "no staff record is linked to user {:?}",
                        caller.subject
                    ))
                })?;
            if let Some(other) = named.iter().find(|id| **id != own.id) {
                return Err(TasksError::not_found("staff", other));
            }
            vec![own]
        };
        let mut staff = staff;
        staff.sort_by_key(|s| (s.name.to_lowercase(), s.id));
        let ids: Vec<Uuid> = staff.iter().map(|s| s.id).collect();
        let (from, to) = day_range(Some(page_start), Some(page_end), self.zone);
        let tasks = store::tracking::tasks_between(
            &mut conn,
            &ids,
            from.expect("bounded"),
            to.expect("bounded"),
        )
        .await?;
        let mut rows = Vec::new();
        for s in &staff {
            let theirs: Vec<_> = tasks
                .iter()
                .filter(|t| t.staff_id == s.id)
                .cloned()
                .collect();
            for day in page_start.iter_days().take_while(|d| *d <= page_end) {
                let figures = day_figures(day, &s.schedule, &theirs, self.zone);
                rows.push(pb::TrackingRow {
                    staff_id: s.id.to_string(),
                    staff_name: s.name.clone(),
                    day: Some(date_to_proto(day)),
                    resolved_count: int(figures.resolved),
                    open_count: int(figures.open),
                    overdue_count: int(figures.overdue),
                    booked_minutes: int(figures.booked_minutes),
                    available_minutes: int(figures.available_minutes),
                });
            }
        }
        let next_page_token = match page_end.succ_opt() {
            Some(next) if page_end < end => paging::encode_token(&next, hash(&filter)),
            _ => String::new(),
        };
        Ok(pb::TrackingReport {
            rows,
            next_page_token,
        })
    }
}

fn hash(filter: &impl std::hash::Hash) -> u64 {
    use std::hash::{DefaultHasher, Hasher as _};
    let mut hasher = DefaultHasher::new();
    filter.hash(&mut hasher);
    hasher.finish()
}
