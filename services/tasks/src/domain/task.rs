//! A task's life (T2, T9): its status, where it came from, its billing, and the arithmetic of
//! resolving it.
//!
//! - Status: open ↔ in progress (UpdateTask); open or in progress → resolved (ResolveTask) or
//!   cancelled (CancelTask). Resolved and cancelled are final.
//! - Billing of a billable task: not yet due → (resolve) pending → invoiced when opportunities
//!   issues the invoice, or failed when it refuses; an invoiced task whose invoice is cancelled
//!   becomes cancelled. Failed or cancelled → (RetryTaskBilling) pending again, with the next
//!   attempt number. Answers about an older attempt are ignored: only the current attempt moves
//!   the task.

use chrono::{DateTime, Datelike as _, Days, NaiveDate, Utc, Weekday};
use crm_platform::{db_enum, files::Attachment};
use uuid::Uuid;

use super::reminders::ReminderChoice;

/// The document a task was created from (an offer, an order…), as a reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    /// `crm.common.v1.DocumentKind` number.
    pub kind: i32,
    /// Its id.
    pub id: Uuid,
    /// Its number, when it has one.
    pub number: String,
}

/// A task (T2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Task {
    /// Its id.
    pub id: Uuid,
    /// Title.
    pub title: String,
    /// Description.
    pub description: String,
    /// Beneficiary partner.
    pub partner_id: Option<Uuid>,
    /// Requested post-sale service (T7).
    pub post_sale_service_id: Option<Uuid>,
    /// Contract, for information.
    pub contract_id: Option<Uuid>,
    /// Deadline day.
    pub deadline_date: NaiveDate,
    /// Responsible staff member.
    pub responsible_staff_id: Uuid,
    /// User who created it; empty for the system.
    pub creator: String,
    /// The creator's staff record, when linked.
    pub creator_staff_id: Option<Uuid>,
    /// Scheduled start.
    pub scheduled_start_time: Option<DateTime<Utc>>,
    /// Expected duration in minutes.
    pub expected_duration_minutes: u32,
    /// Status.
    pub status: Status,
    /// Invoiced to the partner when resolved.
    pub billable: bool,
    /// What created it.
    pub source: Source,
    /// Id of what created it.
    pub source_reference: String,
    /// The document it was created from.
    pub origin: Option<Origin>,
    /// The broadcast that created it.
    pub broadcast_id: Option<Uuid>,
    /// How its responsible is reminded.
    pub reminder: ReminderChoice,
    /// When the pending reminder is due (read from the reminders table).
    pub reminder_due_time: Option<DateTime<Utc>>,
    /// When the last reminder was sent.
    pub reminder_sent_time: Option<DateTime<Utc>>,
    /// Files.
    pub attachments: Vec<Attachment>,
    /// First move to in progress.
    pub start_time: Option<DateTime<Utc>>,
    /// When resolved.
    pub resolve_time: Option<DateTime<Utc>>,
    /// Minutes worked (on resolve).
    pub worked_minutes: u32,
    /// What was done.
    pub resolution_note: String,
    /// When it was cancelled.
    pub cancel_time: Option<DateTime<Utc>>,
    /// Why it was cancelled.
    pub cancel_reason: String,
    /// Billing state.
    pub billing: Billing,
    /// Why billing failed.
    pub billing_error: String,
    /// Billing attempts so far.
    pub billing_attempt: u32,
    /// The invoice issued for it.
    pub invoice_id: Option<Uuid>,
    /// The estimate made for it.
    pub estimate_offer_id: Option<Uuid>,
    /// The contract drafted from it.
    pub drafted_contract_id: Option<Uuid>,
    /// Replies.
    pub reply_count: i32,
    /// Created.
    pub create_time: DateTime<Utc>,
    /// Last changed.
    pub update_time: DateTime<Utc>,
    /// Version behind the etag.
    pub version: i64,
}

/// A reply in a task's thread (T4).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// Its id.
    pub id: Uuid,
    /// The task.
    pub task_id: Uuid,
    /// The task's title (read with the reply).
    pub task_title: String,
    /// Text.
    pub text: String,
    /// Files.
    pub attachments: Vec<Attachment>,
    /// Who wrote it; empty for a note tasks added itself.
    pub author: String,
    /// The author's staff record.
    pub author_staff_id: Option<Uuid>,
    /// When.
    pub create_time: DateTime<Utc>,
}

/// A task launched to several recipients (T5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Broadcast {
    /// Its id.
    pub id: Uuid,
    /// Title of every task.
    pub title: String,
    /// Description of every task.
    pub description: String,
    /// Individual recipients.
    pub staff_ids: Vec<Uuid>,
    /// Whole categories.
    pub category_ids: Vec<Uuid>,
    /// Beneficiary partner.
    pub partner_id: Option<Uuid>,
    /// Deadline.
    pub deadline_date: NaiveDate,
    /// Reminder of every task; `None` means the defaults.
    pub reminder: Option<ReminderChoice>,
    /// Where it was launched from.
    pub origin: Option<Origin>,
    /// The tasks created (read with it).
    pub task_ids: Vec<Uuid>,
    /// Who launched it.
    pub creator: String,
    /// When.
    pub create_time: DateTime<Utc>,
}

