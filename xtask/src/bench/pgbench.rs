//! The ceilings: pgbench running, on the bench's own database with the stack stopped, the SQL a
//! write runs, with as many clients as the rows had calls in flight. A row divided by its
//! ceiling says how much of the database's rate for the same work the service keeps.
//!
//! The service ceilings run with `-M prepared` because sqlx prepares every statement once per
//! connection and then only binds and executes it, as pgbench does in that mode (the INSERT
//! ceiling keeps the simple protocol it was first measured with, so it stays comparable). Values a script needs (ids, a
//! real event envelope) are pgbench variables given with `-D`, so they travel as bound
//! parameters as the service's do — and a literal in the script text could be taken for a
//! variable: pgbench reads every `:name` in a statement as one, even inside quotes.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};
use serde::Serialize;

use super::BenchArgs;
use crate::{process, provision};

/// The name of the single-row INSERT ceiling (the partner rows').
pub const INSERT: &str = "INSERT (single row)";

/// One ceiling: its script and what pgbench measured, or why it could not.
#[derive(Serialize)]
pub struct Ceiling {
    pub name: &'static str,
    /// The script file pgbench ran.
    pub script: PathBuf,
    pub outcome: Option<Outcome>,
    pub error: Option<String>,
}

/// pgbench's figures: one "transaction" is one run of the script.
#[derive(Clone, Serialize)]
pub struct Outcome {
    pub tps: f64,
    pub latency_avg_ms: Option<f64>,
}

/// A script and how to run it.
pub struct Script<'a> {
    pub name: &'static str,
    /// File name under `target/bench/`.
    pub file: &'static str,
    pub text: String,
    /// `-D name=value` variables.
    pub variables: Vec<(&'a str, String)>,
    /// The `search_path` of pgbench's sessions (the service's schema), when not the default.
    pub search_path: Option<&'static str>,
    /// `-M prepared` rather than the simple protocol.
    pub prepared: bool,
}

/// Runs `sql` with psql on `database_url`, stopping at the first error; its output.
pub fn psql(database_url: &str, sql: &str) -> Result<String> {
    let psql = provision::postgres_client("psql")?;
    process::output(Command::new(&psql).args([
        "-X",
        "-q",
        "-tA",
        "-v",
        "ON_ERROR_STOP=1",
        database_url,
        "-c",
        sql,
    ]))
}

/// Writes `script` under `bench_dir` and runs it for `args.seconds` with `args.concurrency`
/// clients. A failure is recorded in the ceiling rather than returned: the rows measured before
/// are worth reporting without it.
pub fn run(database_url: &str, bench_dir: &Path, args: &BenchArgs, script: Script<'_>) -> Ceiling {
    let path = bench_dir.join(script.file);
    let outcome = run_script(database_url, &path, args, &script);
    if let Err(err) = &outcome {
        println!("xtask: the ceiling {} failed: {err:#}", script.name);
    }
    Ceiling {
        name: script.name,
        script: path,
        error: outcome.as_ref().err().map(|e| format!("{e:#}")),
        outcome: outcome.ok(),
    }
}

fn run_script(
    database_url: &str,
    path: &Path,
    args: &BenchArgs,
    script: &Script<'_>,
) -> Result<Outcome> {
    fs::write(path, &script.text)?;
    let pgbench = provision::postgres_client("pgbench")?;
    println!(
        "xtask: measuring pgbench {} for {} s…",
        script.name, args.seconds
    );
    let mut command = Command::new(&pgbench);
    command.args([
        "-n",
        "-M",
        if script.prepared {
            "prepared"
        } else {
            "simple"
        },
        "-c",
        &args.concurrency.to_string(),
        "-j",
        &args.concurrency.min(2).to_string(),
        "-T",
        &args.seconds.to_string(),
        "-f",
        &path.to_string_lossy(),
    ]);
    for (name, value) in &script.variables {
        command.arg("-D").arg(format!("{name}={value}"));
    }
    if let Some(schema) = script.search_path {
        // A startup option: no statement of the script is spent on it.
        command.env("PGOPTIONS", format!("-c search_path={schema}"));
    }
    command.arg(database_url);
    // Not `process::output`: its error would quote the command line, envelopes and all.
    let output = command.output().context("cannot start pgbench")?;
    let out = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(8).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!(
            "pgbench failed ({}) running {}:\n{}",
            output.status,
            path.display(),
            tail.join("\n")
        );
    }
    parse(&out).with_context(|| format!("no `tps = …` in pgbench's output:\n{out}"))
}

/// pgbench's rate of single-row INSERTs (one per transaction) into a table like the partners'
/// on the same database: the ceiling no create can beat.
pub fn insert_ceiling(database_url: &str, bench_dir: &Path, args: &BenchArgs) -> Ceiling {
    if let Err(err) = psql(
        database_url,
        "CREATE TABLE IF NOT EXISTS bench_insert \
         (id bigserial PRIMARY KEY, name text, created_at timestamptz DEFAULT now())",
    ) {
        return Ceiling {
            name: INSERT,
            script: bench_dir.join("pgbench-insert.sql"),
            outcome: None,
            error: Some(format!("{err:#}")),
        };
    }
    run(
        database_url,
        bench_dir,
        args,
        Script {
            name: INSERT,
            file: "pgbench-insert.sql",
            text: "INSERT INTO bench_insert(name) VALUES ('x');\n".into(),
            variables: Vec::new(),
            search_path: None,
            prepared: false,
        },
    )
}

/// Reads `tps = 1234.5 (…)` and `latency average = 2.5 ms` from pgbench's report.
fn parse(out: &str) -> Option<Outcome> {
    let number_after = |prefix: &str| {
        out.lines()
            .find_map(|line| line.trim().strip_prefix(prefix))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse::<f64>().ok())
    };
    Some(Outcome {
        tps: number_after("tps = ")?,
        latency_avg_ms: number_after("latency average = "),
    })
}
