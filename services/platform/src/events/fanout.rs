//! Live streams for clients (DESIGN "Cross-service rules"): every replica reads an event stream
//! itself with `XREAD` — not through a consumer group, which would hand each event to one
//! replica only — and hands each event to the calls streaming on that replica. A client that
//! reconnects resumes from the stream position of the last message it received: positions are
//! Redis stream ids, unique and in publication order, so a replay neither misses nor repeats
//! an event, whatever the events' timestamps.
//!
//! [`FanOut::run`] is the background reader; [`FanOut::subscribe`] gives a call the events read
//! from now on; [`FanOut::range`] reads what came after a position (the replay, or the catch-up
//! of a call that fell behind).

use std::{fmt, str::FromStr, sync::Arc, time::Duration};

use crm_proto::events::Envelope;
use prost::Message as _;
use redis::{
    AsyncCommands as _,
    aio::ConnectionManager,
    streams::{StreamId, StreamRangeReply, StreamReadOptions, StreamReadReply},
};
use tokio::sync::{OnceCell, broadcast, watch};

use super::{ENVELOPE_FIELD, EventError};
use crate::{redis_conn, settings::RedisSettings};

/// How long one `XREAD` waits for news before it is issued again.
const BLOCK_MS: usize = 5_000;
/// Entries read at a time.
const BATCH: usize = 500;

/// A position in a stream: a Redis stream id (`<ms>-<seq>`), ordered as the stream is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamPosition {
    /// Milliseconds since the epoch at which Redis appended the entry.
    pub ms: u64,
    /// Order among the entries of the same millisecond.
    pub seq: u64,
}

impl StreamPosition {
    /// The position before every entry appended at or after `ms`.
    pub fn before_ms(ms: u64) -> Self {
        match ms.checked_sub(1) {
            Some(prev) => Self {
                ms: prev,
                seq: u64::MAX,
            },
            None => Self::default(),
        }
    }
}

impl fmt::Display for StreamPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

impl FromStr for StreamPosition {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not a stream position");
        let (ms, seq) = s.split_once('-').ok_or_else(bad)?;
        Ok(Self {
            ms: ms.parse().map_err(|_| bad())?,
            seq: seq.parse().map_err(|_| bad())?,
        })
    }
}

/// An event read from the stream, with its position.
#[derive(Clone, Debug, PartialEq)]
pub struct FannedEvent {
    /// Where it is in the stream.
    pub position: StreamPosition,
    /// The event (`None` when the entry holds no decodable envelope).
    pub envelope: Option<Envelope>,
}

fn event_of(entry: &StreamId) -> Option<FannedEvent> {
    let position = entry.id.parse().ok()?;
    let raw: Vec<u8> = entry.get(ENVELOPE_FIELD).unwrap_or_default();
    Some(FannedEvent {
        position,
        envelope: Envelope::decode(raw.as_slice()).ok(),
    })
}

/// One stream read by this replica for its live calls. Cheap to clone.
#[derive(Clone)]
pub struct FanOut {
    settings: RedisSettings,
    stream: String,
    sender: broadcast::Sender<Arc<FannedEvent>>,
    queries: Arc<OnceCell<ConnectionManager>>,
}

impl fmt::Debug for FanOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FanOut")
            .field("stream", &self.stream)
            .finish_non_exhaustive()
    }
}

impl FanOut {
    /// The fan-out of `stream` (full name, prefix included) on the Redis of `settings`;
    /// `capacity` events are buffered per call before a slow one falls behind (and catches up
    /// with [`FanOut::range`]).
    pub fn new(settings: &RedisSettings, stream: String, capacity: usize) -> Self {
        Self {
            settings: settings.clone(),
            stream,
            sender: broadcast::channel(capacity.max(1)).0,
            queries: Arc::new(OnceCell::new()),
        }
    }

