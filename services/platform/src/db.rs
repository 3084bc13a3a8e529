//! The service's PostgreSQL pool: every connection's `search_path` is the service's own schema,
//! so its queries name tables without a schema and can never reach a sibling's. Migrations run at
//! start: first the platform's (outbox, processed events) in `_platform_migrations`, then the
//! service's own in `_sqlx_migrations`, both inside the schema.

use std::time::Duration;

use secrecy::ExposeSecret as _;
use sqlx::{
    Executor as _, PgPool,
    migrate::Migrator,
    postgres::{PgConnectOptions, PgPoolOptions},
};

use crate::settings::DatabaseSettings;

static PLATFORM_MIGRATIONS: Migrator = sqlx::migrate!("./migrations");

/// Failures connecting or migrating.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The URL is not a valid PostgreSQL URL.
    #[error("invalid database.url: {0}")]
    Url(sqlx::Error),
    /// The server could not be reached or refused a statement.
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
    /// A migration failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// Connects to the database, creates the service's schema when missing, binds every connection
/// to it and applies the platform's then the service's `migrations`.
pub async fn connect_and_migrate(
    settings: &DatabaseSettings,
    migrations: &Migrator,
) -> Result<PgPool, DbError> {
    let pool = connect(settings).await?;
    migrate(&pool, migrations).await?;
    Ok(pool)
}

/// Connects to the database with every connection's `search_path` set to the service's schema.
pub async fn connect(settings: &DatabaseSettings) -> Result<PgPool, DbError> {
    let options: PgConnectOptions = settings.url.expose_secret().parse().map_err(DbError::Url)?;
    // `search_path` as a startup option: no extra round trip per connection, and it holds for
    // every statement including those of the migrator.
    let options = options.options([("search_path", settings.schema.as_str())]);
    let schema = settings.schema.clone();
    let pool = PgPoolOptions::new()
        .max_connections(settings.max_connections)
        .acquire_timeout(Duration::from_secs(10))
        .connect_lazy_with(options);
    // The schema must exist before the first query that relies on the search path. Look first:
    // CREATE SCHEMA needs the CREATE privilege on the database even when the schema exists, and
    // a production role that owns only its schema does not have it.
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
            .bind(&schema)
            .fetch_one(&pool)
            .await?;
    if !exists {
        // The name was validated as an identifier by the settings, so quoting it is enough.
        pool.execute(sqlx::AssertSqlSafe(format!(
            "CREATE SCHEMA IF NOT EXISTS \"{schema}\""
        )))
        .await?;
    }
    Ok(pool)
}

/// Applies the platform's migrations, then `migrations`, inside the schema the pool is bound to.
/// Each set keeps its own history table so their version numbers never collide.
pub async fn migrate(pool: &PgPool, migrations: &Migrator) -> Result<(), DbError> {
    let mut platform = Migrator::with_migrations(PLATFORM_MIGRATIONS.iter().cloned().collect());
    platform.dangerous_set_table_name("_platform_migrations");
    platform.run(pool).await?;
    migrations.run(pool).await?;
    Ok(())
}

/// Records that `creator` used `request_id` to create a `kind` record with `resource_id`, or
/// returns the record created the first time: the idempotency of every creating call. Claimed
/// first in the creating transaction, so a concurrent twin waits on the key until the first
/// commits (or rolls back, taking the claim with it).
///
/// The service's schema has the table (each service creates it in its first migration):
/// `create_requests (kind TEXT, creator TEXT, request_id TEXT, resource_id UUID,
/// create_time TIMESTAMPTZ, PRIMARY KEY (kind, creator, request_id))`.
pub async fn claim_request(
    conn: &mut sqlx::PgConnection,
    kind: &str,
    creator: &str,
    request_id: &str,
    resource_id: uuid::Uuid,
    at: chrono::DateTime<chrono::Utc>,
) -> sqlx::Result<Option<uuid::Uuid>> {
    let inserted = sqlx::query(
        "INSERT INTO create_requests (kind, creator, request_id, resource_id, create_time) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (kind, creator, request_id) DO NOTHING",
    )
    .bind(kind)
    .bind(creator)
    .bind(request_id)
    .bind(resource_id)
    .bind(at)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if inserted == 1 {
        return Ok(None);
    }
    sqlx::query_scalar(
        "SELECT resource_id FROM create_requests \
         WHERE kind = $1 AND creator = $2 AND request_id = $3",
    )
    .bind(kind)
    .bind(creator)
    .bind(request_id)
    .fetch_one(&mut *conn)
    .await
    .map(Some)
}

/// Whether the database answers.
pub async fn ping(pool: &PgPool) -> bool {
    sqlx::query("SELECT 1").execute(pool).await.is_ok()
}
