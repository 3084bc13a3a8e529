//! The CRM's processes: which there are ([`SERVICES`]), starting them with prefixed logs, waiting
//! until they are healthy, and stopping them.

use std::{
    io::{BufRead as _, BufReader, IsTerminal as _, Read, Write as _},
    net::SocketAddr,
    path::PathBuf,
    process::{Child, Command, Stdio},
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use tonic::transport::Endpoint;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

use crate::process::{self, own_process_group};

/// What a process is to the others.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The public entry point; it gets a route to every [`Role::Api`].
    Gateway,
    /// A gRPC API that the gateway forwards to; `route` is its key under the gateway's
    /// `[routes]` settings (`CRM__ROUTES__<ROUTE>`).
    Api { route: &'static str },
    /// A background process (e.g. notification delivery); nothing is routed to it.
    #[allow(
        dead_code,
        reason = "the first worker (notifications `work`) is not in the table yet"
    )]
    Worker,
}

/// One process of the CRM.
#[derive(Debug)]
pub struct ServiceDef {
    /// Log prefix and how messages name it.
    pub name: &'static str,
    /// Cargo package; its binary has the same name.
    pub package: &'static str,
    /// Command-line arguments (e.g. `serve` or `work`).
    pub args: &'static [&'static str],
    /// gRPC port (health at least) in `cargo xtask dev`; `bench` adds [`BENCH_PORT_OFFSET`].
    /// None for a process that does not listen.
    pub port: Option<u16>,
    pub role: Role,
    /// Environment specific to this process, on top of what every process gets.
    pub env: &'static [(&'static str, &'static str)],
}

/// Every process of the CRM, started in this order (the gateway last: it routes to the others)
/// and stopped together. A new service is one line here, e.g.
/// `svc("opportunities", "crm-opportunities", &[], Some(50062), Role::Api { route: "opportunities" })`,
/// `svc("notifications", "crm-notifications", &["serve"], Some(50064), Role::Api { route: "notifications" })`,
/// `svc("notifications-work", "crm-notifications", &["work"], None, Role::Worker)`,
/// `svc("email-import", "crm-email-import", &[], Some(50065), Role::Api { route: "email_import" })`.
pub const SERVICES: &[ServiceDef] = &[
    svc(
        "marketing",
        "crm-marketing",
        &[],
        Some(50061),
        Role::Api { route: "marketing" },
    ),
    svc(
        "opportunities",
        "crm-opportunities",
        &[],
        Some(50062),
        Role::Api {
            route: "opportunities",
        },
    ),
    svc(
        "tasks",
        "crm-tasks",
        &[],
        Some(50063),
        Role::Api { route: "tasks" },
    ),
    svc("gateway", "crm-gateway", &[], Some(50051), Role::Gateway),
];

/// Packages served by a process whose own route is another: `crm.files.v1` (uploads) is
/// served by marketing, so the gateway's `CRM__ROUTES__FILES` points at marketing's port.
pub const SHARED_ROUTES: &[(&str, &str)] = &[("files", "marketing")];

/// `bench` runs its own stack next to a running `dev` one: every port plus this.
pub const BENCH_PORT_OFFSET: u16 = 100;

const fn svc(
    name: &'static str,
    package: &'static str,
    args: &'static [&'static str],
    port: Option<u16>,
    role: Role,
) -> ServiceDef {
    ServiceDef {
        name,
        package,
        args,
        port,
        role,
        env: &[],
    }
}

/// The cargo packages of [`SERVICES`], each once: what `cargo build -p …` needs.
pub fn packages() -> Vec<&'static str> {
    let mut packages: Vec<&'static str> = Vec::new();
    for def in SERVICES {
        if !packages.contains(&def.package) {
            packages.push(def.package);
        }
    }
    packages
}

/// `cargo build [--release] -p <every service package>`, in the foreground.
pub fn build(workspace: &crate::workspace::Workspace, release: bool) -> Result<()> {
    let mut command = workspace.cargo();
    command.arg("build");
    if release {
        command.arg("--release");
    }
    for package in packages() {
        command.args(["-p", package]);
    }
    process::run_checked(&mut command)
}

