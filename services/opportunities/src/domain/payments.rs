//! Payments and their allocation to invoices (O8).
//!
//! A payment is allocated to one or more issued invoices of the same partner and currency;
//! no invoice gets more than it still owes, and a payment never allocates more than it
//! received. What is not allocated stays as an advance.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, NaiveDate, Utc};
use uuid::Uuid;

use super::{
    documents::{InvoiceStatus, PaymentMethod, PaymentStatus},
    money::{Currency, Money},
};

/// A payment received from a partner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Payment {
    /// Its id.
    pub id: Uuid,
    /// The paying partner.
    pub partner_id: Uuid,
    /// Amount received.
    pub amount: Money,
    /// Day the money was received.
    pub payment_date: NaiveDate,
    /// How it was paid.
    pub method: PaymentMethod,
    /// Bank or receipt reference.
    pub reference: String,
    /// Free note.
    pub notes: String,
    /// Recorded or cancelled.
    pub status: PaymentStatus,
    /// Why it was cancelled.
    pub cancel_reason: String,
    /// The invoices it settles, in the order given: (invoice, amount, invoice number).
    pub allocations: Vec<(Uuid, i64, String)>,
    /// Audit: recorded.
    pub create_time: DateTime<Utc>,
    /// Audit: last changed.
    pub update_time: DateTime<Utc>,
    /// Audit: who recorded it.
    pub creator: String,
    /// Version behind the etag.
    pub version: i64,
}

impl Payment {
    /// Sum of its allocations.
    pub fn allocated(&self) -> i64 {
        self.allocations.iter().map(|(_, amount, _)| amount).sum()
    }
}

/// An invoice as allocation sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvoiceToPay {
    /// Its partner.
    pub partner_id: Uuid,
    /// Its currency.
    pub currency: Currency,
    /// Its status.
    pub status: InvoiceStatus,
    /// Its total with VAT.
    pub with_vat: i64,
    /// What recorded payments already allocated to it.
    pub paid: i64,
}

impl InvoiceToPay {
    /// What it still owes.
    pub fn outstanding(&self) -> i64 {
        (self.with_vat - self.paid).max(0)
    }
}

/// One allocation asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Allocation {
    /// The invoice.
    pub invoice_id: Uuid,
    /// Minor units allocated.
    pub amount: i64,
}

/// Checks `allocations` of a payment by `partner_id` in `currency` that has `available` minor
/// units not yet allocated, against the `invoices` they name (missing ones are unknown).
/// Returns (field, reason) pairs with fields relative to the allocation list, e.g.
/// `[1].amount`. An invoice the payment already settles in part may get more (up to what it
/// still owes).
pub fn check_allocations(
    partner_id: Uuid,
    currency: &Currency,
    available: i64,
    allocations: &[Allocation],
    invoices: &HashMap<Uuid, InvoiceToPay>,
) -> Vec<(String, String)> {
    let mut bad = Vec::new();
    let mut seen = HashSet::new();
    let mut running: i64 = 0;
    for (i, allocation) in allocations.iter().enumerate() {
        if allocation.amount <= 0 {
            bad.push((format!("[{i}].amount"), "must be greater than 0".into()));
            continue;
        }
        if !seen.insert(allocation.invoice_id) {
            bad.push((
                format!("[{i}].invoice_id"),
                "is allocated twice: give one allocation per invoice".into(),
            ));
            continue;
        }
        let Some(invoice) = invoices.get(&allocation.invoice_id) else {
            bad.push((format!("[{i}].invoice_id"), "no such invoice".into()));
            continue;
        };
        if invoice.partner_id != partner_id {
            bad.push((
                format!("[{i}].invoice_id"),
                "is an invoice of another partner".into(),
            ));
            continue;
        }
        if invoice.status != InvoiceStatus::Issued {
            bad.push((
                format!("[{i}].invoice_id"),
                format!(
                    "is {}: only issued invoices are paid",
                    invoice.status.as_db()
                ),
            ));
            continue;
        }
        if invoice.currency != *currency {
            bad.push((
                format!("[{i}].amount"),
                format!(
                    "is in {currency} but the invoice is in {}",
                    invoice.currency
                ),
            ));
            continue;
        }
        if allocation.amount > invoice.outstanding() {
            bad.push((
                format!("[{i}].amount"),
                format!(
                    "is more than the invoice still owes ({} minor units)",
                    invoice.outstanding()
                ),
            ));
            continue;
        }
        running = running.saturating_add(allocation.amount);
        if running > available {
            bad.push((
                format!("[{i}].amount"),
                format!(
                    "brings the allocations to {running} minor units, more than the {available} \
                     the payment has left"
                ),
            ));
        }
    }
    bad
}

