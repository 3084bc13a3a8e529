//! The opportunities rows: GetPipeline over the loaded opportunities, CheckContractCoverage over
//! the loaded contracts (the hot reads first, so they see exactly what was loaded), then the
//! writes — CreateOpportunity, ChangeOpportunityStage with a follow-up, CreateInvoice with 20
//! lines + IssueInvoice — each next to its pgbench ceiling ([`ceilings`]). Every row runs
//! through the gateway, then directly against the service.
//!
//! Targets (from the issue): every write ≥ 0.5× its ceiling (judged on the direct row: the
//! ceiling is the database alone); CheckContractCoverage p99 ≤ 5 ms; GetPipeline p99 ≤ 200 ms.

mod ceilings;
mod load;

use std::{collections::BTreeMap, sync::Arc};

use anyhow::Result;
use chrono::{Days, NaiveDate, Utc};
use crm_proto::{
    common::{Date, Money},
    opportunities::{
        ChangeOpportunityStageRequest, CheckContractCoverageRequest, CreateInvoiceRequest,
        CreateOpportunityRequest, DocumentLine, GetOpportunityRequest, GetPipelineRequest, Invoice,
        IssueInvoiceRequest, Opportunity, OpportunityStage,
        article_service_client::ArticleServiceClient,
        contract_service_client::ContractServiceClient,
        invoice_service_client::InvoiceServiceClient,
        lost_reason_service_client::LostReasonServiceClient,
        opportunity_service_client::OpportunityServiceClient,
    },
};
use serde::Serialize;
use tonic::{Code, Status, service::interceptor::InterceptedService, transport::Channel};

pub use self::ceilings::ceilings;
use super::{
    BearerAuth, BenchArgs, Endpoints, Operation, Row, RowSpec, SplitMix64, Target, Worker, measure,
    partners::Partners,
};

type Intercepted = InterceptedService<Channel, BearerAuth>;

/// The clients of one path (gateway or direct) to the opportunities services.
#[derive(Clone)]
struct Clients {
    opportunities: OpportunityServiceClient<Intercepted>,
    articles: ArticleServiceClient<Intercepted>,
    contracts: ContractServiceClient<Intercepted>,
    invoices: InvoiceServiceClient<Intercepted>,
    lost_reasons: LostReasonServiceClient<Intercepted>,
}

impl Clients {
    fn new(channel: &Channel, auth: &BearerAuth) -> Self {
        let (c, a) = (channel.clone(), auth.clone());
        Self {
            opportunities: OpportunityServiceClient::with_interceptor(c.clone(), a.clone()),
            articles: ArticleServiceClient::with_interceptor(c.clone(), a.clone()),
            contracts: ContractServiceClient::with_interceptor(c.clone(), a.clone()),
            invoices: InvoiceServiceClient::with_interceptor(c.clone(), a.clone()),
            lost_reasons: LostReasonServiceClient::with_interceptor(c, a),
        }
    }
}

/// Staff ids of the owners (and delegates) the loaded opportunities are spread over. The ceiling
/// scripts build the same ids from a number (see [`owner`]).
const OWNERS: u64 = 20;

/// Owner number `n` (1..=[`OWNERS`]): a fixed UUID whose last group is `n` in decimal digits.
fn owner(n: u64) -> String {
    format!("00000000-0000-4000-8000-{n:012}")
}

/// An article of the loaded catalogue.
#[derive(Clone, Debug)]
struct Article {
    id: String,
    service: bool,
}

/// An open opportunity with the etag and stage its last change left it with.
#[derive(Clone, Debug)]
struct OpenOpportunity {
    id: String,
    etag: String,
    stage: OpportunityStage,
}

/// What the loading made, for the rows.
struct Data {
    articles: Arc<Vec<Article>>,
    /// The service articles (those contracts cover).
    services: Arc<Vec<String>>,
    campaigns: Arc<Vec<String>>,
    /// Opportunities left open by the loading, for ChangeOpportunityStage.
    open: Vec<OpenOpportunity>,
    /// (partner, service article) of every line of a contract active today: covered pairs.
    covered: Arc<Vec<(String, String)>>,
}

