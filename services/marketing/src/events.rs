//! The events marketing publishes, through its outbox, on `crm.events.marketing`.

use chrono::{DateTime, Utc};
use crm_platform::events::{EventError, Outbox, RelayWaker};
use crm_proto::{events as ev, marketing as pb};
use sqlx::{PgConnection, Postgres, Transaction};
use uuid::Uuid;

/// The stream every marketing event goes to (before the configured prefix).
pub const STREAM: &str = "crm.events.marketing";

/// Publishes marketing's events in the caller's transaction.
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

    /// Commits a transaction that published events and wakes the relay, so they leave now.
    pub async fn commit(&self, tx: Transaction<'_, Postgres>) -> Result<(), sqlx::Error> {
        tx.commit().await?;
        self.relay.wake();
        Ok(())
    }

    /// `PartnerCreated`, caused by `actor`.
    pub async fn partner_created(
        &self,
        conn: &mut PgConnection,
        partner: &pb::Partner,
        actor: &str,
        at: DateTime<Utc>,
    ) -> Result<Uuid, EventError> {
        let payload = ev::PartnerCreated {
            partner: Some(partner.clone()),
        };
        self.outbox
            .publish(conn, partner_id(partner), actor, &payload, at)
            .await
    }

    /// `PartnerUpdated` naming the fields that changed, caused by `actor`.
    pub async fn partner_updated(
        &self,
        conn: &mut PgConnection,
        partner: &pb::Partner,
        changed_fields: Vec<String>,
        actor: &str,
        at: DateTime<Utc>,
    ) -> Result<Uuid, EventError> {
        let payload = ev::PartnerUpdated {
            partner: Some(partner.clone()),
            changed_fields,
        };
        self.outbox
            .publish(conn, partner_id(partner), actor, &payload, at)
            .await
    }
}

fn partner_id(partner: &pb::Partner) -> Option<Uuid> {
    Uuid::parse_str(&partner.id).ok()
}
