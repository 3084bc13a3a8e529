//! The ceilings of the opportunities writes: for each, a pgbench script running the SQL
//! statements the service runs for one call (read from `services/opportunities/src/api/` and
//! `store/` at the commit this was written against, and the platform's outbox insert), in one
//! `BEGIN … COMMIT` per call, on the bench database after the rows, with as many clients.
//!
//! What a script cannot repeat exactly, and why it does not matter:
//! - The service makes UUIDv7 ids in the process; the scripts make the same time-ordered kind in
//!   SQL (`bench.uuid_v7()`), so index inserts land at the same (rightmost) pages.
//! - The service runs its partner (and, for IssueInvoice, document) lookups on a pooled
//!   connection before its transaction; here they run inside it. They are reads: they write no
//!   WAL and take no lock, so the database's work is the same.
//! - The service binds every column of an UPDATE; the scripts set the columns that change and
//!   leave the rest as they are. The row written, and the indexes updated, are the same.
//! - Event envelopes are real ones: the latest of each type the measured rows wrote, copied
//!   byte for byte, so the outbox rows (and their TOAST compression) are the service's.
//! - Not in any ceiling: the relay's later `UPDATE outbox SET published_at` and XADD, which the
//!   service pays for each event while its rows are measured.

use std::{collections::HashMap, path::Path};

use anyhow::{Context as _, Result, bail};

use super::{Loaded, OWNERS};
use crate::bench::{
    BenchArgs,
    pgbench::{self, Ceiling, Script, psql},
};

/// The ceiling of CreateOpportunity.
pub const CREATE_OPPORTUNITY: &str = "CreateOpportunity";
/// The ceiling of ChangeOpportunityStage.
pub const CHANGE_STAGE: &str = "ChangeOpportunityStage";
/// The ceiling of CreateInvoice + IssueInvoice.
pub const INVOICE: &str = "CreateInvoice+IssueInvoice";

/// The service's schema: the scripts' `search_path`, as the service's pool sets it.
const SCHEMA: &str = "opportunities";

/// Helpers the scripts use, in a schema of their own: the time-ordered id generator, and
/// numbered lists of the ids to pick from at random (pgbench `\set` makes numbers, not ids).
const SETUP: &str = "
DROP SCHEMA IF EXISTS bench CASCADE;
CREATE SCHEMA bench;
CREATE FUNCTION bench.uuid_v7() RETURNS uuid LANGUAGE sql VOLATILE AS $$
  SELECT (lpad(to_hex((extract(epoch FROM clock_timestamp()) * 1000)::bigint), 12, '0')
          || '7' || substr(md5(random()::text), 1, 19))::uuid $$;
CREATE TABLE bench.partners AS SELECT row_number() OVER (ORDER BY id) AS n, id
  FROM opportunities.partners WHERE kind <> 'competitor' AND NOT archived;
ALTER TABLE bench.partners ADD PRIMARY KEY (n);
CREATE TABLE bench.campaigns AS SELECT row_number() OVER (ORDER BY id) AS n, id
  FROM opportunities.campaigns;
ALTER TABLE bench.campaigns ADD PRIMARY KEY (n);
CREATE TABLE bench.open_opportunities AS SELECT row_number() OVER (ORDER BY id) AS n, id
  FROM opportunities.opportunities WHERE close_time IS NULL;
ALTER TABLE bench.open_opportunities ADD PRIMARY KEY (n);
ANALYZE bench.partners, bench.campaigns, bench.open_opportunities;
SELECT json_build_object(
  'partners', (SELECT count(*) FROM bench.partners),
  'campaigns', (SELECT count(*) FROM bench.campaigns),
  'open_opportunities', (SELECT count(*) FROM bench.open_opportunities))::text;
";

/// The partner lookup of every call that names a partner (`partners::find`,
/// `store::catalogues::get_partner`); `\gset partner_` keeps its id for the inserts.
const PARTNER_LOOKUP: &str = "SELECT id, kind, name, fiscal_code, address_lines, email, phone, \
    archived, source_version FROM partners WHERE id = (SELECT id FROM bench.partners WHERE n = :p)";

