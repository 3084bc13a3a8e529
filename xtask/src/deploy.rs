//! The deployment checks of `cargo xtask test` (also `cargo xtask deploy-check`): the Helm chart,
//! the kustomize overlays that consume it, the Dockerfile and the Compose file, with the tools of
//! [`crate::tools`].
//!
//! - `helm lint --strict` with the default and the production-like values (`values.schema.json`
//!   refuses a typo);
//! - `helm template` of three value sets (default; production-like: every service, 3 replicas,
//!   KEDA, tracing; production-like without KEDA: the HPA) and of each kustomize overlay, each
//!   checked by `kubernetes-validate --strict` and by [`audit`]: the security context, probes,
//!   NetworkPolicies and disruption budgets of every workload, and the gateway's routes;
//! - every KEDA object against KEDA's schema made strict (unknown fields refused);
//! - checkov on the chart, the production manifests and the Dockerfile; hadolint; yamllint;
//!   `docker compose config` with and without the optional profiles.
//!
//! Every check runs even when an earlier one failed; rendered manifests are left in
//! `target/deploy/` to look at.

use std::{collections::BTreeMap, fs, path::Path, process::Command, time::Instant};

use anyhow::{Context as _, Result, bail};
use serde::Deserialize as _;
use serde_json::Value;

use crate::{process, tools::Tools, workspace::Workspace};

/// Turns KEDA's pydantic models into JSON schemas that refuse unknown fields (the models allow
/// them), one file per kind, in the directory given.
const KEDA_SCHEMAS: &str = r#"
import json, os, sys
from cloudcoil.models.keda import v1alpha1 as keda

def strict(node):
    if isinstance(node, dict):
        if isinstance(node.get("properties"), dict):
            node.setdefault("additionalProperties", False)
            for child in node["properties"].values():
                strict(child)
        for key, child in node.items():
            if key != "properties":
                strict(child)
    elif isinstance(node, list):
        for child in node:
            strict(child)

for kind in ("ScaledObject", "TriggerAuthentication"):
    schema = getattr(keda, kind).model_json_schema(by_alias=True)
    strict(schema)
    with open(os.path.join(sys.argv[1], kind + ".json"), "w") as f:
        json.dump(schema, f)
"#;

/// The KEDA kinds the chart makes.
const KEDA_KINDS: &[&str] = &["ScaledObject", "TriggerAuthentication"];

