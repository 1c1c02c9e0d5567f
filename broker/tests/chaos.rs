//! Chaos against a Raft-replicated broker group, with the checks OpenChaos runs against
//! RocketMQ. Three `rocketry broker` replicas on localhost reach each other's Raft ports
//! through fault-injecting TCP proxies, one per replica and peer (the `faults` crate: no
//! privileges, the host's network untouched; each replica's `dLegerPeers` names its own
//! proxies), and the real Java client sends SYNC messages, one by one and in batches of 16.
//! Each round injects one fault at a random moment of its sends, into the leader or a
//! follower:
//!
//! - kill: SIGKILL, then a restart;
//! - pause: SIGSTOP, then SIGCONT;
//! - isolate: a partition: every link to and from the replica stalls and new ones are
//!   refused, its own requests as well as its peers';
//! - one-way: the replica's peers get nothing from it, or it gets nothing from them, on
//!   every link, whoever opened it;
//! - slow disk: every CommitLog flush and Raft-log sync of the replica takes 50 to 500 ms
//!   longer, through the store's fault points (test builds only), which a running replica
//!   reads from a file (`FAILPOINTS_FILE`).
//!
//! Afterwards the checkers: every acknowledged message is consumed (lost = 0), each queue in
//! order (reordered = 0), and the replicas' CommitLogs are byte-identical (divergent = 0).
//! Duplicates are counted, not refused: a send whose answer was lost is sent again by the
//! client and stored twice, as RocketMQ's at-least-once allows.
//!
//! The test command runs 4 rounds; `scripts/chaos --rounds 1000` is the soak (`CHAOS_ROUNDS`,
//! `CHAOS_SEED` to replay a run's choices, `CHAOS_MESSAGES_PER_ROUND`, `CHAOS_FAULTS` and
//! `CHAOS_VICTIM=leader` to narrow them).

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use faults::{Direction, Proxy};
use support::group::*;
use support::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Fault {
    Kill,
    Pause,
    Isolate,
    OneWay,
    SlowDisk,
}

const FAULTS: [Fault; 5] = [
    Fault::Kill,
    Fault::Pause,
    Fault::Isolate,
    Fault::OneWay,
    Fault::SlowDisk,
];

/// The faults a run draws from: `CHAOS_FAULTS` (`kill,pause`, ...), or all of them.
fn faults() -> Vec<Fault> {
    let Ok(names) = std::env::var("CHAOS_FAULTS") else {
        return FAULTS.to_vec();
    };
    names
        .split(',')
        .map(|name| {
            *FAULTS
                .iter()
                .find(|fault| format!("{fault:?}").eq_ignore_ascii_case(name.trim()))
                .unwrap_or_else(|| panic!("CHAOS_FAULTS: {name} is not one of {FAULTS:?}"))
        })
        .collect()
}

/// A replayable sequence of choices (a 64-bit LCG; the seed is printed).
struct Choices(u64);

impl Choices {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % bound
    }
}

/// The proxies between the replicas: `to[from][to]` carries what replica `from` dials to
/// reach replica `to` (none from a replica to itself).
struct Links {
    to: Vec<Vec<Option<Proxy>>>,
}

impl Links {
    /// A proxy on 127.0.0.1 for each replica and peer, to the peer's Raft port on 127.0.0.2.
    fn start(runtime: &tokio::runtime::Runtime, raft_ports: &[u16]) -> Links {
        let proxy = |port: u16| {
            let upstream = SocketAddr::from(([127, 0, 0, 2], port));
            runtime.block_on(Proxy::start(upstream)).unwrap()
        };
        let to = (0..raft_ports.len())
            .map(|from| {
                raft_ports
                    .iter()
                    .enumerate()
                    .map(|(to, port)| (to != from).then(|| proxy(*port)))
                    .collect()
            })
            .collect();
        Links { to }
    }

    /// Each replica's `dLegerPeers` addresses: its own Raft port, and its proxy to each peer.
    fn peers(&self, raft_ports: &[u16]) -> Vec<Vec<String>> {
        self.to
            .iter()
            .map(|links| {
                links
                    .iter()
                    .zip(raft_ports)
                    .map(|(link, port)| match link {
                        Some(proxy) => proxy.addr().to_string(),
                        None => format!("127.0.0.2:{port}"),
                    })
                    .collect()
            })
            .collect()
    }

    /// Every link of `replica`, each with whether `replica` dialed it.
    fn of(&self, replica: usize) -> impl Iterator<Item = (&Proxy, bool)> {
        let dialed = self.to[replica].iter().flatten().map(|link| (link, true));
        let answered = self
            .to
            .iter()
            .filter_map(move |links| links[replica].as_ref())
            .map(|link| (link, false));
        dialed.chain(answered)
    }

    fn heal(&self, replica: usize) {
        for (link, _) in self.of(replica) {
            link.heal();
        }
    }
}

fn signal(replica: &Rocketry, signal: &str) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &replica.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{signal} {}", replica.pid());
}

