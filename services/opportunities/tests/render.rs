//! The renderer seen from outside: PDFs read back with a real PDF reader (poppler's
//! `pdftotext`), determinism, HTML escaping, and no panic on any model.

use std::io::Write as _;
use std::process::Command;

use crm_opportunities::render::{
    RenderKind, RenderLine, RenderModel, RenderParty, RenderTotals, render_html, render_pdf,
};
use proptest::prelude::*;

fn s(text: &str) -> String {
    text.to_owned()
}

fn supplier() -> RenderParty {
    RenderParty {
        name: s("Agroserv Distribuție SRL"),
        fiscal_code: s("RO18547290"),
        registration_number: s("J12/3456/2010"),
        address_lines: vec![
            s("Str. Memorandumului 28"),
            s("Cluj-Napoca, Cluj"),
            s("România"),
        ],
        email: s("office@agroserv.ro"),
        phone: s("0264 123 456"),
        bank_account: s("RO49 AAAA 1B31 0075 9384 0000 — Banca Transilvania"),
    }
}

fn customer() -> RenderParty {
    RenderParty {
        name: s("Șțefănescu Îngrășăminte SRL"),
        fiscal_code: s("RO22334455"),
        registration_number: s("J05/778/2015"),
        address_lines: vec![s("Calea Țării 14"), s("Oradea, Bihor")],
        email: s("achizitii@stefanescu.ro"),
        phone: String::new(),
        bank_account: String::new(),
    }
}

fn line(position: u32) -> RenderLine {
    RenderLine {
        position,
        article_code: format!("ART-{position:04}"),
        description: s("Îngrășământ complex NPK 15-15-15, sac 50 kg"),
        unit: s("sac"),
        quantity: s("12"),
        unit_price: s("145,50"),
        discount: String::new(),
        vat_rate: s("19%"),
        amount_without_vat: s("1.746,00"),
        vat_amount: s("331,74"),
        amount_with_vat: s("2.077,74"),
    }
}

/// A typical invoice: three lines (one with a discount and a long description), two VAT rates,
/// notes in two paragraphs and two facts.
fn invoice() -> RenderModel {
    let mut seeds = line(2);
    seeds.article_code = s("SEM-PORUMB-FAO380");
    seeds.description = s(
        "Sămânță de porumb hibrid FAO 380, tratată, ambalată în saci de 25.000 boabe; \
         livrare în două tranșe, conform graficului agreat cu beneficiarul",
    );
    seeds.unit = s("sac");
    seeds.quantity = s("40");
    seeds.unit_price = s("610,00");
    seeds.discount = s("10%");
    seeds.vat_rate = s("9%");
    seeds.amount_without_vat = s("21.960,00");
    seeds.vat_amount = s("1.976,40");
    seeds.amount_with_vat = s("23.936,40");
    let mut service = line(3);
    service.article_code = s("SRV-CONS");
    service.description = s("Consultanță agronomică (ore)");
    service.unit = s("oră");
    service.quantity = s("1,5");
    service.unit_price = s("200,00");
    service.amount_without_vat = s("300,00");
    service.vat_amount = s("57,00");
    service.amount_with_vat = s("357,00");
    RenderModel {
        kind: RenderKind::Invoice,
        number: Some(s("FCT-2026-0042")),
        dates: vec![
            (s("Data"), s("02.12.2026")),
            (s("Scadență"), s("01.01.2027")),
        ],
        supplier: supplier(),
        customer: customer(),
        currency: s("RON"),
        lines: vec![line(1), seeds, service],
        totals: RenderTotals {
            without_vat: s("24.006,00"),
            vat: s("2.365,14"),
            with_vat: s("26.371,14"),
            vat_breakdown: vec![
                (s("19%"), s("2.046,00"), s("388,74")),
                (s("9%"), s("21.960,00"), s("1.976,40")),
            ],
        },
        notes: s("Plata se face prin ordin de plată în contul de mai sus.\n\
             Marfa rămâne proprietatea furnizorului până la plata integrală (legacy: ş ţ Ş Ţ)."),
        facts: vec![
            (s("Termen de plată"), s("30 de zile de la emitere")),
            (s("Valabilitate"), s("01.01.2027 – 31.12.2027")),
        ],
    }
}

