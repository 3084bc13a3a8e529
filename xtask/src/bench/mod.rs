//! `cargo xtask bench`: throughput and latency of the CRM's calls, through the gateway and
//! directly against each service, each write next to a pgbench ceiling run on the same database.
//!
//! It runs its own release-built stack on its own ports (gateway 50151, marketing 50161,
//! opportunities 50162, PostgreSQL 55434, Redis 56381), so it can run while `cargo xtask dev`
//! does. Each service's rows are a module of their own: [`partners`] (marketing) and
//! [`opportunities`]; this module has what they share — the measuring loop, the rows, the report.
//!
//! A run: load partners, measure the partner rows; load the opportunities data, measure its rows;
//! stop the stack; run the pgbench ceilings on the bench database, which then has the machine to
//! itself; print the table and write `target/bench/latest.json`.

mod opportunities;
mod partners;
mod pgbench;

use std::{
    fs,
    future::Future,
    path::Path,
    process::{Command, ExitCode},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, Result, bail};
use clap::Args;
use serde::Serialize;
use tonic::{
    Request, Status,
    metadata::{Ascii, MetadataValue},
    service::Interceptor,
    transport::{Channel, Endpoint},
};

use crate::{
    dev::service_env,
    process,
    provision::{self, External, Purpose},
    stack::{self, BENCH_PORT_OFFSET, Stack, StackOptions},
    token,
    workspace::Workspace,
};

#[derive(Args)]
pub struct BenchArgs {
    /// Requests in flight at once, per measurement (and pgbench clients).
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Length of each measurement, in seconds.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Partners loaded before measuring.
    #[arg(long, default_value_t = 10_000)]
    partners: usize,
    /// Opportunities loaded before measuring the opportunities rows (GetPipeline sums them).
    #[arg(long, default_value_t = 100_000)]
    opportunities: usize,
    /// Signed contracts loaded before measuring (CheckContractCoverage searches them).
    #[arg(long, default_value_t = 10_000)]
    contracts: usize,
}

/// What is measured: one gRPC call, or the few calls of one operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Operation {
    CreatePartner,
    GetPartner,
    ListPartners,
    CreateOpportunity,
    ChangeOpportunityStage,
    GetPipeline,
    /// CreateInvoice (a draft with 20 lines) then IssueInvoice of it: one unit.
    #[serde(rename = "CreateInvoice+IssueInvoice")]
    CreateAndIssueInvoice,
    CheckContractCoverage,
}

impl Operation {
    fn name(self) -> &'static str {
        match self {
            Self::CreatePartner => "CreatePartner",
            Self::GetPartner => "GetPartner",
            Self::ListPartners => "ListPartners",
            Self::CreateOpportunity => "CreateOpportunity",
            Self::ChangeOpportunityStage => "ChangeOpportunityStage",
            Self::GetPipeline => "GetPipeline",
            Self::CreateAndIssueInvoice => "CreateInvoice+IssueInvoice",
            Self::CheckContractCoverage => "CheckContractCoverage",
        }
    }
}

/// What the issue asks of a row.
#[derive(Clone, Copy, Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// Calls/s at least this share of the row's pgbench ceiling.
    MinCeilingRatio(f64),
    /// p99 latency at most this many milliseconds.
    MaxP99Ms(f64),
}

impl Target {
    fn describe(self) -> String {
        match self {
            Self::MinCeilingRatio(r) => format!("≥ {r}× ceiling"),
            Self::MaxP99Ms(ms) => format!("p99 ≤ {ms} ms"),
        }
    }
}

/// What a row is before it is measured.
#[derive(Clone, Copy, Debug)]
pub struct RowSpec {
    pub operation: Operation,
    /// "gateway" or "direct".
    pub path: &'static str,
    /// The pgbench ceiling (see [`pgbench::Ceiling`]) this row is compared with, by name.
    pub ceiling: Option<&'static str>,
    pub target: Option<Target>,
}

/// One measured row of the table.
#[derive(Serialize)]
pub struct Row {
    operation: Operation,
    path: &'static str,
    /// Calls in flight at once.
    concurrency: usize,
    calls: usize,
    calls_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: usize,
    /// The first error, to tell why when `errors` is not 0.
    first_error: Option<String>,
    /// The pgbench ceiling this row is compared with, by name.
    ceiling: Option<&'static str>,
    /// Its transactions per second (one transaction = one unit of this row).
    ceiling_tps: Option<f64>,
    /// calls_per_sec ÷ ceiling_tps.
    ratio_to_ceiling: Option<f64>,
    /// The issue's target for this row, and whether this run met it.
    target: Option<Target>,
    target_met: Option<bool>,
}

