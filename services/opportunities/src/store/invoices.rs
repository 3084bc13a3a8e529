//! Invoices, what is paid on them and partner balances (O8).

use std::collections::HashMap;

use chrono::NaiveDate;
use sqlx::{PgConnection, Postgres, QueryBuilder, Row as _, postgres::PgRow};
use uuid::Uuid;

use super::{
    NewestFirstCursor, decode_error,
    documents::{HEADER_COLUMNS, attach_lines, bind_header, header_from_row, replace_lines},
};
use crate::domain::{
    documents::{Invoice, InvoiceSource, InvoiceStatus},
    money::Currency,
};

const OWN_COLUMNS: &str = "status, source, order_id, contract_id, billing_month, task_id, \
     task_billing_attempt, estimate_offer_id, invoice_date, due_date, issue_time, status_note";

/// Inserts a new invoice with its lines; false when the contract already has an invoice for
/// that month (or the task for that billing attempt).
pub async fn insert(conn: &mut PgConnection, i: &Invoice) -> sqlx::Result<bool> {
    let totals = i.doc.totals();
    let query = sqlx::query(
        "INSERT INTO invoices (id, number, series_id, partner_id, opportunity_id, campaign_id, \
         currency, total_without_vat, total_vat, total_with_vat, notes, attachments, customer, \
         create_time, update_time, creator, updater, version, status, source, order_id, \
         contract_id, billing_month, task_id, task_billing_attempt, estimate_offer_id, \
         invoice_date, due_date, issue_time, status_note) VALUES ($1, $2, $3, $4, $5, $6, $7, \
         $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, \
         $26, $27, $28, $29, $30) ON CONFLICT DO NOTHING",
    );
    let inserted = bind_own(bind_header(query, &i.doc, &totals), i)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    if inserted == 1 {
        replace_lines(conn, i.doc.id, &i.doc.lines).await?;
    }
    Ok(inserted == 1)
}

/// Writes every field of `i` (and its lines when `lines_changed`) over version
/// `expected_version`; false when stale.
pub async fn update(
    conn: &mut PgConnection,
    i: &Invoice,
    expected_version: i64,
    lines_changed: bool,
) -> sqlx::Result<bool> {
    let totals = i.doc.totals();
    let query = sqlx::query(
        "UPDATE invoices SET number = $2, series_id = $3, partner_id = $4, opportunity_id = $5, \
         campaign_id = $6, currency = $7, total_without_vat = $8, total_vat = $9, \
         total_with_vat = $10, notes = $11, attachments = $12, customer = $13, \
         update_time = $15, updater = $17, version = $18, status = $19, source = $20, \
         order_id = $21, contract_id = $22, billing_month = $23, task_id = $24, \
         task_billing_attempt = $25, estimate_offer_id = $26, invoice_date = $27, \
         due_date = $28, issue_time = $29, status_note = $30 \
         WHERE id = $1 AND version = $31 AND create_time = $14 AND creator = $16",
    );
    let updated = bind_own(bind_header(query, &i.doc, &totals), i)
        .bind(expected_version)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    if updated == 1 && lines_changed {
        replace_lines(conn, i.doc.id, &i.doc.lines).await?;
    }
    Ok(updated == 1)
}

fn bind_own<'q>(
    query: sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>,
    i: &'q Invoice,
) -> sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments> {
    query
        .bind(i.status.as_db())
        .bind(i.source.as_db())
        .bind(i.order_id)
        .bind(i.contract_id)
        .bind(i.billing_month)
        .bind(i.task_id)
        .bind(i.task_billing_attempt)
        .bind(i.estimate_offer_id)
        .bind(i.invoice_date)
        .bind(i.due_date)
        .bind(i.issue_time)
        .bind(&i.status_note)
}

/// The invoice with `id`, its lines and what is paid on it, locked when `for_update`.
pub async fn get(
    conn: &mut PgConnection,
    id: Uuid,
    for_update: bool,
) -> sqlx::Result<Option<Invoice>> {
    let mut query = QueryBuilder::<Postgres>::new("SELECT ");
    query
        .push(HEADER_COLUMNS)
        .push(", ")
        .push(OWN_COLUMNS)
        .push(" FROM invoices WHERE id = ")
        .push_bind(id);
    if for_update {
        query.push(" FOR UPDATE");
    }
    let Some(row) = query.build().fetch_optional(&mut *conn).await? else {
        return Ok(None);
    };
    let mut invoice = from_row(&row)?;
    attach_lines(conn, &mut [&mut invoice.doc]).await?;
    invoice.paid = paid(conn, &[invoice.doc.id])
        .await?
        .remove(&invoice.doc.id)
        .unwrap_or(0);
    Ok(Some(invoice))
}