/// The stage configuration every opportunity call reads (`store::catalogues::get_stage_config`).
const STAGE_CONFIG: &str = "SELECT config, update_time, version FROM stage_config;";

/// The idempotency claim (`store::claim_request`), up to its values; it makes the new record's
/// id, which `{CLAIMED} <name> \gset` keeps as `:<name>`.
const CLAIM: &str = "INSERT INTO create_requests (kind, creator, request_id, resource_id, \
    create_time)\n  VALUES";
const CLAIMED: &str = "ON CONFLICT (kind, creator, request_id) DO NOTHING RETURNING resource_id AS";

/// A stage-change row (`store::opportunities::insert_stage_change`), up to its values.
const STAGE_CHANGE: &str = "INSERT INTO stage_changes (id, opportunity_id, stage, \
    previous_stage, change_time, delegate_staff_id, follow_up_date, follow_up_note, \
    allocated_units, allocated_currency, changed_by, lost_reason_id, lost_note, \
    follow_up_task_id, cause_kind, cause_id, cause_number, reopen_note)\n  VALUES";

/// An owner's (or delegate's) staff id from its number, as [`super::owner`] makes it.
const OWNER_ID: &str = "('00000000-0000-4000-8000-' || lpad(:owner::text, 12, '0'))::uuid";

/// CreateOpportunity (`api/opportunities.rs` `create` and `insert_new`):
/// 1. the partner lookup (`partners.usable`);
/// 2. the campaign lookup (`unknown_campaigns` → `store::catalogues::get_campaign`): the
///    measured calls always name a campaign;
/// 3. the stage configuration (`stage_config`);
/// 4. the idempotency claim (`store::claim_request`), which makes the opportunity's id;
/// 5. the opportunity (`store::opportunities::insert`), 22 columns;
/// 6. its first stage-change row (`insert_stage_change`), 18 columns;
/// 7. `OpportunityCreated` into the outbox (`Outbox::publish`).
const CREATE_OPPORTUNITY_SCRIPT: &str = "
\\set p random(1, :partners)
\\set c random(1, :campaigns)
\\set owner random(1, :owners)
\\set rid random(1, 9000000000000000000)
\\set potential random(100000, 50100000)
BEGIN;
{PARTNER_LOOKUP} \\gset partner_
SELECT id, name, start_date, end_date, confirmed FROM campaigns
  WHERE id = (SELECT id FROM bench.campaigns WHERE n = :c) \\gset campaign_
{STAGE_CONFIG}
{CLAIM} ('opportunity', 'bench', :rid, bench.uuid_v7(), now())
  {CLAIMED} opportunity_id \\gset
INSERT INTO opportunities (id, partner_id, campaign_id, title, owner_staff_id, potential_units,
  currency, probability_percent, expected_signing_date, stage, next_follow_up_date,
  next_follow_up_note, lost_reason_id, lost_note, description, stage_change_time, close_time,
  create_time, update_time, creator, updater, version)
  VALUES (:opportunity_id, :partner_id, :campaign_id, :title, {OWNER_ID}, :potential, 'RON',
  NULL, current_date + 90, 'new', NULL, '', NULL, '', :description, now(), NULL, now(), now(),
  'bench', 'bench', 1);
{STAGE_CHANGE} (bench.uuid_v7(), :opportunity_id, 'new', NULL, now(), NULL, NULL, '', NULL, NULL,
  'bench', NULL, '', NULL, NULL, NULL, NULL, '');
INSERT INTO outbox (event_id, stream, event_type, envelope)
  VALUES (bench.uuid_v7(), :stream, :created_type, :created_envelope);
COMMIT;
";

