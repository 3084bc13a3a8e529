//! Customer orders.

use chrono::NaiveDate;
use sqlx::{PgConnection, Postgres, QueryBuilder, Row as _, postgres::PgRow};
use uuid::Uuid;

use super::{
    NewestFirstCursor, decode_error,
    documents::{HEADER_COLUMNS, attach_lines, bind_header, header_from_row, replace_lines},
};
use crate::domain::documents::{Order, OrderStatus};

const OWN_COLUMNS: &str = "status, offer_id, add_to_campaign_revenues, order_date, \
     delivery_date, customer_reference, confirm_time, status_note";

/// Inserts a new order with its lines.
pub async fn insert(conn: &mut PgConnection, o: &Order) -> sqlx::Result<()> {
    let totals = o.doc.totals();
    let query = sqlx::query(
        "INSERT INTO orders (id, number, series_id, partner_id, opportunity_id, campaign_id, \
         currency, total_without_vat, total_vat, total_with_vat, notes, attachments, customer, \
         create_time, update_time, creator, updater, version, status, offer_id, \
         add_to_campaign_revenues, order_date, delivery_date, customer_reference, confirm_time, \
         status_note) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, \
         $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26)",
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
    o: &Order,
    expected_version: i64,
    lines_changed: bool,
) -> sqlx::Result<bool> {
    let totals = o.doc.totals();
    let query = sqlx::query(
        "UPDATE orders SET number = $2, series_id = $3, partner_id = $4, opportunity_id = $5, \
         campaign_id = $6, currency = $7, total_without_vat = $8, total_vat = $9, \
         total_with_vat = $10, notes = $11, attachments = $12, customer = $13, \
         update_time = $15, updater = $17, version = $18, status = $19, offer_id = $20, \
         add_to_campaign_revenues = $21, order_date = $22, delivery_date = $23, \
         customer_reference = $24, confirm_time = $25, status_note = $26 \
         WHERE id = $1 AND version = $27 AND create_time = $14 AND creator = $16",
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
    o: &'q Order,
) -> sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments> {
    query
        .bind(o.status.as_db())
        .bind(o.offer_id)
        .bind(o.add_to_campaign_revenues)
        .bind(o.order_date)
        .bind(o.delivery_date)
        .bind(&o.customer_reference)
        .bind(o.confirm_time)
        .bind(&o.status_note)
}

/// The order with `id` and its lines, locked when `for_update`.
pub async fn get(
    conn: &mut PgConnection,
    id: Uuid,
    for_update: bool,
) -> sqlx::Result<Option<Order>> {
    let mut query = QueryBuilder::<Postgres>::new("SELECT ");
    query
        .push(HEADER_COLUMNS)
        .push(", ")
        .push(OWN_COLUMNS)
        .push(" FROM orders WHERE id = ")
        .push_bind(id);
    if for_update {
        query.push(" FOR UPDATE");
    }
    let Some(row) = query.build().fetch_optional(&mut *conn).await? else {
        return Ok(None);
    };
    let mut order = from_row(&row)?;
    attach_lines(conn, &mut [&mut order.doc]).await?;
    Ok(Some(order))
}

/// The partner of the document `id`.
pub async fn partner_of(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<Uuid>> {
    sqlx::query_scalar("SELECT partner_id FROM orders WHERE id = $1")
        .bind(id)
        .fetch_optional(conn)
        .await
}

/// Filters of ListOrders.
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
    /// Only those flagged "add to campaign revenues".
    pub campaign_revenue_only: bool,
}

/// One page of orders, newest first, after `after`.
pub async fn list(
    conn: &mut PgConnection,
    f: &Filter,
    after: Option<&NewestFirstCursor>,
    limit: i64,
) -> sqlx::Result<Vec<Order>> {
    let mut query = QueryBuilder::<Postgres>::new("SELECT ");
    query
        .push(HEADER_COLUMNS)
        .push(", ")
        .push(OWN_COLUMNS)
        .push(" FROM orders WHERE true");
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
        query.push(" AND order_date >= ").push_bind(day);
    }
    if let Some(day) = f.to {
        query.push(" AND order_date <= ").push_bind(day);
    }
    if f.campaign_revenue_only {
        query.push(" AND add_to_campaign_revenues");
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
    let mut orders = rows
        .iter()
        .map(from_row)
        .collect::<sqlx::Result<Vec<_>>>()?;
    let mut headers: Vec<_> = orders.iter_mut().map(|o| &mut o.doc).collect();
    attach_lines(conn, &mut headers).await?;
    Ok(orders)
}

/// The issued (not cancelled) invoices of an order: (id, number, date, total without VAT).
pub async fn issued_invoices(
    conn: &mut PgConnection,
    order_id: Uuid,
) -> sqlx::Result<Vec<(Uuid, String, Option<NaiveDate>, i64)>> {
    let rows = sqlx::query(
        "SELECT id, number, invoice_date, total_without_vat FROM invoices \
         WHERE order_id = $1 AND status = 'issued' ORDER BY issue_time, id",
    )
    .bind(order_id)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|row| {
            Ok((
                row.try_get("id")?,
                row.try_get::<Option<String>, _>("number")?
                    .unwrap_or_default(),
                row.try_get("invoice_date")?,
                row.try_get("total_without_vat")?,
            ))
        })
        .collect()
}

fn from_row(row: &PgRow) -> sqlx::Result<Order> {
    let status: String = row.try_get("status")?;
    Ok(Order {
        doc: header_from_row(row)?,
        status: OrderStatus::from_db(&status).ok_or_else(|| decode_error("status", &status))?,
        offer_id: row.try_get("offer_id")?,
        add_to_campaign_revenues: row.try_get("add_to_campaign_revenues")?,
        order_date: row.try_get("order_date")?,
        delivery_date: row.try_get("delivery_date")?,
        customer_reference: row.try_get("customer_reference")?,
        confirm_time: row.try_get("confirm_time")?,
        status_note: row.try_get("status_note")?,
    })
}