/// Runs every check; true when all passed.
pub fn run(workspace: &Workspace) -> Result<bool> {
    let started = Instant::now();
    let tools = Tools::install(workspace)?;
    let out = workspace.target.join("deploy");
    let _ = fs::remove_dir_all(&out);
    fs::create_dir_all(out.join("keda"))?;
    let root = &workspace.root;
    let chart = root.join("helm/crm");
    let production = root.join("helm/values-production.yaml");
    let mut checks = Checks::default();

    for (name, values) in [("default", None), ("production", Some(&production))] {
        checks.run(&format!("helm lint --strict ({name} values)"), || {
            let mut command = Command::new(tools.helm());
            command.args(["lint", "--strict"]).arg(&chart);
            if let Some(values) = values {
                command.arg("--values").arg(values);
            }
            succeeds(&mut command)
        });
    }

    checks.run("KEDA schemas (strict)", || {
        succeeds(
            tools
                .python_script("keda_schemas.py", KEDA_SCHEMAS)?
                .arg(out.join("keda")),
        )
    });

    let renders: [(&str, Vec<String>); 3] = [
        ("default", vec![]),
        (
            "production",
            vec!["--values".into(), production.display().to_string()],
        ),
        (
            "production-hpa",
            vec![
                "--values".into(),
                production.display().to_string(),
                "--set".into(),
                "services.notifications-work.autoscaling.keda.enabled=false".into(),
            ],
        ),
    ];
    for (name, args) in &renders {
        let rendered = checks.output(&format!("helm template ({name})"), || {
            process::output(
                Command::new(tools.helm())
                    .args(["template", "crm"])
                    .arg(&chart)
                    .args(["--namespace", "crm"])
                    .args(args),
            )
        });
        if let Some(text) = rendered {
            check_manifests(&mut checks, &tools, &out, name, &text);
        }
    }
    let production_docs = fs::read_to_string(out.join("production.yaml"))
        .ok()
        .and_then(|text| parse_manifests(&text).ok())
        .unwrap_or_default();
    checks.run("production renders the worker autoscaling", || {
        expect_kinds(&production_docs, &["ScaledObject", "Ingress", "Job"])
    });

    for overlay in ["dev", "production"] {
        let dir = root.join("k8s/overlays").join(overlay);
        let rendered = checks.output(&format!("kubectl kustomize k8s/overlays/{overlay}"), || {
            process::output(
                Command::new(tools.venv("kubectl"))
                    .args([
                        "kustomize",
                        "--enable-helm",
                        "--load-restrictor",
                        "LoadRestrictionsNone",
                    ])
                    .arg("--helm-command")
                    .arg(tools.helm())
                    .arg(&dir),
            )
        });
        if let Some(text) = rendered {
            check_manifests(
                &mut checks,
                &tools,
                &out,
                &format!("kustomize-{overlay}"),
                &text,
            );
        }
    }

    let checkov_config = root.join("helm/.checkov.yaml");
    let dockerfile = root.join("docker/Dockerfile");
    let production_manifests = out.join("production.yaml");
    // What checkov reads, how, and whether with the chart's skips.
    let scans: [(&str, &str, &Path, &str, bool); 3] = [
        ("chart", "--directory", &chart, "helm", true),
        (
            "production manifests",
            "--file",
            &production_manifests,
            "kubernetes",
            true,
        ),
        ("Dockerfile", "--file", &dockerfile, "dockerfile", false),
    ];
    for (name, flag, target, framework, skips) in scans {
        checks.run(&format!("checkov ({name})"), || {
            let mut command = tools.checkov();
            command.args(CHECKOV_FLAGS);
            if skips {
                command.arg("--config-file").arg(&checkov_config);
            }
            succeeds(
                command
                    .arg(flag)
                    .arg(target)
                    .args(["--framework", framework]),
            )
        });
    }
    checks.run("hadolint docker/Dockerfile", || {
        succeeds(Command::new(tools.venv("hadolint")).arg(&dockerfile))
    });
    checks.run("yamllint --strict", || {
        succeeds(
            Command::new(tools.venv("yamllint"))
                .arg("--strict")
                .arg("--config-file")
                .arg(root.join(".yamllint.yaml"))
                .args(["docker", "helm", "k8s", ".yamllint.yaml"])
                .current_dir(root),
        )
    });
    let compose_file = root.join("docker/compose.yaml");
    for profiles in [&[][..], &["tasks", "notifications", "email-import"][..]] {
        let name = if profiles.is_empty() {
            "docker compose config".to_owned()
        } else {
            format!("docker compose config (profiles {})", profiles.join(", "))
        };
        checks.run(&name, || {
            let mut command = Command::new(tools.compose()?);
            command.arg("--file").arg(&compose_file);
            for profile in profiles {
                command.args(["--profile", profile]);
            }
            succeeds(command.args(["config", "--quiet"]))
        });
    }

    Ok(checks.report(started))
}

/// Quiet checkov that reads no remote guidelines.
const CHECKOV_FLAGS: &[&str] = &["--quiet", "--compact", "--skip-download"];

