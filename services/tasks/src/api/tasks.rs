//! `TaskService`, the life of one task: create (T2, with availability T6 and coverage T7), get,
//! update (reassign, reschedule: availability again; the reminder follows, T8), list (T3),
//! check availability (T6), resolve and bill (T9), retry billing, cancel, and draft a contract
//! from a task (T7). Replies, broadcasts, the live feed and tracking are in their own files.

use chrono::{DateTime, NaiveDate, Utc};
use crm_platform::{
    auth::Caller,
    files::{new_uploads, parse_attachments},
    values,
};
use crm_proto::{
    common::{self, DocumentKind},
    events as ev,
    notifications::NotificationKind,
    opportunities as opb,
    tasks::{self as pb},
};
use sqlx::PgConnection;
use uuid::Uuid;

use super::{
    Fields, MANAGER_ROLES, Page, TasksApi, check_version, convert, day_range, text_filter,
};
use crate::{
    domain::{
        availability::{self, Availability, Placement},
        reminders::{self, MAX_DAYS_BEFORE, ReminderChoice, ReminderSettings},
        staff::{PostSaleService, Staff},
        task::{self as rules, Billing, Origin, Source, Status, Task, billing_before_resolution},
    },
    error::{Result, TasksError},
    store::{
        self,
        tasks::{Cursor, Period, TaskFilter, Visibility},
    },
};

/// Longest title.
pub(crate) const MAX_TITLE: usize = 200;
/// Longest description (and reply text).
pub(crate) const MAX_DESCRIPTION: usize = 20_000;
/// Longest expected duration or worked time: 10 days of 24 h.
const MAX_MINUTES: i32 = 14_400;
/// Most files on a task.
const MAX_ATTACHMENTS: usize = 50;
/// Fields UpdateTask may change (X5: never the id, the creator, the source or output fields).
const UPDATABLE: &[&str] = &[
    "title",
    "description",
    "partner_id",
    "post_sale_service_id",
    "contract_id",
    "deadline_date",
    "responsible_staff_id",
    "scheduled_start_time",
    "expected_duration_minutes",
    "status",
    "billable",
    "reminder",
    "attachments",
    "origin_document",
];
/// What a resolved or cancelled task still accepts.
const UPDATABLE_WHEN_CLOSED: &[&str] = &["attachments"];

/// The fields of a task as given: all of a create, the masked ones of an update. `None` where
/// the field was not given or was refused (the refusal is in the `Fields`).
#[derive(Default)]
pub(crate) struct TaskFields {
    pub title: Option<String>,
    pub description: Option<String>,
    pub partner_id: Option<Option<Uuid>>,
    pub post_sale_service_id: Option<Option<Uuid>>,
    pub contract_id: Option<Option<Uuid>>,
    pub deadline_date: Option<NaiveDate>,
    pub responsible: Option<Uuid>,
    pub scheduled_start_time: Option<Option<DateTime<Utc>>>,
    pub expected_duration: Option<u32>,
    pub status: Option<Status>,
    pub reminder: Option<Option<ReminderChoice>>,
    pub origin: Option<Option<Origin>>,
}

/// Reads the reminder of a request (`field` names it): `None` when unset.
pub(crate) fn reminder_choice(
    f: &mut Fields,
    field: &str,
    raw: Option<&pb::TaskReminder>,
) -> Option<Option<ReminderChoice>> {
    let Some(r) = raw else { return Some(None) };
    let days_before = match r.days_before {
        None => None,
        Some(d) => match u32::try_from(d).ok().filter(|d| *d <= MAX_DAYS_BEFORE) {
            Some(d) => Some(d),
            None => {
                f.add(
                    format!("{field}.days_before"),
                    format!("must be between 0 and {MAX_DAYS_BEFORE} (days before the deadline)"),
                );
                return None;
            }
        },
    };
    Some(Some(ReminderChoice {
        email: r.email,
        in_app: r.in_app,
        days_before,
    }))
}

/// Reads an origin document reference (`field` names it).
pub(crate) fn origin_of(
    f: &mut Fields,
    field: &str,
    raw: Option<&common::DocumentRef>,
) -> Option<Option<Origin>> {
    let Some(r) = raw else { return Some(None) };
    let kind_ok = matches!(
        DocumentKind::try_from(r.kind),
        Ok(DocumentKind::Opportunity
            | DocumentKind::Offer
            | DocumentKind::Order
            | DocumentKind::Contract
            | DocumentKind::Invoice)
    );
    if !kind_ok {
        f.add(
            format!("{field}.kind"),
            "must be OPPORTUNITY, OFFER, ORDER, CONTRACT or INVOICE",
        );
    }
    let id = f.id(&format!("{field}.id"), &r.id);
    let number = f.text(&format!("{field}.number"), &r.number, 50, false);
    match (kind_ok, id, number) {
        (true, Some(id), Some(number)) => Some(Some(Origin {
            kind: r.kind,
            id,
            number,
        })),
        _ => None,
    }
}

/// Reads the fields of `t` named by `paths`.
pub(crate) fn parse_task(f: &mut Fields, t: &pb::Task, paths: &[&str]) -> TaskFields {
    let mut out = TaskFields::default();
    for path in paths {
        match *path {
            "title" => out.title = f.text("task.title", &t.title, MAX_TITLE, true),
            "description" => {
                out.description =
                    f.text("task.description", &t.description, MAX_DESCRIPTION, false);
            }
            "partner_id" => out.partner_id = f.optional_id("task.partner_id", &t.partner_id),
            "post_sale_service_id" => {
                out.post_sale_service_id =
                    f.optional_id("task.post_sale_service_id", &t.post_sale_service_id);
            }
            "contract_id" => out.contract_id = f.optional_id("task.contract_id", &t.contract_id),
            "deadline_date" => match f.date("task.deadline_date", t.deadline_date.as_ref()) {
                Some(Some(d)) => out.deadline_date = Some(d),
                Some(None) => f.add("task.deadline_date", "is required"),
                None => {}
            },
            "responsible_staff_id" => {
                out.responsible = f.id("task.responsible_staff_id", &t.responsible_staff_id);
            }
            "scheduled_start_time" => {
                out.scheduled_start_time = f.0.check(
                    "task.scheduled_start_time",
                    values::instant(t.scheduled_start_time.as_ref()),
                );
            }
            "expected_duration_minutes" => {
                if (0..=MAX_MINUTES).contains(&t.expected_duration_minutes) {
                    out.expected_duration = u32::try_from(t.expected_duration_minutes).ok();
                } else {
                    f.add(
                        "task.expected_duration_minutes",
                        format!("must be between 0 and {MAX_MINUTES}"),
                    );
                }
            }
            "status" => match pb::TaskStatus::try_from(t.status) {
                Ok(pb::TaskStatus::Unspecified) => out.status = Some(Status::Open),
                Ok(s) => out.status = convert::status_of(s as i32),
                Err(_) => f.add("task.status", "is not a task status"),
            },
            "reminder" => out.reminder = reminder_choice(f, "task.reminder", t.reminder.as_ref()),
            "origin_document" => {
                out.origin = origin_of(f, "task.origin_document", t.origin_document.as_ref());
            }
            _ => {}
        }
    }
    out
}

