//! Number series (O6) and taking a number from one.

use sqlx::{PgConnection, Postgres, QueryBuilder, Row as _, postgres::PgRow};
use uuid::Uuid;

use super::decode_error;
use crate::domain::{
    catalogue::{DocKind, NumberSeries},
    numbering::{Counter, format_number},
};

const COLUMNS: &str = "id, document_kind, prefix, next_number, min_digits, is_default, active, \
     yearly_restart, counter_year, create_time, update_time, version";

/// Inserts a series; false when its prefix is taken for its kind.
pub async fn insert(conn: &mut PgConnection, s: &NumberSeries) -> sqlx::Result<bool> {
    let inserted = sqlx::query(
        "INSERT INTO number_series (id, document_kind, prefix, next_number, min_digits, \
         is_default, active, yearly_restart, counter_year, create_time, update_time, version) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
         ON CONFLICT (document_kind, prefix) DO NOTHING",
    )
    .bind(s.id)
    .bind(s.document_kind.as_db())
    .bind(&s.prefix)
    .bind(s.counter.next_number)
    .bind(s.min_digits)
    .bind(s.is_default)
    .bind(s.active)
    .bind(s.counter.yearly_restart)
    .bind(s.counter.counter_year)
    .bind(s.create_time)
    .bind(s.update_time)
    .bind(s.version)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

/// Writes a series over version `expected_version`; false when stale.
pub async fn update(
    conn: &mut PgConnection,
    s: &NumberSeries,
    expected_version: i64,
) -> sqlx::Result<bool> {
    let updated = sqlx::query(
        "UPDATE number_series SET prefix = $2, next_number = $3, min_digits = $4, \
         is_default = $5, active = $6, yearly_restart = $7, counter_year = $8, update_time = $9, \
         version = $10 WHERE id = $1 AND version = $11",
    )
    .bind(s.id)
    .bind(&s.prefix)
    .bind(s.counter.next_number)
    .bind(s.min_digits)
    .bind(s.is_default)
    .bind(s.active)
    .bind(s.counter.yearly_restart)
    .bind(s.counter.counter_year)
    .bind(s.update_time)
    .bind(s.version)
    .bind(expected_version)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(updated == 1)
}

/// Clears the default flag of the other series of `kind` (a new default takes over).
pub async fn clear_other_defaults(
    conn: &mut PgConnection,
    kind: DocKind,
    keep: Uuid,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE number_series SET is_default = false, version = version + 1 \
         WHERE document_kind = $1 AND is_default AND id <> $2",
    )
    .bind(kind.as_db())
    .bind(keep)
    .execute(conn)
    .await?;
    Ok(())
}

/// Whether `err` is a unique index refusing a duplicate prefix.
pub fn is_prefix_taken(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db)
        if db.constraint() == Some("number_series_document_kind_prefix_key"))
}

/// The series with `id`, locked when `for_update`.
pub async fn get(
    conn: &mut PgConnection,
    id: Uuid,
    for_update: bool,
) -> sqlx::Result<Option<NumberSeries>> {
    let mut query = QueryBuilder::<Postgres>::new("SELECT ");
    query
        .push(COLUMNS)
        .push(" FROM number_series WHERE id = ")
        .push_bind(id);
    if for_update {
        query.push(" FOR UPDATE");
    }
    let row = query.build().fetch_optional(conn).await?;
    row.map(|r| from_row(&r)).transpose()
}

/// The position of a series in the list order.
pub type Cursor = (String, String, Uuid);

