//! Lays a document out on A4 pages: positioned text, rules and shaded boxes, with nothing of
//! the PDF writer in it. Laying out everything before writing is what lets each page print the
//! page count ("Pagina 1 din 3"), and it lets tests check geometry without parsing a PDF.
//!
//! Coordinates are points from the page's top-left corner, y growing downwards (as in krilla).

use super::RenderModel;
use super::content::{self, Align, Column};
use super::text::{Metrics, Style};

/// A4 width in points.
pub(crate) const PAGE_WIDTH: f32 = 595.276;
/// A4 height in points.
pub(crate) const PAGE_HEIGHT: f32 = 841.89;
const MARGIN_X: f32 = 40.0;
const TOP: f32 = 40.0;
/// Content ends here; below are the footer and the margin.
const BOTTOM: f32 = PAGE_HEIGHT - 56.0;
const CONTENT_WIDTH: f32 = PAGE_WIDTH - 2.0 * MARGIN_X;
const RIGHT: f32 = MARGIN_X + CONTENT_WIDTH;
const FOOTER_RULE: f32 = PAGE_HEIGHT - 44.0;
const FOOTER_BASELINE: f32 = PAGE_HEIGHT - 32.0;

/// Padding inside a table cell.
const CELL_PAD_X: f32 = 3.5;
const CELL_PAD_Y: f32 = 2.5;
/// The description gets at least this much of the table's width.
const MIN_DESCRIPTION: f32 = 110.0;

const fn style(size: f32, bold: bool, gray: u8) -> Style {
    Style { size, bold, gray }
}
const TITLE: Style = style(18.0, true, 0x11);
const NUMBER: Style = style(10.5, true, 0x11);
const COMPANY: Style = style(12.0, true, 0x11);
const PARTY: Style = style(10.0, true, 0x11);
const BODY: Style = style(8.5, false, 0x22);
const BODY_BOLD: Style = style(8.5, true, 0x22);
const LABEL: Style = style(7.5, true, 0x70);
const CELL: Style = style(7.5, false, 0x22);
const CELL_HEAD: Style = style(7.0, true, 0x33);
const GRAND: Style = style(10.0, true, 0x11);
const SMALL: Style = style(7.0, false, 0x70);

const TEXT_GRAY: u8 = 0x22;
const RULE_GRAY: u8 = 0xBB;
const ROW_RULE_GRAY: u8 = 0xDD;
const HEAD_FILL_GRAY: u8 = 0xEE;

/// One thing drawn on a page.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Op {
    /// One line of text (never containing "\n"), starting at `x` on `baseline`.
    Text {
        x: f32,
        baseline: f32,
        style: Style,
        text: String,
        /// Measured width, for tests that check the text stays inside its box.
        width: f32,
    },
    /// A horizontal rule.
    Rule {
        x1: f32,
        x2: f32,
        y: f32,
        thickness: f32,
        gray: u8,
    },
    /// A shaded rectangle (behind the table header).
    Fill {
        x: f32,
        y: f32,
        width: f32,
        height: f32,
        gray: u8,
    },
}

/// A column of text lines placed side by side with others, line by line.
struct Block {
    x: f32,
    width: f32,
    align: Align,
    lines: Vec<(String, Style)>,
}

impl Block {
    fn new(x: f32, width: f32, align: Align) -> Self {
        Self {
            x,
            width,
            align,
            lines: Vec::new(),
        }
    }

    /// Adds `text` wrapped to the block's width.
    fn add(&mut self, metrics: &Metrics, text: &str, style: Style) {
        for line in metrics.wrap(text, style, self.width) {
            self.lines.push((line, style));
        }
    }
}

/// Places content down the pages, starting a new page when the next line does not fit.
struct Flow<'a> {
    metrics: &'a Metrics,
    /// Printed at the top of every page after the first, so a loose page says what it is.
    running_header: String,
    done: Vec<Vec<Op>>,
    page: Vec<Op>,
    /// Top of the next line.
    y: f32,
    /// Nothing but the running header is on this page yet: a line that does not fit here
    /// will not fit on a new page either, so it is placed (and cut) rather than moved.
    fresh: bool,
}

impl<'a> Flow<'a> {
    fn new(metrics: &'a Metrics, running_header: String) -> Self {
        Self {
            metrics,
            running_header,
            done: Vec::new(),
            page: Vec::new(),
            y: TOP,
            fresh: true,
        }
    }

    fn room(&self) -> f32 {
        BOTTOM - self.y
    }

