//! Private PostgreSQL and Redis instances for `dev`, `test` and `bench`, each purpose on its own
//! ports and directories so they can run side by side.
//!
//! When `xtask` runs as root, PostgreSQL must run as the `postgres` system user (it refuses root),
//! and that user must be able to reach its data directory. A clone may live under a private
//! directory (e.g. `mktemp -d`, mode 700), so as root the state goes to
//! `/tmp/crm-<purpose>-<hash of the workspace path>/`, owned by `postgres`; otherwise it goes to
//! `target/<purpose>/`.

use std::{
    fs,
    io::{Read as _, Write as _},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use crate::{
    process::{self, own_process_group},
    workspace::Workspace,
};

/// Which stack the instances are for; each has its own ports and directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    Dev,
    Test,
    Bench,
    /// `cargo xtask image`: the container image against its own instances.
    Image,
}

impl Purpose {
    fn name(self) -> &'static str {
        match self {
            Self::Dev => "dev",
            Self::Test => "test",
            Self::Bench => "bench",
            Self::Image => "image",
        }
    }

    fn postgres_port(self) -> u16 {
        match self {
            Self::Dev => 55432,
            Self::Test => 55433,
            Self::Bench => 55434,
            Self::Image => 55435,
        }
    }

    fn redis_port(self) -> u16 {
        match self {
            Self::Dev => 56379,
            Self::Test => 56380,
            Self::Bench => 56381,
            Self::Image => 56382,
        }
    }

    /// Server settings on top of the defaults.
    /// The variables that name a server of the user's own instead of the private ones.
    fn variables(self) -> (&'static str, &'static str) {
        match self {
            Self::Test => ("CRM_TEST_DATABASE_URL", "CRM_TEST_REDIS_URL"),
            Self::Dev | Self::Bench | Self::Image => ("CRM__DATABASE__URL", "CRM__REDIS__URL"),
        }
    }

    fn postgres_settings(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Self::Dev => &[("max_connections", "200")],
            // Test data is thrown away: durability only costs time. Many tests run in parallel,
            // each with its own database and pools.
            Self::Test => &[
                ("max_connections", "400"),
                ("fsync", "off"),
                ("synchronous_commit", "off"),
                ("full_page_writes", "off"),
            ],
            // Durable, like production, so the numbers mean something.
            Self::Bench => &[("max_connections", "300")],
            Self::Image => &[("max_connections", "100")],
        }
    }
}

/// Servers given by the environment, used instead of private instances.
#[derive(Default)]
pub struct External {
    /// A PostgreSQL URL; used as both the service and the admin URL.
    pub database_url: Option<String>,
    /// A Redis URL.
    pub redis_url: Option<String>,
}

impl External {
    /// `CRM__DATABASE__URL` and `CRM__REDIS__URL`, when set and not empty.
    pub fn from_service_env() -> Self {
        Self::from_env(&["CRM__DATABASE__URL"], &["CRM__REDIS__URL"])
    }

