//! `cargo xtask image`: builds the container image from the release binaries with podman and
//! runs it for real against PostgreSQL and Redis.
//!
//! 1. podman, runc and mmdebstrap from Debian when missing (as root), and a `containers.conf`
//!    with the settings these machines need (runc, cgroupfs, ulimits, file events);
//! 2. the runtime base: a minimal Debian made by mmdebstrap and imported (no registry can be
//!    pulled from here), made once and kept;
//! 3. `cargo build --release` of every service and of `crm-health-probe`, then
//!    `podman build --pull=never --target prebuilt` of `docker/Dockerfile`;
//! 4. each service's `migrate` in a container, as the chart's Job does;
//! 5. every process of [`SERVICES`] in a container (host network, read-only root filesystem,
//!    no capabilities, UID 10001) with the settings file the Helm chart renders for it, two
//!    replicas of the first API (at 127.0.0.1 and 127.0.0.2, one port) behind the name of its
//!    headless Service; each must pass the image's own `HEALTHCHECK`;
//! 6. calls through the gateway reach both replicas: with one replica stopped, then the other,
//!    every call still succeeds (client-side balancing follows the replicas).
//!
//! Everything it starts is stopped at the end, also on failure or Ctrl-C.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, ExitCode, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use clap::Args;
use crm_platform::auth::{AuthSettings, TokenIssuer};
use crm_proto::marketing::{ListPartnersRequest, partner_service_client::PartnerServiceClient};

use crate::{
    deploy, process,
    provision::{self, External, Purpose},
    stack::{self, Role, SERVICES, ServiceDef},
    tools::Tools,
    workspace::Workspace,
};

/// The runtime base made by mmdebstrap (bookworm, minbase, CA certificates).
const BASE_IMAGE: &str = "localhost/crm-runtime-base:bookworm";
/// Ports of the containers: above everything the other stacks use.
const PORT_BASE: u16 = 57000;
/// What every container of this run is named after, so that cleaning up finds them all.
const PREFIX: &str = "crm-image-";

/// Settings these machines need (see TOOLING.md): runc, cgroupfs without systemd, a nofile and
/// nproc limit the kernel accepts, events in a file.
const CONTAINERS_CONF: &str = r#"[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
"#;

#[derive(Args)]
pub struct ImageArgs {
    /// Name and tag of the image.
    #[arg(long, default_value = "localhost/crm:dev")]
    tag: String,
    /// Build the image only; do not run it.
    #[arg(long)]
    no_run: bool,
    /// Do not run `<service> migrate` first (binaries from before that command; the services
    /// also migrate at start).
    #[arg(long)]
    no_migrate: bool,
}

