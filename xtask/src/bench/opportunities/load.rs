//! Loading what the opportunities rows run over, through the service's own API: an article
//! catalogue, `--opportunities` opportunities spread over stages, owners, campaigns and RON/EUR,
//! and `--contracts` signed contracts with lines of service articles.
//!
//! Partners come from the partner rows' loading: opportunities learns them from marketing's
//! `PartnerCreated` events, or asks marketing's `GetPartner` for one it has not heard of yet.
//! Campaigns have no API in marketing yet; they reach opportunities the way marketing's
//! GenerateOpportunities (M7) brings them: a BatchCreateOpportunities call with marketing's
//! service token naming them, which records them. Every other call is the `bench` user's.

use std::{
    collections::{BTreeMap, HashSet},
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use chrono::Days;
use crm_proto::opportunities::{
    Article as PbArticle, ArticleKind, BatchCreateOpportunitiesRequest, BatchItemOutcome,
    ChangeOpportunityStageRequest, Contract, ContractKind, CreateArticleRequest,
    CreateContractRequest, CreateOpportunityRequest, DocumentLine, ListLostReasonsRequest,
    MarkOpportunityLostRequest, Opportunity, OpportunityStage, SignContractRequest,
    opportunity_service_client::OpportunityServiceClient,
};

use super::{
    Article, Clients, Data, Loaded, OWNERS, OpenOpportunity, date, money, owner, request_id,
};
use crate::bench::{
    BearerAuth, BenchArgs, Endpoints, SplitMix64, load_concurrently, partners::Partners,
    pgbench::psql, print_loaded,
};

/// The catalogue: (code, name, unit, list price in bani, VAT in basis points).
const PRODUCTS: [(&str, &str, &str, i64, i32); 8] = [
    (
        "P-LAPTOP-15",
        "Laptop 15\" i5, 16 GB RAM",
        "buc",
        429_900,
        1900,
    ),
    ("P-MONITOR-27", "Monitor 27\" IPS", "buc", 119_900, 1900),
    ("P-IMPR-A4", "Imprimantă laser A4", "buc", 89_900, 1900),
    ("P-ROUTER", "Router Wi-Fi 6", "buc", 54_900, 1900),
    ("P-UPS-1500", "UPS 1500 VA", "buc", 139_900, 1900),
    ("P-SSD-1TB", "SSD NVMe 1 TB", "buc", 39_900, 1900),
    (
        "P-HARTIE-A4",
        "Hârtie copiator A4, 500 coli",
        "top",
        2_890,
        1900,
    ),
    ("P-MANUAL", "Manual de utilizare tipărit", "buc", 4_500, 900),
];
const SERVICES: [(&str, &str, &str, i64, i32); 6] = [
    (
        "S-MENTENANTA",
        "Mentenanță lunară echipamente",
        "lună",
        45_000,
        1900,
    ),
    (
        "S-SUPORT",
        "Suport tehnic la sediul clientului",
        "h",
        18_000,
        1900,
    ),
    (
        "S-INSTALARE",
        "Instalare și configurare",
        "buc",
        35_000,
        1900,
    ),
    ("S-GAZDUIRE", "Găzduire servere", "lună", 25_000, 1900),
    ("S-BACKUP", "Backup în cloud", "lună", 12_000, 1900),
    ("S-INSTRUIRE", "Instruire utilizatori", "zi", 150_000, 1900),
];
/// Campaigns the opportunities are spread over (7 in 10 opportunities have one).
const CAMPAIGNS: usize = 12;
/// Items of one BatchCreateOpportunities (its maximum).
const BATCH: usize = 500;
/// Batches in flight at once: each is one long transaction on one connection of the service.
const BATCHES_IN_FLIGHT: usize = 4;

/// Where a loaded opportunity ends up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fate {
    Stay(OpportunityStage),
    Lost,
}

/// One planned opportunity.
struct Planned {
    request: Opportunity,
    fate: Fate,
}