/// Adds `authorization: Bearer …` to every request.
#[derive(Clone)]
pub struct BearerAuth(MetadataValue<Ascii>);

impl BearerAuth {
    /// `token` as a bearer header.
    pub fn new(token: &str) -> Result<Self> {
        Ok(Self(format!("Bearer {token}").parse()?))
    }
}

impl Interceptor for BearerAuth {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        Ok(request)
    }
}

/// The running stack as the rows see it: a channel to each process and the bench user's auth.
pub struct Endpoints {
    pub gateway: Channel,
    pub marketing: Channel,
    pub opportunities: Channel,
    /// User `bench`, role admin: passes every role check, as a user (not a service).
    pub auth: BearerAuth,
}

#[derive(Serialize)]
struct Report {
    unix_time: u64,
    git_commit: Option<String>,
    concurrency: usize,
    seconds: u64,
    partners_loaded: usize,
    /// What the opportunities rows ran over, and how long loading it took.
    opportunities_data: Option<opportunities::Loaded>,
    rows: Vec<Row>,
    /// pgbench's single-row INSERT (the partner rows' ceiling, kept from the first bench).
    pgbench: Option<pgbench::Outcome>,
    /// Every pgbench ceiling, the INSERT included.
    ceilings: Vec<pgbench::Ceiling>,
    gateway_vs_direct: Vec<Ratio>,
    /// CreatePartner direct calls/s ÷ pgbench INSERT tps.
    create_direct_vs_pgbench: f64,
    /// Seconds the whole run took, build excluded.
    total_seconds: f64,
    /// The machine's 1-minute load average when the run began and when it ended: other work
    /// on the same cores shows here (2 cores: above 2, every process waits for a core).
    load_average: [Option<f64>; 2],
}

#[derive(Serialize)]
struct Ratio {
    operation: Operation,
    /// Gateway calls/s ÷ direct calls/s (1.0 = the gateway costs nothing).
    throughput: f64,
    /// Gateway p50 ÷ direct p50.
    p50_latency: f64,
}

pub fn run(workspace: &Workspace, args: &BenchArgs) -> Result<ExitCode> {
    if args.concurrency == 0 || args.seconds == 0 {
        bail!("--concurrency and --seconds must be at least 1");
    }
    if cfg!(debug_assertions) {
        return run_from_release(workspace);
    }
    stack::build(workspace, true)?;
    let started = Instant::now();
    let backing = provision::provision(workspace, Purpose::Bench, External::from_service_env())?;
    let bench_dir = workspace.target.join("bench");
    let blobs = bench_dir.join("blobs");
    fs::create_dir_all(&blobs)?;
    let mut env = service_env(&backing, &blobs.to_string_lossy(), "json");
    // Per-request logs would measure the terminal, not the service.
    env.push(("CRM__TELEMETRY__LOG_FILTER".into(), "warn".into()));
    let options = StackOptions {
        bin_dir: workspace.target.join("release"),
        port_offset: BENCH_PORT_OFFSET,
        env,
        // The per-user rate limit (50/s by default) would measure the limit, not the gateway;
        // raised out of reach, the limiter still runs and its cost is measured.
        gateway_env: vec![
            (
                "CRM__RATE_LIMIT__REQUESTS_PER_SECOND".into(),
                "1000000000".into(),
            ),
            ("CRM__RATE_LIMIT__BURST".into(), "1000000000".into()),
        ],
        health_timeout: Duration::from_secs(60),
    };

    let load_at_start = load_average();
    let runtime = tokio::runtime::Runtime::new()?;
    let (mut rows, partners_loaded, loaded) = runtime.block_on(async {
        let stack = Stack::start(&options).await?;
        let token = token::issue("bench", &["admin"], Duration::from_secs(3600))?;
        let channel = |name: &str| {
            let addr = stack
                .addr(name)
                .with_context(|| format!("{name} has no address"))?;
            anyhow::Ok(Endpoint::from_shared(format!("http://{addr}"))?.connect_lazy())
        };
        let target = Endpoints {
            gateway: channel("gateway")?,
            marketing: channel("marketing")?,
            opportunities: channel("opportunities")?,
            auth: BearerAuth::new(&token)?,
        };

        let partners = partners::load(&target, args).await?;
        let mut rows = partners::measure(&target, &partners, args).await?;
        let (loaded, opportunity_rows) =
            opportunities::run(&target, &partners, &backing.database_url, args).await?;
        rows.extend(opportunity_rows);
        anyhow::Ok((rows, partners.all.len(), loaded))
        // The stack stops here, before pgbench, which should have the machine to itself.
    })?;

    process::check_interrupted()?;
    let mut ceilings = Vec::new();
    let insert = pgbench::insert_ceiling(&backing.database_url, &bench_dir, args);
    ceilings.push(insert);
    ceilings.extend(opportunities::ceilings(
        &backing.database_url,
        &bench_dir,
        &loaded,
        args,
    ));
    drop(backing);

    apply_ceilings(&mut rows, &ceilings);
    let mut report = report(
        workspace,
        rows,
        ceilings,
        partners_loaded,
        loaded,
        args,
        started,
    );
    report.load_average = [load_at_start, load_average()];
    print_report(&report);
    write_report(&report, &bench_dir)?;
    Ok(ExitCode::SUCCESS)
}

