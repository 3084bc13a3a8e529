//! What tasks publishes through its outbox, each in the transaction of its cause:
//!
//! - events on `crm.events.tasks`: `TaskCreated`, `TaskUpdated`, `TaskResolved`,
//!   `TaskReplyAdded`, `StaffChanged`;
//! - commands on `crm.commands.notifications`: `NotificationRequested` (reminders, follow-up
//!   notices to delegates who do not log in, assignment and reply notices);
//! - commands on `crm.commands.opportunities`: `IssueTaskInvoice` (T9).

use chrono::{DateTime, Utc};
use crm_platform::events::{EventError, Outbox, RelayWaker};
use sqlx::{PgConnection, Postgres, Transaction};
use uuid::Uuid;

/// Tasks' own event stream (before the configured prefix).
pub const STREAM: &str = "crm.events.tasks";
/// The notifications command stream.
pub const NOTIFICATIONS_STREAM: &str = "crm.commands.notifications";
/// Opportunities' command stream (billing).
pub const BILLING_STREAM: &str = "crm.commands.opportunities";
/// Opportunities' events: stage changes, estimates, invoices, billing refusals.
pub const OPPORTUNITIES_STREAM: &str = "crm.events.opportunities";
/// Email import's events: imported messages.
pub const EMAIL_IMPORT_STREAM: &str = "crm.events.email-import";

/// Publishes tasks' events and commands in the caller's transaction.
#[derive(Clone, Debug)]
pub struct Events {
    events: Outbox,
    notifications: Outbox,
    billing: Outbox,
    relay: RelayWaker,
}

impl Events {
    /// Events and commands written to their outboxes, relayed by the relay `relay` wakes.
    pub fn new(events: Outbox, notifications: Outbox, billing: Outbox, relay: RelayWaker) -> Self {
        Self {
            events,
            notifications,
            billing,
            relay,
        }
    }

    /// Adds the event `payload`, about `partner` (if any), caused by `actor` at `at`.
    pub async fn publish<M: prost::Name>(
        &self,
        conn: &mut PgConnection,
        partner: Option<Uuid>,
        actor: &str,
        payload: &M,
        at: DateTime<Utc>,
    ) -> Result<Uuid, EventError> {
        self.events.publish(conn, partner, actor, payload, at).await
    }

    /// Adds a `NotificationRequested` command.
    pub async fn notify(
        &self,
        conn: &mut PgConnection,
        actor: &str,
        command: &crm_proto::events::NotificationRequested,
        at: DateTime<Utc>,
    ) -> Result<Uuid, EventError> {
        let partner = Uuid::parse_str(&command.partner_id).ok();
        self.notifications
            .publish(conn, partner, actor, command, at)
            .await
    }

    /// Adds an `IssueTaskInvoice` command.
    pub async fn bill(
        &self,
        conn: &mut PgConnection,
        actor: &str,
        command: &crm_proto::events::IssueTaskInvoice,
        at: DateTime<Utc>,
    ) -> Result<Uuid, EventError> {
        let partner = Uuid::parse_str(&command.partner_id).ok();
        self.billing
            .publish(conn, partner, actor, command, at)
            .await
    }

    /// Commits a transaction that published and wakes the relay, so they leave now.
    pub async fn commit(&self, tx: Transaction<'_, Postgres>) -> Result<(), sqlx::Error> {
        tx.commit().await?;
        self.relay.wake();
        Ok(())
    }

    /// Wakes the relay after a commit made elsewhere (the consumers' transactions).
    pub fn wake(&self) {
        self.relay.wake();
    }
}