/// The placement of a task in time, for availability.
pub(crate) fn placement(t: &Task) -> Placement {
    match t.scheduled_start_time {
        Some(start) => Placement::Scheduled {
            start,
            minutes: t.expected_duration_minutes,
        },
        None => Placement::Unscheduled {
            deadline: t.deadline_date,
            minutes: t.expected_duration_minutes,
        },
    }
}

impl TasksApi {
    /// The active staff member `id`, named by `field`: INVALID_ARGUMENT when there is none.
    pub(crate) async fn active_staff(
        &self,
        conn: &mut PgConnection,
        id: Uuid,
        field: &str,
    ) -> Result<Staff> {
        store::staff::get(conn, id)
            .await?
            .filter(|s| s.schedule.active)
            .ok_or_else(|| TasksError::invalid(field, "no such active staff member"))
    }

    /// The active post-sale service `id`, named by `field`.
    async fn requestable_service(
        &self,
        conn: &mut PgConnection,
        id: Uuid,
        field: &str,
    ) -> Result<PostSaleService> {
        store::services::get(conn, id)
            .await?
            .filter(|s| s.active)
            .ok_or_else(|| TasksError::invalid(field, "no such active post-sale service"))
    }

    /// The availability of `staff` for a task placed at `placement`, leaving out `exclude`.
    pub(crate) async fn availability(
        &self,
        conn: &mut PgConnection,
        caller: &Caller,
        staff: &Staff,
        placement: Placement,
        exclude: Option<Uuid>,
    ) -> Result<pb::Availability> {
        let days = placement.days(self.zone);
        let first = *days.first().expect("a placement touches a day");
        let last = *days.last().expect("a placement touches a day");
        let (from, to) = day_range(Some(first), Some(last), self.zone);
        let booked = store::tasks::booked(
            conn,
            staff.id,
            first,
            last,
            from.expect("bounded"),
            to.expect("bounded"),
            exclude,
        )
        .await?;
        let answer: Availability =
            availability::check(&staff.schedule, placement, &booked, self.zone);
        // Titles of overlapping tasks only for those the caller may see.
        let visibility = self.visibility(conn, caller).await?;
        let overlapping: Vec<Uuid> = answer.overlaps.iter().map(|o| o.task_id).collect();
        let visible: Vec<Uuid> = if visibility == Visibility::All {
            overlapping
        } else {
            store::tasks::get_many(conn, &overlapping)
                .await?
                .into_iter()
                .filter(|t| visibility.sees(t))
                .map(|t| t.id)
                .collect()
        };
        Ok(convert::availability(staff.id, &answer, |id| {
            visible.contains(&id)
        }))
    }

    /// Plans (or removes) `task`'s pending reminder, in `tx`.
    pub(crate) async fn plan_reminder(
        &self,
        tx: &mut PgConnection,
        task: &Task,
        settings: &ReminderSettings,
    ) -> Result<Option<DateTime<Utc>>> {
        let planned = task
            .status
            .is_active()
            .then(|| reminders::plan(&task.reminder, task.deadline_date, settings, self.zone))
            .flatten();
        match planned {
            Some(planned) => {
                store::reminders::set(tx, task.id, &planned).await?;
                Ok(Some(planned.due_time))
            }
            None => {
                store::reminders::clear(tx, task.id).await?;
                Ok(None)
            }
        }
    }

    /// Tells `responsible` in the app that `task` was assigned to them by someone else.
    pub(crate) async fn notify_assigned(
        &self,
        tx: &mut PgConnection,
        task: &Task,
        responsible: &Staff,
        actor: &str,
    ) -> Result<()> {
        let Some(user) = &responsible.user_name else {
            return Ok(());
        };
        if user == actor {
            return Ok(());
        }
        let command = ev::NotificationRequested {
            idempotency_key: format!("assigned:{}:{}", task.id, task.version),
            kind: NotificationKind::TaskAssigned as i32,
            in_app: true,
            email: false,
            recipient_user: user.clone(),
            recipient_email: String::new(),
            recipient_name: responsible.name.clone(),
            recipient_staff_id: responsible.id.to_string(),
            title: format!("New task: {}", truncate(&task.title, 180)),
            body_text: format!(
                "{}\n\nDeadline: {}{}",
                task.title,
                task.deadline_date,
                if actor.is_empty() {
                    String::new()
                } else {
                    format!("\nAssigned by: {actor}")
                }
            ),
            document: Some(crate::opportunities::document_ref(
                DocumentKind::Task,
                task.id,
            )),
            partner_id: task.partner_id.map(|p| p.to_string()).unwrap_or_default(),
            expire_time: None,
        };
        self.events
            .notify(tx, actor, &command, task.update_time)
            .await?;
        Ok(())
    }

    /// Stores a new task with its reminder, publishes `TaskCreated` and tells its responsible,
    /// in `tx`. `Ok(None)` when a task of the same cause exists (an event seen twice); else the
    /// task as stored (with its reminder's due time).
    pub(crate) async fn store_new_task(
        &self,
        tx: &mut PgConnection,
        mut task: Task,
        responsible: &Staff,
        settings: &ReminderSettings,
        actor: &str,
    ) -> Result<Option<Task>> {
        if !store::tasks::insert(tx, &task).await? {
            return Ok(None);
        }
        task.reminder_due_time = self.plan_reminder(tx, &task, settings).await?;
        let today = self.day_of(task.create_time);
        self.events
            .publish(
                tx,
                task.partner_id,
                actor,
                &ev::TaskCreated {
                    task: Some(convert::task(&task, today)),
                },
                task.create_time,
            )
            .await?;
        self.notify_assigned(tx, &task, responsible, actor).await?;
        Ok(Some(task))
    }

