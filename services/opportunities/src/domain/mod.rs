//! The opportunities rules as plain types and functions: no I/O, unit-tested.
//!
//! - [`money`]: integer amounts per currency and the one rounding rule.
//! - [`lines`]: document lines and totals (property-tested).
//! - [`stages`]: the stage set and the rules for moving between stages.
//! - [`numbering`]: document numbers from series.
//! - [`documents`]: the life cycles of offers, orders, contracts and invoices; uninvoiced
//!   quantities; contract activity.
//! - [`payments`]: allocating payments to invoices.
//! - [`calendar`]: company days in the company's time zone.

pub mod calendar;
pub mod catalogue;
pub mod documents;
pub mod lines;
pub mod money;
pub mod numbering;
pub mod opportunity;
pub mod payments;
pub mod stages;
