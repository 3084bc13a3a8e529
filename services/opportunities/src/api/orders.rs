//! `OrderService`: customer orders (O6), with the "add to campaign revenues" flag (M5).

use std::collections::HashMap;

use crm_platform::{
    auth::Caller,
    values::{date_to_proto, timestamp},
};
use crm_proto::{
    common::DocumentKind,
    events as ev,
    opportunities::{self as pb, order_service_server::OrderService},
};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::{
    DOCUMENT_ROLES, Fields, OpportunitiesApi, Page, caller, check_version, convert,
    documents::{
        HeaderFields, LineRequest, date, header_proto, id_text, new_header, owner_ref,
        parse_header, parse_header_changes,
    },
};
use crate::{
    domain::{
        catalogue::DocKind,
        documents::{OfferStatus, Order, OrderStatus, check_has_lines},
        stages::Stage,
    },
    error::{OpportunitiesError, Result},
    store::{self, NewestFirstCursor, orders::Filter},
};

/// Fields UpdateOrder may change (of a draft; `attachments` always, the revenue flag until the
/// order is invoiced).
const UPDATABLE: &[&str] = &[
    "lines",
    "notes",
    "attachments",
    "series_id",
    "currency_code",
    "campaign_id",
    "order_date",
    "delivery_date",
    "customer_reference",
    "add_to_campaign_revenues",
];

/// An order as the proto message, with what its issued invoices came to.
pub(crate) fn to_proto(o: &Order, invoiced_without_vat: i64) -> pb::Order {
    let h = header_proto(&o.doc);
    pb::Order {
        id: h.id,
        number: h.number,
        series_id: h.series_id,
        partner_id: h.partner_id,
        opportunity_id: h.opportunity_id,
        campaign_id: h.campaign_id,
        offer_id: id_text(o.offer_id),
        add_to_campaign_revenues: o.add_to_campaign_revenues,
        order_date: date(o.order_date),
        delivery_date: date(o.delivery_date),
        customer_reference: o.customer_reference.clone(),
        status: status_proto(o.status) as i32,
        currency_code: h.currency_code,
        lines: h.lines,
        totals: h.totals,
        invoiced_without_vat: Some(convert::amount(invoiced_without_vat, &o.doc.currency)),
        notes: h.notes,
        attachments: h.attachments,
        confirm_time: o.confirm_time.map(timestamp),
        create_time: h.create_time,
        update_time: h.update_time,
        creator: h.creator,
        etag: h.etag,
    }
}

fn status_proto(s: OrderStatus) -> pb::OrderStatus {
    match s {
        OrderStatus::Draft => pb::OrderStatus::Draft,
        OrderStatus::Confirmed => pb::OrderStatus::Confirmed,
        OrderStatus::Invoiced => pb::OrderStatus::Invoiced,
        OrderStatus::Cancelled => pb::OrderStatus::Cancelled,
    }
}

fn header_fields(o: &pb::Order) -> HeaderFields<'_> {
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

impl OpportunitiesApi {
    /// The order as the proto message, with its invoiced total read from the store.
    pub(crate) async fn order_proto(&self, o: &Order) -> Result<pb::Order> {
        let mut conn = self.pool.acquire().await?;
        let invoiced = store::invoices::invoiced_on_orders(&mut conn, &[o.doc.id]).await?;
        Ok(to_proto(o, invoiced.get(&o.doc.id).copied().unwrap_or(0)))
    }