    /// Publishes `TaskUpdated` for `task` with `changed` fields, in `tx`.
    pub(crate) async fn task_updated(
        &self,
        tx: &mut PgConnection,
        task: &Task,
        changed: Vec<String>,
        actor: &str,
    ) -> Result<()> {
        self.events
            .publish(
                tx,
                task.partner_id,
                actor,
                &ev::TaskUpdated {
                    task: Some(convert::task(task, self.day_of(task.update_time))),
                    changed_fields: changed,
                },
                task.update_time,
            )
            .await?;
        Ok(())
    }

    /// The staff record of `user`, if any.
    pub(crate) async fn staff_of_user(
        &self,
        conn: &mut PgConnection,
        user: &str,
    ) -> Result<Option<Uuid>> {
        if user.is_empty() {
            return Ok(None);
        }
        Ok(store::staff::id_of_user(conn, user).await?)
    }

    async fn create_task(
        &self,
        caller: &Caller,
        request: pb::CreateTaskRequest,
    ) -> Result<pb::CreateTaskResponse> {
        let mut f = Fields::new();
        let request_id = f.text("request_id", &request.request_id, 100, false);
        let Some(given) = request.task else {
            f.add("task", "is required");
            return Err(f.finish().expect_err("refused").into());
        };
        let fields = parse_task(
            &mut f,
            &given,
            &[
                "title",
                "description",
                "partner_id",
                "post_sale_service_id",
                "contract_id",
                "deadline_date",
                "responsible_staff_id",
                "scheduled_start_time",
                "expected_duration_minutes",
                "status",
                "reminder",
                "origin_document",
            ],
        );
        if let Some(status) = fields.status
            && !status.is_active()
        {
            f.add("task.status", "a new task is OPEN or IN_PROGRESS");
        }
        let attachments = parse_attachments(
            &mut f,
            "task.attachments",
            &given.attachments,
            MAX_ATTACHMENTS,
            false,
        );
        f.finish()?;
        let new_files = new_uploads(
            &self.uploads,
            &caller.subject,
            "task.attachments",
            &given.attachments,
            &[],
            self.clock.now(),
        )?;
        let origin = fields.origin.expect("checked");
        let mut partner_id = fields.partner_id.expect("checked");
        // The origin document's partner is the beneficiary when none is given.
        if partner_id.is_none()
            && let Some(origin) = &origin
        {
            partner_id = Some(
                self.opportunities
                    .partner_of(caller, origin, "task.origin_document")
                    .await?,
            );
        }
        let service_id = fields.post_sale_service_id.expect("checked");
        if given.billable && (partner_id.is_none() || service_id.is_none()) {
            return Err(TasksError::invalid(
                "task.billable",
                "a billable task needs partner_id and post_sale_service_id",
            ));
        }
        let mut conn = self.pool.acquire().await?;
        let responsible = self
            .active_staff(
                &mut conn,
                fields.responsible.expect("checked"),
                "task.responsible_staff_id",
            )
            .await?;
        let service = match service_id {
            Some(id) => Some(
                self.requestable_service(&mut conn, id, "task.post_sale_service_id")
                    .await?,
            ),
            None => None,
        };
        let (settings, _, _) = store::settings::get(&mut conn).await?;
        let creator_staff_id = self.staff_of_user(&mut conn, &caller.subject).await?;
        drop(conn);
        let now = self.clock.now();
        let status = fields.status.expect("checked");
        let task = Task {
            id: Uuid::now_v7(),
            title: fields.title.expect("checked"),
            description: fields.description.expect("checked"),
            partner_id,
            post_sale_service_id: service_id,
            contract_id: fields.contract_id.expect("checked"),
            deadline_date: fields.deadline_date.expect("checked"),
            responsible_staff_id: responsible.id,
            creator: caller.subject.clone(),
            creator_staff_id,
            scheduled_start_time: fields.scheduled_start_time.expect("checked"),
            expected_duration_minutes: fields.expected_duration.expect("checked"),
            status,
            billable: given.billable,
            source: Source::Manual,
            source_reference: String::new(),
            origin,
            broadcast_id: None,
            reminder: fields
                .reminder
                .expect("checked")
                .unwrap_or_else(|| ReminderChoice::company_default(&settings)),
            reminder_due_time: None,
            reminder_sent_time: None,
            attachments: attachments.expect("checked"),
            start_time: (status == Status::InProgress).then_some(now),
            resolve_time: None,
            worked_minutes: 0,
            resolution_note: String::new(),
            cancel_time: None,
            cancel_reason: String::new(),
            billing: billing_before_resolution(given.billable),
            billing_error: String::new(),
            billing_attempt: 0,
            invoice_id: None,
            estimate_offer_id: None,
            drafted_contract_id: None,
            reply_count: 0,
            create_time: now,
            update_time: now,
            version: 1,
        };

        // Coverage is informative and asked while the task is stored (T7).
        let partner_for_coverage = task.partner_id;
        let coverage = async {
            match (&service, partner_for_coverage) {
                (Some(service), Some(partner)) => Some(
                    self.coverage_info(caller, partner, service, self.day_of(now))
                        .await,
                ),
                _ => None,
            }
        };
        let store = async {
            let mut tx = self.pool.begin().await?;
            let request_id = request_id.expect("checked");
            if !request_id.is_empty()
                && let Some(existing) = store::claim_request(
                    &mut tx,
                    "task",
                    &caller.request_scope(),
                    &request_id,
                    task.id,
                    now,
                )
                .await?
            {
                let existing = store::tasks::get(&mut tx, existing)
                    .await?
                    .ok_or_else(|| TasksError::not_found("task", existing))?;
                return Ok::<_, TasksError>(existing);
            }
            let stored = self
                .store_new_task(&mut tx, task, &responsible, &settings, &caller.subject)
                .await?
                .expect("a manual task has no event cause");
            if !new_files.is_empty() {
                self.events
                    .publish(
                        &mut tx,
                        None,
                        &caller.subject,
                        &ev::FilesAttached {
                            owner: Some(crate::opportunities::document_ref(
                                DocumentKind::Task,
                                stored.id,
                            )),
                            blob_keys: new_files.clone(),
                        },
                        now,
                    )
                    .await?;
            }
            self.events.commit(tx).await?;
            Ok(stored)
        };
        let (stored, coverage) = tokio::join!(store, coverage);
        let stored = stored?;
        let mut conn = self.pool.acquire().await?;
        let availability = self
            .availability(
                &mut conn,
                caller,
                &responsible,
                placement(&stored),
                Some(stored.id),
            )
            .await?;
        Ok(pb::CreateTaskResponse {
            task: Some(convert::task(&stored, self.today())),
            availability: Some(availability),
            coverage,
        })
    }

