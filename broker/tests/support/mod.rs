//! Drives the real RocketMQ clients and tools that `scripts/peers/` installs: the Java
//! client harness (5.5.0 and 4.9.8), mqadmin, and the C++ client through Python.
//!
//! Each helper runs the client as a child process and returns the JSON object the client
//! printed on its `RESULT` line, so a test asserts on what the real client saw.

#![allow(dead_code)] // each test binary uses a different part of this module

use std::path::PathBuf;
use std::process::Command;

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
    let mut command = Command::new(repo_root().join("scripts/peers/java-clients"));
    command.arg("run").arg(version).args(args);
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
    let sent = java_client(
        version,
        &[
            "produce".into(),
            format!("namesrv={namesrv}"),
            format!("topic={topic}"),
            format!("count={count}"),
            format!("mode={mode}"),
            format!("run={run}"),
        ],
    );
    assert_eq!(sent["sent"], count, "client {version} {mode}: {sent}");
    assert_eq!(sent["failed"], 0, "client {version} {mode}: {sent}");
    let got = java_client(
        version,
        &[
            "consume".into(),
            format!("namesrv={namesrv}"),
            format!("topic={topic}"),
            format!("group={}", unique("cg")),
            format!("type={consumer}"),
            format!("expect={count}"),
            format!("run={run}"),
        ],
    );
    assert_eq!(got["unique"], count, "client {version} {consumer}: {got}");
    assert_eq!(got["duplicates"], 0, "client {version} {consumer}: {got}");
    assert_eq!(got["outOfOrder"], 0, "client {version} {consumer}: {got}");
    assert_eq!(got["gaps"], 0, "client {version} {consumer}: {got}");
}
