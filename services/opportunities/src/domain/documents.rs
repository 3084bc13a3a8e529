//! The life cycles of the sales documents (O6, O8) and the arithmetic of what an order still
//! has to invoice and when a contract is active.
//!
//! - Offers: draft → issued → accepted / rejected; draft or issued → cancelled.
//! - Orders: draft → confirmed → invoiced (when every line is); draft or confirmed (without
//!   issued invoices) → cancelled.
//! - Contracts: draft → signed → terminated; draft → cancelled.
//! - Invoices: draft → issued; draft, or issued without payments, → cancelled.
//!
//! Issued documents are immutable but for their status (and their attachments, an order's
//! campaign-revenue flag until it is invoiced, a signed contract's end date).

use chrono::{DateTime, Datelike as _, Months, NaiveDate, Utc};
use uuid::Uuid;

use super::{
    catalogue::{Attachment, PartnerCard},
    lines::{Line, Totals},
    money::Currency,
};

use crm_platform::db_enum;

db_enum!(
    /// Where an offer is in its life.
    OfferStatus {
        /// Being written.
        Draft = "draft",
        /// Numbered and frozen.
        Issued = "issued",
        /// Accepted by the customer.
        Accepted = "accepted",
        /// Rejected by the customer.
        Rejected = "rejected",
        /// Cancelled by us.
        Cancelled = "cancelled",
    }
);

db_enum!(
    /// What an offer is for.
    OfferPurpose {
        /// A customer offer.
        Sale = "sale",
        /// The estimate of a billable task's work (T9).
        ServiceEstimate = "service_estimate",
    }
);

db_enum!(
    /// Where an order is in its life.
    OrderStatus {
        /// Being written.
        Draft = "draft",
        /// Numbered and frozen; may be invoiced.
        Confirmed = "confirmed",
        /// Every line fully invoiced.
        Invoiced = "invoiced",
        /// Cancelled.
        Cancelled = "cancelled",
    }
);

db_enum!(
    /// The two kinds of contract.
    ContractKind {
        /// Delivered and invoiced through orders.
        Commercial = "commercial",
        /// Invoiced every month of its validity.
        Subscription = "subscription",
    }
);

db_enum!(
    /// Where a contract is in its life.
    ContractStatus {
        /// Being written; never active.
        Draft = "draft",
        /// Signed: active from its start to its end.
        Signed = "signed",
        /// Signed, then ended early.
        Terminated = "terminated",
        /// An abandoned draft.
        Cancelled = "cancelled",
    }
);

db_enum!(
    /// Where an invoice is in its life.
    InvoiceStatus {
        /// Being written; does not count.
        Draft = "draft",
        /// Numbered and frozen; counts in the balance.
        Issued = "issued",
        /// Cancelled (storno) or abandoned.
        Cancelled = "cancelled",
    }
);

db_enum!(
    /// What an invoice was issued from.
    InvoiceSource {
        /// By hand.
        Manual = "manual",
        /// From an order.
        Order = "order",
        /// From a subscription contract, for one month.
        Subscription = "subscription",
        /// From a resolved billable task.
        Task = "task",
    }
);

db_enum!(
    /// How a payment was made.
    PaymentMethod {
        /// Bank transfer.
        BankTransfer = "bank_transfer",
        /// Cash.
        Cash = "cash",
        /// Card.
        Card = "card",
        /// Anything else.
        Other = "other",
    }
);

db_enum!(
    /// Whether a payment counts.
    PaymentStatus {
        /// Counts.
        Recorded = "recorded",
        /// Cancelled; does not count.
        Cancelled = "cancelled",
    }
);

/// Why a document cannot do what was asked in its current state.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct StateError(pub String);

fn refuse(what: &str, status: &str) -> StateError {
    StateError(format!("{what}: the document is {status}"))
}

/// Issuing (offer, invoice), confirming (order) or signing (contract) a draft needs at least one
/// line.
pub fn check_has_lines(line_count: usize) -> Result<(), StateError> {
    if line_count == 0 {
        Err(StateError("a document needs at least one line".into()))
    } else {
        Ok(())
    }
}