fn many_lines(count: u32) -> RenderModel {
    let mut doc = invoice();
    doc.lines = (1..=count).map(line).collect();
    doc
}

/// Text of `pdf` as `pdftotext -layout` extracts it, pages `first..=last` when given. Fails (never
/// skips) when poppler is missing, so a machine without it cannot pass these tests silently.
fn pdftotext(pdf: &[u8], pages: Option<(u32, u32)>) -> String {
    let mut file = tempfile::Builder::new()
        .suffix(".pdf")
        .tempfile()
        .expect("temporary file");
    file.write_all(pdf).expect("write the PDF");
    let mut command = Command::new("pdftotext");
    command.arg("-layout").arg("-enc").arg("UTF-8");
    if let Some((first, last)) = pages {
        command.args(["-f", &first.to_string(), "-l", &last.to_string()]);
    }
    command.arg(file.path()).arg("-");
    let output = match command.output() {
        Ok(output) => output,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => panic!(
            "pdftotext is not installed: run `cargo xtask test` (which installs it) or \
             `apt-get install -y poppler-utils`"
        ),
        Err(error) => panic!("pdftotext could not run: {error}"),
    };
    assert!(
        output.status.success(),
        "pdftotext failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("pdftotext prints UTF-8")
}

/// Page count from pdftotext's form feeds (one after every page).
fn page_count(text: &str) -> usize {
    text.matches('\u{c}').count()
}

fn assert_contains(text: &str, expected: &str) {
    assert!(
        text.contains(expected),
        "{expected:?} not in the extracted text:\n{text}"
    );
}

#[test]
fn a_pdf_reader_finds_the_invoice_content() {
    let doc = invoice();
    let pdf = render_pdf(&doc).expect("render");
    assert!(pdf.starts_with(b"%PDF-"));
    let text = pdftotext(&pdf, None);
    for expected in [
        "FACTURĂ",
        "FCT-2026-0042",
        "Data: 02.12.2026",
        "Scadență: 01.01.2027",
        "Furnizor",
        "Agroserv Distribuție SRL",
        "CIF: RO18547290",
        "Nr. Reg. Com.: J12/3456/2010",
        "Str. Memorandumului 28",
        "office@agroserv.ro",
        "RO49 AAAA 1B31 0075 9384 0000",
        "Client",
        "Șțefănescu Îngrășăminte SRL",
        "Calea Țării 14",
        "Moneda: RON",
        "ART-0001",
        "SEM-PORUMB-FAO380",
        "SRV-CONS",
        "Consultanță agronomică (ore)",
        "Discount",
        "10%",
        "Total fără TVA",
        "24.006,00 RON",
        "TVA 19% (bază 2.046,00 RON)",
        "388,74 RON",
        "TVA 9% (bază 21.960,00 RON)",
        "1.976,40 RON",
        "Total TVA",
        "2.365,14 RON",
        "Total de plată",
        "26.371,14 RON",
        "Termen de plată:",
        "30 de zile de la emitere",
        "01.01.2027 – 31.12.2027",
        "Observații",
        "Plata se face prin ordin de plată în contul de mai sus.",
        "Pagina 1 din 1",
    ] {
        assert_contains(&text, expected);
    }
    // Every word of the long description is printed, wrapped over several lines.
    assert_contains(&text, "Sămânță de porumb hibrid");
    assert_contains(&text, "beneficiarul");
    assert_eq!(page_count(&text), 1);
}

#[test]
fn romanian_diacritics_come_back_from_the_pdf_in_both_forms() {
    let mut doc = invoice();
    doc.customer.name = s("ȘȚĂÎÂ șțăîâ ŞŢ şţ");
    doc.notes = s("Bold și regular: ș ț ă î â Ș Ț Ă Î Â ş ţ Ş Ţ");
    let text = pdftotext(&render_pdf(&doc).expect("render"), None);
    assert_contains(&text, "ȘȚĂÎÂ șțăîâ ŞŢ şţ");
    assert_contains(&text, "Bold și regular: ș ț ă î â Ș Ț Ă Î Â ş ţ Ş Ţ");
}

#[test]
fn a_draft_prints_ciorna_and_every_kind_its_title() {
    for (kind, title) in [
        (RenderKind::Offer, "OFERTĂ"),
        (RenderKind::Order, "COMANDĂ"),
        (RenderKind::Contract, "CONTRACT"),
        (RenderKind::Invoice, "FACTURĂ"),
    ] {
        let mut doc = invoice();
        doc.kind = kind;
        doc.number = None;
        let text = pdftotext(&render_pdf(&doc).expect("render"), None);
        assert_contains(&text, title);
        assert_contains(&text, "CIORNĂ");
        assert!(!text.contains("FCT-2026-0042"));
    }
}

#[test]
fn two_hundred_lines_flow_over_pages_with_every_code_and_page_numbers() {
    let doc = many_lines(200);
    let pdf = render_pdf(&doc).expect("render");
    let text = pdftotext(&pdf, None);
    let pages = page_count(&text);
    assert!(pages >= 4, "{pages} pages");
    for position in 1..=200 {
        assert_contains(&text, &format!("ART-{position:04}"));
    }
    let first = pdftotext(&pdf, Some((1, 1)));
    assert_contains(&first, &format!("Pagina 1 din {pages}"));
    assert_contains(&first, "ART-0001");
    assert!(!first.contains("ART-0200"));
    let last = pdftotext(&pdf, Some((pages as u32, pages as u32)));
    assert_contains(&last, &format!("Pagina {pages} din {pages}"));
    assert_contains(&last, "ART-0200");
    assert_contains(&last, "26.371,14 RON");
    // The table header is repeated on every page.
    for page in 1..=pages as u32 {
        assert_contains(&pdftotext(&pdf, Some((page, page))), "Descriere");
    }
}

#[test]
fn five_hundred_lines_render() {
    let doc = many_lines(500);
    let pdf = render_pdf(&doc).expect("render");
    let text = pdftotext(&pdf, None);
    assert!(page_count(&text) >= 10, "{} pages", page_count(&text));
    assert_contains(&text, "ART-0500");
}

#[test]
fn the_same_model_gives_the_same_bytes() {
    let doc = invoice();
    let first = render_pdf(&doc).expect("render");
    // Another document in between, and another thread: no state may carry over.
    let mut other = doc.clone();
    other.totals.with_vat = s("26.371,15");
    let different = render_pdf(&other).expect("render");
    assert!(different != first, "a changed total gave the same bytes");
    let copy = doc.clone();
    let second = std::thread::spawn(move || render_pdf(&copy).expect("render"))
        .join()
        .expect("render thread");
    assert!(first == second, "two renderings of one model differ");
    assert!(
        first == render_pdf(&doc).expect("render"),
        "a third rendering differs"
    );
}

#[test]
fn hostile_content_renders_without_panicking() {
    let mut doc = invoice();
    let word = "Supercalifragilistic".repeat(40);
    doc.lines[0].description = word.clone();
    doc.lines[0].article_code = "X".repeat(300);
    doc.facts.push((s("Cuvânt"), word.clone()));
    doc.lines[1].description = s("emoji 😀🚜 and scripts 中文 العربية ∑ \u{0} \t tab");
    doc.lines[2] = RenderLine::default();
    doc.supplier = RenderParty::default();
    doc.customer.name = String::new();
    doc.notes = format!("{}\n{word}", "Observație lungă. ".repeat(3000));
    doc.facts.push((String::new(), String::new()));
    doc.dates.push((s("🚜"), s("\u{202e}inversat")));
    let pdf = render_pdf(&doc).expect("render");
    let text = pdftotext(&pdf, None);
    // The unbroken word in the notes (alone on its lines) is printed whole, broken over lines:
    // join the lines back.
    let joined: String = text.split_whitespace().collect();
    assert!(joined.contains(&word), "the long word was lost");
    assert_contains(&text, "Supercalifragilistic");
    assert!(page_count(&text) >= 5, "{} pages", page_count(&text));
}

#[test]
fn a_document_without_lines_says_so() {
    let mut doc = invoice();
    doc.lines.clear();
    doc.notes.clear();
    doc.facts.clear();
    let text = pdftotext(&render_pdf(&doc).expect("render"), None);
    assert_contains(&text, "Documentul nu are poziții.");
    assert_contains(&text, "Total de plată");
    assert!(!text.contains("Discount"));
    assert!(!text.contains("Observații"));
}

#[test]
fn html_has_the_same_content_and_escapes_every_text() {
    let mut doc = invoice();
    doc.lines[0].description = s("<script>alert('x')</script> Tom & Jerry \"quoted\"");
    doc.customer.name = s("Șțefănescu <b>Îngrășăminte</b> & Fiii SRL");
    doc.notes = s("Primul paragraf.\nAl doilea <i>paragraf</i>.");
    let html = render_html(&doc);
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains("<meta charset=\"utf-8\">"));
    assert!(!html.contains("<script>"));
    assert!(!html.contains("<b>Îngrășăminte"));
    assert!(!html.contains("<i>paragraf"));
    assert!(
        !html.contains("src=") && !html.contains("<link"),
        "not self-contained"
    );
    for expected in [
        "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; Tom &amp; Jerry &quot;quoted&quot;",
        "Șțefănescu &lt;b&gt;Îngrășăminte&lt;/b&gt; &amp; Fiii SRL",
        "<title>FACTURĂ Nr. FCT-2026-0042</title>",
        "Agroserv Distribuție SRL",
        "CIF: RO18547290",
        "Data: 02.12.2026",
        "SEM-PORUMB-FAO380",
        "Valoare fără TVA",
        "Discount",
        "Total de plată",
        "26.371,14 RON",
        "TVA 9% (bază 21.960,00 RON)",
        "01.01.2027 – 31.12.2027",
        "<p style=\"margin:0 0 8px 0;\">Primul paragraf.</p>",
        "Al doilea &lt;i&gt;paragraf&lt;/i&gt;.",
    ] {
        assert!(
            html.contains(expected),
            "{expected:?} not in the HTML:\n{html}"
        );
    }
    let mut draft = invoice();
    draft.number = None;
    draft.lines.clear();
    let html = render_html(&draft);
    assert!(html.contains("CIORNĂ"));
    assert!(html.contains("Documentul nu are poziții."));
}

