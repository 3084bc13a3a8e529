//! What the four document services share: parsing and resolving lines against the article
//! catalogue, the header fields, the opportunity a document comes from, the customer's details
//! frozen at issue, and numbers.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, NaiveDate, Utc};
use crm_platform::values::{date_to_proto, etag_of, timestamp};
use crm_proto::{common, opportunities as pb};
use sqlx::PgConnection;
use uuid::Uuid;

use crm_platform::auth::Caller;

use super::MoneyFields as _;
use super::{Fields, OpportunitiesApi, convert};
use crate::{
    domain::{
        catalogue::{Attachment, DocKind, PartnerCard},
        documents::DocHeader,
        lines::{Line, LineValues, MAX_LINES, MAX_UNIT_PRICE, Totals},
        money::{Currency, Money},
        stages::Stage,
    },
    error::{OpportunitiesError, Result},
    store,
};
use crm_platform::files::parse_attachments as attachments;

/// Most attachments of a document.
pub(crate) const MAX_ATTACHMENTS: usize = 50;

/// A line as asked for, before the article fills in what it leaves out.
#[derive(Clone, Debug)]
pub(crate) struct LineRequest {
    id: Option<Uuid>,
    article_id: Uuid,
    description: String,
    unit: String,
    quantity_milli: i64,
    unit_price: Option<Money>,
    vat_rate_bp: Option<i32>,
    discount_bp: i32,
    pub(crate) source_line_id: Option<Uuid>,
}

impl LineRequest {
    /// A copy of a stored line (of another document), remembering where it came from.
    pub(crate) fn copy_of(line: &Line, currency: &Currency, quantity_milli: i64) -> Self {
        Self {
            id: None,
            article_id: line.article_id,
            description: line.description.clone(),
            unit: line.unit.clone(),
            quantity_milli,
            unit_price: Some(Money::new(line.values.unit_price, currency.clone())),
            vat_rate_bp: Some(line.values.vat_rate_bp),
            discount_bp: line.values.discount_bp,
            source_line_id: Some(line.id),
        }
    }
}

/// Parses the lines of a request (`field` is "offer.lines").
pub(crate) fn parse_lines(
    f: &mut Fields,
    field: &str,
    lines: &[pb::DocumentLine],
) -> Option<Vec<LineRequest>> {
    if lines.len() > MAX_LINES {
        f.add(field, format!("must hold at most {MAX_LINES} lines"));
        return None;
    }
    let mut out = Vec::with_capacity(lines.len());
    let mut ok = true;
    for (i, l) in lines.iter().enumerate() {
        let at = format!("{field}[{i}]");
        let id = f.optional_id(&format!("{at}.id"), &l.id);
        let article_id = f.id(&format!("{at}.article_id"), &l.article_id);
        let description = f.text(&format!("{at}.description"), &l.description, 500, false);
        let unit = f.text(&format!("{at}.unit"), &l.unit, 20, false);
        let price = f.money(
            &format!("{at}.unit_price"),
            l.unit_price.as_ref(),
            MAX_UNIT_PRICE,
        );
        let source = f.optional_id(&format!("{at}.source_line_id"), &l.source_line_id);
        let values = LineValues {
            quantity_milli: l.quantity_milli,
            unit_price: 0,
            vat_rate_bp: l.vat_rate_bp.unwrap_or(0),
            discount_bp: l.discount_bp,
        };
        for (name, reason) in values.check() {
            if name != "unit_price" {
                f.add(format!("{at}.{name}"), reason);
                ok = false;
            }
        }
        match (id, article_id, description, unit, price, source) {
            (
                Some(id),
                Some(article_id),
                Some(description),
                Some(unit),
                Some(price),
                Some(source),
            ) => {
                out.push(LineRequest {
                    id,
                    article_id,
                    description,
                    unit,
                    quantity_milli: l.quantity_milli,
                    unit_price: price,
                    vat_rate_bp: l.vat_rate_bp,
                    discount_bp: l.discount_bp,
                    source_line_id: source,
                });
            }
            _ => ok = false,
        }
    }
    ok.then_some(out)
}