/// ChangeOpportunityStage with a follow-up and a delegate (`api/opportunities.rs`
/// `change_stage`, `begin_change`, `save_stage_change`):
/// 1. the opportunity, locked (`store::opportunities::get … FOR UPDATE`), checked against the
///    etag's version;
/// 2. the stage configuration;
/// 3. the idempotency claim of the change (kind `stage_change:<id>`);
/// 4. the stage-change row with delegate, follow-up date and note;
/// 5. the opportunity's new version (`store::opportunities::update … AND version = $n`): a new
///    stage, follow-up, times and version; `stage` is in the pipeline index, so every index of
///    the table takes the new row version, as with the service's update;
/// 6. `OpportunityStageChanged` into the outbox.
///
/// Clients pick open opportunities at random among all of them; a rare collision waits on the
/// row lock, as two salespeople moving the same opportunity would.
const CHANGE_STAGE_SCRIPT: &str = "
\\set o random(1, :open_opportunities)
\\set t random(1, 4)
\\set owner random(1, :owners)
\\set rid random(1, 9000000000000000000)
BEGIN;
SELECT id, partner_id, campaign_id, title, owner_staff_id, potential_units, currency,
  probability_percent, expected_signing_date, stage, next_follow_up_date, next_follow_up_note,
  lost_reason_id, lost_note, description, stage_change_time, close_time, create_time,
  update_time, creator, updater, version
  FROM opportunities WHERE id = (SELECT id FROM bench.open_opportunities WHERE n = :o)
  FOR UPDATE \\gset o_
{STAGE_CONFIG}
{CLAIM} ('stage_change:' || :o_id::text, 'bench', :rid, bench.uuid_v7(), now())
  {CLAIMED} change_id \\gset
{STAGE_CHANGE} (:change_id, :o_id, (ARRAY['new', 'presentation', 'offer', 'negotiation'])[:t],
  :o_stage, now(), {OWNER_ID}, current_date + 7, :note, NULL, NULL, 'bench', NULL, '', NULL,
  NULL, NULL, NULL, '');
UPDATE opportunities SET stage = (ARRAY['new', 'presentation', 'offer', 'negotiation'])[:t],
  stage_change_time = now(), next_follow_up_date = current_date + 7,
  next_follow_up_note = :note, update_time = now(), updater = 'bench', version = version + 1
  WHERE id = :o_id AND version = :o_version;
INSERT INTO outbox (event_id, stream, event_type, envelope)
  VALUES (bench.uuid_v7(), :stream, :changed_type, :changed_envelope);
COMMIT;
";

/// CreateInvoice (a manual draft of 20 lines) then IssueInvoice: the measured unit is both
/// calls, so the script is both transactions, and pgbench's "tps" is units per second.
///
/// CreateInvoice (`api/invoices.rs` `create_invoice`, `store::invoices::insert`):
/// 1. the partner lookup (`partners.usable`);
/// 2. the articles of the lines (`resolve_lines` → `store::articles::get_many`, distinct ids);
/// 3. the idempotency claim, which makes the invoice's id;
/// 4. the invoice, 30 columns, `ON CONFLICT DO NOTHING`;
/// 5. `replace_lines`: the delete of the document's lines, then the 20 lines in one
///    `INSERT … SELECT FROM UNNEST` of 15 arrays (the values of a real invoice of the rows).
///
/// IssueInvoice (`issue_invoice`, `customer_of`, `begin_invoice_change`, `issue_invoice_in`):
/// 1. the invoice's partner (`store::invoices::partner_of`) and that partner (`customer`);
/// 2. the invoice, locked, its lines and what is paid on it (`store::invoices::get … FOR
///    UPDATE`: three statements);
/// 3. the default invoice series, locked, and its next number (`store::series::take_number`):
///    every issue queues on this row until its transaction ends, in the service as here;
/// 4. the issued invoice (`store::invoices::update`): number, series, the customer frozen as
///    JSON (a real one), dates, status, version;
/// 5. `InvoiceIssued` into the outbox, with the 20 lines in it.
const INVOICE_SCRIPT: &str = "
\\set p random(1, :partners)
\\set rid random(1, 9000000000000000000)
BEGIN;
{PARTNER_LOOKUP} \\gset partner_
SELECT id, code, name, unit, price_units, currency, vat_rate_bp, kind, description, pictures,
  active, create_time, update_time, version FROM articles WHERE id = ANY(:article_set::uuid[]);
{CLAIM} ('invoice', 'bench', :rid, bench.uuid_v7(), now())
  {CLAIMED} invoice_id \\gset
