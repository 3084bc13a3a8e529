//! `cargo xtask test`: every test of the workspace against private PostgreSQL and Redis, then
//! `cargo fmt --check`, `cargo clippy` and the deployment checks ([`crate::deploy`]). Every step
//! runs even when an earlier one failed, so one run shows everything that is wrong; the summary
//! says which steps failed.

use std::process::{ExitCode, Stdio};

use anyhow::Result;
use clap::Args;

use crate::{
    deploy, process,
    provision::{self, External, Purpose},
    workspace::Workspace,
};

#[derive(Args)]
pub struct TestArgs {
    /// Skip `cargo fmt --check` and `cargo clippy`.
    #[arg(long)]
    no_lint: bool,
    /// Skip the deployment checks (Helm chart, kustomize, Dockerfile, Compose).
    #[arg(long)]
    no_deploy: bool,
    /// Passed to the test runner (cargo nextest run, or cargo test), e.g. a test name filter:
    /// `cargo xtask test -- partner`.
    #[arg(last = true)]
    runner_args: Vec<String>,
}

struct Step {
    name: String,
    passed: bool,
}

pub fn run(workspace: &Workspace, args: &TestArgs) -> Result<ExitCode> {
    let mut steps = Vec::new();
    let mut record = |name: &str, status: Result<std::process::ExitStatus>| {
        let passed = match status {
            Ok(status) => status.success(),
            Err(err) => {
                eprintln!("xtask: {name}: {err:#}");
                false
            }
        };
        steps.push(Step {
            name: name.to_owned(),
            passed,
        });
    };

    {
        // Tests may point at servers of their own; otherwise private instances, stopped at the
        // end of this block (also on failure or Ctrl-C).
        let external = External::from_env(
            &["CRM_TEST_DATABASE_URL", "CRM__DATABASE__URL"],
            &["CRM_TEST_REDIS_URL", "CRM__REDIS__URL"],
        );
        section("provisioning PostgreSQL, Redis and the test tools");
        provision::test_tools()?;
        let backing = provision::provision(workspace, Purpose::Test, external)?;
        let env = [
            // A superuser URL: each test creates and drops a database of its own.
            ("CRM_TEST_DATABASE_URL", backing.admin_url.as_str()),
            ("CRM_TEST_REDIS_URL", backing.redis_url.as_str()),
        ];

        let nextest = nextest_available(workspace);
        let (name, mut command) = if nextest {
            let mut command = workspace.cargo();
            command.args(["nextest", "run", "--workspace", "--no-fail-fast"]);
            ("tests (cargo nextest)", command)
        } else {
            let mut command = workspace.cargo();
            command.args(["test", "--workspace", "--no-fail-fast"]);
            ("tests (cargo test)", command)
        };
        command.args(&args.runner_args).envs(env);
        section(name);
        record(name, process::run_foreground(&mut command));

        // nextest does not run doctests; `cargo test` did above. A filter meant for the runner
        // may not suit `cargo test --doc`, so doctests run only in a full run.
        if nextest && args.runner_args.is_empty() && !process::interrupted() {
            let name = "doctests (cargo test --doc)";
            section(name);
            let mut command = workspace.cargo();
            command.args(["test", "--workspace", "--doc"]).envs(env);
            record(name, process::run_foreground(&mut command));
        }
        section("stopping the test databases");
    }

    if !args.no_lint && !process::interrupted() {
        let name = "cargo fmt --all --check";
        section(name);
        record(
            name,
            process::run_foreground(workspace.cargo().args(["fmt", "--all", "--check"])),
        );

        let name = "cargo clippy --workspace --all-targets -- -D warnings";
        section(name);
        record(
            name,
            process::run_foreground(workspace.cargo().args([
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ])),
        );
    }

    if !args.no_deploy && !process::interrupted() {
        let name = "deployment checks (helm, kubernetes-validate, KEDA, checkov, hadolint, yamllint, compose)";
        section(name);
        let passed = deploy::run(workspace).unwrap_or_else(|err| {
            eprintln!("xtask: {name}: {err:#}");
            false
        });
        steps.push(Step {
            name: name.to_owned(),
            passed,
        });
    }

    section("summary");
    for step in &steps {
        println!(
            "  {} {}",
            if step.passed { "ok    " } else { "FAILED" },
            step.name
        );
    }
    if process::interrupted() {
        println!("interrupted: not every step ran");
        return Ok(ExitCode::from(130));
    }
    let failed: Vec<&str> = steps
        .iter()
        .filter(|s| !s.passed)
        .map(|s| s.name.as_str())
        .collect();
    if failed.is_empty() {
        println!("all steps passed");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("failed: {}", failed.join("; "));
        Ok(ExitCode::FAILURE)
    }
}

/// Whether `cargo nextest` is installed.
fn nextest_available(workspace: &Workspace) -> bool {
    workspace
        .cargo()
        .args(["nextest", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn section(title: &str) {
    println!("\n==> {title}");
}