/// Validates one set of rendered manifests (kept as `<name>.yaml`): Kubernetes schemas, KEDA's
/// schema, and [`audit`].
fn check_manifests(checks: &mut Checks, tools: &Tools, out: &Path, name: &str, text: &str) {
    let file = out.join(format!("{name}.yaml"));
    if let Err(err) = fs::write(&file, text) {
        checks.record(&format!("write {}", file.display()), Err(err.into()));
        return;
    }
    checks.run(&format!("kubernetes-validate --strict ({name})"), || {
        succeeds(
            Command::new(tools.venv("kubernetes-validate"))
                .args(["--strict", "--quiet"])
                .arg(&file),
        )
    });
    let docs = match parse_manifests(text) {
        Ok(docs) => docs,
        Err(err) => {
            checks.record(&format!("parse {name}"), Err(err));
            return;
        }
    };
    checks.run(
        &format!("security, probes, NetworkPolicies ({name})"),
        || {
            let problems = audit(&docs);
            for problem in &problems {
                println!("  {problem}");
            }
            println!(
                "  {} objects, {} workloads checked",
                docs.len(),
                docs.iter().filter(|d| pod_spec(d).is_some()).count()
            );
            Ok(problems.is_empty())
        },
    );
    for kind in KEDA_KINDS {
        let objects: Vec<&Value> = docs.iter().filter(|d| kind_of(d) == *kind).collect();
        if objects.is_empty() {
            continue;
        }
        checks.run(
            &format!("{kind} against KEDA's strict schema ({name})"),
            || {
                let mut command = Command::new(tools.venv("check-jsonschema"));
                command
                    .arg("--schemafile")
                    .arg(out.join("keda").join(format!("{kind}.json")));
                for (index, object) in objects.iter().enumerate() {
                    let path = out.join("keda").join(format!("{name}-{kind}-{index}.json"));
                    fs::write(&path, serde_json::to_vec_pretty(object)?)?;
                    command.arg(path);
                }
                succeeds(&mut command)
            },
        );
    }
}

/// The results of the checks, printed as they come and summed up at the end.
#[derive(Default)]
struct Checks {
    results: Vec<(String, bool)>,
}

impl Checks {
    fn run(&mut self, name: &str, check: impl FnOnce() -> Result<bool>) {
        println!("--> {name}");
        let result = check();
        self.record(name, result);
    }

    /// Runs a check that produces something (rendered manifests); `None` when it failed.
    fn output(&mut self, name: &str, produce: impl FnOnce() -> Result<String>) -> Option<String> {
        println!("--> {name}");
        match produce() {
            Ok(text) => {
                self.record(name, Ok(true));
                Some(text)
            }
            Err(err) => {
                self.record(name, Err(err));
                None
            }
        }
    }

    fn record(&mut self, name: &str, result: Result<bool>) {
        let passed = match result {
            Ok(passed) => passed,
            Err(err) => {
                println!("  error: {err:#}");
                false
            }
        };
        if !passed {
            println!("  FAILED: {name}");
        }
        self.results.push((name.to_owned(), passed));
    }

    fn report(&self, started: Instant) -> bool {
        let failed: Vec<&str> = self
            .results
            .iter()
            .filter(|(_, passed)| !passed)
            .map(|(name, _)| name.as_str())
            .collect();
        println!(
            "deployment checks: {} passed, {} failed ({:.0} s)",
            self.results.len() - failed.len(),
            failed.len(),
            started.elapsed().as_secs_f64()
        );
        for name in &failed {
            println!("  failed: {name}");
        }
        failed.is_empty()
    }
}

fn succeeds(command: &mut Command) -> Result<bool> {
    Ok(process::run_foreground(command)?.success())
}

fn expect_kinds(docs: &[Value], kinds: &[&str]) -> Result<bool> {
    let missing: Vec<&&str> = kinds
        .iter()
        .filter(|kind| !docs.iter().any(|d| kind_of(d) == **kind))
        .collect();
    if !missing.is_empty() {
        bail!("no {missing:?} rendered");
    }
    Ok(true)
}

// ---------------------------------------------------------------------------------------------
// The audit of rendered manifests.

/// Every document of a multi-document YAML stream, empty ones left out.
pub fn parse_manifests(text: &str) -> Result<Vec<Value>> {
    let mut docs = Vec::new();
    for document in serde_norway::Deserializer::from_str(text) {
        let value = Value::deserialize(document).context("a rendered document is not YAML")?;
        if !value.is_null() {
            docs.push(value);
        }
    }
    Ok(docs)
}

