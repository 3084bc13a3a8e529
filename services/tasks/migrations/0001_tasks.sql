-- The tasks service: staff and categories (T1), post-sale services (T7), reminder settings and
-- reminders (T8), tasks (T2, T9), replies (T4) and broadcasts (T5).

-- Idempotency of every creating call (see crm_platform::db::claim_request).
CREATE TABLE create_requests (
    kind        TEXT NOT NULL,
    creator     TEXT NOT NULL,
    request_id  TEXT NOT NULL,
    resource_id UUID NOT NULL,
    create_time TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (kind, creator, request_id)
);

CREATE TABLE staff_categories (
    id          UUID PRIMARY KEY,
    name        TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    create_time TIMESTAMPTZ NOT NULL,
    update_time TIMESTAMPTZ NOT NULL,
    version     BIGINT NOT NULL
);
CREATE UNIQUE INDEX staff_categories_name_unique ON staff_categories (lower(name));

CREATE TABLE staff (
    id                        UUID PRIMARY KEY,
    name                      TEXT NOT NULL,
    email                     TEXT NOT NULL DEFAULT '',
    -- The token subject of the user; NULL when the staff member does not log in.
    user_name                 TEXT UNIQUE,
    available_minutes_per_day INTEGER NOT NULL CHECK (available_minutes_per_day BETWEEN 0 AND 1440),
    work_start_minute         INTEGER NOT NULL CHECK (work_start_minute BETWEEN 0 AND 1439),
    work_end_minute           INTEGER NOT NULL CHECK (work_end_minute BETWEEN 1 AND 1440),
    -- ISO weekdays, 1 = Monday.
    working_weekdays          INTEGER[] NOT NULL,
    phone                     TEXT NOT NULL DEFAULT '',
    active                    BOOLEAN NOT NULL,
    create_time               TIMESTAMPTZ NOT NULL,
    update_time               TIMESTAMPTZ NOT NULL,
    version                   BIGINT NOT NULL,
    CHECK (work_end_minute > work_start_minute)
);
CREATE INDEX staff_by_name ON staff (lower(name), id);
CREATE INDEX staff_by_email ON staff (lower(email)) WHERE email <> '';

CREATE TABLE staff_category_members (
    category_id UUID NOT NULL REFERENCES staff_categories (id),
    staff_id    UUID NOT NULL REFERENCES staff (id),
    PRIMARY KEY (category_id, staff_id)
);
CREATE INDEX staff_category_members_by_staff ON staff_category_members (staff_id);

CREATE TABLE post_sale_services (
    id                   UUID PRIMARY KEY,
    name                 TEXT NOT NULL,
    description          TEXT NOT NULL DEFAULT '',
    article_id           UUID NOT NULL,
    hourly_rate_units    BIGINT NOT NULL CHECK (hourly_rate_units >= 0),
    hourly_rate_currency TEXT NOT NULL,
    active               BOOLEAN NOT NULL,
    create_time          TIMESTAMPTZ NOT NULL,
    update_time          TIMESTAMPTZ NOT NULL,
    version              BIGINT NOT NULL
);
CREATE UNIQUE INDEX post_sale_services_name_unique ON post_sale_services (lower(name));

-- One row: the company's reminder settings.
CREATE TABLE reminder_settings (
    singleton           BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    send_in_app         BOOLEAN NOT NULL,
    send_email          BOOLEAN NOT NULL,
    default_days_before INTEGER NOT NULL CHECK (default_days_before BETWEEN 0 AND 3),
    send_at_minute      INTEGER NOT NULL CHECK (send_at_minute BETWEEN 0 AND 1439),
    update_time         TIMESTAMPTZ NOT NULL,
    version             BIGINT NOT NULL
);
INSERT INTO reminder_settings (send_in_app, send_email, default_days_before, send_at_minute,
                               update_time, version)
VALUES (TRUE, TRUE, 1, 540, now(), 1);

