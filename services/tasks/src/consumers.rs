//! The events tasks consumes, each applied once (the platform consumer records the envelope id
//! in the same transaction as the effect):
//!
//! - `crm.events.opportunities`:
//!   - `OpportunityStageChanged` with a follow-up date (O4): a task for the stage's delegate
//!     (source FOLLOW_UP, reference the stage change, deadline the follow-up date, creator the
//!     user who changed the stage), or, when the delegate does not log in, an email notice to
//!     their staff address. Later stage changes and the loss of the opportunity do not touch
//!     its open follow-up tasks: they are added to their threads as notes (replies without an
//!     author), so the responsible decides what to do with the task.
//!   - `OfferIssued` of a service estimate, `InvoiceIssued`, `InvoiceCancelled`,
//!     `TaskInvoiceRejected` (T9): the task's estimate, invoice and billing state, for the
//!     current billing attempt only.
//! - `crm.events.email-import`: `EmailImported` (E3): a task on the matched partner holding
//!   the message.

use chrono::Utc;
use crm_platform::{
    calendar,
    events::{EventHandler, HandlerError, decode_payload},
    files::Attachment,
    values,
};
use crm_proto::{
    common::DocumentKind,
    events::{self as ev, Envelope},
    notifications::NotificationKind,
    opportunities::{self as opb, OpportunityStage},
};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::{
    api::TasksApi,
    domain::{
        reminders::ReminderChoice,
        task::{
            self as rules, Billing, BillingAnswer, Origin, Reply, Source, Status, Task, text_start,
            working_days_after,
        },
    },
    error::TasksError,
    store,
};

/// A failure of the database or the outbox: retried later.
fn retry(err: impl Into<TasksError>) -> HandlerError {
    HandlerError::retry(anyhow::Error::new(err.into()))
}

fn permanent(reason: String) -> HandlerError {
    HandlerError::permanent(anyhow::anyhow!(reason))
}

fn uuid_of(raw: &str, what: &str) -> Result<Uuid, HandlerError> {
    Uuid::parse_str(raw).map_err(|_| permanent(format!("{what} {raw:?} is not a UUID")))
}

/// A stage for people: "negotiation".
fn stage_name(raw: i32) -> String {
    OpportunityStage::try_from(raw)
        .map(|s| {
            s.as_str_name()
                .trim_start_matches("OPPORTUNITY_STAGE_")
                .to_ascii_lowercase()
        })
        .unwrap_or_else(|_| "an unknown stage".into())
}

/// Applies opportunities' events.
pub struct OpportunityEvents {
    /// The handlers whose task operations these events use.
    pub api: TasksApi,
}

impl EventHandler for OpportunityEvents {
    async fn handle(&self, tx: &mut PgConnection, envelope: &Envelope) -> Result<(), HandlerError> {
        if let Some(e) = decode_payload::<ev::OpportunityStageChanged>(envelope)? {
            let (Some(opportunity), Some(change)) = (e.opportunity, e.stage_change) else {
                return Err(permanent("a stage change without its opportunity".into()));
            };
            self.annotate_follow_ups(tx, &opportunity, &change, envelope, None)
                .await?;
            return self.follow_up(tx, &opportunity, &change, envelope).await;
        }
        if let Some(e) = decode_payload::<ev::OpportunityLost>(envelope)? {
            let (Some(opportunity), Some(change)) = (e.opportunity, e.stage_change) else {
                return Err(permanent("a loss without its opportunity".into()));
            };
            return self
                .annotate_follow_ups(
                    tx,
                    &opportunity,
                    &change,
                    envelope,
                    Some(&e.lost_reason_name),
                )
                .await;
        }
        if let Some(e) = decode_payload::<ev::OfferIssued>(envelope)? {
            let Some(offer) = e.offer else { return Ok(()) };
            if offer.task_id.is_empty()
                || offer.purpose != opb::OfferPurpose::ServiceEstimate as i32
            {
                return Ok(());
            }
            let task_id = uuid_of(&offer.task_id, "offer.task_id")?;
            let offer_id = uuid_of(&offer.id, "offer.id")?;
            return self
                .change_task(tx, task_id, envelope, |t| {
                    (t.estimate_offer_id != Some(offer_id)).then(|| {
                        t.estimate_offer_id = Some(offer_id);
                        vec!["estimate_offer_id".to_owned()]
                    })
                })
                .await;
        }
        if let Some(e) = decode_payload::<ev::InvoiceIssued>(envelope)? {
            let Some(invoice) = e.invoice else {
                return Ok(());
            };
            return self
                .billing_answer(tx, &invoice, BillingAnswer::Invoiced, envelope)
                .await;
        }
        if let Some(e) = decode_payload::<ev::InvoiceCancelled>(envelope)? {
            let Some(invoice) = e.invoice else {
                return Ok(());
            };
            return self
                .billing_answer(tx, &invoice, BillingAnswer::InvoiceCancelled, envelope)
                .await;
        }
        if let Some(e) = decode_payload::<ev::TaskInvoiceRejected>(envelope)? {
            let task_id = uuid_of(&e.task_id, "task_id")?;
            let attempt = u32::try_from(e.billing_attempt).unwrap_or(0);
            let reason = e.reason;
            return self
                .change_task(tx, task_id, envelope, |t| {
                    let next = rules::after_answer(
                        t.billing,
                        t.billing_attempt,
                        attempt,
                        BillingAnswer::Rejected,
                    )?;
                    t.billing = next;
                    t.billing_error = reason.clone();
                    Some(vec![
                        "billing_status".to_owned(),
                        "billing_error".to_owned(),
                    ])
                })
                .await;
        }
        Ok(())
    }
}