    async fn update_task(
        &self,
        caller: &Caller,
        request: pb::UpdateTaskRequest,
    ) -> Result<pb::UpdateTaskResponse> {
        let mut f = Fields::new();
        let paths = f.mask(request.update_mask.as_ref(), UPDATABLE);
        let version = f.etag(&request.etag);
        let Some(given) = request.task else {
            f.add("task", "is required");
            return Err(f.finish().expect_err("refused").into());
        };
        let id = f.id("task.id", &given.id);
        let path_refs: Vec<&str> = paths.iter().map(String::as_str).collect();
        let fields = parse_task(&mut f, &given, &path_refs);
        let has = |p: &str| paths.iter().any(|x| x == p);
        let attachments = if has("attachments") {
            parse_attachments(
                &mut f,
                "task.attachments",
                &given.attachments,
                MAX_ATTACHMENTS,
                false,
            )
        } else {
            None
        };
        f.finish()?;
        let id = id.expect("checked");
        let mut conn = self.pool.acquire().await?;
        let current = self.visible_task(&mut conn, caller, id).await?;
        check_version("task", version.expect("checked"), current.version)?;
        if !current.status.is_active()
            && let Some(path) = paths
                .iter()
                .find(|p| !UPDATABLE_WHEN_CLOSED.contains(&p.as_str()))
        {
            return Err(TasksError::precondition(format!(
                "the task is {}: only its attachments change now, not {path:?}",
                current.status.as_db()
            )));
        }
        let new_files = if has("attachments") {
            new_uploads(
                &self.uploads,
                &caller.subject,
                "task.attachments",
                &given.attachments,
                &current.attachments,
                self.clock.now(),
            )?
        } else {
            Vec::new()
        };
        let mut updated = current.clone();
        if let Some(v) = fields.title {
            updated.title = v;
        }
        if let Some(v) = fields.description {
            updated.description = v;
        }
        if let Some(v) = fields.partner_id {
            updated.partner_id = v;
        }
        if let Some(v) = fields.contract_id {
            updated.contract_id = v;
        }
        if let Some(v) = fields.deadline_date {
            updated.deadline_date = v;
        }
        if let Some(v) = fields.scheduled_start_time {
            updated.scheduled_start_time = v;
        }
        if let Some(v) = fields.expected_duration {
            updated.expected_duration_minutes = v;
        }
        if let Some(v) = fields.origin {
            updated.origin = v;
        }
        if let Some(v) = attachments {
            updated.attachments = v;
        }
        if has("billable") {
            updated.billable = given.billable;
            updated.billing = billing_before_resolution(given.billable);
        }
        if let Some(status) = fields.status {
            rules::check_status_change(current.status, status)?;
            if status == Status::InProgress && updated.start_time.is_none() {
                updated.start_time = Some(self.clock.now());
            }
            updated.status = status;
        }
        let (settings, _, _) = store::settings::get(&mut conn).await?;
        if let Some(v) = fields.reminder {
            updated.reminder = v.unwrap_or_else(|| ReminderChoice::company_default(&settings));
        }
        let responsible = match fields.responsible {
            Some(id) if id != current.responsible_staff_id => Some(
                self.active_staff(&mut conn, id, "task.responsible_staff_id")
                    .await?,
            ),
            _ => None,
        };
        if let Some(r) = &responsible {
            updated.responsible_staff_id = r.id;
        }
        let service = match fields.post_sale_service_id {
            Some(Some(id)) if Some(id) != current.post_sale_service_id => Some(
                self.requestable_service(&mut conn, id, "task.post_sale_service_id")
                    .await?,
            ),
            Some(v) => {
                updated.post_sale_service_id = v;
                None
            }
            None => None,
        };
        if let Some(s) = &service {
            updated.post_sale_service_id = Some(s.id);
        }
        if updated.billable
            && (updated.partner_id.is_none() || updated.post_sale_service_id.is_none())
        {
            return Err(TasksError::invalid(
                "task.billable",
                "a billable task needs partner_id and post_sale_service_id",
            ));
        }
        drop(conn);
        updated.update_time = self.clock.now();
        updated.version = current.version + 1;
        let changed: Vec<String> = paths
            .iter()
            .filter(|p| changed(p, &current, &updated))
            .cloned()
            .collect();

        let mut tx = self.pool.begin().await?;
        if !store::tasks::update(&mut tx, &updated, current.version).await? {
            return Err(TasksError::StaleEtag("task"));
        }
        let reminder_changed = ["deadline_date", "reminder", "status"]
            .iter()
            .any(|p| changed.iter().any(|c| c == p));
        if reminder_changed {
            updated.reminder_due_time = self.plan_reminder(&mut tx, &updated, &settings).await?;
        }
        if !changed.is_empty() {
            self.task_updated(&mut tx, &updated, changed.clone(), &caller.subject)
                .await?;
        }
        if let Some(r) = &responsible {
            self.notify_assigned(&mut tx, &updated, r, &caller.subject)
                .await?;
        }
        if !new_files.is_empty() {
            self.events
                .publish(
                    &mut tx,
                    None,
                    &caller.subject,
                    &ev::FilesAttached {
                        owner: Some(crate::opportunities::document_ref(
                            DocumentKind::Task,
                            updated.id,
                        )),
                        blob_keys: new_files,
                    },
                    updated.update_time,
                )
                .await?;
        }
        self.events.commit(tx).await?;

        let mut conn = self.pool.acquire().await?;
        let moved = [
            "responsible_staff_id",
            "scheduled_start_time",
            "expected_duration_minutes",
            "deadline_date",
        ]
        .iter()
        .any(|p| changed.iter().any(|c| c == p));
        let availability = if moved {
            let staff = store::staff::get(&mut conn, updated.responsible_staff_id)
                .await?
                .ok_or_else(|| TasksError::not_found("staff", updated.responsible_staff_id))?;
            Some(
                self.availability(
                    &mut conn,
                    caller,
                    &staff,
                    placement(&updated),
                    Some(updated.id),
                )
                .await?,
            )
        } else {
            None
        };
        let coverage_changed = ["partner_id", "post_sale_service_id"]
            .iter()
            .any(|p| changed.iter().any(|c| c == p));
        let coverage = match (
            coverage_changed,
            updated.partner_id,
            updated.post_sale_service_id,
        ) {
            (true, Some(partner), Some(service_id)) => {
                match store::services::get(&mut conn, service_id).await? {
                    Some(service) => {
                        drop(conn);
                        Some(
                            self.coverage_info(caller, partner, &service, self.today())
                                .await,
                        )
                    }
                    None => None,
                }
            }
            _ => None,
        };
        Ok(pb::UpdateTaskResponse {
            task: Some(convert::task(&updated, self.today())),
            availability,
            coverage,
        })
    }

