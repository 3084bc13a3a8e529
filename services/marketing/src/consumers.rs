//! The events marketing consumes from its siblings: one handler for every stream, because a
//! consumer group hands each event to one consumer of the group, and every effect of one event
//! (a campaign's revenue, a partner's history) must be applied once, together, in the
//! transaction that records the event as processed.
//!
//! - M5, M6: campaign revenues, opportunity counts and the monthly return (`campaigns`).
//! - M8: the partner's history (`history`).
//! - Files: uploads claimed by the records they were attached to (`uploads`).

use crm_platform::events::{EventHandler, HandlerError};
use crm_proto::events::Envelope;
use sqlx::PgConnection;

/// The streams marketing consumes (names without the prefix).
pub const STREAMS: &[&str] = &[
    "crm.events.opportunities",
    "crm.events.tasks",
    "crm.events.notifications",
    "crm.events.email-import",
];

/// Applies one event of a sibling to every projection that needs it.
#[derive(Clone, Debug, Default)]
pub struct SiblingEvents;

impl EventHandler for SiblingEvents {
    async fn handle(&self, tx: &mut PgConnection, envelope: &Envelope) -> Result<(), HandlerError> {
        // Each projection adds its call here, all on the same transaction `tx`.
        crate::uploads::claim(tx, envelope).await?;
        Ok(())
    }
}
