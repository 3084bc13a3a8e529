//! `DocumentRenderService`: an offer, order, contract or invoice as a PDF or an HTML page in
//! the blob store (O6, N2). A document version is rendered once per format: the rendering is
//! recorded by (document, version, format) and the same version answers with the same blob.

use bytes::Bytes;
use chrono::NaiveDate;
use crm_platform::{
    auth::Caller,
    values::{timestamp, version_of},
};
use crm_proto::{
    common,
    opportunities::{self as pb, document_render_service_server::DocumentRenderService},
};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::{
    DOCUMENT_ROLES, Fields, OpportunitiesApi, caller, convert,
    number_series::{doc_kind, doc_kind_from},
};
use crate::{
    domain::{
        catalogue::{Attachment, DocKind, PartnerCard},
        documents::{ContractKind, DocHeader, OfferPurpose},
        lines::Line,
        money::format_ro,
    },
    error::{OpportunitiesError, Result},
    render::{
        RenderKind, RenderLine, RenderModel, RenderParty, RenderTotals, render_html, render_pdf,
    },
    store::{self, renderings::Rendering},
};

/// Roles that may render: sales roles, and `service` (notifications, and users of the service
/// role for the documents they may read: estimates, task invoices, contracts).
const READERS: &[&str] = &["sales", "manager", "service"];
/// Largest rendering returned inline.
const MAX_INLINE: usize = 4 * 1024 * 1024;

/// A document loaded for rendering: its header and what only its kind prints.
struct Printable {
    kind: DocKind,
    header: DocHeader,
    /// Labelled dates under the title.
    dates: Vec<(String, String)>,
    /// Labelled facts after the totals.
    facts: Vec<(String, String)>,
    /// Whether a `service`-role user may read it.
    service_may_read: bool,
}

/// "02.12.2026".
fn day(d: NaiveDate) -> String {
    d.format("%d.%m.%Y").to_string()
}

/// Thousandths as a Romanian decimal: 1500 → "1,5", 2000 → "2", 1234567 → "1.234,567".
fn quantity(milli: i64) -> String {
    let whole = format_ro(milli / 1000 * 100);
    let whole = whole.trim_end_matches(",00");
    let fraction = (milli % 1000).unsigned_abs();
    if fraction == 0 {
        whole.to_owned()
    } else {
        format!("{whole},{}", format!("{fraction:03}").trim_end_matches('0'))
    }
}

/// Basis points as a percentage: 1900 → "19%", 950 → "9,5%".
fn percent(bp: i32) -> String {
    let text = quantity(i64::from(bp) * 10);
    format!("{text}%")
}

fn party_of(card: &PartnerCard) -> RenderParty {
    RenderParty {
        name: card.name.clone(),
        fiscal_code: card.fiscal_code.clone(),
        registration_number: String::new(),
        address_lines: card.address_lines.clone(),
        email: card.email.clone(),
        phone: card.phone.clone(),
        bank_account: String::new(),
    }
}

fn line_of(position: usize, l: &Line) -> RenderLine {
    RenderLine {
        position: u32::try_from(position + 1).unwrap_or(u32::MAX),
        article_code: l.article_code.clone(),
        description: l.description.clone(),
        unit: l.unit.clone(),
        quantity: quantity(l.values.quantity_milli),
        unit_price: format_ro(l.values.unit_price),
        discount: if l.values.discount_bp == 0 {
            String::new()
        } else {
            percent(l.values.discount_bp)
        },
        vat_rate: percent(l.values.vat_rate_bp),
        amount_without_vat: format_ro(l.amounts.without_vat),
        vat_amount: format_ro(l.amounts.vat),
        amount_with_vat: format_ro(l.amounts.with_vat),
    }
}