    async fn create_order(
        &self,
        caller: &Caller,
        request: pb::CreateOrderRequest,
    ) -> Result<Order> {
        let mut f = Fields::new();
        let request_id = f.text("request_id", &request.request_id, 100, false);
        let Some(given) = request.order else {
            f.add("order", "is required");
            return Err(f.finish().expect_err("refused").into());
        };
        let header = parse_header(&mut f, "order", &header_fields(&given));
        let offer_id = f.optional_id("order.offer_id", &given.offer_id);
        let order_date = f.date("order.order_date", given.order_date.as_ref());
        let delivery_date = f.date("order.delivery_date", given.delivery_date.as_ref());
        let reference = f.text(
            "order.customer_reference",
            &given.customer_reference,
            100,
            false,
        );
        if let (Some(h), Some(offer)) = (&header, &offer_id)
            && h.partner_id.is_none()
            && h.opportunity_id.is_none()
            && offer.is_none()
        {
            f.add(
                "order.partner_id",
                "is required (or give opportunity_id or offer_id)",
            );
        }
        f.finish()?;
        let mut header = header.expect("checked");
        let offer_id = offer_id.expect("checked");
        let mut conn = self.pool.acquire().await?;
        if let Some(offer_id) = offer_id {
            let offer = store::offers::get(&mut conn, offer_id, false)
                .await?
                .ok_or_else(|| OpportunitiesError::invalid("order.offer_id", "no such offer"))?;
            if offer.status != OfferStatus::Accepted {
                return Err(OpportunitiesError::precondition(format!(
                    "an order is made from an accepted offer; this one is {}",
                    offer.status.as_db()
                )));
            }
            if header.partner_id.is_some_and(|p| p != offer.doc.partner_id) {
                return Err(OpportunitiesError::invalid(
                    "order.partner_id",
                    "is not the offer's partner: leave it empty",
                ));
            }
            header.partner_id = Some(offer.doc.partner_id);
            header.opportunity_id = header.opportunity_id.or(offer.doc.opportunity_id);
            header.campaign_id = header.campaign_id.or(offer.doc.campaign_id);
            if header.lines.is_empty() {
                header.currency = offer.doc.currency.clone();
                header.lines = offer
                    .doc
                    .lines
                    .iter()
                    .map(|l| LineRequest::copy_of(l, &offer.doc.currency, l.values.quantity_milli))
                    .collect();
            }
        }
        let (partner_id, campaign_id) = if offer_id.is_some() && header.opportunity_id.is_none() {
            (
                header.partner_id.expect("set from the offer"),
                header.campaign_id,
            )
        } else {
            self.document_parties(
                &mut conn,
                "order",
                header.partner_id,
                header.opportunity_id,
                header.campaign_id,
                &[Stage::Negotiation],
                "an order",
            )
            .await?
        };
        if given.add_to_campaign_revenues && campaign_id.is_none() {
            return Err(OpportunitiesError::invalid(
                "order.add_to_campaign_revenues",
                "needs a campaign: give campaign_id",
            ));
        }
        let lines = self
            .resolve_lines(
                &mut conn,
                "order.lines",
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
        let order = Order {
            doc,
            status: OrderStatus::Draft,
            offer_id,
            add_to_campaign_revenues: given.add_to_campaign_revenues,
            order_date: order_date.flatten(),
            delivery_date: delivery_date.flatten(),
            customer_reference: reference.expect("checked"),
            confirm_time: None,
            status_note: String::new(),
        };
        let new_files = self.new_uploads(caller, "order.attachments", &given.attachments, &[])?;
        let mut tx = self.pool.begin().await?;
        let request_id = request_id.expect("checked");
        if !request_id.is_empty()
            && let Some(existing) = store::claim_request(
                &mut tx,
                "order",
                &caller.request_scope(),
                &request_id,
                order.doc.id,
                now,
            )
            .await?
        {
            return store::orders::get(&mut tx, existing, false)
                .await?
                .ok_or_else(|| OpportunitiesError::not_found("order", existing));
        }
        store::orders::insert(&mut tx, &order).await?;
        self.files_attached(
            &mut tx,
            owner_ref(DocumentKind::Order, order.doc.id),
            new_files,
            &caller.subject,
        )
        .await?;
        self.events.commit(tx).await?;
        Ok(order)
    }

    async fn begin_order_change(
        &self,
        id: Uuid,
        version: i64,
    ) -> Result<(sqlx::Transaction<'static, sqlx::Postgres>, Order)> {
        let mut tx = self.pool.begin().await?;
        let order = store::orders::get(&mut tx, id, true)
            .await?
            .ok_or_else(|| OpportunitiesError::not_found("order", id))?;
        check_version("order", version, order.doc.version)?;
        Ok((tx, order))
    }

    async fn update_order(
        &self,
        caller: &Caller,
        request: pb::UpdateOrderRequest,
    ) -> Result<Order> {
        let mut f = Fields::new();
        let paths = f.mask(request.update_mask.as_ref(), UPDATABLE);
        let version = f.etag(&request.etag);
        let Some(given) = request.order else {
            f.add("order", "is required");
            return Err(f.finish().expect_err("refused").into());
        };
        let id = f.id("order.id", &given.id);
        let changes = parse_header_changes(&mut f, "order", &paths, &header_fields(&given));
        let has = |name: &str| paths.iter().any(|p| p == name);
        let order_date = f.date("order.order_date", given.order_date.as_ref());
        let delivery_date = f.date("order.delivery_date", given.delivery_date.as_ref());
        let reference = f.text(
            "order.customer_reference",
            &given.customer_reference,
            100,
            false,
        );
        f.finish()?;
        let (mut tx, current) = self
            .begin_order_change(id.expect("checked"), version.expect("checked"))
            .await?;
        let after_draft = paths
            .iter()
            .all(|p| p == "attachments" || p == "add_to_campaign_revenues");
        if !current.status.is_editable() && !after_draft {
            return Err(OpportunitiesError::precondition(format!(
                "only a draft order changes (this one is {}); attachments and the campaign-revenue \
                 flag excepted",
                current.status.as_db()
            )));
        }
        let new_files = if paths.iter().any(|p| p == "attachments") {
            self.new_uploads(
                caller,
                "order.attachments",
                &given.attachments,
                &current.doc.attachments,
            )?
        } else {
            Vec::new()
        };
        let now = self.clock.now();
        let mut updated = current.clone();
        updated.doc.touch(&caller.subject, now);
        let lines_changed = self
            .apply_header_changes(&mut tx, "order", &mut updated.doc, changes)
            .await?;
        if has("order_date") {
            updated.order_date = order_date.flatten();
        }
        if has("delivery_date") {
            updated.delivery_date = delivery_date.flatten();
        }
        if has("customer_reference") {
            updated.customer_reference = reference.expect("checked");
        }
        let flag_changed = has("add_to_campaign_revenues")
            && given.add_to_campaign_revenues != current.add_to_campaign_revenues;
        if flag_changed {
            current.status.check_revenue_flag_change()?;
            updated.add_to_campaign_revenues = given.add_to_campaign_revenues;
        }
        if updated.add_to_campaign_revenues && updated.doc.campaign_id.is_none() {
            return Err(OpportunitiesError::invalid(
                "order.add_to_campaign_revenues",
                "needs a campaign: give campaign_id",
            ));
        }
        if !store::orders::update(&mut tx, &updated, current.doc.version, lines_changed).await? {
            return Err(OpportunitiesError::StaleEtag("order"));
        }
        self.files_attached(
            &mut tx,
            owner_ref(DocumentKind::Order, updated.doc.id),
            new_files,
            &caller.subject,
        )
        .await?;

        if flag_changed && current.status == OrderStatus::Confirmed {
            let issued = store::orders::issued_invoices(&mut tx, updated.doc.id).await?;
            let invoiced: i64 = issued.iter().map(|(_, _, _, amount)| amount).sum();
            let currency = &updated.doc.currency;
            self.events
                .publish(
                    &mut tx,
                    updated.doc.partner_id,
                    &caller.subject,
                    &ev::OrderCampaignRevenueFlagChanged {
                        order: Some(to_proto(&updated, invoiced)),
                        issued_invoices: issued
                            .iter()
                            .map(|(id, number, day, amount)| ev::InvoiceRevenue {
                                invoice_id: id.to_string(),
                                number: number.clone(),
                                invoice_date: day.map(date_to_proto),
                                amount_without_vat: Some(convert::amount(*amount, currency)),
                            })
                            .collect(),
                    },
                    now,
                )
                .await?;
        }
        self.events.commit(tx).await?;
        Ok(updated)
    }

    async fn confirm_order(
        &self,
        caller: &Caller,
        request: pb::ConfirmOrderRequest,
    ) -> Result<Order> {
        let mut f = Fields::new();
        let id = f.id("id", &request.id);
        let version = f.etag(&request.etag);
        f.finish()?;
        let id = id.expect("checked");
        let customer = self.customer_of(DocKind::Order, id).await?;
        let (mut tx, current) = self
            .begin_order_change(id, version.expect("checked"))
            .await?;
        current.status.check_confirm()?;
        check_has_lines(current.doc.lines.len())?;
        let now = self.clock.now();
        let today = self.day_of(now);
        let (series_id, number) = self
            .take_number(&mut tx, DocKind::Order, current.doc.series_id, today)
            .await?;
        let mut confirmed = current.clone();
        confirmed.doc.touch(&caller.subject, now);
        confirmed.doc.series_id = Some(series_id);
        confirmed.doc.number = Some(number);
        confirmed.doc.customer = Some(customer);
        confirmed.status = OrderStatus::Confirmed;
        confirmed.confirm_time = Some(now);
        confirmed.order_date.get_or_insert(today);
        if !store::orders::update(&mut tx, &confirmed, current.doc.version, false).await? {
            return Err(OpportunitiesError::StaleEtag("order"));
        }
        self.events
            .publish(
                &mut tx,
                confirmed.doc.partner_id,
                &caller.subject,
                &ev::OrderConfirmed {
                    order: Some(to_proto(&confirmed, 0)),
                },
                now,
            )
            .await?;
        self.events.commit(tx).await?;
        Ok(confirmed)
    }

    async fn cancel_order(
        &self,
        caller: &Caller,
        request: pb::CancelOrderRequest,
    ) -> Result<Order> {
        let mut f = Fields::new();
        let id = f.id("id", &request.id);
        let version = f.etag(&request.etag);
        let reason = f.text("reason", &request.reason, 2000, false);
        f.finish()?;
        let (mut tx, current) = self
            .begin_order_change(id.expect("checked"), version.expect("checked"))
            .await?;
        let has_invoices = store::invoices::order_has_issued(&mut tx, current.doc.id).await?;
        current.status.check_cancel(has_invoices)?;
        let now = self.clock.now();
        let mut cancelled = current.clone();
        cancelled.doc.touch(&caller.subject, now);
        cancelled.status = OrderStatus::Cancelled;
        cancelled.status_note = reason.expect("checked");
        if !store::orders::update(&mut tx, &cancelled, current.doc.version, false).await? {
            return Err(OpportunitiesError::StaleEtag("order"));
        }
        if current.status == OrderStatus::Confirmed {
            self.events
                .publish(
                    &mut tx,
                    cancelled.doc.partner_id,
                    &caller.subject,
                    &ev::OrderCancelled {
                        order: Some(to_proto(&cancelled, 0)),
                    },
                    now,
                )
                .await?;
        }
        self.events.commit(tx).await?;
        Ok(cancelled)
    }
}

#[tonic::async_trait]
impl OrderService for OpportunitiesApi {
    #[tracing::instrument(skip_all)]
    async fn create_order(
        &self,
        request: Request<pb::CreateOrderRequest>,
    ) -> Result<Response<pb::Order>, Status> {
        let caller = caller(&request, DOCUMENT_ROLES)?;
        let order = OpportunitiesApi::create_order(self, &caller, request.into_inner()).await?;
        Ok(Response::new(self.order_proto(&order).await?))
    }

