//! The marketing service's settings: the platform's sections ([`BaseSettings`]) plus its own
//! defaults (port, schema).

use std::path::Path;

use crm_platform::settings::{
    BaseSettings, SettingsError, SiblingSettings, Validate, load_service,
};
use serde::Deserialize;

/// Marketing's built-in defaults on top of the platform's: every key can be overridden by the
/// settings file or by `CRM__SECTION__KEY` variables.
pub const DEFAULTS: &str = r#"
[server]
listen_addr = "127.0.0.1:50061"

[database]
schema = "marketing"

[opportunities]
url = "http://127.0.0.1:50062"
timeout_ms = 5000

[files]
collect_interval_ms = 3600000
"#;

/// Everything the marketing service is configured with.
#[derive(Clone, Debug, Deserialize)]
pub struct Settings {
    /// Server, database, Redis, auth, telemetry, blobs, relay and consumers.
    #[serde(flatten)]
    pub base: BaseSettings,
    /// Where opportunities is: campaigns generate opportunities there (M7).
    pub opportunities: SiblingSettings,
    /// The file service marketing hosts.
    pub files: FileSettings,
}

/// The file service (`[files]`). The largest upload is `server.max_upload_bytes`.
#[derive(Clone, Debug, Deserialize)]
pub struct FileSettings {
    /// How often uploads no record claimed within a day are collected, in ms.
    pub collect_interval_ms: u64,
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
        self.opportunities.validate("opportunities")
    }
}
