//! Broadcasts (T5): one task per distinct recipient, over individual staff and whole
//! categories, created in one transaction with the broadcast and idempotent by request id.

use crm_platform::auth::Caller;
use crm_proto::tasks as pb;
use uuid::Uuid;

use super::{
    Fields, Page, TasksApi, convert,
    tasks::{MAX_DESCRIPTION, MAX_TITLE, is_manager, origin_of, reminder_choice},
    time_range,
};
use crate::{
    domain::{
        reminders::ReminderChoice,
        task::{Billing, Broadcast, Source, Status, Task},
    },
    error::{Result, TasksError},
    store::{self, broadcasts::Cursor},
};

/// Most staff or categories named in one broadcast.
const MAX_NAMED: usize = 500;

fn ids(f: &mut Fields, field: &str, raw: &[String]) -> Option<Vec<Uuid>> {
    if raw.len() > MAX_NAMED {
        f.add(field, format!("must name at most {MAX_NAMED}"));
        return None;
    }
    let mut out: Vec<Uuid> = Vec::with_capacity(raw.len());
    let mut ok = true;
    for (i, r) in raw.iter().enumerate() {
        match f.id(&format!("{field}[{i}]"), r) {
            // Named twice is still one recipient.
            Some(id) if !out.contains(&id) => out.push(id),
            Some(_) => {}
            None => ok = false,
        }
    }
    ok.then_some(out)
}