    #[tracing::instrument(skip_all)]
    async fn get_order(
        &self,
        request: Request<pb::GetOrderRequest>,
    ) -> Result<Response<pb::Order>, Status> {
        caller(&request, DOCUMENT_ROLES)?;
        let mut f = Fields::new();
        let id = f.id("id", &request.get_ref().id);
        f.finish()?;
        let id = id.expect("checked");
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(OpportunitiesError::from)?;
        let order = store::orders::get(&mut conn, id, false)
            .await
            .map_err(OpportunitiesError::from)?
            .ok_or_else(|| OpportunitiesError::not_found("order", id))?;
        drop(conn);
        Ok(Response::new(self.order_proto(&order).await?))
    }

    #[tracing::instrument(skip_all)]
    async fn update_order(
        &self,
        request: Request<pb::UpdateOrderRequest>,
    ) -> Result<Response<pb::Order>, Status> {
        let caller = caller(&request, DOCUMENT_ROLES)?;
        let order = OpportunitiesApi::update_order(self, &caller, request.into_inner()).await?;
        Ok(Response::new(self.order_proto(&order).await?))
    }

    #[tracing::instrument(skip_all)]
    async fn list_orders(
        &self,
        request: Request<pb::ListOrdersRequest>,
    ) -> Result<Response<pb::ListOrdersResponse>, Status> {
        caller(&request, DOCUMENT_ROLES)?;
        let request = request.into_inner();
        let mut f = Fields::new();
        let partner_id = f.optional_id("partner_id", &request.partner_id);
        let opportunity_id = f.optional_id("opportunity_id", &request.opportunity_id);
        let campaign_id = f.optional_id("campaign_id", &request.campaign_id);
        let (from, to) = f.period("order_period", request.order_period.as_ref());
        let status = match pb::OrderStatus::try_from(request.status) {
            Ok(pb::OrderStatus::Unspecified) => None,
            Ok(pb::OrderStatus::Draft) => Some(OrderStatus::Draft),
            Ok(pb::OrderStatus::Confirmed) => Some(OrderStatus::Confirmed),
            Ok(pb::OrderStatus::Invoiced) => Some(OrderStatus::Invoiced),
            Ok(pb::OrderStatus::Cancelled) => Some(OrderStatus::Cancelled),
            Err(_) => {
                f.add(
                    "status",
                    format!("{} is not an order status", request.status),
                );
                None
            }
        };
        f.finish()?;
        let filter = Filter {
            partner_id: partner_id.flatten(),
            opportunity_id: opportunity_id.flatten(),
            campaign_id: campaign_id.flatten(),
            status: status.map(OrderStatus::as_db),
            from,
            to,
            campaign_revenue_only: request.campaign_revenue_only,
        };
        let page: Page<NewestFirstCursor> =
            Page::of(request.page_size, &request.page_token, &filter)?;
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(OpportunitiesError::from)?;
        let mut rows = store::orders::list(&mut conn, &filter, page.after.as_ref(), page.limit())
            .await
            .map_err(OpportunitiesError::from)?;
        let next_page_token = page.finish(&mut rows, |o| (o.doc.create_time, o.doc.id));
        let ids: Vec<Uuid> = rows.iter().map(|o| o.doc.id).collect();
        let invoiced: HashMap<Uuid, i64> = store::invoices::invoiced_on_orders(&mut conn, &ids)
            .await
            .map_err(OpportunitiesError::from)?;
        Ok(Response::new(pb::ListOrdersResponse {
            orders: rows
                .iter()
                .map(|o| to_proto(o, invoiced.get(&o.doc.id).copied().unwrap_or(0)))
                .collect(),
            next_page_token,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn confirm_order(
        &self,
        request: Request<pb::ConfirmOrderRequest>,
    ) -> Result<Response<pb::Order>, Status> {
        let caller = caller(&request, DOCUMENT_ROLES)?;
        let order = OpportunitiesApi::confirm_order(self, &caller, request.into_inner()).await?;
        Ok(Response::new(self.order_proto(&order).await?))
    }

    #[tracing::instrument(skip_all)]
    async fn cancel_order(
        &self,
        request: Request<pb::CancelOrderRequest>,
    ) -> Result<Response<pb::Order>, Status> {
        let caller = caller(&request, DOCUMENT_ROLES)?;
        let order = OpportunitiesApi::cancel_order(self, &caller, request.into_inner()).await?;
        Ok(Response::new(self.order_proto(&order).await?))
    }
}