pub fn run(workspace: &Workspace, args: &ImageArgs) -> Result<ExitCode> {
    let started = Instant::now();
    let dir = workspace.target.join("image");
    fs::create_dir_all(&dir)?;
    let podman = Podman::ready(&dir)?;
    podman.ensure_base_image(&dir)?;

    let phase = Instant::now();
    build_release(workspace)?;
    let built = phase.elapsed();
    let phase = Instant::now();
    let context = stage_binaries(workspace, &dir)?;
    podman.build(workspace, &context, &args.tag)?;
    println!(
        "xtask: image {} built (cargo {:.0} s, podman {:.0} s)",
        args.tag,
        built.as_secs_f64(),
        phase.elapsed().as_secs_f64()
    );
    if args.no_run {
        return Ok(ExitCode::SUCCESS);
    }

    // The settings files the chart gives each process, as a cluster would mount them.
    let tools = Tools::install(workspace)?;
    let mut enable = Vec::new();
    for def in SERVICES {
        enable.push(format!("services.{}.enabled=true", def.name));
    }
    let settings = chart_settings(&tools, workspace, &enable)?;

    let backing = provision::provision(workspace, Purpose::Image, External::from_service_env())?;
    let phase = Instant::now();
    let result = {
        let mut containers = Containers::new(podman.clone());
        let result = run_image(
            &mut containers,
            args,
            &dir,
            &settings,
            &backing.database_url,
            &backing.redis_url,
        );
        if result.is_err() {
            containers.print_logs();
        }
        result
    };
    drop(backing);
    result?;
    println!(
        "xtask: the image runs: {}every service healthy, calls balanced over two replicas \
         ({:.0} s running, {:.0} s in all)",
        if args.no_migrate { "" } else { "migrations, " },
        phase.elapsed().as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

/// Every service package, and the health probe the image's `HEALTHCHECK` runs.
fn build_release(workspace: &Workspace) -> Result<()> {
    let mut command = workspace.cargo();
    command.args(["build", "--release", "-p", "crm-health-probe"]);
    for package in stack::packages() {
        command.args(["-p", package]);
    }
    process::run_checked(&mut command)
}

/// A build context with only the binaries, under `bin/` (what the `prebuilt` stage copies).
fn stage_binaries(workspace: &Workspace, dir: &Path) -> Result<PathBuf> {
    let context = dir.join("context");
    let _ = fs::remove_dir_all(&context);
    fs::create_dir_all(context.join("bin"))?;
    let release = workspace.target.join("release");
    let strip = process::find_program("strip");
    for binary in stack::packages().into_iter().chain(["crm-health-probe"]) {
        let staged = context.join("bin").join(binary);
        fs::copy(release.join(binary), &staged)
            .with_context(|| format!("cannot copy {binary} into the build context"))?;
        // As the Dockerfile does: no line tables in the image (a fifth of the size), symbols kept.
        if let Some(strip) = &strip {
            process::run_checked(Command::new(strip).arg("--strip-debug").arg(&staged))?;
        }
    }
    Ok(context)
}

/// `config.toml` of each process's ConfigMap in the chart's default rendering, by component.
fn chart_settings(
    tools: &Tools,
    workspace: &Workspace,
    set: &[String],
) -> Result<Vec<(String, String)>> {
    let mut command = Command::new(tools.helm());
    command
        .args(["template", "crm"])
        .arg(workspace.root.join("helm/crm"));
    for value in set {
        command.args(["--set", value]);
    }
    let docs = deploy::parse_manifests(&process::output(&mut command)?)?;
    Ok(docs
        .iter()
        .filter(|d| d["kind"] == "ConfigMap")
        .filter(|d| {
            d["metadata"]["name"]
                .as_str()
                .is_some_and(|n| !n.ends_with("-migrate"))
        })
        .filter_map(|d| {
            let component = d["metadata"]["labels"]["app.kubernetes.io/component"].as_str()?;
            let settings = d["data"]["config.toml"].as_str()?;
            Some((component.to_owned(), settings.to_owned()))
        })
        .collect())
}

fn settings_of<'a>(settings: &'a [(String, String)], name: &str) -> Result<&'a str> {
    settings
        .iter()
        .find(|(component, _)| component == name)
        .map(|(_, text)| text.as_str())
        .with_context(|| format!("the chart renders no settings for {name}"))
}

