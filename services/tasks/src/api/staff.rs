//! `StaffService`: the company's people and their categories (T1). Every change publishes
//! `StaffChanged` (email-import recognises staff forwarding mail by their address).

use crm_platform::values::Email;
use crm_proto::{
    events as ev,
    tasks::{self as pb, staff_service_server::StaffService},
};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::{
    EVERY_ROLE, Fields, MANAGER_ROLES, Page, TasksApi, caller, check_version, convert, text_filter,
};
use crate::{
    domain::{
        availability::WorkSchedule,
        staff::{self as rules, Staff, StaffCategory},
    },
    error::{Result, TasksError},
    store::{self, staff::StaffFilter},
};

/// Fields UpdateStaff may change.
const STAFF_UPDATABLE: &[&str] = &[
    "name",
    "email",
    "user_name",
    "category_ids",
    "available_minutes_per_day",
    "work_start_minute",
    "work_end_minute",
    "working_weekdays",
    "phone",
    "active",
];
/// Fields UpdateStaffCategory may change.
const CATEGORY_UPDATABLE: &[&str] = &["name", "description"];
/// Most categories one person belongs to.
const MAX_CATEGORIES: usize = 50;

/// The fields of a staff member as given (the masked ones of an update, all of a create).
#[derive(Default)]
struct StaffFields {
    name: Option<String>,
    email: Option<String>,
    user_name: Option<Option<String>>,
    category_ids: Option<Vec<Uuid>>,
    available: Option<u32>,
    start: Option<u32>,
    end: Option<i32>,
    weekdays: Option<std::collections::BTreeSet<u32>>,
    phone: Option<String>,
}

fn parse_staff(f: &mut Fields, s: &pb::Staff, paths: &[&str], creating: bool) -> StaffFields {
    let mut out = StaffFields::default();
    for path in paths {
        match *path {
            "name" => out.name = f.text("staff.name", &s.name, 200, true),
            "email" => {
                let raw = s.email.trim();
                out.email = if raw.is_empty() {
                    Some(String::new())
                } else {
                    f.0.check("staff.email", Email::parse(raw))
                        .map(|e| e.as_str().to_owned())
                };
            }
            "user_name" => {
                out.user_name = f
                    .text("staff.user_name", &s.user_name, 200, false)
                    .map(|u| (!u.is_empty()).then_some(u));
            }
            "category_ids" => {
                if s.category_ids.len() > MAX_CATEGORIES {
                    f.add(
                        "staff.category_ids",
                        format!("must hold at most {MAX_CATEGORIES} categories"),
                    );
                    continue;
                }
                let mut ids = Vec::new();
                let mut ok = true;
                for (i, raw) in s.category_ids.iter().enumerate() {
                    match f.id(&format!("staff.category_ids[{i}]"), raw) {
                        Some(id) if ids.contains(&id) => {
                            f.add(format!("staff.category_ids[{i}]"), "is given twice");
                            ok = false;
                        }
                        Some(id) => ids.push(id),
                        None => ok = false,
                    }
                }
                if ok {
                    out.category_ids = Some(ids);
                }
            }
            "available_minutes_per_day" => {
                out.available = match s.available_minutes_per_day {
                    None if creating => Some(rules::DEFAULT_AVAILABLE_MINUTES),
                    None => {
                        f.add("staff.available_minutes_per_day", "is required");
                        None
                    }
                    Some(m) => f.0.check(
                        "staff.available_minutes_per_day",
                        rules::check_available_minutes(m),
                    ),
                };
            }
            "work_start_minute" => {
                out.start = match s.work_start_minute {
                    None if creating => Some(rules::DEFAULT_WORK_START),
                    None => {
                        f.add("staff.work_start_minute", "is required");
                        None
                    }
                    Some(m) => {
                        f.0.check("staff.work_start_minute", rules::check_start_minute(m))
                    }
                };
            }
            "work_end_minute" => {
                out.end = match s.work_end_minute {
                    None if creating => i32::try_from(rules::DEFAULT_WORK_END).ok(),
                    None => {
                        f.add("staff.work_end_minute", "is required");
                        None
                    }
                    // Checked against the start once both are known.
                    Some(m) => Some(m),
                };
            }
            "working_weekdays" => {
                out.weekdays = f.0.check(
                    "staff.working_weekdays",
                    rules::check_weekdays(&s.working_weekdays),
                );
            }
            "phone" => {
                out.phone =
                    f.0.check("staff.phone", crm_platform::values::phone(&s.phone));
            }
            _ => {}
        }
    }
    out
}

