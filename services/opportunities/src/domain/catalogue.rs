//! Reference records: articles (O7), lost reasons (O5), number series (O6), the partners and
//! campaigns this service has heard of, and file attachments.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::money::Money;

/// A product or service of the catalogue (O7).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Article {
    /// Its id.
    pub id: Uuid,
    /// Unique code.
    pub code: String,
    /// Name.
    pub name: String,
    /// Unit of measure.
    pub unit: String,
    /// List price per unit without VAT.
    pub price: Money,
    /// VAT rate in basis points.
    pub vat_rate_bp: i32,
    /// A service (may be covered by contracts) rather than a product.
    pub is_service: bool,
    /// Longer description.
    pub description: String,
    /// Pictures (sent with documents on request, N2).
    pub pictures: Vec<Attachment>,
    /// Whether it may be put on new lines.
    pub active: bool,
    /// Audit: created.
    pub create_time: DateTime<Utc>,
    /// Audit: last changed.
    pub update_time: DateTime<Utc>,
    /// Version behind the etag.
    pub version: i64,
}

/// Checks an article code: 1..=50 letters, digits, "-", "_" and ".".
pub fn check_article_code(code: &str) -> Result<(), String> {
    if code.is_empty() {
        return Err("is required".into());
    }
    if code.chars().count() > 50 {
        return Err("must be at most 50 characters".into());
    }
    if code
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        Ok(())
    } else {
        Err(format!(
            "{code:?} may hold only letters, digits, \"-\", \"_\" and \".\""
        ))
    }
}

pub use crm_platform::files::{Attachment, check_blob_key, check_file_name};

/// A reason template for losing an opportunity (O5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LostReason {
    /// Its id.
    pub id: Uuid,
    /// Unique name.
    pub name: String,
    /// Longer explanation.
    pub description: String,
    /// Whether it can be chosen.
    pub active: bool,
    /// Position in pick lists.
    pub sort_order: i32,
    /// Audit: created.
    pub create_time: DateTime<Utc>,
    /// Audit: last changed.
    pub update_time: DateTime<Utc>,
    /// Version behind the etag.
    pub version: i64,
}

/// The kinds of numbered document.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DocKind {
    /// A customer offer or a service estimate.
    Offer,
    /// A customer order.
    Order,
    /// A contract.
    Contract,
    /// An invoice.
    Invoice,
}

impl DocKind {
    /// The name in the database (and in events and history).
    pub fn as_db(self) -> &'static str {
        match self {
            DocKind::Offer => "offer",
            DocKind::Order => "order",
            DocKind::Contract => "contract",
            DocKind::Invoice => "invoice",
        }
    }

    /// The kind of a database name.
    pub fn from_db(name: &str) -> Option<Self> {
        [
            DocKind::Offer,
            DocKind::Order,
            DocKind::Contract,
            DocKind::Invoice,
        ]
        .into_iter()
        .find(|k| k.as_db() == name)
    }
}

/// A number series (O6).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NumberSeries {
    /// Its id.
    pub id: Uuid,
    /// Kind of document numbered.
    pub document_kind: DocKind,
    /// Prefix.
    pub prefix: String,
    /// The counter.
    pub counter: super::numbering::Counter,
    /// Minimum digits.
    pub min_digits: i32,
    /// The series used when a document names none.
    pub is_default: bool,
    /// Whether new documents may use it.
    pub active: bool,
    /// Audit: created.
    pub create_time: DateTime<Utc>,
    /// Audit: last changed.
    pub update_time: DateTime<Utc>,
    /// Version behind the etag.
    pub version: i64,
}

/// What this service knows of a partner: what documents print (the customer block) and what
/// creates check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartnerCard {
    /// Its id.
    pub id: Uuid,
    /// "lead", "customer" or "competitor".
    pub kind: String,
    /// Name.
    pub name: String,
    /// Fiscal code.
    pub fiscal_code: String,
    /// The head office's address, one line each.
    pub address_lines: Vec<String>,
    /// Email of the head office.
    pub email: String,
    /// Phone of the head office.
    pub phone: String,
    /// Whether it was archived.
    pub archived: bool,
    /// Its version in marketing.
    pub source_version: i64,
}

impl PartnerCard {
    /// Whether opportunities and documents may be made for it: a lead or a customer, not
    /// archived.
    pub fn check_usable(&self) -> Result<(), String> {
        if self.kind == "competitor" {
            return Err(
                "is a competitor: opportunities and documents are for leads and customers".into(),
            );
        }
        if self.archived {
            return Err("is archived".into());
        }
        Ok(())
    }
}

/// What this service knows of a campaign.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Campaign {
    /// Its id.
    pub id: Uuid,
    /// Name (empty while unconfirmed).
    pub name: String,
    /// Validity.
    pub start_date: Option<NaiveDate>,
    /// Validity.
    pub end_date: Option<NaiveDate>,
    /// Whether its event was seen (false: only named by marketing's call so far).
    pub confirmed: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_keys_and_names_are_checked() {
        assert!(check_article_code("SRV-01.a_b").is_ok());
        assert!(check_article_code("").is_err());
        assert!(check_article_code("A B").is_err());
        assert!(check_blob_key(&"a".repeat(64)).is_ok());
        assert!(check_blob_key(&"A".repeat(64)).is_err());
        assert!(check_file_name("oferta-2026.pdf").is_ok());
        assert!(check_file_name("../etc/passwd").is_err());
        assert!(check_file_name("a\nb").is_err());
    }

    #[test]
    fn competitors_and_archived_partners_get_no_documents() {
        let mut card = PartnerCard {
            id: Uuid::now_v7(),
            kind: "customer".into(),
            name: "Agroserv".into(),
            fiscal_code: String::new(),
            address_lines: vec![],
            email: String::new(),
            phone: String::new(),
            archived: false,
            source_version: 1,
        };
        assert!(card.check_usable().is_ok());
        card.kind = "competitor".into();
        assert!(card.check_usable().is_err());
        card.kind = "lead".into();
        card.archived = true;
        assert!(card.check_usable().is_err());
    }
}
