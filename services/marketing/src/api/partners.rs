//! The `PartnerService` handlers: request → domain values (validation), authorisation, calls to
//! the store in one transaction with the outbox, domain → response. No SQL here.

use std::hash::{DefaultHasher, Hash as _, Hasher as _};

use crm_platform::{auth::Caller, clock::Clock, error::FieldViolations, paging};
use crm_proto::marketing::{self as pb, partner_service_server::PartnerService};
use sqlx::PgPool;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::{
    convert::{apply_mask, partner_draft, partner_to_proto},
    domain::{
        partner::{self, Partner, State, UPDATABLE_FIELDS},
        values,
    },
    error::MarketingError,
    events::Events,
    store::{self, EmailOwner, PartnerCursor, PartnerFilter, RequestClaim},
};

/// Roles that may read partners.
const READERS: &[&str] = &["sales", "marketing", "manager", "service"];
/// Roles that may change partners.
const WRITERS: &[&str] = &["sales", "marketing", "manager"];

/// The partner handlers and what they need.
#[derive(Clone)]
pub struct PartnerApi {
    pool: PgPool,
    events: Events,
    clock: Clock,
}

impl PartnerApi {
    /// Handlers over `pool`, publishing through `events`, reading time from `clock`.
    pub fn new(pool: PgPool, events: Events, clock: Clock) -> Self {
        Self {
            pool,
            events,
            clock,
        }
    }

    /// Checks the competitors named by a draft exist and are competitors, on `conn`: inside an
    /// update that is the update's own transaction, so a call never waits for a second pooled
    /// connection while holding one (which starves the pool under load).
    async fn check_competitors(
        conn: &mut sqlx::PgConnection,
        draft: &partner::PartnerDraft,
        violations: &mut FieldViolations,
    ) -> Result<(), MarketingError> {
        if draft.competitor_ids.is_empty() {
            return Ok(());
        }
        let wrong = store::non_competitors(conn, &draft.competitor_ids).await?;
        for (i, id) in draft.competitor_ids.iter().enumerate() {
            if wrong.contains(id) {
                violations.add(
                    format!("partner.competitor_ids[{i}]"),
                    "is not a partner of kind competitor",
                );
            }
        }
        Ok(())
    }

    async fn create(
        &self,
        caller: &Caller,
        request: pb::CreatePartnerRequest,
    ) -> Result<Partner, MarketingError> {
        let mut violations = FieldViolations::new();
        let request_id =
            violations.check("request_id", values::text(&request.request_id, 100, false));
        let draft = match &request.partner {
            Some(p) => partner_draft(p, "partner", &mut violations),
            None => {
                violations.add("partner", "is required");
                None
            }
        };
        if let Some(draft) = &draft {
            for (field, reason) in partner::check_draft(draft, None, &[], &[]) {
                violations.add(format!("partner.{field}"), reason);
            }
            if !draft.competitor_ids.is_empty() {
                let mut conn = self.pool.acquire().await?;
                Self::check_competitors(&mut conn, draft, &mut violations).await?;
            }
        }
        let (Some(mut draft), Some(request_id)) = (draft, request_id) else {
            return Err(violations.into());
        };
        if !violations.is_empty() {
            return Err(violations.into());
        }

        let now = self.clock.now();
        let id = Uuid::now_v7();
        let mut tx = self.pool.begin().await?;
        if !request_id.is_empty()
            && let RequestClaim::Existing(existing) =
                store::claim_create_request(&mut tx, &caller.subject, &request_id, id, now).await?
        {
            // The same request again: answer with what the first one created.
            tx.rollback().await?;
            let mut conn = self.pool.acquire().await?;
            return store::get_partner(&mut conn, existing, false)
                .await?
                .ok_or(MarketingError::PartnerNotFound(existing));
        }
        for site in &mut draft.sites {
            site.id = Some(Uuid::now_v7());
        }
        for contact in &mut draft.contacts {
            contact.id = Some(Uuid::now_v7());
        }
        let partner = Partner {
            id,
            draft,
            state: State::Active,
            convert_time: None,
            create_time: now,
            update_time: now,
            creator: caller.subject.clone(),
            updater: caller.subject.clone(),
            version: 1,
        };
        store::insert_partner(&mut tx, &partner).await?;
        self.events
            .partner_created(&mut tx, &partner_to_proto(&partner), &caller.subject, now)
            .await?;
        self.events.commit(tx).await?;
        Ok(partner)
    }

