//! `cargo xtask bench`: throughput and latency of the partner API, through the gateway and
//! directly against marketing, next to pgbench's single-row INSERT rate on the same database as
//! the ceiling that no create path can beat.
//!
//! It runs its own release-built stack on its own ports (gateway 50151, marketing 50161,
//! PostgreSQL 55434, Redis 56381), so it can run while `cargo xtask dev` does.

use std::{
    fs,
    process::{Command, ExitCode},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, Result, bail};
use clap::Args;
use crm_proto::{
    common::Money,
    marketing::{
        CreatePartnerRequest, GetPartnerRequest, ListPartnersRequest, Partner, PartnerKind,
        partner_service_client::PartnerServiceClient,
    },
};
use serde::Serialize;
use tonic::{
    Request, Status,
    metadata::{Ascii, MetadataValue},
    service::{Interceptor, interceptor::InterceptedService},
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
}

/// Cities (with their county) that loaded partners are spread over; the list filter picks one.
const CITIES: [(&str, &str); 20] = [
    ("București", "București"),
    ("Cluj-Napoca", "Cluj"),
    ("Timișoara", "Timiș"),
    ("Iași", "Iași"),
    ("Constanța", "Constanța"),
    ("Craiova", "Dolj"),
    ("Brașov", "Brașov"),
    ("Galați", "Galați"),
    ("Ploiești", "Prahova"),
    ("Oradea", "Bihor"),
    ("Brăila", "Brăila"),
    ("Arad", "Arad"),
    ("Pitești", "Argeș"),
    ("Sibiu", "Sibiu"),
    ("Bacău", "Bacău"),
    ("Târgu Mureș", "Mureș"),
    ("Baia Mare", "Maramureș"),
    ("Buzău", "Buzău"),
    ("Botoșani", "Botoșani"),
    ("Satu Mare", "Satu Mare"),
];
const NAME_WORDS: [&str; 12] = [
    "Agro",
    "Tehno",
    "Construct",
    "Trans",
    "Medi",
    "Eco",
    "Nord",
    "Carpați",
    "Delta",
    "Vest",
    "Prod",
    "Serv",
];
const LIST_CITY: &str = "Cluj-Napoca";
const LIST_EMPLOYEES_MIN: i64 = 100;

type Client = PartnerServiceClient<InterceptedService<Channel, BearerAuth>>;

/// Adds `authorization: Bearer …` to every request.
#[derive(Clone)]
struct BearerAuth(MetadataValue<Ascii>);