impl OpportunitiesApi {
    /// Turns requested lines into stored lines: the article gives the code and what a line
    /// leaves out (description, unit, price, VAT rate); prices must be in the document's
    /// currency; a new line (or one whose article changed) needs an active article; a line
    /// keeps its id when it has one of `existing`. Violations are named under `field`.
    pub(crate) async fn resolve_lines(
        &self,
        conn: &mut PgConnection,
        field: &str,
        requests: Vec<LineRequest>,
        currency: &Currency,
        existing: &[Line],
    ) -> Result<Vec<Line>> {
        let ids: Vec<Uuid> = requests
            .iter()
            .map(|r| r.article_id)
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let articles: HashMap<Uuid, _> = store::articles::get_many(conn, &ids)
            .await?
            .into_iter()
            .map(|a| (a.id, a))
            .collect();
        let known: HashMap<Uuid, &Line> = existing.iter().map(|l| (l.id, l)).collect();
        let mut f = Fields::new();
        let mut lines = Vec::with_capacity(requests.len());
        let mut seen = HashSet::new();
        for (i, r) in requests.into_iter().enumerate() {
            let at = format!("{field}[{i}]");
            let Some(article) = articles.get(&r.article_id) else {
                f.add(format!("{at}.article_id"), "no such article");
                continue;
            };
            let previous = r.id.and_then(|id| known.get(&id).copied());
            if let Some(id) = r.id {
                if previous.is_none() {
                    f.add(
                        format!("{at}.id"),
                        "is not a line of this document: leave it empty for a new line",
                    );
                    continue;
                }
                if !seen.insert(id) {
                    f.add(format!("{at}.id"), "appears twice");
                    continue;
                }
            }
            let article_unchanged = previous.is_some_and(|p| p.article_id == article.id);
            if !article.active && !article_unchanged {
                f.add(format!("{at}.article_id"), "is an inactive article");
                continue;
            }
            let unit_price = match r.unit_price {
                Some(price) if price.currency != *currency => {
                    f.add(
                        format!("{at}.unit_price.currency_code"),
                        format!("must be the document's currency, {currency}"),
                    );
                    continue;
                }
                Some(price) => price.units,
                None if article.price.currency != *currency => {
                    f.add(
                        format!("{at}.unit_price"),
                        format!(
                            "is required: the article's price is in {}, the document in {currency}",
                            article.price.currency
                        ),
                    );
                    continue;
                }
                None => article.price.units,
            };
            let values = LineValues {
                quantity_milli: r.quantity_milli,
                unit_price,
                vat_rate_bp: r.vat_rate_bp.unwrap_or(article.vat_rate_bp),
                discount_bp: r.discount_bp,
            };
            let amounts = match values.amounts() {
                Ok(amounts) => amounts,
                Err(reason) => {
                    f.add(format!("{at}.quantity_milli"), reason);
                    continue;
                }
            };
            lines.push(Line {
                id: r.id.unwrap_or_else(Uuid::now_v7),
                article_id: article.id,
                article_code: article.code.clone(),
                description: if r.description.is_empty() {
                    article.name.clone()
                } else {
                    r.description
                },
                unit: if r.unit.is_empty() {
                    article.unit.clone()
                } else {
                    r.unit
                },
                values,
                amounts,
                source_line_id: r.source_line_id,
            });
        }
        if f.is_empty()
            && let Err(reason) = Totals::of_lines(&lines)
        {
            f.add(
                field,
                format!("the document's total does not fit: {reason}"),
            );
        }
        f.finish()?;
        Ok(lines)
    }

    /// The open opportunity a document is made from, in one of `stages` (offers from OFFER on,
    /// orders and contracts from NEGOTIATION); FAILED_PRECONDITION otherwise.
    pub(crate) async fn origin(
        &self,
        conn: &mut PgConnection,
        opportunity_id: Uuid,
        field: &str,
        stages: &[Stage],
        what: &str,
    ) -> Result<crate::domain::opportunity::Opportunity> {
        let opportunity = store::opportunities::get(conn, opportunity_id, false)
            .await?
            .ok_or_else(|| OpportunitiesError::invalid(field, "no such opportunity"))?;
        if !stages.contains(&opportunity.stage) {
            let names: Vec<&str> = stages.iter().map(|s| s.as_db()).collect();
            return Err(OpportunitiesError::precondition(format!(
                "{what} is made from an open opportunity at stage {}; this one is at {}",
                names.join(" or "),
                opportunity.stage.as_db()
            )));
        }
        Ok(opportunity)
    }

