//! `crm-health-probe [ADDR] [--service NAME] [--timeout-ms N]`: asks the gRPC health service
//! (`grpc.health.v1.Health/Check`) of a CRM process and exits 0 when it answers SERVING, 1
//! otherwise. The runtime image has no shell or curl, so this is what Docker's `HEALTHCHECK`,
//! Compose's health checks and the chart's `helm test` run (Kubernetes probes speak gRPC
//! natively and do not need it).
//!
//! Without `ADDR` it asks the process of its own container: the port of
//! `CRM__SERVER__LISTEN_ADDR` (the same variable the service listens by) on 127.0.0.1.

// A command-line probe: its verdict on stderr is its output.
#![allow(clippy::print_stderr)]

use std::{net::SocketAddr, process::ExitCode, time::Duration};

use tonic::transport::Endpoint;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

/// Where a process listens when `CRM__SERVER__LISTEN_ADDR` is not set: the gateway's port.
const DEFAULT_TARGET: &str = "127.0.0.1:50051";

/// What to ask, from the command line and the environment.
#[derive(Debug, PartialEq, Eq)]
struct Probe {
    /// `host:port`.
    target: String,
    /// The health service name; empty: the whole process.
    service: String,
    timeout: Duration,
}

impl Probe {
    fn parse(args: &[String], listen_addr: Option<&str>) -> Result<Self, String> {
        let mut target = None;
        let mut service = String::new();
        let mut timeout = Duration::from_secs(3);
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--service" => service = args.next().ok_or("--service needs a name")?.clone(),
                "--timeout-ms" => {
                    let millis = args.next().ok_or("--timeout-ms needs a number")?;
                    let millis: u64 = millis
                        .parse()
                        .map_err(|_| format!("--timeout-ms: {millis:?} is not a number"))?;
                    timeout = Duration::from_millis(millis);
                }
                "-h" | "--help" => return Err(String::new()),
                other if other.starts_with('-') => return Err(format!("unknown option {other}")),
                other if target.is_none() => target = Some(other.to_owned()),
                other => return Err(format!("unexpected argument {other}")),
            }
        }
        let target = match (target, listen_addr) {
            (Some(target), _) => target,
            (None, Some(listen)) => own_process(listen)?,
            (None, None) => DEFAULT_TARGET.to_owned(),
        };
        Ok(Self {
            target,
            service,
            timeout,
        })
    }
}

/// The address to reach a process that listens on `listen`: an unspecified address
/// (`0.0.0.0`, `[::]`) is reached on loopback.
fn own_process(listen: &str) -> Result<String, String> {
    let addr: SocketAddr = listen
        .parse()
        .map_err(|_| format!("CRM__SERVER__LISTEN_ADDR={listen:?} is not an address"))?;
    Ok(match addr {
        SocketAddr::V4(v4) if v4.ip().is_unspecified() => format!("127.0.0.1:{}", v4.port()),
        SocketAddr::V6(v6) if v6.ip().is_unspecified() => format!("[::1]:{}", v6.port()),
        addr => addr.to_string(),
    })
}

async fn check(probe: &Probe) -> Result<(), String> {
    let endpoint = Endpoint::from_shared(format!("http://{}", probe.target))
        .map_err(|e| format!("bad address {}: {e}", probe.target))?
        .connect_timeout(probe.timeout)
        .timeout(probe.timeout);
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| format!("cannot connect to {}: {e}", probe.target))?;
    let request = HealthCheckRequest {
        service: probe.service.clone(),
    };
    let response = HealthClient::new(channel)
        .check(request)
        .await
        .map_err(|status| format!("health check of {} failed: {status}", probe.target))?;
    match response.into_inner().status() {
        ServingStatus::Serving => Ok(()),
        status => Err(format!("{} is {}", probe.target, status.as_str_name())),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let listen_addr = std::env::var("CRM__SERVER__LISTEN_ADDR").ok();
    let probe = match Probe::parse(&args, listen_addr.as_deref()) {
        Ok(probe) => probe,
        Err(message) => {
            if !message.is_empty() {
                eprintln!("crm-health-probe: {message}");
            }
            eprintln!("usage: crm-health-probe [HOST:PORT] [--service NAME] [--timeout-ms N]");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("crm-health-probe: cannot start: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(check(&probe)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("crm-health-probe: {message}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn the_target_is_the_argument_else_the_own_listen_port_on_loopback() {
        let probe = Probe::parse(&args(&["crm-gateway:50051"]), Some("0.0.0.0:1")).unwrap();
        assert_eq!(probe.target, "crm-gateway:50051");
        let probe = Probe::parse(&[], Some("0.0.0.0:50061")).unwrap();
        assert_eq!(probe.target, "127.0.0.1:50061");
        let probe = Probe::parse(&[], Some("[::]:50062")).unwrap();
        assert_eq!(probe.target, "[::1]:50062");
        let probe = Probe::parse(&[], Some("10.1.2.3:50063")).unwrap();
        assert_eq!(probe.target, "10.1.2.3:50063");
        let probe = Probe::parse(&[], None).unwrap();
        assert_eq!(probe.target, DEFAULT_TARGET);
    }

    #[test]
    fn options_are_read_and_mistakes_refused() {
        let probe = Probe::parse(
            &args(&[
                "--service",
                "crm.marketing.v1.PartnerService",
                "--timeout-ms",
                "500",
            ]),
            None,
        )
        .unwrap();
        assert_eq!(probe.service, "crm.marketing.v1.PartnerService");
        assert_eq!(probe.timeout, Duration::from_millis(500));
        assert!(Probe::parse(&args(&["--timeout-ms", "soon"]), None).is_err());
        assert!(Probe::parse(&args(&["--verbose"]), None).is_err());
        assert!(Probe::parse(&args(&["a:1", "b:2"]), None).is_err());
        assert!(Probe::parse(&[], Some("not an address")).is_err());
    }

    #[tokio::test]
    async fn a_serving_process_passes_and_a_missing_or_unhealthy_one_fails() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (reporter, service) = tonic_health::server::health_reporter();
        reporter
            .set_service_status("", tonic_health::ServingStatus::Serving)
            .await;
        reporter
            .set_service_status("down", tonic_health::ServingStatus::NotServing)
            .await;
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
        );
        let probe = |target: String, service: &str| Probe {
            target,
            service: service.to_owned(),
            timeout: Duration::from_secs(2),
        };
        check(&probe(addr.to_string(), "")).await.unwrap();
        let err = check(&probe(addr.to_string(), "down")).await.unwrap_err();
        assert!(err.contains("NOT_SERVING"), "{err}");
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let err = check(&probe(closed.to_string(), "")).await.unwrap_err();
        assert!(err.contains("cannot connect"), "{err}");
    }
}
