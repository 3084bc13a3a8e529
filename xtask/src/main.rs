//! `cargo xtask …`: the developer and CI entry points of the CRM workspace.
//!
//! - `dev`: private PostgreSQL and Redis, every service with readable logs, a ready-to-use token.
//! - `test`: the same provisioning on other ports, then every test, `cargo fmt` and `clippy`.
//! - `token`: a development bearer token.
//! - `bench`: throughput and latency of the partner and opportunities APIs, through the gateway
//!   and directly, each write next to a pgbench ceiling doing the same SQL.
//! - `image`: the container image from the release binaries, run and health-checked.
//! - `deploy-check`: the Helm chart, kustomize overlays, Dockerfile and Compose file checks.
//!
//! Everything that this program starts (database cluster, Redis, services) is owned by a guard
//! whose `Drop` stops it, and SIGINT/SIGTERM only set a flag (see [`process`]), so every exit path
//! — success, error, panic, Ctrl-C — leaves nothing running.

// This is a command-line tool talking to a developer: printing is its job.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod bench;
mod deploy;
mod dev;
mod image;
mod process;
mod provision;
mod stack;
mod test;
mod token;
mod tools;
mod workspace;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::workspace::Workspace;

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "Development tasks of the CRM workspace"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the whole CRM locally: private PostgreSQL and Redis (unless `CRM__DATABASE__URL` /
    /// `CRM__REDIS__URL` are set), every service, until Ctrl-C.
    Dev,
    /// Run every test of the workspace against private PostgreSQL and Redis, then fmt and clippy.
    Test(test::TestArgs),
    /// Print a development token (signed with the built-in development secret).
    Token(token::TokenArgs),
    /// Measure the partner and opportunities APIs through the gateway and directly, each write
    /// next to a pgbench ceiling running the same SQL.
    Bench(bench::BenchArgs),
    /// Build the container image from release binaries with podman and run it against
    /// PostgreSQL and Redis (private ones unless `CRM__DATABASE__URL` / `CRM__REDIS__URL`).
    Image(image::ImageArgs),
    /// Check the Helm chart, the kustomize overlays, the Dockerfile and the Compose file (the
    /// deployment step of `test`).
    DeployCheck,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(err) = process::catch_signals() {
        eprintln!("xtask: error: cannot install signal handlers: {err:#}");
        return ExitCode::FAILURE;
    }
    let workspace = Workspace::locate();
    // Guards live inside these functions, so they are dropped (and their processes stopped)
    // before we get here and return an exit code.
    let result = match cli.command {
        Command::Dev => dev::run(&workspace),
        Command::Test(args) => test::run(&workspace, &args),
        Command::Token(args) => token::run(&args),
        Command::Bench(args) => bench::run(&workspace, &args),
        Command::Image(args) => image::run(&workspace, &args),
        Command::DeployCheck => deploy::run(&workspace).map(|passed| {
            if passed {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("xtask: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
