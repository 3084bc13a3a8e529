-- The transactional outbox: a service inserts its events here in the same transaction as the
-- change they describe; the relay copies them to Redis Streams in `position` order.
CREATE TABLE outbox (
    position     BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id     UUID NOT NULL UNIQUE,
    stream       TEXT NOT NULL,
    event_type   TEXT NOT NULL,
    envelope     BYTEA NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    published_at TIMESTAMPTZ
);

-- The relay only ever looks for rows not yet published.
CREATE INDEX outbox_unpublished ON outbox (position) WHERE published_at IS NULL;

-- Events a consumer has applied, recorded in the same transaction as their effect, so a
-- redelivered event is recognised and skipped.
CREATE TABLE processed_events (
    consumer     TEXT NOT NULL,
    event_id     UUID NOT NULL,
    processed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);