/// Loads everything, lets the service settle, and says what was loaded.
pub(super) async fn load(
    endpoints: &Endpoints,
    direct: &Clients,
    partners: &Partners,
    database_url: &str,
    args: &BenchArgs,
) -> Result<(Data, Loaded)> {
    if partners.usable.is_empty() {
        bail!("no lead or customer among the loaded partners: load more (--partners)");
    }
    let all_started = Instant::now();
    let mut seconds = BTreeMap::new();

    let started = Instant::now();
    let articles = load_catalogue(direct).await?;
    seconds.insert(
        "articles",
        print_loaded("articles", articles.len(), started),
    );
    let lost_reasons: Vec<String> = direct
        .lost_reasons
        .clone()
        .list_lost_reasons(ListLostReasonsRequest::default())
        .await
        .context("ListLostReasons failed")?
        .into_inner()
        .lost_reasons
        .into_iter()
        .map(|r| r.id)
        .collect();
    if lost_reasons.is_empty() {
        bail!("the service has no lost reasons");
    }
    let campaigns: Vec<String> = (0..CAMPAIGNS).map(|_| request_id()).collect();

    let plan = plan(args.opportunities, &partners.usable, &campaigns);
    let started = Instant::now();
    let created = create_opportunities(endpoints, direct, &plan).await?;
    seconds.insert(
        "opportunities",
        print_loaded("opportunities", created.len(), started),
    );

    let started = Instant::now();
    let (mut current, moves) = move_stages(direct, &plan, created, &lost_reasons, args).await?;
    seconds.insert(
        "stage_changes",
        print_loaded("stage changes and losses", moves, started),
    );

    let started = Instant::now();
    let services: Vec<Article> = articles.iter().filter(|a| a.service).cloned().collect();
    let contracts = load_contracts(direct, &plan, &mut current, partners, &services, args).await?;
    seconds.insert(
        "contracts",
        print_loaded("signed contracts", contracts.count, started),
    );

    let started = Instant::now();
    settle(database_url).await?;
    seconds.insert("settle", started.elapsed().as_secs_f64());

    let mut by_stage = BTreeMap::new();
    let mut by_currency = BTreeMap::new();
    for (planned, state) in plan.iter().zip(&current) {
        *by_stage.entry(stage_name(state.stage)).or_default() += 1;
        let currency = planned.request.potential_value.as_ref().map_or("RON", |m| {
            if m.currency_code == "EUR" {
                "EUR"
            } else {
                "RON"
            }
        });
        *by_currency.entry(currency).or_default() += 1;
    }
    let open: Vec<OpenOpportunity> = current
        .into_iter()
        .filter(|o| super::OPEN_STAGES.contains(&o.stage))
        .collect();
    let loaded = Loaded {
        articles: articles.len(),
        campaigns: campaigns.len(),
        owners: OWNERS,
        opportunities: plan.len(),
        opportunities_by_stage: by_stage,
        opportunities_by_currency: by_currency,
        contracts: contracts.count,
        contracts_active_today: contracts.active_today,
        partners_with_contracts: contracts.partners,
        total_load_seconds: all_started.elapsed().as_secs_f64(),
        load_seconds: seconds,
    };
    println!(
        "xtask: loaded the opportunities data in {:.1} s",
        loaded.total_load_seconds
    );
    let data = Data {
        services: Arc::new(services.into_iter().map(|a| a.id).collect()),
        articles: Arc::new(articles),
        campaigns: Arc::new(campaigns),
        open,
        covered: Arc::new(contracts.covered),
    };
    Ok((data, loaded))
}

async fn load_catalogue(direct: &Clients) -> Result<Vec<Article>> {
    let mut articles = Vec::new();
    let all = PRODUCTS
        .iter()
        .map(|a| (a, ArticleKind::Product))
        .chain(SERVICES.iter().map(|a| (a, ArticleKind::Service)));
    for ((code, name, unit, price, vat), kind) in all {
        let article = direct
            .articles
            .clone()
            .create_article(CreateArticleRequest {
                article: Some(PbArticle {
                    code: (*code).into(),
                    name: (*name).into(),
                    unit: (*unit).into(),
                    unit_price: Some(money(*price, "RON")),
                    vat_rate_bp: *vat,
                    kind: kind as i32,
                    active: true,
                    ..Default::default()
                }),
                request_id: request_id(),
            })
            .await
            .with_context(|| format!("CreateArticle {code} failed"))?
            .into_inner();
        articles.push(Article {
            id: article.id,
            service: kind == ArticleKind::Service,
        });
    }
    Ok(articles)
}