    fn new_page(&mut self) {
        self.done.push(std::mem::take(&mut self.page));
        self.y = TOP;
        let header = self
            .metrics
            .wrap(&self.running_header, SMALL, CONTENT_WIDTH)
            .into_iter()
            .next()
            .unwrap_or_default();
        self.text(MARGIN_X, TOP + SMALL.ascent(), SMALL, header);
        self.rule(TOP + SMALL.line_height() + 2.0, RULE_GRAY, 0.5);
        self.y = TOP + SMALL.line_height() + 10.0;
        self.fresh = true;
    }

    /// Takes `height` for the next line, on a new page if it does not fit here; gives its top.
    fn reserve(&mut self, height: f32) -> f32 {
        if height > self.room() && !self.fresh {
            self.new_page();
        }
        let top = self.y;
        self.y += height;
        self.fresh = false;
        top
    }

    /// Vertical space between sections; none at the top of a page.
    fn gap(&mut self, height: f32) {
        if !self.fresh {
            self.y += height;
        }
    }

    fn text(&mut self, x: f32, baseline: f32, style: Style, text: String) {
        if text.is_empty() {
            return;
        }
        let width = self.metrics.width(&text, style);
        self.page.push(Op::Text {
            x,
            baseline,
            style,
            text,
            width,
        });
    }

    /// Text inside a box from `left`, `width` wide.
    fn text_in(
        &mut self,
        left: f32,
        width: f32,
        align: Align,
        baseline: f32,
        style: Style,
        text: String,
    ) {
        let x = match align {
            Align::Left => left,
            Align::Right => left + width - self.metrics.width(&text, style),
        };
        self.text(x, baseline, style, text);
    }

    fn rule(&mut self, y: f32, gray: u8, thickness: f32) {
        self.page.push(Op::Rule {
            x1: MARGIN_X,
            x2: RIGHT,
            y,
            thickness,
            gray,
        });
    }

    /// Places blocks side by side, line by line: each row of lines may go to the next page, so
    /// no block is lost however long it is.
    fn blocks(&mut self, blocks: &[Block]) {
        let rows = blocks
            .iter()
            .map(|block| block.lines.len())
            .max()
            .unwrap_or(0);
        for row in 0..rows {
            let cells: Vec<(&Block, &(String, Style))> = blocks
                .iter()
                .filter_map(|block| block.lines.get(row).map(|line| (block, line)))
                .collect();
            let height = cells
                .iter()
                .map(|(_, (_, style))| style.line_height())
                .fold(0.0, f32::max);
            let ascent = cells
                .iter()
                .map(|(_, (_, style))| style.ascent())
                .fold(0.0, f32::max);
            let top = self.reserve(height);
            for (block, (text, style)) in cells {
                self.text_in(
                    block.x,
                    block.width,
                    block.align,
                    top + ascent,
                    *style,
                    text.clone(),
                );
            }
        }
    }

    /// All pages, each with its footer: the supplier's name and "Pagina i din n".
    fn finish(mut self, supplier: &str) -> Vec<Vec<Op>> {
        self.done.push(std::mem::take(&mut self.page));
        let count = self.done.len();
        let supplier = self
            .metrics
            .wrap(supplier, SMALL, CONTENT_WIDTH * 0.6)
            .into_iter()
            .next()
            .unwrap_or_default();
        let mut pages = Vec::with_capacity(count);
        for (index, ops) in std::mem::take(&mut self.done).into_iter().enumerate() {
            self.page = ops;
            self.rule(FOOTER_RULE, RULE_GRAY, 0.5);
            self.text(MARGIN_X, FOOTER_BASELINE, SMALL, supplier.clone());
            let number = format!("Pagina {} din {count}", index + 1);
            self.text_in(
                MARGIN_X,
                CONTENT_WIDTH,
                Align::Right,
                FOOTER_BASELINE,
                SMALL,
                number,
            );
            pages.push(std::mem::take(&mut self.page));
        }
        pages
    }
}

/// Lays the whole document out; the result has at least one page.
pub(crate) fn layout(doc: &RenderModel, metrics: &Metrics) -> Vec<Vec<Op>> {
    let running_header = format!("{} · {}", content::document_name(doc), doc.customer.name);
    let mut flow = Flow::new(metrics, running_header);
    header(&mut flow, doc);
    table(&mut flow, doc);
    totals(&mut flow, doc);
    facts(&mut flow, doc);
    notes(&mut flow, doc);
    flow.finish(&doc.supplier.name)
}

