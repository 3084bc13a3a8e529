//! The events marketing publishes, through its outbox, on `crm.events.marketing`.

use chrono::{DateTime, Utc};
use crm_platform::events::{EventError, Outbox};
use crm_proto::{events as ev, marketing as pb};
use sqlx::PgConnection;
use uuid::Uuid;

/// The stream every marketing event goes to (before the configured prefix).
pub const STREAM: &str = "crm.events.marketing";

/// Publishes marketing's events in the caller's transaction.
#[derive(Clone, Debug)]
pub struct Events {
    outbox: Outbox,
}

impl Events {
    /// Events on `stream` (the full name, prefix included).
    pub fn new(stream: String) -> Self {
        Self {
            outbox: Outbox::new("marketing", stream),
        }
    }

    /// `PartnerCreated`.
    pub async fn partner_created(
        &self,
        conn: &mut PgConnection,
        partner: &pb::Partner,
        at: DateTime<Utc>,
    ) -> Result<Uuid, EventError> {
        let payload = ev::PartnerCreated {
            partner: Some(partner.clone()),
        };
        self.outbox
            .publish(conn, partner_id(partner), &payload, at)
            .await
    }

    /// `PartnerUpdated` naming the fields that changed.
    pub async fn partner_updated(
        &self,
        conn: &mut PgConnection,
        partner: &pb::Partner,
        changed_fields: Vec<String>,
        at: DateTime<Utc>,
    ) -> Result<Uuid, EventError> {
        let payload = ev::PartnerUpdated {
            partner: Some(partner.clone()),
            changed_fields,
        };
        self.outbox
            .publish(conn, partner_id(partner), &payload, at)
            .await
    }
}

fn partner_id(partner: &pb::Partner) -> Option<Uuid> {
    Uuid::parse_str(&partner.id).ok()
}