impl OpportunitiesApi {
    /// Loads document `id` of `kind` with what it prints.
    async fn printable(&self, kind: DocKind, id: Uuid) -> Result<Printable> {
        let mut conn = self.pool.acquire().await?;
        let not_found = || OpportunitiesError::not_found(kind.as_db(), id);
        let printable = match kind {
            DocKind::Offer => {
                let o = store::offers::get(&mut conn, id, false)
                    .await?
                    .ok_or_else(not_found)?;
                let mut dates = Vec::new();
                if let Some(d) = o.offer_date {
                    dates.push(("Data".to_owned(), day(d)));
                }
                if let Some(d) = o.valid_until {
                    dates.push(("Valabilă până la".to_owned(), day(d)));
                }
                Printable {
                    kind,
                    service_may_read: o.purpose == OfferPurpose::ServiceEstimate,
                    header: o.doc,
                    dates,
                    facts: Vec::new(),
                }
            }
            DocKind::Order => {
                let o = store::orders::get(&mut conn, id, false)
                    .await?
                    .ok_or_else(not_found)?;
                let mut dates = Vec::new();
                if let Some(d) = o.order_date {
                    dates.push(("Data".to_owned(), day(d)));
                }
                if let Some(d) = o.delivery_date {
                    dates.push(("Livrare".to_owned(), day(d)));
                }
                let mut facts = Vec::new();
                if !o.customer_reference.is_empty() {
                    facts.push((
                        "Referința clientului".to_owned(),
                        o.customer_reference.clone(),
                    ));
                }
                Printable {
                    kind,
                    service_may_read: false,
                    header: o.doc,
                    dates,
                    facts,
                }
            }
            DocKind::Contract => {
                let c = store::contracts::get(&mut conn, id, false)
                    .await?
                    .ok_or_else(not_found)?;
                let mut dates = Vec::new();
                if let Some(d) = c.signing_date {
                    dates.push(("Data semnării".to_owned(), day(d)));
                }
                let mut facts = vec![(
                    "Tip".to_owned(),
                    match c.kind {
                        ContractKind::Commercial => "comercial".to_owned(),
                        ContractKind::Subscription => "abonament (valori lunare)".to_owned(),
                    },
                )];
                if let Some(start) = c.start_date {
                    let end = c
                        .termination_date
                        .or(c.end_date)
                        .map_or_else(|| "nedeterminat".to_owned(), day);
                    facts.push(("Valabilitate".to_owned(), format!("{} – {end}", day(start))));
                }
                Printable {
                    kind,
                    service_may_read: true,
                    header: c.doc,
                    dates,
                    facts,
                }
            }
            DocKind::Invoice => {
                let i = store::invoices::get(&mut conn, id, false)
                    .await?
                    .ok_or_else(not_found)?;
                let mut dates = Vec::new();
                if let Some(d) = i.invoice_date {
                    dates.push(("Data".to_owned(), day(d)));
                }
                if let Some(d) = i.due_date {
                    dates.push(("Scadență".to_owned(), day(d)));
                }
                let mut facts = Vec::new();
                if let Some(month) = i.billing_month {
                    facts.push((
                        "Perioada facturată".to_owned(),
                        month.format("%m.%Y").to_string(),
                    ));
                }
                Printable {
                    kind,
                    service_may_read: i.task_id.is_some(),
                    header: i.doc,
                    dates,
                    facts,
                }
            }
        };
        Ok(printable)
    }