fn any_text() -> impl Strategy<Value = String> {
    // Mostly short text of any character, sometimes long enough to wrap and break pages.
    prop_oneof![
        4 => any::<String>(),
        1 => "\\PC{0,400}",
        1 => "[a-zA-ZșțăîâȘȚĂÎÂ \n]{0,2000}",
    ]
}

fn any_party() -> impl Strategy<Value = RenderParty> {
    (
        any_text(),
        any_text(),
        any_text(),
        prop::collection::vec(any_text(), 0..4),
        any_text(),
        any_text(),
        any_text(),
    )
        .prop_map(
            |(
                name,
                fiscal_code,
                registration_number,
                address_lines,
                email,
                phone,
                bank_account,
            )| {
                RenderParty {
                    name,
                    fiscal_code,
                    registration_number,
                    address_lines,
                    email,
                    phone,
                    bank_account,
                }
            },
        )
}

fn any_line() -> impl Strategy<Value = RenderLine> {
    (any::<u32>(), prop::collection::vec(any_text(), 10)).prop_map(|(position, mut texts)| {
        let mut next = || texts.pop().unwrap_or_default();
        RenderLine {
            position,
            article_code: next(),
            description: next(),
            unit: next(),
            quantity: next(),
            unit_price: next(),
            discount: next(),
            vat_rate: next(),
            amount_without_vat: next(),
            vat_amount: next(),
            amount_with_vat: next(),
        }
    })
}

