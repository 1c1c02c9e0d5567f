//! Crash simulation: seeded random workloads against the real store, power losses that
//! keep only what was flushed plus a random subset of the pages written since (some torn
//! at a 512-byte sector), and flush and disk-full faults, with the invariants checked after
//! every restart:
//! - every SYNC-acknowledged message reads back intact, in queue order;
//! - nothing corrupt is ever served, and every message served is one that was appended at
//!   that queue offset;
//! - recovery never cuts below the checkpointed flushed offset;
//! - consume queues and the key index agree with the CommitLog.
//!
//! Every SYNC_FLUSH append waits for its flush: a message that does not (WAIT=false) is
//! flushed by the group-commit thread's 10 ms poll at a moment no seed controls, and a seed
//! must replay exactly. Background flushes and checkpoints are off for the same reason.
//!
//! `cargo test -p store --features failpoints --test simulation` runs a short sweep (SIM_SEEDS seeds from
//! SIM_FIRST_SEED; 2,000 by default). `SIM_SEED=n` replays one seed with its operations
//! printed. `scripts/soak/simulate` runs the long sweep. The store's record of what each
//! flush made durable and its crash stop exist only with the `failpoints` feature, which
//! test builds turn on and release builds never do.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

mod common;

use common::Rng;
use fail::FailScenario;
use message::{property, Message, StoredMessage};
use store::{durability, FlushDiskType, MessageStore, PutMessage, StoreConfig};

const TOPICS: [&str; 3] = ["SimA", "SimB", "SimC"];
const QUEUES: i32 = 3;

type Slot = (String, i32, i64);

#[derive(Default)]
struct Totals {
    seeds: u64,
    operations: u64,
    crashes: u64,
    torn_pages: u64,
    lost_pages: u64,
    flush_faults: u64,
    disk_full_faults: u64,
    acknowledged_checked: u64,
}

struct Sim {
    seed: u64,
    rng: Rng,
    root: PathBuf,
    config: StoreConfig,
    verbose: bool,
    /// Acknowledged as durable: SYNC waits that succeeded, or anything appended before a
    /// clean stop that succeeded.
    acked: BTreeMap<Slot, (Vec<u8>, u64)>,
    /// Appended but not (yet) acknowledged; a crash may lose them.
    pending: Vec<(Slot, (Vec<u8>, u64))>,
    /// Every body ever appended at each slot (a lost unacknowledged message's offset is
    /// given to the next one appended there).
    appended: HashMap<Slot, HashSet<Vec<u8>>>,
    next_body: u64,
}

impl Sim {
    fn log(&self, what: impl FnOnce() -> String) {
        if self.verbose {
            println!("seed {}: {}", self.seed, what());
        }
    }

    fn fail(&self, what: String) -> ! {
        panic!(
            "seed {}: invariant violated: {what}\nreplay: SIM_SEED={} cargo test -p store --features failpoints --test simulation -- --nocapture",
            self.seed, self.seed
        );
    }

    fn body(&mut self) -> Vec<u8> {
        self.next_body += 1;
        let len = match self.rng.below(10) {
            0 => 0,
            1..=5 => self.rng.below(200) as usize,
            6..=8 => self.rng.below(4000) as usize,
            _ => self.rng.below(20_000) as usize,
        };
        let mut body = format!("{}-{}:", self.seed, self.next_body).into_bytes();
        let fill = (self.next_body % 251) as u8;
        body.resize(body.len() + len, fill);
        body
    }

    fn put(&mut self, topic: &str, queue: i32) -> PutMessage {
        let mut message = Message::new(topic, self.body());
        message
            .properties
            .insert(property::KEYS, format!("key-{}", self.next_body));
        PutMessage::new(
            message,
            queue,
            "127.0.0.1:1".parse().unwrap(),
            "127.0.0.1:2".parse().unwrap(),
        )
    }

    fn append(&mut self, store: &MessageStore, totals: &mut Totals) {
        let topic = TOPICS[self.rng.below(TOPICS.len() as u64) as usize];
        let queue = self.rng.below(QUEUES as u64) as i32;
        let count = if self.rng.chance(20) {
            2 + self.rng.below(7) as usize
        } else {
            1
        };
        let puts: Vec<PutMessage> = (0..count).map(|_| self.put(topic, queue)).collect();
        if self.rng.chance(3) {
            totals.flush_faults += 1;
            fail::cfg("store::commitlog::flush", "1*return").unwrap();
        }
        if self.rng.chance(3) {
            totals.disk_full_faults += 1;
            fail::cfg("store::commitlog::create", "1*return").unwrap();
        }
        let result = store.append_batch(&puts);
        let outcome = match result {
            Err(error) => Err(error),
            Ok(appended) => {
                let slots: Vec<Slot> = appended
                    .messages
                    .iter()
                    .map(|m| (topic.to_string(), queue, m.queue_offset))
                    .collect();
                self.log(|| {
                    let at: Vec<_> = appended
                        .messages
                        .iter()
                        .map(|m| (m.queue_offset, m.physical_offset))
                        .collect();
                    format!("  (queue offset, CommitLog offset): {at:?}")
                });
                for (slot, put) in slots.iter().zip(&puts) {
                    self.appended
                        .entry(slot.clone())
                        .or_default()
                        .insert(put.message.body.to_vec());
                }
                let durable = appended.durable.wait();
                let sync = store.config().flush_disk_type == FlushDiskType::SyncFlush;
                let physical = appended.messages.iter().map(|m| m.physical_offset);
                for ((slot, put), physical) in slots.into_iter().zip(&puts).zip(physical) {
                    let body = (put.message.body.to_vec(), physical);
                    if sync && durable.is_ok() {
                        self.acked.insert(slot, body);
                    } else {
                        self.pending.push((slot, body));
                    }
                }
                durable.map(|_| count)
            }
        };
        fail::remove("store::commitlog::flush");
        fail::remove("store::commitlog::create");
        self.log(|| format!("append {count} to {topic}/{queue}: {outcome:?}"));
    }