/// An opportunity as a salesperson enters one: an owner of [`OWNERS`], a potential of 1 000 to
/// 500 000 in RON (4 in 5) or EUR, sometimes a probability of its own, a signing date within the
/// next months.
pub(super) fn new_opportunity(
    random: &mut SplitMix64,
    partner_id: String,
    campaign_id: Option<String>,
) -> Opportunity {
    let currency = if random.below(5) == 0 { "EUR" } else { "RON" };
    let signing = super::today() + Days::new(random.below(180));
    Opportunity {
        partner_id,
        campaign_id: campaign_id.unwrap_or_default(),
        title: format!(
            "{} — {}",
            [
                "Echipare birou",
                "Reînnoire parc IT",
                "Contract mentenanță",
                "Rețea nouă"
            ][random.index(4)],
            [
                "trimestrul 1",
                "trimestrul 2",
                "trimestrul 3",
                "trimestrul 4"
            ][random.index(4)]
        ),
        owner_staff_id: owner(1 + random.below(OWNERS)),
        potential_value: Some(money(100_000 + random.below(50_000_000) as i64, currency)),
        probability_percent: (random.below(10) < 3).then(|| random.below(101) as i32),
        expected_signing_date: Some(super::date(signing)),
        description: "Clientul a cerut o ofertă după prezentarea de la sediul lui.".into(),
        ..Default::default()
    }
}

/// `count` opportunities: the first names each campaign once (those announce the campaigns),
/// then 7 in 10 name one. Fates: 35% stay NEW, 22% PRESENTATION, 18% OFFER, 17% NEGOTIATION
/// (some of those are won by a contract later), 8% lost.
fn plan(count: usize, partners: &[String], campaigns: &[String]) -> Vec<Planned> {
    (0..count)
        .map(|i| {
            let mut random = SplitMix64(0x0b00_0000_0000 + i as u64);
            let campaign = if i < campaigns.len() {
                Some(campaigns[i].clone())
            } else {
                (random.below(10) < 7).then(|| campaigns[random.index(campaigns.len())].clone())
            };
            let partner = partners[random.index(partners.len())].clone();
            let request = new_opportunity(&mut random, partner, campaign);
            let fate = match random.below(100) {
                0..35 => Fate::Stay(OpportunityStage::New),
                35..57 => Fate::Stay(OpportunityStage::Presentation),
                57..75 => Fate::Stay(OpportunityStage::Offer),
                75..92 => Fate::Stay(OpportunityStage::Negotiation),
                _ => Fate::Lost,
            };
            Planned { request, fate }
        })
        .collect()
}

/// Creates the planned opportunities with BatchCreateOpportunities, 500 a call; their ids and
/// etags, in plan order.
async fn create_opportunities(
    endpoints: &Endpoints,
    direct: &Clients,
    plan: &[Planned],
) -> Result<Vec<OpenOpportunity>> {
    println!(
        "xtask: loading {} opportunities ({BATCH} a call, {BATCHES_IN_FLIGHT} calls in flight)…",
        plan.len()
    );
    let requests: Arc<Vec<CreateOpportunityRequest>> = Arc::new(
        plan.iter()
            .enumerate()
            .map(|(i, p)| CreateOpportunityRequest {
                opportunity: Some(p.request.clone()),
                request_id: format!("bench-load-{i}"),
            })
            .collect(),
    );
    // The first items, one per campaign, come from marketing (its service token), as
    // GenerateOpportunities would send them: that makes the campaigns known.
    let announcing = CAMPAIGNS.min(requests.len());
    let marketing_token = crate::token::issue_service("marketing", Duration::from_secs(3600));
    let mut marketing = OpportunityServiceClient::with_interceptor(
        endpoints.opportunities.clone(),
        BearerAuth::new(&marketing_token)?,
    );
    let mut created = batch(&mut marketing, &requests[..announcing], 0).await?;

    let chunks = requests.len().saturating_sub(announcing).div_ceil(BATCH);
    let client = direct.opportunities.clone();
    let rest = load_concurrently(chunks, BATCHES_IN_FLIGHT, move |chunk| {
        let (mut client, requests) = (client.clone(), requests.clone());
        async move {
            let from = announcing + chunk * BATCH;
            let to = (from + BATCH).min(requests.len());
            batch(&mut client, &requests[from..to], from).await
        }
    })
    .await?;
    created.extend(rest.into_iter().flatten());
    Ok(created)
}

/// One BatchCreateOpportunities of `items` (numbered from `first` in errors).
async fn batch(
    client: &mut OpportunityServiceClient<super::Intercepted>,
    items: &[CreateOpportunityRequest],
    first: usize,
) -> Result<Vec<OpenOpportunity>> {
    let response = client
        .batch_create_opportunities(BatchCreateOpportunitiesRequest {
            requests: items.to_vec(),
        })
        .await
        .context("BatchCreateOpportunities failed")?
        .into_inner();
    response
        .results
        .into_iter()
        .enumerate()
        .map(|(i, result)| match (result.outcome(), result.opportunity) {
            (BatchItemOutcome::Created | BatchItemOutcome::AlreadyExisted, Some(opportunity)) => {
                Ok(OpenOpportunity {
                    id: opportunity.id,
                    etag: opportunity.etag,
                    stage: OpportunityStage::New,
                })
            }
            _ => bail!(
                "BatchCreateOpportunities refused opportunity {}: {:?}",
                first + i,
                result.error
            ),
        })
        .collect()
}