INSERT INTO invoices (id, number, series_id, partner_id, opportunity_id, campaign_id, currency,
  total_without_vat, total_vat, total_with_vat, notes, attachments, customer, create_time,
  update_time, creator, updater, version, status, source, order_id, contract_id, billing_month,
  task_id, task_billing_attempt, estimate_offer_id, invoice_date, due_date, issue_time,
  status_note)
  VALUES (:invoice_id, NULL, NULL, :partner_id, NULL, NULL, 'RON', :total_without_vat,
  :total_vat, :total_with_vat, :notes, '[]', NULL, now(), now(), 'bench', 'bench', 1, 'draft',
  'manual', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, '')
  ON CONFLICT DO NOTHING;
DELETE FROM document_lines WHERE document_id = :invoice_id;
INSERT INTO document_lines (id, document_id, position, article_id, article_code, description,
  unit, quantity_milli, unit_price_units, vat_rate_bp, discount_bp, amount_without_vat,
  vat_amount, amount_with_vat, source_line_id)
  SELECT id, :invoice_id, position, article_id, article_code, description, unit,
  quantity_milli, unit_price_units, vat_rate_bp, discount_bp, amount_without_vat, vat_amount,
  amount_with_vat, source_line_id
  FROM UNNEST(ARRAY(SELECT bench.uuid_v7() FROM generate_series(1, :line_count)),
  :positions::int[], :articles::uuid[], :codes::text[], :descriptions::text[], :units::text[],
  :quantities::bigint[], :prices::bigint[], :vat_rates::int[], :discounts::int[],
  :without_vat::bigint[], :vat::bigint[], :with_vat::bigint[], :sources::uuid[])
  AS l(id, position, article_id, article_code, description, unit, quantity_milli,
  unit_price_units, vat_rate_bp, discount_bp, amount_without_vat, vat_amount, amount_with_vat,
  source_line_id);
COMMIT;
BEGIN;
SELECT partner_id FROM invoices WHERE id = :invoice_id;
{PARTNER_LOOKUP} \\gset partner_
SELECT id, number, series_id, partner_id, opportunity_id, campaign_id, currency,
  total_without_vat, total_vat, total_with_vat, notes, attachments, customer, create_time,
  update_time, creator, updater, version, status, source, order_id, contract_id, billing_month,
  task_id, task_billing_attempt, estimate_offer_id, invoice_date, due_date, issue_time,
  status_note FROM invoices WHERE id = :invoice_id FOR UPDATE \\gset i_
SELECT id, document_id, article_id, article_code, description, unit, quantity_milli,
  unit_price_units, vat_rate_bp, discount_bp, amount_without_vat, vat_amount, amount_with_vat,
  source_line_id FROM document_lines WHERE document_id = ANY(ARRAY[:invoice_id::uuid])
  ORDER BY document_id, position;
SELECT a.invoice_id, sum(a.amount_units)::bigint AS paid FROM payment_allocations a
  JOIN payments p ON p.id = a.payment_id
  WHERE a.invoice_id = ANY(ARRAY[:invoice_id::uuid]) AND p.status = 'recorded'
  GROUP BY a.invoice_id;
SELECT id, document_kind, prefix, next_number, min_digits, is_default, active, yearly_restart,
  counter_year, create_time, update_time, version FROM number_series
  WHERE is_default AND document_kind = 'invoice' FOR UPDATE \\gset s_
UPDATE number_series SET next_number = :s_next_number::bigint + 1,
  counter_year = extract(year FROM current_date)::int, version = version + 1 WHERE id = :s_id;
UPDATE invoices SET number = :s_prefix || to_char(current_date, 'YYYY') || '-'
  || lpad(:s_next_number::text, 4, '0'), series_id = :s_id, customer = :customer::jsonb,
  update_time = now(), updater = 'bench', version = 2, status = 'issued',
  invoice_date = current_date, due_date = current_date + 30, issue_time = now()
  WHERE id = :invoice_id AND version = 1 AND create_time = :i_create_time AND creator = 'bench';
INSERT INTO outbox (event_id, stream, event_type, envelope)
  VALUES (bench.uuid_v7(), :stream, :issued_type, :issued_envelope);
COMMIT;
";