/// The running part: migrations, containers, health, balanced calls.
fn run_image(
    containers: &mut Containers,
    args: &ImageArgs,
    dir: &Path,
    settings: &[(String, String)],
    database_url: &str,
    redis_url: &str,
) -> Result<()> {
    let image = args.tag.as_str();
    let settings_dir = dir.join("settings");
    fs::create_dir_all(&settings_dir)?;
    let backing_env = [
        ("CRM__DATABASE__URL", database_url),
        ("CRM__REDIS__URL", redis_url),
        ("CRM__BLOB__ROOT", "/tmp/blobs"),
    ];

    // Migrations first, one container per service with a database, as the chart's Jobs.
    let migrated = SERVICES
        .iter()
        .filter(|d| matches!(d.role, Role::Api { .. }) && !args.no_migrate);
    for def in migrated {
        let started = Instant::now();
        let name = format!("{PREFIX}migrate-{}", def.name);
        let mut command = containers.podman.run_command(&name, false);
        for (key, value) in backing_env {
            command.args(["--env", &format!("{key}={value}")]);
        }
        // A binary without `migrate` would serve instead: then on a port of its own choosing,
        // not on one another stack uses.
        command
            .args(["--env", "CRM__SERVER__LISTEN_ADDR=127.0.0.1:0"])
            .arg(image)
            .arg(format!("/usr/local/bin/{}", def.package))
            .arg("migrate");
        containers.started.push(name.clone());
        let status = run_with_timeout(&mut command, Duration::from_secs(180))?;
        match status {
            Some(status) if status.success() => println!(
                "xtask: {} migrate: done in {:.1} s",
                def.package,
                started.elapsed().as_secs_f64()
            ),
            Some(status) => bail!("{} migrate failed ({status})", def.package),
            None => bail!(
                "{} migrate did not exit within 180 s (does the binary have a `migrate` command?)",
                def.package
            ),
        }
    }

    // Two replicas of the first API behind one name, like the pods behind a headless Service.
    let balanced = SERVICES
        .iter()
        .find(|d| matches!(d.role, Role::Api { .. }))
        .context("no API service to balance")?;
    let headless = format!("crm-{}-headless", balanced.name);
    let mut gateway_env: Vec<(String, String)> = Vec::new();
    let mut gateway_hosts: Vec<String> = Vec::new();
    let mut replicas: Vec<String> = Vec::new();
    for def in SERVICES {
        let port = container_port(def);
        let file = settings_dir.join(format!("{}.toml", def.name));
        fs::write(&file, settings_of(settings, def.name)?)?;
        let ips: &[&str] = if def.name == balanced.name {
            &["127.0.0.1", "127.0.0.2"]
        } else {
            &["127.0.0.1"]
        };
        if let (Role::Api { route }, Some(port)) = (def.role, port) {
            // The gateway finds the replicas by name, as in the cluster.
            let host = if def.name == balanced.name {
                for ip in ips {
                    gateway_hosts.push(format!("{headless}:{ip}"));
                }
                headless.clone()
            } else {
                "127.0.0.1".to_owned()
            };
            gateway_env.push((
                format!("CRM__ROUTES__{}", route.to_uppercase()),
                format!("http://{host}:{port}"),
            ));
        }
        for (index, ip) in ips.iter().enumerate() {
            let name = if ips.len() > 1 {
                format!("{PREFIX}{}-{}", def.name, index + 1)
            } else {
                format!("{PREFIX}{}", def.name)
            };
            let mut command = containers.podman.run_command(&name, true);
            command
                .arg("--volume")
                .arg(format!("{}:/etc/crm/config.toml:ro", file.display()))
                .args(["--env", "CRM_CONFIG=/etc/crm/config.toml"]);
            if let Some(port) = port {
                command.args(["--env", &format!("CRM__SERVER__LISTEN_ADDR={ip}:{port}")]);
            }
            if def.name == balanced.name {
                // Each call is logged, so the calls each replica answered can be counted.
                command.args(["--env", "CRM__TELEMETRY__LOG_FILTER=info,tower_http=debug"]);
            }
            if def.role == Role::Gateway {
                for (key, value) in &gateway_env {
                    command.args(["--env", &format!("{key}={value}")]);
                }
                for host in &gateway_hosts {
                    command.args(["--add-host", host]);
                }
            } else {
                for (key, value) in backing_env {
                    command.args(["--env", &format!("{key}={value}")]);
                }
                // A sibling it calls (`[marketing] url = …` in the chart's file) is here.
                let text = settings_of(settings, def.name)?;
                for callee in SERVICES {
                    if let (Role::Api { route }, Some(port)) = (callee.role, container_port(callee))
                        && deploy::toml_section(text, route).contains_key("url")
                    {
                        command.args([
                            "--env",
                            &format!("CRM__{}__URL=http://127.0.0.1:{port}", route.to_uppercase()),
                        ]);
                    }
                }
            }
            command
                .arg(image)
                .arg(format!("/usr/local/bin/{}", def.package))
                .args(def.args);
            containers.start(&name, &mut command)?;
            containers.wait_healthy(&name, Duration::from_secs(90))?;
            if def.name == balanced.name {
                replicas.push(name);
            }
        }
    }

    let gateway = SERVICES
        .iter()
        .find(|d| d.role == Role::Gateway)
        .and_then(container_port)
        .context("no gateway")?;
    let runtime = tokio::runtime::Runtime::new()?;
    let gateway_url = format!("http://127.0.0.1:{gateway}");
    runtime.block_on(calls_succeed(&gateway_url, 20))?;
    let mut counts = Vec::new();
    for replica in &replicas {
        let logs = containers.podman.quiet(&["logs", replica])?;
        counts.push(calls_logged(&logs));
    }
    println!(
        "xtask: 20 calls through the gateway to {headless}: {} answered by {}",
        counts
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(" and "),
        replicas.join(" and ")
    );
    if counts.contains(&0) || counts.iter().sum::<usize>() != 20 {
        bail!("the gateway did not spread the calls over both replicas: {counts:?}");
    }
    // Each replica alone must carry the calls: both are in the gateway's rotation.
    for (stopped, serving) in [(0, 1), (1, 0)] {
        containers
            .podman
            .quiet(&["stop", "--time", "10", &replicas[stopped]])?;
        runtime.block_on(calls_succeed(&gateway_url, 10))?;
        println!(
            "xtask: {} stopped: 10 calls answered by {}",
            replicas[stopped], replicas[serving]
        );
        containers.podman.quiet(&["start", &replicas[stopped]])?;
        containers.wait_healthy(&replicas[stopped], Duration::from_secs(60))?;
    }
    Ok(())
}