impl TasksApi {
    /// The categories that do not exist among `ids`, named by index.
    async fn check_categories(&self, ids: &[Uuid]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut conn = self.pool.acquire().await?;
        let existing = store::staff::existing_categories(&mut conn, ids).await?;
        let mut f = Fields::new();
        for (i, id) in ids.iter().enumerate() {
            if !existing.contains(id) {
                f.add(format!("staff.category_ids[{i}]"), "no such category");
            }
        }
        Ok(f.finish()?)
    }

    async fn staff_changed(
        &self,
        tx: &mut sqlx::PgConnection,
        staff: &Staff,
        created: bool,
        actor: &str,
    ) -> Result<()> {
        self.events
            .publish(
                tx,
                None,
                actor,
                &ev::StaffChanged {
                    staff: Some(convert::staff(staff)),
                    created,
                },
                staff.update_time,
            )
            .await?;
        Ok(())
    }

    async fn create_staff(
        &self,
        caller: &crm_platform::auth::Caller,
        request: pb::CreateStaffRequest,
    ) -> Result<Staff> {
        let mut f = Fields::new();
        let request_id = f.text("request_id", &request.request_id, 100, false);
        let Some(given) = request.staff else {
            f.add("staff", "is required");
            return Err(f.finish().expect_err("refused").into());
        };
        let fields = parse_staff(&mut f, &given, STAFF_UPDATABLE, true);
        let end = match (fields.start, fields.end) {
            (Some(start), Some(end)) => {
                f.0.check("staff.work_end_minute", rules::check_end_minute(end, start))
            }
            _ => None,
        };
        f.finish()?;
        let categories = fields.category_ids.expect("checked");
        self.check_categories(&categories).await?;
        let now = self.clock.now();
        let staff = Staff {
            id: Uuid::now_v7(),
            name: fields.name.expect("checked"),
            email: fields.email.expect("checked"),
            user_name: fields.user_name.expect("checked"),
            category_ids: categories,
            schedule: WorkSchedule {
                available_minutes_per_day: fields.available.expect("checked"),
                work_start_minute: fields.start.expect("checked"),
                work_end_minute: end.expect("checked"),
                working_weekdays: fields.weekdays.expect("checked"),
                // New staff take tasks: proto3 cannot tell "false" from "unset".
                active: true,
            },
            phone: fields.phone.expect("checked"),
            create_time: now,
            update_time: now,
            version: 1,
        };
        let mut tx = self.pool.begin().await?;
        let request_id = request_id.expect("checked");
        if !request_id.is_empty()
            && let Some(existing) = store::claim_request(
                &mut tx,
                "staff",
                &caller.request_scope(),
                &request_id,
                staff.id,
                now,
            )
            .await?
        {
            return store::staff::get(&mut tx, existing)
                .await?
                .ok_or_else(|| TasksError::not_found("staff", existing));
        }
        if !store::staff::insert(&mut tx, &staff).await? {
            return Err(TasksError::AlreadyExists(format!(
                "staff with user name {:?} exists",
                staff.user_name.as_deref().unwrap_or_default()
            )));
        }
        self.staff_changed(&mut tx, &staff, true, &caller.subject)
            .await?;
        self.events.commit(tx).await?;
        Ok(staff)
    }

