//! Three replicas of one group in this process, over real TCP on localhost: openraft with
//! Rocketry's storage (broker::replication) and transport. A leader is elected and commits
//! entries on all three; with the leader stopped, the other two elect a new one and go on
//! committing; the old leader, restarted from its files, catches up; every replica then holds
//! the same log. (Processes, SIGKILL and real clients are issue 16's next step.)

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use broker::replication::{serve, Batch, LogStore, Network, Raft, StateMachine};
use openraft::async_runtime::WatchReceiver;
use openraft::storage::RaftLogReader;
use openraft::{BasicNode, Config, ServerState};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

const SEGMENT_BYTES: u64 = 64 * 1024;
const WAIT: Option<Duration> = Some(Duration::from_secs(20));

struct Replica {
    raft: Raft,
    log: LogStore,
    stop: CancellationToken,
}

async fn start(id: u64, dir: &Path, listener: TcpListener) -> Replica {
    let config = Config {
        cluster_name: "broker-a".into(),
        ..Default::default()
    };
    let raft_dir = dir.join(format!("n{id}")).join("raft");
    let log = LogStore::open(&raft_dir, SEGMENT_BYTES).unwrap();
    let state_machine = StateMachine::open(&raft_dir).unwrap();
    let raft = Raft::new(
        id,
        Arc::new(config.validate().unwrap()),
        Network,
        log.clone(),
        state_machine,
    )
    .await
    .unwrap();
    let stop = CancellationToken::new();
    tokio::spawn(serve(listener, raft.clone(), stop.clone()));
    Replica { raft, log, stop }
}

impl Replica {
    async fn stop(self) {
        self.stop.cancel();
        self.raft.shutdown().await.unwrap();
    }
}

async fn leader(replicas: &BTreeMap<u64, Replica>) -> u64 {
    let (_, any) = replicas.iter().next().unwrap();
    let metrics = any
        .raft
        .wait(WAIT)
        .metrics(
            |m| {
                m.current_leader
                    .is_some_and(|leader| replicas.contains_key(&leader))
            },
            "a leader among the running replicas",
        )
        .await
        .unwrap();
    let leader = metrics.current_leader.unwrap();
    // A new leader takes writes once a quorum has acknowledged it (its lease).
    replicas[&leader]
        .raft
        .wait(WAIT)
        .metrics(
            |m| m.state == ServerState::Leader && m.last_quorum_acked.is_some(),
            "the leader holds its lease",
        )
        .await
        .unwrap();
    leader
}

/// Writes `count` batches through the leader; each returns once a quorum holds it.
async fn write(leader: &Raft, first: u64, count: u64) {
    for n in first..first + count {
        leader
            .client_write(Batch {
                start: n * 4096,
                len: 4096,
                crc: n as u32,
            })
            .await
            .unwrap();
    }
}

/// Waits until every replica applied the leader's last entry, then checks their logs match.
async fn assert_same_logs(replicas: &mut BTreeMap<u64, Replica>, leader: u64) {
    let last = replicas[&leader]
        .raft
        .metrics()
        .borrow_watched()
        .last_log_index;
    for replica in replicas.values() {
        replica
            .raft
            .wait(WAIT)
            .applied_index_at_least(last, "caught up with the leader")
            .await
            .unwrap();
    }
    let mut logs = Vec::new();
    for (id, replica) in replicas.iter_mut() {
        let entries = replica.log.try_get_log_entries(0..).await.unwrap();
        logs.push((*id, entries));
    }
    let (first_id, first) = &logs[0];
    assert_eq!(first.last().map(|e| e.log_id.index), last);
    for (id, log) in &logs[1..] {
        assert_eq!(
            log, first,
            "replica {id}'s log differs from replica {first_id}'s"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_of_three_commits_elects_a_new_leader_and_catches_the_old_one_up() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            "openraft=warn,broker=debug",
        ))
        .with_test_writer()
        .try_init();
    let dir = tempfile::tempdir().unwrap();
    let mut listeners = Vec::new();
    for _ in 0..3 {
        listeners.push(TcpListener::bind("127.0.0.1:0").await.unwrap());
    }
    let addrs: Vec<String> = listeners
        .iter()
        .map(|l| l.local_addr().unwrap().to_string())
        .collect();
    let mut replicas = BTreeMap::new();
    for (id, listener) in listeners.into_iter().enumerate() {
        replicas.insert(id as u64, start(id as u64, dir.path(), listener).await);
    }
    let members: BTreeMap<u64, BasicNode> = addrs
        .iter()
        .enumerate()
        .map(|(id, addr)| (id as u64, BasicNode::new(addr)))
        .collect();
    replicas[&0].raft.initialize(members).await.unwrap();

    let first_leader = leader(&replicas).await;
    write(&replicas[&first_leader].raft, 0, 200).await;
    assert_same_logs(&mut replicas, first_leader).await;

    // The leader stops; the other two elect one of themselves and commit without it.
    let stopped = Instant::now();
    replicas.remove(&first_leader).unwrap().stop().await;
    let second_leader = leader(&replicas).await;
    println!(
        "replica {second_leader} leads {:?} after replica {first_leader} stopped",
        stopped.elapsed()
    );
    assert_ne!(second_leader, first_leader);
    write(&replicas[&second_leader].raft, 200, 100).await;

    // The old leader comes back from its files on its own address and catches up.
    let listener = TcpListener::bind(&addrs[first_leader as usize])
        .await
        .unwrap();
    let restarted = start(first_leader, dir.path(), listener).await;
    replicas.insert(first_leader, restarted);
    write(&replicas[&second_leader].raft, 300, 10).await;
    assert_same_logs(&mut replicas, second_leader).await;
    let applied = replicas[&first_leader]
        .raft
        .metrics()
        .borrow_watched()
        .last_applied;
    println!("replica {first_leader} restarted and applied up to {applied:?}");

    for (_, replica) in std::mem::take(&mut replicas) {
        replica.stop().await;
    }
}
