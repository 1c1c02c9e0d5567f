//! Drives the real RocketMQ clients and tools that `scripts/peers/` installs: the Java
//! client harness (5.5.0 and 4.9.8), the Go client harness, mqadmin, and the C++ client
//! through Python.
//!
//! Each helper runs the client as a child process and returns the JSON object the client
//! printed on its `RESULT` line, so a test asserts on what the real client saw.

#![allow(dead_code)] // each test binary uses a different part of this module

pub mod deliveries;
pub mod group;
pub mod prometheus;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The Java client versions every client test runs with.
pub const JAVA_CLIENTS: [&str; 2] = ["5.5.0", "4.9.8"];

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The name server of the Apache RocketMQ peer that `scripts/test` starts, if it did.
///
/// Tests that need the peer print `SKIPPED: <reason>` and return when it is absent, so a
/// plain `cargo test` outside `scripts/test` still says what it did not run.
pub fn rocketmq_peer() -> Option<String> {
    match std::env::var("ROCKETRY_PEER_ROCKETMQ_NAMESRV") {
        Ok(addr) if !addr.is_empty() => Some(addr),
        _ => {
            println!("SKIPPED: ROCKETRY_PEER_ROCKETMQ_NAMESRV is not set (run scripts/test, which starts the Apache RocketMQ peer)");
            None
        }
    }
}

