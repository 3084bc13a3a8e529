//! The gateway's settings: the platform sections plus routes, CORS, rate limit and deadlines.

use std::{collections::BTreeMap, path::Path, time::Duration};

use crm_platform::{
    auth::AuthSettings,
    settings::{ServerSettings, SettingsError, Validate, load},
    telemetry::TelemetrySettings,
};
use serde::{Deserialize, Deserializer};

/// Built-in defaults: a development setup on one machine. Every key can be overridden by the
/// settings file or by `CRM__SECTION__KEY` variables (e.g. `CRM__ROUTES__MARKETING`).
pub const DEFAULTS: &str = r#"
[server]
listen_addr = "127.0.0.1:50051"

[auth]
hs256_secret = "crm-development-user-secret-not-for-production"
service_secret = "crm-development-service-secret-not-for-production"
issuer = "crm-dev"
audience = "crm"

[telemetry]
log_format = "pretty"
log_filter = "info"

[routes]
marketing = "http://127.0.0.1:50061"
# Uploads (`crm.files.v1`) are stored by marketing, which owns the blob store's collector.
files = "http://127.0.0.1:50061"
opportunities = "http://127.0.0.1:50062"
tasks = "http://127.0.0.1:50063"
notifications = "http://127.0.0.1:50064"
email_import = "http://127.0.0.1:50065"

[cors]
allowed_origins = ["http://localhost:3000", "http://127.0.0.1:3000"]

[rate_limit]
requests_per_second = 50
burst = 100

[deadlines]
default_ms = 30000
max_ms = 300000

[balancing]
resolve_interval_ms = 5000
"#;

/// Longest deadline a client may ask for: `grpc-timeout` carries at most 8 digits, and the
/// gateway writes it in milliseconds.
const LONGEST_DEADLINE_MS: u64 = 99_999_999;

/// Everything the gateway is configured with.
#[derive(Clone, Debug, Deserialize)]
pub struct Settings {
    /// Where it listens (`CRM__SERVER__LISTEN_ADDR`).
    pub server: ServerSettings,
    /// Token verification (`CRM__AUTH__…`).
    pub auth: AuthSettings,
    /// Logs and traces (`CRM__TELEMETRY__…`).
    pub telemetry: TelemetrySettings,
    /// Upstream of each service, keyed by the short name in its package: `crm.marketing.v1` is
    /// served by `routes.marketing` (`CRM__ROUTES__MARKETING=http://127.0.0.1:50061`),
    /// `crm.email_import.v1` by `routes.email_import` (`CRM__ROUTES__EMAIL_IMPORT`).
    pub routes: BTreeMap<String, String>,
    /// Browser origins allowed to call (gRPC-Web).
    pub cors: CorsSettings,
    /// Calls each user may make.
    pub rate_limit: RateLimitSettings,
    /// Deadlines given to upstream calls.
    pub deadlines: DeadlineSettings,
    /// How the replicas of an upstream are found.
    pub balancing: BalancingSettings,
}

/// Client-side balancing over an upstream's replicas (`[balancing]`, see [`crate::balance`]).
#[derive(Clone, Debug, Deserialize)]
pub struct BalancingSettings {
    /// How often an upstream's host name is resolved again, so replicas that come and go are
    /// followed (`CRM__BALANCING__RESOLVE_INTERVAL_MS`).
    pub resolve_interval_ms: u64,
}

impl BalancingSettings {
    /// [`Self::resolve_interval_ms`] as a duration.
    pub fn resolve_interval(&self) -> Duration {
        Duration::from_millis(self.resolve_interval_ms)
    }
}

/// Cross-origin access for browsers (`[cors]`).
#[derive(Clone, Debug, Deserialize)]
pub struct CorsSettings {
    /// Origins (`scheme://host[:port]`) whose pages may call the gateway; `*` allows any.
    /// `CRM__CORS__ALLOWED_ORIGINS` takes a comma-separated list.
    #[serde(deserialize_with = "list_or_comma_separated")]
    pub allowed_origins: Vec<String>,
}

/// The per-user token bucket (`[rate_limit]`).
#[derive(Clone, Debug, Deserialize)]
pub struct RateLimitSettings {
    /// Sustained calls per second per user, i.e. per token subject
    /// (`CRM__RATE_LIMIT__REQUESTS_PER_SECOND`).
    pub requests_per_second: u32,
    /// Calls a user may make at once above the sustained rate (`CRM__RATE_LIMIT__BURST`).
    pub burst: u32,
}

/// Deadlines of forwarded calls (`[deadlines]`).
#[derive(Clone, Debug, Deserialize)]
pub struct DeadlineSettings {
    /// Deadline given to a call whose client sent none (`CRM__DEADLINES__DEFAULT_MS`).
    pub default_ms: u64,
    /// Longest deadline a client may ask for; longer ones are shortened to it
    /// (`CRM__DEADLINES__MAX_MS`).
    pub max_ms: u64,
}

impl DeadlineSettings {
    /// [`Self::default_ms`] as a duration.
    pub fn default(&self) -> Duration {
        Duration::from_millis(self.default_ms)
    }

    /// [`Self::max_ms`] as a duration.
    pub fn max(&self) -> Duration {
        Duration::from_millis(self.max_ms)
    }
}

impl Settings {
    /// Loads defaults, then `file`, then `CRM__…` variables, and validates them.
    pub fn load(file: Option<&Path>) -> Result<Self, SettingsError> {
        load(DEFAULTS, file)
    }
}