    /// The customer's details to freeze on a document being issued. The directory is asked,
    /// and marketing when the directory has not heard of the partner.
    pub(crate) async fn customer(&self, partner_id: Uuid) -> Result<PartnerCard> {
        self.partners.find(partner_id).await?.ok_or_else(|| {
            OpportunitiesError::precondition(format!(
                "partner {partner_id} of the document no longer exists"
            ))
        })
    }

    /// The customer's details of the document `id` of `kind` (NOT_FOUND when there is no such
    /// document), looked up before a transaction locks rows: marketing may be asked.
    pub(crate) async fn customer_of(&self, kind: DocKind, id: Uuid) -> Result<PartnerCard> {
        let mut conn = self.pool.acquire().await?;
        let partner_id = match kind {
            DocKind::Offer => store::offers::partner_of(&mut conn, id).await?,
            DocKind::Order => store::orders::partner_of(&mut conn, id).await?,
            DocKind::Contract => store::contracts::partner_of(&mut conn, id).await?,
            DocKind::Invoice => store::invoices::partner_of(&mut conn, id).await?,
        }
        .ok_or_else(|| OpportunitiesError::not_found(kind.as_db(), id))?;
        drop(conn);
        self.customer(partner_id).await
    }

    /// Takes the next number of the document's series (or the kind's default), on the company
    /// day `day`, in the issuing transaction.
    pub(crate) async fn take_number(
        &self,
        tx: &mut PgConnection,
        kind: DocKind,
        series_id: Option<Uuid>,
        day: NaiveDate,
    ) -> Result<(Uuid, String)> {
        use chrono::Datelike as _;
        store::series::take_number(tx, kind, series_id, day.year())
            .await
            .map_err(|err| match err {
                store::series::TakeError::Unusable(reason) => {
                    OpportunitiesError::precondition(reason)
                }
                store::series::TakeError::Database(err) => err.into(),
            })
    }
}

impl OpportunitiesApi {
    /// Checks the attachments `given` under `field` (e.g. "offer.attachments") against those
    /// the record has (`known`): a new one must carry the upload token that proves `caller`
    /// uploaded it. Returns the blob keys of the new ones, for `FilesAttached`.
    pub(crate) fn new_uploads(
        &self,
        caller: &Caller,
        field: &str,
        given: &[common::AttachmentRef],
        known: &[Attachment],
    ) -> Result<Vec<String>> {
        Ok(crm_platform::files::new_uploads(
            &self.uploads,
            &caller.subject,
            field,
            given,
            known,
            self.clock.now(),
        )?)
    }

    /// Publishes `FilesAttached` for the new uploads `blob_keys` on `owner`, in `tx`, so the
    /// file service never collects them.
    pub(crate) async fn files_attached(
        &self,
        tx: &mut PgConnection,
        owner: common::DocumentRef,
        blob_keys: Vec<String>,
        actor: &str,
    ) -> Result<()> {
        if blob_keys.is_empty() {
            return Ok(());
        }
        self.events
            .publish_unattached(
                tx,
                actor,
                &crm_proto::events::FilesAttached {
                    owner: Some(owner),
                    blob_keys,
                },
                self.clock.now(),
            )
            .await?;
        Ok(())
    }
}

/// A reference to record `id` of `kind`.
pub(crate) fn owner_ref(kind: common::DocumentKind, id: Uuid) -> common::DocumentRef {
    common::DocumentRef {
        kind: kind as i32,
        id: id.to_string(),
        number: String::new(),
    }
}