impl OfferStatus {
    /// Whether its lines and fields may change.
    pub fn is_editable(self) -> bool {
        self == OfferStatus::Draft
    }

    /// Checks IssueOffer.
    pub fn check_issue(self) -> Result<(), StateError> {
        match self {
            OfferStatus::Draft => Ok(()),
            other => Err(refuse("only a draft offer is issued", other.as_db())),
        }
    }

    /// Checks AnswerOffer.
    pub fn check_answer(self) -> Result<(), StateError> {
        match self {
            OfferStatus::Issued => Ok(()),
            other => Err(refuse("only an issued offer is answered", other.as_db())),
        }
    }

    /// Checks CancelOffer.
    pub fn check_cancel(self) -> Result<(), StateError> {
        match self {
            OfferStatus::Draft | OfferStatus::Issued => Ok(()),
            other => Err(refuse(
                "only a draft or issued offer is cancelled",
                other.as_db(),
            )),
        }
    }
}

impl OrderStatus {
    /// Whether its lines and fields may change.
    pub fn is_editable(self) -> bool {
        self == OrderStatus::Draft
    }

    /// Checks ConfirmOrder.
    pub fn check_confirm(self) -> Result<(), StateError> {
        match self {
            OrderStatus::Draft => Ok(()),
            other => Err(refuse("only a draft order is confirmed", other.as_db())),
        }
    }

    /// Checks CancelOrder: a draft, or a confirmed order without issued invoices.
    pub fn check_cancel(self, has_issued_invoices: bool) -> Result<(), StateError> {
        match self {
            OrderStatus::Draft => Ok(()),
            OrderStatus::Confirmed if !has_issued_invoices => Ok(()),
            OrderStatus::Confirmed => Err(StateError(
                "the order has issued invoices: cancel them first".into(),
            )),
            other => Err(refuse(
                "only a draft or confirmed order is cancelled",
                other.as_db(),
            )),
        }
    }

    /// Checks a change of the "add to campaign revenues" flag: until the order is invoiced.
    pub fn check_revenue_flag_change(self) -> Result<(), StateError> {
        match self {
            OrderStatus::Draft | OrderStatus::Confirmed => Ok(()),
            other => Err(refuse(
                "the campaign-revenue flag changes until the order is invoiced",
                other.as_db(),
            )),
        }
    }

    /// Checks invoicing the order.
    pub fn check_invoice(self) -> Result<(), StateError> {
        match self {
            OrderStatus::Confirmed => Ok(()),
            other => Err(refuse("only a confirmed order is invoiced", other.as_db())),
        }
    }
}

impl ContractStatus {
    /// Whether its lines and fields may change.
    pub fn is_editable(self) -> bool {
        self == ContractStatus::Draft
    }

    /// Checks SignContract.
    pub fn check_sign(self) -> Result<(), StateError> {
        match self {
            ContractStatus::Draft => Ok(()),
            other => Err(refuse("only a draft contract is signed", other.as_db())),
        }
    }

    /// The status after TerminateContract: a signed contract is terminated, a draft cancelled.
    pub fn after_terminate(self) -> Result<ContractStatus, StateError> {
        match self {
            ContractStatus::Signed => Ok(ContractStatus::Terminated),
            ContractStatus::Draft => Ok(ContractStatus::Cancelled),
            other => Err(refuse(
                "only a signed or draft contract is terminated",
                other.as_db(),
            )),
        }
    }
}

impl InvoiceStatus {
    /// Whether its lines and fields may change.
    pub fn is_editable(self) -> bool {
        self == InvoiceStatus::Draft
    }

    /// Checks IssueInvoice.
    pub fn check_issue(self) -> Result<(), StateError> {
        match self {
            InvoiceStatus::Draft => Ok(()),
            other => Err(refuse("only a draft invoice is issued", other.as_db())),
        }
    }