    async fn update(
        &self,
        caller: &Caller,
        request: pb::UpdatePartnerRequest,
    ) -> Result<Partner, MarketingError> {
        let mut violations = FieldViolations::new();
        let Some(changes) = request.partner else {
            violations.add("partner", "is required");
            return Err(violations.into());
        };
        let paths = request.update_mask.map(|m| m.paths).unwrap_or_default();
        if paths.is_empty() {
            violations.add("update_mask", "is required: name the fields to change");
        }
        for path in &paths {
            if !UPDATABLE_FIELDS.contains(&path.as_str()) {
                violations.add(
                    "update_mask",
                    format!(
                        "{path:?} cannot be changed (changeable: {})",
                        UPDATABLE_FIELDS.join(", ")
                    ),
                );
            }
        }
        let (mut tx, current) = self
            .begin_change("partner.id", &changes.id, &request.etag, violations)
            .await?;
        let id = current.id;
        let mut violations = FieldViolations::new();
        let mut merged = partner_to_proto(&current);
        apply_mask(&mut merged, &changes, &paths);
        let Some(mut draft) = partner_draft(&merged, "partner", &mut violations) else {
            return Err(violations.into());
        };
        let site_ids: Vec<Uuid> = current.draft.sites.iter().filter_map(|s| s.id).collect();
        let contact_ids: Vec<Uuid> = current.draft.contacts.iter().filter_map(|c| c.id).collect();
        for (field, reason) in partner::check_draft(&draft, Some(id), &site_ids, &contact_ids) {
            violations.add(format!("partner.{field}"), reason);
        }
        Self::check_competitors(&mut tx, &draft, &mut violations).await?;
        if !violations.is_empty() {
            return Err(violations.into());
        }
        for site in &mut draft.sites {
            site.id.get_or_insert_with(Uuid::now_v7);
        }
        for contact in &mut draft.contacts {
            contact.id.get_or_insert_with(Uuid::now_v7);
        }
        let updated = Partner {
            draft,
            ..current.next_version(&caller.subject, self.clock.now())
        };
        let changed = changed_fields(&current, &updated, &paths);
        if changed.is_empty() {
            // Nothing differs: no new version, no event.
            tx.rollback().await?;
            return Ok(current);
        }
        self.save_changed(tx, &current, &updated, changed).await
    }

    /// Stores `updated` over `current` (checking the version) and publishes `PartnerUpdated`.
    async fn save_changed(
        &self,
        mut tx: sqlx::Transaction<'static, sqlx::Postgres>,
        current: &Partner,
        updated: &Partner,
        changed: Vec<String>,
    ) -> Result<Partner, MarketingError> {
        if !store::update_partner(&mut tx, updated, current.version).await? {
            return Err(MarketingError::StaleEtag);
        }
        self.events
            .partner_updated(
                &mut tx,
                &partner_to_proto(updated),
                changed,
                &updated.updater,
                updated.update_time,
            )
            .await?;
        self.events.commit(tx).await?;
        Ok(updated.clone())
    }

    /// Opens the transaction of a change to the partner `id` (the request field `id_field`) and
    /// loads it locked, checked against `etag`; `violations` are those the caller already found
    /// in the rest of the request, reported together with these.
    async fn begin_change(
        &self,
        id_field: &str,
        id: &str,
        etag: &str,
        mut violations: FieldViolations,
    ) -> Result<(sqlx::Transaction<'static, sqlx::Postgres>, Partner), MarketingError> {
        let id = violations.check(id_field, values::uuid(id));
        if etag.is_empty() {
            violations.add("etag", "is required: pass the etag read with the partner");
        }
        if !violations.is_empty() {
            return Err(violations.into());
        }
        let id = id.expect("checked above");
        let mut tx = self.pool.begin().await?;
        let current = store::get_partner(&mut tx, id, true)
            .await?
            .ok_or(MarketingError::PartnerNotFound(id))?;
        if current.etag() != etag {
            return Err(MarketingError::StaleEtag);
        }
        Ok((tx, current))
    }