/// The header fields every create request has.
pub(crate) struct HeaderRequest {
    pub(crate) series_id: Option<Uuid>,
    pub(crate) partner_id: Option<Uuid>,
    pub(crate) opportunity_id: Option<Uuid>,
    pub(crate) campaign_id: Option<Uuid>,
    pub(crate) currency: Currency,
    pub(crate) notes: String,
    pub(crate) attachments: Vec<Attachment>,
    pub(crate) lines: Vec<LineRequest>,
}

/// The raw header fields of a document message.
pub(crate) struct HeaderFields<'a> {
    pub(crate) series_id: &'a str,
    pub(crate) partner_id: &'a str,
    pub(crate) opportunity_id: &'a str,
    pub(crate) campaign_id: &'a str,
    pub(crate) currency_code: &'a str,
    pub(crate) notes: &'a str,
    pub(crate) notes_max: usize,
    pub(crate) attachments: &'a [common::AttachmentRef],
    pub(crate) lines: &'a [pb::DocumentLine],
}

/// Parses the header fields of a document under `at` ("offer").
pub(crate) fn parse_header(
    f: &mut Fields,
    at: &str,
    h: &HeaderFields<'_>,
) -> Option<HeaderRequest> {
    let series_id = f.optional_id(&format!("{at}.series_id"), h.series_id);
    let partner_id = f.optional_id(&format!("{at}.partner_id"), h.partner_id);
    let opportunity_id = f.optional_id(&format!("{at}.opportunity_id"), h.opportunity_id);
    let campaign_id = f.optional_id(&format!("{at}.campaign_id"), h.campaign_id);
    let currency = f.currency(&format!("{at}.currency_code"), h.currency_code);
    let notes = f.text(&format!("{at}.notes"), h.notes, h.notes_max, false);
    let attachments = attachments(
        f,
        &format!("{at}.attachments"),
        h.attachments,
        MAX_ATTACHMENTS,
        false,
    );
    let lines = parse_lines(f, &format!("{at}.lines"), h.lines);
    Some(HeaderRequest {
        series_id: series_id?,
        partner_id: partner_id?,
        opportunity_id: opportunity_id?,
        campaign_id: campaign_id?,
        currency: currency?,
        notes: notes?,
        attachments: attachments?,
        lines: lines?,
    })
}

/// A new draft's header.
pub(crate) fn new_header(
    partner_id: Uuid,
    currency: Currency,
    who: &str,
    at: DateTime<Utc>,
) -> DocHeader {
    DocHeader {
        id: Uuid::now_v7(),
        number: None,
        series_id: None,
        partner_id,
        opportunity_id: None,
        campaign_id: None,
        currency,
        lines: Vec::new(),
        notes: String::new(),
        attachments: Vec::new(),
        customer: None,
        create_time: at,
        update_time: at,
        creator: who.to_owned(),
        updater: who.to_owned(),
        version: 1,
    }
}

/// The proto fields every document message has, computed from its header.
pub(crate) struct HeaderProto {
    pub(crate) id: String,
    pub(crate) number: String,
    pub(crate) series_id: String,
    pub(crate) partner_id: String,
    pub(crate) opportunity_id: String,
    pub(crate) campaign_id: String,
    pub(crate) currency_code: String,
    pub(crate) lines: Vec<pb::DocumentLine>,
    pub(crate) totals: Option<pb::DocumentTotals>,
    pub(crate) notes: String,
    pub(crate) attachments: Vec<common::AttachmentRef>,
    pub(crate) create_time: Option<prost_types::Timestamp>,
    pub(crate) update_time: Option<prost_types::Timestamp>,
    pub(crate) creator: String,
    pub(crate) etag: String,
}

