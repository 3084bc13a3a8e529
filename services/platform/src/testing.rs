//! Support for integration tests: a fresh database and Redis stream namespace per test, on the
//! servers that `cargo xtask test` provisions (`CRM_TEST_DATABASE_URL`, `CRM_TEST_REDIS_URL`),
//! settings pointing at them, readiness waits and tokens.

use std::{net::SocketAddr, time::Duration};

use secrecy::SecretString;

use crate::{
    auth::{AuthSettings, TokenIssuer},
    settings::{BaseSettings, DatabaseSettings, RedisSettings, ServerSettings},
};

/// A database created for one test and dropped when the value is dropped.
pub struct TestDatabase {
    admin_url: String,
    name: String,
    /// Settings that point at the new database.
    pub settings: DatabaseSettings,
}

fn env_url(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: run the tests with `cargo xtask test`, which starts PostgreSQL \
             and Redis and sets it"
        )
    })
}

impl TestDatabase {
    /// Creates an empty database on the test server; `schema` is the schema the service will use.
    pub async fn create(schema: &str) -> Self {
        let admin_url = env_url("CRM_TEST_DATABASE_URL");
        let name = format!("test_{}", uuid::Uuid::now_v7().simple());
        let mut admin = connect_admin(&admin_url).await;
        sqlx::Executor::execute(
            &mut admin,
            sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")),
        )
        .await
        .expect("create the test database");
        let url = replace_database(&admin_url, &name);
        Self {
            admin_url,
            name,
            settings: DatabaseSettings {
                url: SecretString::from(url),
                schema: schema.to_owned(),
                max_connections: 10,
            },
        }
    }

    /// URL of the test database.
    pub fn url(&self) -> String {
        replace_database(&self.admin_url, &self.name)
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        // Drop runs outside any runtime guarantee: use a thread with its own small runtime.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async {
                let mut admin = connect_admin(&admin_url).await;
                let _ = sqlx::Executor::execute(
                    &mut admin,
                    sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")),
                )
                .await;
            });
        })
        .join();
    }
}

async fn connect_admin(url: &str) -> sqlx::PgConnection {
    use sqlx::Connection as _;
    sqlx::PgConnection::connect(url)
        .await
        .expect("connect to CRM_TEST_DATABASE_URL")
}

fn replace_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let base = match base.rfind('/') {
        Some(slash) if slash > "postgres://".len() => &base[..slash],
        _ => base,
    };
    match query {
        Some(query) => format!("{base}/{database}?{query}"),
        None => format!("{base}/{database}"),
    }
}

/// Redis settings for one test: the test server, with a stream prefix no other test uses.
pub fn redis_settings() -> RedisSettings {
    RedisSettings {
        url: SecretString::from(env_url("CRM_TEST_REDIS_URL")),
        stream_prefix: format!("test.{}.", uuid::Uuid::now_v7().simple()),
    }
}

/// Points `base` at a test's own database and Redis namespace, on a free port, with the relay
/// and consumers tuned to react within tens of milliseconds.
pub fn use_test_backing(base: &mut BaseSettings, database: &TestDatabase, redis: RedisSettings) {
    base.server = ServerSettings::on(SocketAddr::from(([127, 0, 0, 1], 0)));
    base.database = database.settings.clone();
    base.redis = redis;
    base.relay.poll_interval_ms = 50;
    base.consumer.block_ms = 200;
    base.consumer.retry_backoff_ms = 100;
    base.blob.root = std::env::temp_dir().join("crm-test-blobs");
}

/// Installs telemetry once per test process, as the binaries do, so spans get trace ids and
/// trace context reaches events.
pub fn init_telemetry(base: &BaseSettings) {
    static ONCE: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    ONCE.get_or_init(|| {
        std::mem::forget(crate::telemetry::init("crm-test", &base.telemetry).expect("telemetry"));
    });
}

/// Waits until the server at `addr` reports SERVING for `service` ("" for the whole server).
pub async fn wait_serving(addr: SocketAddr, service: &str) {
    use tonic_health::pb::{
        HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
    };
    for _ in 0..400 {
        if let Ok(channel) = tonic::transport::Channel::from_shared(format!("http://{addr}"))
            .expect("valid uri")
            .connect()
            .await
            && let Ok(response) = HealthClient::new(channel)
                .check(HealthCheckRequest {
                    service: service.to_owned(),
                })
                .await
            && response.get_ref().status == ServingStatus::Serving as i32
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{addr} never reported SERVING for {service:?}");
}

/// A development user token for `user` with `roles`, valid for ten minutes.
pub fn user_token(user: &str, roles: &[&str]) -> String {
    TokenIssuer::for_users(&AuthSettings::development())
        .expect("the development settings have a user secret")
        .issue(user, roles, Duration::from_secs(600))
}

/// `message` as a request of `user` with `roles`.
pub fn authed<T>(message: T, user: &str, roles: &[&str]) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", user_token(user, roles))
            .parse()
            .expect("a token is ASCII"),
    );
    request
}

/// `message` as a request the service `service` makes for `user` with `roles` (an
/// on-behalf-of service token).
pub fn on_behalf<T>(message: T, service: &str, user: &str, roles: &[&str]) -> tonic::Request<T> {
    let settings = AuthSettings::development();
    let user = crate::auth::TokenVerifier::from_settings(&settings)
        .expect("development keys")
        .verify(&user_token(user, roles))
        .expect("a development token verifies");
    let mut request = tonic::Request::new(message);
    tonic::service::Interceptor::call(
        &mut crate::auth::ServiceCallInterceptor::new(service, &settings).acting_for(&user),
        tonic::Request::new(()),
    )
    .expect("an on-behalf-of token")
    .metadata()
    .get("authorization")
    .cloned()
    .map(|value| request.metadata_mut().insert("authorization", value));
    request
}

/// `message` as a request of the service `name` (a service token).
pub fn as_service<T>(message: T, name: &str) -> tonic::Request<T> {
    let token = TokenIssuer::for_services(&AuthSettings::development())
        .issue_service_token(name, Duration::from_secs(600));
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("a token is ASCII"),
    );
    request
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_database_name_is_replaced_in_the_url() {
        assert_eq!(
            super::replace_database("postgres://crm@127.0.0.1:5/postgres?sslmode=disable", "t1"),
            "postgres://crm@127.0.0.1:5/t1?sslmode=disable"
        );
        assert_eq!(
            super::replace_database("postgres://crm@127.0.0.1:5", "t1"),
            "postgres://crm@127.0.0.1:5/t1"
        );
    }
}