/// How much of an invoice is paid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PaidState {
    /// Nothing.
    Unpaid,
    /// Some.
    PartiallyPaid,
    /// All (or more).
    Paid,
}

/// The paid state of an invoice of `with_vat` with `paid` allocated.
pub fn paid_state(with_vat: i64, paid: i64) -> PaidState {
    if paid <= 0 {
        if with_vat <= 0 {
            PaidState::Paid
        } else {
            PaidState::Unpaid
        }
    } else if paid >= with_vat {
        PaidState::Paid
    } else {
        PaidState::PartiallyPaid
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invoice(partner_id: Uuid, currency: &str, with_vat: i64, paid: i64) -> InvoiceToPay {
        InvoiceToPay {
            partner_id,
            currency: Currency::parse(currency).unwrap(),
            status: InvoiceStatus::Issued,
            with_vat,
            paid,
        }
    }

    #[test]
    fn over_allocation_is_refused_naming_the_allocation() {
        let partner = Uuid::now_v7();
        let (a, b, c, other) = (
            Uuid::now_v7(),
            Uuid::now_v7(),
            Uuid::now_v7(),
            Uuid::now_v7(),
        );
        let invoices = HashMap::from([
            (a, invoice(partner, "RON", 1000, 400)),
            (b, invoice(partner, "RON", 500, 0)),
            (c, invoice(partner, "EUR", 500, 0)),
            (other, invoice(Uuid::now_v7(), "RON", 500, 0)),
        ]);
        let ron = Currency::parse("RON").unwrap();
        let ok = [
            Allocation {
                invoice_id: a,
                amount: 600,
            },
            Allocation {
                invoice_id: b,
                amount: 400,
            },
        ];
        assert!(check_allocations(partner, &ron, 1000, &ok, &invoices).is_empty());

        let bad = check_allocations(
            partner,
            &ron,
            1000,
            &[
                Allocation {
                    invoice_id: a,
                    amount: 601,
                },
                Allocation {
                    invoice_id: c,
                    amount: 1,
                },
                Allocation {
                    invoice_id: other,
                    amount: 1,
                },
                Allocation {
                    invoice_id: b,
                    amount: 0,
                },
                Allocation {
                    invoice_id: Uuid::now_v7(),
                    amount: 1,
                },
            ],
            &invoices,
        );
        let fields: Vec<&str> = bad.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(
            fields,
            [
                "[0].amount",
                "[1].amount",
                "[2].invoice_id",
                "[3].amount",
                "[4].invoice_id"
            ]
        );

        // More than the payment has, though each invoice could take it.
        let bad = check_allocations(partner, &ron, 900, &ok, &invoices);
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].0, "[1].amount");
        // The same invoice twice in one list is refused.
        let twice = [ok[0], ok[0]];
        let bad = check_allocations(partner, &ron, 1000, &twice, &invoices);
        assert_eq!(bad[0].0, "[1].invoice_id");
    }

    #[test]
    fn paid_states() {
        assert_eq!(paid_state(100, 0), PaidState::Unpaid);
        assert_eq!(paid_state(100, 1), PaidState::PartiallyPaid);
        assert_eq!(paid_state(100, 100), PaidState::Paid);
        assert_eq!(paid_state(0, 0), PaidState::Paid);
    }
}