    /// Checks CancelInvoice: a draft, or an issued invoice without payments.
    pub fn check_cancel(self, has_payments: bool) -> Result<(), StateError> {
        match self {
            InvoiceStatus::Draft => Ok(()),
            InvoiceStatus::Issued if !has_payments => Ok(()),
            InvoiceStatus::Issued => Err(StateError(
                "payments are allocated to the invoice: cancel them first".into(),
            )),
            InvoiceStatus::Cancelled => Err(refuse("the invoice is cancelled", "cancelled")),
        }
    }
}

/// What is left to invoice of an order line of `ordered` thousandths when `invoiced` are on
/// issued or draft invoices: never negative.
pub fn uninvoiced(ordered: i64, invoiced: i64) -> i64 {
    (ordered - invoiced).max(0)
}

/// Whether an order whose lines have (ordered, invoiced on issued invoices) quantities is fully
/// invoiced.
pub fn fully_invoiced(lines: &[(i64, i64)]) -> bool {
    !lines.is_empty() && lines.iter().all(|(ordered, invoiced)| invoiced >= ordered)
}

/// The last day a contract is active: the termination day, else its end, else none (open).
pub fn last_active_day(
    end: Option<NaiveDate>,
    termination: Option<NaiveDate>,
) -> Option<NaiveDate> {
    match (end, termination) {
        (Some(end), Some(termination)) => Some(end.min(termination)),
        (end, termination) => termination.or(end),
    }
}

/// Whether a contract from `start` to `last` (included; `None` open-ended) is active on `day`.
pub fn active_on(start: NaiveDate, last: Option<NaiveDate>, day: NaiveDate) -> bool {
    start <= day && last.is_none_or(|last| day <= last)
}

/// The first day of the month of `day`.
pub fn month_start(day: NaiveDate) -> NaiveDate {
    day.with_day(1).expect("every month has a first day")
}

/// The last day of the month that starts on `first`.
pub fn month_end(first: NaiveDate) -> NaiveDate {
    first
        .checked_add_months(Months::new(1))
        .and_then(|next| next.pred_opt())
        .unwrap_or(first)
}

/// Whether a contract from `start` to `last` is active on any day of the month starting on
/// `first`: such a contract is billed that month (a whole month, without proration).
pub fn active_in_month(start: NaiveDate, last: Option<NaiveDate>, first: NaiveDate) -> bool {
    start <= month_end(first) && last.is_none_or(|last| last >= first)
}

/// The date of a subscription invoice for the month starting on `first`: the contract's billing
/// day (1..=28; 0 means the 1st).
pub fn subscription_invoice_date(first: NaiveDate, billing_day: i32) -> NaiveDate {
    let day = u32::try_from(billing_day.clamp(1, 28)).unwrap_or(1);
    first.with_day(day).unwrap_or(first)
}

/// What every sales document has.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DocHeader {
    /// Its id (unique across kinds).
    pub id: Uuid,
    /// Its number, once issued.
    pub number: Option<String>,
    /// The series it is numbered from (`None`: the kind's default).
    pub series_id: Option<Uuid>,
    /// The customer.
    pub partner_id: Uuid,
    /// The opportunity it comes from.
    pub opportunity_id: Option<Uuid>,
    /// The campaign.
    pub campaign_id: Option<Uuid>,
    /// The currency of every amount.
    pub currency: Currency,
    /// Its lines.
    pub lines: Vec<Line>,
    /// Free text printed on it.
    pub notes: String,
    /// Attached files.
    pub attachments: Vec<Attachment>,
    /// The customer's details frozen when it was issued.
    pub customer: Option<PartnerCard>,
    /// Audit: created.
    pub create_time: DateTime<Utc>,
    /// Audit: last changed.
    pub update_time: DateTime<Utc>,
    /// Audit: who created it (empty for generated documents).
    pub creator: String,
    /// Audit: who changed it last.
    pub updater: String,
    /// Version behind the etag.
    pub version: i64,
}

