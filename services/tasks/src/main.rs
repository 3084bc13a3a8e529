//! The `tasks` service binary: `serve` (the default) until SIGTERM/SIGINT, or `migrate`.

use crm_tasks::{SERVICE, config::Settings};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    crm_platform::service::main(SERVICE, Settings::load, |s| &s.base, crm_tasks::run).await
}
