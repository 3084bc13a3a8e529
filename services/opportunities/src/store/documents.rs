//! What the four document tables share: the header columns, the lines, and the quantities of
//! order lines already invoiced.

use std::collections::HashMap;

use sqlx::{
    PgConnection, Postgres, Row as _,
    postgres::{PgArguments, PgRow},
    query::Query,
    types::Json,
};
use uuid::Uuid;

use super::decode_error;
use crate::domain::{
    catalogue::{Attachment, PartnerCard},
    documents::DocHeader,
    lines::{Line, LineAmounts, LineValues, Totals},
    money::Currency,
};

/// The header columns every document table has, in the order [`bind_header`] binds them.
pub const HEADER_COLUMNS: &str = "id, number, series_id, partner_id, opportunity_id, \
     campaign_id, currency, total_without_vat, total_vat, total_with_vat, notes, attachments, \
     customer, create_time, update_time, creator, updater, version";

/// Binds the 18 header values of `doc` (with its `totals`) in [`HEADER_COLUMNS`] order.
pub fn bind_header<'q>(
    query: Query<'q, Postgres, PgArguments>,
    doc: &'q DocHeader,
    totals: &Totals,
) -> Query<'q, Postgres, PgArguments> {
    query
        .bind(doc.id)
        .bind(doc.number.as_deref())
        .bind(doc.series_id)
        .bind(doc.partner_id)
        .bind(doc.opportunity_id)
        .bind(doc.campaign_id)
        .bind(doc.currency.as_str())
        .bind(totals.without_vat)
        .bind(totals.vat)
        .bind(totals.with_vat)
        .bind(&doc.notes)
        .bind(Json(&doc.attachments))
        .bind(doc.customer.as_ref().map(Json))
        .bind(doc.create_time)
        .bind(doc.update_time)
        .bind(&doc.creator)
        .bind(&doc.updater)
        .bind(doc.version)
}

/// The header of a row selected with [`HEADER_COLUMNS`]; lines are attached separately.
pub fn header_from_row(row: &PgRow) -> sqlx::Result<DocHeader> {
    let currency: String = row.try_get("currency")?;
    let Json(attachments): Json<Vec<Attachment>> = row.try_get("attachments")?;
    let customer: Option<Json<PartnerCard>> = row.try_get("customer")?;
    Ok(DocHeader {
        id: row.try_get("id")?,
        number: row.try_get("number")?,
        series_id: row.try_get("series_id")?,
        partner_id: row.try_get("partner_id")?,
        opportunity_id: row.try_get("opportunity_id")?,
        campaign_id: row.try_get("campaign_id")?,
        currency: Currency::parse(&currency).map_err(|_| decode_error("currency", &currency))?,
        lines: Vec::new(),
        notes: row.try_get("notes")?,
        attachments,
        customer: customer.map(|Json(card)| card),
        create_time: row.try_get("create_time")?,
        update_time: row.try_get("update_time")?,
        creator: row.try_get("creator")?,
        updater: row.try_get("updater")?,
        version: row.try_get("version")?,
    })
}

/// Replaces the lines of document `document_id` with `lines` (ids kept), in one statement each
/// for the delete and the insert.
pub async fn replace_lines(
    conn: &mut PgConnection,
    document_id: Uuid,
    lines: &[Line],
) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM document_lines WHERE document_id = $1")
        .bind(document_id)
        .execute(&mut *conn)
        .await?;
    insert_lines(conn, document_id, lines).await
}

