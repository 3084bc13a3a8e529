//! Running programs, and what SIGINT/SIGTERM do to us.
//!
//! The default action of SIGINT and SIGTERM kills the process without running any `Drop`, which
//! would leave PostgreSQL, Redis and the services running. So [`catch_signals`] replaces it: a
//! signal only sets a flag that long-running loops poll ([`interrupted`]), and is passed on to the
//! foreground program (the test runner, a build) so that it ends and we can clean up.
//! The processes we supervise (databases, services) run in their own process groups: Ctrl-C in
//! the terminal reaches only us, and we stop them in order.

use std::{
    ffi::OsStr,
    fs,
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus},
    sync::{
        Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use tokio::signal::unix::{SignalKind, signal};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Pid of the program run by [`run_foreground`] right now, to pass signals on to.
static FOREGROUND: Mutex<Option<u32>> = Mutex::new(None);

/// Installs the SIGINT/SIGTERM handlers for the rest of the run (see the module docs).
pub fn catch_signals() -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    // Register while still on this thread, so the handlers are in place when we return.
    let (mut interrupt, mut terminate) = {
        let _context = runtime.enter();
        (
            signal(SignalKind::interrupt())?,
            signal(SignalKind::terminate())?,
        )
    };
    thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            runtime.block_on(async move {
                loop {
                    let name = tokio::select! {
                        _ = interrupt.recv() => "INT",
                        _ = terminate.recv() => "TERM",
                    };
                    if !INTERRUPTED.swap(true, Ordering::SeqCst) {
                        eprintln!("\nxtask: SIG{name} received: stopping everything we started…");
                    }
                    let foreground = *FOREGROUND.lock().unwrap_or_else(|e| e.into_inner());
                    if let Some(pid) = foreground {
                        send_signal(pid, name);
                    }
                }
            });
        })?;
    Ok(())
}

/// Whether SIGINT or SIGTERM arrived: time to stop and clean up.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Fails when [`interrupted`], so that `?` unwinds to the guards.
pub fn check_interrupted() -> Result<()> {
    if interrupted() {
        bail!("interrupted");
    }
    Ok(())
}

/// Runs `command` in the foreground (in our process group, attached to the terminal), printing
/// it first; signals we receive are passed on to it.
pub fn run_foreground(command: &mut Command) -> Result<ExitStatus> {
    check_interrupted()?;
    println!("$ {}", describe(command));
    let mut child = command
        .spawn()
        .with_context(|| format!("cannot start {}", describe(command)))?;
    *FOREGROUND.lock().unwrap_or_else(|e| e.into_inner()) = Some(child.id());
    let status = child.wait();
    *FOREGROUND.lock().unwrap_or_else(|e| e.into_inner()) = None;
    Ok(status?)
}

/// Like [`run_foreground`], but a non-zero exit is an error.
pub fn run_checked(command: &mut Command) -> Result<()> {
    let status = run_foreground(command)?;
    if !status.success() {
        bail!("`{}` failed ({status})", describe(command));
    }
    Ok(())
}

/// Runs `command` quietly and returns its stdout; a non-zero exit is an error carrying stderr.
pub fn output(command: &mut Command) -> Result<String> {
    let output = command
        .output()
        .with_context(|| format!("cannot start {}", describe(command)))?;
    if !output.status.success() {
        bail!(
            "`{}` failed ({}): {}",
            describe(command),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Puts a supervised process in its own process group, so Ctrl-C in the terminal does not reach
/// it directly: we stop it ourselves, after the processes that depend on it.
pub fn own_process_group(command: &mut Command) -> &mut Command {
    command.process_group(0)
}

/// Sends `signal` (e.g. "TERM") to `pid`. Uses the `kill` program: the workspace forbids unsafe
/// code, and std can only send SIGKILL.
pub fn send_signal(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .args(["-s", signal, &pid.to_string()])
        .stderr(std::process::Stdio::null())
        .status();
}

/// Stops a child politely (SIGTERM), then by force (SIGKILL) after `grace`; reaps it.
pub fn terminate(child: &mut Child, grace: Duration) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    send_signal(child.id(), "TERM");
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Waits until no process has id `pid` any more, up to `timeout`; true when it is gone.
pub fn wait_gone(pid: u32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Path::new(&format!("/proc/{pid}")).exists() {
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(50));
    }
    true
}

/// The command line of process `pid`, arguments separated by spaces (Linux `/proc`).
pub fn cmdline(pid: u32) -> Option<String> {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(String::from_utf8_lossy(&raw).replace('\0', " "))
}

/// Whether we run as root (effective uid 0).
pub fn is_root() -> bool {
    // /proc/self/status has "Uid: real effective saved fs"; `id -u` where /proc is missing.
    if let Ok(status) = fs::read_to_string("/proc/self/status")
        && let Some(line) = status.lines().find(|l| l.starts_with("Uid:"))
    {
        return line.split_whitespace().nth(2) == Some("0");
    }
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Finds `program` on PATH, or in the sbin directories that a non-login root shell may lack.
pub fn find_program(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// Installs Debian packages when we are root; otherwise fails with the command to run.
pub fn apt_install(what: &str, packages: &[&str]) -> Result<()> {
    let list = packages.join(" ");
    if !is_root() {
        bail!(
            "{what} is not installed. Install it and run again:\n    sudo apt-get install -y {list}"
        );
    }
    if find_program("apt-get").is_none() {
        bail!("{what} is not installed and there is no apt-get here: install {list} by hand");
    }
    println!("xtask: {what} is not installed: installing {list} with apt-get");
    let install = || {
        let mut command = Command::new("apt-get");
        command
            .args(["install", "-y", "--no-install-recommends"])
            .args(packages)
            .env("DEBIAN_FRONTEND", "noninteractive");
        run_foreground(&mut command)
    };
    if install()?.success() {
        return Ok(());
    }
    // A fresh machine often has empty package lists: refresh them once and try again.
    println!("xtask: install failed; refreshing the package lists and retrying");
    run_checked(
        Command::new("apt-get")
            .arg("update")
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    let status = install()?;
    if !status.success() {
        bail!("apt-get install -y {list} failed ({status})");
    }
    Ok(())
}

/// `program arg …` for messages, with arguments quoted where a shell would need it.
pub fn describe(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(quote)
        .collect::<Vec<_>>()
        .join(" ")
}

fn quote(arg: &OsStr) -> String {
    let arg = arg.to_string_lossy();
    let plain = !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,@+%".contains(c));
    if plain {
        arg.into_owned()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

/// The last `lines` lines of a log file, for error messages.
pub fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
