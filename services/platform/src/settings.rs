//! Settings: built-in defaults, then an optional TOML file (`--config PATH` or `CRM_CONFIG`), then
//! environment variables `CRM__SECTION__KEY` (e.g. `CRM__DATABASE__URL`). Loaded once at start and
//! validated there: a bad value stops the service with a message naming the key.

use std::{net::SocketAddr, path::PathBuf};

use config::{Config, Environment, File, FileFormat};
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, de::DeserializeOwned};

/// A setting that is missing or wrong, with the dotted key that names it.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The sources could not be read or a value has the wrong type.
    #[error("invalid settings: {0}")]
    Load(#[from] config::ConfigError),
    /// A value has the right type but is not acceptable.
    #[error("invalid setting `{key}`: {reason}")]
    Invalid {
        /// Dotted key, as in the TOML file (`database.url`); the environment variable is
        /// `CRM__` followed by the key with `.` written `__`, upper-cased.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl SettingsError {
    /// A value of `key` that is not acceptable.
    pub fn invalid(key: &str, reason: impl Into<String>) -> Self {
        Self::Invalid {
            key: key.to_owned(),
            reason: reason.into(),
        }
    }
}

/// Settings that check themselves after loading.
pub trait Validate {
    /// Refuses the first unacceptable value, naming its key.
    fn validate(&self) -> Result<(), SettingsError>;
}

/// The settings file named by `--config PATH` on the command line or, failing that, by the
/// `CRM_CONFIG` environment variable.
pub fn config_file_from_args() -> Option<PathBuf> {
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--config" {
            return args.next().map(PathBuf::from);
        }
        if let Some(path) = arg.strip_prefix("--config=") {
            return Some(PathBuf::from(path));
        }
    }
    std::env::var_os("CRM_CONFIG").map(PathBuf::from)
}

/// Loads settings of type `S` from the service's built-in `defaults` (TOML text), the optional
/// `file`, and the `CRM__…` environment variables, in that order of precedence (last wins).
pub fn load<S: DeserializeOwned + Validate>(
    defaults: &str,
    file: Option<&std::path::Path>,
) -> Result<S, SettingsError> {
    load_from(&[defaults], file, Environment::with_prefix("CRM"))
}

/// [`load`] for a service built on [`BaseSettings`]: [`BASE_DEFAULTS`] first, then the service's
/// own `defaults` (its port, its schema, its own sections), the optional `file`, the variables.
pub fn load_service<S: DeserializeOwned + Validate>(
    defaults: &str,
    file: Option<&std::path::Path>,
) -> Result<S, SettingsError> {
    load_from(
        &[BASE_DEFAULTS, defaults],
        file,
        Environment::with_prefix("CRM"),
    )
}

fn load_from<S: DeserializeOwned + Validate>(
    defaults: &[&str],
    file: Option<&std::path::Path>,
    environment: Environment,
) -> Result<S, SettingsError> {
    let mut builder = Config::builder();
    for defaults in defaults {
        builder = builder.add_source(File::from_str(defaults, FileFormat::Toml));
    }
    if let Some(file) = file {
        builder = builder.add_source(File::from(file).format(FileFormat::Toml).required(true));
    }
    let settings: S = builder
        .add_source(
            environment
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true),
        )
        .build()?
        .try_deserialize()?;
    settings.validate()?;
    Ok(settings)
}

/// Where a gRPC server listens (`[server]`).
#[derive(Clone, Debug, Deserialize)]
pub struct ServerSettings {
    /// Address and port to listen on, e.g. `127.0.0.1:50061`; port 0 picks a free one.
    pub listen_addr: SocketAddr,
    /// Largest request message accepted, in bytes; a bigger one is refused with
    /// RESOURCE_EXHAUSTED as soon as its length prefix arrives, before it is buffered.
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: usize,
    /// Largest file upload (`crm.files.v1`), in bytes: the request limit of the upload methods
    /// only, so the rest of the API keeps the smaller one.
    #[serde(default = "default_max_upload_bytes")]
    pub max_upload_bytes: usize,
}

impl ServerSettings {
    /// A server on `listen_addr` with the default message limit.
    pub fn on(listen_addr: SocketAddr) -> Self {
        Self {
            listen_addr,
            max_message_bytes: default_max_message_bytes(),
            max_upload_bytes: default_max_upload_bytes(),
        }
    }
}