impl DocHeader {
    /// The totals of its lines. Stored lines always fit (they were checked when written).
    pub fn totals(&self) -> Totals {
        Totals::of_lines(&self.lines).unwrap_or_default()
    }

    /// Bumps the version for a change by `who` at `at`.
    pub fn touch(&mut self, who: &str, at: DateTime<Utc>) {
        self.update_time = at;
        self.updater = who.to_owned();
        self.version += 1;
    }
}

/// A customer offer or a service estimate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Offer {
    /// Common fields.
    pub doc: DocHeader,
    /// Status.
    pub status: OfferStatus,
    /// Sale offer or service estimate.
    pub purpose: OfferPurpose,
    /// The task an estimate is for.
    pub task_id: Option<Uuid>,
    /// The billing attempt of that task.
    pub task_billing_attempt: Option<i32>,
    /// Date (unset: the day it is issued).
    pub offer_date: Option<NaiveDate>,
    /// Last day it is valid.
    pub valid_until: Option<NaiveDate>,
    /// The contact person it is addressed to.
    pub contact_person_id: Option<Uuid>,
    /// When it was issued.
    pub issue_time: Option<DateTime<Utc>>,
    /// The answer's note or the cancellation reason.
    pub status_note: String,
}

/// A customer order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Order {
    /// Common fields.
    pub doc: DocHeader,
    /// Status.
    pub status: OrderStatus,
    /// The accepted offer it comes from.
    pub offer_id: Option<Uuid>,
    /// "Add to campaign revenues" (M5).
    pub add_to_campaign_revenues: bool,
    /// Date (unset: the day it is confirmed).
    pub order_date: Option<NaiveDate>,
    /// Requested delivery date.
    pub delivery_date: Option<NaiveDate>,
    /// The customer's own reference.
    pub customer_reference: String,
    /// When it was confirmed.
    pub confirm_time: Option<DateTime<Utc>>,
    /// The cancellation reason.
    pub status_note: String,
}

/// A commercial or subscription contract.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Contract {
    /// Common fields.
    pub doc: DocHeader,
    /// Status.
    pub status: ContractStatus,
    /// Commercial or subscription.
    pub kind: ContractKind,
    /// The order it comes from.
    pub order_id: Option<Uuid>,
    /// The accepted offer it comes from.
    pub offer_id: Option<Uuid>,
    /// The task it was drafted from (T7).
    pub task_id: Option<Uuid>,
    /// Day it was signed.
    pub signing_date: Option<NaiveDate>,
    /// First day it is active.
    pub start_date: Option<NaiveDate>,
    /// Last day it is active.
    pub end_date: Option<NaiveDate>,
    /// Day it was ended early.
    pub termination_date: Option<NaiveDate>,
    /// Day of the month subscription invoices are dated (0: the 1st).
    pub billing_day: i32,
    /// The termination reason.
    pub status_note: String,
}

impl Contract {
    /// Whether it binds on `day`: signed (or terminated later) and within its dates.
    pub fn active_on(&self, day: NaiveDate) -> bool {
        matches!(
            self.status,
            ContractStatus::Signed | ContractStatus::Terminated
        ) && self.start_date.is_some_and(|start| {
            active_on(
                start,
                last_active_day(self.end_date, self.termination_date),
                day,
            )
        })
    }
}