/// Runs the bench again from a release build of xtask, with the same arguments. `cargo xtask`
/// is a debug build, and the load generator shares the machine with what it measures: its
/// unoptimised gRPC client (h2, tonic, prost at opt-level 0) took as much CPU as the service
/// under test (perf during the CreateOpportunity row: 12% of both cores each, the database 24%),
/// CPU the database and the service then lacked.
fn run_from_release(workspace: &Workspace) -> Result<ExitCode> {
    println!("xtask: the load generator is measured too: running the bench from a release build");
    let status = process::run_foreground(
        workspace
            .cargo()
            .args(["run", "--quiet", "--release", "--package", "xtask", "--"])
            .args(std::env::args_os().skip(1)),
    )?;
    Ok(if status.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// One loop of calls of a measured row, with what it needs between calls (its ids, the etags the
/// previous calls returned). Each row runs `--concurrency` of them at once.
pub trait Worker: Send + 'static {
    /// One measured unit: one call, or the calls of one operation.
    fn call(&mut self) -> impl Future<Output = Result<(), Status>> + Send;
}

/// Runs `workers` for one second unmeasured (connections, caches and prepared statements get
/// ready), then for `seconds`, measured; the row, and the workers for the next row of the same
/// kind.
pub async fn measure<W: Worker>(spec: RowSpec, workers: Vec<W>, seconds: u64) -> Row {
    println!(
        "xtask: measuring {} via {} for {seconds} s…",
        spec.operation.name(),
        spec.path
    );
    let concurrency = workers.len();
    let (workers, _) = run_workers(workers, Duration::from_secs(1)).await;
    let started = Instant::now();
    let (_, results) = run_workers(workers, Duration::from_secs(seconds)).await;
    let elapsed = started.elapsed().as_secs_f64();

    let mut latencies_us: Vec<u32> = Vec::new();
    let (mut errors, mut first_error) = (0, None);
    for result in results {
        latencies_us.extend(result.latencies_us);
        errors += result.errors;
        first_error = first_error.or(result.first_error);
    }
    latencies_us.sort_unstable();
    let percentile = |p: f64| {
        if latencies_us.is_empty() {
            return 0.0;
        }
        let index = ((latencies_us.len() as f64 * p).ceil() as usize).clamp(1, latencies_us.len());
        f64::from(latencies_us[index - 1]) / 1000.0
    };
    Row {
        operation: spec.operation,
        path: spec.path,
        concurrency,
        calls: latencies_us.len(),
        calls_per_sec: latencies_us.len() as f64 / elapsed,
        p50_ms: percentile(0.50),
        p99_ms: percentile(0.99),
        errors,
        first_error,
        ceiling: spec.ceiling,
        ceiling_tps: None,
        ratio_to_ceiling: None,
        target: spec.target,
        target_met: None,
    }
}

#[derive(Default)]
struct WorkerResult {
    /// Latency of each successful call, in microseconds.
    latencies_us: Vec<u32>,
    errors: usize,
    first_error: Option<String>,
}

/// Each worker in a task of its own, calling back to back until `duration` has passed; the
/// workers (a worker whose task panicked is lost) and what they measured.
async fn run_workers<W: Worker>(
    workers: Vec<W>,
    duration: Duration,
) -> (Vec<W>, Vec<WorkerResult>) {
    let deadline = Instant::now() + duration;
    let tasks: Vec<_> = workers
        .into_iter()
        .map(|mut worker| {
            tokio::spawn(async move {
                let mut result = WorkerResult::default();
                while Instant::now() < deadline && !process::interrupted() {
                    let started = Instant::now();
                    match worker.call().await {
                        Ok(()) => {
                            let micros = started.elapsed().as_micros();
                            result
                                .latencies_us
                                .push(u32::try_from(micros).unwrap_or(u32::MAX));
                        }
                        Err(status) => {
                            result.errors += 1;
                            result.first_error.get_or_insert_with(|| {
                                format!("{:?}: {}", status.code(), status.message())
                            });
                        }
                    }
                }
                (worker, result)
            })
        })
        .collect();
    let (mut workers, mut results) = (Vec::new(), Vec::new());
    for task in tasks {
        if let Ok((worker, result)) = task.await {
            workers.push(worker);
            results.push(result);
        }
    }
    (workers, results)
}

/// Calls `call(i)` for every `i` in `0..count`, `concurrency` at a time; the results in `i`
/// order. Stops at the first error (or Ctrl-C).
pub async fn load_concurrently<T, F, Fut>(
    count: usize,
    concurrency: usize,
    call: F,
) -> Result<Vec<T>>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<T>> + Send,
{
    let call = Arc::new(call);
    let next = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..concurrency.clamp(1, count.max(1)))
        .map(|_| {
            let (call, next) = (call.clone(), next.clone());
            tokio::spawn(async move {
                let mut done = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count {
                        return anyhow::Ok(done);
                    }
                    process::check_interrupted()?;
                    done.push((i, call(i).await?));
                }
            })
        })
        .collect();
    let mut all = Vec::with_capacity(count);
    for task in tasks {
        all.extend(task.await??);
    }
    all.sort_unstable_by_key(|(i, _)| *i);
    Ok(all.into_iter().map(|(_, t)| t).collect())
}