CREATE TABLE broadcasts (
    id            UUID PRIMARY KEY,
    title         TEXT NOT NULL,
    description   TEXT NOT NULL,
    staff_ids     UUID[] NOT NULL,
    category_ids  UUID[] NOT NULL,
    partner_id    UUID,
    deadline_date DATE NOT NULL,
    -- The reminder as given (JSON of the domain's ReminderChoice); NULL means the defaults.
    reminder      JSONB,
    origin_kind   INTEGER,
    origin_id     UUID,
    origin_number TEXT NOT NULL DEFAULT '',
    creator       TEXT NOT NULL,
    create_time   TIMESTAMPTZ NOT NULL
);
CREATE INDEX broadcasts_by_time ON broadcasts (create_time DESC, id DESC);
CREATE INDEX broadcasts_by_creator ON broadcasts (creator, create_time DESC, id DESC);

CREATE TABLE tasks (
    id                        UUID PRIMARY KEY,
    title                     TEXT NOT NULL,
    description               TEXT NOT NULL DEFAULT '',
    partner_id                UUID,
    post_sale_service_id      UUID REFERENCES post_sale_services (id),
    contract_id               UUID,
    deadline_date             DATE NOT NULL,
    responsible_staff_id      UUID NOT NULL REFERENCES staff (id),
    creator                   TEXT NOT NULL DEFAULT '',
    creator_staff_id          UUID,
    scheduled_start_time      TIMESTAMPTZ,
    expected_duration_minutes INTEGER NOT NULL DEFAULT 0
        CHECK (expected_duration_minutes BETWEEN 0 AND 14400),
    status                    TEXT NOT NULL
        CHECK (status IN ('open', 'in_progress', 'resolved', 'cancelled')),
    billable                  BOOLEAN NOT NULL DEFAULT FALSE,
    source                    TEXT NOT NULL
        CHECK (source IN ('manual', 'follow_up', 'email_import', 'broadcast')),
    source_reference          TEXT NOT NULL DEFAULT '',
    origin_kind               INTEGER,
    origin_id                 UUID,
    origin_number             TEXT NOT NULL DEFAULT '',
    broadcast_id              UUID REFERENCES broadcasts (id),
    -- The reminder as chosen: channels and days before (NULL = the company default).
    reminder_email            BOOLEAN NOT NULL,
    reminder_in_app           BOOLEAN NOT NULL,
    reminder_days_before      INTEGER CHECK (reminder_days_before BETWEEN 0 AND 3),
    reminder_sent_time        TIMESTAMPTZ,
    attachments               JSONB NOT NULL DEFAULT '[]',
    start_time                TIMESTAMPTZ,
    resolve_time              TIMESTAMPTZ,
    worked_minutes            INTEGER NOT NULL DEFAULT 0,
    resolution_note           TEXT NOT NULL DEFAULT '',
    cancel_time               TIMESTAMPTZ,
    cancel_reason             TEXT NOT NULL DEFAULT '',
    billing_status            TEXT NOT NULL
        CHECK (billing_status IN ('not_billable', 'not_yet_due', 'pending', 'invoiced', 'failed',
                                  'cancelled')),
    billing_error             TEXT NOT NULL DEFAULT '',
    billing_attempt           INTEGER NOT NULL DEFAULT 0,
    invoice_id                UUID,
    estimate_offer_id         UUID,
    drafted_contract_id       UUID,
    reply_count               INTEGER NOT NULL DEFAULT 0,
    create_time               TIMESTAMPTZ NOT NULL,
    update_time               TIMESTAMPTZ NOT NULL,
    version                   BIGINT NOT NULL
);
-- The lists, each in list order (deadline, creation, id): for me, from me, all, per partner.
CREATE INDEX tasks_for_responsible ON tasks (responsible_staff_id, deadline_date, create_time, id);
CREATE INDEX tasks_from_creator ON tasks (creator, deadline_date, create_time, id);
CREATE INDEX tasks_by_deadline ON tasks (deadline_date, create_time, id);
CREATE INDEX tasks_by_partner ON tasks (partner_id, deadline_date, create_time, id)
    WHERE partner_id IS NOT NULL;
CREATE INDEX tasks_by_broadcast ON tasks (broadcast_id) WHERE broadcast_id IS NOT NULL;
-- Availability: a responsible's scheduled tasks by start.
CREATE INDEX tasks_scheduled ON tasks (responsible_staff_id, scheduled_start_time)
    WHERE scheduled_start_time IS NOT NULL AND status IN ('open', 'in_progress');
-- Billing failures to find and retry.
CREATE INDEX tasks_billing_attention ON tasks (billing_status)
    WHERE billing_status IN ('pending', 'failed', 'cancelled');
-- Tasks made from an event exist once per cause (a stage change, an imported message).
CREATE UNIQUE INDEX tasks_once_per_cause ON tasks (source, source_reference)
    WHERE source IN ('follow_up', 'email_import');
-- Tracking: a responsible's tasks by creation.
CREATE INDEX tasks_tracking ON tasks (responsible_staff_id, create_time);
-- Follow-ups of an opportunity, to annotate when it moves on.
CREATE INDEX tasks_by_origin ON tasks (origin_id) WHERE origin_id IS NOT NULL;

CREATE TABLE task_replies (
    id              UUID PRIMARY KEY,
    task_id         UUID NOT NULL REFERENCES tasks (id),
    text            TEXT NOT NULL,
    attachments     JSONB NOT NULL DEFAULT '[]',
    -- Empty for a note tasks added itself.
    author          TEXT NOT NULL,
    author_staff_id UUID,
    create_time     TIMESTAMPTZ NOT NULL
);
CREATE INDEX task_replies_by_task ON task_replies (task_id, create_time, id);
CREATE INDEX task_replies_by_time ON task_replies (create_time DESC, id DESC);

-- A task's pending reminder (T8), changed in the same transaction as the task; the scheduler
-- claims due rows with FOR UPDATE SKIP LOCKED and deletes them as it emits their notification.
CREATE TABLE reminders (
    task_id  UUID PRIMARY KEY REFERENCES tasks (id),
    due_time TIMESTAMPTZ NOT NULL,
    email    BOOLEAN NOT NULL,
    in_app   BOOLEAN NOT NULL
);
CREATE INDEX reminders_by_due_time ON reminders (due_time);

-- When a reminder is set earlier than the scheduler's next wake-up, it is told at commit.
CREATE FUNCTION reminders_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('tasks_reminders', '');
    RETURN NULL;
END;
$$;
CREATE TRIGGER reminders_changed AFTER INSERT OR UPDATE OF due_time ON reminders
    FOR EACH STATEMENT EXECUTE FUNCTION reminders_notify();
