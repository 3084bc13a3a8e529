//! Payments and their allocations to invoices (O8).

use std::collections::HashMap;

use chrono::NaiveDate;
use sqlx::{PgConnection, Postgres, QueryBuilder, Row as _, postgres::PgRow};
use uuid::Uuid;

use super::{NewestFirstCursor, decode_error};
use crate::domain::{
    documents::{InvoiceStatus, PaymentMethod, PaymentStatus},
    money::{Currency, Money},
    payments::{InvoiceToPay, Payment},
};

const COLUMNS: &str = "id, partner_id, amount_units, currency, payment_date, method, reference, \
     notes, status, cancel_reason, create_time, update_time, creator, version";

/// Inserts a payment and its allocations.
pub async fn insert(conn: &mut PgConnection, p: &Payment) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO payments (id, partner_id, amount_units, currency, payment_date, method, \
         reference, notes, status, cancel_reason, create_time, update_time, creator, version) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
    )
    .bind(p.id)
    .bind(p.partner_id)
    .bind(p.amount.units)
    .bind(p.amount.currency.as_str())
    .bind(p.payment_date)
    .bind(p.method.as_db())
    .bind(&p.reference)
    .bind(&p.notes)
    .bind(p.status.as_db())
    .bind(&p.cancel_reason)
    .bind(p.create_time)
    .bind(p.update_time)
    .bind(&p.creator)
    .bind(p.version)
    .execute(&mut *conn)
    .await?;
    add_allocations(conn, p.id, 0, &p.allocations).await
}

/// Adds allocations to a payment, numbering their positions from `first_position`; an invoice
/// the payment already settles in part gets the new amount added to its allocation.
pub async fn add_allocations(
    conn: &mut PgConnection,
    payment_id: Uuid,
    first_position: usize,
    allocations: &[(Uuid, i64, String)],
) -> sqlx::Result<()> {
    if allocations.is_empty() {
        return Ok(());
    }
    let positions: Vec<i32> = (first_position..first_position + allocations.len())
        .map(|i| i32::try_from(i).unwrap_or(i32::MAX))
        .collect();
    sqlx::query(
        "INSERT INTO payment_allocations (payment_id, invoice_id, position, amount_units) \
         SELECT $1, invoice_id, position, amount FROM UNNEST($2::uuid[], $3::int[], $4::bigint[]) \
         AS a(invoice_id, position, amount) \
         ON CONFLICT (payment_id, invoice_id) \
         DO UPDATE SET amount_units = payment_allocations.amount_units + EXCLUDED.amount_units",
    )
    .bind(payment_id)
    .bind(allocations.iter().map(|a| a.0).collect::<Vec<_>>())
    .bind(positions)
    .bind(allocations.iter().map(|a| a.1).collect::<Vec<_>>())
    .execute(conn)
    .await?;
    Ok(())
}

/// Marks a payment cancelled over version `expected_version`; false when stale.
pub async fn update_status(
    conn: &mut PgConnection,
    p: &Payment,
    expected_version: i64,
) -> sqlx::Result<bool> {
    let updated = sqlx::query(
        "UPDATE payments SET status = $2, cancel_reason = $3, update_time = $4, version = $5 \
         WHERE id = $1 AND version = $6",
    )
    .bind(p.id)
    .bind(p.status.as_db())
    .bind(&p.cancel_reason)
    .bind(p.update_time)
    .bind(p.version)
    .bind(expected_version)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(updated == 1)
}

/// The payment with `id` and its allocations, locked when `for_update`.
pub async fn get(
    conn: &mut PgConnection,
    id: Uuid,
    for_update: bool,
) -> sqlx::Result<Option<Payment>> {
    let mut query = QueryBuilder::<Postgres>::new("SELECT ");
    query
        .push(COLUMNS)
        .push(" FROM payments WHERE id = ")
        .push_bind(id);
    if for_update {
        query.push(" FOR UPDATE");
    }
    let Some(row) = query.build().fetch_optional(&mut *conn).await? else {
        return Ok(None);
    };
    let mut payments = vec![from_row(&row)?];
    attach_allocations(conn, &mut payments).await?;
    Ok(payments.pop())
}

/// Filters of ListPayments.
#[derive(Clone, Debug, Default, Hash)]
pub struct Filter {
    /// Partner.
    pub partner_id: Option<Uuid>,
    /// Allocated to this invoice.
    pub invoice_id: Option<Uuid>,
    /// Received from.
    pub from: Option<NaiveDate>,
    /// Received until (included).
    pub to: Option<NaiveDate>,
    /// Status.
    pub status: Option<&'static str>,
}

