//! The Redis connection every service shares for streams.

use redis::aio::ConnectionManager;
use secrecy::ExposeSecret as _;

use crate::settings::RedisSettings;

/// Opens a self-reconnecting connection to the configured Redis.
pub async fn connect(settings: &RedisSettings) -> redis::RedisResult<ConnectionManager> {
    let client = redis::Client::open(settings.url.expose_secret())?;
    ConnectionManager::new(client).await
}

/// Whether Redis answers PING.
pub async fn ping(connection: &mut ConnectionManager) -> bool {
    redis::cmd("PING")
        .query_async::<String>(connection)
        .await
        .is_ok()
}

/// The full name of `stream` with the configured prefix (e.g. `crm.events.marketing`).
pub fn stream_name(settings: &RedisSettings, stream: &str) -> String {
    format!("{}{}", settings.stream_prefix, stream)
}