impl Interceptor for BearerAuth {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        Ok(request)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
enum Operation {
    CreatePartner,
    GetPartner,
    ListPartners,
}

#[derive(Serialize)]
struct Row {
    operation: Operation,
    path: &'static str,
    calls: usize,
    calls_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: usize,
    /// The first error, to tell why when `errors` is not 0.
    first_error: Option<String>,
}

#[derive(Serialize)]
struct Pgbench {
    tps: f64,
    latency_avg_ms: Option<f64>,
}

#[derive(Serialize)]
struct Ratio {
    operation: Operation,
    /// Gateway calls/s ÷ direct calls/s (1.0 = the gateway costs nothing).
    throughput: f64,
    /// Gateway p50 ÷ direct p50.
    p50_latency: f64,
}

#[derive(Serialize)]
struct Report {
    unix_time: u64,
    git_commit: Option<String>,
    concurrency: usize,
    seconds: u64,
    partners_loaded: usize,
    rows: Vec<Row>,
    pgbench: Pgbench,
    gateway_vs_direct: Vec<Ratio>,
    /// CreatePartner direct calls/s ÷ pgbench INSERT tps.
    create_direct_vs_pgbench: f64,
}

pub fn run(workspace: &Workspace, args: &BenchArgs) -> Result<ExitCode> {
    if args.concurrency == 0 || args.seconds == 0 {
        bail!("--concurrency and --seconds must be at least 1");
    }
    stack::build(workspace, true)?;
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

    let runtime = tokio::runtime::Runtime::new()?;
    let (rows, loaded) = runtime.block_on(async {
        let stack = Stack::start(&options).await?;
        let token = token::issue("bench", &["admin"], Duration::from_secs(3600))?;
        let auth = BearerAuth(format!("Bearer {token}").parse()?);
        let connect = |name: &str| {
            let addr = stack
                .addr(name)
                .with_context(|| format!("{name} has no address"))?;
            let channel = Endpoint::from_shared(format!("http://{addr}"))?.connect_lazy();
            anyhow::Ok(PartnerServiceClient::with_interceptor(
                channel,
                auth.clone(),
            ))
        };
        let gateway = connect("gateway")?;
        let direct = connect("marketing")?;

        let ids = load_partners(&direct, args).await?;
        let ids = Arc::new(ids);
        let mut rows = Vec::new();
        for operation in [
            Operation::CreatePartner,
            Operation::GetPartner,
            Operation::ListPartners,
        ] {
            for (path, client) in [("gateway", &gateway), ("direct", &direct)] {
                process::check_interrupted()?;
                println!(
                    "xtask: measuring {operation:?} via {path} for {} s…",
                    args.seconds
                );
                rows.push(measure(operation, path, client, &ids, args).await);
            }
        }
        anyhow::Ok((rows, ids.len()))
        // The stack stops here, before pgbench, which should have the machine to itself.
    })?;

    process::check_interrupted()?;
    let pgbench = run_pgbench(&backing.database_url, &bench_dir, args)?;
    drop(backing);

    let report = report(workspace, rows, pgbench, loaded, args);
    print_report(&report);
    write_report(&report, &bench_dir)?;
    Ok(ExitCode::SUCCESS)
}

/// Creates `args.partners` partners with `args.concurrency` requests in flight; their ids.
async fn load_partners(client: &Client, args: &BenchArgs) -> Result<Vec<String>> {
    println!("xtask: loading {} partners…", args.partners);
    // One call alone first: if the API does not work at all, say why instead of measuring errors.
    let first = client
        .clone()
        .create_partner(create_request(0))
        .await
        .context("CreatePartner directly against marketing failed")?;
    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(1));
    let mut workers = Vec::new();
    for _ in 0..args.concurrency {
        let (mut client, next, total) = (client.clone(), next.clone(), args.partners);
        workers.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total || process::interrupted() {
                    return Ok::<_, Status>(ids);
                }
                ids.push(
                    client
                        .create_partner(create_request(i))
                        .await?
                        .into_inner()
                        .id,
                );
            }
        }));
    }
    let mut ids = vec![first.into_inner().id];
    for worker in workers {
        ids.extend(
            worker
                .await?
                .context("CreatePartner failed while loading")?,
        );
    }
    process::check_interrupted()?;
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "xtask: loaded {} partners in {elapsed:.1} s ({:.0}/s)",
        ids.len(),
        ids.len() as f64 / elapsed
    );
    Ok(ids)
}

/// Calls `operation` through `client` for `args.seconds`, with `args.concurrency` in flight.
async fn measure(
    operation: Operation,
    path: &'static str,
    client: &Client,
    ids: &Arc<Vec<String>>,
    args: &BenchArgs,
) -> Row {
    // A short warm-up, not measured: connections, caches and prepared statements get ready.
    run_workers(
        operation,
        client,
        ids,
        args.concurrency,
        Duration::from_secs(1),
    )
    .await;
    let duration = Duration::from_secs(args.seconds);
    let started = Instant::now();
    let results = run_workers(operation, client, ids, args.concurrency, duration).await;
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
        operation,
        path,
        calls: latencies_us.len(),
        calls_per_sec: latencies_us.len() as f64 / elapsed,
        p50_ms: percentile(0.50),
        p99_ms: percentile(0.99),
        errors,
        first_error,
    }
}

