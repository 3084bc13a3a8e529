-- What opportunities knows or keeps as reference data: partners and campaigns (fed by
-- marketing's events), the stage configuration, lost reasons, articles and number series.

-- Idempotency of every creating call: a request id, per user and kind of record, names the
-- record it created. Claimed first in the creating transaction, so a concurrent twin waits on
-- the key until the first commits (or rolls back, taking the claim with it).
CREATE TABLE create_requests (
    kind        TEXT NOT NULL,
    creator     TEXT NOT NULL,
    request_id  TEXT NOT NULL,
    resource_id UUID NOT NULL,
    create_time TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (kind, creator, request_id)
);

-- The partners this service has heard of (PartnerCreated/PartnerUpdated, or fetched once from
-- marketing): what documents print and what creates check.
CREATE TABLE partners (
    id                 UUID PRIMARY KEY,
    kind               TEXT NOT NULL,
    name               TEXT NOT NULL,
    fiscal_code        TEXT NOT NULL DEFAULT '',
    address_lines      TEXT[] NOT NULL DEFAULT '{}',
    email              TEXT NOT NULL DEFAULT '',
    phone              TEXT NOT NULL DEFAULT '',
    archived           BOOLEAN NOT NULL DEFAULT false,
    -- The partner's version in marketing (from its etag): a snapshot older than this one is
    -- ignored, so a late or reclaimed event never undoes a newer one.
    source_version     BIGINT NOT NULL,
    update_time        TIMESTAMPTZ NOT NULL
);

-- The campaigns this service has heard of (CampaignCreated/CampaignUpdated). A campaign named
-- by the marketing service itself before its event arrived is recorded unconfirmed, and
-- completed by the event.
CREATE TABLE campaigns (
    id             UUID PRIMARY KEY,
    name           TEXT NOT NULL DEFAULT '',
    start_date     DATE,
    end_date       DATE,
    status         TEXT NOT NULL DEFAULT '',
    confirmed      BOOLEAN NOT NULL,
    source_version BIGINT NOT NULL DEFAULT 0,
    update_time    TIMESTAMPTZ NOT NULL
);

-- The stage configuration (O2, O3): one row, a JSON document of names, levels and level
-- probabilities (domain::stages::StageConfig).
CREATE TABLE stage_config (
    singleton   BOOLEAN PRIMARY KEY DEFAULT true CHECK (singleton),
    config      JSONB NOT NULL,
    update_time TIMESTAMPTZ NOT NULL,
    version     BIGINT NOT NULL
);
INSERT INTO stage_config (config, update_time, version) VALUES (
    '{"names": {"new": "0 Nou", "presentation": "1 Prezentare", "offer": "2 Ofertă",
                "negotiation": "3 Negociere", "sale": "4 Vânzare", "lost": "X Pierdut"},
      "levels": {"new": "zero", "presentation": "low", "offer": "medium",
                 "negotiation": "high", "sale": "very_high", "lost": "zero"},
      "probabilities": {"zero": 0, "low": 10, "medium": 30, "high": 60, "very_high": 100}}',
    now(), 1);

