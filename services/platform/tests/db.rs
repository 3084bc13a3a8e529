//! The database pool: bound to the service's schema, migrations inside it, and usable by a
//! production role that owns its schema but may not create schemas in the database.

use crm_platform::{db, settings::DatabaseSettings, testing::TestDatabase};
use secrecy::ExposeSecret as _;
use sqlx::{Connection as _, Executor as _, PgConnection};

static NO_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate::Migrator::DEFAULT;

/// `url` with its user replaced by `user`.
fn as_user(url: &str, user: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap();
    let host = rest.split_once('@').map_or(rest, |(_, host)| host);
    format!("{scheme}://{user}@{host}")
}

#[tokio::test]
async fn a_role_that_only_owns_its_schema_can_start_the_service() {
    let database = TestDatabase::create("unused").await;
    let admin_url = database.url();
    let role = format!("svc_{}", uuid::Uuid::now_v7().simple());
    let mut admin = PgConnection::connect(&admin_url).await.unwrap();
    for statement in [
        format!("CREATE ROLE {role} LOGIN"),
        format!("CREATE SCHEMA owned AUTHORIZATION {role}"),
        format!(
            "REVOKE CREATE ON DATABASE {} FROM PUBLIC",
            admin_url.rsplit('/').next().unwrap()
        ),
    ] {
        admin.execute(sqlx::AssertSqlSafe(statement)).await.unwrap();
    }

    let settings = DatabaseSettings {
        url: as_user(database.settings.url.expose_secret(), &role).into(),
        schema: "owned".into(),
        max_connections: 2,
    };
    let pool = db::connect_and_migrate(&settings, &NO_MIGRATIONS)
        .await
        .expect("a service whose schema exists needs no CREATE on the database");
    // Its tables (the platform's outbox) landed in its own schema.
    let schema: String = sqlx::query_scalar(
        "SELECT table_schema::text FROM information_schema.tables WHERE table_name = 'outbox'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(schema, "owned");
    pool.close().await;

    admin.close().await.unwrap();
    drop(database);
    let mut server = PgConnection::connect(&std::env::var("CRM_TEST_DATABASE_URL").unwrap())
        .await
        .unwrap();
    server
        .execute(sqlx::AssertSqlSafe(format!("DROP ROLE {role}")))
        .await
        .unwrap();
}
