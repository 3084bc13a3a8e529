-- The sales documents (O6, O8): offers, orders, contracts, invoices, their lines, payments,
-- renderings, and the billing of tasks (T9). Every document table has the same common columns
-- (number … version); the totals are the sums of the lines' rounded amounts, kept on the
-- document for balances and lists.

CREATE TABLE offers (
    id                   UUID PRIMARY KEY,
    number               TEXT UNIQUE,
    series_id            UUID REFERENCES number_series (id),
    partner_id           UUID NOT NULL,
    opportunity_id       UUID REFERENCES opportunities (id),
    campaign_id          UUID,
    currency             TEXT NOT NULL,
    total_without_vat    BIGINT NOT NULL DEFAULT 0,
    total_vat            BIGINT NOT NULL DEFAULT 0,
    total_with_vat       BIGINT NOT NULL DEFAULT 0,
    notes                TEXT NOT NULL DEFAULT '',
    attachments          JSONB NOT NULL DEFAULT '[]',
    -- The customer's details frozen when the document was issued (null while a draft).
    customer             JSONB,
    create_time          TIMESTAMPTZ NOT NULL,
    update_time          TIMESTAMPTZ NOT NULL,
    creator              TEXT NOT NULL,
    updater              TEXT NOT NULL,
    version              BIGINT NOT NULL DEFAULT 1,
    status               TEXT NOT NULL,
    purpose              TEXT NOT NULL,
    task_id              UUID,
    task_billing_attempt INT,
    offer_date           DATE,
    valid_until          DATE,
    contact_person_id    UUID,
    issue_time           TIMESTAMPTZ,
    status_note          TEXT NOT NULL DEFAULT ''
);
CREATE INDEX offers_list ON offers (create_time DESC, id DESC);
CREATE INDEX offers_by_partner ON offers (partner_id, create_time DESC, id DESC);
CREATE INDEX offers_by_opportunity ON offers (opportunity_id) WHERE opportunity_id IS NOT NULL;

CREATE TABLE orders (
    id                       UUID PRIMARY KEY,
    number                   TEXT UNIQUE,
    series_id                UUID REFERENCES number_series (id),
    partner_id               UUID NOT NULL,
    opportunity_id           UUID REFERENCES opportunities (id),
    campaign_id              UUID,
    currency                 TEXT NOT NULL,
    total_without_vat        BIGINT NOT NULL DEFAULT 0,
    total_vat                BIGINT NOT NULL DEFAULT 0,
    total_with_vat           BIGINT NOT NULL DEFAULT 0,
    notes                    TEXT NOT NULL DEFAULT '',
    attachments              JSONB NOT NULL DEFAULT '[]',
    customer                 JSONB,
    create_time              TIMESTAMPTZ NOT NULL,
    update_time              TIMESTAMPTZ NOT NULL,
    creator                  TEXT NOT NULL,
    updater                  TEXT NOT NULL,
    version                  BIGINT NOT NULL DEFAULT 1,
    status                   TEXT NOT NULL,
    offer_id                 UUID REFERENCES offers (id),
    add_to_campaign_revenues BOOLEAN NOT NULL DEFAULT false,
    order_date               DATE,
    delivery_date            DATE,
    customer_reference       TEXT NOT NULL DEFAULT '',
    confirm_time             TIMESTAMPTZ,
    status_note              TEXT NOT NULL DEFAULT ''
);
CREATE INDEX orders_list ON orders (create_time DESC, id DESC);
CREATE INDEX orders_by_partner ON orders (partner_id, create_time DESC, id DESC);
CREATE INDEX orders_by_opportunity ON orders (opportunity_id) WHERE opportunity_id IS NOT NULL;