/// How many `ListPartners` calls a service's JSON log shows it started.
fn calls_logged(logs: &str) -> usize {
    logs.lines()
        .filter(|line| {
            line.contains("\"started processing request\"")
                && line.contains("PartnerService/ListPartners")
        })
        .count()
}

/// Runs `command` in the foreground; `None` when it was still running after `timeout` (then it
/// is killed).
fn run_with_timeout(
    command: &mut Command,
    timeout: Duration,
) -> Result<Option<std::process::ExitStatus>> {
    println!("$ {}", process::describe(command));
    let mut child = command.spawn()?;
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline || process::interrupted() {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The port of a process in this run: its `cargo xtask dev` port moved above 57000.
fn container_port(def: &ServiceDef) -> Option<u16> {
    def.port.map(|port| PORT_BASE + port % 1000)
}

/// `ListPartners` through the gateway `count` times, with a development token; every call must
/// succeed.
async fn calls_succeed(gateway: &str, count: usize) -> Result<()> {
    // Signed with the development secret (the containers get no other) for the issuer the
    // chart's settings files name.
    let mut auth = AuthSettings::development();
    auth.issuer = "crm".into();
    let token = TokenIssuer::for_users(&auth)
        .context("no development signing key")?
        .issue("image-check", &["admin"], Duration::from_secs(600));
    let channel = tonic::transport::Endpoint::from_shared(gateway.to_owned())?
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(10))
        .connect()
        .await
        .with_context(|| format!("cannot connect to the gateway at {gateway}"))?;
    let mut client = PartnerServiceClient::new(channel);
    for index in 0..count {
        let mut request = tonic::Request::new(ListPartnersRequest {
            page_size: 1,
            ..ListPartnersRequest::default()
        });
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse()?);
        client
            .list_partners(request)
            .await
            .with_context(|| format!("call {index} through the gateway failed"))?;
    }
    Ok(())
}

/// podman with this run's `containers.conf`.
#[derive(Clone)]
struct Podman {
    conf: PathBuf,
}

impl Podman {
    /// podman ready to use: installed (as root, from Debian) and configured.
    fn ready(dir: &Path) -> Result<Self> {
        let mut missing = Vec::new();
        for (program, package) in [
            ("podman", "podman"),
            ("runc", "runc"),
            ("mmdebstrap", "mmdebstrap"),
        ] {
            if process::find_program(program).is_none() {
                missing.push(package);
            }
        }
        if !missing.is_empty() {
            process::apt_install("podman", &missing)?;
        }
        let conf = dir.join("containers.conf");
        fs::write(&conf, CONTAINERS_CONF)?;
        Ok(Self { conf })
    }

    fn command(&self) -> Command {
        let mut command = Command::new("podman");
        command.env("CONTAINERS_CONF", &self.conf);
        command
    }

    /// Runs podman with `args`, its output discarded unless it fails.
    fn quiet(&self, args: &[&str]) -> Result<String> {
        process::output(self.command().args(args))
    }