    /// The first set variable among `database` and among `redis`.
    pub fn from_env(database: &[&str], redis: &[&str]) -> Self {
        let first = |names: &[&str]| {
            names
                .iter()
                .find_map(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
        };
        Self {
            database_url: first(database),
            redis_url: first(redis),
        }
    }
}

/// PostgreSQL and Redis, ready to use. Private instances stop when this is dropped.
pub struct Backing {
    /// The `crm` database, for the services.
    pub database_url: String,
    /// A superuser on the `postgres` database, for tests that create their own databases.
    pub admin_url: String,
    /// The Redis server.
    pub redis_url: String,
    // Dropped in this order: Redis, then PostgreSQL.
    _redis: Option<RedisServer>,
    _postgres: Option<PostgresCluster>,
}

/// Starts (or reuses) what `purpose` needs, unless `external` names a server.
pub fn provision(workspace: &Workspace, purpose: Purpose, external: External) -> Result<Backing> {
    let as_postgres = process::is_root();
    let state = state_dir(workspace, purpose, as_postgres);
    println!(
        "xtask: {} state directory: {}{}",
        purpose.name(),
        state.display(),
        if as_postgres {
            " (running as root: PostgreSQL runs as the `postgres` user, so its files live \
             where that user can reach them)"
        } else {
            ""
        }
    );
    fs::create_dir_all(&state).with_context(|| format!("cannot create {}", state.display()))?;

    let (postgres, database_url, admin_url) = match external.database_url {
        Some(url) => {
            println!("xtask: using the PostgreSQL server given by the environment");
            (None, url.clone(), url)
        }
        None => {
            let port = purpose.postgres_port();
            let cluster = PostgresCluster::start(&state, port, purpose, as_postgres)?;
            if purpose == Purpose::Bench {
                // Every run measures the same amount of data: runs stay comparable.
                cluster.drop_database("crm")?;
            }
            cluster.ensure_database("crm")?;
            let (database_url, admin_url) = (cluster.url("crm"), cluster.url("postgres"));
            (Some(cluster), database_url, admin_url)
        }
    };
    let (redis, redis_url) = match external.redis_url {
        Some(url) => {
            println!("xtask: using the Redis server given by the environment");
            (None, url)
        }
        None => {
            let port = purpose.redis_port();
            let server = RedisServer::start(&state.join("redis"), port, purpose)?;
            (Some(server), format!("redis://127.0.0.1:{port}"))
        }
    };
    println!("xtask: PostgreSQL {database_url}");
    println!("xtask: Redis      {redis_url}");
    Ok(Backing {
        database_url,
        admin_url,
        redis_url,
        _redis: redis,
        _postgres: postgres,
    })
}

/// Installs the programs the tests run besides the servers: `pdftotext` (Debian's
/// poppler-utils) reads rendered documents back.
pub fn test_tools() -> Result<()> {
    if process::find_program("pdftotext").is_none() {
        process::apt_install(
            "pdftotext (to read rendered PDFs in tests)",
            &["poppler-utils"],
        )?;
    }
    Ok(())
}

fn state_dir(workspace: &Workspace, purpose: Purpose, as_postgres: bool) -> PathBuf {
    if as_postgres {
        PathBuf::from(format!(
            "/tmp/crm-{}-{}",
            purpose.name(),
            workspace.short_hash()
        ))
    } else {
        workspace.target.join(purpose.name())
    }
}

/// The directory of the PostgreSQL server programs: `pg_config --bindir`, else the newest
/// `/usr/lib/postgresql/*/bin` (Debian), else wherever `initdb` is on PATH.
pub fn postgres_bin_dir() -> Option<PathBuf> {
    let has_initdb = |dir: &Path| dir.join("initdb").is_file();
    if let Some(pg_config) = process::find_program("pg_config")
        && let Ok(out) = process::output(Command::new(pg_config).arg("--bindir"))
    {
        let dir = PathBuf::from(out.trim());
        if has_initdb(&dir) {
            return Some(dir);
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .filter(|(_, dir)| has_initdb(dir))
        .collect();
    versions.sort();
    if let Some((_, dir)) = versions.pop() {
        return Some(dir);
    }
    process::find_program("initdb").and_then(|p| p.parent().map(Path::to_path_buf))
}

/// The PostgreSQL server programs, installed first when missing (as root).
fn postgres_bin_dir_or_install() -> Result<PathBuf> {
    if let Some(dir) = postgres_bin_dir() {
        return Ok(dir);
    }
    process::apt_install("PostgreSQL", &["postgresql"])?;
    postgres_bin_dir().context("PostgreSQL was installed but initdb is still not found")
}

/// A client program (psql, pgbench): next to the server programs, else on PATH.
pub fn postgres_client(program: &str) -> Result<PathBuf> {
    postgres_bin_dir()
        .map(|dir| dir.join(program))
        .filter(|p| p.is_file())
        .or_else(|| process::find_program(program))
        .with_context(|| format!("{program} not found (install the postgresql-client package)"))
}

/// A private PostgreSQL cluster; `pg_ctl stop -m fast` when dropped.
struct PostgresCluster {
    bin: PathBuf,
    port: u16,
    data: PathBuf,
    /// Whether server programs run as the `postgres` user (we are root).
    as_postgres: bool,
}

impl PostgresCluster {
    /// Creates the cluster on first use (superuser `crm`, trust authentication, local TCP only),
    /// reuses it afterwards, and starts it on `port`.
    fn start(state: &Path, port: u16, purpose: Purpose, as_postgres: bool) -> Result<Self> {
        let bin = postgres_bin_dir_or_install()?;
        let data = state.join("pg");
        let cluster = Self {
            bin,
            port,
            data,
            as_postgres,
        };
        if as_postgres {
            // The state directory and the cluster inside belong to `postgres`; it must also be
            // able to write its log next to the cluster.
            process::run_checked(
                Command::new("chown").args(["postgres:postgres", &state.to_string_lossy()]),
            )?;
        }

        if !cluster.data.join("PG_VERSION").is_file() {
            println!(
                "xtask: creating a PostgreSQL cluster in {}",
                cluster.data.display()
            );
            fs::create_dir_all(&cluster.data)?;
            if as_postgres {
                process::run_checked(Command::new("chown").args([
                    "-R",
                    "postgres:postgres",
                    &cluster.data.to_string_lossy(),
                ]))?;
            }
            // Superuser `crm`, trusted on local connections: a private, loopback-only cluster.
            // Quiet (its advice on starting the server is not for us); errors carry its stderr.
            let initdb = |locale: &str| {
                process::output(cluster.server_program("initdb").args([
                    "--pgdata",
                    &cluster.data.to_string_lossy(),
                    "--username",
                    "crm",
                    "--auth",
                    "trust",
                    "--encoding",
                    "UTF8",
                    "--locale",
                    locale,
                    "--no-sync",
                ]))
            };
            // C.UTF-8: code-point order like C, but lower() folds every letter (Ș → ș), as on a
            // production cluster with a UTF-8 locale; plain C where the system lacks it.
            if let Err(err) = initdb("C.UTF-8") {
                println!("xtask: the C.UTF-8 locale is not available ({err:#}); using C");
                initdb("C")?;
            }
        }

        if cluster.is_running() {
            // Left over by an earlier run that was killed: use it, and stop it at the end.
            println!(
                "xtask: PostgreSQL in {} is already running: reusing it",
                cluster.data.display()
            );
            return Ok(cluster);
        }
        ensure_port_free(port, "PostgreSQL", purpose.variables().0)?;

        let log = state.join("postgres.log");
        // An empty unix_socket_directories: connect over TCP only, so no socket directory (such
        // as /var/run/postgresql) has to be writable.
        let mut options =
            format!("-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=");
        for (key, value) in purpose.postgres_settings() {
            options.push_str(&format!(" -c {key}={value}"));
        }
        println!(
            "xtask: starting PostgreSQL on 127.0.0.1:{port} (log: {})",
            log.display()
        );
        let started = process::run_foreground(cluster.server_program("pg_ctl").args([
            "start",
            "--wait",
            "--timeout",
            "60",
            "--pgdata",
            &cluster.data.to_string_lossy(),
            "--log",
            &log.to_string_lossy(),
            "-o",
            &options,
        ]))?;
        if !started.success() {
            bail!(
                "PostgreSQL did not start ({started}); the end of {}:\n{}",
                log.display(),
                process::tail(&log, 20)
            );
        }
        Ok(cluster)
    }

    /// Whether the server of this data directory runs (`pg_ctl status`: 0 running, 3 not running,
    /// 4 no usable data directory).
    fn is_running(&self) -> bool {
        self.server_program("pg_ctl")
            .args(["status", "--pgdata", &self.data.to_string_lossy()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// A server program, run as `postgres` when we are root (initdb and postgres refuse root),
    /// from a directory that user can enter.
    fn server_program(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        let mut command = if self.as_postgres {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(path);
            command
        } else {
            Command::new(path)
        };
        if let Some(state) = self.data.parent() {
            command.current_dir(state);
        }
        own_process_group(&mut command);
        command
    }

    /// Drops database `name` if it exists, disconnecting its sessions.
    fn drop_database(&self, name: &str) -> Result<()> {
        let psql = postgres_client("psql")?;
        process::output(Command::new(&psql).args([
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            &self.url("postgres"),
            "-c",
            &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        ]))?;
        Ok(())
    }

    /// Creates database `name` unless it exists.
    fn ensure_database(&self, name: &str) -> Result<()> {
        let admin_url = self.url("postgres");
        let psql = postgres_client("psql")?;
        let exists = process::output(Command::new(&psql).args([
            "-X",
            "-tA",
            "-v",
            "ON_ERROR_STOP=1",
            &admin_url,
            "-c",
            &format!("SELECT 1 FROM pg_database WHERE datname = '{name}'"),
        ]))?;
        if exists.trim() != "1" {
            println!("xtask: creating database {name}");
            process::output(Command::new(&psql).args([
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                &admin_url,
                "-c",
                &format!("CREATE DATABASE {name}"),
            ]))?;
        }
        Ok(())
    }

    /// URL of database `db` as the superuser `crm`.
    fn url(&self, db: &str) -> String {
        format!("postgres://crm@127.0.0.1:{}/{db}", self.port)
    }
}

impl Drop for PostgresCluster {
    fn drop(&mut self) {
        // Also reached when the start failed part way: a server may or may not be running.
        if !self.is_running() {
            return;
        }
        println!("xtask: stopping PostgreSQL ({})", self.data.display());
        let stopped = self
            .server_program("pg_ctl")
            .args([
                "stop",
                "--pgdata",
                &self.data.to_string_lossy(),
                "--mode",
                "fast",
                "--wait",
            ])
            .stdout(Stdio::null())
            .status();
        match stopped {
            Ok(status) if status.success() => {}
            Ok(status) => eprintln!("xtask: pg_ctl stop failed ({status})"),
            Err(err) => eprintln!("xtask: cannot run pg_ctl stop: {err}"),
        }
    }
}

/// A private Redis server, run as our child (nothing persisted); stopped when dropped.
struct RedisServer {
    child: Child,
    pid_file: PathBuf,
}

impl RedisServer {
    fn start(dir: &Path, port: u16, purpose: Purpose) -> Result<Self> {
        let program = match process::find_program("redis-server") {
            Some(program) => program,
            None => {
                process::apt_install("Redis", &["redis-server"])?;
                process::find_program("redis-server")
                    .context("redis-server was installed but is still not found")?
            }
        };
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let pid_file = dir.join("redis.pid");
        stop_stale_redis(&pid_file);
        ensure_port_free(port, "Redis", purpose.variables().1)?;

        let log = dir.join("redis.log");
        let log_file = fs::File::create(&log)?;
        println!(
            "xtask: starting Redis on 127.0.0.1:{port} (log: {})",
            log.display()
        );
        let mut command = Command::new(program);
        command
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--dir"])
            .arg(dir)
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--pidfile")
            .arg(&pid_file)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file);
        own_process_group(&mut command);
        let child = command.spawn().context("cannot start redis-server")?;
        let mut server = Self { child, pid_file };

        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            process::check_interrupted()?;
            if let Some(status) = server.child.try_wait()? {
                bail!(
                    "redis-server exited ({status}); the end of {}:\n{}",
                    log.display(),
                    process::tail(&log, 20)
                );
            }
            if redis_ping(port) {
                return Ok(server);
            }
            if Instant::now() > deadline {
                bail!("Redis did not answer PING on port {port} within 20 s");
            }
            thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        println!("xtask: stopping Redis");
        process::terminate(&mut self.child, Duration::from_secs(5));
        let _ = fs::remove_file(&self.pid_file);
    }
}

/// A Redis started by an earlier run that was killed before it could stop it: stop it now.
fn stop_stale_redis(pid_file: &Path) {
    let Some(pid) = fs::read_to_string(pid_file)
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
    else {
        return;
    };
    if process::cmdline(pid).is_some_and(|c| c.contains("redis-server")) {
        println!("xtask: stopping a Redis left over by an earlier run (pid {pid})");
        process::send_signal(pid, "TERM");
        if !process::wait_gone(pid, Duration::from_secs(5)) {
            process::send_signal(pid, "KILL");
            process::wait_gone(pid, Duration::from_secs(2));
        }
    }
    let _ = fs::remove_file(pid_file);
}

/// Whether a Redis server answers PING on the loopback `port`.
fn redis_ping(port: u16) -> bool {
    let Ok(mut stream) =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(500))
    else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let mut reply = [0u8; 16];
    stream.write_all(b"PING\r\n").is_ok()
        && stream
            .read(&mut reply)
            .is_ok_and(|n| reply[..n].starts_with(b"+PONG"))
}

/// Fails with advice when something else already listens on `port`.
fn ensure_port_free(port: u16, what: &str, variable: &str) -> Result<()> {
    if TcpListener::bind(("127.0.0.1", port)).is_err() {
        bail!(
            "port {port} ({what}) is in use by another program; stop it, or set {variable} to \
             use a server of your own"
        );
    }
    Ok(())
}