/// Inserts the lines of a new document, in one statement.
pub async fn insert_lines(
    conn: &mut PgConnection,
    document_id: Uuid,
    lines: &[Line],
) -> sqlx::Result<()> {
    if lines.is_empty() {
        return Ok(());
    }
    let column = |f: fn(&Line) -> i64| lines.iter().map(f).collect::<Vec<i64>>();
    let positions: Vec<i32> = (0..lines.len())
        .map(|i| i32::try_from(i).unwrap_or(i32::MAX))
        .collect();
    sqlx::query(
        "INSERT INTO document_lines (id, document_id, position, article_id, article_code, \
         description, unit, quantity_milli, unit_price_units, vat_rate_bp, discount_bp, \
         amount_without_vat, vat_amount, amount_with_vat, source_line_id) \
         SELECT id, $2, position, article_id, article_code, description, unit, quantity_milli, \
         unit_price_units, vat_rate_bp, discount_bp, amount_without_vat, vat_amount, \
         amount_with_vat, source_line_id \
         FROM UNNEST($1::uuid[], $3::int[], $4::uuid[], $5::text[], $6::text[], $7::text[], \
         $8::bigint[], $9::bigint[], $10::int[], $11::int[], $12::bigint[], $13::bigint[], \
         $14::bigint[], $15::uuid[]) AS l(id, position, article_id, article_code, description, \
         unit, quantity_milli, unit_price_units, vat_rate_bp, discount_bp, amount_without_vat, \
         vat_amount, amount_with_vat, source_line_id)",
    )
    .bind(lines.iter().map(|l| l.id).collect::<Vec<_>>())
    .bind(document_id)
    .bind(positions)
    .bind(lines.iter().map(|l| l.article_id).collect::<Vec<_>>())
    .bind(
        lines
            .iter()
            .map(|l| l.article_code.clone())
            .collect::<Vec<_>>(),
    )
    .bind(
        lines
            .iter()
            .map(|l| l.description.clone())
            .collect::<Vec<_>>(),
    )
    .bind(lines.iter().map(|l| l.unit.clone()).collect::<Vec<_>>())
    .bind(column(|l| l.values.quantity_milli))
    .bind(column(|l| l.values.unit_price))
    .bind(
        lines
            .iter()
            .map(|l| l.values.vat_rate_bp)
            .collect::<Vec<_>>(),
    )
    .bind(
        lines
            .iter()
            .map(|l| l.values.discount_bp)
            .collect::<Vec<_>>(),
    )
    .bind(column(|l| l.amounts.without_vat))
    .bind(column(|l| l.amounts.vat))
    .bind(column(|l| l.amounts.with_vat))
    .bind(lines.iter().map(|l| l.source_line_id).collect::<Vec<_>>())
    .execute(conn)
    .await?;
    Ok(())
}

/// The lines of the documents `ids`, each document's in position order.
pub async fn load_lines(
    conn: &mut PgConnection,
    ids: &[Uuid],
) -> sqlx::Result<HashMap<Uuid, Vec<Line>>> {
    let mut by_document: HashMap<Uuid, Vec<Line>> = HashMap::new();
    if ids.is_empty() {
        return Ok(by_document);
    }
    let rows = sqlx::query(
        "SELECT id, document_id, article_id, article_code, description, unit, quantity_milli, \
         unit_price_units, vat_rate_bp, discount_bp, amount_without_vat, vat_amount, \
         amount_with_vat, source_line_id FROM document_lines WHERE document_id = ANY($1) \
         ORDER BY document_id, position",
    )
    .bind(ids)
    .fetch_all(conn)
    .await?;
    for row in &rows {
        let line = Line {
            id: row.try_get("id")?,
            article_id: row.try_get("article_id")?,
            article_code: row.try_get("article_code")?,
            description: row.try_get("description")?,
            unit: row.try_get("unit")?,
            values: LineValues {
                quantity_milli: row.try_get("quantity_milli")?,
                unit_price: row.try_get("unit_price_units")?,
                vat_rate_bp: row.try_get("vat_rate_bp")?,
                discount_bp: row.try_get("discount_bp")?,
            },
            amounts: LineAmounts {
                without_vat: row.try_get("amount_without_vat")?,
                vat: row.try_get("vat_amount")?,
                with_vat: row.try_get("amount_with_vat")?,
            },
            source_line_id: row.try_get("source_line_id")?,
        };
        by_document
            .entry(row.try_get("document_id")?)
            .or_default()
            .push(line);
    }
    Ok(by_document)
}

/// Puts the stored lines on each header.
pub async fn attach_lines(
    conn: &mut PgConnection,
    headers: &mut [&mut DocHeader],
) -> sqlx::Result<()> {
    let ids: Vec<Uuid> = headers.iter().map(|h| h.id).collect();
    let mut lines = load_lines(conn, &ids).await?;
    for header in headers {
        header.lines = lines.remove(&header.id).unwrap_or_default();
    }
    Ok(())
}

/// For each line of `source_line_ids`, the quantity on invoice lines that came from it, on
/// invoices in one of `statuses`, leaving out invoice `except`.
pub async fn invoiced_quantities(
    conn: &mut PgConnection,
    source_line_ids: &[Uuid],
    statuses: &[&str],
    except: Option<Uuid>,
) -> sqlx::Result<HashMap<Uuid, i64>> {
    let rows = sqlx::query(
        "SELECT l.source_line_id, sum(l.quantity_milli)::bigint AS quantity \
         FROM document_lines l JOIN invoices i ON i.id = l.document_id \
         WHERE l.source_line_id = ANY($1) AND i.status = ANY($2) \
         AND ($3::uuid IS NULL OR i.id <> $3) GROUP BY l.source_line_id",
    )
    .bind(source_line_ids)
    .bind(statuses)
    .bind(except)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|row| Ok((row.try_get("source_line_id")?, row.try_get("quantity")?)))
        .collect()
}
