//! Power losses of a Raft-replicated group: three replicas in this process (each on its own
//! runtime, over real TCP on localhost, as raft_group.rs runs them), their stores under the
//! crash simulation's disk (`store::durability`, the `failpoints` feature: each file keeps
//! what a flush made durable, plus a random subset of the pages written since, some torn).
//! SIGKILL (chaos.rs) keeps the page cache; a power loss does not, and a replica's CommitLog,
//! Raft log and applied entry each lose a different tail.
//!
//! Each seed runs a workload of message batches through the leader, with batches in flight
//! when the power goes: under SYNC_FLUSH at a follower, at the leader or at the whole group;
//! under ASYNC_FLUSH at a follower (what that mode promises to survive, docs/replication.md).
//! After each loss every replica must start again from what its disk kept, and the group
//! elect a leader and commit. At the end, once all have caught up:
//! - every acknowledged message is at its CommitLog offset, with its bytes, on every
//!   replica;
//! - the replicas' CommitLogs are byte-identical, every record in them is whole and is one
//!   the workload sent, and every queue ends at the same offset on every replica.
//!
//! The seed chooses the workload, the moments (counted in batches) and the victims, and the
//! pages each loss keeps; the threads' timing is real, so a seed replays its choices, not
//! its interleavings. `cargo test -p broker --test raft_power_loss` sweeps POWER_SEEDS seeds
//! (6) from POWER_FIRST_SEED (1); `POWER_SEED=n` runs one with its steps printed.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use broker::replication::Replica;
use message::{Message, StoredMessage};
use openraft::async_runtime::WatchReceiver;
use openraft::{Instant as _, ServerState};
use store::{durability, FlushDiskType, PutMessage, StoreConfig};
use tokio::runtime::Runtime;

const TOPIC: &str = "power";
const QUEUES: u64 = 4;
/// How long the group may take to elect a leader, commit or catch up after a loss.
const SETTLE: Duration = Duration::from_secs(30);

/// SplitMix64, so a seed's choices are the same on any machine.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) % n
    }
}

/// A replica and the runtime its Raft, transport and leader writes run on: the power loss
/// stops the store, then the runtime, so nothing of the replica writes again.
struct Node {
    runtime: Runtime,
    replica: Replica,
}

/// An acknowledged message: where it is and what it holds.
struct Acked {
    offset: u64,
    body: Vec<u8>,
}

#[derive(Default)]
struct Totals {
    seeds: u64,
    batches: u64,
    acknowledged: u64,
    follower_losses: u64,
    leader_losses: u64,
    group_losses: u64,
    lost_pages: u64,
    torn_pages: u64,
}

struct Group {
    seed: u64,
    verbose: bool,
    rng: Rng,
    flush: FlushDiskType,
    /// Before `dir`: a failed seed drops its replicas before their folders.
    nodes: BTreeMap<u64, Node>,
    dir: tempfile::TempDir,
    members: BTreeMap<u64, String>,
    driver: Runtime,
    next_body: u64,
    sent: HashSet<Vec<u8>>,
    acked: Vec<Acked>,
}

impl Group {
    fn new(seed: u64, verbose: bool) -> Group {
        let mut rng = Rng(seed);
        let flush = if rng.below(2) == 0 {
            FlushDiskType::SyncFlush
        } else {
            FlushDiskType::AsyncFlush
        };
        let members = (0..3)
            .map(|id| {
                let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                (id, free.local_addr().unwrap().to_string())
            })
            .collect();
        let mut group = Group {
            seed,
            verbose,
            rng,
            flush,
            nodes: BTreeMap::new(),
            dir: tempfile::tempdir().unwrap(),
            members,
            driver: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
            next_body: 0,
            sent: HashSet::new(),
            acked: Vec::new(),
        };
        for id in 0..3 {
            group.start(id);
        }
        group
    }

    fn say(&self, what: impl FnOnce() -> String) {
        if self.verbose {
            println!("seed {}: {}", self.seed, what());
        }
    }

    fn fail(&self, what: String) -> ! {
        panic!(
            "seed {} ({:?}): {what}\nreplay: POWER_SEED={} cargo test -p broker --test \
             raft_power_loss -- --nocapture",
            self.seed, self.flush, self.seed
        )
    }

    fn root(&self, id: u64) -> PathBuf {
        self.dir.path().join(format!("n{id}"))
    }