    /// The model of `p`: the frozen customer of an issued document, the directory's for a
    /// draft.
    async fn model(&self, p: &Printable) -> Result<RenderModel> {
        let customer = match &p.header.customer {
            Some(card) => card.clone(),
            None => self.customer(p.header.partner_id).await?,
        };
        let c = &self.company;
        let totals = p.header.totals();
        Ok(RenderModel {
            kind: match p.kind {
                DocKind::Offer => RenderKind::Offer,
                DocKind::Order => RenderKind::Order,
                DocKind::Contract => RenderKind::Contract,
                DocKind::Invoice => RenderKind::Invoice,
            },
            number: p.header.number.clone(),
            dates: p.dates.clone(),
            supplier: RenderParty {
                name: c.name.clone(),
                fiscal_code: c.fiscal_code.clone(),
                registration_number: c.registration_number.clone(),
                address_lines: c.address_lines.clone(),
                email: c.email.clone(),
                phone: c.phone.clone(),
                bank_account: c.bank_account.clone(),
            },
            customer: party_of(&customer),
            currency: p.header.currency.as_str().to_owned(),
            lines: p
                .header
                .lines
                .iter()
                .enumerate()
                .map(|(i, l)| line_of(i, l))
                .collect(),
            totals: RenderTotals {
                without_vat: format_ro(totals.without_vat),
                vat: format_ro(totals.vat),
                with_vat: format_ro(totals.with_vat),
                vat_breakdown: totals
                    .breakdown
                    .iter()
                    .map(|b| {
                        (
                            percent(b.vat_rate_bp),
                            format_ro(b.taxable),
                            format_ro(b.vat),
                        )
                    })
                    .collect(),
            },
            notes: p.header.notes.clone(),
            facts: p.facts.clone(),
        })
    }

