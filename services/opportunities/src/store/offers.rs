//! Offers and service estimates.

use chrono::NaiveDate;
use sqlx::{PgConnection, Postgres, QueryBuilder, Row as _, postgres::PgRow};
use uuid::Uuid;

use super::{
    NewestFirstCursor, decode_error,
    documents::{HEADER_COLUMNS, attach_lines, bind_header, header_from_row, replace_lines},
};
use crate::domain::documents::{Offer, OfferPurpose, OfferStatus};

const OWN_COLUMNS: &str = "status, purpose, task_id, task_billing_attempt, offer_date, \
     valid_until, contact_person_id, issue_time, status_note";

/// Inserts a new offer with its lines.
pub async fn insert(conn: &mut PgConnection, o: &Offer) -> sqlx::Result<()> {
    let totals = o.doc.totals();
    let query = sqlx::query(
        "INSERT INTO offers (id, number, series_id, partner_id, opportunity_id, campaign_id, \
         currency, total_without_vat, total_vat, total_with_vat, notes, attachments, customer, \
         create_time, update_time, creator, updater, version, status, purpose, task_id, \
         task_billing_attempt, offer_date, valid_until, contact_person_id, issue_time, \
         status_note) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, \
         $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27)",
    );
    bind_own(bind_header(query, &o.doc, &totals), o)
        .execute(&mut *conn)
        .await?;
    replace_lines(conn, o.doc.id, &o.doc.lines).await
}

/// Writes every field of `o` (and its lines when `lines_changed`) over version
/// `expected_version`; false when stale.
pub async fn update(
    conn: &mut PgConnection,
    o: &Offer,
    expected_version: i64,
    lines_changed: bool,
) -> sqlx::Result<bool> {
    let totals = o.doc.totals();
    let query = sqlx::query(
        "UPDATE offers SET number = $2, series_id = $3, partner_id = $4, opportunity_id = $5, \
         campaign_id = $6, currency = $7, total_without_vat = $8, total_vat = $9, \
         total_with_vat = $10, notes = $11, attachments = $12, customer = $13, \
         update_time = $15, updater = $17, version = $18, status = $19, purpose = $20, \
         task_id = $21, task_billing_attempt = $22, offer_date = $23, valid_until = $24, \
         contact_person_id = $25, issue_time = $26, status_note = $27 \
         WHERE id = $1 AND version = $28 AND create_time = $14 AND creator = $16",
    );
    let updated = bind_own(bind_header(query, &o.doc, &totals), o)
        .bind(expected_version)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    if updated == 1 && lines_changed {
        replace_lines(conn, o.doc.id, &o.doc.lines).await?;
    }
    Ok(updated == 1)
}

fn bind_own<'q>(
    query: sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>,
    o: &'q Offer,
) -> sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments> {
    query
        .bind(o.status.as_db())
        .bind(o.purpose.as_db())
        .bind(o.task_id)
        .bind(o.task_billing_attempt)
        .bind(o.offer_date)
        .bind(o.valid_until)
        .bind(o.contact_person_id)
        .bind(o.issue_time)
        .bind(&o.status_note)
}

/// The offer with `id` and its lines, locked when `for_update`.
pub async fn get(
    conn: &mut PgConnection,
    id: Uuid,
    for_update: bool,
) -> sqlx::Result<Option<Offer>> {
    let mut query = QueryBuilder::<Postgres>::new("SELECT ");
    query
        .push(HEADER_COLUMNS)
        .push(", ")
        .push(OWN_COLUMNS)
        .push(" FROM offers WHERE id = ")
        .push_bind(id);
    if for_update {
        query.push(" FOR UPDATE");
    }
    let Some(row) = query.build().fetch_optional(&mut *conn).await? else {
        return Ok(None);
    };
    let mut offer = from_row(&row)?;
    attach_lines(conn, &mut [&mut offer.doc]).await?;
    Ok(Some(offer))
}

/// The partner of the document `id`.
pub async fn partner_of(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<Uuid>> {
    sqlx::query_scalar("SELECT partner_id FROM offers WHERE id = $1")
        .bind(id)
        .fetch_optional(conn)
        .await
}

/// Filters of ListOffers.
#[derive(Clone, Debug, Default, Hash)]
pub struct Filter {
    /// Partner.
    pub partner_id: Option<Uuid>,
    /// Opportunity.
    pub opportunity_id: Option<Uuid>,
    /// Campaign.
    pub campaign_id: Option<Uuid>,
    /// Status.
    pub status: Option<&'static str>,
    /// Dated from.
    pub from: Option<NaiveDate>,
    /// Dated until (included).
    pub to: Option<NaiveDate>,
    /// Purpose.
    pub purpose: Option<&'static str>,
    /// Only estimates of this task (the `service` role sees only estimates).
    pub estimates_only: bool,
}

/// One page of offers, newest first, after `after`.
pub async fn list(
    conn: &mut PgConnection,
    f: &Filter,
    after: Option<&NewestFirstCursor>,
    limit: i64,
) -> sqlx::Result<Vec<Offer>> {
    let mut query = QueryBuilder::<Postgres>::new("SELECT ");
    query
        .push(HEADER_COLUMNS)
        .push(", ")
        .push(OWN_COLUMNS)
        .push(" FROM offers WHERE true");
    if let Some(id) = f.partner_id {
        query.push(" AND partner_id = ").push_bind(id);
    }
    if let Some(id) = f.opportunity_id {
        query.push(" AND opportunity_id = ").push_bind(id);
    }
    if let Some(id) = f.campaign_id {
        query.push(" AND campaign_id = ").push_bind(id);
    }
    if let Some(status) = f.status {
        query.push(" AND status = ").push_bind(status);
    }
    if let Some(day) = f.from {
        query.push(" AND offer_date >= ").push_bind(day);
    }
    if let Some(day) = f.to {
        query.push(" AND offer_date <= ").push_bind(day);
    }
    if let Some(purpose) = f.purpose {
        query.push(" AND purpose = ").push_bind(purpose);
    }
    if f.estimates_only {
        query.push(" AND purpose = 'service_estimate'");
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
    let mut offers = rows
        .iter()
        .map(from_row)
        .collect::<sqlx::Result<Vec<_>>>()?;
    let mut headers: Vec<_> = offers.iter_mut().map(|o| &mut o.doc).collect();
    attach_lines(conn, &mut headers).await?;
    Ok(offers)
}

fn from_row(row: &PgRow) -> sqlx::Result<Offer> {
    let status: String = row.try_get("status")?;
    let purpose: String = row.try_get("purpose")?;
    Ok(Offer {
        doc: header_from_row(row)?,
        status: OfferStatus::from_db(&status).ok_or_else(|| decode_error("status", &status))?,
        purpose: OfferPurpose::from_db(&purpose)
            .ok_or_else(|| decode_error("purpose", &purpose))?,
        task_id: row.try_get("task_id")?,
        task_billing_attempt: row.try_get("task_billing_attempt")?,
        offer_date: row.try_get("offer_date")?,
        valid_until: row.try_get("valid_until")?,
        contact_person_id: row.try_get("contact_person_id")?,
        issue_time: row.try_get("issue_time")?,
        status_note: row.try_get("status_note")?,
    })
}