    fn open(&mut self) -> MessageStore {
        match MessageStore::open(self.config.clone()) {
            Ok(store) => store,
            Err(error) => self.fail(format!("open failed: {}", error.with_sources())),
        }
    }

    /// A clean stop: once it succeeds everything appended is durable.
    fn restart(&mut self, store: MessageStore) -> MessageStore {
        let fenced = store.write_fence().is_some();
        let stopped = store.shutdown();
        self.log(|| format!("clean stop (fenced={fenced}): {stopped:?}"));
        if stopped.is_ok() && !fenced {
            for (slot, body) in std::mem::take(&mut self.pending) {
                self.acked.insert(slot, body);
            }
        }
        drop(store);
        self.open()
    }

    /// A power loss, then a start.
    fn crash(&mut self, store: MessageStore, totals: &mut Totals) -> MessageStore {
        store.crash();
        drop(store);
        totals.crashes += 1;
        let loss = durability::lose_power(&self.root, &mut |n| self.rng.below(n));
        totals.lost_pages += loss.lost_pages;
        totals.torn_pages += loss.torn_pages;
        let floor = checkpointed_flushed(&self.root);
        self.pending.clear();
        self.log(|| format!("crash; checkpointed flushed offset {floor:?}"));
        let store = self.open();
        if let Some(floor) = floor {
            if store.commit_log_max_offset() < floor {
                self.fail(format!(
                    "recovery cut the CommitLog at {} below the flushed checkpoint {floor}",
                    store.commit_log_max_offset()
                ));
            }
        }
        store
    }

    fn check(&mut self, store: &MessageStore, totals: &mut Totals) {
        // Everything served is intact and was appended where it is served.
        let mut served: HashMap<Slot, Vec<u8>> = HashMap::new();
        for (topic, queue) in store.queues() {
            let mut offset = store.min_offset(&topic, queue);
            let max = store.max_offset(&topic, queue);
            while offset < max {
                let result = store.get_message(&topic, queue, offset, 16, 1 << 20, None);
                for (bytes, queue_offset) in result.messages.iter().zip(&result.queue_offsets) {
                    let stored = match StoredMessage::parse(bytes) {
                        Ok(stored) => stored,
                        Err(error) => self.fail(format!(
                            "unparsable record served at {topic}/{queue}/{queue_offset}: {error}"
                        )),
                    };
                    if stored.check_body_crc().is_err()
                        || stored.topic().ok() != Some(topic.as_str())
                        || stored.queue_id() != queue
                        || stored.queue_offset() != *queue_offset
                    {
                        self.fail(format!(
                            "corrupt or misplaced record served at {topic}/{queue}/{queue_offset}"
                        ));
                    }
                    let slot = (topic.clone(), queue, *queue_offset);
                    let body = stored.body().to_vec();
                    if !self.appended.get(&slot).is_some_and(|b| b.contains(&body)) {
                        self.fail(format!(
                            "a message never appended there is served at {slot:?}"
                        ));
                    }
                    served.insert(slot, body);
                }
                if result.next_begin_offset <= offset {
                    break;
                }
                offset = result.next_begin_offset;
            }
        }
        // Every acknowledged message is there, unless retention removed its segment.
        let acked: Vec<(Slot, (Vec<u8>, u64))> = self
            .acked
            .iter()
            .map(|(s, b)| (s.clone(), b.clone()))
            .collect();
        for ((topic, queue, offset), (body, physical)) in acked {
            if physical < store.commit_log_min_offset() {
                continue;
            }
            totals.acknowledged_checked += 1;
            match served.get(&(topic.clone(), queue, offset)) {
                Some(got) if *got == body => {}
                Some(_) => self.fail(format!(
                    "acknowledged message {topic}/{queue}/{offset} was replaced"
                )),
                None => self.fail(format!(
                    "acknowledged message {topic}/{queue}/{offset} is lost (queue min {} max {}, \
                     CommitLog {}..{})",
                    store.min_offset(&topic, queue),
                    store.max_offset(&topic, queue),
                    store.commit_log_min_offset(),
                    store.commit_log_max_offset()
                )),
            }
            let key = key_of(&body);
            let found = store.query_by_key(&topic, &key, 64, 0, i64::MAX);
            let indexed = found
                .messages
                .iter()
                .any(|record| StoredMessage::parse(record).is_ok_and(|m| m.body() == &body[..]));
            if !indexed {
                self.fail(format!(
                    "acknowledged {topic}/{queue}/{offset} missing from the index"
                ));
            }
        }
        // Queue offsets continue where the queues end.
        for (topic, queue) in store.queues() {
            if store.max_offset(&topic, queue) < store.min_offset(&topic, queue) {
                self.fail(format!("{topic}/{queue}: max below min"));
            }
        }
    }
}

