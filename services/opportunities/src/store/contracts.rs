//! Contracts, contract coverage (O9) and the contracts a month's subscription billing covers.

use chrono::NaiveDate;
use sqlx::{PgConnection, Postgres, QueryBuilder, Row as _, postgres::PgRow};
use uuid::Uuid;

use super::{
    NewestFirstCursor, decode_error,
    documents::{HEADER_COLUMNS, attach_lines, bind_header, header_from_row, replace_lines},
};
use crate::domain::documents::{Contract, ContractKind, ContractStatus};

const OWN_COLUMNS: &str = "status, kind, order_id, offer_id, task_id, signing_date, start_date, \
     end_date, termination_date, billing_day, status_note";

/// Inserts a new contract with its lines; false when the task already has one (T7: one per
/// task).
pub async fn insert(conn: &mut PgConnection, c: &Contract) -> sqlx::Result<bool> {
    let totals = c.doc.totals();
    let query = sqlx::query(
        "INSERT INTO contracts (id, number, series_id, partner_id, opportunity_id, campaign_id, \
         currency, total_without_vat, total_vat, total_with_vat, notes, attachments, customer, \
         create_time, update_time, creator, updater, version, status, kind, order_id, offer_id, \
         task_id, signing_date, start_date, end_date, termination_date, billing_day, \
         status_note) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, \
         $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28, $29) \
         ON CONFLICT (task_id) WHERE task_id IS NOT NULL DO NOTHING",
    );
    let inserted = bind_own(bind_header(query, &c.doc, &totals), c)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    if inserted == 1 {
        replace_lines(conn, c.doc.id, &c.doc.lines).await?;
    }
    Ok(inserted == 1)
}

/// The contract drafted from `task_id`.
pub async fn id_of_task(conn: &mut PgConnection, task_id: Uuid) -> sqlx::Result<Option<Uuid>> {
    sqlx::query_scalar("SELECT id FROM contracts WHERE task_id = $1")
        .bind(task_id)
        .fetch_optional(conn)
        .await
}

/// Writes every field of `c` (and its lines when `lines_changed`) over version
/// `expected_version`; false when stale.
pub async fn update(
    conn: &mut PgConnection,
    c: &Contract,
    expected_version: i64,
    lines_changed: bool,
) -> sqlx::Result<bool> {
    let totals = c.doc.totals();
    let query = sqlx::query(
        "UPDATE contracts SET number = $2, series_id = $3, partner_id = $4, \
         opportunity_id = $5, campaign_id = $6, currency = $7, total_without_vat = $8, \
         total_vat = $9, total_with_vat = $10, notes = $11, attachments = $12, customer = $13, \
         update_time = $15, updater = $17, version = $18, status = $19, kind = $20, \
         order_id = $21, offer_id = $22, task_id = $23, signing_date = $24, start_date = $25, \
         end_date = $26, termination_date = $27, billing_day = $28, status_note = $29 \
         WHERE id = $1 AND version = $30 AND create_time = $14 AND creator = $16",
    );
    let updated = bind_own(bind_header(query, &c.doc, &totals), c)
        .bind(expected_version)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    if updated == 1 && lines_changed {
        replace_lines(conn, c.doc.id, &c.doc.lines).await?;
    }
    Ok(updated == 1)
}

fn bind_own<'q>(
    query: sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>,
    c: &'q Contract,
) -> sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments> {
    query
        .bind(c.status.as_db())
        .bind(c.kind.as_db())
        .bind(c.order_id)
        .bind(c.offer_id)
        .bind(c.task_id)
        .bind(c.signing_date)
        .bind(c.start_date)
        .bind(c.end_date)
        .bind(c.termination_date)
        .bind(c.billing_day)
        .bind(&c.status_note)
}

/// The contract with `id` and its lines, locked when `for_update`.
pub async fn get(
    conn: &mut PgConnection,
    id: Uuid,
    for_update: bool,
) -> sqlx::Result<Option<Contract>> {
    let mut query = QueryBuilder::<Postgres>::new("SELECT ");
    query
        .push(HEADER_COLUMNS)
        .push(", ")
        .push(OWN_COLUMNS)
        .push(" FROM contracts WHERE id = ")
        .push_bind(id);
    if for_update {
        query.push(" FOR UPDATE");
    }
    let Some(row) = query.build().fetch_optional(&mut *conn).await? else {
        return Ok(None);
    };
    let mut contract = from_row(&row)?;
    attach_lines(conn, &mut [&mut contract.doc]).await?;
    Ok(Some(contract))
}