db_enum!(
    /// Where a task is in its life.
    Status {
        /// Not started.
        Open = "open",
        /// Being worked on.
        InProgress = "in_progress",
        /// Done.
        Resolved = "resolved",
        /// Called off.
        Cancelled = "cancelled",
    }
);

db_enum!(
    /// What created a task.
    Source {
        /// A user, through CreateTask.
        Manual = "manual",
        /// An opportunity stage's follow-up (O4).
        FollowUp = "follow_up",
        /// An imported email (E3).
        EmailImport = "email_import",
        /// A broadcast (T5).
        Broadcast = "broadcast",
    }
);

db_enum!(
    /// Where a task is in its billing.
    Billing {
        /// Not billable.
        NotBillable = "not_billable",
        /// Billable, not resolved yet.
        NotYetDue = "not_yet_due",
        /// Sent to be invoiced; awaiting opportunities.
        Pending = "pending",
        /// Invoiced.
        Invoiced = "invoiced",
        /// Opportunities refused.
        Failed = "failed",
        /// The invoice was cancelled.
        Cancelled = "cancelled",
    }
);

impl Status {
    /// Open or in progress: still to do.
    pub fn is_active(self) -> bool {
        matches!(self, Status::Open | Status::InProgress)
    }
}

/// Why a change does not fit the task's state.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct StateError(pub String);

/// Checks a status change made through UpdateTask: only open ↔ in progress.
pub fn check_status_change(from: Status, to: Status) -> Result<(), StateError> {
    match (from, to) {
        (a, b) if a == b => Ok(()),
        (Status::Open, Status::InProgress) | (Status::InProgress, Status::Open) => Ok(()),
        (_, Status::Resolved) => Err(StateError(
            "a task is resolved with ResolveTask, which records the hours".into(),
        )),
        (_, Status::Cancelled) => Err(StateError("a task is cancelled with CancelTask".into())),
        (from, _) => Err(StateError(format!(
            "the task is {}; only open and in-progress tasks change status",
            from.as_db()
        ))),
    }
}

/// Checks that a task in `status` may still be changed, resolved or cancelled.
pub fn check_active(status: Status) -> Result<(), StateError> {
    if status.is_active() {
        Ok(())
    } else {
        Err(StateError(format!(
            "the task is {} and can no longer change",
            status.as_db()
        )))
    }
}

/// The billing of a task that is not resolved yet.
pub fn billing_before_resolution(billable: bool) -> Billing {
    if billable {
        Billing::NotYetDue
    } else {
        Billing::NotBillable
    }
}

/// Minutes worked on a task resolved at `resolve_time`: as entered, else the time since it was
/// created, in whole minutes rounded up (so a billable task resolved within its first minute
/// still bills one).
pub fn worked_minutes(
    create_time: DateTime<Utc>,
    resolve_time: DateTime<Utc>,
    entered: Option<u32>,
) -> u32 {
    if let Some(entered) = entered {
        return entered;
    }
    let seconds = (resolve_time - create_time).num_seconds().max(0);
    let minutes = (seconds + 59) / 60;
    u32::try_from(minutes.max(1)).unwrap_or(u32::MAX)
}

/// What an answer about billing attempt `attempt` does to a task whose current attempt is
/// `current` and billing is `billing`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BillingAnswer {
    /// The invoice was issued.
    Invoiced,
    /// Opportunities refused.
    Rejected,
    /// The invoice was cancelled.
    InvoiceCancelled,
}

/// The billing after `answer` about `attempt`, or `None` when it changes nothing (an older
/// attempt, or an answer that does not fit).
pub fn after_answer(
    billing: Billing,
    current: u32,
    attempt: u32,
    answer: BillingAnswer,
) -> Option<Billing> {
    if attempt != current {
        return None;
    }
    match (billing, answer) {
        (Billing::Pending | Billing::Failed, BillingAnswer::Invoiced) => Some(Billing::Invoiced),
        (Billing::Pending, BillingAnswer::Rejected) => Some(Billing::Failed),
        (Billing::Invoiced, BillingAnswer::InvoiceCancelled) => Some(Billing::Cancelled),
        _ => None,
    }
}

/// Checks that a task's billing may be retried.
pub fn check_retry(status: Status, billing: Billing) -> Result<(), StateError> {
    if status != Status::Resolved {
        return Err(StateError(
            "only a resolved task is billed; resolve it first".into(),
        ));
    }
    match billing {
        Billing::Failed | Billing::Cancelled => Ok(()),
        other => Err(StateError(format!(
            "billing is {}; only a failed or cancelled billing is retried",
            other.as_db()
        ))),
    }
}

/// The day `n` working days (Monday to Friday) after `from`; `from` itself when `n` is 0.
pub fn working_days_after(from: NaiveDate, n: u32) -> NaiveDate {
    let mut day = from;
    let mut left = n;
    while left > 0 {
        day = day.checked_add_days(Days::new(1)).unwrap_or(day);
        if !matches!(day.weekday(), Weekday::Sat | Weekday::Sun) {
            left -= 1;
        }
    }
    day
}

