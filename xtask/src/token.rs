//! `cargo xtask token`: development bearer tokens, signed with the built-in development secret
//! that services accept when no production key is configured.

use std::{process::ExitCode, time::Duration};

use anyhow::{Context as _, Result};
use clap::Args;
use crm_platform::auth::{AuthSettings, TokenIssuer};

#[derive(Args)]
pub struct TokenArgs {
    /// The user (token subject).
    #[arg(long)]
    user: String,
    /// Roles, comma-separated: admin, manager, sales, marketing.
    #[arg(long, value_delimiter = ',', required = true)]
    roles: Vec<String>,
    /// Hours until the token expires.
    #[arg(long, default_value_t = 24)]
    ttl_hours: u64,
}

pub fn run(args: &TokenArgs) -> Result<ExitCode> {
    let roles: Vec<&str> = args.roles.iter().map(String::as_str).collect();
    let token = issue(
        &args.user,
        &roles,
        Duration::from_secs(args.ttl_hours * 3600),
    )?;
    // The explanation goes to stderr and the token alone to stdout, so that
    // `TOKEN=$(cargo xtask token …)` works; either way the token is the last line.
    eprintln!(
        "development token for `{}` with roles [{}], valid {} h:",
        args.user,
        roles.join(", "),
        args.ttl_hours
    );
    println!("{token}");
    Ok(ExitCode::SUCCESS)
}

/// A user token signed with the development secret.
pub fn issue(user: &str, roles: &[&str], ttl: Duration) -> Result<String> {
    let issuer = TokenIssuer::for_users(&AuthSettings::development())
        .context("the development settings have no HS256 secret")?;
    Ok(issuer.issue(user, roles, ttl))
}

/// A service token for the service `name` (subject `service:<name>`), signed with the
/// development service secret: what that service itself would send.
pub fn issue_service(name: &str, ttl: Duration) -> String {
    TokenIssuer::for_services(&AuthSettings::development()).issue_service_token(name, ttl)
}