    async fn update_staff(
        &self,
        caller: &crm_platform::auth::Caller,
        request: pb::UpdateStaffRequest,
    ) -> Result<Staff> {
        let mut f = Fields::new();
        let paths = f.mask(request.update_mask.as_ref(), STAFF_UPDATABLE);
        let version = f.etag(&request.etag);
        let Some(given) = request.staff else {
            f.add("staff", "is required");
            return Err(f.finish().expect_err("refused").into());
        };
        let id = f.id("staff.id", &given.id);
        let path_refs: Vec<&str> = paths.iter().map(String::as_str).collect();
        let fields = parse_staff(&mut f, &given, &path_refs, false);
        f.finish()?;
        if let Some(categories) = &fields.category_ids {
            self.check_categories(categories).await?;
        }
        let id = id.expect("checked");
        let mut tx = self.pool.begin().await?;
        let current = store::staff::get(&mut tx, id)
            .await?
            .ok_or_else(|| TasksError::not_found("staff", id))?;
        check_version("staff", version.expect("checked"), current.version)?;
        let mut updated = Staff {
            update_time: self.clock.now(),
            version: current.version + 1,
            ..current.clone()
        };
        if let Some(v) = fields.name {
            updated.name = v;
        }
        if let Some(v) = fields.email {
            updated.email = v;
        }
        if let Some(v) = fields.user_name {
            updated.user_name = v;
        }
        if let Some(v) = fields.category_ids {
            updated.category_ids = v;
        }
        if let Some(v) = fields.available {
            updated.schedule.available_minutes_per_day = v;
        }
        if let Some(v) = fields.start {
            updated.schedule.work_start_minute = v;
        }
        if let Some(v) = fields.weekdays {
            updated.schedule.working_weekdays = v;
        }
        if let Some(v) = fields.phone {
            updated.phone = v;
        }
        if paths.iter().any(|p| p == "active") {
            updated.schedule.active = given.active;
        }
        let end = fields.end.map_or(
            i32::try_from(current.schedule.work_end_minute).unwrap_or(1440),
            |e| e,
        );
        updated.schedule.work_end_minute =
            rules::check_end_minute(end, updated.schedule.work_start_minute)
                .map_err(|reason| TasksError::invalid("staff.work_end_minute", reason))?;
        match store::staff::update(&mut tx, &updated, current.version).await {
            Ok(true) => {}
            Ok(false) => return Err(TasksError::StaleEtag("staff")),
            Err(err) if store::staff::is_user_name_taken(&err) => {
                return Err(TasksError::AlreadyExists(format!(
                    "staff with user name {:?} exists",
                    updated.user_name.as_deref().unwrap_or_default()
                )));
            }
            Err(err) => return Err(err.into()),
        }
        self.staff_changed(&mut tx, &updated, false, &caller.subject)
            .await?;
        self.events.commit(tx).await?;
        Ok(updated)
    }

    async fn create_category(
        &self,
        caller: &crm_platform::auth::Caller,
        request: pb::CreateStaffCategoryRequest,
    ) -> Result<StaffCategory> {
        let mut f = Fields::new();
        let request_id = f.text("request_id", &request.request_id, 100, false);
        let Some(given) = request.category else {
            f.add("category", "is required");
            return Err(f.finish().expect_err("refused").into());
        };
        let name = f.text("category.name", &given.name, 100, true);
        let description = f.text("category.description", &given.description, 2000, false);
        f.finish()?;
        let now = self.clock.now();
        let category = StaffCategory {
            id: Uuid::now_v7(),
            name: name.expect("checked"),
            description: description.expect("checked"),
            member_count: 0,
            create_time: now,
            update_time: now,
            version: 1,
        };
        let mut tx = self.pool.begin().await?;
        let request_id = request_id.expect("checked");
        if !request_id.is_empty()
            && let Some(existing) = store::claim_request(
                &mut tx,
                "staff_category",
                &caller.request_scope(),
                &request_id,
                category.id,
                now,
            )
            .await?
        {
            return store::staff::get_category(&mut tx, existing)
                .await?
                .ok_or_else(|| TasksError::not_found("category", existing));
        }
        if !store::staff::insert_category(&mut tx, &category).await? {
            return Err(TasksError::AlreadyExists(format!(
                "a category named {:?} exists",
                category.name
            )));
        }
        tx.commit().await?;
        Ok(category)
    }