    async fn list_tasks(
        &self,
        caller: &Caller,
        request: pb::ListTasksRequest,
    ) -> Result<pb::ListTasksResponse> {
        let mut f = Fields::new();
        let view = pb::TaskView::try_from(request.view).unwrap_or_else(|_| {
            f.add("view", "is not a task view");
            pb::TaskView::All
        });
        let mut statuses = Vec::new();
        for (i, raw) in request.statuses.iter().enumerate() {
            match convert::status_of(*raw) {
                Some(s) => statuses.push(s.as_db()),
                None => f.add(format!("statuses[{i}]"), "is not a task status"),
            }
        }
        let mut billing = Vec::new();
        for (i, raw) in request.billing_statuses.iter().enumerate() {
            match convert::billing_of(*raw) {
                Some(b) => billing.push(b.as_db()),
                None => f.add(format!("billing_statuses[{i}]"), "is not a billing status"),
            }
        }
        let (start, end) = f.period("period", request.period.as_ref());
        let basis = pb::TaskPeriodBasis::try_from(request.period_basis).unwrap_or_else(|_| {
            f.add("period_basis", "is not a period basis");
            pb::TaskPeriodBasis::Deadline
        });
        let partner_id = f.optional_id("partner_id", &request.partner_id).flatten();
        let responsible = f
            .optional_id("responsible_staff_id", &request.responsible_staff_id)
            .flatten();
        let source = match request.source {
            0 => None,
            raw => match convert::source_of(raw) {
                Some(s) => Some(s.as_db()),
                None => {
                    f.add("source", "is not a task source");
                    None
                }
            },
        };
        let broadcast_id = f
            .optional_id("broadcast_id", &request.broadcast_id)
            .flatten();
        let text_like = text_filter(&mut f, "text_contains", &request.text_contains);
        f.finish()?;
        let period = request.period.as_ref().map(|_| match basis {
            pb::TaskPeriodBasis::Unspecified | pb::TaskPeriodBasis::Deadline => {
                Period::Deadline(start, end)
            }
            other => {
                let (from, to) = day_range(start, end, self.zone);
                let column = match other {
                    pb::TaskPeriodBasis::Created => "create_time",
                    pb::TaskPeriodBasis::Resolved => "resolve_time",
                    _ => "scheduled_start_time",
                };
                Period::Instant { column, from, to }
            }
        });
        let mut conn = self.pool.acquire().await?;
        let visibility = self.visibility(&mut conn, caller).await?;
        let my_staff = self.staff_of_user(&mut conn, &caller.subject).await?;
        let (view_responsible, view_creator) = match view {
            pb::TaskView::ForMe => match my_staff {
                Some(staff) => (Some(staff), None),
                // Without a staff record nothing is "for me".
                None => {
                    return Ok(pb::ListTasksResponse::default());
                }
            },
            pb::TaskView::FromMe => (None, Some(caller.subject.clone())),
            pb::TaskView::All | pb::TaskView::Unspecified => (None, None),
        };
        if let (Some(a), Some(b)) = (view_responsible, responsible)
            && a != b
        {
            return Ok(pb::ListTasksResponse::default());
        }
        let filter = TaskFilter {
            // "For me" and "from me" are within what anyone sees: no extra condition needed.
            visibility: if view_responsible.is_some() || view_creator.is_some() {
                Visibility::All
            } else {
                visibility
            },
            responsible: view_responsible.or(responsible),
            creator: view_creator,
            statuses,
            period,
            partner_id,
            source,
            overdue_on: request.overdue_only.then(|| self.today()),
            broadcast_id,
            text_like,
            billing,
        };
        let page = Page::<Cursor>::of(request.page_size, &request.page_token, &filter)?;
        let mut rows =
            store::tasks::list(&mut conn, &filter, page.after.as_ref(), page.limit()).await?;
        let next_page_token = page.finish(&mut rows, |t| (t.deadline_date, t.create_time, t.id));
        let today = self.today();
        Ok(pb::ListTasksResponse {
            tasks: rows.iter().map(|t| convert::task(t, today)).collect(),
            next_page_token,
        })
    }

    async fn check_availability(
        &self,
        caller: &Caller,
        request: pb::CheckAvailabilityRequest,
    ) -> Result<pb::Availability> {
        let mut f = Fields::new();
        let staff_id = f.id("staff_id", &request.staff_id);
        let start =
            f.0.check(
                "scheduled_start_time",
                values::instant(request.scheduled_start_time.as_ref()),
            )
            .flatten();
        if !(0..=MAX_MINUTES).contains(&request.expected_duration_minutes) {
            f.add(
                "expected_duration_minutes",
                format!("must be between 0 and {MAX_MINUTES}"),
            );
        }
        let deadline = f
            .date("deadline_date", request.deadline_date.as_ref())
            .flatten();
        if start.is_none() && deadline.is_none() && request.scheduled_start_time.is_none() {
            f.add(
                "deadline_date",
                "is required when scheduled_start_time is unset",
            );
        }
        let exclude = f
            .optional_id("exclude_task_id", &request.exclude_task_id)
            .flatten();
        f.finish()?;
        let minutes = u32::try_from(request.expected_duration_minutes).unwrap_or(0);
        let placement = match (start, deadline) {
            (Some(start), _) => Placement::Scheduled { start, minutes },
            (None, Some(deadline)) => Placement::Unscheduled { deadline, minutes },
            (None, None) => unreachable!("checked above"),
        };
        let staff_id = staff_id.expect("checked");
        let mut conn = self.pool.acquire().await?;
        let staff = store::staff::get(&mut conn, staff_id)
            .await?
            .ok_or_else(|| TasksError::not_found("staff", staff_id))?;
        self.availability(&mut conn, caller, &staff, placement, exclude)
            .await
    }