CREATE TABLE contracts (
    id                UUID PRIMARY KEY,
    number            TEXT UNIQUE,
    series_id         UUID REFERENCES number_series (id),
    partner_id        UUID NOT NULL,
    opportunity_id    UUID REFERENCES opportunities (id),
    campaign_id       UUID,
    currency          TEXT NOT NULL,
    total_without_vat BIGINT NOT NULL DEFAULT 0,
    total_vat         BIGINT NOT NULL DEFAULT 0,
    total_with_vat    BIGINT NOT NULL DEFAULT 0,
    notes             TEXT NOT NULL DEFAULT '',
    attachments       JSONB NOT NULL DEFAULT '[]',
    customer          JSONB,
    create_time       TIMESTAMPTZ NOT NULL,
    update_time       TIMESTAMPTZ NOT NULL,
    creator           TEXT NOT NULL,
    updater           TEXT NOT NULL,
    version           BIGINT NOT NULL DEFAULT 1,
    status            TEXT NOT NULL,
    kind              TEXT NOT NULL,
    order_id          UUID REFERENCES orders (id),
    offer_id          UUID REFERENCES offers (id),
    task_id           UUID,
    signing_date      DATE,
    start_date        DATE,
    end_date          DATE,
    termination_date  DATE,
    billing_day       INT NOT NULL DEFAULT 0 CHECK (billing_day BETWEEN 0 AND 28),
    status_note       TEXT NOT NULL DEFAULT ''
);
CREATE INDEX contracts_list ON contracts (create_time DESC, id DESC);
CREATE INDEX contracts_by_opportunity ON contracts (opportunity_id) WHERE opportunity_id IS NOT NULL;
-- Coverage (O9) and subscription billing look at binding contracts of a partner by start.
CREATE INDEX contracts_binding ON contracts (partner_id, start_date DESC, id DESC)
    WHERE status IN ('signed', 'terminated');
-- One contract drafted per task (T7).
CREATE UNIQUE INDEX contracts_one_per_task ON contracts (task_id) WHERE task_id IS NOT NULL;

CREATE TABLE invoices (
    id                   UUID PRIMARY KEY,
    number               TEXT UNIQUE,
    series_id            UUID REFERENCES number_series (id),
    partner_id           UUID NOT NULL,
    opportunity_id       UUID REFERENCES opportunities (id),
    campaign_id          UUID,
    currency             TEXT NOT NULL,
    total_without_vat    BIGINT NOT NULL DEFAULT 0,
    total_vat            BIGINT NOT NULL DEFAULT 0,
    total_with_vat       BIGINT NOT NULL DEFAULT 0,
    notes                TEXT NOT NULL DEFAULT '',
    attachments          JSONB NOT NULL DEFAULT '[]',
    customer             JSONB,
    create_time          TIMESTAMPTZ NOT NULL,
    update_time          TIMESTAMPTZ NOT NULL,
    creator              TEXT NOT NULL,
    updater              TEXT NOT NULL,
    version              BIGINT NOT NULL DEFAULT 1,
    status               TEXT NOT NULL,
    source               TEXT NOT NULL,
    order_id             UUID REFERENCES orders (id),
    contract_id          UUID REFERENCES contracts (id),
    billing_month        DATE,
    task_id              UUID,
    task_billing_attempt INT,
    estimate_offer_id    UUID REFERENCES offers (id),
    invoice_date         DATE,
    due_date             DATE,
    issue_time           TIMESTAMPTZ,
    status_note          TEXT NOT NULL DEFAULT ''
);
CREATE INDEX invoices_list ON invoices (create_time DESC, id DESC);
CREATE INDEX invoices_by_partner ON invoices (partner_id, create_time DESC, id DESC);
CREATE INDEX invoices_by_order ON invoices (order_id) WHERE order_id IS NOT NULL;
CREATE INDEX invoices_by_opportunity ON invoices (opportunity_id) WHERE opportunity_id IS NOT NULL;
-- One invoice per subscription contract and month, and per task billing attempt.
CREATE UNIQUE INDEX invoices_one_per_contract_month ON invoices (contract_id, billing_month)
    WHERE contract_id IS NOT NULL AND status <> 'cancelled';
