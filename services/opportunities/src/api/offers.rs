//! `OfferService`: customer offers and task estimates (O6, T9).

use crm_platform::{auth::Caller, values::timestamp};
use crm_proto::{
    common::DocumentKind,
    events as ev,
    opportunities::{self as pb, offer_service_server::OfferService},
};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::{
    DOCUMENT_ROLES, Fields, OpportunitiesApi, Page, caller, check_version,
    documents::{
        HeaderFields, date, header_proto, id_text, new_header, owner_ref, parse_header,
        parse_header_changes,
    },
};
use crate::{
    domain::{
        catalogue::{DocKind, PartnerCard},
        documents::{Offer, OfferPurpose, OfferStatus, check_has_lines},
        stages::Stage,
    },
    error::{OpportunitiesError, Result},
    store::{self, NewestFirstCursor, offers::Filter},
};

/// Roles that read offers: sales roles, and `service` for estimates only.
const READERS: &[&str] = &["sales", "manager", "service"];
/// Fields UpdateOffer may change (of a draft; `attachments` always).
const UPDATABLE: &[&str] = &[
    "lines",
    "notes",
    "attachments",
    "series_id",
    "currency_code",
    "campaign_id",
    "offer_date",
    "valid_until",
    "contact_person_id",
];

/// An offer as the proto message.
pub(crate) fn to_proto(o: &Offer) -> pb::Offer {
    let h = header_proto(&o.doc);
    pb::Offer {
        id: h.id,
        number: h.number,
        series_id: h.series_id,
        partner_id: h.partner_id,
        opportunity_id: h.opportunity_id,
        campaign_id: h.campaign_id,
        purpose: match o.purpose {
            OfferPurpose::Sale => pb::OfferPurpose::Sale,
            OfferPurpose::ServiceEstimate => pb::OfferPurpose::ServiceEstimate,
        } as i32,
        task_id: id_text(o.task_id),
        offer_date: date(o.offer_date),
        valid_until: date(o.valid_until),
        status: status_proto(o.status) as i32,
        currency_code: h.currency_code,
        lines: h.lines,
        totals: h.totals,
        contact_person_id: id_text(o.contact_person_id),
        notes: h.notes,
        attachments: h.attachments,
        issue_time: o.issue_time.map(timestamp),
        create_time: h.create_time,
        update_time: h.update_time,
        creator: h.creator,
        etag: h.etag,
    }
}

fn status_proto(s: OfferStatus) -> pb::OfferStatus {
    match s {
        OfferStatus::Draft => pb::OfferStatus::Draft,
        OfferStatus::Issued => pb::OfferStatus::Issued,
        OfferStatus::Accepted => pb::OfferStatus::Accepted,
        OfferStatus::Rejected => pb::OfferStatus::Rejected,
        OfferStatus::Cancelled => pb::OfferStatus::Cancelled,
    }
}

fn header_fields(o: &pb::Offer) -> HeaderFields<'_> {
    HeaderFields {
        series_id: &o.series_id,
        partner_id: &o.partner_id,
        opportunity_id: &o.opportunity_id,
        campaign_id: &o.campaign_id,
        currency_code: &o.currency_code,
        notes: &o.notes,
        notes_max: 4000,
        attachments: &o.attachments,
        lines: &o.lines,
    }
}

/// Whether the caller may see every offer, or (the `service` role alone) only estimates.
fn sees_all(caller: &Caller) -> bool {
    caller.has_any_role(DOCUMENT_ROLES)
}