/// Runs a command, echoes its output into the test log, and returns its `RESULT` object.
fn run_for_result(mut command: Command) -> Value {
    let output = command.output().expect("failed to spawn a client process");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let result = stdout
        .lines()
        .rev()
        .find_map(|line| line.strip_prefix("RESULT "));
    match result {
        Some(json) if output.status.success() => {
            println!("{command:?}\n  -> {json}");
            // Captured, so shown only when the test fails: the client's last warnings.
            println!("{}", tail(&stderr, 40));
            serde_json::from_str(json).expect("RESULT line is not JSON")
        }
        _ => panic!(
            "{command:?} failed ({}) without a RESULT line\nstdout:\n{stdout}\nstderr (tail):\n{}",
            output.status,
            tail(&stderr, 40)
        ),
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Runs the Java harness (tests/java-harness) with the given client version.
pub fn java_client(version: &str, args: &[String]) -> Value {
    java_client_with_jvm_options(version, args, "")
}

/// [`java_client`] with more JVM options, such as the client's TLS system properties.
pub fn java_client_with_jvm_options(version: &str, args: &[String], options: &str) -> Value {
    let mut command = Command::new(repo_root().join("scripts/peers/java-clients"));
    command
        .arg("run")
        .arg(version)
        .args(args)
        .env("JAVA_CLIENT_OPTS", options);
    run_for_result(command)
}

/// Runs the Go client's harness (tests/go-harness): `produce|consume key=value...`.
pub fn go_client(args: &[String]) -> Value {
    let mut command = Command::new(repo_root().join("scripts/peers/go-clients"));
    command.arg("run").args(args);
    run_for_result(command)
}

/// Runs a Python script under tests/python with the C++-based `rocketmq` 0.4.4 client.
pub fn python_cpp_client(script: &str, args: &[String]) -> Value {
    let mut command = Command::new(repo_root().join("scripts/peers/python-clients"));
    command
        .arg("run")
        .arg("cpp")
        .arg(repo_root().join("tests/python").join(script))
        .args(args);
    run_for_result(command)
}

/// A topic of 8 queues on every broker of `cluster`, made with mqadmin.
pub fn create_topic_in_cluster(namesrv: &str, cluster: &str, topic: &str) {
    mqadmin(&["updateTopic", "-n", namesrv, "-c", cluster, "-t", topic]);
}

/// Runs mqadmin with the given arguments and returns what it printed on stdout.
pub fn mqadmin(args: &[&str]) -> String {
    let output = Command::new(repo_root().join("scripts/peers/rocketmq"))
        .arg("mqadmin")
        .args(args)
        .output()
        .expect("failed to spawn mqadmin");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "mqadmin {args:?} failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// Spawns `command` as the leader of a process group of its own, for [`kill_process_group`].
/// `scripts/peers/java-clients run` runs `java` as its child, so killing the script alone
/// would leave the JVM running after the test.
pub fn spawn_in_own_group(command: &mut Command) -> std::io::Result<std::process::Child> {
    use std::os::unix::process::CommandExt;
    command.process_group(0).spawn()
}

/// SIGKILL to every process of the group `child` leads (see [`spawn_in_own_group`]), then
/// reaps `child`.
pub fn kill_process_group(child: &mut std::process::Child) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", child.id())])
        .status();
    let _ = child.wait();
}

/// mqadmin's stdout without the logback status lines the 5.5.0 tools print there.
///
/// mqadmin exits 0 even when a command fails (it prints the exception and returns), and on
/// two busy cores its 3 s RPC timeout is sometimes hit, so a run that printed nothing
/// useful is tried again, up to three times.
pub fn admin(args: &[&str]) -> String {
    mqadmin_until(args, "failed", |output| {
        let stdout = printed(output);
        (output.status.success() && !stdout.is_empty()).then_some(stdout)
    })
}

/// What mqadmin printed on stdout, without logback's status lines and blank lines.
pub fn printed(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|line| !line.contains("|-INFO in") && !line.contains("|-WARN in"))
        .filter(|line| !line.trim().is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Runs mqadmin up to three times, until `accept` takes what a run printed.
pub fn mqadmin_until<T>(
    args: &[&str],
    otherwise: &str,
    accept: impl Fn(&std::process::Output) -> Option<T>,
) -> T {
    let mut last = String::new();
    for _ in 0..3 {
        let output = Command::new(repo_root().join("scripts/peers/rocketmq"))
            .arg("mqadmin")
            .args(args)
            .output()
            .expect("failed to spawn mqadmin");
        if let Some(accepted) = accept(&output) {
            return accepted;
        }
        last = format!(
            "stdout:\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        println!("mqadmin {args:?} {otherwise}, retrying: {last}");
    }
    panic!("mqadmin {args:?} {otherwise} three times: {last}")
}

/// Rows of a whitespace table whose first cell is `first`.
pub fn rows<'a>(text: &'a str, first: &str) -> Vec<Vec<&'a str>> {
    text.lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .filter(|cells| cells.first() == Some(&first))
        .collect()
}

/// `rocketry admin ... --output json` of this build, parsed.
pub fn rocketry_admin(namesrv: &str, args: &[&str]) -> Value {
    let output = Command::new(env!("CARGO_BIN_EXE_rocketry"))
        .args(["admin", "-n", namesrv, "--output", "json"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "rocketry admin {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// A class of the Java harness (tests/java-harness/src/dev/rocketry/harness) on the 5.5.0
/// client.
pub fn harness_command(main: &str, args: &[String]) -> Command {
    let mut command = Command::new(repo_root().join("scripts/peers/java-clients"));
    command
        .env("HARNESS_MAIN", main)
        .arg("run")
        .arg("5.5.0")
        .args(args);
    command
}

/// The Features harness (Features.java): consumer groups, retries and dead letters, delays,
/// orderly consumption and filters.
pub fn features_command(args: &[String]) -> Command {
    harness_command("Features", args)
}

/// Runs the Features harness to its end and returns its `RESULT` object.
pub fn features(args: Vec<String>) -> Value {
    harness("Features", &args)
}

/// Runs a class of the Java harness to its end and returns its `RESULT` object.
pub fn harness(main: &str, args: &[String]) -> Value {
    let output = harness_command(main, args).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("RESULT "))
        .unwrap_or_else(|| {
            panic!(
                "{main} {args:?} failed: {stdout}\n{}",
                String::from_utf8_lossy(&output.stderr)
            )
        });
    println!("{main} {args:?}\n  -> {line}");
    // Captured, so shown only when the test fails: the client's warnings.
    print!("{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_str(line).unwrap()
}

/// The Features harness's `consume` arguments: deliveries of `run` go to the file `out`.
pub fn consume_args(
    namesrv: &str,
    topic: &str,
    group: &str,
    run: &str,
    out: &std::path::Path,
    extra: &[&str],
) -> Vec<String> {
    let mut args = vec![
        "consume".to_string(),
        format!("namesrv={namesrv}"),
        format!("topic={topic}"),
        format!("group={group}"),
        format!("run={run}"),
        format!("out={}", out.display()),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// A name unique to this test run, so topics and groups never collide across runs.
pub fn unique(prefix: &str) -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}_{}_{}", std::process::id(), nanos % 1_000_000_000)
}

/// Produces `count` messages with the Java client in `mode`, then consumes them with a new
/// group, and checks that every message came back exactly once in queue order.
pub fn java_round_trip(namesrv: &str, version: &str, mode: &str, consumer: &str, count: u64) {
    let topic = unique(&format!("rt_{}_{mode}", version.replace('.', "")));
    let run = unique("run");
    produce(version, namesrv, &topic, mode, 0, count, &run);
    let got = consume(
        version,
        namesrv,
        &topic,
        &unique("cg"),
        consumer,
        count,
        &run,
    );
    assert_exactly(&got, 0, count, &format!("client {version} {consumer}"));
}

/// Sends messages `first..first + count` of `run` with the Java client in `mode`.
pub fn produce(
    version: &str,
    namesrv: &str,
    topic: &str,
    mode: &str,
    first: u64,
    count: u64,
    run: &str,
) {
    let sent = java_client(
        version,
        &[
            "produce".into(),
            format!("namesrv={namesrv}"),
            format!("topic={topic}"),
            format!("count={count}"),
            format!("first={first}"),
            format!("mode={mode}"),
            format!("run={run}"),
        ],
    );
    assert_eq!(sent["sent"], count, "{version} {mode}: {sent}");
    assert_eq!(sent["failed"], 0, "{version} {mode}: {sent}");
}

/// Consumes with a new or existing group until `expect` distinct messages of `run` arrived.
pub fn consume(
    version: &str,
    namesrv: &str,
    topic: &str,
    group: &str,
    kind: &str,
    expect: u64,
    run: &str,
) -> serde_json::Value {
    java_client(
        version,
        &[
            "consume".into(),
            format!("namesrv={namesrv}"),
            format!("topic={topic}"),
            format!("group={group}"),
            format!("type={kind}"),
            format!("expect={expect}"),
            format!("run={run}"),
            "timeoutMs=120000".into(),
        ],
    )
}

/// The indexes a harness wrote to a file (`acked=`, `seen=`), one per line.
pub fn indexes(path: &std::path::Path) -> std::collections::BTreeSet<u64> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|line| line.parse().unwrap())
        .collect()
}

/// Every acknowledged index was consumed (`seen`), and each queue in order; `got` is the
/// consumer's result.
pub fn assert_all_consumed<'a>(
    acked: impl IntoIterator<Item = &'a u64>,
    seen: &std::collections::BTreeSet<u64>,
    got: &Value,
) {
    let lost: Vec<_> = acked
        .into_iter()
        .filter(|index| !seen.contains(index))
        .collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged messages never consumed, first {:?}: {got}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
    assert_eq!(got["outOfOrder"], 0, "{got}");
}

/// A Java 5.5.0 lite-pull consumer of a new group reading `topic` from its first message
/// until it has seen `expect` distinct messages of `run`, or `timeout` passed; the indexes
/// it saw go to `seen`.
pub fn lite_pull_all(
    namesrv: &str,
    topic: &str,
    run: &str,
    expect: usize,
    seen: &std::path::Path,
    timeout: Duration,
) -> Value {
    java_client(
        "5.5.0",
        &[
            "consume".into(),
            format!("namesrv={namesrv}"),
            format!("topic={topic}"),
            format!("group={}", unique("cg")),
            "type=litePull".into(),
            format!("expect={expect}"),
            format!("run={run}"),
            format!("timeoutMs={}", timeout.as_millis()),
            format!("seen={}", seen.display()),
        ],
    )
}

/// Every message index in [first, first + count) exactly once, in queue order.
pub fn assert_exactly(got: &serde_json::Value, first: u64, count: u64, what: &str) {
    assert_eq!(got["unique"], count, "{what}: {got}");
    assert_eq!(got["duplicates"], 0, "{what}: {got}");
    assert_eq!(got["outOfOrder"], 0, "{what}: {got}");
    assert_eq!(got["gaps"], 0, "{what}: {got}");
    assert_eq!(got["minIndex"], first, "{what}: {got}");
    assert_eq!(got["maxIndex"], first + count - 1, "{what}: {got}");
}

/// A backlog made by the real Java 5.5.0 client: `PRODUCED` messages sent to a new topic, of
/// which a new litePull group committed `COMMITTED`, then went offline.
pub struct KnownBacklog {
    pub topic: String,
    pub group: String,
    /// The run id in every message body, which the harnesses' consumers count by.
    pub run: String,
}

impl KnownBacklog {
    pub const PRODUCED: u64 = 1000;
    pub const COMMITTED: u64 = 400;

    pub fn make(namesrv: &str) -> KnownBacklog {
        let backlog = KnownBacklog {
            topic: unique("backlog"),
            group: unique("backlog_cg"),
            run: unique("run"),
        };
        let run = &backlog.run;
        produce(
            "5.5.0",
            namesrv,
            &backlog.topic,
            "sync",
            0,
            Self::PRODUCED,
            run,
        );
        let consumed = java_client(
            "5.5.0",
            &[
                "consume".into(),
                format!("namesrv={namesrv}"),
                format!("topic={}", backlog.topic),
                format!("group={}", backlog.group),
                "type=litePull".into(),
                format!("expect={}", Self::COMMITTED),
                format!("max={}", Self::COMMITTED),
                format!("run={run}"),
                "timeoutMs=120000".into(),
            ],
        );
        assert_eq!(consumed["unique"], Self::COMMITTED, "{consumed}");
        backlog
    }

    /// The labels of its (topic, consumer group) series.
    pub fn series(&self) -> [(&str, &str); 2] {
        [("topic", &self.topic), ("consumer_group", &self.group)]
    }

    /// Scrapes `rocketry` until its lag reads `PRODUCED - COMMITTED`, and returns that scrape.
    pub fn scrape_when_committed(&self, rocketry: &Rocketry) -> String {
        let backlog = (Self::PRODUCED - Self::COMMITTED) as f64;
        rocketry.scrape_until("a lag of 600", |scrape| {
            metric(scrape, "rocketmq_consumer_lag_messages", &self.series()) == Some(backlog)
        })
    }
}

/// The value of the series of `name` carrying every one of `labels` in a scrape.
/// `GET path` from the HTTP server at `addr`: the status code and the body.
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {head}"));
    (status, body.to_string())
}

pub fn metric(scrape: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?.strip_prefix('{')?;
        let (label_text, value) = rest.split_once("} ")?;
        labels
            .iter()
            .all(|(key, value)| label_text.contains(&format!("{key}=\"{value}\"")))
            .then(|| value.trim().parse().ok())?
    })
}