    fn image_exists(&self, image: &str) -> bool {
        self.command()
            .args(["image", "exists", image])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// The runtime base image, made with mmdebstrap from Debian's mirror when it is not there.
    fn ensure_base_image(&self, dir: &Path) -> Result<()> {
        if self.image_exists(BASE_IMAGE) {
            return Ok(());
        }
        let started = Instant::now();
        let tarball = dir.join("base.tar");
        println!("xtask: making the runtime base image {BASE_IMAGE} with mmdebstrap");
        process::run_checked(
            Command::new("mmdebstrap")
                .args([
                    "--mode=root",
                    "--variant=minbase",
                    "--include=ca-certificates",
                    "bookworm",
                ])
                .arg(&tarball),
        )?;
        process::run_checked(self.command().arg("import").arg(&tarball).arg(BASE_IMAGE))?;
        let _ = fs::remove_file(&tarball);
        println!(
            "xtask: base image made in {:.0} s",
            started.elapsed().as_secs_f64()
        );
        Ok(())
    }

    fn build(&self, workspace: &Workspace, context: &Path, tag: &str) -> Result<()> {
        let revision = process::output(
            Command::new("git")
                .args(["rev-parse", "--short", "HEAD"])
                .current_dir(&workspace.root),
        )
        .map(|r| r.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into());
        process::run_checked(
            self.command()
                .args(["build", "--pull=never", "--network=host"])
                // The Docker format keeps the HEALTHCHECK (OCI images have none).
                .args(["--format", "docker", "--quiet"])
                .arg("--file")
                .arg(workspace.root.join("docker/Dockerfile"))
                .args(["--target", "prebuilt"])
                .args(["--build-arg", &format!("RUNTIME_IMAGE={BASE_IMAGE}")])
                .args(["--build-arg", &format!("REVISION={revision}")])
                .args(["--tag", tag])
                .arg(context),
        )
    }

    /// `podman run` on the host network, as the chart runs a pod: UID 10001, read-only root
    /// filesystem, no capabilities, no privilege escalation. The caller adds its own options,
    /// then the image and the command.
    fn run_command(&self, name: &str, detached: bool) -> Command {
        let mut command = self.command();
        command.args(["run", "--pull=never", "--network=host", "--name", name]);
        if detached {
            command.arg("--detach");
        } else {
            command.arg("--rm");
        }
        command.args([
            "--read-only",
            "--tmpfs",
            "/tmp",
            "--cap-drop=ALL",
            "--security-opt=no-new-privileges",
            "--user",
            "10001:10001",
        ]);
        command
    }
}

/// The containers of this run; removed when dropped.
struct Containers {
    podman: Podman,
    started: Vec<String>,
}

impl Containers {
    fn new(podman: Podman) -> Self {
        Self {
            podman,
            started: Vec::new(),
        }
    }

    fn start(&mut self, name: &str, command: &mut Command) -> Result<()> {
        // A container left by a run that was killed would block the name.
        let _ = self.podman.quiet(&["rm", "--force", name]);
        self.started.push(name.to_owned());
        println!("xtask: starting container {name}");
        process::output(command)?;
        Ok(())
    }

    /// Waits until the image's own `HEALTHCHECK` (crm-health-probe) passes in `name`.
    fn wait_healthy(&self, name: &str, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            process::check_interrupted()?;
            let state = self
                .podman
                .quiet(&["inspect", "--format", "{{.State.Status}}", name])?;
            if state.trim() != "running" {
                bail!("container {name} is {}", state.trim());
            }
            let healthy = self
                .podman
                .command()
                .args(["healthcheck", "run", name])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if healthy {
                println!("xtask: {name} is healthy (HEALTHCHECK: crm-health-probe)");
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "container {name} not healthy within {} s",
                    timeout.as_secs()
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    fn print_logs(&self) {
        for name in &self.started {
            if let Ok(logs) = self.podman.quiet(&["logs", "--tail", "30", name]) {
                println!("--- last lines of {name}:\n{logs}");
            }
        }
    }
}

impl Drop for Containers {
    fn drop(&mut self) {
        for name in self.started.iter().rev() {
            let _ = self.podman.quiet(&["rm", "--force", "--time", "10", name]);
        }
    }
}