/// 4 MiB, gRPC's usual default.
fn default_max_message_bytes() -> usize {
    4 * 1024 * 1024
}

/// 32 MiB.
fn default_max_upload_bytes() -> usize {
    32 * 1024 * 1024
}

/// How to reach a sibling service (`[marketing]`, `[opportunities]`, … in the settings of a
/// service that calls it).
#[derive(Clone, Debug, Deserialize)]
pub struct SiblingSettings {
    /// Its gRPC endpoint (plaintext HTTP/2), e.g. `http://marketing:50061`.
    pub url: String,
    /// How long a call may take before the caller treats the sibling as unavailable, in ms.
    pub timeout_ms: u64,
}

impl SiblingSettings {
    /// Checks the URL scheme; `key` names the section (`marketing`).
    pub fn validate(&self, key: &str) -> Result<(), SettingsError> {
        if !self.url.starts_with("http://") && !self.url.starts_with("https://") {
            return Err(SettingsError::invalid(
                &format!("{key}.url"),
                "must start with http:// or https://",
            ));
        }
        Ok(())
    }

    /// A channel to the sibling, connected on first use (a sibling that is down at start only
    /// fails the calls that need it).
    pub fn channel(&self) -> Result<tonic::transport::Channel, tonic::transport::Error> {
        Ok(tonic::transport::Endpoint::from_shared(self.url.clone())?
            .connect_timeout(std::time::Duration::from_millis(self.timeout_ms))
            .connect_lazy())
    }

    /// The deadline of one call to the sibling.
    pub fn timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.timeout_ms)
    }
}

/// The settings every service built on the platform shares (`[server]`, `[database]`,
/// `[redis]`, `[auth]`, `[telemetry]`, `[blob]`, `[relay]`, `[consumer]`). A service's own
/// settings struct embeds it with `#[serde(flatten)]` next to its own sections.
#[derive(Clone, Debug, Deserialize)]
pub struct BaseSettings {
    /// Where it listens.
    pub server: ServerSettings,
    /// Its database and schema.
    pub database: DatabaseSettings,
    /// The Redis that carries events.
    pub redis: RedisSettings,
    /// Token verification.
    pub auth: crate::auth::AuthSettings,
    /// Logs and traces.
    pub telemetry: crate::telemetry::TelemetrySettings,
    /// Files.
    pub blob: crate::blob::BlobSettings,
    /// Tuning of the outbox relay.
    #[serde(default)]
    pub relay: crate::events::RelaySettings,
    /// Tuning of the service's event consumers.
    #[serde(default)]
    pub consumer: crate::events::ConsumerSettings,
}

impl Validate for BaseSettings {
    fn validate(&self) -> Result<(), SettingsError> {
        self.database.validate()?;
        self.redis.validate()?;
        self.auth.validate()?;
        self.telemetry.validate()
    }
}

/// Defaults every service shares: a development setup on one machine. A service adds its own
/// (`[server] listen_addr`, `[database] schema`) on top; see [`load_service`].
pub const BASE_DEFAULTS: &str = r#"
[database]
url = "postgres://crm@127.0.0.1:55432/crm"
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

[consumer]
"#;

/// The service's PostgreSQL database (`[database]`).
#[derive(Clone, Debug, Deserialize)]
pub struct DatabaseSettings {
    /// Connection URL, e.g. `postgres://crm@127.0.0.1:5432/crm`. Secret: never logged.
    pub url: SecretString,
    /// The schema this service owns; its tables and migrations live there only.
    pub schema: String,
    /// Largest number of pooled connections.
    pub max_connections: u32,
}

impl DatabaseSettings {
    /// Checks the URL scheme, the schema name and the pool size.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let url = self.url.expose_secret();
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(SettingsError::invalid(
                "database.url",
                "must start with postgres:// or postgresql://",
            ));
        }
        if !is_identifier(&self.schema) {
            return Err(SettingsError::invalid(
                "database.schema",
                "must be a lower-case SQL identifier (a-z, 0-9, _; not starting with a digit)",
            ));
        }
        if self.max_connections == 0 {
            return Err(SettingsError::invalid(
                "database.max_connections",
                "must be at least 1",
            ));
        }
        Ok(())
    }
}