/// Whether a task in `status` with `deadline` is overdue on `today`.
pub fn is_overdue(status: Status, deadline: NaiveDate, today: NaiveDate) -> bool {
    status.is_active() && deadline < today
}

/// The start of a text that fits in `max` characters, cut at a line or word boundary when one
/// is near, and marked as cut.
pub fn text_start(text: &str, max: usize) -> (String, bool) {
    if text.chars().count() <= max {
        return (text.to_owned(), false);
    }
    const MARK: &str = "\n[…] (the whole message is attached)";
    let room = max.saturating_sub(MARK.chars().count());
    let cut: String = text.chars().take(room).collect();
    // Prefer a line break, then a space, in the last fifth.
    let floor = room * 4 / 5;
    let at = cut
        .rfind('\n')
        .filter(|&i| cut[..i].chars().count() >= floor)
        .or_else(|| {
            cut.rfind(' ')
                .filter(|&i| cut[..i].chars().count() >= floor)
        })
        .unwrap_or(cut.len());
    (format!("{}{MARK}", cut[..at].trim_end()), true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    #[test]
    fn only_open_and_in_progress_swap_through_updates() {
        assert!(check_status_change(Status::Open, Status::InProgress).is_ok());
        assert!(check_status_change(Status::InProgress, Status::Open).is_ok());
        assert!(check_status_change(Status::Open, Status::Resolved).is_err());
        assert!(check_status_change(Status::Open, Status::Cancelled).is_err());
        assert!(check_status_change(Status::Resolved, Status::Open).is_err());
        assert!(check_active(Status::Cancelled).is_err());
    }

    #[test]
    fn worked_minutes_are_entered_or_elapsed_rounded_up() {
        let created = DateTime::parse_from_rfc3339("2026-12-02T08:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(worked_minutes(created, created, Some(90)), 90);
        assert_eq!(
            worked_minutes(created, created + chrono::Duration::seconds(3601), None),
            61
        );
        assert_eq!(worked_minutes(created, created, None), 1);
    }

    #[test]
    fn billing_follows_only_the_current_attempt() {
        use BillingAnswer::*;
        assert_eq!(
            after_answer(Billing::Pending, 1, 1, Invoiced),
            Some(Billing::Invoiced)
        );
        assert_eq!(
            after_answer(Billing::Pending, 1, 1, Rejected),
            Some(Billing::Failed)
        );
        // A late rejection of attempt 1 after the retry (attempt 2) changes nothing.
        assert_eq!(after_answer(Billing::Pending, 2, 1, Rejected), None);
        assert_eq!(
            after_answer(Billing::Invoiced, 2, 2, InvoiceCancelled),
            Some(Billing::Cancelled)
        );
        // An invoice cancelled before it was recorded as issued changes nothing.
        assert_eq!(after_answer(Billing::Pending, 1, 1, InvoiceCancelled), None);
        assert!(check_retry(Status::Resolved, Billing::Failed).is_ok());
        assert!(check_retry(Status::Resolved, Billing::Cancelled).is_ok());
        assert!(check_retry(Status::Resolved, Billing::Pending).is_err());
        assert!(check_retry(Status::Open, Billing::Failed).is_err());
    }

    #[test]
    fn working_days_skip_weekends() {
        // Thursday 3 December 2026 + 2 working days = Monday 7 December.
        assert_eq!(working_days_after(day(2026, 12, 3), 2), day(2026, 12, 7));
        assert_eq!(working_days_after(day(2026, 12, 5), 1), day(2026, 12, 7));
        assert_eq!(working_days_after(day(2026, 12, 5), 0), day(2026, 12, 5));
    }

    #[test]
    fn overdue_means_active_and_past_its_deadline() {
        assert!(is_overdue(Status::Open, day(2026, 12, 1), day(2026, 12, 2)));
        assert!(!is_overdue(
            Status::Open,
            day(2026, 12, 2),
            day(2026, 12, 2)
        ));
        assert!(!is_overdue(
            Status::Resolved,
            day(2026, 12, 1),
            day(2026, 12, 2)
        ));
    }

    #[test]
    fn a_long_text_keeps_its_start_and_says_so() {
        let (short, cut) = text_start("Bună ziua", 100);
        assert_eq!((short.as_str(), cut), ("Bună ziua", false));
        let long = "Stimate client,\n".to_owned() + &"pompă defectă ".repeat(100);
        let (start, cut) = text_start(&long, 200);
        assert!(cut);
        assert!(start.chars().count() <= 200, "{}", start.chars().count());
        assert!(start.starts_with("Stimate client,\npompă"));
        assert!(start.ends_with("(the whole message is attached)"));
        // Cut at a word, not inside one.
        let kept = start.split("\n[…]").next().unwrap();
        let last_word = kept.rsplit(' ').next().unwrap();
        assert!(["pompă", "defectă"].contains(&last_word), "{start}");
    }
}