fn any_pairs() -> impl Strategy<Value = Vec<(String, String)>> {
    prop::collection::vec((any_text(), any_text()), 0..4)
}

fn any_model() -> impl Strategy<Value = RenderModel> {
    (
        prop_oneof![
            Just(RenderKind::Offer),
            Just(RenderKind::Order),
            Just(RenderKind::Contract),
            Just(RenderKind::Invoice),
        ],
        prop::option::of(any_text()),
        any_pairs(),
        any_party(),
        any_party(),
        any_text(),
        prop::collection::vec(any_line(), 0..12),
        (
            any_text(),
            any_text(),
            any_text(),
            prop::collection::vec((any_text(), any_text(), any_text()), 0..4),
        ),
        any_text(),
        any_pairs(),
    )
        .prop_map(
            |(kind, number, dates, supplier, customer, currency, lines, totals, notes, facts)| {
                let (without_vat, vat, with_vat, vat_breakdown) = totals;
                RenderModel {
                    kind,
                    number,
                    dates,
                    supplier,
                    customer,
                    currency,
                    lines,
                    totals: RenderTotals {
                        without_vat,
                        vat,
                        with_vat,
                        vat_breakdown,
                    },
                    notes,
                    facts,
                }
            },
        )
}

proptest! {
    // Each case writes a whole PDF; 48 cases keep a debug test run within seconds.
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn any_model_renders_a_pdf_and_escaped_html(doc in any_model()) {
        let pdf = render_pdf(&doc).expect("render");
        prop_assert!(pdf.starts_with(b"%PDF-"));
        prop_assert!(pdf.ends_with(b"%%EOF") || pdf.ends_with(b"%%EOF\n"));
        let html = render_html(&doc);
        prop_assert!(html.starts_with("<!DOCTYPE html>"));
        // Only the renderer's own markup: every '<' from the model was escaped.
        let tags = html.matches('<').count();
        let own = render_html(&strip_markup(&doc)).matches('<').count();
        prop_assert_eq!(tags, own);
    }
}