impl TasksApi {
    pub(super) async fn create_broadcast(
        &self,
        caller: &Caller,
        request: pb::CreateBroadcastRequest,
    ) -> Result<pb::Broadcast> {
        let mut f = Fields::new();
        let request_id = f.text("request_id", &request.request_id, 100, false);
        let Some(given) = request.broadcast else {
            f.add("broadcast", "is required");
            return Err(f.finish().expect_err("refused").into());
        };
        let title = f.text("broadcast.title", &given.title, MAX_TITLE, true);
        let description = f.text(
            "broadcast.description",
            &given.description,
            MAX_DESCRIPTION,
            false,
        );
        let staff_ids = ids(&mut f, "broadcast.staff_ids", &given.staff_ids);
        let category_ids = ids(&mut f, "broadcast.category_ids", &given.category_ids);
        if given.staff_ids.is_empty() && given.category_ids.is_empty() {
            f.add(
                "broadcast.staff_ids",
                "name at least one recipient (staff_ids or category_ids)",
            );
        }
        let partner_id = f.optional_id("broadcast.partner_id", &given.partner_id);
        let deadline = match f.date("broadcast.deadline_date", given.deadline_date.as_ref()) {
            Some(Some(d)) => Some(d),
            Some(None) => {
                f.add("broadcast.deadline_date", "is required");
                None
            }
            None => None,
        };
        let reminder = reminder_choice(&mut f, "broadcast.reminder", given.reminder.as_ref());
        let origin = origin_of(
            &mut f,
            "broadcast.origin_document",
            given.origin_document.as_ref(),
        );
        f.finish()?;
        let (staff_ids, category_ids) =
            (staff_ids.expect("checked"), category_ids.expect("checked"));

        let mut conn = self.pool.acquire().await?;
        // Every named person must be active staff, every named category must exist.
        let named = store::staff::get_many(&mut conn, &staff_ids).await?;
        let mut f = Fields::new();
        for (i, id) in staff_ids.iter().enumerate() {
            if !named.iter().any(|s| s.id == *id && s.schedule.active) {
                f.add(
                    format!("broadcast.staff_ids[{i}]"),
                    "no such active staff member",
                );
            }
        }
        let existing = store::staff::existing_categories(&mut conn, &category_ids).await?;
        for (i, id) in category_ids.iter().enumerate() {
            if !existing.contains(id) {
                f.add(format!("broadcast.category_ids[{i}]"), "no such category");
            }
        }
        f.finish()?;
        let recipients = store::staff::recipients(&mut conn, &staff_ids, &category_ids).await?;
        if recipients.is_empty() {
            return Err(TasksError::invalid(
                "broadcast.category_ids",
                "the categories have no active members",
            ));
        }
        let (settings, _, _) = store::settings::get(&mut conn).await?;
        let creator_staff_id = self.staff_of_user(&mut conn, &caller.subject).await?;
        drop(conn);

        let now = self.clock.now();
        let mut broadcast = Broadcast {
            id: Uuid::now_v7(),
            title: title.expect("checked"),
            description: description.expect("checked"),
            staff_ids,
            category_ids,
            partner_id: partner_id.expect("checked"),
            deadline_date: deadline.expect("checked"),
            reminder: reminder.expect("checked"),
            origin: origin.expect("checked"),
            task_ids: Vec::new(),
            creator: caller.subject.clone(),
            create_time: now,
        };
        let mut tx = self.pool.begin().await?;
        let request_id = request_id.expect("checked");
        if !request_id.is_empty()
            && let Some(existing) = store::claim_request(
                &mut tx,
                "broadcast",
                &caller.request_scope(),
                &request_id,
                broadcast.id,
                now,
            )
            .await?
        {
            let existing = store::broadcasts::get(&mut tx, existing)
                .await?
                .ok_or_else(|| TasksError::not_found("broadcast", existing))?;
            return Ok(convert::broadcast(&existing));
        }
        store::broadcasts::insert(&mut tx, &broadcast).await?;
        let choice = broadcast
            .reminder
            .unwrap_or_else(|| ReminderChoice::company_default(&settings));
        for recipient in &recipients {
            let task = Task {
                id: Uuid::now_v7(),
                title: broadcast.title.clone(),
                description: broadcast.description.clone(),
                partner_id: broadcast.partner_id,
                post_sale_service_id: None,
                contract_id: None,
                deadline_date: broadcast.deadline_date,
                responsible_staff_id: recipient.id,
                creator: caller.subject.clone(),
                creator_staff_id,
                scheduled_start_time: None,
                expected_duration_minutes: 0,
                status: Status::Open,
                billable: false,
                source: Source::Broadcast,
                source_reference: broadcast.id.to_string(),
                origin: broadcast.origin.clone(),
                broadcast_id: Some(broadcast.id),
                reminder: choice,
                reminder_due_time: None,
                reminder_sent_time: None,
                attachments: Vec::new(),
                start_time: None,
                resolve_time: None,
                worked_minutes: 0,
                resolution_note: String::new(),
                cancel_time: None,
                cancel_reason: String::new(),
                billing: Billing::NotBillable,
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
            broadcast.task_ids.push(task.id);
            self.store_new_task(&mut tx, task, recipient, &settings, &caller.subject)
                .await?;
        }
        self.events.commit(tx).await?;
        broadcast.task_ids.sort();
        Ok(convert::broadcast(&broadcast))
    }

    pub(super) async fn get_broadcast(
        &self,
        caller: &Caller,
        request: pb::GetBroadcastRequest,
    ) -> Result<pb::Broadcast> {
        let mut f = Fields::new();
        let id = f.id("id", &request.id);
        f.finish()?;
        let id = id.expect("checked");
        let mut conn = self.pool.acquire().await?;
        let broadcast = store::broadcasts::get(&mut conn, id)
            .await?
            .filter(|b| is_manager(caller) || b.creator == caller.subject)
            .ok_or_else(|| TasksError::not_found("broadcast", id))?;
        Ok(convert::broadcast(&broadcast))
    }

    pub(super) async fn list_broadcasts(
        &self,
        caller: &Caller,
        request: pb::ListBroadcastsRequest,
    ) -> Result<pb::ListBroadcastsResponse> {
        let mut f = Fields::new();
        let (from, to) = time_range(&mut f, "period", request.period.as_ref());
        f.finish()?;
        let creator = (!is_manager(caller)).then(|| caller.subject.clone());
        let page = Page::<Cursor>::of(
            request.page_size,
            &request.page_token,
            &(from, to, &creator),
        )?;
        let mut conn = self.pool.acquire().await?;
        let mut rows = store::broadcasts::list(
            &mut conn,
            creator.as_deref(),
            from,
            to,
            page.after.as_ref(),
            page.limit(),
        )
        .await?;
        let next_page_token = page.finish(&mut rows, |b| (b.create_time, b.id));
        Ok(pb::ListBroadcastsResponse {
            broadcasts: rows.iter().map(convert::broadcast).collect(),
            next_page_token,
        })
    }
}