/// How to run the stack.
pub struct StackOptions {
    /// Where the binaries are (`target/debug` or `target/release`).
    pub bin_dir: PathBuf,
    /// Added to every port of [`SERVICES`].
    pub port_offset: u16,
    /// Environment of every process (database, Redis, logs, blobs…).
    pub env: Vec<(String, String)>,
    /// More environment for the gateway only (e.g. its rate limit).
    pub gateway_env: Vec<(String, String)>,
    /// How long a process may take to become healthy.
    pub health_timeout: Duration,
}

/// The running processes; all are stopped when this is dropped.
pub struct Stack {
    running: Vec<Running>,
}

struct Running {
    def: &'static ServiceDef,
    child: Child,
    addr: Option<SocketAddr>,
    log_threads: Vec<JoinHandle<()>>,
}

impl Stack {
    /// Starts every process of [`SERVICES`] in order, each once the previous one is healthy.
    pub async fn start(options: &StackOptions) -> Result<Self> {
        // Built before the first start, so a failure part way stops what already runs.
        let mut stack = Self {
            running: Vec::new(),
        };
        let addr_of = |def: &ServiceDef| {
            def.port
                .map(|port| SocketAddr::from(([127, 0, 0, 1], port + options.port_offset)))
        };
        let routes: Vec<(String, String)> = SERVICES
            .iter()
            .filter_map(|def| match (def.role, addr_of(def)) {
                (Role::Api { route }, Some(addr)) => Some((
                    format!("CRM__ROUTES__{}", route.to_uppercase()),
                    format!("http://{addr}"),
                )),
                _ => None,
            })
            .collect();
        let gateway_routes: Vec<(String, String)> = routes
            .iter()
            .cloned()
            .chain(SHARED_ROUTES.iter().filter_map(|(route, served_by)| {
                let key = format!("CRM__ROUTES__{}", served_by.to_uppercase());
                let url = routes.iter().find(|(k, _)| *k == key)?.1.clone();
                Some((format!("CRM__ROUTES__{}", route.to_uppercase()), url))
            }))
            .collect();
        // Services that call a sibling read its address from `[<route>] url` (opportunities
        // asks marketing for partners it has not heard of): `CRM__MARKETING__URL`, …
        let siblings: Vec<(String, String)> = routes
            .iter()
            .map(|(key, url)| {
                let route = key.trim_start_matches("CRM__ROUTES__");
                (format!("CRM__{route}__URL"), url.clone())
            })
            .collect();
        let width = SERVICES.iter().map(|d| d.name.len()).max().unwrap_or(0);

        for (index, def) in SERVICES.iter().enumerate() {
            process::check_interrupted()?;
            let addr = addr_of(def);
            let binary = options.bin_dir.join(def.package);
            let mut command = Command::new(&binary);
            command
                .args(def.args)
                .envs(options.env.iter().map(|(k, v)| (k, v)))
                .envs(def.env.iter().copied())
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            if let Some(addr) = addr {
                command.env("CRM__SERVER__LISTEN_ADDR", addr.to_string());
            }
            if def.role == Role::Gateway {
                command
                    .envs(gateway_routes.iter().map(|(k, v)| (k, v)))
                    .envs(options.gateway_env.iter().map(|(k, v)| (k, v)));
            } else {
                command.envs(siblings.iter().map(|(k, v)| (k, v)));
            }
            // Ctrl-C reaches only xtask, which stops the services itself, in order.
            own_process_group(&mut command);
            println!(
                "xtask: starting {}{}",
                def.name,
                addr.map(|a| format!(" on {a}")).unwrap_or_default()
            );
            let mut child = command
                .spawn()
                .with_context(|| format!("cannot start {}", binary.display()))?;
            let prefix = log_prefix(def.name, width, index);
            let log_threads = vec![
                forward_lines(prefix.clone(), child.stdout.take(), false),
                forward_lines(prefix, child.stderr.take(), true),
            ];
            stack.running.push(Running {
                def,
                child,
                addr,
                log_threads,
            });
            let running = stack.running.last_mut().expect("just pushed");
            running.wait_ready(options.health_timeout).await?;
        }
        Ok(stack)
    }

