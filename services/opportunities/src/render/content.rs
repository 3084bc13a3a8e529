//! What a document says, independent of how it is drawn: the labels, which party details and
//! table columns are printed, and the totals rows. The PDF and the HTML both take their text
//! from here so that the two never disagree.

use super::{RenderLine, RenderModel, RenderParty};

/// Heading of the supplier's block.
pub(crate) const SUPPLIER: &str = "Furnizor";
/// Heading of the customer's block.
pub(crate) const CUSTOMER: &str = "Client";
/// Printed instead of the number while the document has none.
pub(crate) const DRAFT: &str = "CIORNĂ";
/// Heading of the notes.
pub(crate) const NOTES: &str = "Observații";
/// Printed in the table when the document has no lines.
pub(crate) const NO_LINES: &str = "Documentul nu are poziții.";

/// The number line under the title: "Nr. FCT-2026-0042", or "CIORNĂ" for a draft. A blank
/// number counts as none, since "Nr." alone would look like a printing error.
pub(crate) fn number_line(doc: &RenderModel) -> String {
    match &doc.number {
        Some(number) if !number.trim().is_empty() => format!("Nr. {number}"),
        _ => DRAFT.to_owned(),
    }
}

/// The document's name in one line, e.g. "FACTURĂ Nr. FCT-2026-0042" (PDF title, page headers,
/// HTML title).
pub(crate) fn document_name(doc: &RenderModel) -> String {
    format!("{} {}", doc.kind.title(), number_line(doc))
}

/// "Label: value", or nothing when the value is blank.
fn labelled(label: &str, value: &str) -> Option<String> {
    (!value.trim().is_empty()).then(|| format!("{label}: {value}"))
}

/// The lines printed under a party's name, blank fields left out.
pub(crate) fn party_details(party: &RenderParty) -> Vec<String> {
    let mut details = Vec::new();
    details.extend(labelled("CIF", &party.fiscal_code));
    details.extend(labelled("Nr. Reg. Com.", &party.registration_number));
    details.extend(
        party
            .address_lines
            .iter()
            .filter(|line| !line.trim().is_empty())
            .cloned(),
    );
    let contact: Vec<String> = [
        labelled("E-mail", &party.email),
        labelled("Tel.", &party.phone),
    ]
    .into_iter()
    .flatten()
    .collect();
    if !contact.is_empty() {
        details.push(contact.join(" · "));
    }
    details.extend(labelled("Cont bancar", &party.bank_account));
    details
}

/// "Moneda: RON", or nothing when the currency is blank.
pub(crate) fn currency_line(doc: &RenderModel) -> Option<String> {
    labelled("Moneda", &doc.currency)
}

/// How a column's text sits in its cell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Align {
    /// Text.
    Left,
    /// Numbers, so that their digits line up.
    Right,
}

/// A column of the lines table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Column {
    Position,
    Code,
    Description,
    Unit,
    Quantity,
    UnitPrice,
    Discount,
    VatRate,
    WithoutVat,
    Vat,
    WithVat,
}

impl Column {
    /// The header printed above the column.
    pub(crate) fn header(self) -> &'static str {
        match self {
            Self::Position => "Nr.",
            Self::Code => "Cod",
            Self::Description => "Descriere",
            Self::Unit => "U.M.",
            Self::Quantity => "Cant.",
            Self::UnitPrice => "Preț unitar",
            Self::Discount => "Discount",
            Self::VatRate => "Cota TVA",
            Self::WithoutVat => "Valoare fără TVA",
            Self::Vat => "Valoare TVA",
            Self::WithVat => "Valoare cu TVA",
        }
    }

    /// Where the column's text sits.
    pub(crate) fn align(self) -> Align {
        match self {
            Self::Code | Self::Description | Self::Unit => Align::Left,
            _ => Align::Right,
        }
    }

    /// The cell of one line in this column.
    pub(crate) fn cell(self, line: &RenderLine) -> String {
        match self {
            Self::Position => line.position.to_string(),
            Self::Code => line.article_code.clone(),
            Self::Description => line.description.clone(),
            Self::Unit => line.unit.clone(),
            Self::Quantity => line.quantity.clone(),
            Self::UnitPrice => line.unit_price.clone(),
            Self::Discount => line.discount.clone(),
            Self::VatRate => line.vat_rate.clone(),
            Self::WithoutVat => line.amount_without_vat.clone(),
            Self::Vat => line.vat_amount.clone(),
            Self::WithVat => line.amount_with_vat.clone(),
        }
    }
}

