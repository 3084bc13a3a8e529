//! The marketing service's settings: the platform sections plus its own.

use std::path::Path;

use crm_platform::{
    auth::AuthSettings,
    blob::BlobSettings,
    events::RelaySettings,
    settings::{DatabaseSettings, RedisSettings, ServerSettings, SettingsError, Validate, load},
    telemetry::TelemetrySettings,
};
use serde::Deserialize;

/// Built-in defaults: a development setup on one machine. Every key can be overridden by the
/// settings file or by `CRM__SECTION__KEY` variables.
pub const DEFAULTS: &str = r#"
[server]
listen_addr = "127.0.0.1:50061"

[database]
url = "postgres://crm@127.0.0.1:55432/crm"
schema = "marketing"
max_connections = 20

[redis]
url = "redis://127.0.0.1:56379"
stream_prefix = ""

[auth]
hs256_secret = "crm-development-user-secret-not-for-production"
service_secret = "crm-development-service-secret-not-for-production"
issuer = "crm-dev"
audience = "crm"

[telemetry]
log_format = "pretty"
log_filter = "info,sqlx=warn"

[blob]
root = "target/dev/blobs"

[relay]
"#;

/// Everything the marketing service is configured with.
#[derive(Clone, Debug, Deserialize)]
pub struct Settings {
    /// Where it listens.
    pub server: ServerSettings,
    /// Its database and schema.
    pub database: DatabaseSettings,
    /// The Redis that carries events.
    pub redis: RedisSettings,
    /// Token verification.
    pub auth: AuthSettings,
    /// Logs and traces.
    pub telemetry: TelemetrySettings,
    /// Files.
    pub blob: BlobSettings,
    /// Tuning of the outbox relay.
    #[serde(default)]
    pub relay: RelaySettings,
}

impl Settings {
    /// Loads defaults, then `file`, then `CRM__…` variables, and validates them.
    pub fn load(file: Option<&Path>) -> Result<Self, SettingsError> {
        load(DEFAULTS, file)
    }
}

impl Validate for Settings {
    fn validate(&self) -> Result<(), SettingsError> {
        self.database.validate()?;
        self.redis.validate()?;
        self.auth.validate()
    }
}