impl OpportunitiesApi {
    async fn create_offer(
        &self,
        caller: &Caller,
        request: pb::CreateOfferRequest,
    ) -> Result<Offer> {
        let mut f = Fields::new();
        let request_id = f.text("request_id", &request.request_id, 100, false);
        let Some(given) = request.offer else {
            f.add("offer", "is required");
            return Err(f.finish().expect_err("refused").into());
        };
        let header = parse_header(&mut f, "offer", &header_fields(&given));
        let offer_date = f.date("offer.offer_date", given.offer_date.as_ref());
        let valid_until = f.date("offer.valid_until", given.valid_until.as_ref());
        let contact = f.optional_id("offer.contact_person_id", &given.contact_person_id);
        if given.purpose == pb::OfferPurpose::ServiceEstimate as i32 {
            f.add(
                "offer.purpose",
                "estimates are made by task billing (IssueTaskInvoice), not by hand",
            );
        }
        if let (Some(Some(from)), Some(Some(until))) = (offer_date, valid_until)
            && until < from
        {
            f.add("offer.valid_until", "must not be before offer_date");
        }
        if let Some(h) = &header
            && h.partner_id.is_none()
            && h.opportunity_id.is_none()
        {
            f.add("offer.partner_id", "is required (or give opportunity_id)");
        }
        f.finish()?;
        let header = header.expect("checked");
        let new_files = self.new_uploads(caller, "offer.attachments", &given.attachments, &[])?;
        let mut conn = self.pool.acquire().await?;
        let (partner_id, campaign_id) = self
            .document_parties(
                &mut conn,
                "offer",
                header.partner_id,
                header.opportunity_id,
                header.campaign_id,
                &[Stage::Offer, Stage::Negotiation],
                "an offer",
            )
            .await?;
        let lines = self
            .resolve_lines(
                &mut conn,
                "offer.lines",
                header.lines,
                &header.currency,
                &[],
            )
            .await?;
        drop(conn);
        let now = self.clock.now();
        let mut doc = new_header(partner_id, header.currency, &caller.subject, now);
        doc.series_id = header.series_id;
        doc.opportunity_id = header.opportunity_id;
        doc.campaign_id = campaign_id;
        doc.lines = lines;
        doc.notes = header.notes;
        doc.attachments = header.attachments;
        let offer = Offer {
            doc,
            status: OfferStatus::Draft,
            purpose: OfferPurpose::Sale,
            task_id: None,
            task_billing_attempt: None,
            offer_date: offer_date.flatten(),
            valid_until: valid_until.flatten(),
            contact_person_id: contact.flatten(),
            issue_time: None,
            status_note: String::new(),
        };
        let mut tx = self.pool.begin().await?;
        let request_id = request_id.expect("checked");
        if !request_id.is_empty()
            && let Some(existing) = store::claim_request(
                &mut tx,
                "offer",
                &caller.request_scope(),
                &request_id,
                offer.doc.id,
                now,
            )
            .await?
        {
            return store::offers::get(&mut tx, existing, false)
                .await?
                .ok_or_else(|| OpportunitiesError::not_found("offer", existing));
        }
        store::offers::insert(&mut tx, &offer).await?;
        self.files_attached(
            &mut tx,
            owner_ref(DocumentKind::Offer, offer.doc.id),
            new_files,
            &caller.subject,
        )
        .await?;
        self.events.commit(tx).await?;
        Ok(offer)
    }

