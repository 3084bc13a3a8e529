//! Renders a sales document (offer, order, contract, invoice) as an A4 PDF and as an HTML page.
//!
//! The caller formats every value (money, dates, quantities) in Romanian conventions before it
//! gets here: this module only lays text out, so the PDF, the HTML and the cache key built from
//! the model all agree on what is printed.
//!
//! # PDF writer
//! [`render_pdf`] uses [`krilla`] 0.8 (MIT OR Apache-2.0): a maintained, high-level PDF writer
//! that shapes text with rustybuzz, embeds only the glyphs used (font subsetting) and writes a
//! ToUnicode map, so `pdftotext` and screen readers get the Romanian text back, diacritics
//! included. printpdf was the alternative; krilla was chosen because it needs no text-layout
//! stack of its own (no fontconfig, no HTML engine) and its output is a pure function of the
//! input: the file ID is a hash of the content and no date is written unless one is given. That
//! determinism matters because the service caches renderings by the model's content hash.
//!
//! # Font
//! Liberation Sans 2.1.5, regular and bold (SIL Open Font License 1.1, see
//! `assets/fonts/OFL-1.1.txt`), compiled in with `include_bytes!` (about 800 KB). It covers
//! ș ț ă î â Ș Ț Ă Î Â and the legacy cedilla forms ş ţ Ş Ţ; characters it lacks (emoji, most
//! non-Latin scripts) print as its empty-box glyph instead of failing.
//!
//! # Layout
//! Pages are laid out first (see `layout`), then written, so every page can say
//! "Pagina 1 din 3". Long cells wrap inside their column, words longer than a column are broken
//! between characters, a row taller than a page is split across pages, and the table header is
//! repeated on each page the table reaches. Runs of spaces inside a text are printed as one.
//!
//! # Build and tests
//! The root `Cargo.toml` builds rustybuzz, ttf-parser, krilla, subsetter, skrifa, read-fonts
//! and miniz_oxide with `opt-level = 2` even in debug builds: unoptimized, shaping and subsetting
//! made a 500-line document take 9 s in a debug test instead of 0.15 s. The tests in
//! `tests/render.rs` read the PDFs back with poppler's `pdftotext` (Debian `poppler-utils`).

mod content;
mod html;
mod layout;
mod pdf;
mod text;

pub use html::render_html;
pub use pdf::render_pdf;

/// Which document this is; decides the title.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RenderKind {
    /// A commercial offer ("OFERTĂ").
    Offer,
    /// A customer order ("COMANDĂ").
    Order,
    /// A sales contract ("CONTRACT").
    Contract,
    /// An invoice ("FACTURĂ").
    Invoice,
}

impl RenderKind {
    /// The Romanian title printed at the top of the document, e.g. "FACTURĂ".
    pub fn title(self) -> &'static str {
        match self {
            Self::Offer => "OFERTĂ",
            Self::Order => "COMANDĂ",
            Self::Contract => "CONTRACT",
            Self::Invoice => "FACTURĂ",
        }
    }
}

/// Everything printed on a document, already formatted as text (money, dates, quantities are
/// formatted by the caller in Romanian conventions, e.g. "1.234,56", "02.12.2026", "1,5").
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RenderModel {
    /// Which document this is; decides the title.
    pub kind: RenderKind,
    /// Document number, e.g. "FCT-2026-0042"; None for a draft (printed as "CIORNĂ").
    pub number: Option<String>,
    /// Labelled dates under the title, in order, e.g. [("Data", "02.12.2026"), ("Scadență", "01.01.2027")].
    pub dates: Vec<(String, String)>,
    /// The company issuing the document.
    pub supplier: RenderParty,
    /// The customer.
    pub customer: RenderParty,
    /// ISO currency code of every amount, e.g. "RON".
    pub currency: String,
    /// The document's lines, in the order they are printed.
    pub lines: Vec<RenderLine>,
    /// The document's totals.
    pub totals: RenderTotals,
    /// Free text, may hold several paragraphs separated by "\n".
    pub notes: String,
    /// Extra labelled facts printed after the totals, e.g. [("Valabilitate", "01.01.2027 – 31.12.2027")].
    pub facts: Vec<(String, String)>,
}

/// A party to the document: the supplier (the company) or the customer. Empty fields are left
/// out of the printout.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct RenderParty {
    /// Legal name, e.g. "Agroserv SRL".
    pub name: String,
    /// Fiscal code (CIF/CUI), e.g. "RO18547290".
    pub fiscal_code: String,
    /// Trade register number, e.g. "J12/3456/2010".
    pub registration_number: String,
    /// Address lines, e.g. ["Str. Memorandumului 28", "Cluj-Napoca, Cluj", "România"].
    pub address_lines: Vec<String>,
    /// Contact e-mail address.
    pub email: String,
    /// Contact phone number.
    pub phone: String,
    /// Bank account (IBAN, optionally with the bank's name); empty when not given.
    pub bank_account: String,
}

/// One line of the document's table.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct RenderLine {
    /// 1-based position.
    pub position: u32,
    /// The article's code, e.g. "ART-0001".
    pub article_code: String,
    /// What is sold; long descriptions wrap, "\n" starts a new line.
    pub description: String,
    /// Unit of measure, e.g. "buc", "kg", "oră".
    pub unit: String,
    /// Quantity, e.g. "1,5".
    pub quantity: String,
    /// Price of one unit without VAT, e.g. "1.234,56".
    pub unit_price: String,
    /// e.g. "10%"; empty when no discount.
    pub discount: String,
    /// e.g. "19%".
    pub vat_rate: String,
    /// Line value without VAT.
    pub amount_without_vat: String,
    /// The line's VAT.
    pub vat_amount: String,
    /// Line value with VAT.
    pub amount_with_vat: String,
}

/// The document's totals.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct RenderTotals {
    /// Sum of the lines without VAT.
    pub without_vat: String,
    /// Sum of the VAT of every rate.
    pub vat: String,
    /// What the customer pays: without VAT plus VAT.
    pub with_vat: String,
    /// One entry per VAT rate: (rate "19%", taxable amount, VAT amount).
    pub vat_breakdown: Vec<(String, String, String)>,
}

/// What can go wrong while rendering. The model itself cannot make rendering fail: any text,
/// however long or exotic, is printed (characters the font lacks as a fallback glyph).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// A font compiled into the binary could not be parsed.
    #[error("the font {0} could not be loaded")]
    Font(&'static str),
    /// The PDF writer refused the document (its message).
    #[error("the PDF could not be written: {0}")]
    Pdf(String),
}

impl From<krilla::error::KrillaError> for RenderError {
    fn from(error: krilla::error::KrillaError) -> Self {
        // Only the message: callers should not depend on the PDF crate's error type.
        Self::Pdf(error.to_string())
    }
}
