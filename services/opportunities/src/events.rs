//! The events opportunities publishes (on `crm.events.opportunities`, through its outbox) and
//! those it consumes, each applied once (the platform consumer records the envelope id in the
//! same transaction as the effect):
//!
//! - `crm.events.marketing`: `PartnerCreated`/`PartnerUpdated` keep the partner directory,
//!   `CampaignCreated`/`CampaignUpdated` the campaign catalogue — a snapshot only replaces an
//!   older one, so a late or reclaimed event never wins over a newer one;
//! - `crm.events.tasks`: `TaskCreated` of a follow-up records the task on its stage change (O4);
//! - `crm.commands.opportunities`: `IssueTaskInvoice` bills a resolved task (T9), once per
//!   task and billing attempt.

use chrono::{DateTime, Utc};
use crm_platform::{
    events::{EventError, EventHandler, HandlerError, Outbox, RelayWaker, decode_payload},
    values,
};
use crm_proto::events::{self as ev, Envelope};
use sqlx::{PgConnection, Postgres, Transaction};
use uuid::Uuid;

use crate::{api::OpportunitiesApi, domain::catalogue::Campaign, partners::card_of, store};

/// The stream every opportunities event goes to (before the configured prefix).
pub const STREAM: &str = "crm.events.opportunities";
/// Marketing's events: partners and campaigns.
pub const MARKETING_STREAM: &str = "crm.events.marketing";
/// Tasks' events: follow-up tasks.
pub const TASKS_STREAM: &str = "crm.events.tasks";
/// Commands for opportunities: task billing.
pub const COMMANDS_STREAM: &str = "crm.commands.opportunities";

/// Publishes opportunities' events in the caller's transaction.
#[derive(Clone, Debug)]
pub struct Events {
    outbox: Outbox,
    relay: RelayWaker,
}

impl Events {
    /// Events written to `outbox`, relayed by the relay that `relay` wakes.
    pub fn new(outbox: Outbox, relay: RelayWaker) -> Self {
        Self { outbox, relay }
    }

    /// Adds `payload`, about `partner_id`, caused by `actor` at `at`, to the outbox in `conn`'s
    /// transaction.
    pub async fn publish<M: prost::Name>(
        &self,
        conn: &mut PgConnection,
        partner_id: Uuid,
        actor: &str,
        payload: &M,
        at: DateTime<Utc>,
    ) -> Result<Uuid, EventError> {
        self.outbox
            .publish(conn, Some(partner_id), actor, payload, at)
            .await
    }

    /// Adds `payload`, about no partner, caused by `actor` at `at`, to the outbox in `conn`'s
    /// transaction.
    pub async fn publish_unattached<M: prost::Name>(
        &self,
        conn: &mut PgConnection,
        actor: &str,
        payload: &M,
        at: DateTime<Utc>,
    ) -> Result<Uuid, EventError> {
        self.outbox.publish(conn, None, actor, payload, at).await
    }

    /// Commits a transaction that published events and wakes the relay, so they leave now.
    pub async fn commit(&self, tx: Transaction<'_, Postgres>) -> Result<(), sqlx::Error> {
        tx.commit().await?;
        self.relay.wake();
        Ok(())
    }
}

/// Applies marketing's partner and campaign snapshots.
pub struct MarketingEvents;

impl EventHandler for MarketingEvents {
    async fn handle(&self, tx: &mut PgConnection, envelope: &Envelope) -> Result<(), HandlerError> {
        let at = Utc::now();
        let partner = if let Some(e) = decode_payload::<ev::PartnerCreated>(envelope)? {
            e.partner
        } else if let Some(e) = decode_payload::<ev::PartnerUpdated>(envelope)? {
            e.partner
        } else {
            None
        };
        if let Some(partner) = partner {
            let card = card_of(&partner).ok_or_else(|| {
                HandlerError::permanent(anyhow::anyhow!("partner snapshot without id or etag"))
            })?;
            store::catalogues::upsert_partner(tx, &card, at).await?;
            return Ok(());
        }
        let campaign = if let Some(e) = decode_payload::<ev::CampaignCreated>(envelope)? {
            e.campaign
        } else if let Some(e) = decode_payload::<ev::CampaignUpdated>(envelope)? {
            e.campaign
        } else {
            None
        };
        if let Some(c) = campaign {
            let (Ok(id), Some(version)) = (Uuid::parse_str(&c.id), values::version_of(&c.etag))
            else {
                return Err(HandlerError::permanent(anyhow::anyhow!(
                    "campaign snapshot without id or etag"
                )));
            };
            let start_date = values::date(c.start_date.as_ref()).ok().flatten();
            let end_date = values::date(c.end_date.as_ref()).ok().flatten();
            let status = crm_proto::marketing::CampaignStatus::try_from(c.status)
                .map(|s| {
                    s.as_str_name()
                        .trim_start_matches("CAMPAIGN_STATUS_")
                        .to_ascii_lowercase()
                })
                .unwrap_or_default();
            let campaign = Campaign {
                id,
                name: c.name,
                start_date,
                end_date,
                confirmed: true,
            };
            store::catalogues::upsert_campaign(
                tx,
                &store::catalogues::CampaignSnapshot {
                    campaign: &campaign,
                    status: &status,
                    version,
                },
                at,
            )
            .await?;
        }
        Ok(())
    }
}

/// Records follow-up tasks on the stage changes that asked for them (O4).
pub struct TaskEvents;

impl EventHandler for TaskEvents {
    async fn handle(&self, tx: &mut PgConnection, envelope: &Envelope) -> Result<(), HandlerError> {
        let Some(created) = decode_payload::<ev::TaskCreated>(envelope)? else {
            return Ok(());
        };
        let Some(task) = created.task else {
            return Ok(());
        };
        if task.source != crm_proto::tasks::TaskSource::FollowUp as i32 {
            return Ok(());
        }
        let (Ok(stage_change_id), Ok(task_id)) = (
            Uuid::parse_str(&task.source_reference),
            Uuid::parse_str(&task.id),
        ) else {
            return Err(HandlerError::permanent(anyhow::anyhow!(
                "follow-up task {:?} names no stage change ({:?})",
                task.id,
                task.source_reference
            )));
        };
        if !store::opportunities::set_follow_up_task(tx, stage_change_id, task_id).await? {
            tracing::warn!(%stage_change_id, %task_id, "follow-up task of an unknown stage change");
        }
        Ok(())
    }
}

/// Bills resolved billable tasks (T9).
pub struct BillingCommands {
    /// The API whose document operations issue the estimate and the invoice.
    pub api: OpportunitiesApi,
}

impl EventHandler for BillingCommands {
    async fn handle(&self, tx: &mut PgConnection, envelope: &Envelope) -> Result<(), HandlerError> {
        let Some(command) = decode_payload::<ev::IssueTaskInvoice>(envelope)? else {
            return Ok(());
        };
        let command_id = Uuid::parse_str(&envelope.id).map_err(HandlerError::permanent)?;
        self.api
            .bill_task(tx, &command, command_id, &envelope.actor)
            .await
            .map_err(HandlerError::retry)
    }
}