/// The key the simulation gave a body: `<seed>-<n>:` starts every body, `key-<n>` its key.
fn key_of(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(40)]);
    let n = text
        .split(':')
        .next()
        .and_then(|head| head.split('-').nth(1))
        .unwrap_or("");
    format!("key-{n}")
}

/// The flushed offset in the checkpoint on disk, if it is intact.
fn checkpointed_flushed(root: &Path) -> Option<u64> {
    let bytes = std::fs::read(root.join("checkpoint")).ok()?;
    if bytes.len() < 52 {
        return None;
    }
    let crc = u32::from_be_bytes(bytes[48..52].try_into().ok()?);
    (crc == crc32fast::hash(&bytes[..48]))
        .then(|| i64::from_be_bytes(bytes[32..40].try_into().unwrap()).max(0) as u64)
}

fn config(root: &Path, sync: bool) -> StoreConfig {
    StoreConfig {
        mapped_file_size_commit_log: 64 * 1024,
        mapped_file_size_consume_queue: 20 * 64,
        flush_disk_type: if sync {
            FlushDiskType::SyncFlush
        } else {
            FlushDiskType::AsyncFlush
        },
        // Flushes and checkpoints happen only when the workload asks (a SYNC wait, an
        // explicit checkpoint, a clean stop), so a seed replays the same disk exactly.
        flush_interval_commit_log: 3_600_000,
        flush_commit_log_timed: true,
        flush_interval_consume_queue: 3_600_000,
        clean_resource_interval: 3_600_000,
        file_reserved_time: 0,
        max_hash_slot_num: 31,
        max_index_num: 100,
        max_message_size: 32 * 1024,
        ..StoreConfig::with_root(root)
    }
}

fn run_seed(seed: u64, verbose: bool, totals: &mut Totals) {
    // tmpfs keeps a sweep of thousands of stores fast; the durability model is ours.
    let dir = if Path::new("/dev/shm").is_dir() {
        tempfile::tempdir_in("/dev/shm").unwrap()
    } else {
        tempfile::tempdir().unwrap()
    };
    let root = dir.path().join("store");
    let mut rng = Rng(seed);
    let sync = rng.chance(70);
    let mut sim = Sim {
        seed,
        rng,
        config: config(&root, sync),
        root,
        verbose,
        acked: BTreeMap::new(),
        pending: Vec::new(),
        appended: HashMap::new(),
        next_body: 0,
    };
    sim.log(|| format!("sync={sync}"));
    durability::start_recording();
    let mut store = sim.open();
    let operations = 10 + sim.rng.below(50);
    for _ in 0..operations {
        totals.operations += 1;
        match sim.rng.below(100) {
            0..=69 => sim.append(&store, totals),
            70..=77 => {
                let saved = store.checkpoint();
                sim.log(|| format!("checkpoint: {saved:?}"));
            }
            78..=80 => {
                let far = SystemTime::now() + Duration::from_secs(3600);
                let deleted = store.delete_expired_files(far);
                sim.log(|| format!("retention: {deleted:?}"));
            }
            81..=87 => {
                store = sim.restart(store);
                sim.check(&store, totals);
            }
            _ => {
                store = sim.crash(store, totals);
                sim.check(&store, totals);
            }
        }
    }
    store = sim.crash(store, totals);
    sim.check(&store, totals);
    store = sim.restart(store);
    sim.check(&store, totals);
    drop(store);
    durability::stop_recording();
    totals.seeds += 1;
}

fn env(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[test]
fn random_workloads_survive_power_loss_and_disk_faults() {
    let scenario = FailScenario::setup();
    let mut totals = Totals::default();
    if let Some(seed) = env("SIM_SEED") {
        run_seed(seed, true, &mut totals);
    } else {
        let first = env("SIM_FIRST_SEED").unwrap_or(0);
        let count = env("SIM_SEEDS").unwrap_or(2000);
        for seed in first..first + count {
            run_seed(seed, false, &mut totals);
        }
    }
    println!(
        "simulation: seeds {}, operations {}, crashes injected {}, pages lost {}, pages torn {}, \
         flush faults {}, disk-full faults {}, acknowledged messages checked {}, invariant violations 0",
        totals.seeds,
        totals.operations,
        totals.crashes,
        totals.lost_pages,
        totals.torn_pages,
        totals.flush_faults,
        totals.disk_full_faults,
        totals.acknowledged_checked
    );
    scenario.teardown();
}