/// A customer invoice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invoice {
    /// Common fields.
    pub doc: DocHeader,
    /// Status.
    pub status: InvoiceStatus,
    /// What it was issued from.
    pub source: InvoiceSource,
    /// The order it invoices.
    pub order_id: Option<Uuid>,
    /// The subscription contract it invoices.
    pub contract_id: Option<Uuid>,
    /// The month a subscription invoice bills (its first day).
    pub billing_month: Option<NaiveDate>,
    /// The task it invoices (T9).
    pub task_id: Option<Uuid>,
    /// The billing attempt of that task.
    pub task_billing_attempt: Option<i32>,
    /// The estimate of that task.
    pub estimate_offer_id: Option<Uuid>,
    /// Invoice date (unset: the day it is issued).
    pub invoice_date: Option<NaiveDate>,
    /// Due date (unset: the invoice date plus the payment term).
    pub due_date: Option<NaiveDate>,
    /// When it was issued.
    pub issue_time: Option<DateTime<Utc>>,
    /// The cancellation reason.
    pub status_note: String,
    /// What recorded payments allocated to it (derived, not stored on the invoice).
    pub paid: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    #[test]
    fn life_cycles_refuse_what_does_not_fit() {
        assert!(OfferStatus::Draft.check_issue().is_ok());
        assert!(OfferStatus::Issued.check_issue().is_err());
        assert!(OfferStatus::Issued.check_answer().is_ok());
        assert!(OfferStatus::Accepted.check_cancel().is_err());
        assert!(OrderStatus::Confirmed.check_cancel(false).is_ok());
        assert!(OrderStatus::Confirmed.check_cancel(true).is_err());
        assert!(OrderStatus::Confirmed.check_revenue_flag_change().is_ok());
        assert!(OrderStatus::Invoiced.check_revenue_flag_change().is_err());
        assert_eq!(
            ContractStatus::Draft.after_terminate(),
            Ok(ContractStatus::Cancelled)
        );
        assert_eq!(
            ContractStatus::Signed.after_terminate(),
            Ok(ContractStatus::Terminated)
        );
        assert!(ContractStatus::Terminated.after_terminate().is_err());
        assert!(InvoiceStatus::Issued.check_cancel(true).is_err());
        assert!(InvoiceStatus::Issued.check_cancel(false).is_ok());
        assert!(check_has_lines(0).is_err());
        for status in OfferStatus::ALL {
            assert_eq!(OfferStatus::from_db(status.as_db()), Some(*status));
        }
    }

    #[test]
    fn uninvoiced_quantities_and_the_invoiced_state() {
        assert_eq!(uninvoiced(5000, 2000), 3000);
        assert_eq!(uninvoiced(5000, 6000), 0);
        assert!(fully_invoiced(&[(1000, 1000), (500, 600)]));
        assert!(!fully_invoiced(&[(1000, 1000), (500, 499)]));
        assert!(!fully_invoiced(&[]));
    }

    #[test]
    fn contracts_are_active_between_start_and_their_last_day() {
        let last = last_active_day(Some(d(2026, 12, 31)), Some(d(2026, 6, 30)));
        assert_eq!(last, Some(d(2026, 6, 30)));
        assert!(active_on(d(2026, 1, 1), last, d(2026, 6, 30)));
        assert!(!active_on(d(2026, 1, 1), last, d(2026, 7, 1)));
        assert!(!active_on(d(2026, 1, 1), last, d(2025, 12, 31)));
        assert!(active_on(d(2026, 1, 1), None, d(2099, 1, 1)));
    }

    #[test]
    fn subscription_months() {
        assert_eq!(month_end(d(2024, 2, 1)), d(2024, 2, 29));
        assert_eq!(month_end(d(2026, 12, 1)), d(2026, 12, 31));
        // Started on the last day of the month: billed that month.
        assert!(active_in_month(d(2026, 3, 31), None, d(2026, 3, 1)));
        // Ended on the first day: billed that month, not the next.
        assert!(active_in_month(
            d(2025, 1, 1),
            Some(d(2026, 4, 1)),
            d(2026, 4, 1)
        ));
        assert!(!active_in_month(
            d(2025, 1, 1),
            Some(d(2026, 4, 1)),
            d(2026, 5, 1)
        ));
        assert!(!active_in_month(d(2026, 6, 1), None, d(2026, 5, 1)));
        assert_eq!(subscription_invoice_date(d(2026, 2, 1), 0), d(2026, 2, 1));
        assert_eq!(subscription_invoice_date(d(2026, 2, 1), 15), d(2026, 2, 15));
        assert_eq!(subscription_invoice_date(d(2026, 2, 1), 31), d(2026, 2, 28));
    }
}
