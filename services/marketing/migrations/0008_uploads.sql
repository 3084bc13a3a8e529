-- Uploaded files (DESIGN "Files"): the file service keeps each upload until a record claims it
-- (a FilesAttached event of the owning service) or a day has passed, when it is collected.
CREATE TABLE uploads (
    id           UUID PRIMARY KEY,
    blob_key     TEXT NOT NULL,
    file_name    TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size_bytes   BIGINT NOT NULL CHECK (size_bytes >= 0),
    uploader     TEXT NOT NULL,
    create_time  TIMESTAMPTZ NOT NULL,
    -- Whether this upload brought the bytes into the store: only then may collecting it delete
    -- them (the same content may already be there for another record).
    blob_was_new BOOLEAN NOT NULL,
    claim_time   TIMESTAMPTZ
);
CREATE INDEX uploads_by_blob ON uploads (blob_key);
CREATE INDEX uploads_unclaimed ON uploads (create_time) WHERE claim_time IS NULL;