/// The supplier on the left, the title, number and dates on the right, then the customer.
fn header(flow: &mut Flow<'_>, doc: &RenderModel) {
    let metrics = flow.metrics;
    let left_width = CONTENT_WIDTH * 0.58;
    let right_x = MARGIN_X + left_width + 16.0;

    let mut supplier = Block::new(MARGIN_X, left_width, Align::Left);
    supplier.add(metrics, content::SUPPLIER, LABEL);
    supplier.add(metrics, &doc.supplier.name, COMPANY);
    for detail in content::party_details(&doc.supplier) {
        supplier.add(metrics, &detail, BODY);
    }

    let mut title = Block::new(right_x, RIGHT - right_x, Align::Right);
    title.add(metrics, doc.kind.title(), TITLE);
    title.add(metrics, &content::number_line(doc), NUMBER);
    for (label, value) in &doc.dates {
        title.add(metrics, &format!("{label}: {value}"), BODY);
    }
    flow.blocks(&[supplier, title]);

    flow.gap(8.0);
    let top = flow.reserve(1.0);
    flow.rule(top, RULE_GRAY, 0.75);
    flow.gap(8.0);

    let mut customer = Block::new(MARGIN_X, left_width, Align::Left);
    customer.add(metrics, content::CUSTOMER, LABEL);
    customer.add(metrics, &doc.customer.name, PARTY);
    for detail in content::party_details(&doc.customer) {
        customer.add(metrics, &detail, BODY);
    }
    let mut currency = Block::new(right_x, RIGHT - right_x, Align::Right);
    if let Some(line) = content::currency_line(doc) {
        currency.add(metrics, &line, BODY);
    }
    flow.blocks(&[customer, currency]);
    flow.gap(12.0);
}

/// A table column placed on the page.
struct Placed {
    column: Column,
    x: f32,
    width: f32,
}

/// Gives each column the width of its widest cell (up to a cap, and at least its header's
/// widest word), and the description what is left, so typical amounts stay on one line and the
/// description gets the room.
fn column_widths(metrics: &Metrics, doc: &RenderModel, columns: &[Column]) -> Vec<Placed> {
    let cap = |column: Column| match column {
        Column::Position => 24.0,
        Column::Code => 90.0,
        Column::Unit | Column::Discount | Column::VatRate => 32.0,
        Column::Quantity => 44.0,
        _ => 60.0,
    };
    let mut widths: Vec<f32> = columns
        .iter()
        .map(|&column| {
            if column == Column::Description {
                return 0.0;
            }
            let content = doc
                .lines
                .iter()
                .map(|line| metrics.natural_width(&column.cell(line), CELL))
                .fold(0.0, f32::max);
            let header = metrics.widest_word(column.header(), CELL_HEAD);
            content.min(cap(column)).max(header) + 2.0 * CELL_PAD_X
        })
        .collect();
    let others: f32 = widths.iter().sum();
    let description = if others + MIN_DESCRIPTION > CONTENT_WIDTH {
        // Too many wide cells: every other column gives up a share, and their cells wrap.
        let scale = (CONTENT_WIDTH - MIN_DESCRIPTION) / others;
        for width in &mut widths {
            *width *= scale;
        }
        MIN_DESCRIPTION
    } else {
        CONTENT_WIDTH - others
    };
    let mut x = MARGIN_X;
    columns
        .iter()
        .zip(widths)
        .map(|(&column, width)| {
            let width = if column == Column::Description {
                description
            } else {
                width
            };
            let placed = Placed { column, x, width };
            x += width;
            placed
        })
        .collect()
}

