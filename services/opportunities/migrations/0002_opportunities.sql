-- Opportunities and their stage history (O1-O5).
CREATE TABLE opportunities (
    id                    UUID PRIMARY KEY,
    partner_id            UUID NOT NULL,
    campaign_id           UUID,
    title                 TEXT NOT NULL,
    owner_staff_id        UUID NOT NULL,
    potential_units       BIGINT NOT NULL DEFAULT 0 CHECK (potential_units >= 0),
    currency              TEXT NOT NULL,
    probability_percent   INT CHECK (probability_percent BETWEEN 0 AND 100),
    expected_signing_date DATE,
    stage                 TEXT NOT NULL
                          CHECK (stage IN ('new', 'presentation', 'offer', 'negotiation', 'sale', 'lost')),
    next_follow_up_date   DATE,
    next_follow_up_note   TEXT NOT NULL DEFAULT '',
    lost_reason_id        UUID REFERENCES lost_reasons (id),
    lost_note             TEXT NOT NULL DEFAULT '',
    description           TEXT NOT NULL DEFAULT '',
    stage_change_time     TIMESTAMPTZ NOT NULL,
    close_time            TIMESTAMPTZ,
    create_time           TIMESTAMPTZ NOT NULL,
    update_time           TIMESTAMPTZ NOT NULL,
    creator               TEXT NOT NULL,
    updater               TEXT NOT NULL,
    version               BIGINT NOT NULL DEFAULT 1,
    CHECK ((stage IN ('sale', 'lost')) = (close_time IS NOT NULL)),
    CHECK ((stage = 'lost') = (lost_reason_id IS NOT NULL))
);
-- Lists: newest first, then id, with or without the common filters.
CREATE INDEX opportunities_list ON opportunities (create_time DESC, id DESC);
CREATE INDEX opportunities_by_partner ON opportunities (partner_id, create_time DESC, id DESC);
CREATE INDEX opportunities_by_campaign ON opportunities (campaign_id, create_time DESC, id DESC)
    WHERE campaign_id IS NOT NULL;
CREATE INDEX opportunities_by_owner ON opportunities (owner_staff_id, create_time DESC, id DESC);
-- The pipeline sums open opportunities: an index holding every column it reads, so the sum is
-- an index-only scan of the open ones.
CREATE INDEX opportunities_open_pipeline ON opportunities
    (stage, owner_staff_id, campaign_id, currency)
    INCLUDE (potential_units, probability_percent, expected_signing_date)
    WHERE close_time IS NULL;
-- The loss report: lost opportunities by the time they were lost.
CREATE INDEX opportunities_lost ON opportunities (close_time, lost_reason_id)
    WHERE stage = 'lost';

-- One row per stage change (O2): what, when, who, delegate, follow-up, allocated value.
CREATE TABLE stage_changes (
    id                UUID PRIMARY KEY,
    opportunity_id    UUID NOT NULL REFERENCES opportunities (id),
    stage             TEXT NOT NULL,
    previous_stage    TEXT,
    change_time       TIMESTAMPTZ NOT NULL,
    delegate_staff_id UUID,
    follow_up_date    DATE,
    follow_up_note    TEXT NOT NULL DEFAULT '',
    allocated_units   BIGINT CHECK (allocated_units >= 0),
    allocated_currency TEXT,
    changed_by        TEXT NOT NULL DEFAULT '',
    lost_reason_id    UUID REFERENCES lost_reasons (id),
    lost_note         TEXT NOT NULL DEFAULT '',
    -- The follow-up task tasks created for this change (TaskCreated, O4).
    follow_up_task_id UUID,
    -- The document whose event moved the opportunity (a signed contract, an issued invoice).
    cause_kind        TEXT,
    cause_id          UUID,
    cause_number      TEXT,
    reopen_note       TEXT NOT NULL DEFAULT '',
    CHECK ((allocated_units IS NULL) = (allocated_currency IS NULL))
);
CREATE INDEX stage_changes_by_opportunity ON stage_changes (opportunity_id, change_time, id);