impl OpportunityEvents {
    /// Applies `change` to task `task_id` under a row lock: when it returns the changed fields,
    /// the task is stored with a new version and `TaskUpdated` published. An unknown task is
    /// logged and skipped (its events may outlive it in a replayed stream).
    async fn change_task(
        &self,
        tx: &mut PgConnection,
        task_id: Uuid,
        envelope: &Envelope,
        change: impl FnOnce(&mut Task) -> Option<Vec<String>>,
    ) -> Result<(), HandlerError> {
        let Some(current) = store::tasks::get_for_update(tx, task_id)
            .await
            .map_err(retry)?
        else {
            tracing::warn!(%task_id, event = %envelope.r#type, "event about an unknown task");
            return Ok(());
        };
        let mut updated = current.clone();
        let Some(changed) = change(&mut updated) else {
            return Ok(());
        };
        updated.update_time = Utc::now();
        updated.version = current.version + 1;
        store::tasks::update(tx, &updated, current.version)
            .await
            .map_err(retry)?;
        self.api
            .task_updated(tx, &updated, changed, &envelope.actor)
            .await
            .map_err(retry)?;
        Ok(())
    }

    async fn billing_answer(
        &self,
        tx: &mut PgConnection,
        invoice: &opb::Invoice,
        answer: BillingAnswer,
        envelope: &Envelope,
    ) -> Result<(), HandlerError> {
        if invoice.task_id.is_empty() {
            return Ok(());
        }
        let task_id = uuid_of(&invoice.task_id, "invoice.task_id")?;
        let invoice_id = uuid_of(&invoice.id, "invoice.id")?;
        let attempt = u32::try_from(invoice.task_billing_attempt).unwrap_or(0);
        self.change_task(tx, task_id, envelope, |t| {
            let next = rules::after_answer(t.billing, t.billing_attempt, attempt, answer)?;
            t.billing = next;
            t.billing_error.clear();
            t.invoice_id = Some(invoice_id);
            Some(vec!["billing_status".to_owned(), "invoice_id".to_owned()])
        })
        .await
    }

    /// The follow-up a stage change asks for (O4).
    async fn follow_up(
        &self,
        tx: &mut PgConnection,
        opportunity: &opb::Opportunity,
        change: &opb::StageChange,
        envelope: &Envelope,
    ) -> Result<(), HandlerError> {
        let Some(deadline) = values::date(change.follow_up_date.as_ref())
            .map_err(|reason| permanent(format!("follow_up_date {reason}")))?
        else {
            return Ok(());
        };
        let delegate = if change.delegate_staff_id.is_empty() {
            &opportunity.owner_staff_id
        } else {
            &change.delegate_staff_id
        };
        let delegate = uuid_of(delegate, "follow-up delegate")?;
        let staff = store::staff::get(tx, delegate)
            .await
            .map_err(retry)?
            .ok_or_else(|| {
                permanent(format!(
                    "the follow-up delegate {delegate} is not a staff member of tasks"
                ))
            })?;
        let title = format!(
            "Follow-up: {}",
            crate::api::truncate(&opportunity.title, 180)
        );
        let partner_id = Uuid::parse_str(&opportunity.partner_id).ok();
        let at = Utc::now();
        if staff.user_name.is_none() {
            if staff.email.is_empty() {
                return Err(permanent(format!(
                    "the follow-up delegate {} neither logs in nor has an email address",
                    staff.name
                )));
            }
            // Not a user: the delegate hears by email (O4).
            let command = ev::NotificationRequested {
                idempotency_key: format!("follow-up:{}", change.id),
                kind: NotificationKind::FollowUpNotice as i32,
                in_app: false,
                email: true,
                recipient_user: String::new(),
                recipient_email: staff.email.clone(),
                recipient_name: staff.name.clone(),
                recipient_staff_id: staff.id.to_string(),
                title,
                body_text: format!(
                    "Please follow up on the opportunity \"{}\" by {deadline}.\n\n{}",
                    opportunity.title, change.follow_up_note
                ),
                document: Some(crate::opportunities::document_ref(
                    DocumentKind::Opportunity,
                    uuid_of(&opportunity.id, "opportunity.id")?,
                )),
                partner_id: opportunity.partner_id.clone(),
                expire_time: None,
            };
            self.api
                .events
                .notify(tx, &envelope.actor, &command, at)
                .await
                .map_err(retry)?;
            return Ok(());
        }
        let (settings, _, _) = store::settings::get(tx).await.map_err(retry)?;
        let creator_staff_id = self
            .api
            .staff_of_user(tx, &envelope.actor)
            .await
            .map_err(retry)?;
        let opportunity_id = uuid_of(&opportunity.id, "opportunity.id")?;
        let task = new_task(NewTask {
            title,
            description: change.follow_up_note.clone(),
            partner_id,
            deadline,
            responsible: staff.id,
            creator: envelope.actor.clone(),
            creator_staff_id,
            source: Source::FollowUp,
            reference: change.id.clone(),
            origin: Some(Origin {
                kind: DocumentKind::Opportunity as i32,
                id: opportunity_id,
                number: String::new(),
            }),
            reminder: ReminderChoice::company_default(&settings),
            attachments: Vec::new(),
            at,
        });
        self.api
            .store_new_task(tx, task, &staff, &settings, &envelope.actor)
            .await
            .map_err(retry)?;
        Ok(())
    }

    /// Notes a later stage change (or the loss) in the threads of the opportunity's open
    /// follow-up tasks, other than the one this change creates.
    async fn annotate_follow_ups(
        &self,
        tx: &mut PgConnection,
        opportunity: &opb::Opportunity,
        change: &opb::StageChange,
        envelope: &Envelope,
        lost_reason: Option<&str>,
    ) -> Result<(), HandlerError> {
        let opportunity_id = uuid_of(&opportunity.id, "opportunity.id")?;
        let tasks = store::tasks::open_follow_ups(tx, opportunity_id)
            .await
            .map_err(retry)?;
        let when = values::instant(change.change_time.as_ref())
            .ok()
            .flatten()
            .unwrap_or_else(Utc::now);
        let on = calendar::day_of(when, self.api.zone);
        let by = if envelope.actor.is_empty() || envelope.actor.starts_with("service:") {
            String::new()
        } else {
            format!(" by {}", envelope.actor)
        };
        let text = match lost_reason {
            Some(reason) => {
                let note = if change.lost_note.is_empty() {
                    String::new()
                } else {
                    format!(" — {}", change.lost_note)
                };
                format!(
                    "The opportunity \"{}\" was marked lost on {on}{by}: {reason}{note}. This \
                     follow-up is still open.",
                    opportunity.title
                )
            }
            None => format!(
                "The opportunity \"{}\" moved from {} to {} on {on}{by}. This follow-up is \
                 still open.",
                opportunity.title,
                stage_name(change.previous_stage),
                stage_name(change.stage)
            ),
        };
        for task in tasks.iter().filter(|t| t.source_reference != change.id) {
            let reply = Reply {
                id: Uuid::now_v7(),
                task_id: task.id,
                task_title: task.title.clone(),
                text: text.clone(),
                attachments: Vec::new(),
                author: String::new(),
                author_staff_id: None,
                create_time: when.max(task.create_time),
            };
            self.api
                .store_reply(tx, task, &reply, &envelope.actor)
                .await
                .map_err(retry)?;
        }
        Ok(())
    }
}

/// What a task made from an event starts with.
struct NewTask {
    title: String,
    description: String,
    partner_id: Option<Uuid>,
    deadline: chrono::NaiveDate,
    responsible: Uuid,
    creator: String,
    creator_staff_id: Option<Uuid>,
    source: Source,
    reference: String,
    origin: Option<Origin>,
    reminder: ReminderChoice,
    attachments: Vec<Attachment>,
    at: chrono::DateTime<Utc>,
}

fn new_task(n: NewTask) -> Task {
    Task {
        id: Uuid::now_v7(),
        title: n.title,
        description: n.description,
        partner_id: n.partner_id,
        post_sale_service_id: None,
        contract_id: None,
        deadline_date: n.deadline,
        responsible_staff_id: n.responsible,
        creator: n.creator,
        creator_staff_id: n.creator_staff_id,
        scheduled_start_time: None,
        expected_duration_minutes: 0,
        status: Status::Open,
        billable: false,
        source: n.source,
        source_reference: n.reference,
        origin: n.origin,
        broadcast_id: None,
        reminder: n.reminder,
        reminder_due_time: None,
        reminder_sent_time: None,
        attachments: n.attachments,
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
        create_time: n.at,
        update_time: n.at,
        version: 1,
    }
}

/// Makes tasks of imported messages (E3).
pub struct EmailImportEvents {
    /// The handlers whose task operations these events use.
    pub api: TasksApi,
}

impl EventHandler for EmailImportEvents {
    async fn handle(&self, tx: &mut PgConnection, envelope: &Envelope) -> Result<(), HandlerError> {
        let Some(imported) = decode_payload::<ev::EmailImported>(envelope)? else {
            return Ok(());
        };
        let Some(message) = imported.message else {
            return Err(permanent("EmailImported without its message".into()));
        };
        let Some(partner_id) = Uuid::parse_str(&message.partner_id).ok() else {
            tracing::warn!(message = %message.id, "imported message without a partner: no task");
            return Ok(());
        };
        let responsible = match Uuid::parse_str(&imported.responsible_staff_id) {
            Ok(id) => id,
            Err(_) => self
                .api
                .settings
                .email_tasks
                .default_responsible()
                .ok_or_else(|| {
                    permanent(
                        "the imported message names no responsible and \
                         email_tasks.default_responsible_staff_id is not set"
                            .into(),
                    )
                })?,
        };
        let staff = store::staff::get(tx, responsible)
            .await
            .map_err(retry)?
            .ok_or_else(|| permanent(format!("the responsible {responsible} is not staff")))?;
        if store::tasks::by_cause(tx, Source::EmailImport, &message.id)
            .await
            .map_err(retry)?
            .is_some()
        {
            return Ok(());
        }
        let at = Utc::now();
        let imported_at = values::instant(message.import_time.as_ref())
            .ok()
            .flatten()
            .unwrap_or(at);
        let deadline = working_days_after(
            calendar::day_of(imported_at, self.api.zone),
            self.api.settings.email_tasks.deadline_working_days,
        );
        let sender = if message.from_name.is_empty() {
            message.from_address.clone()
        } else if message.from_address.is_empty() {
            message.from_name.clone()
        } else {
            format!("{} <{}>", message.from_name, message.from_address)
        };
        let title = if imported.task_title.trim().is_empty() {
            format!("Email from {sender}")
        } else {
            imported.task_title.trim().to_owned()
        };
        let sent = values::instant(message.sent_time.as_ref())
            .ok()
            .flatten()
            .map(|t| t.to_rfc3339())
            .unwrap_or_default();
        let full_text = format!(
            "From: {sender}\nSubject: {}\nSent: {sent}\n\n{}",
            message.subject, message.body_text
        );
        let (description, cut) = text_start(&full_text, crate::api::MAX_DESCRIPTION);
        let mut attachments: Vec<Attachment> = Vec::new();
        if let Some(original) = &message.original_file {
            attachments.push(attachment_of(original));
        }
        if cut {
            // The whole text as a file, so nothing of a long message is lost.
            let bytes = bytes::Bytes::from(full_text.clone().into_bytes());
            let size = i64::try_from(bytes.len()).unwrap_or(i64::MAX);
            let key = self.api.blobs.put(bytes).await.map_err(retry)?;
            attachments.push(Attachment {
                id: Uuid::now_v7(),
                blob_key: key,
                file_name: "message.txt".into(),
                content_type: "text/plain; charset=utf-8".into(),
                size_bytes: size,
            });
        }
        attachments.extend(
            message
                .attachments
                .iter()
                .filter_map(|a| a.file.as_ref())
                .map(attachment_of),
        );
        let (settings, _, _) = store::settings::get(tx).await.map_err(retry)?;
        let creator_staff_id = self
            .api
            .staff_of_user(tx, &message.importer)
            .await
            .map_err(retry)?;
        let task = new_task(NewTask {
            title: crate::api::truncate(&title, crate::api::MAX_TITLE),
            description,
            partner_id: Some(partner_id),
            deadline,
            responsible: staff.id,
            creator: message.importer.clone(),
            creator_staff_id,
            source: Source::EmailImport,
            reference: message.id.clone(),
            origin: None,
            reminder: ReminderChoice::company_default(&settings),
            attachments,
            at,
        });
        self.api
            .store_new_task(tx, task, &staff, &settings, &envelope.actor)
            .await
            .map_err(retry)?;
        Ok(())
    }
}

fn attachment_of(file: &crm_proto::common::AttachmentRef) -> Attachment {
    Attachment {
        id: Uuid::parse_str(&file.id).unwrap_or_else(|_| Uuid::now_v7()),
        blob_key: file.blob_key.clone(),
        file_name: file.file_name.clone(),
        content_type: file.content_type.clone(),
        size_bytes: file.size_bytes,
    }
}