    fn store_config(&self, id: u64) -> StoreConfig {
        StoreConfig {
            // Small segments: batches roll across several, with blank markers.
            mapped_file_size_commit_log: 64 * 1024,
            mapped_file_size_consume_queue: 20 * 64,
            flush_disk_type: self.flush,
            // ASYNC_FLUSH: the CommitLog flushed, and the Raft log synced, every 100 ms.
            flush_interval_commit_log: 100,
            ..StoreConfig::with_root(self.root(id))
        }
    }

    /// Starts replica `id` from whatever its disk holds, on its own address.
    fn start(&mut self, id: u64) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let addr = self.members[&id].clone();
        let started = runtime.block_on(async {
            let listener = tokio::net::TcpListener::bind(&addr).await.unwrap();
            Replica::start(
                "broker-a",
                id,
                self.store_config(id),
                listener,
                self.members.clone(),
                format!("10.0.0.{id}:10911"),
            )
            .await
        });
        match started {
            Ok(replica) => {
                self.nodes.insert(id, Node { runtime, replica });
            }
            Err(error) => self.fail(format!("replica {id} does not start again: {error:?}")),
        }
    }

    /// The replica that leads and holds its lease (a quorum acknowledged it lately).
    fn leader(&self) -> u64 {
        let deadline = Instant::now() + SETTLE;
        loop {
            for (id, node) in &self.nodes {
                let metrics = node.replica.raft().metrics().borrow_watched().clone();
                if metrics.state == ServerState::Leader
                    && metrics
                        .last_quorum_acked
                        .is_some_and(|at| at.elapsed() < Duration::from_millis(500))
                {
                    return *id;
                }
            }
            if Instant::now() > deadline {
                self.fail(format!("no leader within {SETTLE:?}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// 1 to 4 messages of up to 6 KB, to one queue.
    fn batch(&mut self) -> Vec<PutMessage> {
        let queue = self.rng.below(QUEUES) as i32;
        (0..1 + self.rng.below(4))
            .map(|_| {
                self.next_body += 1;
                let mut body = format!("{}-{}:", self.seed, self.next_body).into_bytes();
                let len = body.len() + self.rng.below(6000) as usize;
                body.resize(len, (self.next_body % 251) as u8);
                self.sent.insert(body.clone());
                PutMessage::new(
                    Message::new(TOPIC, body),
                    queue,
                    "10.0.0.1:4000".parse().unwrap(),
                    "10.0.0.2:10911".parse().unwrap(),
                )
            })
            .collect()
    }

    /// Stores `count` batches on the leader without waiting, then, if `loss` names victims,
    /// cuts their power with the batches in flight; then hears which were acknowledged.
    fn send(&mut self, count: u64, loss: Option<Vec<u64>>, totals: &mut Totals) {
        let leader = self.leader();
        let mut in_flight = Vec::new();
        for _ in 0..count {
            let puts = self.batch();
            let bodies: Vec<Vec<u8>> = puts.iter().map(|p| p.message.body.to_vec()).collect();
            match self.nodes[&leader].replica.append(&puts, &|wait| wait()) {
                Ok(stored) => in_flight.push((stored, bodies)),
                Err(refused) => {
                    self.say(|| format!("  batch refused: {refused}"));
                    break;
                }
            }
        }
        totals.batches += in_flight.len() as u64;
        if let Some(victims) = loss {
            self.lose_power(&victims, leader, totals);
        }
        let mut acknowledged = 0;
        for (stored, bodies) in in_flight {
            let committed = self
                .driver
                .block_on(async { tokio::time::timeout(SETTLE, stored.committed).await });
            if !matches!(committed, Ok(Ok(()))) {
                continue;
            }
            acknowledged += 1;
            for (message, body) in stored.messages.iter().zip(bodies) {
                self.acked.push(Acked {
                    offset: message.physical_offset,
                    body,
                });
                totals.acknowledged += 1;
            }
        }
        self.say(|| format!("  {acknowledged} of {count} batches acknowledged by {leader}"));
    }

    /// The group commits a batch once the power is back (a leader elected just now may
    /// refuse one while it settles).
    fn commits_again(&mut self, totals: &mut Totals) {
        let deadline = Instant::now() + SETTLE;
        let before = self.acked.len();
        while self.acked.len() == before {
            if Instant::now() > deadline {
                self.fail(format!("the group committed nothing within {SETTLE:?}"));
            }
            self.send(1, None, totals);
        }
    }

    /// Cuts the power of `victims`: each replica's tasks stop, then its store's threads
    /// (without a flush), each disk keeps what the simulation says, and each replica starts
    /// again from it. A process stops all at once; here the tasks go first, so that none
    /// of them works on a stopped store meanwhile.
    fn lose_power(&mut self, victims: &[u64], leader: u64, totals: &mut Totals) {
        for id in victims {
            let Node { runtime, replica } = self.nodes.remove(id).unwrap();
            runtime.shutdown_timeout(Duration::from_secs(10));
            replica.store().crash();
            drop(replica);
        }
        match victims.len() {
            3 => totals.group_losses += 1,
            _ if victims.contains(&leader) => totals.leader_losses += 1,
            _ => totals.follower_losses += 1,
        }
        for id in victims {
            let root = self.root(*id);
            let loss = durability::lose_power(&root, &mut |n| self.rng.below(n));
            totals.lost_pages += loss.lost_pages;
            totals.torn_pages += loss.torn_pages;
            self.say(|| {
                format!(
                    "  power lost at {id} (the leader was {leader}): {} pages lost, {} torn",
                    loss.lost_pages, loss.torn_pages
                )
            });
        }
        // Sometimes the group goes on without a follower, and the leader snapshots and
        // purges its log before the follower is back, which then lies behind it and is sent
        // the leader's records instead of entries.
        if victims.len() == 1 && victims[0] != leader && self.rng.below(2) == 0 {
            let count = 5 + self.rng.below(20);
            self.send(count, None, totals);
            self.snapshot_and_purge(self.leader());
        }
        for id in victims {
            self.start(*id);
        }
    }

    /// Replica `id` snapshots what it applied and saved, and purges its log up to there.
    fn snapshot_and_purge(&self, id: u64) {
        let raft = self.nodes[&id].replica.raft().clone();
        let before = raft.metrics().borrow_watched().snapshot;
        let snapshot = self.driver.block_on(async {
            raft.trigger().snapshot().await.unwrap();
            // Nothing newly saved since the last one: the same snapshot, and no change.
            let _ = raft
                .wait(Some(Duration::from_secs(2)))
                .metrics(|m| m.snapshot > before, "a new snapshot")
                .await;
            let snapshot = raft.metrics().borrow_watched().snapshot;
            if let Some(snapshot) = snapshot {
                raft.trigger().purge_log(snapshot.index).await.unwrap();
            }
            snapshot
        });
        self.say(|| format!("  replica {id} snapshot at {snapshot:?}, its log purged"));
    }

    /// Waits until every replica applied the leader's last entry and dispatched its
    /// CommitLog; returns the leader.
    fn caught_up(&self) -> u64 {
        let leader = self.leader();
        let last = self.nodes[&leader]
            .replica
            .raft()
            .metrics()
            .borrow_watched()
            .last_log_index;
        let end = self.nodes[&leader].replica.store().commit_log_max_offset();
        for (id, node) in &self.nodes {
            let applied = self.driver.block_on(
                node.replica
                    .raft()
                    .wait(Some(SETTLE))
                    .applied_index_at_least(last, "caught up with the leader"),
            );
            if let Err(error) = applied {
                self.fail(format!("replica {id} did not catch up: {error}"));
            }
            let deadline = Instant::now() + SETTLE;
            while node.replica.store().dispatched_offset() < end {
                if Instant::now() > deadline {
                    self.fail(format!("replica {id} did not dispatch up to {end}"));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        leader
    }

    /// The checks above, once the group has caught up.
    fn check(&self) {
        let leader = self.caught_up();
        let stores: BTreeMap<u64, _> = self
            .nodes
            .iter()
            .map(|(id, node)| (*id, node.replica.store()))
            .collect();
        let lead = stores[&leader];
        let (first, end) = (lead.commit_log_min_offset(), lead.commit_log_max_offset());

        // Identical CommitLogs, every record whole and one the workload sent.
        let mut at = first;
        loop {
            let records = match lead.commit_log_records(at, end, 1 << 20) {
                Ok(Some(records)) => records,
                Ok(None) => break,
                Err(error) => self.fail(format!("the leader's CommitLog at {at}: {error}")),
            };
            let (start, bytes) = records;
            for (id, store) in &stores {
                if store.commit_log_bytes(start, start + bytes.len() as u64) != Some(bytes.clone())
                {
                    self.fail(format!("replica {id}'s CommitLog differs at {start}"));
                }
            }
            let mut rest = bytes.clone();
            while !rest.is_empty() {
                let size = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
                let record = rest.split_to(size);
                match StoredMessage::parse(&record) {
                    Ok(stored) if self.sent.contains(stored.body()) => {}
                    Ok(_) => self.fail(format!("a record near {start} holds a body never sent")),
                    Err(error) => self.fail(format!("a torn record near {start}: {error}")),
                }
            }
            at = start + bytes.len() as u64;
        }

        // Every acknowledged message where it was acknowledged.
        for acked in &self.acked {
            for (id, store) in &stores {
                let held = store.message_at(acked.offset).is_some_and(|record| {
                    StoredMessage::parse(&record).is_ok_and(|stored| stored.body() == acked.body)
                });
                if !held {
                    let name = String::from_utf8_lossy(&acked.body[..acked.body.len().min(24)])
                        .into_owned();
                    self.fail(format!(
                        "replica {id} lost the acknowledged message {name}... at {}",
                        acked.offset
                    ));
                }
            }
        }

        for queue in 0..QUEUES as i32 {
            let ends: BTreeMap<u64, i64> = stores
                .iter()
                .map(|(id, store)| (*id, store.max_offset(TOPIC, queue)))
                .collect();
            if ends.values().any(|end| *end != ends[&leader]) {
                self.fail(format!("queue {queue} ends differ: {ends:?}"));
            }
        }
        self.say(|| {
            format!(
                "checked: {} acknowledged messages, CommitLogs identical from {first} to {end}",
                self.acked.len()
            )
        });
    }

    fn stop(self) {
        for (_, node) in self.nodes {
            let Node { runtime, replica } = node;
            runtime.block_on(replica.stop()).unwrap();
            replica.store().shutdown().unwrap();
            drop(replica);
            runtime.shutdown_timeout(Duration::from_secs(10));
        }
    }
}

/// One seed: rounds of sends, most with a power loss in flight, then the checks.
fn run(seed: u64, verbose: bool, totals: &mut Totals) {
    let mut group = Group::new(seed, verbose);
    group.say(|| format!("{:?}", group.flush));
    for _ in 0..4 {
        let count = 5 + group.rng.below(40);
        let leader = group.leader();
        let follower = (leader + 1 + group.rng.below(2)) % 3;
        let loss = match (group.flush, group.rng.below(4)) {
            (_, 0) => None,
            (FlushDiskType::AsyncFlush, _) | (_, 1) => Some(vec![follower]),
            (_, 2) => Some(vec![leader]),
            _ => Some(vec![0, 1, 2]),
        };
        group.send(count, loss, totals);
        group.commits_again(totals);
        if group.rng.below(4) == 0 {
            let id = group.rng.below(3);
            group.snapshot_and_purge(id);
        }
    }
    group.check();
    group.stop();
    totals.seeds += 1;
}

fn from_env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name} is not a number"))
        })
        .unwrap_or(default)
}

#[test]
fn acknowledged_messages_survive_power_losses_of_a_replica_and_of_the_group() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    durability::start_recording();
    let mut totals = Totals::default();
    let seeds = match std::env::var("POWER_SEED") {
        Ok(seed) => vec![(seed.parse().expect("POWER_SEED is a number"), true)],
        Err(_) => {
            let first = from_env("POWER_FIRST_SEED", 1);
            (first..first + from_env("POWER_SEEDS", 6))
                .map(|seed| (seed, false))
                .collect()
        }
    };
    for (seed, verbose) in seeds {
        run(seed, verbose, &mut totals);
    }
    durability::stop_recording();
    println!(
        "{} seeds: {} batches, {} messages acknowledged, none lost; power lost at a follower \
         {} times, at the leader {}, at the whole group {} ({} pages lost, {} torn)",
        totals.seeds,
        totals.batches,
        totals.acknowledged,
        totals.follower_losses,
        totals.leader_losses,
        totals.group_losses,
        totals.lost_pages,
        totals.torn_pages,
    );
}