fn kind_of(doc: &Value) -> &str {
    doc["kind"].as_str().unwrap_or("")
}

fn name_of(doc: &Value) -> String {
    format!(
        "{}/{}",
        kind_of(doc),
        doc["metadata"]["name"].as_str().unwrap_or("?")
    )
}

/// The pod template (or pod) of a workload, with its labels.
fn pod_spec(doc: &Value) -> Option<(&Value, &Value)> {
    match kind_of(doc) {
        "Deployment" | "StatefulSet" | "DaemonSet" | "Job" => {
            let template = &doc["spec"]["template"];
            Some((&template["spec"], &template["metadata"]["labels"]))
        }
        "Pod" => Some((&doc["spec"], &doc["metadata"]["labels"])),
        _ => None,
    }
}

/// Whether every label of `selector` (a `matchLabels` map) is among `labels`.
fn selects(selector: &Value, labels: &Value) -> bool {
    selector
        .as_object()
        .is_some_and(|s| !s.is_empty() && s.iter().all(|(k, v)| labels.get(k) == Some(v)))
}

/// What is wrong with a set of rendered manifests, one line each; empty when nothing is:
/// - every workload's pod: no service account token, non-root, RuntimeDefault seccomp; every
///   container: read-only root filesystem, no privilege escalation, every capability dropped,
///   CPU and memory requests and limits;
/// - every Deployment: native gRPC startup, readiness and liveness probes on its own port, a
///   PodDisruptionBudget, and no `replicas` when an autoscaler owns it;
/// - every workload is selected by a NetworkPolicy for ingress and egress; every egress rule
///   names its ports; a service other than the gateway is reached only from the release's pods;
/// - every gateway route goes to a headless Service of the release (client-side balancing);
/// - every migration Job runs `migrate` as a pre-install and pre-upgrade hook.
pub fn audit(docs: &[Value]) -> Vec<String> {
    let mut problems = Vec::new();
    let policies: Vec<&Value> = docs
        .iter()
        .filter(|d| kind_of(d) == "NetworkPolicy")
        .collect();
    let release_label = "app.kubernetes.io/instance";

    for doc in docs {
        let Some((pod, labels)) = pod_spec(doc) else {
            continue;
        };
        let name = name_of(doc);
        let mut problem = |what: String| problems.push(format!("{name}: {what}"));
        if pod["automountServiceAccountToken"] != Value::Bool(false) {
            problem("mounts a service account token".into());
        }
        let pod_security = &pod["securityContext"];
        if pod_security["seccompProfile"]["type"] != "RuntimeDefault" {
            problem("pod seccomp profile is not RuntimeDefault".into());
        }
        let containers = pod["containers"]
            .as_array()
            .into_iter()
            .chain(pod["initContainers"].as_array())
            .flatten();
        for container in containers {
            let cname = container["name"].as_str().unwrap_or("?");
            let security = &container["securityContext"];
            let mut problem = |what: &str| problems.push(format!("{name} {cname}: {what}"));
            if security["runAsNonRoot"] != Value::Bool(true)
                && pod_security["runAsNonRoot"] != Value::Bool(true)
            {
                problem("may run as root");
            }
            if security["readOnlyRootFilesystem"] != Value::Bool(true) {
                problem("root filesystem is writable");
            }
            if security["allowPrivilegeEscalation"] != Value::Bool(false) {
                problem("allows privilege escalation");
            }
            if security["privileged"] == Value::Bool(true) {
                problem("is privileged");
            }
            let drops_all = security["capabilities"]["drop"]
                .as_array()
                .is_some_and(|d| d.iter().any(|c| c == "ALL"));
            let adds = security["capabilities"]["add"]
                .as_array()
                .is_some_and(|a| !a.is_empty());
            if !drops_all || adds {
                problem("keeps capabilities (drop ALL, add none)");
            }
            for kind in ["requests", "limits"] {
                for resource in ["cpu", "memory"] {
                    if container["resources"][kind][resource].is_null() {
                        problem(&format!("no {resource} {kind}"));
                    }
                }
            }
            if kind_of(doc) == "Deployment" {
                let ports: Vec<&Value> = container["ports"]
                    .as_array()
                    .map(|p| p.iter().map(|p| &p["containerPort"]).collect())
                    .unwrap_or_default();
                for probe in ["startupProbe", "readinessProbe", "livenessProbe"] {
                    let port = &container[probe]["grpc"]["port"];
                    if port.is_null() {
                        problem(&format!("no native gRPC {probe}"));
                    } else if !ports.contains(&port) {
                        problem(&format!("{probe} asks port {port}, not a container port"));
                    }
                }
            }
        }

        let covering: Vec<&&Value> = policies
            .iter()
            .filter(|p| selects(&p["spec"]["podSelector"]["matchLabels"], labels))
            .collect();
        let types = |t: &str| {
            covering.iter().any(|p| {
                p["spec"]["policyTypes"]
                    .as_array()
                    .is_some_and(|ts| ts.iter().any(|x| x == t))
            })
        };
        if !types("Ingress") || !types("Egress") {
            problems.push(format!(
                "{name}: no NetworkPolicy limits both its ingress and egress"
            ));
        }
        let is_gateway = labels["app.kubernetes.io/component"] == "gateway";
        for policy in &covering {
            let pname = name_of(policy);
            for rule in policy["spec"]["egress"].as_array().into_iter().flatten() {
                if rule["ports"].as_array().is_none_or(Vec::is_empty) {
                    problems.push(format!("{pname}: an egress rule allows every port"));
                }
            }
            if is_gateway {
                continue;
            }
            for rule in policy["spec"]["ingress"].as_array().into_iter().flatten() {
                let peers = rule["from"].as_array().map(Vec::as_slice).unwrap_or(&[]);
                let siblings_only = !peers.is_empty()
                    && peers.iter().all(|peer| {
                        peer.as_object().is_some_and(|p| p.len() == 1)
                            && !peer["podSelector"]["matchLabels"][release_label].is_null()
                    });
                if !siblings_only {
                    problems.push(format!(
                        "{pname}: lets more than the release's pods reach {name}"
                    ));
                }
            }
        }
    }

    for doc in docs.iter().filter(|d| kind_of(d) == "Deployment") {
        let name = name_of(doc);
        let labels = &doc["spec"]["template"]["metadata"]["labels"];
        let budgeted = docs.iter().any(|d| {
            kind_of(d) == "PodDisruptionBudget"
                && selects(&d["spec"]["selector"]["matchLabels"], labels)
        });
        if !budgeted {
            problems.push(format!("{name}: no PodDisruptionBudget"));
        }
        let deployment = doc["metadata"]["name"].as_str().unwrap_or("");
        let autoscaled = docs.iter().any(|d| {
            matches!(kind_of(d), "ScaledObject" | "HorizontalPodAutoscaler")
                && d["spec"]["scaleTargetRef"]["name"] == deployment
        });
        if autoscaled && !doc["spec"]["replicas"].is_null() {
            problems.push(format!(
                "{name}: sets replicas although an autoscaler owns them"
            ));
        }
    }

    for doc in docs
        .iter()
        .filter(|d| matches!(kind_of(d), "ScaledObject" | "HorizontalPodAutoscaler"))
    {
        let target = &doc["spec"]["scaleTargetRef"]["name"];
        let exists = docs
            .iter()
            .any(|d| kind_of(d) == "Deployment" && &d["metadata"]["name"] == target);
        if !exists {
            problems.push(format!(
                "{}: scales {target}, which is not rendered",
                name_of(doc)
            ));
        }
    }

    let headless: Vec<&str> = docs
        .iter()
        .filter(|d| kind_of(d) == "Service" && d["spec"]["clusterIP"] == "None")
        .filter_map(|d| d["metadata"]["name"].as_str())
        .collect();
    for doc in docs.iter().filter(|d| {
        kind_of(d) == "ConfigMap"
            && d["metadata"]["labels"]["app.kubernetes.io/component"] == "gateway"
    }) {
        let settings = doc["data"]["config.toml"].as_str().unwrap_or("");
        let routes = toml_section(settings, "routes");
        if routes.is_empty() {
            problems.push(format!("{}: the gateway has no routes", name_of(doc)));
        }
        for (key, url) in routes {
            let host = url
                .trim_start_matches("http://")
                .split(':')
                .next()
                .unwrap_or("");
            if !headless.contains(&host) {
                problems.push(format!(
                    "{}: route {key} goes to {url}, not to a headless Service",
                    name_of(doc)
                ));
            }
        }
    }

    // `helm test` must be able to reach the gateway through the gateway's NetworkPolicy.
    let gateway_policies: Vec<&&Value> = policies
        .iter()
        .filter(|p| {
            p["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "gateway"
        })
        .collect();
    for test in docs
        .iter()
        .filter(|d| kind_of(d) == "Pod" && d["metadata"]["annotations"]["helm.sh/hook"] == "test")
    {
        let labels = &test["metadata"]["labels"];
        for policy in &gateway_policies {
            let admitted = policy["spec"]["ingress"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|rule| match rule["from"].as_array() {
                    None => true,
                    Some(peers) => {
                        peers.is_empty()
                            || peers.iter().any(|peer| {
                                peer.as_object().is_some_and(|p| p.len() == 1)
                                    && selects(&peer["podSelector"]["matchLabels"], labels)
                            })
                    }
                });
            if !admitted {
                problems.push(format!(
                    "{}: keeps the test {} from reaching the gateway",
                    name_of(policy),
                    name_of(test)
                ));
            }
        }
    }

    for doc in docs.iter().filter(|d| kind_of(d) == "Job") {
        let hooks = doc["metadata"]["annotations"]["helm.sh/hook"]
            .as_str()
            .unwrap_or("");
        if !(hooks.contains("pre-install") && hooks.contains("pre-upgrade")) {
            problems.push(format!(
                "{}: not a pre-install and pre-upgrade hook",
                name_of(doc)
            ));
        }
        let command = &doc["spec"]["template"]["spec"]["containers"][0]["command"];
        let last = command
            .as_array()
            .and_then(|c| c.last())
            .and_then(Value::as_str);
        if last != Some("migrate") {
            problems.push(format!("{}: does not run `migrate`", name_of(doc)));
        }
    }
    problems
}

/// The `key = "value"` lines of `[section]` in a TOML text the chart wrote (strings only).
pub fn toml_section(text: &str, section: &str) -> BTreeMap<String, String> {
    let header = format!("[{section}]");
    let mut inside = false;
    let mut entries = BTreeMap::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            inside = line == header;
        } else if inside && let Some((key, value)) = line.split_once('=') {
            entries.insert(
                key.trim().to_owned(),
                value.trim().trim_matches('"').to_owned(),
            );
        }
    }
    entries
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A gateway and a service as the chart renders them, cut down to what [`audit`] reads.
    const GOOD: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: crm-marketing}
