//! The rules of tasks as plain types and functions, without I/O: working time and
//! availability (T1, T6), reminders (T8), a task's life and billing (T2, T9).

pub mod availability;
pub mod reminders;
pub mod staff;
pub mod task;
pub mod tracking;
