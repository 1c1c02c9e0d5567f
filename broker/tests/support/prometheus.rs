//! The Prometheus peer (`scripts/peers/prometheus`) and the chart's monitoring manifests,
//! rendered by the Kubernetes peer's helm.
//!
//! Neither peer is started by these helpers: promtool and Prometheus run as children of the
//! test, each Prometheus on a free port with its own data folder, so tests run side by side.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{free_port, repo_root};

/// The Kubernetes version the chart is rendered for (the Kubernetes peer's).
const KUBE_VERSION: &str = "v1.37.2";

/// The folder of a peer's binaries when every one of `binaries` is built, else `None` after
/// saying `SKIPPED`: a plain `cargo test` must not start a Go build of many minutes.
fn installed_peer(peer: &str, binaries: &[&str]) -> Option<PathBuf> {
    let output = Command::new(repo_root().join("scripts/peers").join(peer))
        .arg("bin")
        .output()
        .expect("runs a peer script");
    let bin = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    if output.status.success() && binaries.iter().all(|binary| bin.join(binary).is_file()) {
        return Some(bin);
    }
    println!("SKIPPED: the {peer} peer is not installed (scripts/peers/{peer} install, which scripts/test runs)");
    None
}

/// promtool and the Prometheus server of the peer.
pub struct PrometheusPeer {
    bin: PathBuf,
}

impl PrometheusPeer {
    pub fn installed() -> Option<PrometheusPeer> {
        let bin = installed_peer("prometheus", &["prometheus", "promtool"])?;
        Some(PrometheusPeer { bin })
    }

    /// Runs promtool with `stdin` as its input and echoes what it printed into the test log.
    pub fn promtool(&self, args: &[&str], stdin: &str, working_dir: &Path) -> Output {
        use std::io::Write;
        let mut child = Command::new(self.bin.join("promtool"))
            .args(args)
            .current_dir(working_dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("runs promtool");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let output = child.wait_with_output().unwrap();
        println!(
            "promtool {}: {}\n{}{}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    /// A Prometheus server evaluating `rules` every second and scraping `targets` every second
    /// as job `rocketry` (the chart's default `monitoring.job`).
    pub fn start(&self, rules: &str, targets: &[&str]) -> Prometheus {
        let data = tempfile::tempdir().unwrap();
        std::fs::write(data.path().join("rules.yaml"), rules).unwrap();
        let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        let config = data.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 rule_files: [rules.yaml]\n\
                 scrape_configs:\n  - job_name: rocketry\n    static_configs:\n      - targets: [{}]\n",
                targets.join(", ")
            ),
        )
        .unwrap();
        let address = format!("127.0.0.1:{}", free_port());
        let log = std::fs::File::create(data.path().join("prometheus.log")).unwrap();
        let child = Command::new(self.bin.join("prometheus"))
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                data.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={address}"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starts prometheus");
        let prometheus = Prometheus {
            child,
            address,
            data,
        };
        prometheus.wait_until("ready", Duration::from_secs(30), || {
            (prometheus.get("/-/ready", &[]).0 == 200).then_some(())
        });
        prometheus
    }
}

/// A running Prometheus server, stopped on drop.
pub struct Prometheus {
    child: Child,
    address: String,
    data: tempfile::TempDir,
}

impl Prometheus {
    /// `GET path` with URL-encoded `params`: the HTTP status and the body (Prometheus answers
    /// a query it cannot parse with a 400 and a JSON body saying why).
    fn get(&self, path: &str, params: &[(&str, &str)]) -> (u16, String) {
        let mut command = Command::new("curl");
        command
            .args([
                "-sS",
                "--max-time",
                "10",
                "--get",
                "--write-out",
                "\n%{http_code}",
            ])
            .arg(format!("http://{}{path}", self.address));
        for (key, value) in params {
            command
                .arg("--data-urlencode")
                .arg(format!("{key}={value}"));
        }
        let output = String::from_utf8(command.output().expect("runs curl").stdout).unwrap();
        let (body, status) = output.rsplit_once('\n').unwrap_or(("", &output));
        (status.trim().parse().unwrap_or(0), body.to_string())
    }

    /// An API call's JSON answer, whose `status` is `success` or `error`.
    pub fn api(&self, path: &str, params: &[(&str, &str)]) -> Value {
        let (status, body) = self.get(path, params);
        serde_json::from_str(&body).unwrap_or_else(|error| {
            panic!("{path} {params:?}: {status} and no JSON ({error}): {body}")
        })
    }

    /// Polls `check` until it returns something, failing with the server's log after `limit`.
    pub fn wait_until<T>(&self, what: &str, limit: Duration, check: impl Fn() -> Option<T>) -> T {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(value) = check() {
                return value;
            }
            assert!(
                Instant::now() < deadline,
                "prometheus: never {what}; its log:\n{}",
                std::fs::read_to_string(self.data.path().join("prometheus.log"))
                    .unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `helm template` of the chart with `args`, or `None` (after `SKIPPED`) without helm.
pub fn helm_template(args: &[&str]) -> Option<String> {
    installed_peer("kubernetes", &["helm"])?;
    let output = Command::new(repo_root().join("scripts/peers/kubernetes"))
        .args(["helm", "template", "rocketry", "charts/rocketry"])
        .args([
            "--namespace",
            "rocketry-system",
            "--kube-version",
            KUBE_VERSION,
        ])
        .args(args)
        .current_dir(repo_root())
        .output()
        .expect("runs scripts/peers/kubernetes helm");
    assert!(
        output.status.success(),
        "helm template {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Some(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The rule file inside the chart's PrometheusRule rendered with the values files `values`
/// (relative to the repository): the PrometheusRule's `spec`, which is one by design.
pub fn chart_rules(values: &[&str]) -> Option<String> {
    let mut args = vec!["--show-only", "templates/prometheusrule.yaml"];
    for file in values {
        args.extend(["--values", file]);
    }
    let rendered = helm_template(&args)?;
    let (_, spec) = rendered
        .split_once("\nspec:\n")
        .expect("the PrometheusRule has a spec");
    Some(
        spec.lines()
            .map(|line| line.strip_prefix("  ").unwrap_or(line))
            .collect::<Vec<_>>()
            .join("\n"),
    )
}

/// The alert names of a rule file.
pub fn alert_names(rules: &str) -> Vec<String> {
    rules
        .lines()
        .filter_map(|line| line.trim().strip_prefix("- alert: "))
        .map(str::to_string)
        .collect()
}