spec:
  replicas: 2
  template:
    metadata:
      labels: {app.kubernetes.io/instance: crm, app.kubernetes.io/component: marketing}
    spec:
      automountServiceAccountToken: false
      securityContext: {runAsNonRoot: true, seccompProfile: {type: RuntimeDefault}}
      containers:
        - name: marketing
          ports: [{name: grpc, containerPort: 50061}]
          startupProbe: {grpc: {port: 50061}}
          readinessProbe: {grpc: {port: 50061}}
          livenessProbe: {grpc: {port: 50061}}
          resources:
            requests: {cpu: 100m, memory: 128Mi}
            limits: {cpu: "1", memory: 512Mi}
          securityContext:
            readOnlyRootFilesystem: true
            allowPrivilegeEscalation: false
            capabilities: {drop: [ALL]}
---
apiVersion: v1
kind: Service
metadata: {name: crm-marketing-headless}
spec: {clusterIP: None}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: crm-gateway
  labels: {app.kubernetes.io/component: gateway}
data:
  config.toml: |
    [routes]
    marketing = "http://crm-marketing-headless:50061"

    [server]
    listen_addr = "0.0.0.0:50051"
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: crm-marketing}
spec:
  selector:
    matchLabels: {app.kubernetes.io/instance: crm, app.kubernetes.io/component: marketing}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: crm-marketing}
