-- The visible effect of the test event handler: how often each key's event was applied.
CREATE TABLE counters (
    id TEXT PRIMARY KEY,
    n  INT NOT NULL
);