CREATE UNIQUE INDEX invoices_one_per_task_attempt ON invoices (task_id, task_billing_attempt)
    WHERE task_id IS NOT NULL;
-- Balances: a partner's issued invoices by date.
CREATE INDEX invoices_balance ON invoices (partner_id, invoice_date)
    WHERE status = 'issued';

-- The lines of every document (the document id is unique across kinds: UUIDv7).
CREATE TABLE document_lines (
    id                 UUID PRIMARY KEY,
    document_id        UUID NOT NULL,
    position           INT NOT NULL,
    article_id         UUID NOT NULL REFERENCES articles (id),
    article_code       TEXT NOT NULL,
    description        TEXT NOT NULL,
    unit               TEXT NOT NULL,
    quantity_milli     BIGINT NOT NULL CHECK (quantity_milli > 0),
    unit_price_units   BIGINT NOT NULL CHECK (unit_price_units >= 0),
    vat_rate_bp        INT NOT NULL CHECK (vat_rate_bp BETWEEN 0 AND 10000),
    discount_bp        INT NOT NULL CHECK (discount_bp BETWEEN 0 AND 10000),
    amount_without_vat BIGINT NOT NULL,
    vat_amount         BIGINT NOT NULL,
    amount_with_vat    BIGINT NOT NULL,
    source_line_id     UUID
);
CREATE INDEX document_lines_by_document ON document_lines (document_id, position);
CREATE INDEX document_lines_by_source ON document_lines (source_line_id)
    WHERE source_line_id IS NOT NULL;
-- Coverage (O9): which documents have a line of an article.
CREATE INDEX document_lines_by_article ON document_lines (article_id, document_id);

CREATE TABLE payments (
    id           UUID PRIMARY KEY,
    partner_id   UUID NOT NULL,
    amount_units BIGINT NOT NULL CHECK (amount_units > 0),
    currency     TEXT NOT NULL,
    payment_date DATE NOT NULL,
    method       TEXT NOT NULL,
    reference    TEXT NOT NULL DEFAULT '',
    notes        TEXT NOT NULL DEFAULT '',
    status       TEXT NOT NULL,
    cancel_reason TEXT NOT NULL DEFAULT '',
    create_time  TIMESTAMPTZ NOT NULL,
    update_time  TIMESTAMPTZ NOT NULL,
    creator      TEXT NOT NULL,
    version      BIGINT NOT NULL DEFAULT 1
);
CREATE INDEX payments_list ON payments (create_time DESC, id DESC);
CREATE INDEX payments_by_partner ON payments (partner_id, payment_date) WHERE status = 'recorded';

CREATE TABLE payment_allocations (
    payment_id   UUID NOT NULL REFERENCES payments (id),
    invoice_id   UUID NOT NULL REFERENCES invoices (id),
    position     INT NOT NULL,
    amount_units BIGINT NOT NULL CHECK (amount_units > 0),
    PRIMARY KEY (payment_id, invoice_id)
);
CREATE INDEX payment_allocations_by_invoice ON payment_allocations (invoice_id);

-- Renderings (O6, N2): the same document version in the same format is the same file.
CREATE TABLE renderings (
    document_id  UUID NOT NULL,
    version      BIGINT NOT NULL,
    format       TEXT NOT NULL,
    blob_key     TEXT NOT NULL,
    file_name    TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size_bytes   BIGINT NOT NULL,
    render_time  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (document_id, version, format)
);

-- The outcome of each IssueTaskInvoice command (T9): once per task and billing attempt.
CREATE TABLE task_billings (
    task_id         UUID NOT NULL,
    billing_attempt INT NOT NULL,
    command_id      UUID NOT NULL,
    outcome         TEXT NOT NULL CHECK (outcome IN ('invoiced', 'rejected')),
    offer_id        UUID REFERENCES offers (id),
    invoice_id      UUID REFERENCES invoices (id),
    reason          TEXT NOT NULL DEFAULT '',
    create_time     TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (task_id, billing_attempt)
);
