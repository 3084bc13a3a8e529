//! The partners opportunities knows: its own directory, fed by marketing's `PartnerCreated` and
//! `PartnerUpdated`, and marketing's `GetPartner` for a partner the directory has not heard of
//! yet (created before this service ran, or just now, ahead of its event).

use std::time::Duration;

use chrono::Utc;
use crm_platform::{auth::ServiceCallInterceptor, values};
use crm_proto::marketing::{self as pb, partner_service_client::PartnerServiceClient};
use sqlx::{PgConnection, PgPool};
use tonic::{Code, codegen::InterceptedService, transport::Channel};
use uuid::Uuid;

use crm_platform::settings::SiblingSettings;

use crate::{
    domain::catalogue::PartnerCard,
    error::{OpportunitiesError, Result},
    store,
};

/// Finds partners: the directory first, then marketing.
#[derive(Clone)]
pub struct Partners {
    pool: PgPool,
    marketing: PartnerServiceClient<InterceptedService<Channel, ServiceCallInterceptor>>,
    timeout: Duration,
}

impl Partners {
    /// Partners from `pool`'s directory, asking marketing (per `settings`) with `calls`.
    pub fn new(
        pool: PgPool,
        settings: &SiblingSettings,
        calls: ServiceCallInterceptor,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            pool,
            marketing: PartnerServiceClient::with_interceptor(settings.channel()?, calls),
            timeout: settings.timeout(),
        })
    }

    /// The partner `id`, named by request field `field`: INVALID_ARGUMENT when it does not
    /// exist or may not get opportunities and documents (a competitor, archived); UNAVAILABLE
    /// when only marketing could tell and it does not answer.
    pub async fn usable(&self, id: Uuid, field: &str) -> Result<PartnerCard> {
        let card = self
            .find(id)
            .await?
            .ok_or_else(|| OpportunitiesError::invalid(field, "no such partner"))?;
        card.check_usable()
            .map_err(|reason| OpportunitiesError::invalid(field, reason))?;
        Ok(card)
    }

    /// The partner `id` as known now: from the directory, or fetched from marketing and kept.
    pub async fn find(&self, id: Uuid) -> Result<Option<PartnerCard>> {
        let mut conn = self.pool.acquire().await?;
        if let Some(card) = store::catalogues::get_partner(&mut conn, id).await? {
            return Ok(Some(card));
        }
        drop(conn);
        let Some(card) = self.ask_marketing(id).await? else {
            return Ok(None);
        };
        let mut conn = self.pool.acquire().await?;
        store::catalogues::upsert_partner(&mut conn, &card, Utc::now()).await?;
        Ok(Some(card))
    }

    /// [`Self::usable`] on `conn`, a connection the caller already holds. A call that holds a
    /// connection must not take a second one from the pool: once every connection is held by
    /// a call waiting for its second, none is ever given back (`cargo xtask bench` saw it with
    /// 32 CreateInvoice calls on a pool of 20: every call waited out the acquire timeout).
    pub async fn usable_on(
        &self,
        conn: &mut PgConnection,
        id: Uuid,
        field: &str,
    ) -> Result<PartnerCard> {
        let card = self
            .find_on(conn, id)
            .await?
            .ok_or_else(|| OpportunitiesError::invalid(field, "no such partner"))?;
        card.check_usable()
            .map_err(|reason| OpportunitiesError::invalid(field, reason))?;
        Ok(card)
    }

    /// [`Self::find`] on `conn`, a connection the caller already holds (see
    /// [`Self::usable_on`]); it stays held while marketing is asked.
    pub async fn find_on(&self, conn: &mut PgConnection, id: Uuid) -> Result<Option<PartnerCard>> {
        if let Some(card) = store::catalogues::get_partner(conn, id).await? {
            return Ok(Some(card));
        }
        let Some(card) = self.ask_marketing(id).await? else {
            return Ok(None);
        };
        store::catalogues::upsert_partner(conn, &card, Utc::now()).await?;
        Ok(Some(card))
    }

    /// Marketing's snapshot of partner `id`; `None` when marketing does not know it.
    async fn ask_marketing(&self, id: Uuid) -> Result<Option<PartnerCard>> {
        let mut request = tonic::Request::new(pb::GetPartnerRequest { id: id.to_string() });
        request.set_timeout(self.timeout);
        let partner = match self.marketing.clone().get_partner(request).await {
            Ok(response) => response.into_inner(),
            Err(status) if status.code() == Code::NotFound => return Ok(None),
            Err(status) => {
                tracing::warn!(error = %status, "marketing did not answer a partner lookup");
                return Err(OpportunitiesError::Unavailable(
                    "the partner is not known here yet and marketing is unavailable; try again"
                        .into(),
                ));
            }
        };
        card_of(&partner).map(Some).ok_or_else(|| {
            OpportunitiesError::Unavailable("marketing answered an unreadable partner".into())
        })
    }
}

