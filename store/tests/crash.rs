//! Crash safety: a child process appends with SYNC_FLUSH and prints each acknowledged
//! message; the parent SIGKILLs it at random moments and checks after every restart that
//! every acknowledged message reads back intact and nothing half-written is visible.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use message::{Message, StoredMessage};
use store::{FlushDiskType, GetMessageStatus, MessageStore, PutMessage, StoreConfig};

const CHILD_ENV: &str = "ROCKETRY_CRASH_CHILD_DIR";
const QUEUES: i32 = 4;

fn config(dir: &Path) -> StoreConfig {
    StoreConfig {
        mapped_file_size_commit_log: 256 * 1024,
        mapped_file_size_consume_queue: 20 * 1000,
        flush_disk_type: FlushDiskType::SyncFlush,
        flush_interval_consume_queue: 30,
        max_hash_slot_num: 1009,
        max_index_num: 5000,
        ..StoreConfig::with_root(dir)
    }
}

/// The body is a function of where it lands, so any record can be checked on its own.
fn body(queue_id: i32, queue_offset: i64) -> Vec<u8> {
    let len = 50 + (queue_offset as usize * 37 + queue_id as usize * 11) % 3000;
    vec![(queue_offset % 251) as u8 ^ queue_id as u8; len]
}

fn next_random(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// Runs only when re-executed by `sigkill_at_random_moments_loses_nothing_acknowledged`.
#[test]
fn crash_child() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let store = std::sync::Arc::new(MessageStore::open(config(Path::new(&dir))).unwrap());
    println!("OPEN");
    let writers: Vec<_> = (0..QUEUES)
        .map(|queue_id| {
            let store = std::sync::Arc::clone(&store);
            std::thread::spawn(move || loop {
                // Each writer owns one queue, so it knows the next queue offset.
                let offset = store.max_offset("C", queue_id);
                let put = PutMessage::new(
                    Message::new("C", body(queue_id, offset)),
                    queue_id,
                    "127.0.0.1:1".parse().unwrap(),
                    "127.0.0.1:10911".parse().unwrap(),
                );
                let result = store.append(&put).unwrap();
                assert_eq!(result.messages[0].queue_offset, offset);
                result.durable.wait().unwrap();
                println!("ACK {queue_id} {offset}");
            })
        })
        .collect();
    for writer in writers {
        let _ = writer.join();
    }
}

fn verify(dir: &Path, acknowledged: &HashMap<i32, i64>) -> usize {
    let store = MessageStore::open(config(dir)).unwrap();
    let mut total = 0;
    for queue_id in 0..QUEUES {
        let max = store.max_offset("C", queue_id);
        let acked = acknowledged.get(&queue_id).copied().unwrap_or(-1);
        assert!(
            max > acked,
            "queue {queue_id}: acknowledged {acked} but max offset is {max}"
        );
        let mut offset = 0;
        while offset < max {
            let result = store.get_message("C", queue_id, offset, 32, 1 << 20, None);
            assert_eq!(
                result.status,
                GetMessageStatus::Found,
                "queue {queue_id} offset {offset}"
            );
            for (bytes, queue_offset) in result.messages.iter().zip(&result.queue_offsets) {
                assert_eq!(*queue_offset, offset);
                let stored = StoredMessage::parse(bytes).unwrap();
                stored.check_body_crc().unwrap();
                assert_eq!(stored.queue_offset(), offset);
                assert_eq!(stored.body(), body(queue_id, offset).as_slice());
                offset += 1;
                total += 1;
            }
        }
    }
    store.shutdown().unwrap();
    total
}

#[test]
fn sigkill_at_random_moments_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let mut acknowledged: HashMap<i32, i64> = HashMap::new();
    let mut random = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    let started = Instant::now();
    let rounds = 24;
    for round in 0..rounds {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        // Read all along, so a child that writes much never blocks on it; shown when the
        // child could not open the store (CI once saw it exit first, with nothing to say why).
        let mut stderr = child.stderr.take().unwrap();
        let errors = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
            text
        });
        let (opened_tx, opened) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut lines = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // libtest prints "test crash_child ... " before the child's first line.
                if line.ends_with("OPEN") {
                    let _ = opened_tx.send(());
                } else if let Some(rest) = line.strip_prefix("ACK ") {
                    let mut parts = rest.split(' ');
                    let queue: i32 = parts.next().unwrap().parse().unwrap();
                    let offset: i64 = parts.next().unwrap().parse().unwrap();
                    lines.push((queue, offset));
                }
            }
            lines
        });
        // The kill lands while writers append, never before the store is open: on a busy
        // host a child can take longer than the random pause just to start.
        if let Err(error) = opened.recv_timeout(Duration::from_secs(120)) {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the child of round {round} did not open the store ({error}); its stderr:\n{}",
                errors.join().unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(30 + next_random(&mut random) % 250));
        child.kill().unwrap(); // SIGKILL
        let _ = child.wait();
        for (queue, offset) in reader.join().unwrap() {
            let entry = acknowledged.entry(queue).or_insert(-1);
            *entry = (*entry).max(offset);
        }
        // Half the restarts also crash-recover from the verifier's own clean stop; the
        // other half leave the abort file for the next child to recover.
        if round % 2 == 0 {
            let total = verify(dir.path(), &acknowledged);
            assert!(total as i64 >= acknowledged.values().map(|o| o + 1).sum::<i64>());
        } else {
            assert!(dir.path().join("abort").exists());
        }
    }
    let total = verify(dir.path(), &acknowledged);
    assert!(total > 0, "the child never acknowledged anything");
    eprintln!(
        "{rounds} kills, {total} messages verified in {:?}",
        started.elapsed()
    );
}