/// The Redis server that carries events (`[redis]`).
#[derive(Clone, Debug, Deserialize)]
pub struct RedisSettings {
    /// Connection URL, e.g. `redis://127.0.0.1:6379`. Secret: it may hold a password.
    pub url: SecretString,
    /// Prefix put before every stream name, so several CRMs (or test runs) can share one Redis.
    #[serde(default)]
    pub stream_prefix: String,
}

impl RedisSettings {
    /// Checks the URL scheme.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let url = self.url.expose_secret();
        if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
            return Err(SettingsError::invalid(
                "redis.url",
                "must start with redis:// or rediss://",
            ));
        }
        Ok(())
    }
}

fn is_identifier(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z' | b'_'))
        && bytes.all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_'))
        && name.len() <= 63
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[derive(Debug, Deserialize)]
    struct Sample {
        server: ServerSettings,
        database: DatabaseSettings,
    }

    impl Validate for Sample {
        fn validate(&self) -> Result<(), SettingsError> {
            self.database.validate()
        }
    }

    const DEFAULTS: &str = r#"
        [server]
        listen_addr = "127.0.0.1:1"
        [database]
        url = "postgres://localhost/crm"
        schema = "sample"
        max_connections = 5
    "#;

    fn env(vars: &[(&str, &str)]) -> Environment {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Environment::with_prefix("CRM").source(Some(map))
    }

    #[test]
    fn environment_overrides_file_which_overrides_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("crm.toml");
        std::fs::write(
            &file,
            "[database]\nschema = \"from_file\"\nmax_connections = 7\n",
        )
        .unwrap();
        let s: Sample = load_from(
            &[DEFAULTS],
            Some(&file),
            env(&[("CRM__DATABASE__MAX_CONNECTIONS", "9")]),
        )
        .unwrap();
        assert_eq!(s.database.schema, "from_file");
        assert_eq!(s.database.max_connections, 9);
        assert_eq!(s.server.listen_addr.port(), 1);
    }

    #[test]
    fn a_bad_value_is_refused_naming_its_key() {
        let err = load_from::<Sample>(
            &[DEFAULTS],
            None,
            env(&[("CRM__DATABASE__URL", "mysql://x")]),
        )
        .unwrap_err();
        assert!(err.to_string().contains("database.url"), "{err}");

        let err = load_from::<Sample>(
            &[DEFAULTS],
            None,
            env(&[("CRM__SERVER__LISTEN_ADDR", "not an address")]),
        )
        .unwrap_err();
        assert!(err.to_string().contains("listen_addr"), "{err}");
    }

    #[derive(Debug, Deserialize)]
    struct Service {
        #[serde(flatten)]
        base: BaseSettings,
        own: Own,
    }

    #[derive(Debug, Deserialize)]
    struct Own {
        payment_term_days: u32,
    }

    impl Validate for Service {
        fn validate(&self) -> Result<(), SettingsError> {
            self.base.validate()
        }
    }

    #[test]
    fn a_service_embeds_the_base_settings_and_the_environment_reaches_both() {
        let own = "[server]\nlisten_addr = \"127.0.0.1:2\"\n[database]\nschema = \"svc\"\n\
                   [own]\npayment_term_days = 15\n";
        let s: Service = load_from(
            &[BASE_DEFAULTS, own],
            None,
            env(&[
                ("CRM__DATABASE__MAX_CONNECTIONS", "3"),
                ("CRM__RELAY__POLL_INTERVAL_MS", "7"),
                ("CRM__OWN__PAYMENT_TERM_DAYS", "30"),
                ("CRM__SERVER__MAX_MESSAGE_BYTES", "1024"),
            ]),
        )
        .unwrap();
        assert_eq!(s.base.database.schema, "svc");
        assert_eq!(s.base.database.max_connections, 3);
        assert_eq!(s.base.relay.poll_interval_ms, 7);
        assert_eq!(s.base.server.max_message_bytes, 1024);
        assert_eq!(s.own.payment_term_days, 30);
        assert_eq!(s.base.consumer.max_deliveries, 5);
    }
}