/// Prints how long a loading step took and its rate.
pub fn print_loaded(what: &str, count: usize, started: Instant) -> f64 {
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "xtask: loaded {count} {what} in {elapsed:.1} s ({:.0}/s)",
        count as f64 / elapsed.max(1e-9)
    );
    elapsed
}

/// A tiny deterministic PRNG (SplitMix64): reproducible data without a dependency.
#[derive(Clone)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (n > 0); the modulo bias is irrelevant here.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// An index into a slice of `len` (> 0) items.
    pub fn index(&mut self, len: usize) -> usize {
        self.below(len as u64) as usize
    }
}

/// Puts each ceiling's rate on the rows that name it, then checks the targets.
fn apply_ceilings(rows: &mut [Row], ceilings: &[pgbench::Ceiling]) {
    for row in rows {
        let tps = row
            .ceiling
            .and_then(|name| ceilings.iter().find(|c| c.name == name))
            .and_then(|c| c.outcome.as_ref())
            .map(|o| o.tps);
        row.ceiling_tps = tps;
        row.ratio_to_ceiling = tps.filter(|t| *t > 0.0).map(|t| row.calls_per_sec / t);
        row.target_met = match row.target {
            Some(Target::MinCeilingRatio(min)) => row.ratio_to_ceiling.map(|r| r >= min),
            Some(Target::MaxP99Ms(max)) => Some(row.p99_ms <= max && row.calls > 0),
            None => None,
        };
    }
}

fn report(
    workspace: &Workspace,
    rows: Vec<Row>,
    ceilings: Vec<pgbench::Ceiling>,
    partners_loaded: usize,
    loaded: opportunities::Loaded,
    args: &BenchArgs,
    started: Instant,
) -> Report {
    // The rows at `--concurrency` (the reads also have a row at one call in flight).
    let find = |operation: Operation, path: &str| {
        rows.iter().find(|r| {
            r.operation == operation && r.path == path && r.concurrency == args.concurrency
        })
    };
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
    let mut operations: Vec<Operation> = Vec::new();
    for row in &rows {
        if !operations.contains(&row.operation) {
            operations.push(row.operation);
        }
    }
    let gateway_vs_direct = operations
        .into_iter()
        .filter_map(|operation| {
            let (gateway, direct) = (find(operation, "gateway")?, find(operation, "direct")?);
            Some(Ratio {
                operation,
                throughput: ratio(gateway.calls_per_sec, direct.calls_per_sec),
                p50_latency: ratio(gateway.p50_ms, direct.p50_ms),
            })
        })
        .collect();
    let pgbench = ceilings
        .iter()
        .find(|c| c.name == pgbench::INSERT)
        .and_then(|c| c.outcome.clone());
    let create_direct_vs_pgbench = find(Operation::CreatePartner, "direct")
        .zip(pgbench.as_ref())
        .map(|(r, p)| ratio(r.calls_per_sec, p.tps))
        .unwrap_or(0.0);
    Report {
        unix_time: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs(),
        git_commit: process::output(
            Command::new("git")
                .args(["rev-parse", "HEAD"])
                .current_dir(&workspace.root),
        )
        .ok()
        .map(|s| s.trim().to_owned()),
        concurrency: args.concurrency,
        seconds: args.seconds,
        partners_loaded,
        opportunities_data: Some(loaded),
        rows,
        pgbench,
        ceilings,
        gateway_vs_direct,
        create_direct_vs_pgbench,
        total_seconds: started.elapsed().as_secs_f64(),
        load_average: [None, None],
    }
}