#[test]
fn acknowledged_messages_survive_rounds_of_random_faults() {
    let rounds = from_env("CHAOS_ROUNDS", 4);
    let per_round = from_env("CHAOS_MESSAGES_PER_ROUND", 400);
    let seed = from_env("CHAOS_SEED", now_ms());
    println!("chaos seed {seed} (CHAOS_SEED replays its choices)");
    let mut choices = Choices(seed);
    let faults = faults();
    // `CHAOS_VICTIM=leader` aims every fault at the leader.
    let leader_only = std::env::var("CHAOS_VICTIM").is_ok_and(|victim| victim == "leader");
    let namesrv = Rocketry::namesrv();
    let runtime = tokio::runtime::Runtime::new().unwrap();

    // Each replica listens on 127.0.0.2 and reaches each peer through a proxy of its own
    // on 127.0.0.1: links[from][to].
    let raft_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let links = Links::start(&runtime, &raft_ports);
    let mut replicas = start_replicas_reaching(
        &namesrv.namesrv,
        "bindAddress=127.0.0.2\nbrokerIP1=127.0.0.2\nmetricsPromExporterHost=127.0.0.1\n\
         flushDiskType=SYNC_FLUSH\nautoCreateTopicEnable=false\n",
        &links.peers(&raft_ports),
    );
    for replica in &mut replicas {
        replica.broker_addr = replica
            .broker_addr
            .as_ref()
            .map(|addr| addr.replace("127.0.0.1", "127.0.0.2"));
    }
    let leader = master(&runtime, &namesrv.namesrv, &replicas);
    let topic = unique("chaos");
    create_topic_copied(&runtime, &replicas, leader, &topic, 4);

    let dir = tempfile::tempdir().unwrap();
    let run = unique("run");
    let mut acked = BTreeMap::new();
    let mut injected: BTreeMap<Fault, u64> = BTreeMap::new();
    let mut failed_sends = 0;
    for round in 0..rounds {
        let first = round * per_round;
        let half = per_round / 2;
        let files = [
            dir.path().join(format!("acked-{round}-single")),
            dir.path().join(format!("acked-{round}-batch")),
        ];
        let producers = [
            producer(
                &namesrv.namesrv,
                &topic,
                &run,
                ("sync", Routes::EverySecond),
                first,
                half,
                &files[0],
            ),
            producer(
                &namesrv.namesrv,
                &topic,
                &run,
                ("batch", Routes::EverySecond),
                first + half,
                per_round - half,
                &files[1],
            ),
        ];
        std::thread::sleep(Duration::from_millis(1000 + choices.below(1500)));
        let leader = master(&runtime, &namesrv.namesrv, &replicas);
        let victim = if leader_only || choices.below(2) == 0 {
            leader
        } else {
            (leader + 1 + choices.below(2) as usize) % replicas.len()
        };
        let fault = faults[choices.below(faults.len() as u64) as usize];
        let hold = Duration::from_millis(1000 + choices.below(3000));
        match fault {
            Fault::Kill => {
                replicas[victim].kill();
                std::thread::sleep(hold);
                replicas[victim].restart();
            }
            Fault::Pause => {
                signal(&replicas[victim], "STOP");
                std::thread::sleep(hold);
                signal(&replicas[victim], "CONT");
            }
            Fault::Isolate => {
                for (link, _) in links.of(victim) {
                    link.partition();
                }
                std::thread::sleep(hold);
                links.heal(victim);
            }
            Fault::OneWay => {
                let outbound = choices.below(2) == 0;
                for (link, dialed) in links.of(victim) {
                    // What the victim sends goes to upstream on the links it dialed.
                    let direction = if outbound == dialed {
                        Direction::ToUpstream
                    } else {
                        Direction::ToClient
                    };
                    link.stall(direction);
                }
                std::thread::sleep(hold);
                links.heal(victim);
            }
            Fault::SlowDisk => {
                let delay = 50 + choices.below(450);
                replicas[victim].set_faults(&format!(
                    "store::commitlog::flush=sleep({delay});\
                     store::raftlog::sync=sleep({delay})"
                ));
                std::thread::sleep(hold);
                replicas[victim].set_faults("");
            }
        }
        *injected.entry(fault).or_default() += 1;
        let mut sent_this_round = 0;
        for (producer, file) in producers.into_iter().zip(&files) {
            let (result, acks) = acknowledged(producer, file);
            failed_sends += result["failed"].as_u64().unwrap();
            sent_this_round += acks.len();
            acked.extend(acks);
        }
        let role = if victim == leader {
            "the leader"
        } else {
            "a follower"
        };
        println!(
            "round {round}: {fault:?} of n{victim} ({role}) for {} ms; {sent_this_round} of \
             {per_round} sends acknowledged",
            hold.as_millis()
        );
    }

    let stored = caught_up(&runtime, &namesrv.namesrv, &replicas);
    let (_, got) = consume_acknowledged(&namesrv.namesrv, &topic, &run, &acked, dir.path());
    stop_and_compare(&mut replicas);
    println!(
        "chaos totals: {rounds} rounds, faults injected {injected:?}, {} sends \
         acknowledged ({failed_sends} failed and not acknowledged), lost 0, reordered 0, \
         duplicates {}, divergent 0 (CommitLogs identical, {stored} bytes stored)",
        acked.len(),
        got["duplicates"],
    );
}