    async fn resolve_task(&self, caller: &Caller, request: pb::ResolveTaskRequest) -> Result<Task> {
        let mut f = Fields::new();
        let id = f.id("id", &request.id);
        let version = f.etag(&request.etag);
        let resolve_time =
            f.0.check(
                "resolve_time",
                values::instant(request.resolve_time.as_ref()),
            )
            .flatten();
        let worked = match request.worked_minutes {
            None => None,
            Some(m) if (1..=MAX_MINUTES).contains(&m) => u32::try_from(m).ok(),
            Some(_) => {
                f.add(
                    "worked_minutes",
                    format!("must be between 1 and {MAX_MINUTES}"),
                );
                None
            }
        };
        let note = f.text(
            "resolution_note",
            &request.resolution_note,
            MAX_DESCRIPTION,
            false,
        );
        f.finish()?;
        let now = self.clock.now();
        let id = id.expect("checked");
        let mut conn = self.pool.acquire().await?;
        let current = self.visible_task(&mut conn, caller, id).await?;
        check_version("task", version.expect("checked"), current.version)?;
        rules::check_active(current.status)?;
        let resolve_time = resolve_time.unwrap_or(now);
        if resolve_time > now {
            return Err(TasksError::invalid(
                "resolve_time",
                "must not be in the future",
            ));
        }
        if resolve_time < current.create_time {
            return Err(TasksError::invalid(
                "resolve_time",
                "must not be before the task was created",
            ));
        }
        let service = match (current.billable, current.post_sale_service_id) {
            (true, Some(id)) => store::services::get(&mut conn, id).await?,
            _ => None,
        };
        drop(conn);
        let mut resolved = current.clone();
        resolved.status = Status::Resolved;
        resolved.resolve_time = Some(resolve_time);
        resolved.worked_minutes = rules::worked_minutes(current.create_time, resolve_time, worked);
        resolved.resolution_note = note.expect("checked");
        resolved.update_time = now;
        resolved.version = current.version + 1;
        let bill = current.billable;
        if bill {
            resolved.billing = Billing::Pending;
            resolved.billing_attempt = current.billing_attempt + 1;
            resolved.billing_error = String::new();
        }
        let mut tx = self.pool.begin().await?;
        if !store::tasks::update(&mut tx, &resolved, current.version).await? {
            return Err(TasksError::StaleEtag("task"));
        }
        store::reminders::clear(&mut tx, resolved.id).await?;
        resolved.reminder_due_time = None;
        if bill {
            self.request_billing(&mut tx, &resolved, service.as_ref(), &caller.subject)
                .await?;
        }
        self.events
            .publish(
                &mut tx,
                resolved.partner_id,
                &caller.subject,
                &ev::TaskResolved {
                    task: Some(convert::task(&resolved, self.today())),
                },
                now,
            )
            .await?;
        self.events.commit(tx).await?;
        Ok(resolved)
    }

    /// Emits `IssueTaskInvoice` for the current billing attempt of `task`, in `tx`. A service
    /// that no longer exists is sent without article and rate: opportunities refuses it with
    /// the reason, and the task's billing fails visibly.
    async fn request_billing(
        &self,
        tx: &mut PgConnection,
        task: &Task,
        service: Option<&PostSaleService>,
        actor: &str,
    ) -> Result<()> {
        let command = ev::IssueTaskInvoice {
            task_id: task.id.to_string(),
            task_title: task.title.clone(),
            resolution_note: task.resolution_note.clone(),
            partner_id: task.partner_id.map(|p| p.to_string()).unwrap_or_default(),
            post_sale_service_id: task
                .post_sale_service_id
                .map(|s| s.to_string())
                .unwrap_or_default(),
            article_id: service
                .map(|s| s.article_id.to_string())
                .unwrap_or_default(),
            hourly_rate: service.map(|s| common::Money {
                units: s.hourly_rate_units,
                currency_code: s.hourly_rate_currency.clone(),
            }),
            worked_minutes: i32::try_from(task.worked_minutes).unwrap_or(i32::MAX),
            resolve_time: task.resolve_time.map(values::timestamp),
            contract_id: task.contract_id.map(|c| c.to_string()).unwrap_or_default(),
            resolved_by: actor.to_owned(),
            billing_attempt: i32::try_from(task.billing_attempt).unwrap_or(i32::MAX),
        };
        self.events
            .bill(tx, actor, &command, task.update_time)
            .await?;
        Ok(())
    }

    async fn retry_billing(
        &self,
        caller: &Caller,
        request: pb::RetryTaskBillingRequest,
    ) -> Result<Task> {
        let mut f = Fields::new();
        let id = f.id("id", &request.id);
        let version = f.etag(&request.etag);
        f.finish()?;
        let id = id.expect("checked");
        let mut conn = self.pool.acquire().await?;
        let current = self.visible_task(&mut conn, caller, id).await?;
        check_version("task", version.expect("checked"), current.version)?;
        rules::check_retry(current.status, current.billing)?;
        let service = match current.post_sale_service_id {
            Some(id) => store::services::get(&mut conn, id).await?,
            None => None,
        };
        drop(conn);
        let mut retried = current.clone();
        retried.billing = Billing::Pending;
        retried.billing_attempt = current.billing_attempt + 1;
        retried.billing_error = String::new();
        retried.invoice_id = None;
        retried.update_time = self.clock.now();
        retried.version = current.version + 1;
        let mut tx = self.pool.begin().await?;
        if !store::tasks::update(&mut tx, &retried, current.version).await? {
            return Err(TasksError::StaleEtag("task"));
        }
        self.request_billing(&mut tx, &retried, service.as_ref(), &caller.subject)
            .await?;
        self.task_updated(
            &mut tx,
            &retried,
            vec!["billing_status".into(), "billing_attempt".into()],
            &caller.subject,
        )
        .await?;
        self.events.commit(tx).await?;
        Ok(retried)
    }