spec:
  podSelector:
    matchLabels: {app.kubernetes.io/instance: crm, app.kubernetes.io/component: marketing}
  policyTypes: [Ingress, Egress]
  ingress:
    - from: [{podSelector: {matchLabels: {app.kubernetes.io/instance: crm}}}]
      ports: [{port: 50061}]
  egress:
    - ports: [{port: 5432}]
"#;

    fn docs(text: &str) -> Vec<Value> {
        parse_manifests(text).unwrap()
    }

    /// The good manifests with `edit` applied to the document of `kind`.
    fn broken(kind: &str, edit: impl FnOnce(&mut Value)) -> Vec<String> {
        let mut docs = docs(GOOD);
        let doc = docs.iter_mut().find(|d| kind_of(d) == kind).unwrap();
        edit(doc);
        audit(&docs)
    }

    fn container(doc: &mut Value) -> &mut Value {
        &mut doc["spec"]["template"]["spec"]["containers"][0]
    }

    fn assert_found(problems: &[String], what: &str) {
        assert!(
            problems.iter().any(|p| p.contains(what)),
            "expected a problem with {what:?}, got {problems:?}"
        );
    }

    #[test]
    fn manifests_as_the_chart_makes_them_pass() {
        let docs = docs(GOOD);
        assert_eq!(docs.len(), 5);
        assert_eq!(audit(&docs), Vec::<String>::new());
    }

    #[test]
    fn a_weak_security_context_is_found() {
        let problems = broken("Deployment", |d| {
            container(d)["securityContext"]["readOnlyRootFilesystem"] = false.into();
        });
        assert_found(&problems, "root filesystem is writable");
        let problems = broken("Deployment", |d| {
            container(d)["securityContext"]["capabilities"]["add"] =
                serde_json::json!(["NET_ADMIN"]);
        });
        assert_found(&problems, "keeps capabilities");
        let problems = broken("Deployment", |d| {
            d["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] = Value::Null;
        });
        assert_found(&problems, "may run as root");
        let problems = broken("Deployment", |d| {
            d["spec"]["template"]["spec"]["automountServiceAccountToken"] = true.into();
        });
        assert_found(&problems, "service account token");
        let problems = broken("Deployment", |d| {
            container(d)["resources"]["limits"]["memory"] = Value::Null;
        });
        assert_found(&problems, "no memory limits");
    }

    #[test]
    fn missing_or_misdirected_probes_are_found() {
        let problems = broken("Deployment", |d| {
            container(d)["livenessProbe"] = serde_json::json!({"tcpSocket": {"port": 50061}});
        });
        assert_found(&problems, "no native gRPC livenessProbe");
        let problems = broken("Deployment", |d| {
            container(d)["readinessProbe"]["grpc"]["port"] = 50051.into();
        });
        assert_found(&problems, "readinessProbe asks port 50051");
    }

    #[test]
    fn open_network_policies_are_found() {
        let problems = broken("NetworkPolicy", |p| {
            p["spec"]["ingress"][0]["from"] = serde_json::json!([{"namespaceSelector": {}}]);
        });
        assert_found(&problems, "lets more than the release's pods reach");
        let problems = broken("NetworkPolicy", |p| {
            p["spec"]["egress"] = serde_json::json!([{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}]);
        });
        assert_found(&problems, "allows every port");
        let problems = broken("NetworkPolicy", |p| {
            p["spec"]["policyTypes"] = serde_json::json!(["Ingress"]);
        });
        assert_found(&problems, "no NetworkPolicy limits both");
        let problems = broken("NetworkPolicy", |p| {
            p["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] =
                "gateway".into();
        });
        assert_found(&problems, "no NetworkPolicy limits both");
    }

    #[test]
    fn routes_that_bypass_the_headless_service_are_found() {
        let problems = broken("ConfigMap", |c| {
            c["data"]["config.toml"] =
                "[routes]\nmarketing = \"http://crm-marketing:50061\"\n".into();
        });
        assert_found(&problems, "not to a headless Service");
    }

    #[test]
    fn autoscaled_deployments_must_leave_replicas_alone() {
        let mut docs = docs(GOOD);
        docs.extend(parse_manifests(
            "kind: ScaledObject\nmetadata: {name: crm-marketing}\nspec:\n  scaleTargetRef: {name: crm-marketing}\n",
        )
        .unwrap());
        assert_found(
            &audit(&docs),
            "sets replicas although an autoscaler owns them",
        );
        let mut docs = docs.clone();
        docs.extend(parse_manifests(
            "kind: HorizontalPodAutoscaler\nmetadata: {name: x}\nspec:\n  scaleTargetRef: {name: crm-nothing}\n",
        )
        .unwrap());
        assert_found(&audit(&docs), "which is not rendered");
    }

    #[test]
    fn a_migration_job_must_be_a_hook_that_migrates() {
        let job = r#"
kind: Job
metadata:
  name: crm-marketing-migrate
  annotations: {helm.sh/hook: "pre-install"}
spec:
  template:
    spec:
      containers: [{name: migrate, command: [/usr/local/bin/crm-marketing]}]
"#;
        let problems = audit(&docs(job));
        assert_found(&problems, "not a pre-install and pre-upgrade hook");
        assert_found(&problems, "does not run `migrate`");
    }

    #[test]
    fn the_helm_test_must_be_let_through_to_the_gateway() {
        let manifests = r#"
kind: Pod
metadata:
  name: crm-test-gateway-health
  labels: {app.kubernetes.io/instance: crm, app.kubernetes.io/component: test}
  annotations: {helm.sh/hook: test}
spec:
  automountServiceAccountToken: false
  securityContext: {runAsNonRoot: true, seccompProfile: {type: RuntimeDefault}}
  containers: []
---
kind: NetworkPolicy
metadata: {name: crm-test}
spec:
  podSelector:
    matchLabels: {app.kubernetes.io/instance: crm, app.kubernetes.io/component: test}
  policyTypes: [Ingress, Egress]
  egress: [{ports: [{port: 50051}]}]
---
kind: NetworkPolicy
metadata: {name: crm-gateway}
spec:
  podSelector: {matchLabels: {app.kubernetes.io/component: gateway}}
  policyTypes: [Ingress, Egress]
  ingress:
    - from: [{namespaceSelector: {matchLabels: {name: ingress-nginx}}}]
"#;
        let mut docs = docs(manifests);
        assert_found(
            &audit(&docs),
            "keeps the test Pod/crm-test-gateway-health from reaching",
        );
        docs[2]["spec"]["ingress"][0]["from"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({"podSelector": {"matchLabels": {"app.kubernetes.io/instance": "crm"}}}));
        assert_eq!(audit(&docs), Vec::<String>::new());
    }

    #[test]
    fn toml_sections_are_read_line_by_line() {
        let text = "[a]\nx = \"1\"\n\n[routes]\nm = \"http://h:1\"\n[b]\ny = \"2\"\n";
        assert_eq!(
            toml_section(text, "routes"),
            BTreeMap::from([("m".to_owned(), "http://h:1".to_owned())])
        );
    }
}