/// The lines table. A row that does not fit goes to the next page with the header repeated; a
/// row taller than a whole page is cut between its text lines.
fn table(flow: &mut Flow<'_>, doc: &RenderModel) {
    let metrics = flow.metrics;
    let columns = column_widths(metrics, doc, &content::columns(doc));
    let wrap = |text: &str, style: Style, placed: &Placed| {
        metrics.wrap(text, style, placed.width - 2.0 * CELL_PAD_X)
    };
    let heads: Vec<Vec<String>> = columns
        .iter()
        .map(|placed| wrap(placed.column.header(), CELL_HEAD, placed))
        .collect();
    let head_lines = heads.iter().map(Vec::len).max().unwrap_or(1);
    let head_height = head_lines as f32 * CELL_HEAD.line_height() + 2.0 * CELL_PAD_Y;
    let line_height = CELL.line_height();

    let draw_head = |flow: &mut Flow<'_>| {
        let top = flow.reserve(head_height);
        flow.page.push(Op::Fill {
            x: MARGIN_X,
            y: top,
            width: CONTENT_WIDTH,
            height: head_height,
            gray: HEAD_FILL_GRAY,
        });
        for (placed, lines) in columns.iter().zip(&heads) {
            for (index, line) in lines.iter().enumerate() {
                let baseline =
                    top + CELL_PAD_Y + index as f32 * CELL_HEAD.line_height() + CELL_HEAD.ascent();
                flow.text_in(
                    placed.x + CELL_PAD_X,
                    placed.width - 2.0 * CELL_PAD_X,
                    placed.column.align(),
                    baseline,
                    CELL_HEAD,
                    line.clone(),
                );
            }
        }
        flow.rule(top + head_height, RULE_GRAY, 0.5);
    };
    // A new page, then the header again.
    let break_page = |flow: &mut Flow<'_>| {
        flow.new_page();
        draw_head(flow);
    };
    // Rows `from..to` of the cells' text lines, as one table row.
    let draw_rows = |flow: &mut Flow<'_>, cells: &[Vec<String>], from: usize, to: usize| {
        let top = flow.y;
        for (placed, lines) in columns.iter().zip(cells) {
            let end = to.min(lines.len());
            for (index, line) in lines.get(from..end).unwrap_or_default().iter().enumerate() {
                let baseline = top + CELL_PAD_Y + index as f32 * line_height + CELL.ascent();
                flow.text_in(
                    placed.x + CELL_PAD_X,
                    placed.width - 2.0 * CELL_PAD_X,
                    placed.column.align(),
                    baseline,
                    CELL,
                    line.clone(),
                );
            }
        }
        flow.y = top + (to - from) as f32 * line_height + 2.0 * CELL_PAD_Y;
        flow.fresh = false;
        flow.rule(flow.y, ROW_RULE_GRAY, 0.4);
    };

    // Keep the header with at least the first row's first lines.
    let first_rows = doc.lines.first().map_or(1, |line| {
        columns
            .iter()
            .map(|placed| wrap(&placed.column.cell(line), CELL, placed).len())
            .max()
            .unwrap_or(1)
            .min(3)
    });
    if head_height + first_rows as f32 * line_height + 2.0 * CELL_PAD_Y > flow.room() && !flow.fresh
    {
        flow.new_page();
    }
    draw_head(flow);

    if doc.lines.is_empty() {
        let top = flow.reserve(line_height + 2.0 * CELL_PAD_Y);
        let baseline = top + CELL_PAD_Y + CELL.ascent();
        flow.text(
            MARGIN_X + CELL_PAD_X,
            baseline,
            SMALL,
            content::NO_LINES.to_owned(),
        );
        flow.rule(flow.y, ROW_RULE_GRAY, 0.4);
        return;
    }

    // Whether the table header was just drawn at the top of a new page.
    let mut at_top = false;
    for line in &doc.lines {
        let cells: Vec<Vec<String>> = columns
            .iter()
            .map(|placed| wrap(&placed.column.cell(line), CELL, placed))
            .collect();
        let count = cells.iter().map(Vec::len).max().unwrap_or(1);
        let mut from = 0;
        while from < count {
            let needed = (count - from) as f32 * line_height + 2.0 * CELL_PAD_Y;
            if needed <= flow.room() {
                draw_rows(flow, &cells, from, count);
                at_top = false;
                break;
            }
            let page_room = BOTTOM - TOP - SMALL.line_height() - 10.0 - head_height;
            if !at_top && needed <= page_room {
                break_page(flow);
                at_top = true;
                continue;
            }
            // Taller than a page: as many of its lines as fit here, the rest on the next.
            let mut fit = ((flow.room() - 2.0 * CELL_PAD_Y) / line_height)
                .floor()
                .max(0.0) as usize;
            if at_top {
                fit = fit.max(1);
            }
            if fit == 0 {
                break_page(flow);
                at_top = true;
                continue;
            }
            let to = (from + fit).min(count);
            draw_rows(flow, &cells, from, to);
            from = to;
            if from < count {
                break_page(flow);
                at_top = true;
            }
        }
    }
}