/// The table's columns; the discount column only when some line has a discount, since an empty
/// column would take room from the description.
pub(crate) fn columns(doc: &RenderModel) -> Vec<Column> {
    let discount = doc
        .lines
        .iter()
        .any(|line| !line.discount.trim().is_empty());
    [
        Column::Position,
        Column::Code,
        Column::Description,
        Column::Unit,
        Column::Quantity,
        Column::UnitPrice,
    ]
    .into_iter()
    .chain(discount.then_some(Column::Discount))
    .chain([
        Column::VatRate,
        Column::WithoutVat,
        Column::Vat,
        Column::WithVat,
    ])
    .collect()
}

/// One row of the totals block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TotalRow {
    pub(crate) label: String,
    pub(crate) value: String,
    /// The amount to pay, printed larger.
    pub(crate) grand: bool,
}

/// The totals block: without VAT, the VAT of each rate, the VAT, and what is to be paid, each
/// amount followed by the currency.
pub(crate) fn totals(doc: &RenderModel) -> Vec<TotalRow> {
    let amount = |value: &str| format!("{value} {}", doc.currency).trim().to_owned();
    let mut rows = vec![TotalRow {
        label: "Total fără TVA".to_owned(),
        value: amount(&doc.totals.without_vat),
        grand: false,
    }];
    for (rate, base, vat) in &doc.totals.vat_breakdown {
        rows.push(TotalRow {
            label: format!("TVA {rate} (bază {})", amount(base)),
            value: amount(vat),
            grand: false,
        });
    }
    rows.push(TotalRow {
        label: "Total TVA".to_owned(),
        value: amount(&doc.totals.vat),
        grand: false,
    });
    rows.push(TotalRow {
        label: "Total de plată".to_owned(),
        value: amount(&doc.totals.with_vat),
        grand: true,
    });
    rows
}

/// Replaces what no printout should carry: control characters become spaces, and the three
/// newline conventions (and Unicode's line and paragraph separators) become "\n".
pub(crate) fn clean(text: &str) -> String {
    let text = text.replace("\r\n", "\n");
    text.chars()
        .map(|c| match c {
            '\n' | '\r' | '\u{2028}' | '\u{2029}' => '\n',
            c if c.is_control() => ' ',
            c => c,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::{RenderKind, RenderTotals};

    fn model() -> RenderModel {
        RenderModel {
            kind: RenderKind::Offer,
            number: None,
            dates: Vec::new(),
            supplier: RenderParty::default(),
            customer: RenderParty::default(),
            currency: "RON".to_owned(),
            lines: Vec::new(),
            totals: RenderTotals::default(),
            notes: String::new(),
            facts: Vec::new(),
        }
    }

    #[test]
    fn a_draft_or_blank_number_prints_ciorna() {
        let mut doc = model();
        assert_eq!(document_name(&doc), "OFERTĂ CIORNĂ");
        doc.number = Some("  ".to_owned());
        assert_eq!(number_line(&doc), "CIORNĂ");
        doc.number = Some("OF-7".to_owned());
        assert_eq!(document_name(&doc), "OFERTĂ Nr. OF-7");
    }

    #[test]
    fn blank_party_fields_are_left_out() {
        let party = RenderParty {
            name: "X".to_owned(),
            fiscal_code: "RO1".to_owned(),
            address_lines: vec!["Str. A 1".to_owned(), " ".to_owned()],
            phone: "0264 000 000".to_owned(),
            ..RenderParty::default()
        };
        assert_eq!(
            party_details(&party),
            ["CIF: RO1", "Str. A 1", "Tel.: 0264 000 000"]
        );
    }

    #[test]
    fn the_discount_column_is_there_only_when_a_line_has_a_discount() {
        let mut doc = model();
        doc.lines.push(RenderLine::default());
        assert!(!columns(&doc).contains(&Column::Discount));
        doc.lines.push(RenderLine {
            discount: "10%".to_owned(),
            ..RenderLine::default()
        });
        assert_eq!(columns(&doc)[6], Column::Discount);
        assert_eq!(columns(&doc).len(), 11);
    }

    #[test]
    fn totals_carry_the_currency_and_one_row_per_rate() {
        let mut doc = model();
        doc.totals = RenderTotals {
            without_vat: "100,00".to_owned(),
            vat: "19,00".to_owned(),
            with_vat: "119,00".to_owned(),
            vat_breakdown: vec![("19%".to_owned(), "100,00".to_owned(), "19,00".to_owned())],
        };
        let rows = totals(&doc);
        let labels: Vec<&str> = rows.iter().map(|row| row.label.as_str()).collect();
        assert_eq!(
            labels,
            [
                "Total fără TVA",
                "TVA 19% (bază 100,00 RON)",
                "Total TVA",
                "Total de plată"
            ]
        );
        assert_eq!(rows[3].value, "119,00 RON");
        assert!(rows[3].grand);
    }

    #[test]
    fn clean_keeps_newlines_and_drops_control_characters() {
        assert_eq!(clean("a\r\nb\rc\u{2028}d\te\u{0}f"), "a\nb\nc\nd e f");
    }
}