/// What recorded payments allocated to each of `ids`.
pub async fn paid(conn: &mut PgConnection, ids: &[Uuid]) -> sqlx::Result<HashMap<Uuid, i64>> {
    let rows = sqlx::query(
        "SELECT a.invoice_id, sum(a.amount_units)::bigint AS paid FROM payment_allocations a \
         JOIN payments p ON p.id = a.payment_id \
         WHERE a.invoice_id = ANY($1) AND p.status = 'recorded' GROUP BY a.invoice_id",
    )
    .bind(ids)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|row| Ok((row.try_get("invoice_id")?, row.try_get("paid")?)))
        .collect()
}

/// The numbers of the invoices `ids` that have one.
pub async fn numbers(conn: &mut PgConnection, ids: &[Uuid]) -> sqlx::Result<HashMap<Uuid, String>> {
    let rows =
        sqlx::query("SELECT id, number FROM invoices WHERE id = ANY($1) AND number IS NOT NULL")
            .bind(ids)
            .fetch_all(conn)
            .await?;
    rows.iter()
        .map(|row| Ok((row.try_get("id")?, row.try_get("number")?)))
        .collect()
}

/// The invoice of a subscription contract for a month, not cancelled.
pub async fn of_contract_month(
    conn: &mut PgConnection,
    contract_id: Uuid,
    month: NaiveDate,
) -> sqlx::Result<Option<Uuid>> {
    sqlx::query_scalar(
        "SELECT id FROM invoices WHERE contract_id = $1 AND billing_month = $2 \
         AND status <> 'cancelled'",
    )
    .bind(contract_id)
    .bind(month)
    .fetch_optional(conn)
    .await
}

/// Whether the order has issued invoices.
pub async fn order_has_issued(conn: &mut PgConnection, order_id: Uuid) -> sqlx::Result<bool> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM invoices WHERE order_id = $1 AND status = 'issued')",
    )
    .bind(order_id)
    .fetch_one(conn)
    .await
}

/// The sum without VAT of the issued invoices of each of `order_ids`.
pub async fn invoiced_on_orders(
    conn: &mut PgConnection,
    order_ids: &[Uuid],
) -> sqlx::Result<HashMap<Uuid, i64>> {
    let rows = sqlx::query(
        "SELECT order_id, sum(total_without_vat)::bigint AS invoiced FROM invoices \
         WHERE order_id = ANY($1) AND status = 'issued' GROUP BY order_id",
    )
    .bind(order_ids)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|row| Ok((row.try_get("order_id")?, row.try_get("invoiced")?)))
        .collect()
}