    /// The address of process `name`, with the port offset applied.
    pub fn addr(&self, name: &str) -> Option<SocketAddr> {
        self.running
            .iter()
            .find(|r| r.def.name == name)
            .and_then(|r| r.addr)
    }

    /// Fails when a process has exited.
    pub fn check_running(&mut self) -> Result<()> {
        for running in &mut self.running {
            if let Some(status) = running.child.try_wait()? {
                bail!("{} exited ({status}); see its log above", running.def.name);
            }
        }
        Ok(())
    }

    /// Stops every process: SIGTERM to all (they shut down gracefully), SIGKILL to those still
    /// running after 10 s.
    pub fn stop(&mut self) {
        if self.running.is_empty() {
            return;
        }
        let names: Vec<&str> = self.running.iter().map(|r| r.def.name).collect();
        println!("xtask: stopping {}", names.join(", "));
        for running in &mut self.running {
            if let Ok(None) = running.child.try_wait() {
                process::send_signal(running.child.id(), "TERM");
            }
        }
        // All got SIGTERM at once, so this waits 10 s in total at most, not per process.
        let deadline = Instant::now() + Duration::from_secs(10);
        for mut running in self.running.drain(..).rev() {
            let grace = deadline.saturating_duration_since(Instant::now());
            process::terminate(&mut running.child, grace);
            // The pipes are closed now: the threads print the last lines and end.
            for thread in running.log_threads {
                let _ = thread.join();
            }
        }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Running {
    /// Waits until the process answers the standard gRPC health check (service "") with
    /// SERVING; a process without a port only has to stay up for a second.
    async fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let name = self.def.name;
        let Some(addr) = self.addr else {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if let Some(status) = self.child.try_wait()? {
                bail!("{name} exited ({status}) right after it started; see its log above");
            }
            return Ok(());
        };
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))?
            .connect_timeout(Duration::from_secs(1))
            .timeout(Duration::from_secs(2));
        let deadline = Instant::now() + timeout;
        loop {
            process::check_interrupted()?;
            if let Some(status) = self.child.try_wait()? {
                bail!("{name} exited ({status}) before it became healthy; see its log above");
            }
            let last = match endpoint.connect().await {
                Ok(channel) => {
                    let request = HealthCheckRequest {
                        service: String::new(),
                    };
                    match HealthClient::new(channel).check(request).await {
                        Ok(response) => match response.into_inner().status() {
                            ServingStatus::Serving => {
                                println!("xtask: {name} is healthy at {addr}");
                                return Ok(());
                            }
                            status => format!("health status {status:?}"),
                        },
                        Err(status) => format!("health check failed: {status}"),
                    }
                }
                Err(err) => format!("cannot connect: {err}"),
            };
            if Instant::now() >= deadline {
                bail!(
                    "{name} did not become healthy at {addr} within {} s ({last})",
                    timeout.as_secs()
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// `name |` padded to `width`, coloured when the terminal shows colours.
fn log_prefix(name: &str, width: usize, index: usize) -> String {
    const COLOURS: [u8; 6] = [36, 33, 35, 32, 34, 31];
    if std::io::stdout().is_terminal() {
        let colour = COLOURS[index % COLOURS.len()];
        format!("\x1b[{colour}m{name:>width$} |\x1b[0m ")
    } else {
        format!("{name:>width$} | ")
    }
}

/// Copies a child's output to ours line by line, each line behind `prefix`, so that the logs of
/// several services stay readable together.
fn forward_lines(
    prefix: String,
    source: Option<impl Read + Send + 'static>,
    to_stderr: bool,
) -> JoinHandle<()> {
    thread::spawn(move || {
        let Some(source) = source else { return };
        let mut reader = BufReader::new(source);
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let text = String::from_utf8_lossy(&line);
            let text = text.trim_end_matches(['\n', '\r']);
            // One write per line, so lines of different services do not interleave.
            let _ = if to_stderr {
                writeln!(std::io::stderr().lock(), "{prefix}{text}")
            } else {
                writeln!(std::io::stdout().lock(), "{prefix}{text}")
            };
        }
    })
}
