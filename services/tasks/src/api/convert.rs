//! Domain values as proto messages.

use chrono::NaiveDate;
use crm_platform::values::{date_to_proto, etag_of, timestamp};
use crm_proto::{common, tasks as pb};

use crate::domain::{
    availability::Availability,
    reminders::ReminderSettings,
    staff::{PostSaleService, Staff, StaffCategory},
    task::{Billing, Broadcast, Origin, Reply, Source, Status, Task, is_overdue},
};

fn id_or_empty(id: Option<uuid::Uuid>) -> String {
    id.map(|i| i.to_string()).unwrap_or_default()
}

fn int(v: u32) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

/// A status as the proto enum.
pub fn status(s: Status) -> pb::TaskStatus {
    match s {
        Status::Open => pb::TaskStatus::Open,
        Status::InProgress => pb::TaskStatus::InProgress,
        Status::Resolved => pb::TaskStatus::Resolved,
        Status::Cancelled => pb::TaskStatus::Cancelled,
    }
}

/// A proto status as the domain's; `None` for UNSPECIFIED or unknown numbers.
pub fn status_of(raw: i32) -> Option<Status> {
    match pb::TaskStatus::try_from(raw).ok()? {
        pb::TaskStatus::Open => Some(Status::Open),
        pb::TaskStatus::InProgress => Some(Status::InProgress),
        pb::TaskStatus::Resolved => Some(Status::Resolved),
        pb::TaskStatus::Cancelled => Some(Status::Cancelled),
        pb::TaskStatus::Unspecified => None,
    }
}

/// A source as the proto enum.
pub fn source(s: Source) -> pb::TaskSource {
    match s {
        Source::Manual => pb::TaskSource::Manual,
        Source::FollowUp => pb::TaskSource::FollowUp,
        Source::EmailImport => pb::TaskSource::EmailImport,
        Source::Broadcast => pb::TaskSource::Broadcast,
    }
}

/// A proto source as the domain's; `None` for UNSPECIFIED or unknown numbers.
pub fn source_of(raw: i32) -> Option<Source> {
    match pb::TaskSource::try_from(raw).ok()? {
        pb::TaskSource::Manual => Some(Source::Manual),
        pb::TaskSource::FollowUp => Some(Source::FollowUp),
        pb::TaskSource::EmailImport => Some(Source::EmailImport),
        pb::TaskSource::Broadcast => Some(Source::Broadcast),
        pb::TaskSource::Unspecified => None,
    }
}

/// A billing state as the proto enum.
pub fn billing(b: Billing) -> pb::BillingStatus {
    match b {
        Billing::NotBillable => pb::BillingStatus::NotBillable,
        Billing::NotYetDue => pb::BillingStatus::NotYetDue,
        Billing::Pending => pb::BillingStatus::Pending,
        Billing::Invoiced => pb::BillingStatus::Invoiced,
        Billing::Failed => pb::BillingStatus::Failed,
        Billing::Cancelled => pb::BillingStatus::Cancelled,
    }
}

/// A proto billing state as the domain's; `None` for UNSPECIFIED or unknown numbers.
pub fn billing_of(raw: i32) -> Option<Billing> {
    match pb::BillingStatus::try_from(raw).ok()? {
        pb::BillingStatus::NotBillable => Some(Billing::NotBillable),
        pb::BillingStatus::NotYetDue => Some(Billing::NotYetDue),
        pb::BillingStatus::Pending => Some(Billing::Pending),
        pb::BillingStatus::Invoiced => Some(Billing::Invoiced),
        pb::BillingStatus::Failed => Some(Billing::Failed),
        pb::BillingStatus::Cancelled => Some(Billing::Cancelled),
        pb::BillingStatus::Unspecified => None,
    }
}

/// An origin document as a reference.
pub fn origin(o: &Origin) -> common::DocumentRef {
    common::DocumentRef {
        kind: o.kind,
        id: o.id.to_string(),
        number: o.number.clone(),
    }
}

/// A task as the proto message; `today` decides whether it is overdue.
pub fn task(t: &Task, today: NaiveDate) -> pb::Task {
    pb::Task {
        id: t.id.to_string(),
        title: t.title.clone(),
        description: t.description.clone(),
        partner_id: id_or_empty(t.partner_id),
        post_sale_service_id: id_or_empty(t.post_sale_service_id),
        contract_id: id_or_empty(t.contract_id),
        deadline_date: Some(date_to_proto(t.deadline_date)),
        responsible_staff_id: t.responsible_staff_id.to_string(),
        creator: t.creator.clone(),
        creator_staff_id: id_or_empty(t.creator_staff_id),
        scheduled_start_time: t.scheduled_start_time.map(timestamp),
        expected_duration_minutes: int(t.expected_duration_minutes),
        status: status(t.status) as i32,
        billable: t.billable,
        invoiced: t.billing == Billing::Invoiced,
        source: source(t.source) as i32,
        source_reference: t.source_reference.clone(),
        origin_document: t.origin.as_ref().map(origin),
        broadcast_id: id_or_empty(t.broadcast_id),
        reminder: Some(pb::TaskReminder {
            email: t.reminder.email,
            in_app: t.reminder.in_app,
            days_before: t.reminder.days_before.map(int),
            due_time: t.reminder_due_time.map(timestamp),
            sent_time: t.reminder_sent_time.map(timestamp),
        }),
        attachments: t.attachments.iter().map(|a| a.to_proto()).collect(),
        start_time: t.start_time.map(timestamp),
        resolve_time: t.resolve_time.map(timestamp),
        worked_minutes: int(t.worked_minutes),
        resolution_note: t.resolution_note.clone(),
        billing_status: billing(t.billing) as i32,
        billing_error: t.billing_error.clone(),
        invoice_id: id_or_empty(t.invoice_id),
        estimate_offer_id: id_or_empty(t.estimate_offer_id),
        drafted_contract_id: id_or_empty(t.drafted_contract_id),
        reply_count: t.reply_count,
        overdue: is_overdue(t.status, t.deadline_date, today),
        create_time: Some(timestamp(t.create_time)),
        update_time: Some(timestamp(t.update_time)),
        etag: etag_of(t.version),
        billing_attempt: int(t.billing_attempt),
    }
}