/// The event types whose envelopes the scripts copy.
const CREATED: &str = "crm.events.v1.OpportunityCreated";
const CHANGED: &str = "crm.events.v1.OpportunityStageChanged";
const ISSUED: &str = "crm.events.v1.InvoiceIssued";

/// Runs the three ceilings (the stack stopped). A ceiling that cannot be prepared or run is
/// reported as failed, and the others still run.
pub fn ceilings(
    database_url: &str,
    bench_dir: &Path,
    _loaded: &Loaded,
    args: &BenchArgs,
) -> Vec<Ceiling> {
    let names = [CREATE_OPPORTUNITY, CHANGE_STAGE, INVOICE];
    let variables = match prepare(database_url) {
        Ok(variables) => variables,
        Err(err) => {
            println!("xtask: cannot prepare the opportunities ceilings: {err:#}");
            return names
                .into_iter()
                .map(|name| Ceiling {
                    name,
                    script: bench_dir.join(file_of(name)),
                    outcome: None,
                    error: Some(format!("{err:#}")),
                })
                .collect();
        }
    };
    let scripts = [
        (CREATE_OPPORTUNITY, CREATE_OPPORTUNITY_SCRIPT),
        (CHANGE_STAGE, CHANGE_STAGE_SCRIPT),
        (INVOICE, INVOICE_SCRIPT),
    ];
    scripts
        .into_iter()
        .map(|(name, text)| {
            crate::process::check_interrupted().ok();
            pgbench::run(
                database_url,
                bench_dir,
                args,
                Script {
                    name,
                    file: file_of(name),
                    text: script_text(name, text),
                    variables: variables
                        .iter()
                        .map(|(k, v)| (k.as_str(), v.clone()))
                        .collect(),
                    search_path: Some(SCHEMA),
                    prepared: true,
                },
            )
        })
        .collect()
}

fn file_of(name: &str) -> &'static str {
    match name {
        CREATE_OPPORTUNITY => "pgbench-create-opportunity.sql",
        CHANGE_STAGE => "pgbench-change-opportunity-stage.sql",
        _ => "pgbench-create-issue-invoice.sql",
    }
}

/// The script with its shared statements filled in, after a header saying what it is.
fn script_text(name: &str, template: &str) -> String {
    let body = template
        .replace("{PARTNER_LOOKUP}", PARTNER_LOOKUP)
        .replace("{STAGE_CONFIG}", STAGE_CONFIG)
        .replace("{OWNER_ID}", OWNER_ID)
        .replace("{CLAIM}", CLAIM)
        .replace("{CLAIMED}", CLAIMED)
        .replace("{STAGE_CHANGE}", STAGE_CHANGE);
    format!(
        "-- The ceiling of {name}: the SQL the opportunities service runs for one call, one\n\
         -- transaction per call (see xtask/src/bench/opportunities/ceilings.rs for each\n\
         -- statement's origin). Variables come from `-D` (pgbench reads any `:name` as one).\n{body}"
    )
}