/// What the opportunities rows ran over, and how long loading it took.
#[derive(Serialize)]
pub struct Loaded {
    articles: usize,
    campaigns: usize,
    owners: u64,
    opportunities: usize,
    /// Opportunities per stage after loading.
    opportunities_by_stage: BTreeMap<&'static str, usize>,
    opportunities_by_currency: BTreeMap<&'static str, usize>,
    contracts: usize,
    contracts_active_today: usize,
    partners_with_contracts: usize,
    /// Seconds each loading step took.
    load_seconds: BTreeMap<&'static str, f64>,
    total_load_seconds: f64,
}

impl Loaded {
    /// One paragraph for the printed report.
    pub fn summary(&self) -> String {
        let stages: Vec<String> = self
            .opportunities_by_stage
            .iter()
            .map(|(s, n)| format!("{s} {n}"))
            .collect();
        let currencies: Vec<String> = self
            .opportunities_by_currency
            .iter()
            .map(|(c, n)| format!("{c} {n}"))
            .collect();
        format!(
            "{} opportunities ({}; {}) over {} owners and {} campaigns; {} signed contracts \
             ({} active today) of {} partners; {} articles; loaded in {:.0} s",
            self.opportunities,
            stages.join(", "),
            currencies.join(", "),
            self.owners,
            self.campaigns,
            self.contracts,
            self.contracts_active_today,
            self.partners_with_contracts,
            self.articles,
            self.total_load_seconds,
        )
    }
}

/// Loads the opportunities data, then measures its rows.
pub async fn run(
    endpoints: &Endpoints,
    partners: &Partners,
    database_url: &str,
    args: &BenchArgs,
) -> Result<(Loaded, Vec<Row>)> {
    let direct = Clients::new(&endpoints.opportunities, &endpoints.auth);
    let gateway = Clients::new(&endpoints.gateway, &endpoints.auth);
    let (data, loaded) = load::load(endpoints, &direct, partners, database_url, args).await?;
    let rows = measure_rows(&gateway, &direct, &data, partners, args).await?;
    Ok((loaded, rows))
}

async fn measure_rows(
    gateway: &Clients,
    direct: &Clients,
    data: &Data,
    partners: &Partners,
    args: &BenchArgs,
) -> Result<Vec<Row>> {
    let (n, seconds) = (args.concurrency, args.seconds);
    // The reads also run with one call in flight: their latency targets are about the call,
    // and with 32 in flight on two cores most of a call's latency is its wait behind the others.
    let reads = [
        ("gateway", gateway, n),
        ("direct", direct, n),
        ("direct", direct, 1),
    ];
    let writes = [("gateway", gateway, n), ("direct", direct, n)];
    // The writes' target is judged on the direct row: the ceiling is the database alone.
    let write_target = |path: &str| (path == "direct").then_some(Target::MinCeilingRatio(0.5));

    let mut rows = rows_of(
        Operation::GetPipeline,
        &reads,
        None,
        |_| Some(Target::MaxP99Ms(200.0)),
        seconds,
        |clients, _| {
            Some(PipelineWorker {
                client: clients.clone(),
            })
        },
    )
    .await?;
    rows.extend(
        rows_of(
            Operation::CheckContractCoverage,
            &reads,
            None,
            |_| Some(Target::MaxP99Ms(5.0)),
            seconds,
            |clients, w| {
                Some(CoverageWorker {
                    client: clients.clone(),
                    covered: data.covered.clone(),
                    partners: partners.usable.clone(),
                    services: data.services.clone(),
                    random: SplitMix64(0xc0_0000 + w as u64),
                })
            },
        )
        .await?,
    );
    rows.extend(
        rows_of(
            Operation::CreateOpportunity,
            &writes,
            Some(ceilings::CREATE_OPPORTUNITY),
            write_target,
            seconds,
            |clients, w| {
                Some(CreateWorker {
                    client: clients.clone(),
                    partners: partners.usable.clone(),
                    campaigns: data.campaigns.clone(),
                    random: SplitMix64(0xc1_0000 + w as u64),
                })
            },
        )
        .await?,
    );
    // Each worker moves opportunities of its own (disjoint between workers and paths), so every
    // call finds the etag its previous call on that opportunity returned.
    let mut open = data.open.chunks((data.open.len() / (2 * n)).clamp(1, 20));
    rows.extend(
        rows_of(
            Operation::ChangeOpportunityStage,
            &writes,
            Some(ceilings::CHANGE_STAGE),
            write_target,
            seconds,
            |clients, w| {
                open.next().map(|mine| StageWorker {
                    client: clients.clone(),
                    opportunities: mine.to_vec(),
                    next: 0,
                    random: SplitMix64(0xc2_0000 + w as u64),
                })
            },
        )
        .await?,
    );
    rows.extend(
        rows_of(
            Operation::CreateAndIssueInvoice,
            &writes,
            Some(ceilings::INVOICE),
            write_target,
            seconds,
            |clients, w| {
                Some(InvoiceWorker {
                    client: clients.clone(),
                    partners: partners.usable.clone(),
                    articles: data.articles.clone(),
                    random: SplitMix64(0xc3_0000 + w as u64),
                })
            },
        )
        .await?,
    );
    Ok(rows)
}