    /// The partner and campaign of a new document: from the opportunity it comes from (which
    /// must be in one of `stages`), or as given (the partner checked, the campaign known).
    #[allow(
        clippy::too_many_arguments,
        reason = "the parts of a header, each named"
    )]
    pub(crate) async fn document_parties(
        &self,
        conn: &mut sqlx::PgConnection,
        at: &str,
        partner_id: Option<Uuid>,
        opportunity_id: Option<Uuid>,
        campaign_id: Option<Uuid>,
        stages: &[Stage],
        what: &str,
    ) -> Result<(Uuid, Option<Uuid>)> {
        if let Some(opportunity_id) = opportunity_id {
            let opportunity = self
                .origin(
                    conn,
                    opportunity_id,
                    &format!("{at}.opportunity_id"),
                    stages,
                    what,
                )
                .await?;
            if partner_id.is_some_and(|p| p != opportunity.partner_id) {
                return Err(OpportunitiesError::invalid(
                    format!("{at}.partner_id"),
                    "is not the opportunity's partner: leave it empty",
                ));
            }
            return Ok((
                opportunity.partner_id,
                campaign_id.or(opportunity.campaign_id),
            ));
        }
        let partner_id = partner_id.expect("the caller checked a partner or an opportunity");
        self.partners
            .usable_on(conn, partner_id, &format!("{at}.partner_id"))
            .await?;
        if let Some(campaign) = campaign_id
            && store::catalogues::get_campaign(conn, campaign)
                .await?
                .is_none()
        {
            return Err(OpportunitiesError::invalid(
                format!("{at}.campaign_id"),
                "is not a known campaign",
            ));
        }
        Ok((partner_id, campaign_id))
    }

    /// The offer `id` as `caller` may see it; NOT_FOUND otherwise.
    async fn visible_offer(&self, caller: &Caller, id: Uuid) -> Result<Offer> {
        let mut conn = self.pool.acquire().await?;
        store::offers::get(&mut conn, id, false)
            .await?
            .filter(|o| sees_all(caller) || o.purpose == OfferPurpose::ServiceEstimate)
            .ok_or_else(|| OpportunitiesError::not_found("offer", id))
    }

    /// Opens the transaction of a change to offer `id`, loaded locked and checked against the
    /// etag's version.
    async fn begin_offer_change(
        &self,
        id: Uuid,
        version: i64,
    ) -> Result<(sqlx::Transaction<'static, sqlx::Postgres>, Offer)> {
        let mut tx = self.pool.begin().await?;
        let offer = store::offers::get(&mut tx, id, true)
            .await?
            .ok_or_else(|| OpportunitiesError::not_found("offer", id))?;
        check_version("offer", version, offer.doc.version)?;
        Ok((tx, offer))
    }

    async fn update_offer(
        &self,
        caller: &Caller,
        request: pb::UpdateOfferRequest,
    ) -> Result<Offer> {
        let mut f = Fields::new();
        let paths = f.mask(request.update_mask.as_ref(), UPDATABLE);
        let version = f.etag(&request.etag);
        let Some(given) = request.offer else {
            f.add("offer", "is required");
            return Err(f.finish().expect_err("refused").into());
        };
        let id = f.id("offer.id", &given.id);
        let changes = parse_header_changes(&mut f, "offer", &paths, &header_fields(&given));
        let has = |name: &str| paths.iter().any(|p| p == name);
        let offer_date = f.date("offer.offer_date", given.offer_date.as_ref());
        let valid_until = f.date("offer.valid_until", given.valid_until.as_ref());
        let contact = f.optional_id("offer.contact_person_id", &given.contact_person_id);
        f.finish()?;
        let (mut tx, current) = self
            .begin_offer_change(id.expect("checked"), version.expect("checked"))
            .await?;
        if !current.status.is_editable() && paths.iter().any(|p| p != "attachments") {
            return Err(OpportunitiesError::precondition(format!(
                "only a draft offer changes (this one is {}); attachments excepted",
                current.status.as_db()
            )));
        }
        let new_files = if has("attachments") {
            self.new_uploads(
                caller,
                "offer.attachments",
                &given.attachments,
                &current.doc.attachments,
            )?
        } else {
            Vec::new()
        };
        let mut updated = current.clone();
        updated.doc.touch(&caller.subject, self.clock.now());
        let lines_changed = self
            .apply_header_changes(&mut tx, "offer", &mut updated.doc, changes)
            .await?;
        if has("offer_date") {
            updated.offer_date = offer_date.flatten();
        }
        if has("valid_until") {
            updated.valid_until = valid_until.flatten();
        }
        if has("contact_person_id") {
            updated.contact_person_id = contact.flatten();
        }
        if let (Some(from), Some(until)) = (updated.offer_date, updated.valid_until)
            && until < from
        {
            return Err(OpportunitiesError::invalid(
                "offer.valid_until",
                "must not be before offer_date",
            ));
        }
        if !store::offers::update(&mut tx, &updated, current.doc.version, lines_changed).await? {
            return Err(OpportunitiesError::StaleEtag("offer"));
        }
        self.files_attached(
            &mut tx,
            owner_ref(DocumentKind::Offer, updated.doc.id),
            new_files,
            &caller.subject,
        )
        .await?;
        self.events.commit(tx).await?;
        Ok(updated)
    }

    /// Issues `offer` (a locked draft) in `tx`: number, frozen customer, date, status, event.
    /// The customer's details are looked up before the transaction (`customer`), so no call
    /// to marketing happens while rows are locked.
    pub(crate) async fn issue_offer_in(
        &self,
        tx: &mut sqlx::PgConnection,
        offer: &Offer,
        customer: PartnerCard,
        who: &str,
    ) -> Result<Offer> {
        offer.status.check_issue()?;
        check_has_lines(offer.doc.lines.len())?;
        let now = self.clock.now();
        let today = self.day_of(now);
        let (series_id, number) = self
            .take_number(tx, DocKind::Offer, offer.doc.series_id, today)
            .await?;
        let mut issued = offer.clone();
        issued.doc.touch(who, now);
        issued.doc.series_id = Some(series_id);
        issued.doc.number = Some(number);
        issued.doc.customer = Some(customer);
        issued.status = OfferStatus::Issued;
        issued.issue_time = Some(now);
        issued.offer_date.get_or_insert(today);
        if !store::offers::update(tx, &issued, offer.doc.version, false).await? {
            return Err(OpportunitiesError::StaleEtag("offer"));
        }
        self.events
            .publish(
                tx,
                issued.doc.partner_id,
                who,
                &ev::OfferIssued {
                    offer: Some(to_proto(&issued)),
                },
                now,
            )
            .await?;
        Ok(issued)
    }

    async fn issue_offer(&self, caller: &Caller, request: pb::IssueOfferRequest) -> Result<Offer> {
        let mut f = Fields::new();
        let id = f.id("id", &request.id);
        let version = f.etag(&request.etag);
        f.finish()?;
        let id = id.expect("checked");
        let customer = self.customer_of(DocKind::Offer, id).await?;
        let (mut tx, current) = self
            .begin_offer_change(id, version.expect("checked"))
            .await?;
        let issued = self
            .issue_offer_in(&mut tx, &current, customer, &caller.subject)
            .await?;
        self.events.commit(tx).await?;
        Ok(issued)
    }

    /// Moves an offer to `status` with `note`, publishing `OfferStatusChanged` when it had
    /// been issued.
    async fn change_offer_status(
        &self,
        caller: &Caller,
        id: Option<Uuid>,
        version: Option<i64>,
        status: OfferStatus,
        note: String,
    ) -> Result<Offer> {
        let (mut tx, current) = self
            .begin_offer_change(id.expect("checked"), version.expect("checked"))
            .await?;
        match status {
            OfferStatus::Cancelled => current.status.check_cancel()?,
            _ => current.status.check_answer()?,
        }
        let now = self.clock.now();
        let mut updated = current.clone();
        updated.doc.touch(&caller.subject, now);
        updated.status = status;
        updated.status_note = note;
        if !store::offers::update(&mut tx, &updated, current.doc.version, false).await? {
            return Err(OpportunitiesError::StaleEtag("offer"));
        }
        if current.status != OfferStatus::Draft {
            self.events
                .publish(
                    &mut tx,
                    updated.doc.partner_id,
                    &caller.subject,
                    &ev::OfferStatusChanged {
                        offer: Some(to_proto(&updated)),
                        previous_status: status_proto(current.status) as i32,
                    },
                    now,
                )
                .await?;
        }
        self.events.commit(tx).await?;
        Ok(updated)
    }
}