/// Moves each opportunity to its planned stage (one ChangeOpportunityStage: open stages move
/// freely) or marks it lost; every opportunity's state after, in plan order, and the calls made.
async fn move_stages(
    direct: &Clients,
    plan: &[Planned],
    created: Vec<OpenOpportunity>,
    lost_reasons: &[String],
    args: &BenchArgs,
) -> Result<(Vec<OpenOpportunity>, usize)> {
    let moves: Vec<(usize, Fate)> = plan
        .iter()
        .enumerate()
        .filter(|(_, p)| p.fate != Fate::Stay(OpportunityStage::New))
        .map(|(i, p)| (i, p.fate))
        .collect();
    println!(
        "xtask: moving {} opportunities to their stages…",
        moves.len()
    );
    let count = moves.len();
    let moves = Arc::new(moves);
    let current = Arc::new(created);
    let lost_reasons = Arc::new(lost_reasons.to_vec());
    let (client, shared) = (direct.opportunities.clone(), current.clone());
    let moved = load_concurrently(count, args.concurrency, move |k| {
        let (mut client, current, moves, reasons) = (
            client.clone(),
            shared.clone(),
            moves.clone(),
            lost_reasons.clone(),
        );
        async move {
            let (i, fate) = moves[k];
            let opportunity = &current[i];
            let changed = match fate {
                Fate::Stay(stage) => client
                    .change_opportunity_stage(ChangeOpportunityStageRequest {
                        id: opportunity.id.clone(),
                        etag: opportunity.etag.clone(),
                        stage: stage as i32,
                        request_id: request_id(),
                        ..Default::default()
                    })
                    .await
                    .context("ChangeOpportunityStage failed while loading")?,
                Fate::Lost => client
                    .mark_opportunity_lost(MarkOpportunityLostRequest {
                        id: opportunity.id.clone(),
                        etag: opportunity.etag.clone(),
                        lost_reason_id: reasons[i % reasons.len()].clone(),
                        note: "Clientul a ales alt furnizor.".into(),
                        request_id: request_id(),
                    })
                    .await
                    .context("MarkOpportunityLost failed while loading")?,
            }
            .into_inner();
            let stage = changed.stage();
            anyhow::Ok((i, changed.etag, stage))
        }
    })
    .await?;
    let mut current = Arc::try_unwrap(current).unwrap_or_else(|shared| (*shared).clone());
    for (i, etag, stage) in moved {
        current[i].etag = etag;
        current[i].stage = stage;
    }
    Ok((current, count))
}

/// What the contract loading made.
struct Contracts {
    count: usize,
    active_today: usize,
    partners: usize,
    /// (partner, service article) of each line of a contract active today.
    covered: Vec<(String, String)>,
}

/// One planned contract.
struct PlannedContract {
    request: Contract,
    partner_id: String,
    /// The opportunity it is made from (which its signature wins), by plan index.
    opportunity: Option<usize>,
    active_today: bool,
}