/// Totals on the right: labels, then amounts; the amount to pay larger, under a rule. Kept on
/// one page when they fit on one.
fn totals(flow: &mut Flow<'_>, doc: &RenderModel) {
    let metrics = flow.metrics;
    let value_width = 110.0;
    let label_width = 190.0;
    let value_x = RIGHT - value_width;
    let label_x = value_x - 8.0 - label_width;

    let rows: Vec<(Block, Block, bool)> = content::totals(doc)
        .into_iter()
        .map(|row| {
            let style = if row.grand { GRAND } else { BODY };
            let label_style = if row.grand { GRAND } else { BODY };
            let mut label = Block::new(label_x, label_width, Align::Right);
            label.add(metrics, &row.label, label_style);
            let mut value = Block::new(value_x, value_width, Align::Right);
            value.add(metrics, &row.value, style);
            (label, value, row.grand)
        })
        .collect();
    let height: f32 = rows
        .iter()
        .map(|(label, value, _)| {
            label
                .lines
                .iter()
                .chain(&value.lines)
                .map(|(_, style)| style.line_height())
                .sum::<f32>()
        })
        .sum::<f32>()
        + 12.0;
    flow.gap(8.0);
    if height > flow.room() && height <= BOTTOM - TOP - 40.0 && !flow.fresh {
        flow.new_page();
    }
    for (label, value, grand) in rows {
        if grand {
            flow.gap(3.0);
            let top = flow.reserve(4.0);
            flow.page.push(Op::Rule {
                x1: label_x,
                x2: RIGHT,
                y: top,
                thickness: 0.75,
                gray: TEXT_GRAY,
            });
        }
        flow.blocks(&[label, value]);
    }
}

/// Labelled facts: the label in bold on the left, the value wrapped beside it.
fn facts(flow: &mut Flow<'_>, doc: &RenderModel) {
    if doc.facts.is_empty() {
        return;
    }
    let metrics = flow.metrics;
    // As wide as the widest label (within limits), so values line up close to their labels.
    let label_width = doc
        .facts
        .iter()
        .map(|(label, _)| metrics.natural_width(&format!("{label}:"), BODY_BOLD))
        .fold(60.0, f32::max)
        .min(180.0);
    flow.gap(14.0);
    for (label, value) in &doc.facts {
        let mut left = Block::new(MARGIN_X, label_width, Align::Left);
        left.add(metrics, &format!("{label}:"), BODY_BOLD);
        let mut right = Block::new(
            MARGIN_X + label_width + 8.0,
            CONTENT_WIDTH - label_width - 8.0,
            Align::Left,
        );
        right.add(metrics, value, BODY);
        flow.blocks(&[left, right]);
        flow.gap(2.0);
    }
}