    async fn cancel_task(&self, caller: &Caller, request: pb::CancelTaskRequest) -> Result<Task> {
        let mut f = Fields::new();
        let id = f.id("id", &request.id);
        let version = f.etag(&request.etag);
        let reason = f.text("reason", &request.reason, 2000, false);
        f.finish()?;
        let id = id.expect("checked");
        let mut conn = self.pool.acquire().await?;
        let current = self.visible_task(&mut conn, caller, id).await?;
        check_version("task", version.expect("checked"), current.version)?;
        rules::check_active(current.status)?;
        drop(conn);
        let now = self.clock.now();
        let mut cancelled = current.clone();
        cancelled.status = Status::Cancelled;
        cancelled.cancel_time = Some(now);
        cancelled.cancel_reason = reason.expect("checked");
        // A cancelled task is never billed.
        cancelled.billing = Billing::NotBillable;
        cancelled.update_time = now;
        cancelled.version = current.version + 1;
        let mut tx = self.pool.begin().await?;
        if !store::tasks::update(&mut tx, &cancelled, current.version).await? {
            return Err(TasksError::StaleEtag("task"));
        }
        store::reminders::clear(&mut tx, cancelled.id).await?;
        cancelled.reminder_due_time = None;
        self.task_updated(&mut tx, &cancelled, vec!["status".into()], &caller.subject)
            .await?;
        self.events.commit(tx).await?;
        Ok(cancelled)
    }

    async fn draft_contract(
        &self,
        caller: &Caller,
        request: pb::DraftContractFromTaskRequest,
    ) -> Result<pb::DraftContractFromTaskResponse> {
        let mut f = Fields::new();
        let id = f.id("id", &request.id);
        let kind = match opb::ContractKind::try_from(request.contract_kind) {
            Ok(k @ (opb::ContractKind::Commercial | opb::ContractKind::Subscription)) => Some(k),
            _ => {
                f.add("contract_kind", "is required: COMMERCIAL or SUBSCRIPTION");
                None
            }
        };
        f.text("request_id", &request.request_id, 100, false);
        f.finish()?;
        let id = id.expect("checked");
        let mut conn = self.pool.acquire().await?;
        let task = self.visible_task(&mut conn, caller, id).await?;
        if let Some(contract) = task.drafted_contract_id {
            return Ok(pb::DraftContractFromTaskResponse {
                task: Some(convert::task(&task, self.today())),
                contract_id: contract.to_string(),
            });
        }
        let (Some(partner), Some(service_id)) = (task.partner_id, task.post_sale_service_id) else {
            return Err(TasksError::precondition(
                "a contract is drafted from a task that names a partner and a post-sale service",
            ));
        };
        let service = store::services::get(&mut conn, service_id)
            .await?
            .ok_or_else(|| {
                TasksError::precondition("the task's post-sale service no longer exists")
            })?;
        drop(conn);
        let contract = self
            .opportunities
            .draft_contract(
                caller,
                task.id,
                partner,
                service.article_id,
                kind.expect("checked"),
                format!("Drafted from task: {}", truncate(&task.title, 180)),
            )
            .await?;
        let contract_id = Uuid::parse_str(&contract.id).map_err(|_| {
            TasksError::Unavailable("opportunities answered a contract without id".into())
        })?;
        // Recorded on the task under a row lock: a concurrent draft got the same contract.
        let mut tx = self.pool.begin().await?;
        let mut current = store::tasks::get_for_update(&mut tx, task.id)
            .await?
            .ok_or_else(|| TasksError::not_found("task", task.id))?;
        if current.drafted_contract_id.is_none() {
            let previous = current.version;
            current.drafted_contract_id = Some(contract_id);
            current.update_time = self.clock.now();
            current.version += 1;
            store::tasks::update(&mut tx, &current, previous).await?;
            self.task_updated(
                &mut tx,
                &current,
                vec!["drafted_contract_id".into()],
                &caller.subject,
            )
            .await?;
        }
        self.events.commit(tx).await?;
        Ok(pb::DraftContractFromTaskResponse {
            task: Some(convert::task(&current, self.today())),
            contract_id: contract_id.to_string(),
        })
    }
}

/// Whether `path` differs between `before` and `after`.
fn changed(path: &str, before: &Task, after: &Task) -> bool {
    match path {
        "title" => before.title != after.title,
        "description" => before.description != after.description,
        "partner_id" => before.partner_id != after.partner_id,
        "post_sale_service_id" => before.post_sale_service_id != after.post_sale_service_id,
        "contract_id" => before.contract_id != after.contract_id,
        "deadline_date" => before.deadline_date != after.deadline_date,
        "responsible_staff_id" => before.responsible_staff_id != after.responsible_staff_id,
        "scheduled_start_time" => before.scheduled_start_time != after.scheduled_start_time,
        "expected_duration_minutes" => {
            before.expected_duration_minutes != after.expected_duration_minutes
        }
        "status" => before.status != after.status,
        "billable" => before.billable != after.billable,
        "reminder" => before.reminder != after.reminder,
        "attachments" => before.attachments != after.attachments,
        "origin_document" => before.origin != after.origin,
        _ => false,
    }
}

/// At most `max` characters of `text`, with an ellipsis when cut.
pub(crate) fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
        cut.push('…');
        cut
    }
}

#[tonic::async_trait]
impl pb::task_service_server::TaskService for TasksApi {
    type WatchNewTasksStream = super::watch::WatchStream;

    #[tracing::instrument(skip_all)]
    async fn create_task(
        &self,
        request: tonic::Request<pb::CreateTaskRequest>,
    ) -> Result<tonic::Response<pb::CreateTaskResponse>, tonic::Status> {
        let caller = super::caller(&request, super::EVERY_ROLE)?;
        Ok(tonic::Response::new(
            TasksApi::create_task(self, &caller, request.into_inner()).await?,
        ))
    }

    #[tracing::instrument(skip_all)]
    async fn get_task(
        &self,
        request: tonic::Request<pb::GetTaskRequest>,
    ) -> Result<tonic::Response<pb::Task>, tonic::Status> {
        let caller = super::caller(&request, super::EVERY_ROLE)?;
        let mut f = Fields::new();
        let id = f.id("id", &request.get_ref().id);
        f.finish()?;
        let mut conn = self.pool.acquire().await.map_err(TasksError::from)?;
        let task = self
            .visible_task(&mut conn, &caller, id.expect("checked"))
            .await?;
        Ok(tonic::Response::new(convert::task(&task, self.today())))
    }

    #[tracing::instrument(skip_all)]
    async fn update_task(
        &self,
        request: tonic::Request<pb::UpdateTaskRequest>,
    ) -> Result<tonic::Response<pb::UpdateTaskResponse>, tonic::Status> {
        let caller = super::caller(&request, super::EVERY_ROLE)?;
        Ok(tonic::Response::new(
            TasksApi::update_task(self, &caller, request.into_inner()).await?,
        ))
    }