/// The proto fields of a header.
pub(crate) fn header_proto(d: &DocHeader) -> HeaderProto {
    let id_text = |id: Option<Uuid>| id.map(|id| id.to_string()).unwrap_or_default();
    HeaderProto {
        id: d.id.to_string(),
        number: d.number.clone().unwrap_or_default(),
        series_id: id_text(d.series_id),
        partner_id: d.partner_id.to_string(),
        opportunity_id: id_text(d.opportunity_id),
        campaign_id: id_text(d.campaign_id),
        currency_code: d.currency.as_str().to_owned(),
        lines: d
            .lines
            .iter()
            .map(|l| convert::line(l, &d.currency))
            .collect(),
        totals: Some(convert::totals(&d.totals(), &d.currency)),
        notes: d.notes.clone(),
        attachments: d.attachments.iter().map(convert::attachment).collect(),
        create_time: Some(timestamp(d.create_time)),
        update_time: Some(timestamp(d.update_time)),
        creator: d.creator.clone(),
        etag: etag_of(d.version),
    }
}

/// An optional id as proto text.
pub(crate) fn id_text(id: Option<Uuid>) -> String {
    id.map(|id| id.to_string()).unwrap_or_default()
}

/// An optional date as the proto message.
pub(crate) fn date(day: Option<NaiveDate>) -> Option<common::Date> {
    day.map(date_to_proto)
}

/// Keeps the header paths of an update mask common to every document: "lines", "notes",
/// "attachments", "series_id", "currency_code", "campaign_id".
pub(crate) struct HeaderChanges {
    pub(crate) lines: Option<Vec<LineRequest>>,
    pub(crate) notes: Option<String>,
    pub(crate) attachments: Option<Vec<Attachment>>,
    pub(crate) series_id: Option<Option<Uuid>>,
    pub(crate) currency: Option<Currency>,
    pub(crate) campaign_id: Option<Option<Uuid>>,
}

/// Parses the masked header fields of an update under `at`.
pub(crate) fn parse_header_changes(
    f: &mut Fields,
    at: &str,
    paths: &[String],
    h: &HeaderFields<'_>,
) -> HeaderChanges {
    let has = |name: &str| paths.iter().any(|p| p == name);
    HeaderChanges {
        lines: if has("lines") {
            parse_lines(f, &format!("{at}.lines"), h.lines)
        } else {
            None
        },
        notes: if has("notes") {
            f.text(&format!("{at}.notes"), h.notes, h.notes_max, false)
        } else {
            None
        },
        attachments: if has("attachments") {
            attachments(
                f,
                &format!("{at}.attachments"),
                h.attachments,
                MAX_ATTACHMENTS,
                false,
            )
        } else {
            None
        },
        series_id: if has("series_id") {
            f.optional_id(&format!("{at}.series_id"), h.series_id)
        } else {
            None
        },
        currency: if has("currency_code") {
            f.currency(&format!("{at}.currency_code"), h.currency_code)
        } else {
            None
        },
        campaign_id: if has("campaign_id") {
            f.optional_id(&format!("{at}.campaign_id"), h.campaign_id)
        } else {
            None
        },
    }
}

impl OpportunitiesApi {
    /// Applies header changes to a draft `doc` (lines resolved against the catalogue); returns
    /// whether its lines changed.
    pub(crate) async fn apply_header_changes(
        &self,
        conn: &mut PgConnection,
        at: &str,
        doc: &mut DocHeader,
        changes: HeaderChanges,
    ) -> Result<bool> {
        if let Some(notes) = changes.notes {
            doc.notes = notes;
        }
        if let Some(attachments) = changes.attachments {
            doc.attachments = attachments;
        }
        if let Some(series) = changes.series_id {
            doc.series_id = series;
        }
        if let Some(campaign) = changes.campaign_id {
            doc.campaign_id = campaign;
        }
        let currency_changed = changes
            .currency
            .as_ref()
            .is_some_and(|c| *c != doc.currency);
        if let Some(currency) = changes.currency {
            doc.currency = currency;
        }
        match changes.lines {
            Some(requests) => {
                let existing = doc.lines.clone();
                doc.lines = self
                    .resolve_lines(
                        conn,
                        &format!("{at}.lines"),
                        requests,
                        &doc.currency,
                        &existing,
                    )
                    .await?;
                Ok(true)
            }
            None if currency_changed && !doc.lines.is_empty() => Err(OpportunitiesError::invalid(
                format!("{at}.currency_code"),
                "changes only together with the lines (their prices are in the old currency)",
            )),
            None => Ok(false),
        }
    }
}
