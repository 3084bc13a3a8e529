-- Partners, their sites and contact persons (SPEC M1, M2).
CREATE TABLE partners (
    id                     UUID PRIMARY KEY,
    kind                   TEXT NOT NULL CHECK (kind IN ('lead', 'customer', 'competitor')),
    name                   TEXT NOT NULL,
    fiscal_code            TEXT NOT NULL DEFAULT '',
    city                   TEXT NOT NULL DEFAULT '',
    county                 TEXT NOT NULL DEFAULT '',
    country                TEXT NOT NULL DEFAULT 'RO',
    turnover_units         BIGINT CHECK (turnover_units >= 0),
    turnover_currency      TEXT,
    employee_count         BIGINT CHECK (employee_count >= 0),
    activity_domain        TEXT NOT NULL DEFAULT '',
    activities_of_interest TEXT[] NOT NULL DEFAULT '{}',
    competitor_ids         UUID[] NOT NULL DEFAULT '{}',
    sales_rep_staff_id     TEXT NOT NULL DEFAULT '',
    service_rep_staff_id   TEXT NOT NULL DEFAULT '',
    state                  TEXT NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'archived')),
    convert_time           TIMESTAMPTZ,
    create_time            TIMESTAMPTZ NOT NULL,
    update_time            TIMESTAMPTZ NOT NULL,
    creator                TEXT NOT NULL,
    updater                TEXT NOT NULL,
    -- Incremented by every change; the etag is derived from it.
    version                BIGINT NOT NULL DEFAULT 1,
    CHECK ((turnover_units IS NULL) = (turnover_currency IS NULL))
);

-- The stable list order (M2) and name-prefix searches.
CREATE INDEX partners_by_name ON partners (lower(name) text_pattern_ops, id);
CREATE INDEX partners_by_fiscal_code ON partners (fiscal_code) WHERE fiscal_code <> '';
CREATE INDEX partners_by_city ON partners (lower(city));
CREATE INDEX partners_by_county ON partners (lower(county));

CREATE TABLE partner_sites (
    id         UUID PRIMARY KEY,
    partner_id UUID NOT NULL REFERENCES partners (id) ON DELETE CASCADE,
    position   INT NOT NULL,
    label      TEXT NOT NULL,
    address    TEXT NOT NULL DEFAULT '',
    city       TEXT NOT NULL DEFAULT '',
    county     TEXT NOT NULL DEFAULT '',
    country    TEXT NOT NULL DEFAULT 'RO',
    email      TEXT NOT NULL DEFAULT '',
    phone      TEXT NOT NULL DEFAULT ''
);
CREATE INDEX partner_sites_by_partner ON partner_sites (partner_id, position);
CREATE INDEX partner_sites_by_email ON partner_sites (lower(email)) WHERE email <> '';

CREATE TABLE partner_contacts (
    id         UUID PRIMARY KEY,
    partner_id UUID NOT NULL REFERENCES partners (id) ON DELETE CASCADE,
    position   INT NOT NULL,
    name       TEXT NOT NULL,
    role       TEXT NOT NULL DEFAULT '',
    email      TEXT NOT NULL DEFAULT '',
    phone      TEXT NOT NULL DEFAULT '',
    site_id    UUID REFERENCES partner_sites (id) ON DELETE SET NULL
);
CREATE INDEX partner_contacts_by_partner ON partner_contacts (partner_id, position);
CREATE INDEX partner_contacts_by_email ON partner_contacts (lower(email)) WHERE email <> '';

-- Idempotency of CreatePartner: a request id, per user, names the partner it created.
CREATE TABLE partner_create_requests (
    creator     TEXT NOT NULL,
    request_id  TEXT NOT NULL,
    -- Deferred: the request id is claimed first (so a concurrent twin waits on the key), the
    -- partner is inserted after it in the same transaction.
    partner_id  UUID NOT NULL REFERENCES partners (id) ON DELETE CASCADE
                DEFERRABLE INITIALLY DEFERRED,
    create_time TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (creator, request_id)
);