#[derive(Default)]
struct WorkerResult {
    /// Latency of each successful call, in microseconds.
    latencies_us: Vec<u32>,
    errors: usize,
    first_error: Option<String>,
}

/// `concurrency` loops, each calling `operation` back to back until `duration` has passed.
async fn run_workers(
    operation: Operation,
    client: &Client,
    ids: &Arc<Vec<String>>,
    concurrency: usize,
    duration: Duration,
) -> Vec<WorkerResult> {
    let deadline = Instant::now() + duration;
    let serial = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for worker in 0..concurrency {
        let (mut client, ids, serial) = (client.clone(), ids.clone(), serial.clone());
        workers.push(tokio::spawn(async move {
            let mut result = WorkerResult::default();
            let mut random = SplitMix64(worker as u64 + 1);
            while Instant::now() < deadline && !process::interrupted() {
                let started = Instant::now();
                let outcome = match operation {
                    Operation::CreatePartner => {
                        // Beyond the loaded ones, so names stay distinct.
                        let i = 1_000_000 + serial.fetch_add(1, Ordering::Relaxed);
                        client.create_partner(create_request(i)).await.map(drop)
                    }
                    Operation::GetPartner => {
                        let id = ids[random.below(ids.len() as u64) as usize].clone();
                        client.get_partner(GetPartnerRequest { id }).await.map(drop)
                    }
                    Operation::ListPartners => client
                        .list_partners(ListPartnersRequest {
                            page_size: 50,
                            city: LIST_CITY.to_owned(),
                            employees_min: Some(LIST_EMPLOYEES_MIN),
                            ..Default::default()
                        })
                        .await
                        .map(drop),
                };
                match outcome {
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
            result
        }));
    }
    let mut results = Vec::new();
    for worker in workers {
        results.push(worker.await.unwrap_or_default());
    }
    results
}

/// Partner number `i`: deterministic, varied data (name, city, kind, size, turnover).
fn create_request(i: usize) -> CreatePartnerRequest {
    let mut random = SplitMix64(i as u64);
    let (city, county) = CITIES[random.below(CITIES.len() as u64) as usize];
    let word = NAME_WORDS[random.below(NAME_WORDS.len() as u64) as usize];
    let kind = match random.below(10) {
        0 => PartnerKind::Competitor,
        1..=4 => PartnerKind::Lead,
        _ => PartnerKind::Customer,
    };
    let partner = Partner {
        kind: kind.into(),
        name: format!("{word} {city} SRL {i}"),
        city: city.to_owned(),
        county: county.to_owned(),
        country: "RO".to_owned(),
        employee_count: Some(1 + random.below(5_000) as i64),
        annual_turnover: Some(Money {
            // 10 000 to 100 000 000 RON, in bani.
            units: (1_000_000 + random.below(10_000_000_000)) as i64,
            currency_code: "RON".to_owned(),
        }),
        activity_domain: [
            "agriculture",
            "retail",
            "construction",
            "transport",
            "health",
        ][random.below(5) as usize]
            .to_owned(),
        ..Default::default()
    };
    CreatePartnerRequest {
        partner: Some(partner),
        request_id: uuid::Uuid::new_v4().to_string(),
    }
}

/// A tiny deterministic PRNG (SplitMix64): reproducible data without a dependency.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (n > 0); the modulo bias is irrelevant here.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// pgbench's rate of single-row INSERTs (one per transaction) into a table like the partners'
/// on the same database, with as many clients as our concurrency.
fn run_pgbench(
    database_url: &str,
    bench_dir: &std::path::Path,
    args: &BenchArgs,
) -> Result<Pgbench> {
    let psql = provision::postgres_client("psql")?;
    let pgbench = provision::postgres_client("pgbench")?;
    process::output(Command::new(&psql).args([
        "-X",
        "-q",
        "-v",
        "ON_ERROR_STOP=1",
        database_url,
        "-c",
        "CREATE TABLE IF NOT EXISTS bench_insert \
         (id bigserial PRIMARY KEY, name text, created_at timestamptz DEFAULT now())",
    ]))?;
    let script = bench_dir.join("pgbench-insert.sql");
    fs::write(&script, "INSERT INTO bench_insert(name) VALUES ('x');\n")?;
    println!(
        "xtask: measuring pgbench single-row INSERT for {} s…",
        args.seconds
    );
    let out = process::output(Command::new(&pgbench).args([
        "-n",
        "-c",
        &args.concurrency.to_string(),
        "-j",
        &args.concurrency.min(2).to_string(),
        "-T",
        &args.seconds.to_string(),
        "-f",
        &script.to_string_lossy(),
        database_url,
    ]))?;
    parse_pgbench(&out).with_context(|| format!("no `tps = …` in pgbench's output:\n{out}"))
}

/// Reads `tps = 1234.5 (…)` and `latency average = 2.5 ms` from pgbench's report.
fn parse_pgbench(out: &str) -> Option<Pgbench> {
    let number_after = |prefix: &str| {
        out.lines()
            .find_map(|line| line.trim().strip_prefix(prefix))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse::<f64>().ok())
    };
    Some(Pgbench {
        tps: number_after("tps = ")?,
        latency_avg_ms: number_after("latency average = "),
    })
}

fn report(
    workspace: &Workspace,
    rows: Vec<Row>,
    pgbench: Pgbench,
    loaded: usize,
    args: &BenchArgs,
) -> Report {
    let find = |operation: Operation, path: &str| {
        rows.iter()
            .find(|r| r.operation == operation && r.path == path)
    };
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
    let gateway_vs_direct = [
        Operation::CreatePartner,
        Operation::GetPartner,
        Operation::ListPartners,
    ]
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
    let create_direct_vs_pgbench = find(Operation::CreatePartner, "direct")
        .map(|r| ratio(r.calls_per_sec, pgbench.tps))
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
        partners_loaded: loaded,
        rows,
        pgbench,
        gateway_vs_direct,
        create_direct_vs_pgbench,
    }
}