/// Every series of `name` in a scrape.
pub fn series_count(scrape: &str, name: &str) -> usize {
    scrape
        .lines()
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{'))
        })
        .count()
}

/// The file in a process's data folder that its store's fault points are read from.
const FAULTS_FILE: &str = "failpoints";

/// A `rocketry` process of this build, started fresh in its own data folder.
pub struct Rocketry {
    child: Option<std::process::Child>,
    args: Vec<String>,
    /// Extra environment for the process (FAILPOINTS for fault tests); kept for restarts.
    pub env: Vec<(String, String)>,
    pub namesrv: String,
    pub broker_addr: Option<String>,
    /// The HTTP endpoint (health, metrics), `host:port`; each process gets a free port of
    /// its own.
    pub http_addr: String,
    pub data_dir: PathBuf,
    _data: Option<tempfile::TempDir>,
    log: PathBuf,
}

/// A port that was free a moment ago, for a broker or name server this test starts.
///
/// Not one the OS hands out for port 0: those come from the ephemeral range (32768 up on
/// Linux), the same range every outgoing connection takes its local port from, so a Java
/// client of another test could hold it by the time the broker binds it ("Address already
/// in use" in CI). Below that range only a bind naming the port takes it. 21000..29000
/// keeps clear of the peers' fixed ports and of Kubernetes' NodePorts (30000 up).
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 21_000;
    const SPAN: u32 = 8_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    // Each test process starts somewhere else, so consecutive ones do not probe the ports
    // their predecessors' brokers have just released.
    let start = std::process::id() * 7;
    for _ in 0..SPAN {
        let port = (FIRST + (start + NEXT.fetch_add(1, Ordering::Relaxed)) % SPAN) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {FIRST}..{}", FIRST + SPAN);
}

