//! The document as one self-contained HTML page, for email bodies.
//!
//! Styles are inline `style` attributes rather than a `<style>` sheet because several email
//! clients drop sheets, and layout uses tables because that is what email clients render
//! alike. Every text from the model goes through [`escape`].

use std::fmt::Write as _;

use super::RenderModel;
use super::content::{self, Align, Column};

const BODY: &str = "margin:0;padding:24px;background:#ffffff;color:#222222;\
    font-family:Arial,'Liberation Sans',Helvetica,sans-serif;font-size:13px;line-height:1.4;";
const LABEL: &str = "font-size:11px;font-weight:bold;color:#707070;text-transform:uppercase;\
    letter-spacing:0.05em;";
const CELL: &str = "padding:4px 6px;border-bottom:1px solid #dddddd;vertical-align:top;";
const HEAD: &str = "padding:4px 6px;background:#eeeeee;border-bottom:1px solid #bbbbbb;\
    font-size:11px;vertical-align:bottom;";

/// Renders `doc` as a self-contained HTML page (UTF-8, inline CSS, no external resources) with
/// the same content as the PDF. Every text from the model is HTML-escaped.
pub fn render_html(doc: &RenderModel) -> String {
    let mut html = String::with_capacity(4096 + doc.lines.len() * 600);
    let name = escape(&content::document_name(doc));
    html.push_str("<!DOCTYPE html>\n<html lang=\"ro\">\n<head>\n<meta charset=\"utf-8\">\n");
    html.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    let _ = writeln!(html, "<title>{name}</title>\n</head>");
    let _ = writeln!(html, "<body style=\"{BODY}\">");
    html.push_str("<div style=\"max-width:960px;margin:0 auto;\">\n");
    header(&mut html, doc);
    table(&mut html, doc);
    totals(&mut html, doc);
    facts(&mut html, doc);
    notes(&mut html, doc);
    html.push_str("</div>\n</body>\n</html>\n");
    html
}

/// Supplier and title side by side, then the customer.
fn header(html: &mut String, doc: &RenderModel) {
    html.push_str(
        "<table role=\"presentation\" width=\"100%\" cellspacing=\"0\" cellpadding=\"0\" \
         style=\"border-collapse:collapse;\">\n<tr>\n<td style=\"vertical-align:top;\">\n",
    );
    party(html, content::SUPPLIER, &doc.supplier, "font-size:18px;");
    html.push_str("</td>\n<td style=\"vertical-align:top;text-align:right;\">\n");
    let _ = writeln!(
        html,
        "<div style=\"font-size:26px;font-weight:bold;\">{}</div>",
        escape(doc.kind.title())
    );
    let _ = writeln!(
        html,
        "<div style=\"font-size:15px;font-weight:bold;\">{}</div>",
        escape(&content::number_line(doc))
    );
    for (label, value) in &doc.dates {
        let _ = writeln!(html, "<div>{}: {}</div>", escape(label), escape(value));
    }
    html.push_str("</td>\n</tr>\n</table>\n");
    html.push_str("<hr style=\"border:0;border-top:1px solid #bbbbbb;margin:16px 0;\">\n");
    html.push_str(
        "<table role=\"presentation\" width=\"100%\" cellspacing=\"0\" cellpadding=\"0\" \
         style=\"border-collapse:collapse;\">\n<tr>\n<td style=\"vertical-align:top;\">\n",
    );
    party(html, content::CUSTOMER, &doc.customer, "font-size:15px;");
    html.push_str("</td>\n<td style=\"vertical-align:bottom;text-align:right;\">\n");
    if let Some(currency) = content::currency_line(doc) {
        let _ = writeln!(html, "<div>{}</div>", escape(&currency));
    }
    html.push_str("</td>\n</tr>\n</table>\n");
}

fn party(html: &mut String, label: &str, party: &super::RenderParty, name_style: &str) {
    let _ = writeln!(html, "<div style=\"{LABEL}\">{}</div>", escape(label));
    let _ = writeln!(
        html,
        "<div style=\"{name_style}font-weight:bold;\">{}</div>",
        escape(&party.name)
    );
    for detail in content::party_details(party) {
        let _ = writeln!(html, "<div>{}</div>", escape(&detail));
    }
}

fn text_align(column: Column) -> &'static str {
    match column.align() {
        Align::Left => "text-align:left;",
        Align::Right => "text-align:right;white-space:nowrap;",
    }
}