#[tonic::async_trait]
impl OfferService for OpportunitiesApi {
    #[tracing::instrument(skip_all)]
    async fn create_offer(
        &self,
        request: Request<pb::CreateOfferRequest>,
    ) -> Result<Response<pb::Offer>, Status> {
        let caller = caller(&request, DOCUMENT_ROLES)?;
        let offer = OpportunitiesApi::create_offer(self, &caller, request.into_inner()).await?;
        Ok(Response::new(to_proto(&offer)))
    }

    #[tracing::instrument(skip_all)]
    async fn get_offer(
        &self,
        request: Request<pb::GetOfferRequest>,
    ) -> Result<Response<pb::Offer>, Status> {
        let caller = caller(&request, READERS)?;
        let mut f = Fields::new();
        let id = f.id("id", &request.get_ref().id);
        f.finish()?;
        let offer = self.visible_offer(&caller, id.expect("checked")).await?;
        Ok(Response::new(to_proto(&offer)))
    }

    #[tracing::instrument(skip_all)]
    async fn update_offer(
        &self,
        request: Request<pb::UpdateOfferRequest>,
    ) -> Result<Response<pb::Offer>, Status> {
        let caller = caller(&request, DOCUMENT_ROLES)?;
        let offer = OpportunitiesApi::update_offer(self, &caller, request.into_inner()).await?;
        Ok(Response::new(to_proto(&offer)))
    }