impl Rocketry {
    /// `rocketry standalone` on free ports with `extra_config` (broker.conf lines).
    pub fn standalone(extra_config: &str) -> Rocketry {
        Rocketry::standalone_with_env(extra_config, &[])
    }

    /// As [`Rocketry::standalone`], with extra environment variables.
    ///
    /// A port [`free_port`] found free can be taken before the process binds it (a CI run
    /// once saw "Address already in use" on one); the start is then tried again on others.
    pub fn standalone_with_env(extra_config: &str, env: &[(&str, &str)]) -> Rocketry {
        for _ in 0..2 {
            match Rocketry::try_standalone(extra_config, env) {
                Err(exited) if exited.contains("Address already in use") => {
                    println!("{exited}\ntrying other ports");
                }
                started => return started.unwrap_or_else(|exited| panic!("{exited}")),
            }
        }
        Rocketry::try_standalone(extra_config, env).unwrap_or_else(|exited| panic!("{exited}"))
    }

    fn try_standalone(extra_config: &str, env: &[(&str, &str)]) -> Result<Rocketry, String> {
        let data = tempfile::tempdir().unwrap();
        let data_dir = data.path().to_path_buf();
        let namesrv_port = free_port();
        let broker_port = free_port();
        let metrics_port = free_port();
        let config = data_dir.join("broker.conf");
        // First, so `extra_config` may set it again.
        std::fs::write(
            &config,
            format!("metricsPromExporterPort={metrics_port}\n{extra_config}"),
        )
        .unwrap();
        let mut args = vec![
            "standalone".to_string(),
            "--config".into(),
            config.display().to_string(),
            "--namesrv-port".into(),
            namesrv_port.to_string(),
            "--broker-port".into(),
            broker_port.to_string(),
        ];
        // The flag wins over the file, so give it only when the file names no store.
        if !extra_config.contains("storePathRootDir") {
            args.push("--data-dir".into());
            args.push(data_dir.join("store").display().to_string());
        }
        let mut rocketry = Rocketry {
            child: None,
            args,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            namesrv: format!("127.0.0.1:{namesrv_port}"),
            broker_addr: Some(format!("127.0.0.1:{broker_port}")),
            http_addr: format!("127.0.0.1:{metrics_port}"),
            log: data_dir.join("rocketry.log"),
            data_dir,
            _data: Some(data),
        };
        rocketry.try_start("Rocketry standalone is ready")?;
        Ok(rocketry)
    }

