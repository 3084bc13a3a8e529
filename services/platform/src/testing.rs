//! Support for integration tests: a fresh database and Redis stream namespace per test, on the
//! servers that `cargo xtask test` provisions (`CRM_TEST_DATABASE_URL`, `CRM_TEST_REDIS_URL`).

use secrecy::SecretString;

use crate::settings::{DatabaseSettings, RedisSettings};

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
