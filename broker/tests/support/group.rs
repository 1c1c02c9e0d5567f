//! A Raft-replicated broker group on localhost (DLedger mode, docs/replication.md), and what
//! its tests read of it: which replica the name server lists as master, what the real Java
//! producer saw acknowledged and by whom, each replica's CommitLog bytes and counts.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use super::*;

pub const GROUP: &str = "broker-dl";

/// How long a consumer reading everything back may take.
pub const CONSUME_WAIT: Duration = Duration::from_secs(120);

/// Three replicas of one group, started in order (n0 sets up the group's membership).
pub fn start_group(namesrv: &str, extra: &str) -> Vec<Rocketry> {
    let raft_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    start_replicas(namesrv, extra, &raft_ports, "127.0.0.1")
}

/// Replicas of one group, one per Raft port, whose peers reach each other at
/// `peer_host:port` (each listens on its `bindAddress` and port), started in order.
pub fn start_replicas(
    namesrv: &str,
    extra: &str,
    raft_ports: &[u16],
    peer_host: &str,
) -> Vec<Rocketry> {
    let addrs = addrs_on(raft_ports, peer_host);
    start_replicas_reaching(namesrv, extra, &vec![addrs; raft_ports.len()])
}

/// Replicas of one group, started in order, where replica `i`'s `dLegerPeers` is
/// `peers[i]`: its own entry gives the port it listens on (on its `bindAddress`), the
/// others where it reaches each peer, which may be a way of its own (a proxy per link).
pub fn start_replicas_reaching(namesrv: &str, extra: &str, peers: &[Vec<String>]) -> Vec<Rocketry> {
    (0..peers.len())
        .map(|id| {
            let config = dledger_keys_of(&peers[id], id);
            let mut replica =
                Rocketry::broker_unstarted(namesrv, GROUP, &format!("{config}{extra}"));
            replica.start("broker ready");
            replica
        })
        .collect()
}

/// The DLedger keys of replica `id` of a group whose replicas' Raft ports are `raft_ports`
/// on `peer_host`.
pub fn dledger_keys(raft_ports: &[u16], peer_host: &str, id: usize) -> String {
    dledger_keys_of(&addrs_on(raft_ports, peer_host), id)
}

/// `peer_host:port` for each of `raft_ports`.
fn addrs_on(raft_ports: &[u16], peer_host: &str) -> Vec<String> {
    raft_ports
        .iter()
        .map(|port| format!("{peer_host}:{port}"))
        .collect()
}

/// The DLedger keys of replica `id` that reaches replica `n` at `addrs[n]`.
fn dledger_keys_of(addrs: &[String], id: usize) -> String {
    let peers: Vec<String> = addrs
        .iter()
        .enumerate()
        .map(|(n, addr)| format!("n{n}-{addr}"))
        .collect();
    format!(
        "enableDLegerCommitLog=true\ndLegerPeers={}\ndLegerSelfId=n{id}\n",
        peers.join(";")
    )
}

