//! The marketing rules as plain types and functions: no I/O, unit-tested.

pub mod partner;
pub mod values;