/// A reply as the proto message.
pub fn reply(r: &Reply) -> pb::TaskReply {
    pb::TaskReply {
        id: r.id.to_string(),
        task_id: r.task_id.to_string(),
        task_title: r.task_title.clone(),
        text: r.text.clone(),
        attachments: r.attachments.iter().map(|a| a.to_proto()).collect(),
        author: r.author.clone(),
        author_staff_id: id_or_empty(r.author_staff_id),
        create_time: Some(timestamp(r.create_time)),
    }
}

/// A staff member as the proto message.
pub fn staff(s: &Staff) -> pb::Staff {
    pb::Staff {
        id: s.id.to_string(),
        name: s.name.clone(),
        email: s.email.clone(),
        user_name: s.user_name.clone().unwrap_or_default(),
        category_ids: s.category_ids.iter().map(ToString::to_string).collect(),
        available_minutes_per_day: Some(int(s.schedule.available_minutes_per_day)),
        work_start_minute: Some(int(s.schedule.work_start_minute)),
        work_end_minute: Some(int(s.schedule.work_end_minute)),
        working_weekdays: s
            .schedule
            .working_weekdays
            .iter()
            .map(|d| int(*d))
            .collect(),
        phone: s.phone.clone(),
        active: s.schedule.active,
        create_time: Some(timestamp(s.create_time)),
        update_time: Some(timestamp(s.update_time)),
        etag: etag_of(s.version),
    }
}

/// A category as the proto message.
pub fn category(c: &StaffCategory) -> pb::StaffCategory {
    pb::StaffCategory {
        id: c.id.to_string(),
        name: c.name.clone(),
        description: c.description.clone(),
        member_count: i32::try_from(c.member_count).unwrap_or(i32::MAX),
        create_time: Some(timestamp(c.create_time)),
        update_time: Some(timestamp(c.update_time)),
        etag: etag_of(c.version),
    }
}

/// A post-sale service as the proto message.
pub fn post_sale_service(s: &PostSaleService) -> pb::PostSaleService {
    pb::PostSaleService {
        id: s.id.to_string(),
        name: s.name.clone(),
        description: s.description.clone(),
        article_id: s.article_id.to_string(),
        hourly_rate: Some(common::Money {
            units: s.hourly_rate_units,
            currency_code: s.hourly_rate_currency.clone(),
        }),
        active: s.active,
        create_time: Some(timestamp(s.create_time)),
        update_time: Some(timestamp(s.update_time)),
        etag: etag_of(s.version),
    }
}

/// A broadcast as the proto message.
pub fn broadcast(b: &Broadcast) -> pb::Broadcast {
    pb::Broadcast {
        id: b.id.to_string(),
        title: b.title.clone(),
        description: b.description.clone(),
        staff_ids: b.staff_ids.iter().map(ToString::to_string).collect(),
        category_ids: b.category_ids.iter().map(ToString::to_string).collect(),
        partner_id: id_or_empty(b.partner_id),
        deadline_date: Some(date_to_proto(b.deadline_date)),
        reminder: b.reminder.map(|r| pb::TaskReminder {
            email: r.email,
            in_app: r.in_app,
            days_before: r.days_before.map(int),
            due_time: None,
            sent_time: None,
        }),
        origin_document: b.origin.as_ref().map(origin),
        task_ids: b.task_ids.iter().map(ToString::to_string).collect(),
        creator: b.creator.clone(),
        create_time: Some(timestamp(b.create_time)),
    }
}

/// The reminder settings as the proto message.
pub fn reminder_settings(
    s: &ReminderSettings,
    update_time: chrono::DateTime<chrono::Utc>,
    version: i64,
) -> pb::ReminderSettings {
    pb::ReminderSettings {
        send_in_app: s.send_in_app,
        send_email: s.send_email,
        default_days_before: int(s.default_days_before),
        send_at_minute: int(s.send_at_minute),
        update_time: Some(timestamp(update_time)),
        etag: etag_of(version),
    }
}

/// An availability check as the proto message; `visible` tells whether the caller may see an
/// overlapping task's title.
pub fn availability(
    staff_id: uuid::Uuid,
    a: &Availability,
    visible: impl Fn(uuid::Uuid) -> bool,
) -> pb::Availability {
    pb::Availability {
        staff_id: staff_id.to_string(),
        warning: a.warning,
        days: a
            .days
            .iter()
            .map(|d| pb::DayLoad {
                day: Some(date_to_proto(d.day)),
                available_minutes: int(d.available_minutes),
                booked_minutes: int(d.booked_minutes),
                requested_minutes: int(d.requested_minutes),
                overbooked: d.overbooked,
                outside_working_minutes: int(d.outside_working_minutes),
            })
            .collect(),
        overlaps: a
            .overlaps
            .iter()
            .map(|o| pb::TaskOverlap {
                task_id: o.task_id.to_string(),
                title: if visible(o.task_id) {
                    o.title.clone()
                } else {
                    String::new()
                },
                scheduled_start_time: Some(timestamp(o.start)),
                expected_duration_minutes: int(o.minutes),
                overlap_minutes: int(o.overlap_minutes),
            })
            .collect(),
        summary: a.summary.clone(),
    }
}