    async fn list(
        &self,
        request: pb::ListPartnersRequest,
    ) -> Result<pb::ListPartnersResponse, Status> {
        let page_size = paging::page_size(request.page_size)?;
        let filter = list_filter(&request)?;
        let mut hasher = DefaultHasher::new();
        filter.hash(&mut hasher);
        let filter_hash = hasher.finish();
        let after: Option<PartnerCursor> = paging::decode_token(&request.page_token, filter_hash)?;
        // One more than asked tells whether another page exists.
        let mut page = store::list_partners(&self.pool, &filter, after.as_ref(), page_size + 1)
            .await
            .map_err(MarketingError::from)?;
        let next_page_token = if page.len() as i64 > page_size {
            page.truncate(usize::try_from(page_size).unwrap_or(usize::MAX));
            page.last()
                .map(|(_, cursor)| paging::encode_token(cursor, filter_hash))
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(pb::ListPartnersResponse {
            partners: page.iter().map(|(p, _)| partner_to_proto(p)).collect(),
            next_page_token,
        })
    }
}

/// The masked `paths` whose values differ between two versions of a partner.
fn changed_fields(before: &Partner, after: &Partner, paths: &[String]) -> Vec<String> {
    let (before, after) = (partner_to_proto(before), partner_to_proto(after));
    paths
        .iter()
        .filter(|path| {
            let only = |p: &pb::Partner| {
                let mut only = pb::Partner::default();
                apply_mask(&mut only, p, std::slice::from_ref(*path));
                only
            };
            only(&before) != only(&after)
        })
        .cloned()
        .collect()
}

/// Escapes `%`, `_` and `\` so user text matches literally in LIKE.
fn like_literal(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

fn list_filter(r: &pb::ListPartnersRequest) -> Result<PartnerFilter, Status> {
    let mut violations = FieldViolations::new();
    let non_empty = |s: &str| {
        let s = s.trim();
        (!s.is_empty()).then(|| s.to_owned())
    };
    let mut money_bound = |field: &str, m: &Option<crm_proto::common::Money>| match m {
        None => (None, None),
        Some(m) if m.units < 0 => {
            violations.add(field, "must not be negative");
            (None, None)
        }
        Some(m) => match values::currency_code(&m.currency_code) {
            Ok(currency) => (Some(m.units), Some(currency)),
            Err(reason) => {
                violations.add(format!("{field}.currency_code"), reason);
                (None, None)
            }
        },
    };
    let (turnover_min, min_currency) = money_bound("turnover_min", &r.turnover_min);
    let (turnover_max, max_currency) = money_bound("turnover_max", &r.turnover_max);
    if let (Some(a), Some(b)) = (&min_currency, &max_currency)
        && a != b
    {
        violations.add(
            "turnover_max.currency_code",
            "must be the currency of turnover_min",
        );
    }
    for (field, value) in [
        ("employees_min", r.employees_min),
        ("employees_max", r.employees_max),
    ] {
        if value.is_some_and(|n| n < 0) {
            violations.add(field, "must not be negative");
        }
    }
    let kind = match pb::PartnerKind::try_from(r.kind) {
        Ok(pb::PartnerKind::Unspecified) => None,
        Ok(pb::PartnerKind::Lead) => Some("lead"),
        Ok(pb::PartnerKind::Customer) => Some("customer"),
        Ok(pb::PartnerKind::Competitor) => Some("competitor"),
        Err(_) => {
            violations.add("kind", format!("{} is not a partner kind", r.kind));
            None
        }
    };
    violations.into_result()?;
    Ok(PartnerFilter {
        name_prefix: non_empty(&r.name_prefix).map(|s| like_literal(&s)),
        name_contains: non_empty(&r.name_contains).map(|s| like_literal(&s)),
        fiscal_code: non_empty(&r.fiscal_code).map(|s| values::normalize_fiscal_code(&s)),
        city: non_empty(&r.city),
        county: non_empty(&r.county),
        turnover_currency: min_currency.or(max_currency),
        turnover_min,
        turnover_max,
        employees_min: r.employees_min,
        employees_max: r.employees_max,
        activity_domain: non_empty(&r.activity_domain),
        kind,
        show_archived: r.show_archived,
    })
}

#[tonic::async_trait]
impl PartnerService for PartnerApi {
    #[tracing::instrument(skip_all, fields(partner.id))]
    async fn create_partner(
        &self,
        request: Request<pb::CreatePartnerRequest>,
    ) -> Result<Response<pb::Partner>, Status> {
        let caller = Caller::of(&request)?.clone();
        caller.require_any_role(WRITERS)?;
        let partner = self.create(&caller, request.into_inner()).await?;
        tracing::Span::current().record("partner.id", tracing::field::display(partner.id));
        Ok(Response::new(partner_to_proto(&partner)))
    }

    #[tracing::instrument(skip_all)]
    async fn get_partner(
        &self,
        request: Request<pb::GetPartnerRequest>,
    ) -> Result<Response<pb::Partner>, Status> {
        Caller::of(&request)?.require_any_role(READERS)?;
        let id = values::uuid(&request.get_ref().id)
            .map_err(|reason| crm_platform::error::invalid_field("id", reason))?;
        let mut conn = self.pool.acquire().await.map_err(MarketingError::from)?;
        let partner = store::get_partner(&mut conn, id, false)
            .await
            .map_err(MarketingError::from)?
            .ok_or(MarketingError::PartnerNotFound(id))?;
        Ok(Response::new(partner_to_proto(&partner)))
    }

    #[tracing::instrument(skip_all)]
    async fn update_partner(
        &self,
        request: Request<pb::UpdatePartnerRequest>,
    ) -> Result<Response<pb::Partner>, Status> {
        let caller = Caller::of(&request)?.clone();
        caller.require_any_role(WRITERS)?;
        let partner = self.update(&caller, request.into_inner()).await?;
        Ok(Response::new(partner_to_proto(&partner)))
    }

    #[tracing::instrument(skip_all)]
    async fn list_partners(
        &self,
        request: Request<pb::ListPartnersRequest>,
    ) -> Result<Response<pb::ListPartnersResponse>, Status> {
        Caller::of(&request)?.require_any_role(READERS)?;
        Ok(Response::new(self.list(request.into_inner()).await?))
    }

    #[tracing::instrument(skip_all)]
    async fn convert_lead(
        &self,
        request: Request<pb::ConvertLeadRequest>,
    ) -> Result<Response<pb::Partner>, Status> {
        let caller = Caller::of(&request)?.clone();
        caller.require_any_role(WRITERS)?;
        let request = request.into_inner();
        let (tx, current) = self
            .begin_change("id", &request.id, &request.etag, FieldViolations::new())
            .await?;
        let now = self.clock.now();
        let mut updated = current.next_version(&caller.subject, now);
        updated
            .convert_lead(now)
            .map_err(|err| MarketingError::FailedPrecondition(err.to_string()))?;
        let updated = self
            .save_changed(
                tx,
                &current,
                &updated,
                vec!["kind".into(), "convert_time".into()],
            )
            .await?;
        Ok(Response::new(partner_to_proto(&updated)))
    }

    #[tracing::instrument(skip_all)]
    async fn archive_partner(
        &self,
        request: Request<pb::ArchivePartnerRequest>,
    ) -> Result<Response<pb::Partner>, Status> {
        let caller = Caller::of(&request)?.clone();
        caller.require_any_role(WRITERS)?;
        let request = request.into_inner();
        let (tx, current) = self
            .begin_change("id", &request.id, &request.etag, FieldViolations::new())
            .await?;
        if current.state == State::Archived {
            return Err(MarketingError::FailedPrecondition(
                "the partner is already archived".into(),
            )
            .into());
        }
        let updated = Partner {
            state: State::Archived,
            ..current.next_version(&caller.subject, self.clock.now())
        };
        let updated = self
            .save_changed(tx, &current, &updated, vec!["state".into()])
            .await?;
        Ok(Response::new(partner_to_proto(&updated)))
    }

    #[tracing::instrument(skip_all)]
    async fn find_partners_by_email(
        &self,
        request: Request<pb::FindPartnersByEmailRequest>,
    ) -> Result<Response<pb::FindPartnersByEmailResponse>, Status> {
        Caller::of(&request)?.require_any_role(READERS)?;
        let email = values::Email::parse(&request.get_ref().email)
            .map_err(|reason| crm_platform::error::invalid_field("email", reason))?;
        let owners = store::find_email_owners(&self.pool, email.as_str())
            .await
            .map_err(MarketingError::from)?;
        let ids: Vec<Uuid> = owners.iter().map(|(partner_id, _)| *partner_id).collect();
        let mut conn = self.pool.acquire().await.map_err(MarketingError::from)?;
        let partners = store::get_partners(&mut conn, &ids)
            .await
            .map_err(MarketingError::from)?;
        let mut matches = Vec::with_capacity(owners.len());
        for partner in &partners {
            for (partner_id, owner) in &owners {
                if *partner_id != partner.id {
                    continue;
                }
                let (owner_kind, owner_id) = match owner {
                    EmailOwner::Site(id) => (pb::EmailOwnerKind::Site, id),
                    EmailOwner::Contact(id) => (pb::EmailOwnerKind::Contact, id),
                };
                matches.push(pb::PartnerEmailMatch {
                    partner: Some(partner_to_proto(partner)),
                    owner_kind: owner_kind as i32,
                    owner_id: owner_id.to_string(),
                });
            }
        }
        Ok(Response::new(pb::FindPartnersByEmailResponse { matches }))
    }
}