/// The notes under a heading, paragraph by paragraph.
fn notes(flow: &mut Flow<'_>, doc: &RenderModel) {
    if doc.notes.trim().is_empty() {
        return;
    }
    flow.gap(14.0);
    let mut block = Block::new(MARGIN_X, CONTENT_WIDTH, Align::Left);
    block.add(flow.metrics, content::NOTES, LABEL);
    block.add(flow.metrics, doc.notes.trim_end(), BODY);
    flow.blocks(&[block]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::{RenderKind, RenderLine, RenderParty, RenderTotals};

    fn line(position: u32, description: &str) -> RenderLine {
        RenderLine {
            position,
            article_code: format!("ART-{position:04}"),
            description: description.to_owned(),
            unit: "buc".to_owned(),
            quantity: "1".to_owned(),
            unit_price: "100,00".to_owned(),
            discount: String::new(),
            vat_rate: "19%".to_owned(),
            amount_without_vat: "100,00".to_owned(),
            vat_amount: "19,00".to_owned(),
            amount_with_vat: "119,00".to_owned(),
        }
    }

    fn doc(lines: Vec<RenderLine>, notes: &str) -> RenderModel {
        RenderModel {
            kind: RenderKind::Invoice,
            number: Some("FCT-1".to_owned()),
            dates: vec![("Data".to_owned(), "02.12.2026".to_owned())],
            supplier: RenderParty {
                name: "Furnizorul SRL".to_owned(),
                ..RenderParty::default()
            },
            customer: RenderParty {
                name: "Clientul SRL".to_owned(),
                ..RenderParty::default()
            },
            currency: "RON".to_owned(),
            lines,
            totals: RenderTotals::default(),
            notes: notes.to_owned(),
            facts: Vec::new(),
        }
    }

    fn texts(page: &[Op]) -> Vec<&str> {
        page.iter()
            .filter_map(|op| match op {
                Op::Text { text, .. } => Some(text.as_str()),
                _ => None,
            })
            .collect()
    }

    /// Every text inside the page's margins, every baseline inside the page.
    fn assert_inside(pages: &[Vec<Op>]) {
        for op in pages.iter().flatten() {
            if let Op::Text {
                x,
                baseline,
                width,
                text,
                ..
            } = op
            {
                assert!(*x >= MARGIN_X - 0.01, "{text:?} starts at {x}");
                assert!(x + width <= RIGHT + 0.01, "{text:?} ends at {}", x + width);
                assert!(
                    *baseline > TOP && *baseline < PAGE_HEIGHT - 20.0,
                    "{text:?} at {baseline}"
                );
            }
        }
    }

    #[test]
    fn a_short_document_is_one_page_with_its_page_number() {
        let metrics = Metrics::new().expect("fonts");
        let pages = layout(&doc(vec![line(1, "Consultanță")], "Mulțumim!"), &metrics);
        assert_eq!(pages.len(), 1);
        let texts = texts(&pages[0]);
        for expected in [
            "FACTURĂ",
            "Nr. FCT-1",
            "Data: 02.12.2026",
            "ART-0001",
            "Mulțumim!",
            "Pagina 1 din 1",
        ] {
            assert!(
                texts.contains(&expected),
                "{expected} missing from {texts:?}"
            );
        }
        assert_inside(&pages);
    }

    #[test]
    fn many_lines_repeat_the_table_header_on_every_page() {
        let metrics = Metrics::new().expect("fonts");
        let lines = (1..=200)
            .map(|n| line(n, "Îngrășământ complex NPK 15-15-15, sac 50 kg"))
            .collect();
        let pages = layout(&doc(lines, ""), &metrics);
        assert!(pages.len() >= 4, "{} pages", pages.len());
        for (index, page) in pages.iter().enumerate() {
            let texts = texts(page);
            assert!(
                texts.contains(&"Descriere"),
                "page {} has no table header",
                index + 1
            );
            let number = format!("Pagina {} din {}", index + 1, pages.len());
            assert!(
                texts.contains(&number.as_str()),
                "page {} has no {number}",
                index + 1
            );
            if index > 0 {
                assert!(texts.contains(&"FACTURĂ Nr. FCT-1 · Clientul SRL"));
            }
        }
        let all: Vec<&str> = pages.iter().flat_map(|page| texts(page)).collect();
        for n in 1..=200 {
            assert!(
                all.contains(&format!("ART-{n:04}").as_str()),
                "ART-{n:04} missing"
            );
        }
        assert_inside(&pages);
    }

    #[test]
    fn a_row_taller_than_a_page_is_cut_across_pages() {
        let metrics = Metrics::new().expect("fonts");
        let description = "cuvânt ".repeat(3000);
        let pages = layout(
            &doc(vec![line(1, &description), line(2, "scurt")], ""),
            &metrics,
        );
        assert!(pages.len() >= 3, "{} pages", pages.len());
        let words: usize = pages
            .iter()
            .flat_map(|page| texts(page))
            .map(|text| text.matches("cuvânt").count())
            .sum();
        assert_eq!(words, 3000);
        assert_inside(&pages);
    }

    #[test]
    fn long_notes_flow_onto_further_pages() {
        let metrics = Metrics::new().expect("fonts");
        let notes = "Paragraf de observații care se repetă. ".repeat(40);
        let notes = vec![notes; 30].join("\n");
        let pages = layout(&doc(Vec::new(), &notes), &metrics);
        assert!(pages.len() >= 2);
        assert!(texts(&pages[0]).contains(&content::NO_LINES));
        assert_inside(&pages);
    }

    #[test]
    fn wide_cells_squeeze_the_other_columns_but_leave_the_description_its_minimum() {
        let metrics = Metrics::new().expect("fonts");
        let mut wide = line(1, "d");
        wide.amount_with_vat = "9".repeat(60);
        wide.amount_without_vat = "9".repeat(60);
        wide.vat_amount = "9".repeat(60);
        wide.unit_price = "9".repeat(60);
        wide.article_code = "C".repeat(60);
        wide.discount = "9".repeat(60);
        let model = doc(vec![wide], "");
        let placed = column_widths(&metrics, &model, &content::columns(&model));
        let total: f32 = placed.iter().map(|column| column.width).sum();
        assert!((total - CONTENT_WIDTH).abs() < 0.01, "{total}");
        let description = placed
            .iter()
            .find(|column| column.column == Column::Description);
        assert!(description.is_some_and(|column| (column.width - MIN_DESCRIPTION).abs() < 0.01));
        assert_inside(&layout(&model, &metrics));
    }
}