    #[tracing::instrument(skip_all)]
    async fn list_tasks(
        &self,
        request: tonic::Request<pb::ListTasksRequest>,
    ) -> Result<tonic::Response<pb::ListTasksResponse>, tonic::Status> {
        let caller = super::caller(&request, super::EVERY_ROLE)?;
        Ok(tonic::Response::new(
            TasksApi::list_tasks(self, &caller, request.into_inner()).await?,
        ))
    }

    #[tracing::instrument(skip_all)]
    async fn check_availability(
        &self,
        request: tonic::Request<pb::CheckAvailabilityRequest>,
    ) -> Result<tonic::Response<pb::Availability>, tonic::Status> {
        let caller = super::caller(&request, super::EVERY_ROLE)?;
        Ok(tonic::Response::new(
            TasksApi::check_availability(self, &caller, request.into_inner()).await?,
        ))
    }

    #[tracing::instrument(skip_all)]
    async fn resolve_task(
        &self,
        request: tonic::Request<pb::ResolveTaskRequest>,
    ) -> Result<tonic::Response<pb::Task>, tonic::Status> {
        let caller = super::caller(&request, super::EVERY_ROLE)?;
        let task = TasksApi::resolve_task(self, &caller, request.into_inner()).await?;
        Ok(tonic::Response::new(convert::task(&task, self.today())))
    }

    #[tracing::instrument(skip_all)]
    async fn retry_task_billing(
        &self,
        request: tonic::Request<pb::RetryTaskBillingRequest>,
    ) -> Result<tonic::Response<pb::Task>, tonic::Status> {
        let caller = super::caller(&request, super::EVERY_ROLE)?;
        let task = self.retry_billing(&caller, request.into_inner()).await?;
        Ok(tonic::Response::new(convert::task(&task, self.today())))
    }

    #[tracing::instrument(skip_all)]
    async fn cancel_task(
        &self,
        request: tonic::Request<pb::CancelTaskRequest>,
    ) -> Result<tonic::Response<pb::Task>, tonic::Status> {
        let caller = super::caller(&request, super::EVERY_ROLE)?;
        let task = TasksApi::cancel_task(self, &caller, request.into_inner()).await?;
        Ok(tonic::Response::new(convert::task(&task, self.today())))
    }

    #[tracing::instrument(skip_all)]
    async fn draft_contract_from_task(
        &self,
        request: tonic::Request<pb::DraftContractFromTaskRequest>,
    ) -> Result<tonic::Response<pb::DraftContractFromTaskResponse>, tonic::Status> {
        let caller = super::caller(&request, super::EVERY_ROLE)?;
        Ok(tonic::Response::new(
            self.draft_contract(&caller, request.into_inner()).await?,
        ))
    }

    #[tracing::instrument(skip_all)]
    async fn create_task_reply(
        &self,
        request: tonic::Request<pb::CreateTaskReplyRequest>,
    ) -> Result<tonic::Response<pb::TaskReply>, tonic::Status> {
        let caller = super::caller(&request, super::EVERY_ROLE)?;
        Ok(tonic::Response::new(
            self.create_reply(&caller, request.into_inner()).await?,
        ))
    }

    #[tracing::instrument(skip_all)]
    async fn list_task_replies(
        &self,
        request: tonic::Request<pb::ListTaskRepliesRequest>,
    ) -> Result<tonic::Response<pb::ListTaskRepliesResponse>, tonic::Status> {
        let caller = super::caller(&request, super::EVERY_ROLE)?;
        Ok(tonic::Response::new(
            self.list_replies(&caller, request.into_inner()).await?,
        ))
    }

    #[tracing::instrument(skip_all)]
    async fn list_replies_to_my_tasks(
        &self,
        request: tonic::Request<pb::ListRepliesToMyTasksRequest>,
    ) -> Result<tonic::Response<pb::ListRepliesToMyTasksResponse>, tonic::Status> {
        let caller = super::caller(&request, super::EVERY_ROLE)?;
        Ok(tonic::Response::new(
            self.replies_to_my_tasks(&caller, request.into_inner())
                .await?,
        ))
    }

    #[tracing::instrument(skip_all)]
    async fn create_broadcast(
        &self,
        request: tonic::Request<pb::CreateBroadcastRequest>,
    ) -> Result<tonic::Response<pb::Broadcast>, tonic::Status> {
        let caller = super::caller(&request, super::EVERY_ROLE)?;
        Ok(tonic::Response::new(
            TasksApi::create_broadcast(self, &caller, request.into_inner()).await?,
        ))
    }

    #[tracing::instrument(skip_all)]
    async fn get_broadcast(
        &self,
        request: tonic::Request<pb::GetBroadcastRequest>,
    ) -> Result<tonic::Response<pb::Broadcast>, tonic::Status> {
        let caller = super::caller(&request, super::EVERY_ROLE)?;
        Ok(tonic::Response::new(
            TasksApi::get_broadcast(self, &caller, request.into_inner()).await?,
        ))
    }

    #[tracing::instrument(skip_all)]
    async fn list_broadcasts(
        &self,
        request: tonic::Request<pb::ListBroadcastsRequest>,
    ) -> Result<tonic::Response<pb::ListBroadcastsResponse>, tonic::Status> {
        let caller = super::caller(&request, super::EVERY_ROLE)?;
        Ok(tonic::Response::new(
            TasksApi::list_broadcasts(self, &caller, request.into_inner()).await?,
        ))
    }

    #[tracing::instrument(skip_all)]
    async fn watch_new_tasks(
        &self,
        request: tonic::Request<pb::WatchNewTasksRequest>,
    ) -> Result<tonic::Response<Self::WatchNewTasksStream>, tonic::Status> {
        let caller = super::caller(&request, super::EVERY_ROLE)?;
        Ok(tonic::Response::new(
            self.watch(&caller, request.into_inner()).await?,
        ))
    }

    #[tracing::instrument(skip_all)]
    async fn get_tracking_report(
        &self,
        request: tonic::Request<pb::GetTrackingReportRequest>,
    ) -> Result<tonic::Response<pb::TrackingReport>, tonic::Status> {
        let caller = super::caller(&request, super::EVERY_ROLE)?;
        Ok(tonic::Response::new(
            self.tracking_report(&caller, request.into_inner()).await?,
        ))
    }
}

/// Whether `caller` manages tasks (sees and changes everyone's).
pub(crate) fn is_manager(caller: &Caller) -> bool {
    caller.has_any_role(MANAGER_ROLES)
}