    /// `rocketry namesrv` on a free port.
    pub fn namesrv() -> Rocketry {
        Rocketry::namesrv_on(free_port())
    }

    /// `rocketry namesrv` on `port`, one a broker was told of before it listened.
    pub fn namesrv_on(port: u16) -> Rocketry {
        let data = tempfile::tempdir().unwrap();
        let metrics_port = free_port();
        let config = data.path().join("namesrv.conf");
        std::fs::write(
            &config,
            format!(
                "listenPort={port}\nbindAddress=127.0.0.1\nmetricsPromExporterPort={metrics_port}\n"
            ),
        )
        .unwrap();
        let mut rocketry = Rocketry {
            child: None,
            args: vec!["namesrv".into(), "-c".into(), config.display().to_string()],
            env: Vec::new(),
            namesrv: format!("127.0.0.1:{port}"),
            broker_addr: None,
            http_addr: format!("127.0.0.1:{metrics_port}"),
            log: data.path().join("namesrv.log"),
            data_dir: data.path().to_path_buf(),
            _data: Some(data),
        };
        rocketry.start("name server ready");
        rocketry
    }

    /// `rocketry broker` named `broker_name`, registering with `namesrv`.
    pub fn broker(namesrv: &str, broker_name: &str) -> Rocketry {
        Rocketry::broker_with_config(namesrv, broker_name, "")
    }