/// What the directory keeps of a partner snapshot: the head office (or first site) gives the
/// address, email and phone. `None` when the snapshot has no id or etag.
pub fn card_of(p: &pb::Partner) -> Option<PartnerCard> {
    let id = Uuid::parse_str(&p.id).ok()?;
    let version = values::version_of(&p.etag)?;
    let site = p
        .sites
        .iter()
        .find(|s| s.head_office)
        .or_else(|| p.sites.first());
    let mut address_lines = Vec::new();
    let city = site.map_or(p.city.as_str(), |s| s.city.as_str());
    let county = site.map_or(p.county.as_str(), |s| s.county.as_str());
    let country = site.map_or(p.country.as_str(), |s| s.country.as_str());
    if let Some(site) = site
        && !site.address.trim().is_empty()
    {
        address_lines.push(site.address.trim().to_owned());
    }
    let place = [city.trim(), county.trim()]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(", ");
    if !place.is_empty() {
        address_lines.push(place);
    }
    if !country.trim().is_empty() {
        address_lines.push(country.trim().to_owned());
    }
    let kind = match pb::PartnerKind::try_from(p.kind) {
        Ok(pb::PartnerKind::Lead) => "lead",
        Ok(pb::PartnerKind::Competitor) => "competitor",
        _ => "customer",
    };
    Some(PartnerCard {
        id,
        kind: kind.to_owned(),
        name: p.name.clone(),
        fiscal_code: p.fiscal_code.clone(),
        address_lines,
        email: site.map(|s| s.email.clone()).unwrap_or_default(),
        phone: site.map(|s| s.phone.clone()).unwrap_or_default(),
        archived: p.state == pb::PartnerState::Archived as i32,
        source_version: version,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_head_office_gives_the_address() {
        let partner = pb::Partner {
            id: Uuid::now_v7().to_string(),
            kind: pb::PartnerKind::Customer as i32,
            name: "Șțefănescu Îngrășăminte SRL".into(),
            fiscal_code: "RO18547290".into(),
            city: "Cluj-Napoca".into(),
            etag: "W/\"3\"".into(),
            sites: vec![
                pb::Site {
                    label: "Depozit".into(),
                    city: "Turda".into(),
                    ..Default::default()
                },
                pb::Site {
                    label: "Sediu".into(),
                    address: "Str. Fabricii 5".into(),
                    city: "Cluj-Napoca".into(),
                    county: "Cluj".into(),
                    country: "RO".into(),
                    email: "office@sti.ro".into(),
                    head_office: true,
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let card = card_of(&partner).unwrap();
        assert_eq!(
            card.address_lines,
            ["Str. Fabricii 5", "Cluj-Napoca, Cluj", "RO"]
        );
        assert_eq!(card.email, "office@sti.ro");
        assert_eq!(card.source_version, 3);
        assert_eq!(card.kind, "customer");
        assert!(card_of(&pb::Partner::default()).is_none());
    }
}