    #[tracing::instrument(skip_all)]
    async fn list_offers(
        &self,
        request: Request<pb::ListOffersRequest>,
    ) -> Result<Response<pb::ListOffersResponse>, Status> {
        let caller = caller(&request, READERS)?;
        let request = request.into_inner();
        let mut f = Fields::new();
        let partner_id = f.optional_id("partner_id", &request.partner_id);
        let opportunity_id = f.optional_id("opportunity_id", &request.opportunity_id);
        let campaign_id = f.optional_id("campaign_id", &request.campaign_id);
        let (from, to) = f.period("offer_period", request.offer_period.as_ref());
        let status = match pb::OfferStatus::try_from(request.status) {
            Ok(pb::OfferStatus::Unspecified) => None,
            Ok(s) => Some(match s {
                pb::OfferStatus::Draft => OfferStatus::Draft,
                pb::OfferStatus::Issued => OfferStatus::Issued,
                pb::OfferStatus::Accepted => OfferStatus::Accepted,
                pb::OfferStatus::Rejected => OfferStatus::Rejected,
                _ => OfferStatus::Cancelled,
            }),
            Err(_) => {
                f.add(
                    "status",
                    format!("{} is not an offer status", request.status),
                );
                None
            }
        };
        let purpose = match pb::OfferPurpose::try_from(request.purpose) {
            Ok(pb::OfferPurpose::Unspecified) => None,
            Ok(pb::OfferPurpose::Sale) => Some(OfferPurpose::Sale.as_db()),
            Ok(pb::OfferPurpose::ServiceEstimate) => Some(OfferPurpose::ServiceEstimate.as_db()),
            Err(_) => {
                f.add(
                    "purpose",
                    format!("{} is not an offer purpose", request.purpose),
                );
                None
            }
        };
        f.finish()?;
        let filter = Filter {
            partner_id: partner_id.flatten(),
            opportunity_id: opportunity_id.flatten(),
            campaign_id: campaign_id.flatten(),
            status: status.map(OfferStatus::as_db),
            from,
            to,
            purpose,
            estimates_only: !sees_all(&caller),
        };
        let page: Page<NewestFirstCursor> =
            Page::of(request.page_size, &request.page_token, &filter)?;
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(OpportunitiesError::from)?;
        let mut rows = store::offers::list(&mut conn, &filter, page.after.as_ref(), page.limit())
            .await
            .map_err(OpportunitiesError::from)?;
        let next_page_token = page.finish(&mut rows, |o| (o.doc.create_time, o.doc.id));
        Ok(Response::new(pb::ListOffersResponse {
            offers: rows.iter().map(to_proto).collect(),
            next_page_token,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn issue_offer(
        &self,
        request: Request<pb::IssueOfferRequest>,
    ) -> Result<Response<pb::Offer>, Status> {
        let caller = caller(&request, DOCUMENT_ROLES)?;
        let offer = OpportunitiesApi::issue_offer(self, &caller, request.into_inner()).await?;
        Ok(Response::new(to_proto(&offer)))
    }

    #[tracing::instrument(skip_all)]
    async fn answer_offer(
        &self,
        request: Request<pb::AnswerOfferRequest>,
    ) -> Result<Response<pb::Offer>, Status> {
        let caller = caller(&request, DOCUMENT_ROLES)?;
        let request = request.into_inner();
        let mut f = Fields::new();
        let id = f.id("id", &request.id);
        let version = f.etag(&request.etag);
        let note = f.text("note", &request.note, 2000, false);
        f.finish()?;
        let status = if request.accepted {
            OfferStatus::Accepted
        } else {
            OfferStatus::Rejected
        };
        let offer = self
            .change_offer_status(&caller, id, version, status, note.expect("checked"))
            .await?;
        Ok(Response::new(to_proto(&offer)))
    }

    #[tracing::instrument(skip_all)]
    async fn cancel_offer(
        &self,
        request: Request<pb::CancelOfferRequest>,
    ) -> Result<Response<pb::Offer>, Status> {
        let caller = caller(&request, DOCUMENT_ROLES)?;
        let request = request.into_inner();
        let mut f = Fields::new();
        let id = f.id("id", &request.id);
        let version = f.etag(&request.etag);
        let reason = f.text("reason", &request.reason, 2000, false);
        f.finish()?;
        let offer = self
            .change_offer_status(
                &caller,
                id,
                version,
                OfferStatus::Cancelled,
                reason.expect("checked"),
            )
            .await?;
        Ok(Response::new(to_proto(&offer)))
    }
}