/// Creates the helpers and reads, from what the measured rows wrote, the values the scripts
/// bind: real envelopes, a real customer snapshot, a real invoice's 20 lines.
fn prepare(database_url: &str) -> Result<Vec<(String, String)>> {
    let counts: HashMap<String, i64> = serde_json::from_str(psql(database_url, SETUP)?.trim())
        .context("reading the helper tables' sizes")?;
    for (name, count) in &counts {
        if *count == 0 {
            bail!("no {name} to pick from: did the rows run?");
        }
    }
    let mut variables: Vec<(String, String)> = counts
        .into_iter()
        .map(|(name, count)| (name, count.to_string()))
        .collect();
    variables.push(("owners".into(), OWNERS.to_string()));

    let mut stream = None;
    for (prefix, event_type) in [
        ("created", CREATED),
        ("changed", CHANGED),
        ("issued", ISSUED),
    ] {
        let row = psql(
            database_url,
            &format!(
                "SELECT json_build_object('stream', stream, 'envelope', \
                 '\\x' || encode(envelope, 'hex'))::text FROM opportunities.outbox \
                 WHERE event_type = '{event_type}' ORDER BY position DESC LIMIT 1"
            ),
        )?;
        let row: HashMap<String, String> = serde_json::from_str(row.trim())
            .with_context(|| format!("no {event_type} in the outbox: did its row run?"))?;
        stream = row.get("stream").cloned();
        variables.push((format!("{prefix}_type"), event_type.to_owned()));
        variables.push((
            format!("{prefix}_envelope"),
            row.get("envelope").cloned().unwrap_or_default(),
        ));
    }
    variables.push(("stream".into(), stream.unwrap_or_default()));

    // The latest issued invoice of the measured rows: its lines, totals and customer.
    let invoice = psql(
        database_url,
        "WITH i AS (SELECT id, customer, notes, total_without_vat, total_vat, total_with_vat \
           FROM opportunities.invoices WHERE status = 'issued' AND creator = 'bench' \
           ORDER BY create_time DESC LIMIT 1), \
         l AS (SELECT * FROM opportunities.document_lines WHERE document_id = (SELECT id FROM i)) \
         SELECT json_build_object( \
           'customer', (SELECT customer::text FROM i), \
           'notes', (SELECT notes FROM i), \
           'total_without_vat', (SELECT total_without_vat::text FROM i), \
           'total_vat', (SELECT total_vat::text FROM i), \
           'total_with_vat', (SELECT total_with_vat::text FROM i), \
           'line_count', (SELECT count(*)::text FROM l), \
           'article_set', (SELECT array_agg(DISTINCT article_id)::text FROM l), \
           'positions', (SELECT array_agg(position ORDER BY position)::text FROM l), \
           'articles', (SELECT array_agg(article_id ORDER BY position)::text FROM l), \
           'codes', (SELECT array_agg(article_code ORDER BY position)::text FROM l), \
           'descriptions', (SELECT array_agg(description ORDER BY position)::text FROM l), \
           'units', (SELECT array_agg(unit ORDER BY position)::text FROM l), \
           'quantities', (SELECT array_agg(quantity_milli ORDER BY position)::text FROM l), \
           'prices', (SELECT array_agg(unit_price_units ORDER BY position)::text FROM l), \
           'vat_rates', (SELECT array_agg(vat_rate_bp ORDER BY position)::text FROM l), \
           'discounts', (SELECT array_agg(discount_bp ORDER BY position)::text FROM l), \
           'without_vat', (SELECT array_agg(amount_without_vat ORDER BY position)::text FROM l), \
           'vat', (SELECT array_agg(vat_amount ORDER BY position)::text FROM l), \
           'with_vat', (SELECT array_agg(amount_with_vat ORDER BY position)::text FROM l), \
           'sources', (SELECT array_agg(source_line_id ORDER BY position)::text FROM l))::text",
    )?;
    let invoice: HashMap<String, Option<String>> =
        serde_json::from_str(invoice.trim()).context("reading an issued invoice")?;
    for (name, value) in invoice {
        let value = value.with_context(|| format!("no issued invoice to copy ({name})"))?;
        variables.push((name, value));
    }
    variables.push(("title".into(), "Echipare birou — trimestrul 2".into()));
    variables.push((
        "description".into(),
        "Clientul a cerut o ofertă după prezentarea de la sediul lui.".into(),
    ));
    variables.push((
        "note".into(),
        "Sună clientul pentru un răspuns la ofertă".into(),
    ));
    Ok(variables)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_placeholder_of_a_script_is_filled() {
        for (name, template) in [
            (CREATE_OPPORTUNITY, CREATE_OPPORTUNITY_SCRIPT),
            (CHANGE_STAGE, CHANGE_STAGE_SCRIPT),
            (INVOICE, INVOICE_SCRIPT),
        ] {
            let text = script_text(name, template);
            for placeholder in ["{PARTNER", "{STAGE", "{OWNER", "{CLAIM"] {
                assert!(!text.contains(placeholder), "{name} keeps {placeholder}");
            }
            // One transaction per call: as many BEGINs as COMMITs.
            assert_eq!(
                text.matches("\nBEGIN;").count(),
                text.matches("\nCOMMIT;").count(),
                "{name}"
            );
        }
    }
}
