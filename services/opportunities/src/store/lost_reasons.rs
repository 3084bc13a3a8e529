//! The lost-reason catalogue (O5).

use sqlx::{PgConnection, Postgres, QueryBuilder, Row as _, postgres::PgRow};
use uuid::Uuid;

use crate::domain::catalogue::LostReason;

const COLUMNS: &str =
    "id, name, description, active, sort_order, create_time, update_time, version";

/// Inserts a reason; false when its name is taken (case-insensitive).
pub async fn insert(conn: &mut PgConnection, r: &LostReason) -> sqlx::Result<bool> {
    let inserted = sqlx::query(
        "INSERT INTO lost_reasons (id, name, description, active, sort_order, create_time, \
         update_time, version) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
    )
    .bind(r.id)
    .bind(&r.name)
    .bind(&r.description)
    .bind(r.active)
    .bind(r.sort_order)
    .bind(r.create_time)
    .bind(r.update_time)
    .bind(r.version)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

/// Writes a reason over version `expected_version`: `Ok(false)` when stale; a name taken by
/// another reason is a unique violation (see [`is_name_taken`]).
pub async fn update(
    conn: &mut PgConnection,
    r: &LostReason,
    expected_version: i64,
) -> sqlx::Result<bool> {
    let updated = sqlx::query(
        "UPDATE lost_reasons SET name = $2, description = $3, active = $4, sort_order = $5, \
         update_time = $6, version = $7 WHERE id = $1 AND version = $8",
    )
    .bind(r.id)
    .bind(&r.name)
    .bind(&r.description)
    .bind(r.active)
    .bind(r.sort_order)
    .bind(r.update_time)
    .bind(r.version)
    .bind(expected_version)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(updated == 1)
}

/// Whether `err` is the name's unique index refusing a duplicate.
pub fn is_name_taken(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.constraint() == Some("lost_reasons_by_name"))
}

/// The reason with `id`.
pub async fn get(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<LostReason>> {
    let mut query = QueryBuilder::<Postgres>::new("SELECT ");
    query
        .push(COLUMNS)
        .push(" FROM lost_reasons WHERE id = ")
        .push_bind(id);
    let row = query.build().fetch_optional(conn).await?;
    row.map(|r| from_row(&r)).transpose()
}

/// The position of a reason in the list order.
pub type Cursor = (i32, String, Uuid);

/// One page of reasons by sort order, then name, then id.
pub async fn list(
    conn: &mut PgConnection,
    include_inactive: bool,
    after: Option<&Cursor>,
    limit: i64,
) -> sqlx::Result<Vec<(LostReason, Cursor)>> {
    let mut query = QueryBuilder::<Postgres>::new("SELECT ");
    query
        .push(COLUMNS)
        .push(", lower(name) AS sort_name FROM lost_reasons WHERE true");
    if !include_inactive {
        query.push(" AND active");
    }
    if let Some((order, name, id)) = after {
        query
            .push(" AND (sort_order, lower(name), id) > (")
            .push_bind(*order)
            .push(", ")
            .push_bind(name.clone())
            .push(", ")
            .push_bind(*id)
            .push(")");
    }
    query
        .push(" ORDER BY sort_order, lower(name), id LIMIT ")
        .push_bind(limit);
    let rows = query.build().fetch_all(conn).await?;
    rows.iter()
        .map(|row| {
            let reason = from_row(row)?;
            let cursor = (reason.sort_order, row.try_get("sort_name")?, reason.id);
            Ok((reason, cursor))
        })
        .collect()
}

fn from_row(row: &PgRow) -> sqlx::Result<LostReason> {
    Ok(LostReason {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        active: row.try_get("active")?,
        sort_order: row.try_get("sort_order")?,
        create_time: row.try_get("create_time")?,
        update_time: row.try_get("update_time")?,
        version: row.try_get("version")?,
    })
}