/// The replica the name server lists as the group's master (brokerId 0), once it is one of
/// `running`.
pub fn master(runtime: &tokio::runtime::Runtime, namesrv: &str, replicas: &[Rocketry]) -> usize {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let listed = runtime.block_on(async {
            let client = protocol::Client::connect(namesrv).await.ok()?;
            let info = client.get_cluster_info().await.ok()?;
            info.broker_addr_table
                .get(GROUP)?
                .broker_addrs
                .get(&0)
                .cloned()
        });
        if let Some(addr) = listed {
            if let Some(index) = replicas
                .iter()
                .position(|r| r.is_running() && r.broker_addr.as_deref() == Some(&addr))
            {
                return index;
            }
        }
        if Instant::now() >= deadline {
            let tails: Vec<String> = replicas
                .iter()
                .enumerate()
                .map(|(id, replica)| {
                    let log = replica.log_text();
                    let lines: Vec<&str> = log.lines().collect();
                    format!(
                        "n{id}:\n{}",
                        lines[lines.len().saturating_sub(40)..].join("\n")
                    )
                })
                .collect();
            panic!("no master registered in 30 s\n{}", tails.join("\n"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Creates `topic` on the master only, as an admin would, and waits until every replica
/// serves it: followers copy the master's topics every 3 s, and a master lost before that
/// takes the topic with it (docs/replication.md).
pub fn create_topic_copied(
    runtime: &tokio::runtime::Runtime,
    replicas: &[Rocketry],
    master: usize,
    topic: &str,
    queues: i32,
) {
    create_topic(runtime, &replicas[master], topic, queues);
    let deadline = Instant::now() + Duration::from_secs(30);
    for replica in replicas {
        let addr = replica.broker_addr.clone().unwrap();
        while !runtime.block_on(async {
            let Ok(client) = protocol::Client::connect(addr.as_str()).await else {
                return false;
            };
            client
                .get_all_topic_config()
                .await
                .is_ok_and(|all| all.topic_config_table.contains_key(topic))
        }) {
            assert!(Instant::now() < deadline, "{addr} never copied {topic}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// Creates `topic` on one replica only, as an admin would on the master.
pub fn create_topic(
    runtime: &tokio::runtime::Runtime,
    replica: &Rocketry,
    topic: &str,
    queues: i32,
) {
    runtime.block_on(async {
        let client = protocol::Client::connect(replica.broker_addr.as_deref().unwrap())
            .await
            .unwrap();
        create_topic_on(&client, topic, queues).await;
    });
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// When a send was acknowledged, and by which broker.
pub struct Ack {
    pub at: u64,
    /// `ip:port`, from the offset message id (its first 16 hex digits: IPv4 and port).
    pub broker: String,
}

/// `index millis offsetMsgId` lines.
pub fn acknowledgements(path: &Path) -> BTreeMap<u64, Ack> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let hex =
                |range: std::ops::Range<usize>| u32::from_str_radix(&fields[2][range], 16).unwrap();
            let ip = std::net::Ipv4Addr::from(hex(0..8));
            let ack = Ack {
                at: fields[1].parse().unwrap(),
                broker: format!("{ip}:{}", hex(8..16)),
            };
            (fields[0].parse().unwrap(), ack)
        })
        .collect()
}

pub fn commit_log(replica: &Rocketry) -> Vec<u8> {
    let dir = replica.data_dir.join("store/commitlog");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    files
        .iter()
        .flat_map(|file| std::fs::read(file).unwrap())
        .collect()
}

/// The nearest-rank percentile.
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

pub fn from_env(name: &str, default: u64) -> u64 {
    std::env::var(name).map_or(default, |value| value.parse().unwrap())
}

/// How a producer looks its routes up: every second, so that it finds a new master soon
/// after it registers, or as the Java client does by default, every 30 s.
#[derive(Clone, Copy, PartialEq)]
pub enum Routes {
    EverySecond,
    ClientDefault,
}

/// A Java producer of indexes `first..first + count` in `mode`, on its own thread; its
/// acknowledgements go to `acked`.
pub fn producer(
    namesrv: &str,
    topic: &str,
    run: &str,
    (mode, routes): (&str, Routes),
    first: u64,
    count: u64,
    acked: &Path,
) -> std::thread::JoinHandle<serde_json::Value> {
    let mut args = vec![
        "produce".to_string(),
        format!("namesrv={namesrv}"),
        format!("topic={topic}"),
        format!("count={count}"),
        format!("first={first}"),
        format!("mode={mode}"),
        "batch=16".into(),
        format!("group={}", unique("pg")),
        format!("run={run}"),
        format!("ackedAt={}", acked.display()),
    ];
    if routes == Routes::EverySecond {
        args.extend([
            "pollNameServerMs=1000".into(),
            "pauseAfterFailureMs=100".into(),
        ]);
    }
    std::thread::spawn(move || java_client("5.5.0", &args))
}

/// A count of a replica's runtime info (mqadmin brokerStatus): `msgGetTotalTodayNow`, the
/// messages its pulls returned, or `msgPutTotalTodayNow`, the messages it stored.
pub fn runtime_info(runtime: &tokio::runtime::Runtime, replica: &Rocketry, count: &str) -> u64 {
    let addr = replica.broker_addr.clone().unwrap();
    runtime.block_on(async move {
        let client = protocol::Client::connect(addr.as_str()).await.unwrap();
        let info = client.get_broker_runtime_info().await.unwrap();
        info.table[count].parse().unwrap()
    })
}

/// Joins a producer and reads what it saw acknowledged (as many as it says it sent).
pub fn acknowledged(
    producer: std::thread::JoinHandle<Value>,
    acked: &Path,
) -> (Value, BTreeMap<u64, Ack>) {
    let result = producer.join().unwrap();
    let acks = acknowledgements(acked);
    assert_eq!(
        acks.len() as u64,
        result["sent"].as_u64().unwrap(),
        "{result}"
    );
    (result, acks)
}

/// Waits until every replica's CommitLog ends where the master's does, and returns that end.
pub fn caught_up(runtime: &tokio::runtime::Runtime, namesrv: &str, replicas: &[Rocketry]) -> u64 {
    let end = |replica: &Rocketry| runtime_info(runtime, replica, "commitLogMaxOffset");
    let leader = master(runtime, namesrv, replicas);
    let deadline = Instant::now() + Duration::from_secs(60);
    while replicas.iter().any(|r| end(r) != end(&replicas[leader])) {
        assert!(Instant::now() < deadline, "the replicas never caught up");
        std::thread::sleep(Duration::from_millis(200));
    }
    end(&replicas[leader])
}

/// Stops every replica cleanly (none panicked) and checks their CommitLogs are
/// byte-identical.
pub fn stop_and_compare(replicas: &mut [Rocketry]) {
    for replica in replicas.iter_mut() {
        let status = replica.terminate();
        assert!(status.success(), "{status}\n{}", replica.log_text());
        assert!(!replica.log_text().contains("panicked"));
    }
    let logs: Vec<Vec<u8>> = replicas.iter().map(commit_log).collect();
    assert!(
        logs.iter().all(|log| *log == logs[0]),
        "the CommitLogs differ"
    );
}

/// A lite-pull consumer reads the group's `topic` until it has as many messages of `run` as
/// were acknowledged (its deliveries go to a file in `dir`); every acknowledged one must be
/// consumed, each queue in order. Returns the indexes seen and the consumer's result.
pub fn consume_acknowledged(
    namesrv: &str,
    topic: &str,
    run: &str,
    acked: &BTreeMap<u64, Ack>,
    dir: &Path,
) -> (BTreeSet<u64>, Value) {
    let seen_file = dir.join("seen");
    let got = lite_pull_all(namesrv, topic, run, acked.len(), &seen_file, CONSUME_WAIT);
    let seen = indexes(&seen_file);
    assert_all_consumed(acked.keys(), &seen, &got);
    (seen, got)
}