impl Validate for Settings {
    fn validate(&self) -> Result<(), SettingsError> {
        self.auth.validate()?;
        for (key, url) in &self.routes {
            let name = format!("routes.{key}");
            if !crate::routing::is_route_key(key) {
                return Err(SettingsError::invalid(
                    &name,
                    "the key must be a lower-case package name (a-z, 0-9, _)",
                ));
            }
            crate::routing::Upstream::parse_url(url)
                .map_err(|reason| SettingsError::invalid(&name, reason))?;
        }
        for origin in &self.cors.allowed_origins {
            if origin != "*" && !is_origin(origin) {
                return Err(SettingsError::invalid(
                    "cors.allowed_origins",
                    format!("{origin:?} is not an origin like https://crm.example.com[:port]"),
                ));
            }
        }
        if self.rate_limit.requests_per_second == 0 {
            return Err(SettingsError::invalid(
                "rate_limit.requests_per_second",
                "must be at least 1",
            ));
        }
        if self.rate_limit.burst == 0 {
            return Err(SettingsError::invalid(
                "rate_limit.burst",
                "must be at least 1",
            ));
        }
        if self.deadlines.max_ms == 0 || self.deadlines.max_ms > LONGEST_DEADLINE_MS {
            return Err(SettingsError::invalid(
                "deadlines.max_ms",
                format!("must be between 1 and {LONGEST_DEADLINE_MS}"),
            ));
        }
        if self.deadlines.default_ms == 0 || self.deadlines.default_ms > self.deadlines.max_ms {
            return Err(SettingsError::invalid(
                "deadlines.default_ms",
                "must be between 1 and deadlines.max_ms",
            ));
        }
        if self.balancing.resolve_interval_ms == 0 {
            return Err(SettingsError::invalid(
                "balancing.resolve_interval_ms",
                "must be at least 1",
            ));
        }
        Ok(())
    }
}

/// `scheme://host[:port]` with nothing after it: what browsers send in `origin`.
fn is_origin(origin: &str) -> bool {
    let Ok(uri) = origin.parse::<http::Uri>() else {
        return false;
    };
    matches!(uri.scheme_str(), Some("http" | "https"))
        && uri.authority().is_some()
        && !origin.ends_with('/')
        && uri.path() == "/"
        && uri.query().is_none()
}

/// A TOML list, or one string with comma-separated items (how an environment variable says it).
fn list_or_comma_separated<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum ListOrString {
        List(Vec<String>),
        String(String),
    }
    let items = match ListOrString::deserialize(d)? {
        ListOrString::List(items) => items,
        ListOrString::String(text) => text.split(',').map(str::to_owned).collect(),
    };
    Ok(items
        .into_iter()
        .map(|item| item.trim().to_owned())
        .filter(|item| !item.is_empty())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> Settings {
        let settings: Settings = config::Config::builder()
            .add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml))
            .build()
            .and_then(config::Config::try_deserialize)
            .unwrap();
        settings.validate().unwrap();
        settings
    }

    #[test]
    fn the_defaults_are_valid_and_route_every_service() {
        let s = defaults();
        assert_eq!(s.server.listen_addr.port(), 50051);
        assert_eq!(s.routes["marketing"], "http://127.0.0.1:50061");
        assert_eq!(s.routes["email_import"], "http://127.0.0.1:50065");
        assert_eq!(s.cors.allowed_origins.len(), 2);
    }

    #[test]
    fn bad_values_are_refused_naming_their_key() {
        let mut s = defaults();
        s.routes.insert("marketing".into(), "ftp://x".into());
        assert!(
            s.validate()
                .unwrap_err()
                .to_string()
                .contains("routes.marketing")
        );

        let mut s = defaults();
        s.cors.allowed_origins = vec!["http://localhost:3000/app".into()];
        assert!(
            s.validate()
                .unwrap_err()
                .to_string()
                .contains("cors.allowed_origins")
        );

        let mut s = defaults();
        s.deadlines.default_ms = s.deadlines.max_ms + 1;
        assert!(
            s.validate()
                .unwrap_err()
                .to_string()
                .contains("deadlines.default_ms")
        );

        let mut s = defaults();
        s.rate_limit.burst = 0;
        assert!(
            s.validate()
                .unwrap_err()
                .to_string()
                .contains("rate_limit.burst")
        );
    }

    #[test]
    fn environment_variables_set_routes_and_origins() {
        // The same environment source as `crm_platform::settings::load`, with a fixed map.
        let env = config::Environment::with_prefix("CRM")
            .prefix_separator("__")
            .separator("__")
            .try_parsing(true)
            .source(Some(
                [
                    ("CRM__ROUTES__EMAIL_IMPORT", "http://10.0.0.7:9000"),
                    (
                        "CRM__CORS__ALLOWED_ORIGINS",
                        "https://crm.example.com,https://admin.example.com",
                    ),
                    ("CRM__RATE_LIMIT__BURST", "7"),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            ));
        let s: Settings = config::Config::builder()
            .add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml))
            .add_source(env)
            .build()
            .and_then(config::Config::try_deserialize)
            .unwrap();
        s.validate().unwrap();
        assert_eq!(s.routes["email_import"], "http://10.0.0.7:9000");
        assert_eq!(s.routes["marketing"], "http://127.0.0.1:50061");
        assert_eq!(
            s.cors.allowed_origins,
            ["https://crm.example.com", "https://admin.example.com"]
        );
        assert_eq!(s.rate_limit.burst, 7);
    }

    #[test]
    fn origins_may_be_one_comma_separated_string() {
        let s: CorsSettings = serde_json::from_str(
            r#"{"allowed_origins": "https://a.example.com, http://localhost:3000"}"#,
        )
        .unwrap();
        assert_eq!(
            s.allowed_origins,
            ["https://a.example.com", "http://localhost:3000"]
        );
    }
}