/// One page of series by kind, prefix, id.
pub async fn list(
    conn: &mut PgConnection,
    kind: Option<DocKind>,
    after: Option<&Cursor>,
    limit: i64,
) -> sqlx::Result<Vec<(NumberSeries, Cursor)>> {
    let mut query = QueryBuilder::<Postgres>::new("SELECT ");
    query.push(COLUMNS).push(" FROM number_series WHERE true");
    if let Some(kind) = kind {
        query.push(" AND document_kind = ").push_bind(kind.as_db());
    }
    if let Some((kind, prefix, id)) = after {
        query
            .push(" AND (document_kind, prefix, id) > (")
            .push_bind(kind.clone())
            .push(", ")
            .push_bind(prefix.clone())
            .push(", ")
            .push_bind(*id)
            .push(")");
    }
    query
        .push(" ORDER BY document_kind, prefix, id LIMIT ")
        .push_bind(limit);
    let rows = query.build().fetch_all(conn).await?;
    rows.iter()
        .map(|row| {
            let series = from_row(row)?;
            let cursor = (
                series.document_kind.as_db().to_owned(),
                series.prefix.clone(),
                series.id,
            );
            Ok((series, cursor))
        })
        .collect()
}

/// Why no number could be taken.
#[derive(Debug, thiserror::Error)]
pub enum TakeError {
    /// The named series does not exist, is of another kind or inactive; or the kind has no
    /// default.
    #[error("{0}")]
    Unusable(String),
    /// The database failed.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Takes the next number of `series_id` (or of the default series of `kind`) on a day of
/// `year`, with the series row locked until the caller's transaction ends: concurrent issues
/// queue and get consecutive numbers; a rollback gives the number back. Returns the series used
/// and the printed number.
pub async fn take_number(
    conn: &mut PgConnection,
    kind: DocKind,
    series_id: Option<Uuid>,
    year: i32,
) -> Result<(Uuid, String), TakeError> {
    let mut query = QueryBuilder::<Postgres>::new("SELECT ");
    query.push(COLUMNS).push(" FROM number_series WHERE ");
    match series_id {
        Some(id) => query.push("id = ").push_bind(id),
        None => query
            .push("is_default AND document_kind = ")
            .push_bind(kind.as_db()),
    };
    query.push(" FOR UPDATE");
    let row = query.build().fetch_optional(&mut *conn).await?;
    let series = row.map(|r| from_row(&r)).transpose()?.ok_or_else(|| {
        TakeError::Unusable(match series_id {
            Some(id) => format!("number series {id} does not exist"),
            None => format!("there is no default {} number series", kind.as_db()),
        })
    })?;
    if series.document_kind != kind {
        return Err(TakeError::Unusable(format!(
            "number series {} numbers {}s, not {}s",
            series.id,
            series.document_kind.as_db(),
            kind.as_db()
        )));
    }
    if !series.active {
        return Err(TakeError::Unusable(format!(
            "number series {} is inactive",
            series.id
        )));
    }
    let taken = series.counter.take(year);
    sqlx::query(
        "UPDATE number_series SET next_number = $2, counter_year = $3, version = version + 1 \
         WHERE id = $1",
    )
    .bind(series.id)
    .bind(taken.after.next_number)
    .bind(taken.after.counter_year)
    .execute(&mut *conn)
    .await?;
    Ok((
        series.id,
        format_number(
            &series.prefix,
            series.counter.yearly_restart,
            taken.year,
            taken.number,
            series.min_digits,
        ),
    ))
}

fn from_row(row: &PgRow) -> sqlx::Result<NumberSeries> {
    let kind: String = row.try_get("document_kind")?;
    Ok(NumberSeries {
        id: row.try_get("id")?,
        document_kind: DocKind::from_db(&kind).ok_or_else(|| decode_error("kind", &kind))?,
        prefix: row.try_get("prefix")?,
        counter: Counter {
            next_number: row.try_get("next_number")?,
            counter_year: row.try_get("counter_year")?,
            yearly_restart: row.try_get("yearly_restart")?,
        },
        min_digits: row.try_get("min_digits")?,
        is_default: row.try_get("is_default")?,
        active: row.try_get("active")?,
        create_time: row.try_get("create_time")?,
        update_time: row.try_get("update_time")?,
        version: row.try_get("version")?,
    })
}