    async fn update_category(
        &self,
        request: pb::UpdateStaffCategoryRequest,
    ) -> Result<StaffCategory> {
        let mut f = Fields::new();
        let paths = f.mask(request.update_mask.as_ref(), CATEGORY_UPDATABLE);
        let version = f.etag(&request.etag);
        let Some(given) = request.category else {
            f.add("category", "is required");
            return Err(f.finish().expect_err("refused").into());
        };
        let id = f.id("category.id", &given.id);
        let has = |p: &str| paths.iter().any(|x| x == p);
        let name = if has("name") {
            f.text("category.name", &given.name, 100, true)
        } else {
            None
        };
        let description = if has("description") {
            f.text("category.description", &given.description, 2000, false)
        } else {
            None
        };
        f.finish()?;
        let id = id.expect("checked");
        let mut tx = self.pool.begin().await?;
        let current = store::staff::get_category(&mut tx, id)
            .await?
            .ok_or_else(|| TasksError::not_found("category", id))?;
        check_version("category", version.expect("checked"), current.version)?;
        let updated = StaffCategory {
            name: name.unwrap_or_else(|| current.name.clone()),
            description: description.unwrap_or_else(|| current.description.clone()),
            update_time: self.clock.now(),
            version: current.version + 1,
            ..current.clone()
        };
        match store::staff::update_category(&mut tx, &updated, current.version).await {
            Ok(true) => {}
            Ok(false) => return Err(TasksError::StaleEtag("category")),
            Err(err) if store::staff::is_category_name_taken(&err) => {
                return Err(TasksError::AlreadyExists(format!(
                    "a category named {:?} exists",
                    updated.name
                )));
            }
            Err(err) => return Err(err.into()),
        }
        tx.commit().await?;
        Ok(updated)
    }
}

#[tonic::async_trait]
impl StaffService for TasksApi {
    #[tracing::instrument(skip_all)]
    async fn create_staff(
        &self,
        request: Request<pb::CreateStaffRequest>,
    ) -> Result<Response<pb::Staff>, Status> {
        let caller = caller(&request, MANAGER_ROLES)?;
        let staff = TasksApi::create_staff(self, &caller, request.into_inner()).await?;
        Ok(Response::new(convert::staff(&staff)))
    }

    #[tracing::instrument(skip_all)]
    async fn get_staff(
        &self,
        request: Request<pb::GetStaffRequest>,
    ) -> Result<Response<pb::Staff>, Status> {
        caller(&request, EVERY_ROLE)?;
        let mut f = Fields::new();
        let id = f.id("id", &request.get_ref().id);
        f.finish()?;
        let id = id.expect("checked");
        let mut conn = self.pool.acquire().await.map_err(TasksError::from)?;
        let staff = store::staff::get(&mut conn, id)
            .await
            .map_err(TasksError::from)?
            .ok_or_else(|| TasksError::not_found("staff", id))?;
        Ok(Response::new(convert::staff(&staff)))
    }

    #[tracing::instrument(skip_all)]
    async fn get_current_staff(
        &self,
        request: Request<pb::GetCurrentStaffRequest>,
    ) -> Result<Response<pb::Staff>, Status> {
        let caller = caller(&request, EVERY_ROLE)?;
        let mut conn = self.pool.acquire().await.map_err(TasksError::from)?;
        let staff = store::staff::by_user_name(&mut conn, &caller.subject)
            .await
            .map_err(TasksError::from)?
            .ok_or_else(|| {
                Status::not_found(format!(
                    "no staff record is linked to user {:?}",
                    caller.subject
                ))
            })?;
        Ok(Response::new(convert::staff(&staff)))
    }

    #[tracing::instrument(skip_all)]
    async fn update_staff(
        &self,
        request: Request<pb::UpdateStaffRequest>,
    ) -> Result<Response<pb::Staff>, Status> {
        let caller = caller(&request, MANAGER_ROLES)?;
        let staff = TasksApi::update_staff(self, &caller, request.into_inner()).await?;
        Ok(Response::new(convert::staff(&staff)))
    }