    /// The stream read.
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// The events read from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<FannedEvent>> {
        self.sender.subscribe()
    }

    async fn connection(&self) -> Result<ConnectionManager, EventError> {
        Ok(self
            .queries
            .get_or_try_init(|| redis_conn::connect(&self.settings))
            .await?
            .clone())
    }

    /// Up to `count` events after `after`, in order.
    pub async fn range(
        &self,
        after: StreamPosition,
        count: usize,
    ) -> Result<Vec<FannedEvent>, EventError> {
        let mut redis = self.connection().await?;
        let reply: StreamRangeReply = redis
            .xrange_count(&self.stream, format!("({after}"), "+", count)
            .await?;
        Ok(reply.ids.iter().filter_map(event_of).collect())
    }

    /// The positions of the first and last entries, or `None` when the stream is empty.
    pub async fn bounds(&self) -> Result<Option<(StreamPosition, StreamPosition)>, EventError> {
        let mut redis = self.connection().await?;
        let first: StreamRangeReply = redis.xrange_count(&self.stream, "-", "+", 1).await?;
        let last: StreamRangeReply = redis.xrevrange_count(&self.stream, "+", "-", 1).await?;
        let parse = |r: &StreamRangeReply| r.ids.first().and_then(|e| e.id.parse().ok());
        Ok(parse(&first).zip(parse(&last)))
    }

    /// The position of the latest entry removed from the stream (by trimming), if any: a
    /// position before it may have lost entries and cannot be replayed faithfully.
    pub async fn max_deleted(&self) -> Result<Option<StreamPosition>, EventError> {
        let mut redis = self.connection().await?;
        let exists: bool = redis.exists(&self.stream).await?;
        if !exists {
            // No stream yet: nothing was ever deleted.
            return Ok(None);
        }
        let info: redis::Value = redis::cmd("XINFO")
            .arg("STREAM")
            .arg(&self.stream)
            .query_async(&mut redis)
            .await?;
        let pairs: Vec<(redis::Value, redis::Value)> = match info {
            redis::Value::Map(pairs) => pairs,
            redis::Value::Array(items) => items
                .chunks(2)
                .filter_map(|pair| match pair {
                    [k, v] => Some((k.clone(), v.clone())),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        let text = |v: &redis::Value| redis::from_redis_value_ref::<String>(v).ok();
        Ok(pairs
            .iter()
            .find(|(k, _)| text(k).as_deref() == Some("max-deleted-entry-id"))
            .and_then(|(_, v)| text(v))
            .and_then(|id| id.parse::<StreamPosition>().ok())
            .filter(|p| *p != StreamPosition::default()))
    }

    /// Reads from `last` (the stream's end when unknown) until Redis fails.
    async fn read(
        &self,
        last: &mut Option<StreamPosition>,
    ) -> Result<std::convert::Infallible, EventError> {
        let mut redis = redis_conn::connect(&self.settings).await?;
        if last.is_none() {
            *last = Some(
                self.bounds()
                    .await?
                    .map_or_else(StreamPosition::default, |b| b.1),
            );
        }
        loop {
            let from = last.unwrap_or_default().to_string();
            let reply: Option<StreamReadReply> = redis
                .xread_options(
                    &[&self.stream],
                    &[&from],
                    &StreamReadOptions::default().block(BLOCK_MS).count(BATCH),
                )
                .await?;
            for entry in reply.iter().flat_map(|r| &r.keys).flat_map(|k| &k.ids) {
                if let Some(event) = event_of(entry) {
                    *last = Some(event.position);
                    // No subscriber is not an error: nobody is watching right now.
                    let _ = self.sender.send(Arc::new(event));
                }
            }
        }
    }

    /// Reads the stream until `stop`, handing every event to the subscribed calls. Starts at
    /// the stream's end; after a lost connection it goes on from the last event read, so
    /// nothing published meanwhile is skipped.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut last: Option<StreamPosition> = None;
        let mut backoff = Duration::from_millis(100);
        loop {
            if *stop.borrow() {
                return;
            }
            let read = self.read(&mut last);
            tokio::select! {
                Err(err) = read => {
                    tracing::warn!(
                        stream = %self.stream,
                        error = %err,
                        "live stream reader failed; reconnecting"
                    );
                }
                _ = stop.wait_for(|s| *s) => return,
            }
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_order_like_the_stream() {
        let a: StreamPosition = "1700000000000-0".parse().unwrap();
        let b: StreamPosition = "1700000000000-1".parse().unwrap();
        let c: StreamPosition = "1700000000001-0".parse().unwrap();
        assert!(a < b && b < c);
        assert_eq!(b.to_string(), "1700000000000-1");
        assert!("x-1".parse::<StreamPosition>().is_err());
        assert!(StreamPosition::before_ms(1_700_000_000_001) < c);
        assert!(StreamPosition::before_ms(1_700_000_000_001) > b);
    }
}