    /// As [`Rocketry::broker`], with `extra_config` (broker.conf lines) after its own.
    pub fn broker_with_config(namesrv: &str, broker_name: &str, extra_config: &str) -> Rocketry {
        let mut rocketry = Rocketry::broker_unstarted(namesrv, broker_name, extra_config);
        rocketry.start("broker ready");
        rocketry
    }

    /// As [`Rocketry::broker_with_config`], not started: set `env`, then
    /// [`Rocketry::start`] it.
    pub fn broker_unstarted(namesrv: &str, broker_name: &str, extra_config: &str) -> Rocketry {
        let data = tempfile::tempdir().unwrap();
        let port = free_port();
        let metrics_port = free_port();
        let config = data.path().join("broker.conf");
        std::fs::write(
            &config,
            format!(
                "brokerClusterName=TestCluster\nbrokerName={broker_name}\nnamesrvAddr={namesrv}\n\
                 listenPort={port}\nbindAddress=127.0.0.1\nbrokerIP1=127.0.0.1\n\
                 metricsPromExporterPort={metrics_port}\n\
                 storePathRootDir={}\nmappedFileSizeCommitLog=67108864\n{extra_config}",
                data.path().join("store").display()
            ),
        )
        .unwrap();
        Rocketry {
            child: None,
            args: vec!["broker".into(), "-c".into(), config.display().to_string()],
            env: Vec::new(),
            namesrv: namesrv.to_string(),
            broker_addr: Some(format!("127.0.0.1:{port}")),
            http_addr: format!("127.0.0.1:{metrics_port}"),
            log: data.path().join("broker.log"),
            data_dir: data.path().to_path_buf(),
            _data: Some(data),
        }
    }

    /// This build's `rocketry` with this process's arguments and environment.
    fn command(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_rocketry"));
        command
            .args(&self.args)
            .env("FAILPOINTS_FILE", self.data_dir.join(FAULTS_FILE))
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        command
    }

    /// Sets the running process's store fault points (`name=action;...`, the `fail` crate's
    /// syntax; empty clears them). Test builds read the file `FAILPOINTS_FILE` names every
    /// 100 ms; it is replaced whole, so never read half written.
    pub fn set_faults(&self, spec: &str) {
        let staged = self.data_dir.join(format!("{FAULTS_FILE}.new"));
        std::fs::write(&staged, spec).unwrap();
        std::fs::rename(&staged, self.data_dir.join(FAULTS_FILE)).unwrap();
    }

    /// The log, opened for appending (a restart appends to the same log).
    fn open_log(&self) -> std::fs::File {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap()
    }

