//! The company's calendar, shared with every service: see [`crm_platform::calendar`].

pub use crm_platform::calendar::{day_of, start_of_day};
