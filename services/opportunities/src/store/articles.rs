//! The article catalogue (O7).

use sqlx::{PgConnection, Postgres, QueryBuilder, Row as _, postgres::PgRow, types::Json};
use uuid::Uuid;

use super::decode_error;
use crate::domain::{
    catalogue::{Article, Attachment},
    money::{Currency, Money},
};

const COLUMNS: &str = "id, code, name, unit, price_units, currency, vat_rate_bp, kind, \
     description, pictures, active, create_time, update_time, version";

/// Inserts an article; false when its code is taken (case-insensitive).
pub async fn insert(conn: &mut PgConnection, a: &Article) -> sqlx::Result<bool> {
    let inserted = sqlx::query(
        "INSERT INTO articles (id, code, name, unit, price_units, currency, vat_rate_bp, kind, \
         description, pictures, active, create_time, update_time, version) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) \
         ON CONFLICT DO NOTHING",
    )
    .bind(a.id)
    .bind(&a.code)
    .bind(&a.name)
    .bind(&a.unit)
    .bind(a.price.units)
    .bind(a.price.currency.as_str())
    .bind(a.vat_rate_bp)
    .bind(kind(a))
    .bind(&a.description)
    .bind(Json(&a.pictures))
    .bind(a.active)
    .bind(a.create_time)
    .bind(a.update_time)
    .bind(a.version)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

/// Writes an article over version `expected_version`; false when stale.
pub async fn update(
    conn: &mut PgConnection,
    a: &Article,
    expected_version: i64,
) -> sqlx::Result<bool> {
    let updated = sqlx::query(
        "UPDATE articles SET code = $2, name = $3, unit = $4, price_units = $5, currency = $6, \
         vat_rate_bp = $7, kind = $8, description = $9, pictures = $10, active = $11, \
         update_time = $12, version = $13 WHERE id = $1 AND version = $14",
    )
    .bind(a.id)
    .bind(&a.code)
    .bind(&a.name)
    .bind(&a.unit)
    .bind(a.price.units)
    .bind(a.price.currency.as_str())
    .bind(a.vat_rate_bp)
    .bind(kind(a))
    .bind(&a.description)
    .bind(Json(&a.pictures))
    .bind(a.active)
    .bind(a.update_time)
    .bind(a.version)
    .bind(expected_version)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(updated == 1)
}

/// Whether `err` is the code's unique index refusing a duplicate.
pub fn is_code_taken(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.constraint() == Some("articles_by_code"))
}

fn kind(a: &Article) -> &'static str {
    if a.is_service { "service" } else { "product" }
}

/// The articles with `ids` (missing ones are left out), in no particular order.
pub async fn get_many(conn: &mut PgConnection, ids: &[Uuid]) -> sqlx::Result<Vec<Article>> {
    let mut query = QueryBuilder::<Postgres>::new("SELECT ");
    query
        .push(COLUMNS)
        .push(" FROM articles WHERE id = ANY(")
        .push_bind(ids.to_vec())
        .push(")");
    let rows = query.build().fetch_all(conn).await?;
    rows.iter().map(from_row).collect()
}

/// The article with `id`.
pub async fn get(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<Article>> {
    Ok(get_many(conn, &[id]).await?.pop())
}

/// Filters of ListArticles.
#[derive(Clone, Debug, Default, Hash)]
pub struct Filter {
    /// Code prefix, LIKE-escaped.
    pub code_prefix: Option<String>,
    /// Name fragment, LIKE-escaped.
    pub name_contains: Option<String>,
    /// Services (true) or products (false).
    pub is_service: Option<bool>,
    /// Inactive ones too.
    pub include_inactive: bool,
}

/// The position of an article in the list order.
pub type Cursor = (String, Uuid);

/// One page of articles ordered by code, then id.
pub async fn list(
    conn: &mut PgConnection,
    filter: &Filter,
    after: Option<&Cursor>,
    limit: i64,
) -> sqlx::Result<Vec<(Article, Cursor)>> {
    let mut query = QueryBuilder::<Postgres>::new("SELECT ");
    query
        .push(COLUMNS)
        .push(", lower(code) AS sort_code FROM articles WHERE true");
    if let Some(prefix) = &filter.code_prefix {
        query
            .push(" AND lower(code) LIKE lower(")
            .push_bind(prefix.clone())
            .push(") || '%'");
    }
    if let Some(text) = &filter.name_contains {
        query
            .push(" AND lower(name) LIKE '%' || lower(")
            .push_bind(text.clone())
            .push(") || '%'");
    }
    if let Some(is_service) = filter.is_service {
        query
            .push(" AND kind = ")
            .push_bind(if is_service { "service" } else { "product" });
    }
    if !filter.include_inactive {
        query.push(" AND active");
    }
    if let Some((code, id)) = after {
        query
            .push(" AND (lower(code), id) > (")
            .push_bind(code.clone())
            .push(", ")
            .push_bind(*id)
            .push(")");
    }
    query
        .push(" ORDER BY lower(code), id LIMIT ")
        .push_bind(limit);
    let rows = query.build().fetch_all(conn).await?;
    rows.iter()
        .map(|row| {
            let article = from_row(row)?;
            let cursor = (row.try_get("sort_code")?, article.id);
            Ok((article, cursor))
        })
        .collect()
}

fn from_row(row: &PgRow) -> sqlx::Result<Article> {
    let currency: String = row.try_get("currency")?;
    let kind: String = row.try_get("kind")?;
    let Json(pictures): Json<Vec<Attachment>> = row.try_get("pictures")?;
    Ok(Article {
        id: row.try_get("id")?,
        code: row.try_get("code")?,
        name: row.try_get("name")?,
        unit: row.try_get("unit")?,
        price: Money::new(
            row.try_get("price_units")?,
            Currency::parse(&currency).map_err(|_| decode_error("currency", &currency))?,
        ),
        vat_rate_bp: row.try_get("vat_rate_bp")?,
        is_service: kind == "service",
        description: row.try_get("description")?,
        pictures,
        active: row.try_get("active")?,
        create_time: row.try_get("create_time")?,
        update_time: row.try_get("update_time")?,
        version: row.try_get("version")?,
    })
}
