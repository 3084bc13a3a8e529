//! The catalogue of post-sale services (T7).

use sqlx::{PgConnection, Row as _, postgres::PgRow};
use uuid::Uuid;

use crate::domain::staff::PostSaleService;

const COLUMNS: &str = "id, name, description, article_id, hourly_rate_units, \
     hourly_rate_currency, active, create_time, update_time, version";

fn of(row: &PgRow) -> sqlx::Result<PostSaleService> {
    Ok(PostSaleService {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        article_id: row.try_get("article_id")?,
        hourly_rate_units: row.try_get("hourly_rate_units")?,
        hourly_rate_currency: row.try_get("hourly_rate_currency")?,
        active: row.try_get("active")?,
        create_time: row.try_get("create_time")?,
        update_time: row.try_get("update_time")?,
        version: row.try_get("version")?,
    })
}

/// Whether `err` is the name's unique violation.
pub fn is_name_taken(err: &sqlx::Error) -> bool {
    super::is_unique_violation(err, "post_sale_services_name_unique")
}

/// Inserts a service; a taken name is the unique violation ([`is_name_taken`]).
pub async fn insert(conn: &mut PgConnection, s: &PostSaleService) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO post_sale_services (id, name, description, article_id, hourly_rate_units, \
         hourly_rate_currency, active, create_time, update_time, version) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(s.id)
    .bind(&s.name)
    .bind(&s.description)
    .bind(s.article_id)
    .bind(s.hourly_rate_units)
    .bind(&s.hourly_rate_currency)
    .bind(s.active)
    .bind(s.create_time)
    .bind(s.update_time)
    .bind(s.version)
    .execute(conn)
    .await?;
    Ok(())
}

/// Replaces a service whose version is still `expected_version`.
pub async fn update(
    conn: &mut PgConnection,
    s: &PostSaleService,
    expected_version: i64,
) -> sqlx::Result<bool> {
    Ok(sqlx::query(
        "UPDATE post_sale_services SET name = $2, description = $3, article_id = $4, \
         hourly_rate_units = $5, hourly_rate_currency = $6, active = $7, update_time = $8, \
         version = $9 WHERE id = $1 AND version = $10",
    )
    .bind(s.id)
    .bind(&s.name)
    .bind(&s.description)
    .bind(s.article_id)
    .bind(s.hourly_rate_units)
    .bind(&s.hourly_rate_currency)
    .bind(s.active)
    .bind(s.update_time)
    .bind(s.version)
    .bind(expected_version)
    .execute(conn)
    .await?
    .rows_affected()
        == 1)
}

/// One service.
pub async fn get(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<PostSaleService>> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM post_sale_services WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(conn)
    .await?
    .map(|row| of(&row))
    .transpose()
}

/// A page of services by lower(name), id after `after`; `name_like` is a lower-case LIKE
/// pattern.
pub async fn list(
    conn: &mut PgConnection,
    name_like: Option<&str>,
    include_inactive: bool,
    after: Option<&(String, Uuid)>,
    limit: i64,
) -> sqlx::Result<Vec<PostSaleService>> {
    let (name, id) = after.cloned().unzip();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM post_sale_services \
         WHERE ($1::text IS NULL OR lower(name) LIKE $1) AND ($2 OR active) \
         AND ($3::text IS NULL OR (lower(name), id) > ($3, $4)) \
         ORDER BY lower(name), id LIMIT $5"
    )))
    .bind(name_like)
    .bind(include_inactive)
    .bind(name)
    .bind(id)
    .bind(limit)
    .fetch_all(conn)
    .await?
    .iter()
    .map(of)
    .collect()
}