/// Creates and signs `args.contracts` contracts: one in five (at most half the NEGOTIATION
/// opportunities) made from an opportunity, which its signature moves to SALE; the others of
/// partners among two in five of the usable ones (so a partner often has several, and most
/// partners none). Each has one to three service lines, starts in the last two years, and half
/// end (some already have).
async fn load_contracts(
    direct: &Clients,
    plan: &[Planned],
    current: &mut [OpenOpportunity],
    partners: &Partners,
    services: &[Article],
    args: &BenchArgs,
) -> Result<Contracts> {
    let negotiating: Vec<usize> = current
        .iter()
        .enumerate()
        .filter(|(_, o)| o.stage == OpportunityStage::Negotiation)
        .map(|(i, _)| i)
        .collect();
    let from_opportunities = (args.contracts / 5).min(negotiating.len() / 2);
    let holders: Vec<&String> = partners
        .usable
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 5 < 2)
        .map(|(_, p)| p)
        .collect();
    let today = super::today();
    let planned: Vec<PlannedContract> = (0..args.contracts)
        .map(|j| {
            let mut random = SplitMix64(0x0c00_0000_0000 + j as u64);
            let opportunity = (j < from_opportunities).then(|| negotiating[j]);
            let partner_id = match opportunity {
                Some(i) => plan[i].request.partner_id.clone(),
                None => holders[random.index(holders.len())].clone(),
            };
            let start = today - Days::new(random.below(730));
            let end = (random.below(2) == 0).then(|| start + Days::new(90 + random.below(1000)));
            let subscription = random.below(5) < 3;
            let first = random.index(services.len());
            let lines = (0..1 + random.index(3).min(services.len() - 1))
                .map(|k| DocumentLine {
                    article_id: services[(first + k) % services.len()].id.clone(),
                    quantity_milli: 1000 * (1 + random.below(5) as i64),
                    ..Default::default()
                })
                .collect();
            PlannedContract {
                request: Contract {
                    kind: if subscription {
                        ContractKind::Subscription
                    } else {
                        ContractKind::Commercial
                    } as i32,
                    partner_id: if opportunity.is_some() {
                        String::new()
                    } else {
                        partner_id.clone()
                    },
                    opportunity_id: opportunity
                        .map(|i| current[i].id.clone())
                        .unwrap_or_default(),
                    start_date: Some(date(start)),
                    end_date: end.map(date),
                    billing_day: if subscription {
                        1 + random.below(28) as i32
                    } else {
                        0
                    },
                    lines,
                    notes: "Prestările se fac la sediul beneficiarului.".into(),
                    ..Default::default()
                },
                partner_id,
                opportunity,
                active_today: start <= today && end.is_none_or(|e| e >= today),
            }
        })
        .collect();
    println!(
        "xtask: loading {} signed contracts ({from_opportunities} from opportunities)…",
        planned.len()
    );
    let planned = Arc::new(planned);
    let (client, shared) = (direct.contracts.clone(), planned.clone());
    let signed = load_concurrently(planned.len(), args.concurrency, move |j| {
        let (mut client, planned) = (client.clone(), shared.clone());
        async move {
            let draft = client
                .create_contract(CreateContractRequest {
                    contract: Some(planned[j].request.clone()),
                    request_id: request_id(),
                    task_id: String::new(),
                })
                .await
                .context("CreateContract failed while loading")?
                .into_inner();
            client
                .sign_contract(SignContractRequest {
                    id: draft.id,
                    etag: draft.etag,
                    signing_date: None,
                })
                .await
                .context("SignContract failed while loading")?;
            anyhow::Ok(())
        }
    })
    .await?;

    let mut covered = Vec::new();
    let mut with_contracts = HashSet::new();
    for contract in planned.iter() {
        with_contracts.insert(contract.partner_id.as_str());
        if let Some(i) = contract.opportunity {
            current[i].stage = OpportunityStage::Sale;
        }
        if contract.active_today {
            for line in &contract.request.lines {
                covered.push((contract.partner_id.clone(), line.article_id.clone()));
            }
        }
    }
    Ok(Contracts {
        count: signed.len(),
        active_today: planned.iter().filter(|c| c.active_today).count(),
        partners: with_contracts.len(),
        covered,
    })
}

/// Waits until the relay has published every event of the loading (else it would publish them
/// during the measurements), then VACUUM ANALYZE the service's tables: a minute-old bulk load
/// has neither statistics nor a visibility map until autovacuum comes round, at a moment that
/// differs from run to run; a production table is past that point.
async fn settle(database_url: &str) -> Result<()> {
    let started = Instant::now();
    loop {
        let pending = psql(
            database_url,
            "SELECT count(*) FROM opportunities.outbox WHERE published_at IS NULL",
        )?;
        if pending.trim() == "0" {
            break;
        }
        if started.elapsed() > Duration::from_secs(300) {
            bail!("the opportunities relay still has {pending} events to publish after 5 min");
        }
        crate::process::check_interrupted()?;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let tables = psql(
        database_url,
        "SELECT string_agg(format('%I.%I', schemaname, tablename), ', ') FROM pg_tables \
         WHERE schemaname = 'opportunities'",
    )?;
    psql(database_url, &format!("VACUUM (ANALYZE) {}", tables.trim()))?;
    println!(
        "xtask: the relay caught up and the tables were vacuumed in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn stage_name(stage: OpportunityStage) -> &'static str {
    match stage {
        OpportunityStage::New => "new",
        OpportunityStage::Presentation => "presentation",
        OpportunityStage::Offer => "offer",
        OpportunityStage::Negotiation => "negotiation",
        OpportunityStage::Sale => "sale",
        OpportunityStage::Lost => "lost",
        OpportunityStage::Unspecified => "unspecified",
    }
}