fn print_report(report: &Report) {
    println!();
    println!(
        "concurrency {}, {} s per row, {} partners loaded",
        report.concurrency, report.seconds, report.partners_loaded
    );
    println!(
        "{:<14} {:<8} {:>10} {:>9} {:>9} {:>8}",
        "operation", "path", "calls/s", "p50 ms", "p99 ms", "errors"
    );
    for row in &report.rows {
        println!(
            "{:<14} {:<8} {:>10.1} {:>9.2} {:>9.2} {:>8}",
            format!("{:?}", row.operation),
            row.path,
            row.calls_per_sec,
            row.p50_ms,
            row.p99_ms,
            row.errors
        );
    }
    println!(
        "{:<14} {:<8} {:>10.1} {:>9} {:>9} {:>8}",
        "INSERT", "pgbench", report.pgbench.tps, "-", "-", "-"
    );
    if let Some(latency) = report.pgbench.latency_avg_ms {
        println!("(pgbench reports only an average latency: {latency:.2} ms)");
    }
    println!();
    for ratio in &report.gateway_vs_direct {
        println!(
            "gateway/direct {:<14} throughput {:.2}  p50 latency {:.2}",
            format!("{:?}", ratio.operation),
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
            "errors in {:?} via {}: first was {}",
            row.operation,
            row.path,
            row.first_error.as_deref().unwrap_or("?")
        );
    }
}

fn write_report(report: &Report, bench_dir: &std::path::Path) -> Result<()> {
    let json = serde_json::to_string_pretty(report)?;
    let path = bench_dir.join(format!("bench-{}.json", report.unix_time));
    fs::write(&path, &json)?;
    fs::write(bench_dir.join("latest.json"), &json)?;
    println!("xtask: wrote {} and latest.json", path.display());
    Ok(())
}