    async fn render(
        &self,
        caller: &Caller,
        request: pb::RenderDocumentRequest,
    ) -> Result<pb::RenderDocumentResponse> {
        let mut f = Fields::new();
        let Some(document) = request.document else {
            f.add("document", "is required");
            return Err(f.finish().expect_err("refused").into());
        };
        let kind = match doc_kind_from(document.kind) {
            Ok(Some(kind)) => Some(kind),
            Ok(None) => {
                f.add("document.kind", "is required");
                None
            }
            Err(reason) => {
                f.add("document.kind", reason);
                None
            }
        };
        let id = f.id("document.id", &document.id);
        let pdf = match pb::RenderFormat::try_from(request.format) {
            Ok(pb::RenderFormat::Html) => false,
            Ok(_) => true,
            Err(_) => {
                f.add("format", format!("{} is not a format", request.format));
                true
            }
        };
        let pictures: Vec<Option<Uuid>> = request
            .article_ids_for_pictures
            .iter()
            .enumerate()
            .map(|(i, raw)| f.id(&format!("article_ids_for_pictures[{i}]"), raw))
            .collect();
        f.finish()?;
        let (kind, id) = (kind.expect("checked"), id.expect("checked"));
        let printable = self.printable(kind, id).await?;
        if !caller.has_any_role(DOCUMENT_ROLES) && !printable.service_may_read {
            return Err(OpportunitiesError::not_found(kind.as_db(), id));
        }
        let version = printable.header.version;
        if !request.etag.is_empty() && version_of(&request.etag) != Some(version) {
            return Err(OpportunitiesError::StaleEtag("document"));
        }
        let on_lines: std::collections::HashSet<Uuid> = printable
            .header
            .lines
            .iter()
            .map(|l| l.article_id)
            .collect();
        let mut f = Fields::new();
        for (i, article) in pictures.iter().enumerate() {
            if let Some(article) = article
                && !on_lines.contains(article)
            {
                f.add(
                    format!("article_ids_for_pictures[{i}]"),
                    "is not an article on the document's lines",
                );
            }
        }
        f.finish()?;

        let format = if pdf { "pdf" } else { "html" };
        let mut conn = self.pool.acquire().await?;
        let cached = store::renderings::get(&mut conn, id, version, format).await?;
        drop(conn);
        let (rendering, bytes) = match cached {
            Some(rendering) => (rendering, None),
            None => {
                let model = self.model(&printable).await?;
                // Laying out a long document takes milliseconds of CPU: off the async threads.
                let bytes = tokio::task::spawn_blocking(move || {
                    if pdf {
                        render_pdf(&model).map_err(|err| err.to_string())
                    } else {
                        Ok(render_html(&model).into_bytes())
                    }
                })
                .await
                .map_err(|err| OpportunitiesError::Render(err.to_string()))?
                .map_err(OpportunitiesError::Render)?;
                let bytes = Bytes::from(bytes);
                let blob_key = self.blobs.put(bytes.clone()).await?;
                let name = match (&printable.header.number, kind) {
                    (Some(number), _) => number.clone(),
                    (None, _) => format!("ciorna-{}", &id.simple().to_string()[..8]),
                };
                let rendering = Rendering {
                    file: Attachment {
                        id,
                        blob_key,
                        file_name: format!(
                            "{}-{name}.{format}",
                            match kind {
                                DocKind::Offer => "oferta",
                                DocKind::Order => "comanda",
                                DocKind::Contract => "contract",
                                DocKind::Invoice => "factura",
                            }
                        ),
                        content_type: if pdf {
                            "application/pdf".to_owned()
                        } else {
                            "text/html; charset=utf-8".to_owned()
                        },
                        size_bytes: i64::try_from(bytes.len()).unwrap_or(i64::MAX),
                    },
                    render_time: self.clock.now(),
                };
                let mut conn = self.pool.acquire().await?;
                let stored =
                    store::renderings::put(&mut conn, id, version, format, &rendering).await?;
                (stored, Some(bytes))
            }
        };
        let content = if request.include_content {
            let bytes = match bytes {
                Some(bytes) => bytes,
                None => self.blobs.get(&rendering.file.blob_key).await?,
            };
            if bytes.len() > MAX_INLINE {
                return Err(OpportunitiesError::precondition(
                    "the rendering is over 4 MiB: read it from the blob store",
                ));
            }
            bytes.to_vec()
        } else {
            Vec::new()
        };
        let article_pictures = if pictures.is_empty() {
            Vec::new()
        } else {
            let ids: Vec<Uuid> = pictures.iter().flatten().copied().collect();
            let mut conn = self.pool.acquire().await?;
            let articles = store::articles::get_many(&mut conn, &ids).await?;
            ids.iter()
                .filter_map(|id| articles.iter().find(|a| a.id == *id))
                .flat_map(|a| a.pictures.iter().map(convert::attachment))
                .collect()
        };
        let number = printable.header.number.clone().unwrap_or_default();
        let title = match kind {
            DocKind::Offer => "Oferta",
            DocKind::Order => "Comanda",
            DocKind::Contract => "Contractul",
            DocKind::Invoice => "Factura",
        };
        Ok(pb::RenderDocumentResponse {
            rendered: Some(pb::RenderedDocument {
                file: Some(convert::attachment(&rendering.file)),
                content,
                render_time: Some(timestamp(rendering.render_time)),
            }),
            document_attachments: if request.include_document_attachments {
                printable
                    .header
                    .attachments
                    .iter()
                    .map(convert::attachment)
                    .collect()
            } else {
                Vec::new()
            },
            article_pictures,
            partner_id: printable.header.partner_id.to_string(),
            document: Some(common::DocumentRef {
                kind: doc_kind(kind) as i32,
                id: id.to_string(),
                number: number.clone(),
            }),
            suggested_subject: if number.is_empty() {
                format!("{title} (ciornă) de la {}", self.company.name)
            } else {
                format!("{title} {number} de la {}", self.company.name)
            },
            etag: crm_platform::values::etag_of(version),
        })
    }
}

#[tonic::async_trait]
impl DocumentRenderService for OpportunitiesApi {
    #[tracing::instrument(skip_all)]
    async fn render_document(
        &self,
        request: Request<pb::RenderDocumentRequest>,
    ) -> Result<Response<pb::RenderDocumentResponse>, Status> {
        let caller = caller(&request, READERS)?;
        Ok(Response::new(
            self.render(&caller, request.into_inner()).await?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_printed_the_romanian_way() {
        assert_eq!(quantity(1500), "1,5");
        assert_eq!(quantity(2000), "2");
        assert_eq!(quantity(1_234_567), "1.234,567");
        assert_eq!(quantity(833), "0,833");
        assert_eq!(percent(1900), "19%");
        assert_eq!(percent(950), "9,5%");
        assert_eq!(percent(0), "0%");
        assert_eq!(
            day(NaiveDate::from_ymd_opt(2026, 12, 2).unwrap()),
            "02.12.2026"
        );
    }
}