/// One page of payments, newest first, after `after`.
pub async fn list(
    conn: &mut PgConnection,
    f: &Filter,
    after: Option<&NewestFirstCursor>,
    limit: i64,
) -> sqlx::Result<Vec<Payment>> {
    let mut query = QueryBuilder::<Postgres>::new("SELECT ");
    query.push(COLUMNS).push(" FROM payments p WHERE true");
    if let Some(id) = f.partner_id {
        query.push(" AND partner_id = ").push_bind(id);
    }
    if let Some(id) = f.invoice_id {
        query
            .push(" AND EXISTS (SELECT 1 FROM payment_allocations a WHERE a.payment_id = p.id AND a.invoice_id = ")
            .push_bind(id)
            .push(")");
    }
    if let Some(day) = f.from {
        query.push(" AND payment_date >= ").push_bind(day);
    }
    if let Some(day) = f.to {
        query.push(" AND payment_date <= ").push_bind(day);
    }
    if let Some(status) = f.status {
        query.push(" AND status = ").push_bind(status);
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
    let mut payments = rows
        .iter()
        .map(from_row)
        .collect::<sqlx::Result<Vec<_>>>()?;
    attach_allocations(conn, &mut payments).await?;
    Ok(payments)
}

async fn attach_allocations(conn: &mut PgConnection, payments: &mut [Payment]) -> sqlx::Result<()> {
    let ids: Vec<Uuid> = payments.iter().map(|p| p.id).collect();
    let rows = sqlx::query(
        "SELECT a.payment_id, a.invoice_id, a.amount_units, COALESCE(i.number, '') AS number \
         FROM payment_allocations a JOIN invoices i ON i.id = a.invoice_id \
         WHERE a.payment_id = ANY($1) ORDER BY a.payment_id, a.position",
    )
    .bind(&ids)
    .fetch_all(conn)
    .await?;
    let mut by_payment: HashMap<Uuid, Vec<(Uuid, i64, String)>> = HashMap::new();
    for row in &rows {
        by_payment
            .entry(row.try_get("payment_id")?)
            .or_default()
            .push((
                row.try_get("invoice_id")?,
                row.try_get("amount_units")?,
                row.try_get("number")?,
            ));
    }
    for payment in payments {
        payment.allocations = by_payment.remove(&payment.id).unwrap_or_default();
    }
    Ok(())
}

/// The invoices `ids` as allocation sees them, locked so that two payments cannot both take
/// what one invoice still owes.
pub async fn invoices_to_pay(
    conn: &mut PgConnection,
    ids: &[Uuid],
) -> sqlx::Result<HashMap<Uuid, InvoiceToPay>> {
    let rows = sqlx::query(
        "SELECT id, partner_id, currency, status, total_with_vat FROM invoices \
         WHERE id = ANY($1) ORDER BY id FOR UPDATE",
    )
    .bind(ids)
    .fetch_all(&mut *conn)
    .await?;
    let paid = super::invoices::paid(conn, ids).await?;
    rows.iter()
        .map(|row| {
            let id: Uuid = row.try_get("id")?;
            let currency: String = row.try_get("currency")?;
            let status: String = row.try_get("status")?;
            Ok((
                id,
                InvoiceToPay {
                    partner_id: row.try_get("partner_id")?,
                    currency: Currency::parse(&currency)
                        .map_err(|_| decode_error("currency", &currency))?,
                    status: InvoiceStatus::from_db(&status)
                        .ok_or_else(|| decode_error("status", &status))?,
                    with_vat: row.try_get("total_with_vat")?,
                    paid: paid.get(&id).copied().unwrap_or(0),
                },
            ))
        })
        .collect()
}

fn from_row(row: &PgRow) -> sqlx::Result<Payment> {
    let currency: String = row.try_get("currency")?;
    let method: String = row.try_get("method")?;
    let status: String = row.try_get("status")?;
    Ok(Payment {
        id: row.try_get("id")?,
        partner_id: row.try_get("partner_id")?,
        amount: Money::new(
            row.try_get("amount_units")?,
            Currency::parse(&currency).map_err(|_| decode_error("currency", &currency))?,
        ),
        payment_date: row.try_get("payment_date")?,
        method: PaymentMethod::from_db(&method).ok_or_else(|| decode_error("method", &method))?,
        reference: row.try_get("reference")?,
        notes: row.try_get("notes")?,
        status: PaymentStatus::from_db(&status).ok_or_else(|| decode_error("status", &status))?,
        cancel_reason: row.try_get("cancel_reason")?,
        allocations: Vec::new(),
        create_time: row.try_get("create_time")?,
        update_time: row.try_get("update_time")?,
        creator: row.try_get("creator")?,
        version: row.try_get("version")?,
    })
}