fn table(html: &mut String, doc: &RenderModel) {
    let columns = content::columns(doc);
    html.push_str(
        "<table width=\"100%\" cellspacing=\"0\" cellpadding=\"0\" \
         style=\"border-collapse:collapse;margin-top:20px;font-size:12px;\">\n<thead>\n<tr>\n",
    );
    for &column in &columns {
        let _ = writeln!(
            html,
            "<th style=\"{HEAD}{}\">{}</th>",
            text_align(column).replace("white-space:nowrap;", ""),
            escape(column.header())
        );
    }
    html.push_str("</tr>\n</thead>\n<tbody>\n");
    if doc.lines.is_empty() {
        let _ = writeln!(
            html,
            "<tr><td colspan=\"{}\" style=\"{CELL}color:#707070;\">{}</td></tr>",
            columns.len(),
            escape(content::NO_LINES)
        );
    }
    for line in &doc.lines {
        html.push_str("<tr>\n");
        for &column in &columns {
            let _ = writeln!(
                html,
                "<td style=\"{CELL}{}\">{}</td>",
                text_align(column),
                escape_lines(&column.cell(line))
            );
        }
        html.push_str("</tr>\n");
    }
    html.push_str("</tbody>\n</table>\n");
}

fn totals(html: &mut String, doc: &RenderModel) {
    html.push_str(
        "<table role=\"presentation\" cellspacing=\"0\" cellpadding=\"0\" \
         style=\"border-collapse:collapse;margin:16px 0 0 auto;\">\n",
    );
    for row in content::totals(doc) {
        let style = if row.grand {
            "padding:6px 0 2px 16px;font-size:16px;font-weight:bold;border-top:2px solid #222222;"
        } else {
            "padding:2px 0 2px 16px;"
        };
        let _ = writeln!(
            html,
            "<tr><td style=\"{style}text-align:right;font-weight:bold;\">{}</td>\
             <td style=\"{style}text-align:right;white-space:nowrap;\">{}</td></tr>",
            escape(&row.label),
            escape(&row.value)
        );
    }
    html.push_str("</table>\n");
}

fn facts(html: &mut String, doc: &RenderModel) {
    if doc.facts.is_empty() {
        return;
    }
    html.push_str(
        "<table role=\"presentation\" cellspacing=\"0\" cellpadding=\"0\" \
         style=\"border-collapse:collapse;margin-top:20px;\">\n",
    );
    for (label, value) in &doc.facts {
        let _ = writeln!(
            html,
            "<tr><td style=\"padding:2px 16px 2px 0;font-weight:bold;vertical-align:top;\">{}:</td>\
             <td style=\"padding:2px 0;\">{}</td></tr>",
            escape(label),
            escape_lines(value)
        );
    }
    html.push_str("</table>\n");
}

fn notes(html: &mut String, doc: &RenderModel) {
    if doc.notes.trim().is_empty() {
        return;
    }
    let _ = writeln!(
        html,
        "<div style=\"{LABEL}margin-top:20px;\">{}</div>",
        escape(content::NOTES)
    );
    for paragraph in content::clean(doc.notes.trim_end()).split('\n') {
        if paragraph.trim().is_empty() {
            html.push_str("<p style=\"margin:0 0 8px 0;\">&nbsp;</p>\n");
        } else {
            let _ = writeln!(
                html,
                "<p style=\"margin:0 0 8px 0;\">{}</p>",
                escape(paragraph)
            );
        }
    }
}

/// Escapes text for HTML content and attribute values, after dropping control characters
/// (which HTML does not allow).
pub(crate) fn escape(text: &str) -> String {
    let text = content::clean(text);
    let mut escaped = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}

/// Escapes text whose "\n" should show as line breaks (descriptions, fact values).
fn escape_lines(text: &str) -> String {
    escape(text).replace('\n', "<br>")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_covers_the_five_html_characters_and_control_characters() {
        assert_eq!(
            escape("<a href=\"x\">Tom & Jerry's</a>\u{0}"),
            "&lt;a href=&quot;x&quot;&gt;Tom &amp; Jerry&#39;s&lt;/a&gt; "
        );
        assert_eq!(escape_lines("unu\r\ndoi"), "unu<br>doi");
        assert_eq!(escape("ș ț ă î â"), "ș ț ă î â");
    }
}