/// The partner of the document `id`.
pub async fn partner_of(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<Uuid>> {
    sqlx::query_scalar("SELECT partner_id FROM invoices WHERE id = $1")
        .bind(id)
        .fetch_optional(conn)
        .await
}

/// Filters of ListInvoices.
#[derive(Clone, Debug, Default, Hash)]
pub struct Filter {
    /// Partner.
    pub partner_id: Option<Uuid>,
    /// Status.
    pub status: Option<&'static str>,
    /// Source.
    pub source: Option<&'static str>,
    /// Order.
    pub order_id: Option<Uuid>,
    /// Contract.
    pub contract_id: Option<Uuid>,
    /// Task.
    pub task_id: Option<Uuid>,
    /// Campaign.
    pub campaign_id: Option<Uuid>,
    /// Dated from.
    pub from: Option<NaiveDate>,
    /// Dated until (included).
    pub to: Option<NaiveDate>,
    /// Payment state: "unpaid", "partially_paid", "paid".
    pub payment_state: Option<&'static str>,
    /// Only task invoices (the `service` role).
    pub task_invoices_only: bool,
}

/// One page of invoices, newest first, after `after`.
pub async fn list(
    conn: &mut PgConnection,
    f: &Filter,
    after: Option<&NewestFirstCursor>,
    limit: i64,
) -> sqlx::Result<Vec<Invoice>> {
    let mut query = QueryBuilder::<Postgres>::new("SELECT ");
    query
        .push(HEADER_COLUMNS)
        .push(", ")
        .push(OWN_COLUMNS)
        .push(
            " FROM invoices i LEFT JOIN LATERAL (SELECT COALESCE(sum(a.amount_units), 0) AS paid \
             FROM payment_allocations a JOIN payments p ON p.id = a.payment_id \
             WHERE a.invoice_id = i.id AND p.status = 'recorded') pay ON true WHERE true",
        );
    if let Some(id) = f.partner_id {
        query.push(" AND partner_id = ").push_bind(id);
    }
    if let Some(status) = f.status {
        query.push(" AND status = ").push_bind(status);
    }
    if let Some(source) = f.source {
        query.push(" AND source = ").push_bind(source);
    }
    if let Some(id) = f.order_id {
        query.push(" AND order_id = ").push_bind(id);
    }
    if let Some(id) = f.contract_id {
        query.push(" AND contract_id = ").push_bind(id);
    }
    if let Some(id) = f.task_id {
        query.push(" AND task_id = ").push_bind(id);
    }
    if f.task_invoices_only {
        query.push(" AND task_id IS NOT NULL");
    }
    if let Some(id) = f.campaign_id {
        query.push(" AND campaign_id = ").push_bind(id);
    }
    if let Some(day) = f.from {
        query.push(" AND invoice_date >= ").push_bind(day);
    }
    if let Some(day) = f.to {
        query.push(" AND invoice_date <= ").push_bind(day);
    }
    match f.payment_state {
        Some("unpaid") => {
            query.push(" AND pay.paid <= 0 AND total_with_vat > 0");
        }
        Some("partially_paid") => {
            query.push(" AND pay.paid > 0 AND pay.paid < total_with_vat");
        }
        Some("paid") => {
            query.push(" AND pay.paid >= total_with_vat");
        }
        _ => {}
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
    let mut invoices = rows
        .iter()
        .map(from_row)
        .collect::<sqlx::Result<Vec<_>>>()?;
    let ids: Vec<Uuid> = invoices.iter().map(|i| i.doc.id).collect();
    let paid = paid(conn, &ids).await?;
    for invoice in &mut invoices {
        invoice.paid = paid.get(&invoice.doc.id).copied().unwrap_or(0);
    }
    let mut headers: Vec<_> = invoices.iter_mut().map(|i| &mut i.doc).collect();
    attach_lines(conn, &mut headers).await?;
    Ok(invoices)
}

/// A partner's balance in one currency as of a day.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CurrencyBalance {
    /// The currency.
    pub currency: Currency,
    /// Issued invoices with VAT dated up to the day.
    pub invoiced: i64,
    /// Recorded payments received up to the day.
    pub paid: i64,
    /// Unpaid parts of those invoices due before the day.
    pub overdue: i64,
}

/// `partner_id`'s balance per currency as of `day`: invoices dated and payments received up to
/// and including it. Overdue is what is still unpaid (by payments received up to the day) of
/// invoices due before it.
pub async fn balance(
    conn: &mut PgConnection,
    partner_id: Uuid,
    day: NaiveDate,
) -> sqlx::Result<Vec<CurrencyBalance>> {
    let rows = sqlx::query(
        "WITH inv AS (\
           SELECT currency, sum(total_with_vat)::bigint AS invoiced FROM invoices \
           WHERE partner_id = $1 AND status = 'issued' AND invoice_date <= $2 GROUP BY currency), \
         pay AS (\
           SELECT currency, sum(amount_units)::bigint AS paid FROM payments \
           WHERE partner_id = $1 AND status = 'recorded' AND payment_date <= $2 \
           GROUP BY currency), \
         due AS (\
           SELECT i.currency, sum(GREATEST(i.total_with_vat - COALESCE(( \
               SELECT sum(a.amount_units) FROM payment_allocations a \
               JOIN payments p ON p.id = a.payment_id \
               WHERE a.invoice_id = i.id AND p.status = 'recorded' AND p.payment_date <= $2), 0), \
             0))::bigint AS overdue \
           FROM invoices i WHERE i.partner_id = $1 AND i.status = 'issued' \
           AND i.invoice_date <= $2 AND i.due_date < $2 GROUP BY i.currency) \
         SELECT COALESCE(inv.currency, pay.currency) AS currency, \
           COALESCE(inv.invoiced, 0) AS invoiced, COALESCE(pay.paid, 0) AS paid, \
           COALESCE(due.overdue, 0) AS overdue \
         FROM inv FULL JOIN pay ON pay.currency = inv.currency \
         LEFT JOIN due ON due.currency = COALESCE(inv.currency, pay.currency)",
    )
    .bind(partner_id)
    .bind(day)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|row| {
            let currency: String = row.try_get("currency")?;
            Ok(CurrencyBalance {
                currency: Currency::parse(&currency)
                    .map_err(|_| decode_error("currency", &currency))?,
                invoiced: row.try_get("invoiced")?,
                paid: row.try_get("paid")?,
                overdue: row.try_get("overdue")?,
            })
        })
        .collect()
}

fn from_row(row: &PgRow) -> sqlx::Result<Invoice> {
    let status: String = row.try_get("status")?;
    let source: String = row.try_get("source")?;
    Ok(Invoice {
        doc: header_from_row(row)?,
        status: InvoiceStatus::from_db(&status).ok_or_else(|| decode_error("status", &status))?,
        source: InvoiceSource::from_db(&source).ok_or_else(|| decode_error("source", &source))?,
        order_id: row.try_get("order_id")?,
        contract_id: row.try_get("contract_id")?,
        billing_month: row.try_get("billing_month")?,
        task_id: row.try_get("task_id")?,
        task_billing_attempt: row.try_get("task_billing_attempt")?,
        estimate_offer_id: row.try_get("estimate_offer_id")?,
        invoice_date: row.try_get("invoice_date")?,
        due_date: row.try_get("due_date")?,
        issue_time: row.try_get("issue_time")?,
        status_note: row.try_get("status_note")?,
        paid: 0,
    })
}