/// `doc` with every '<' replaced by a letter (so no text turns blank), for comparing the
/// markup count.
fn strip_markup(doc: &RenderModel) -> RenderModel {
    let clean = |text: &String| text.replace('<', "x");
    let pairs = |pairs: &Vec<(String, String)>| {
        pairs
            .iter()
            .map(|(a, b)| (clean(a), clean(b)))
            .collect::<Vec<_>>()
    };
    let party = |party: &RenderParty| RenderParty {
        name: clean(&party.name),
        fiscal_code: clean(&party.fiscal_code),
        registration_number: clean(&party.registration_number),
        address_lines: party.address_lines.iter().map(clean).collect(),
        email: clean(&party.email),
        phone: clean(&party.phone),
        bank_account: clean(&party.bank_account),
    };
    RenderModel {
        kind: doc.kind,
        number: doc.number.as_ref().map(clean),
        dates: pairs(&doc.dates),
        supplier: party(&doc.supplier),
        customer: party(&doc.customer),
        currency: clean(&doc.currency),
        lines: doc
            .lines
            .iter()
            .map(|line| RenderLine {
                position: line.position,
                article_code: clean(&line.article_code),
                description: clean(&line.description),
                unit: clean(&line.unit),
                quantity: clean(&line.quantity),
                unit_price: clean(&line.unit_price),
                discount: clean(&line.discount),
                vat_rate: clean(&line.vat_rate),
                amount_without_vat: clean(&line.amount_without_vat),
                vat_amount: clean(&line.vat_amount),
                amount_with_vat: clean(&line.amount_with_vat),
            })
            .collect(),
        totals: RenderTotals {
            without_vat: clean(&doc.totals.without_vat),
            vat: clean(&doc.totals.vat),
            with_vat: clean(&doc.totals.with_vat),
            vat_breakdown: doc
                .totals
                .vat_breakdown
                .iter()
                .map(|(a, b, c)| (clean(a), clean(b), clean(c)))
                .collect(),
        },
        notes: clean(&doc.notes),
        facts: pairs(&doc.facts),
    }
}