    /// Starts the process and waits until its stdout or log says `ready`.
    pub fn start(&mut self, ready: &str) {
        if let Err(exited) = self.try_start(ready) {
            panic!("{exited}");
        }
    }

    /// [`Rocketry::start`], returning why when the process exits before it is ready.
    fn try_start(&mut self, ready: &str) -> Result<(), String> {
        use std::io::{BufRead, BufReader};
        // Only what this start writes counts: a restart appends to the same log.
        let logged_before = std::fs::metadata(&self.log)
            .map(|m| m.len() as usize)
            .unwrap_or(0);
        let log = self.open_log();
        let mut child = self
            .command()
            .env(
                "RUST_LOG",
                std::env::var("ROCKETRY_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(std::process::Stdio::piped())
            .stderr(log.try_clone().unwrap())
            .spawn()
            .expect("cannot start rocketry");
        // The ready line is on stdout for standalone and in the log for the others; read
        // stdout to its ready line, or poll the log.
        let stdout = child.stdout.take().unwrap();
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = sender.send(line);
            }
        });
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            while let Ok(line) = receiver.try_recv() {
                println!("rocketry: {line}");
                if line.contains(ready) {
                    self.child = Some(child);
                    return Ok(());
                }
            }
            let logged = self.log_text();
            if logged.get(logged_before..).unwrap_or("").contains(ready) {
                self.child = Some(child);
                return Ok(());
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!(
                    "rocketry exited ({status}) before ready:\n{}",
                    self.log_text()
                ));
            }
            assert!(
                std::time::Instant::now() < deadline,
                "rocketry not ready in 30 s:\n{}",
                self.log_text()
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// `GET path` from the HTTP endpoint: the status code and the body.
    pub fn http_get(&self, path: &str) -> (u16, String) {
        http_get(&self.http_addr, path)
    }

    /// `GET /metrics`: the Prometheus text exposition.
    pub fn scrape(&self) -> String {
        let (status, body) = self.http_get("/metrics");
        assert_eq!(status, 200, "{body}");
        body
    }

    /// Scrapes until `ready` accepts the scrape. Offsets reach the broker when a client
    /// persists them, not when it returns; 60 s is far past any client's persist interval.
    pub fn scrape_until(&self, what: &str, ready: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let scrape = self.scrape();
            if ready(&scrape) {
                return scrape;
            }
            assert!(Instant::now() < deadline, "never {what}:\n{scrape}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Started and not killed or terminated since.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// SIGTERM, and the exit status it ended with.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        child.wait().unwrap()
    }

    /// SIGKILL: a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the same process again and expects it to refuse to start: returns its exit
    /// status and what this start logged.
    pub fn start_expecting_exit(&mut self) -> (std::process::ExitStatus, String) {
        assert!(self.child.is_none(), "still running");
        let logged_before = self.log_text().len();
        let log = self.open_log();
        let mut child = self
            .command()
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("cannot start rocketry");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("rocketry kept running:\n{}", self.log_text());
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        };
        (status, self.log_text()[logged_before..].to_string())
    }

    /// The process's resident memory in KiB (VmRSS).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/<pid>/status")
    }

    /// Starts the same process again on the same ports and data.
    pub fn restart(&mut self) {
        let ready = match self.args[0].as_str() {
            "standalone" => "Rocketry standalone is ready",
            "namesrv" => "name server ready",
            _ => "broker ready",
        };
        self.start(ready);
    }
}

impl Drop for Rocketry {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("--- rocketry log ---\n{}", self.log_text());
        }
    }
}

/// Creates `topic` with `queues` read and write queues on the broker `client` talks to, as an
/// admin would (UPDATE_AND_CREATE_TOPIC).
pub async fn create_topic_on(client: &protocol::Client, topic: &str, queues: i32) {
    client
        .create_topic(&protocol::header::CreateTopicRequestHeader::read_write(
            topic, queues,
        ))
        .await
        .unwrap();
}
