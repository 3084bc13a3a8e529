//! `cargo xtask dev`: the whole CRM on this machine until Ctrl-C.

use std::{fs, process::ExitCode, time::Duration};

use anyhow::Result;

use crate::{
    process,
    provision::{self, External, Purpose},
    stack::{self, Stack, StackOptions},
    token,
    workspace::Workspace,
};

pub fn run(workspace: &Workspace) -> Result<ExitCode> {
    // Build first: a compile error should not leave databases starting for nothing.
    stack::build(workspace, false)?;
    let backing = provision::provision(workspace, Purpose::Dev, External::from_service_env())?;

    let dev_dir = workspace.target.join("dev");
    let blobs = dev_dir.join("blobs");
    fs::create_dir_all(&blobs)?;
    let options = StackOptions {
        bin_dir: workspace.target.join("debug"),
        port_offset: 0,
        env: service_env(&backing, &blobs.to_string_lossy(), "pretty"),
        gateway_env: Vec::new(),
        health_timeout: Duration::from_secs(60),
    };

    let runtime = tokio::runtime::Runtime::new()?;
    let result = runtime.block_on(async {
        let mut stack = Stack::start(&options).await?;
        let gateway = stack
            .addr("gateway")
            .map(|a| a.to_string())
            .unwrap_or_default();
        let token = token::issue("dev", &["admin"], Duration::from_secs(24 * 3600))?;
        println!();
        println!("CRM is running.");
        println!("  gateway:    {gateway} (plaintext gRPC and gRPC-Web)");
        println!("  PostgreSQL: {}", backing.database_url);
        println!("  Redis:      {}", backing.redis_url);
        println!("  token for user `dev`, roles admin, valid 24 h:");
        println!("{token}");
        println!("  try:");
        println!(
            "    grpcurl -plaintext -H \"authorization: Bearer {token}\" -d '{{\"page_size\": 5}}' \
             {gateway} crm.marketing.v1.PartnerService/ListPartners"
        );
        println!("  another token: cargo xtask token --user ana --roles sales");
        println!("Press Ctrl-C to stop.");
        println!();
        // Polling keeps one simple loop for both ways this ends: a signal, or a service dying.
        while !process::interrupted() {
            stack.check_running()?;
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        stack.stop();
        anyhow::Ok(())
    });
    // `backing` is dropped after the stack: services stop before their databases.
    drop(backing);
    result.map(|()| ExitCode::SUCCESS)
}

/// The environment every service gets: where its database, Redis and blobs are, how to log.
pub fn service_env(
    backing: &provision::Backing,
    blob_root: &str,
    log_format: &str,
) -> Vec<(String, String)> {
    [
        ("CRM__DATABASE__URL", backing.database_url.as_str()),
        ("CRM__REDIS__URL", backing.redis_url.as_str()),
        ("CRM__TELEMETRY__LOG_FORMAT", log_format),
        ("CRM__BLOB__ROOT", blob_root),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}