/// The partner of the document `id`.
pub async fn partner_of(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<Uuid>> {
    sqlx::query_scalar("SELECT partner_id FROM contracts WHERE id = $1")
        .bind(id)
        .fetch_optional(conn)
        .await
}

/// Filters of ListContracts.
#[derive(Clone, Debug, Default, Hash)]
pub struct Filter {
    /// Partner.
    pub partner_id: Option<Uuid>,
    /// Kind.
    pub kind: Option<&'static str>,
    /// Status.
    pub status: Option<&'static str>,
    /// Active on this day.
    pub active_on: Option<NaiveDate>,
    /// With a line of this article.
    pub article_id: Option<Uuid>,
    /// Campaign.
    pub campaign_id: Option<Uuid>,
    /// Opportunity.
    pub opportunity_id: Option<Uuid>,
}

/// One page of contracts, newest first, after `after`.
pub async fn list(
    conn: &mut PgConnection,
    f: &Filter,
    after: Option<&NewestFirstCursor>,
    limit: i64,
) -> sqlx::Result<Vec<Contract>> {
    let mut query = QueryBuilder::<Postgres>::new("SELECT ");
    query
        .push(HEADER_COLUMNS)
        .push(", ")
        .push(OWN_COLUMNS)
        .push(" FROM contracts c WHERE true");
    if let Some(id) = f.partner_id {
        query.push(" AND partner_id = ").push_bind(id);
    }
    if let Some(kind) = f.kind {
        query.push(" AND kind = ").push_bind(kind);
    }
    if let Some(status) = f.status {
        query.push(" AND status = ").push_bind(status);
    }
    if let Some(day) = f.active_on {
        query
            .push(" AND status IN ('signed', 'terminated') AND start_date <= ")
            .push_bind(day)
            .push(" AND COALESCE(LEAST(termination_date, end_date), termination_date, end_date, 'infinity') >= ")
            .push_bind(day);
    }
    if let Some(id) = f.article_id {
        query
            .push(" AND EXISTS (SELECT 1 FROM document_lines l WHERE l.document_id = c.id AND l.article_id = ")
            .push_bind(id)
            .push(")");
    }
    if let Some(id) = f.campaign_id {
        query.push(" AND campaign_id = ").push_bind(id);
    }
    if let Some(id) = f.opportunity_id {
        query.push(" AND opportunity_id = ").push_bind(id);
    }
    if let Some((time, id)) = after {
        query
            .push(" AND (create_time, id) < (")
            .push_bind(*time)
            .push(", ")
            .push_bind(*id)
            .push(")");
    }
    query
        .push(" ORDER BY create_time DESC, id DESC LIMIT ")
        .push_bind(limit);
    let rows = query.build().fetch_all(&mut *conn).await?;
    let mut contracts = rows
        .iter()
        .map(from_row)
        .collect::<sqlx::Result<Vec<_>>>()?;
    let mut headers: Vec<_> = contracts.iter_mut().map(|c| &mut c.doc).collect();
    attach_lines(conn, &mut headers).await?;
    Ok(contracts)
}

/// The contract covering `article_id` for `partner_id` on `day` (O9): signed or terminated,
/// active that day, with a line of the article; the one that started last when several do.
/// Returns the contract id and the line id. One index lookup on the partner's binding contracts
/// plus the lines of those.
pub async fn coverage(
    conn: &mut PgConnection,
    partner_id: Uuid,
    article_id: Uuid,
    day: NaiveDate,
) -> sqlx::Result<Option<(Uuid, Uuid)>> {
    let row = sqlx::query(
        "SELECT c.id AS contract_id, l.id AS line_id FROM contracts c \
         JOIN document_lines l ON l.document_id = c.id AND l.article_id = $2 \
         WHERE c.partner_id = $1 AND c.status IN ('signed', 'terminated') \
         AND c.start_date <= $3 \
         AND COALESCE(LEAST(c.termination_date, c.end_date), c.termination_date, c.end_date, \
                      'infinity') >= $3 \
         ORDER BY c.start_date DESC, c.id DESC, l.position LIMIT 1",
    )
    .bind(partner_id)
    .bind(article_id)
    .bind(day)
    .fetch_optional(conn)
    .await?;
    row.map(|row| Ok((row.try_get("contract_id")?, row.try_get("line_id")?)))
        .transpose()
}

/// The signed or terminated subscription contracts active on some day of the month
/// `first`..=`last`, after `after` (id order), at most `limit`.
pub async fn subscriptions_in_month(
    conn: &mut PgConnection,
    first: NaiveDate,
    last: NaiveDate,
    after: Option<Uuid>,
    limit: i64,
) -> sqlx::Result<Vec<Uuid>> {
    sqlx::query_scalar(
        "SELECT id FROM contracts WHERE kind = 'subscription' \
         AND status IN ('signed', 'terminated') AND start_date <= $2 \
         AND COALESCE(LEAST(termination_date, end_date), termination_date, end_date, \
                      'infinity') >= $1 \
         AND ($3::uuid IS NULL OR id > $3) ORDER BY id LIMIT $4",
    )
    .bind(first)
    .bind(last)
    .bind(after)
    .bind(limit)
    .fetch_all(conn)
    .await
}

fn from_row(row: &PgRow) -> sqlx::Result<Contract> {
    let status: String = row.try_get("status")?;
    let kind: String = row.try_get("kind")?;
    Ok(Contract {
        doc: header_from_row(row)?,
        status: ContractStatus::from_db(&status).ok_or_else(|| decode_error("status", &status))?,
        kind: ContractKind::from_db(&kind).ok_or_else(|| decode_error("kind", &kind))?,
        order_id: row.try_get("order_id")?,
        offer_id: row.try_get("offer_id")?,
        task_id: row.try_get("task_id")?,
        signing_date: row.try_get("signing_date")?,
        start_date: row.try_get("start_date")?,
        end_date: row.try_get("end_date")?,
        termination_date: row.try_get("termination_date")?,
        billing_day: row.try_get("billing_day")?,
        status_note: row.try_get("status_note")?,
    })
}
