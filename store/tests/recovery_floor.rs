//! Recovery never cuts the CommitLog below the checkpointed flushed offset: damage there
//! stops the start with an error naming the segment and offset, deletes nothing, and
//! `store repair` then sets the damaged record aside and keeps every other message.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;

use message::{Message, StoredMessage};
use store::{Error, FlushDiskType, GetMessageStatus, MessageStore, PutMessage, StoreConfig};

const COUNT: usize = 50;

fn config(dir: &Path) -> StoreConfig {
    StoreConfig {
        mapped_file_size_commit_log: 1 << 20,
        mapped_file_size_consume_queue: 20 * 100,
        flush_disk_type: FlushDiskType::SyncFlush,
        max_hash_slot_num: 101,
        max_index_num: 1000,
        ..StoreConfig::with_root(dir)
    }
}

fn put(n: usize) -> PutMessage {
    let mut message = Message::new("T", vec![n as u8; 1000]);
    message.properties.insert("KEYS", format!("key{n}"));
    PutMessage::new(
        message,
        0,
        "127.0.0.1:1".parse().unwrap(),
        "127.0.0.1:2".parse().unwrap(),
    )
}

/// Appends `COUNT` SYNC-acknowledged messages; returns each one's CommitLog offset.
fn fill(dir: &Path) -> Vec<u64> {
    let store = MessageStore::open(config(dir)).unwrap();
    let offsets = (0..COUNT)
        .map(|n| {
            let result = store.append(&put(n)).unwrap();
            result.durable.wait().unwrap();
            result.messages[0].physical_offset
        })
        .collect();
    store.shutdown().unwrap();
    offsets
}

/// Leaves the store as a crash would have, with a checkpoint taken when `dispatched` and
/// `flushed` were the consume-queue and CommitLog watermarks (RocketMQ's layout plus
/// Rocketry's two fields and CRC).
fn crash_with_checkpoint(dir: &Path, dispatched: u64, flushed: u64) {
    let mut bytes = [0u8; 4096];
    bytes[32..40].copy_from_slice(&(flushed as i64).to_be_bytes());
    bytes[40..48].copy_from_slice(&(dispatched as i64).to_be_bytes());
    let crc = crc32fast::hash(&bytes[..48]);
    bytes[48..52].copy_from_slice(&crc.to_be_bytes());
    std::fs::write(dir.join("checkpoint"), bytes).unwrap();
    std::fs::write(dir.join("abort"), "1").unwrap();
}

fn commit_log(dir: &Path) -> std::fs::File {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(dir.join("commitlog").join(format!("{:020}", 0)))
        .unwrap()
}

/// Flips one byte in the middle of message `n`'s 1,000-byte body, as a bad sector would.
fn damage_body(dir: &Path, offsets: &[u64], n: usize) {
    commit_log(dir)
        .write_all_at(&[0xEE], offsets[n] + 500)
        .unwrap();
}

/// (queue offset, first body byte) of every message served, checking each CRC except at
/// the queue offset in `unchecked`.
fn bodies(store: &MessageStore, unchecked: Option<i64>) -> Vec<(i64, u8)> {
    let mut found = Vec::new();
    let mut offset = 0;
    while offset < store.max_offset("T", 0) {
        let result = store.get_message("T", 0, offset, 32, 1 << 20, None);
        for (bytes, queue_offset) in result.messages.iter().zip(&result.queue_offsets) {
            let stored = StoredMessage::parse(bytes).unwrap();
            if unchecked != Some(*queue_offset) {
                stored.check_body_crc().unwrap();
            }
            found.push((*queue_offset, stored.body()[0]));
        }
        offset = result.next_begin_offset;
    }
    found
}

