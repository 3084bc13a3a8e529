//! The opportunities service's settings: the platform's sections ([`BaseSettings`]) plus the
//! company printed on documents and how to reach marketing.

use std::path::Path;

use crm_platform::settings::{
    BaseSettings, SettingsError, SiblingSettings, Validate, load_service,
};
use serde::Deserialize;

/// Opportunities' built-in defaults on top of the platform's: every key can be overridden by
/// the settings file or by `CRM__SECTION__KEY` variables (e.g. `CRM__COMPANY__NAME`).
pub const DEFAULTS: &str = r#"
[server]
listen_addr = "127.0.0.1:50062"

[database]
schema = "opportunities"

[company]
name = "Compania Demo SRL"
fiscal_code = "RO18547290"
registration_number = "J12/3456/2010"
address_lines = ["Str. Memorandumului 28", "Cluj-Napoca, Cluj", "România"]
email = "office@example.ro"
phone = "+40 264 000 000"
bank_account = "RO49 AAAA 1B31 0075 9384 0000"
time_zone = "Europe/Bucharest"
payment_term_days = 30

[marketing]
url = "http://127.0.0.1:50061"
timeout_ms = 2000
"#;

/// Everything the opportunities service is configured with.
#[derive(Clone, Debug, Deserialize)]
pub struct Settings {
    /// Server, database, Redis, auth, telemetry, blobs, relay and consumers.
    #[serde(flatten)]
    pub base: BaseSettings,
    /// The company that issues the documents.
    pub company: CompanySettings,
    /// Where marketing is, to look up a partner this service has not heard of yet.
    pub marketing: SiblingSettings,
}

/// The company printed on documents, and its calendar (`[company]`).
#[derive(Clone, Debug, Deserialize)]
pub struct CompanySettings {
    /// Legal name.
    pub name: String,
    /// Fiscal code (CUI/CIF).
    pub fiscal_code: String,
    /// Trade register number.
    pub registration_number: String,
    /// Address, one line each.
    pub address_lines: Vec<String>,
    /// Contact email.
    pub email: String,
    /// Contact phone.
    pub phone: String,
    /// Bank account (IBAN) printed on invoices.
    pub bank_account: String,
    /// IANA time zone of the company's calendar: what "today" is, the day an invoice is dated,
    /// the year a number series counts in.
    pub time_zone: chrono_tz::Tz,
    /// Days from an invoice's date to its due date when none is given.
    pub payment_term_days: u32,
}

impl Settings {
    /// Loads defaults, then `file`, then `CRM__…` variables, and validates them.
    pub fn load(file: Option<&Path>) -> Result<Self, SettingsError> {
        load_service(DEFAULTS, file)
    }
}

impl Validate for Settings {
    fn validate(&self) -> Result<(), SettingsError> {
        self.base.validate()?;
        if self.company.name.trim().is_empty() {
            return Err(SettingsError::invalid("company.name", "is required"));
        }
        if self.company.payment_term_days > 3650 {
            return Err(SettingsError::invalid(
                "company.payment_term_days",
                "must be at most 3650",
            ));
        }
        self.marketing.validate("marketing")
    }
}
