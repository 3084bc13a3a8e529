//! The file service's bookkeeping: uploads claimed by records (`FilesAttached` events of the
//! services that own records) and the collection of uploads no record claimed within a day
//! (DESIGN "Files").

use std::time::Duration;

use crm_platform::{
    blob::BlobStore,
    clock::Clock,
    events::{HandlerError, decode_payload},
};
use crm_proto::events::{self as ev, Envelope};
use sqlx::{PgConnection, PgPool};
use tokio::sync::watch;

use crate::{api::CLAIM_WINDOW, store};

/// Uploads removed per round of collection.
const BATCH: i64 = 500;

/// Claims the uploads a `FilesAttached` event names, in the consumer's transaction.
pub async fn claim(tx: &mut PgConnection, envelope: &Envelope) -> Result<(), HandlerError> {
    if let Some(attached) = decode_payload::<ev::FilesAttached>(envelope)? {
        let at = chrono::Utc::now();
        store::files::claim_uploads(tx, &attached.blob_keys, at).await?;
    }
    Ok(())
}

/// Collects unclaimed uploads older than the claim window, every `interval`, until `stop`.
pub async fn collect(
    pool: PgPool,
    blobs: BlobStore,
    clock: Clock,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        if let Err(err) = collect_once(&pool, &blobs, &clock).await {
            tracing::warn!(error = %err, "collecting unclaimed uploads failed; retrying later");
        }
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
    }
}

/// One round: removes the expired uploads (in batches) and deletes the bytes that only they
/// brought. Returns how many blobs were deleted.
pub async fn collect_once(
    pool: &PgPool,
    blobs: &BlobStore,
    clock: &Clock,
) -> anyhow::Result<usize> {
    let before = clock.now() - chrono::Duration::from_std(CLAIM_WINDOW)?;
    let mut deleted = 0;
    loop {
        let mut tx = pool.begin().await?;
        let (removed, keys) = store::files::collect_unclaimed(&mut tx, before, BATCH).await?;
        // Bytes go only after the rows are gone for good: a failure in between leaves bytes
        // without an upload (harmless), never an upload without bytes.
        tx.commit().await?;
        for key in &keys {
            blobs.delete(key).await?;
            deleted += 1;
        }
        if removed < BATCH {
            break;
        }
    }
    if deleted > 0 {
        tracing::info!(deleted, "unclaimed uploads collected");
    }
    Ok(deleted)
}