/// The 1-minute load average (Linux), if it can be read.
fn load_average() -> Option<f64> {
    fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn print_report(report: &Report) {
    println!();
    println!(
        "concurrency {}, {} s per row, {} partners loaded",
        report.concurrency, report.seconds, report.partners_loaded
    );
    if let Some(data) = &report.opportunities_data {
        println!("{}", data.summary());
    }
    println!(
        "{:<26} {:<8} {:>6} {:>9} {:>8} {:>8} {:>7} {:>10} {:>6}  target",
        "operation",
        "path",
        "flight",
        "calls/s",
        "p50 ms",
        "p99 ms",
        "errors",
        "ceiling/s",
        "ratio",
    );
    let or_dash = |v: Option<f64>, precision: usize| {
        v.map_or_else(|| "-".to_owned(), |v| format!("{v:.precision$}"))
    };
    for row in &report.rows {
        let target = match (row.target, row.target_met) {
            (Some(t), Some(met)) => {
                format!("{} {}", t.describe(), if met { "met" } else { "MISSED" })
            }
            (Some(t), None) => format!("{} (no ceiling)", t.describe()),
            (None, _) => String::new(),
        };
        println!(
            "{:<26} {:<8} {:>6} {:>9.1} {:>8.2} {:>8.2} {:>7} {:>10} {:>6}  {}",
            row.operation.name(),
            row.path,
            row.concurrency,
            row.calls_per_sec,
            row.p50_ms,
            row.p99_ms,
            row.errors,
            or_dash(row.ceiling_tps, 1),
            or_dash(row.ratio_to_ceiling, 2),
            target
        );
    }
    println!();
    for ceiling in &report.ceilings {
        match (&ceiling.outcome, &ceiling.error) {
            (Some(o), _) => println!(
                "ceiling {:<28} pgbench {:>9.1} tps, average latency {}",
                ceiling.name,
                o.tps,
                or_dash(o.latency_avg_ms, 2) + " ms"
            ),
            (None, error) => println!(
                "ceiling {:<28} FAILED: {}",
                ceiling.name,
                error.as_deref().unwrap_or("?")
            ),
        }
    }
    println!();
    for ratio in &report.gateway_vs_direct {
        println!(
            "gateway/direct {:<26} throughput {:.2}  p50 latency {:.2}",
            ratio.operation.name(),
            ratio.throughput,
            ratio.p50_latency
        );
    }
    println!(
        "CreatePartner(direct)/pgbench INSERT: {:.2}",
        report.create_direct_vs_pgbench
    );
    for row in report.rows.iter().filter(|r| r.errors > 0) {
        println!(
            "errors in {} via {}: first was {}",
            row.operation.name(),
            row.path,
            row.first_error.as_deref().unwrap_or("?")
        );
    }
    let [start, end] = report
        .load_average
        .map(|l| l.map_or("?".into(), |l| format!("{l:.1}")));
    println!(
        "xtask: the run took {:.0} s; the machine's load average was {start} when the run \
         began, {end} at the end",
        report.total_seconds
    );
}

fn write_report(report: &Report, bench_dir: &Path) -> Result<()> {
    let json = serde_json::to_string_pretty(report)?;
    let path = bench_dir.join(format!("bench-{}.json", report.unix_time));
    fs::write(&path, &json)?;
    fs::write(bench_dir.join("latest.json"), &json)?;
    println!("xtask: wrote {} and latest.json", path.display());
    Ok(())
}
