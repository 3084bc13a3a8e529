//! The `gateway` binary: load settings, start telemetry, serve until SIGTERM/SIGINT.

use crm_platform::{server, settings, telemetry};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings =
        match crm_gateway::config::Settings::load(settings::config_file_from_args().as_deref()) {
            Ok(settings) => settings,
            Err(err) => {
                eprintln!("crm-gateway: {err}");
                std::process::exit(2);
            }
        };
    let _telemetry = telemetry::init("gateway", &settings.telemetry)?;
    let listener = tokio::net::TcpListener::bind(settings.server.listen_addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "gateway listening");
    crm_gateway::run(settings, listener, server::shutdown_signal()).await
}