/// One row of `operation` per path (name, clients, calls in flight), each with the workers
/// `make` gives for its clients and worker number (fewer when it gives `None`).
async fn rows_of<W: Worker>(
    operation: Operation,
    paths: &[(&'static str, &Clients, usize)],
    ceiling: Option<&'static str>,
    target: impl Fn(&str) -> Option<Target>,
    seconds: u64,
    mut make: impl FnMut(&Clients, usize) -> Option<W>,
) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    for &(path, clients, n) in paths {
        crate::process::check_interrupted()?;
        let workers = (0..n).filter_map(|w| make(clients, w)).collect();
        let spec = RowSpec {
            operation,
            path,
            ceiling,
            target: target(path),
        };
        rows.push(measure(spec, workers, seconds).await);
    }
    Ok(rows)
}

/// Today in UTC (the company's day, Europe/Bucharest, is the same or one later: a date a week
/// ahead is "today or later" either way).
fn today() -> NaiveDate {
    Utc::now().date_naive()
}

fn date(day: NaiveDate) -> Date {
    use chrono::Datelike as _;
    Date {
        year: day.year(),
        month: day.month() as i32,
        day: day.day() as i32,
    }
}

fn money(units: i64, currency: &str) -> Money {
    Money {
        units,
        currency_code: currency.to_owned(),
    }
}

fn request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// The pipeline as a sales dashboard asks for it: every open opportunity, by owner and campaign.
struct PipelineWorker {
    client: Clients,
}

impl Worker for PipelineWorker {
    async fn call(&mut self) -> Result<(), Status> {
        self.client
            .opportunities
            .get_pipeline(GetPipelineRequest {
                group_by_owner: true,
                group_by_campaign: true,
                ..Default::default()
            })
            .await?;
        Ok(())
    }
}

/// Half the questions name a partner and service of a contract active today (covered), half a
/// random partner and service (mostly not covered: most partners have no contract).
struct CoverageWorker {
    client: Clients,
    covered: Arc<Vec<(String, String)>>,
    partners: Arc<Vec<String>>,
    services: Arc<Vec<String>>,
    random: SplitMix64,
}

impl Worker for CoverageWorker {
    async fn call(&mut self) -> Result<(), Status> {
        let (partner_id, article_id) = if self.random.below(2) == 0 && !self.covered.is_empty() {
            self.covered[self.random.index(self.covered.len())].clone()
        } else {
            (
                self.partners[self.random.index(self.partners.len())].clone(),
                self.services[self.random.index(self.services.len())].clone(),
            )
        };
        self.client
            .contracts
            .check_contract_coverage(CheckContractCoverageRequest {
                partner_id,
                article_id,
                date: None,
            })
            .await?;
        Ok(())
    }
}

/// A new opportunity of a known partner, in a known campaign, as a salesperson enters one.
struct CreateWorker {
    client: Clients,
    partners: Arc<Vec<String>>,
    campaigns: Arc<Vec<String>>,
    random: SplitMix64,
}

impl Worker for CreateWorker {
    async fn call(&mut self) -> Result<(), Status> {
        let partner_id = self.partners[self.random.index(self.partners.len())].clone();
        let campaign_id = self.campaigns[self.random.index(self.campaigns.len())].clone();
        let opportunity = load::new_opportunity(&mut self.random, partner_id, Some(campaign_id));
        self.client
            .opportunities
            .create_opportunity(CreateOpportunityRequest {
                opportunity: Some(opportunity),
                request_id: request_id(),
            })
            .await?;
        Ok(())
    }
}

/// Moves its opportunities in turn to the next open stage (NEW → PRESENTATION → OFFER →
/// NEGOTIATION → NEW …) with a follow-up a week ahead and a delegate, passing the etag the
/// previous change of that opportunity returned.
struct StageWorker {
    client: Clients,
    opportunities: Vec<OpenOpportunity>,
    next: usize,
    random: SplitMix64,
}

const OPEN_STAGES: [OpportunityStage; 4] = [
    OpportunityStage::New,
    OpportunityStage::Presentation,
    OpportunityStage::Offer,
    OpportunityStage::Negotiation,
];

impl Worker for StageWorker {
    async fn call(&mut self) -> Result<(), Status> {
        let i = self.next % self.opportunities.len();
        self.next += 1;
        let current = &self.opportunities[i];
        let position = OPEN_STAGES
            .iter()
            .position(|s| *s == current.stage)
            .unwrap_or(0);
        let target = OPEN_STAGES[(position + 1) % OPEN_STAGES.len()];
        let request = ChangeOpportunityStageRequest {
            id: current.id.clone(),
            etag: current.etag.clone(),
            stage: target as i32,
            delegate_staff_id: owner(1 + self.random.below(OWNERS)),
            follow_up_date: Some(date(today() + Days::new(7))),
            follow_up_note: "Sună clientul pentru un răspuns la ofertă".into(),
            allocated_value: None,
            request_id: request_id(),
        };
        match self
            .client
            .opportunities
            .change_opportunity_stage(request)
            .await
        {
            Ok(response) => {
                let changed = response.into_inner();
                self.opportunities[i].stage = changed.stage();
                self.opportunities[i].etag = changed.etag;
                Ok(())
            }
            Err(status) => {
                // The change may have happened (a lost answer): read the etag again, or every
                // later call on this opportunity would be ABORTED too.
                if status.code() != Code::InvalidArgument
                    && let Ok(response) = self
                        .client
                        .opportunities
                        .get_opportunity(GetOpportunityRequest {
                            id: self.opportunities[i].id.clone(),
                        })
                        .await
                {
                    let fresh: Opportunity = response.into_inner();
                    self.opportunities[i].stage = fresh.stage();
                    self.opportunities[i].etag = fresh.etag;
                }
                Err(status)
            }
        }
    }
}

/// A manual invoice of a known partner with 20 lines of catalogue articles (at their list
/// prices), then its issue: one unit.
struct InvoiceWorker {
    client: Clients,
    partners: Arc<Vec<String>>,
    articles: Arc<Vec<Article>>,
    random: SplitMix64,
}

/// Lines of each measured invoice.
const INVOICE_LINES: usize = 20;

impl Worker for InvoiceWorker {
    async fn call(&mut self) -> Result<(), Status> {
        let first = self.random.index(self.articles.len());
        let lines = (0..INVOICE_LINES)
            .map(|k| DocumentLine {
                article_id: self.articles[(first + k) % self.articles.len()].id.clone(),
                quantity_milli: 1000 * (1 + self.random.below(20) as i64),
                discount_bp: if self.random.below(4) == 0 { 500 } else { 0 },
                ..Default::default()
            })
            .collect();
        let draft = self
            .client
            .invoices
            .create_invoice(CreateInvoiceRequest {
                invoice: Some(Invoice {
                    partner_id: self.partners[self.random.index(self.partners.len())].clone(),
                    currency_code: "RON".into(),
                    lines,
                    notes: "Plata prin ordin de plată în contul din antet.".into(),
                    ..Default::default()
                }),
                request_id: request_id(),
                issue: false,
            })
            .await?
            .into_inner();
        self.client
            .invoices
            .issue_invoice(IssueInvoiceRequest {
                id: draft.id,
                etag: draft.etag,
            })
            .await?;
        Ok(())
    }
}