-- Lost reasons (O5), with the seed's templates.
CREATE TABLE lost_reasons (
    id          UUID PRIMARY KEY,
    name        TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    active      BOOLEAN NOT NULL DEFAULT true,
    sort_order  INT NOT NULL DEFAULT 0,
    create_time TIMESTAMPTZ NOT NULL,
    update_time TIMESTAMPTZ NOT NULL,
    version     BIGINT NOT NULL DEFAULT 1
);
CREATE UNIQUE INDEX lost_reasons_by_name ON lost_reasons (lower(name));
CREATE INDEX lost_reasons_list ON lost_reasons (sort_order, lower(name), id);
INSERT INTO lost_reasons (id, name, description, sort_order, create_time, update_time) VALUES
    ('0190a000-0000-7000-8000-000000000001', 'Concurent prezent',
     'Clientul a ales un concurent prezent la el', 10, now(), now()),
    ('0190a000-0000-7000-8000-000000000002', 'Prețuri prea mari',
     'Oferta noastră a fost prea scumpă', 20, now(), now()),
    ('0190a000-0000-7000-8000-000000000003', 'Fără buget',
     'Clientul nu are buget pentru achiziție', 30, now(), now()),
    ('0190a000-0000-7000-8000-000000000004', 'Fără răspuns',
     'Clientul nu a mai răspuns', 40, now(), now()),
    ('0190a000-0000-7000-8000-000000000005', 'A cumpărat din altă parte',
     'Clientul a cumpărat de la altcineva', 50, now(), now()),
    ('0190a000-0000-7000-8000-000000000006', 'Nevoie amânată',
     'Proiectul clientului a fost amânat sau anulat', 60, now(), now()),
    ('0190a000-0000-7000-8000-000000000007', 'Cerințe neacoperite',
     'Produsul sau serviciul nu acoperă cerințele clientului', 70, now(), now());

-- Articles (O7): products and services used on document lines.
CREATE TABLE articles (
    id          UUID PRIMARY KEY,
    code        TEXT NOT NULL,
    name        TEXT NOT NULL,
    unit        TEXT NOT NULL,
    price_units BIGINT NOT NULL CHECK (price_units >= 0),
    currency    TEXT NOT NULL,
    vat_rate_bp INT NOT NULL CHECK (vat_rate_bp BETWEEN 0 AND 10000),
    kind        TEXT NOT NULL CHECK (kind IN ('product', 'service')),
    description TEXT NOT NULL DEFAULT '',
    -- AttachmentRefs: [{"id", "blob_key", "file_name", "content_type", "size_bytes"}].
    pictures    JSONB NOT NULL DEFAULT '[]',
    active      BOOLEAN NOT NULL DEFAULT true,
    create_time TIMESTAMPTZ NOT NULL,
    update_time TIMESTAMPTZ NOT NULL,
    version     BIGINT NOT NULL DEFAULT 1
);
CREATE UNIQUE INDEX articles_by_code ON articles (lower(code));
CREATE INDEX articles_list ON articles (lower(code) text_pattern_ops, id);

-- Number series (O6). Numbers are taken with the row locked, inside the issuing transaction.
CREATE TABLE number_series (
    id             UUID PRIMARY KEY,
    document_kind  TEXT NOT NULL CHECK (document_kind IN ('offer', 'order', 'contract', 'invoice')),
    prefix         TEXT NOT NULL,
    next_number    BIGINT NOT NULL CHECK (next_number >= 1),
    min_digits     INT NOT NULL CHECK (min_digits BETWEEN 1 AND 12),
    is_default     BOOLEAN NOT NULL,
    active         BOOLEAN NOT NULL DEFAULT true,
    yearly_restart BOOLEAN NOT NULL DEFAULT false,
    counter_year   INT NOT NULL DEFAULT 0,
    create_time    TIMESTAMPTZ NOT NULL,
    update_time    TIMESTAMPTZ NOT NULL,
    version        BIGINT NOT NULL DEFAULT 1,
    UNIQUE (document_kind, prefix)
);
CREATE UNIQUE INDEX number_series_one_default ON number_series (document_kind) WHERE is_default;
INSERT INTO number_series (id, document_kind, prefix, next_number, min_digits, is_default,
                           yearly_restart, create_time, update_time) VALUES
    ('0190a000-0000-7000-8000-0000000000a1', 'offer', 'OF-', 1, 4, true, true, now(), now()),
    ('0190a000-0000-7000-8000-0000000000a2', 'order', 'CMD-', 1, 4, true, true, now(), now()),
    ('0190a000-0000-7000-8000-0000000000a3', 'contract', 'CTR-', 1, 4, true, true, now(), now()),
    ('0190a000-0000-7000-8000-0000000000a4', 'invoice', 'FCT-', 1, 4, true, true, now(), now());