    #[tracing::instrument(skip_all)]
    async fn list_staff(
        &self,
        request: Request<pb::ListStaffRequest>,
    ) -> Result<Response<pb::ListStaffResponse>, Status> {
        caller(&request, EVERY_ROLE)?;
        let request = request.into_inner();
        let mut f = Fields::new();
        let category_id = f.optional_id("category_id", &request.category_id).flatten();
        let name_like = text_filter(&mut f, "name_contains", &request.name_contains);
        let email = f
            .text("email", &request.email, 254, false)
            .filter(|e| !e.is_empty());
        let user_name = f
            .text("user_name", &request.user_name, 200, false)
            .filter(|u| !u.is_empty());
        f.finish().map_err(TasksError::from)?;
        let filter = StaffFilter {
            category_id,
            name_like,
            email,
            user_name,
            include_inactive: request.include_inactive,
        };
        let page = Page::<(String, Uuid)>::of(request.page_size, &request.page_token, &filter)?;
        let mut conn = self.pool.acquire().await.map_err(TasksError::from)?;
        let mut rows = store::staff::list(&mut conn, &filter, page.after.as_ref(), page.limit())
            .await
            .map_err(TasksError::from)?;
        let next_page_token = page.finish(&mut rows, |s| (s.name.to_lowercase(), s.id));
        Ok(Response::new(pb::ListStaffResponse {
            staff: rows.iter().map(convert::staff).collect(),
            next_page_token,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn create_staff_category(
        &self,
        request: Request<pb::CreateStaffCategoryRequest>,
    ) -> Result<Response<pb::StaffCategory>, Status> {
        let caller = caller(&request, MANAGER_ROLES)?;
        let category = self.create_category(&caller, request.into_inner()).await?;
        Ok(Response::new(convert::category(&category)))
    }

    #[tracing::instrument(skip_all)]
    async fn get_staff_category(
        &self,
        request: Request<pb::GetStaffCategoryRequest>,
    ) -> Result<Response<pb::StaffCategory>, Status> {
        caller(&request, EVERY_ROLE)?;
        let mut f = Fields::new();
        let id = f.id("id", &request.get_ref().id);
        f.finish()?;
        let id = id.expect("checked");
        let mut conn = self.pool.acquire().await.map_err(TasksError::from)?;
        let category = store::staff::get_category(&mut conn, id)
            .await
            .map_err(TasksError::from)?
            .ok_or_else(|| TasksError::not_found("category", id))?;
        Ok(Response::new(convert::category(&category)))
    }

    #[tracing::instrument(skip_all)]
    async fn update_staff_category(
        &self,
        request: Request<pb::UpdateStaffCategoryRequest>,
    ) -> Result<Response<pb::StaffCategory>, Status> {
        caller(&request, MANAGER_ROLES)?;
        let category = self.update_category(request.into_inner()).await?;
        Ok(Response::new(convert::category(&category)))
    }

    #[tracing::instrument(skip_all)]
    async fn list_staff_categories(
        &self,
        request: Request<pb::ListStaffCategoriesRequest>,
    ) -> Result<Response<pb::ListStaffCategoriesResponse>, Status> {
        caller(&request, EVERY_ROLE)?;
        let request = request.into_inner();
        let page = Page::<(String, Uuid)>::of(request.page_size, &request.page_token, &())?;
        let mut conn = self.pool.acquire().await.map_err(TasksError::from)?;
        let mut rows = store::staff::list_categories(&mut conn, page.after.as_ref(), page.limit())
            .await
            .map_err(TasksError::from)?;
        let next_page_token = page.finish(&mut rows, |c| (c.name.to_lowercase(), c.id));
        Ok(Response::new(pb::ListStaffCategoriesResponse {
            categories: rows.iter().map(convert::category).collect(),
            next_page_token,
        }))
    }
}
