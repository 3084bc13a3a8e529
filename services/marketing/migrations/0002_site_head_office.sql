-- The head office among a partner's sites (M1): its email is the default address for documents.
ALTER TABLE partner_sites ADD COLUMN head_office BOOLEAN NOT NULL DEFAULT false;

-- At most one head office per partner.
CREATE UNIQUE INDEX partner_sites_one_head_office ON partner_sites (partner_id) WHERE head_office;