#[test]
fn rebuilding_the_index_never_cuts_below_the_flushed_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let offsets = fill(dir.path());
    // A crash after message 40 was checkpointed but with later index entries on disk: the
    // index file is rebuilt from its start (offset 0), past a damaged old record.
    crash_with_checkpoint(dir.path(), offsets[40], offsets[40]);
    damage_body(dir.path(), &offsets, 10);

    let store = MessageStore::open(config(dir.path())).unwrap();
    assert_eq!(store.max_offset("T", 0), COUNT as i64, "messages were cut");
    // Message 10 itself is served as stored: reads do not check CRCs (docs/reliability.md).
    let found = bodies(&store, Some(10));
    assert_eq!(found.len(), COUNT);
    for n in [0, 9, 11, 40, 49] {
        assert_eq!(found[n], (n as i64, n as u8));
        let keyed = store.query_by_key("T", &format!("key{n}"), 4, 0, i64::MAX);
        assert_eq!(keyed.messages.len(), 1, "key{n} not indexed again");
    }
}

#[test]
fn damage_below_the_flushed_checkpoint_stops_the_start_and_deletes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let offsets = fill(dir.path());
    // Consume queues were checkpointed up to message 20, the CommitLog flushed up to 40:
    // recovery walks from 20 and meets damage at 30, which was durable.
    crash_with_checkpoint(dir.path(), offsets[20], offsets[40]);
    damage_body(dir.path(), &offsets, 30);
    let before = std::fs::read(dir.path().join("commitlog").join(format!("{:020}", 0))).unwrap();

    let error = MessageStore::open(config(dir.path()))
        .err()
        .expect("start refused");
    match &error {
        Error::CorruptBelowCheckpoint {
            path,
            offset,
            flushed,
            ..
        } => {
            assert_eq!(*offset, offsets[30]);
            assert_eq!(*flushed, offsets[40]);
            assert!(path.ends_with(format!("{:020}", 0)), "{path:?}");
        }
        other => panic!("unexpected error {other:?}"),
    }
    let text = error.to_string();
    assert!(text.contains("store repair"), "{text}");
    let after = std::fs::read(dir.path().join("commitlog").join(format!("{:020}", 0))).unwrap();
    assert!(before == after, "a refused start changed the CommitLog");
    // It stays refused: nothing was cut to make the next start succeed.
    assert!(MessageStore::open(config(dir.path())).is_err());
}

#[test]
fn store_repair_quarantines_the_damage_and_keeps_every_other_message() {
    let dir = tempfile::tempdir().unwrap();
    let offsets = fill(dir.path());
    crash_with_checkpoint(dir.path(), offsets[20], offsets[40]);
    damage_body(dir.path(), &offsets, 30);
    assert!(MessageStore::open(config(dir.path())).is_err());

    let report = MessageStore::repair(&config(dir.path())).unwrap();
    assert_eq!(report.quarantined.len(), 1, "{report:?}");
    let range = &report.quarantined[0];
    assert_eq!((range.start, range.end), (offsets[30], offsets[31]));
    assert!(range.reason.contains("CRC"), "{}", range.reason);
    assert_eq!(
        std::fs::read(&range.saved_to).unwrap().len() as u64,
        offsets[31] - offsets[30]
    );

    let store = MessageStore::open(config(dir.path())).unwrap();
    let found = bodies(&store, None);
    let expected: Vec<(i64, u8)> = (0..COUNT)
        .filter(|n| *n != 30)
        .map(|n| (n as i64, n as u8))
        .collect();
    assert_eq!(found, expected);
    assert!(store
        .query_by_key("T", "key30", 4, 0, i64::MAX)
        .messages
        .is_empty());
    assert_eq!(
        store
            .query_by_key("T", "key31", 4, 0, i64::MAX)
            .messages
            .len(),
        1
    );
    assert_eq!(
        store.get_message("T", 0, 30, 1, 1 << 20, None).status,
        GetMessageStatus::Found,
        "a pull at the quarantined offset moves on to the next message"
    );
    let appended = store.append(&put(COUNT)).unwrap();
    assert_eq!(appended.messages[0].queue_offset, COUNT as i64);
    appended.durable.wait().unwrap();
    store.shutdown().unwrap();
    drop(store);

    // A second repair finds nothing left to do, and the store opens as before.
    let again = MessageStore::repair(&config(dir.path())).unwrap();
    assert!(again.quarantined.is_empty(), "{again:?}");
    let store = MessageStore::open(config(dir.path())).unwrap();
    assert_eq!(
        bodies(&store, None).len(),
        COUNT,
        "{:?}",
        bodies(&store, None)
    );
}
