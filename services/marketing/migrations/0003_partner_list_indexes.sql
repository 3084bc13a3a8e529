-- ListPartners (M2) orders by (lower(name), id) and filters by one or two of the M2 criteria.
-- Each index leads with a filter column and continues in the list order, so a filtered page is
-- a range read of one index that stops after the page, instead of a scan and a sort. Active
-- partners are what lists show by default; archived ones are read with the name index.
CREATE INDEX partners_list_active ON partners (lower(name) text_pattern_ops, id)
    WHERE state = 'active';
CREATE INDEX partners_list_by_city ON partners (lower(city), lower(name), id)
    WHERE state = 'active';
CREATE INDEX partners_list_by_county ON partners (lower(county), lower(name), id)
    WHERE state = 'active';
CREATE INDEX partners_list_by_kind ON partners (kind, lower(name), id)
    WHERE state = 'active';
CREATE INDEX partners_list_by_domain ON partners (lower(activity_domain), lower(name), id)
    WHERE state = 'active';
-- Ranges (employees, turnover) are not selective enough to lead: a page is read in name order
-- and filtered, which stops after 50 matches; these serve the rare narrow range.
CREATE INDEX partners_by_employees ON partners (employee_count) WHERE state = 'active';
CREATE INDEX partners_by_turnover ON partners (turnover_currency, turnover_units)
    WHERE state = 'active';
-- The city index of 0001 is superseded by partners_list_by_city.
DROP INDEX partners_by_city;
DROP INDEX partners_by_county;

-- "Name contains" cannot use a btree: a trigram index serves it when the pg_trgm extension can
-- be installed (a trusted extension: the CREATE privilege on the database is enough, PostgreSQL
-- 13+). A role without it keeps the sequential scan; nothing else depends on the index.
DO $$
BEGIN
    EXECUTE format('CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA %I', current_schema());
    CREATE INDEX partners_name_trigrams ON partners USING gin (lower(name) gin_trgm_ops)
        WHERE state = 'active';
EXCEPTION WHEN OTHERS THEN
    RAISE NOTICE 'no trigram index for name searches (%): substring searches scan', SQLERRM;
END
$$;
