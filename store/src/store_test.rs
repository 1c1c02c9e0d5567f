use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use message::{property, Message, StoredMessage};
use proptest::prelude::*;

use crate::*;

pub(crate) fn small_config(dir: &std::path::Path, flush: FlushDiskType) -> StoreConfig {
    StoreConfig {
        mapped_file_size_commit_log: 64 * 1024,
        mapped_file_size_consume_queue: 20 * 50,
        flush_disk_type: flush,
        flush_interval_commit_log: 10,
        flush_interval_consume_queue: 50,
        max_hash_slot_num: 101,
        max_index_num: 200,
        ..StoreConfig::with_root(dir)
    }
}

fn put(topic: &str, queue_id: i32, body: Vec<u8>, tags: &str, keys: &str) -> PutMessage {
    let mut message = Message::new(topic, body);
    message.set_tags(tags);
    message.properties.insert(property::KEYS, keys);
    PutMessage::new(
        message,
        queue_id,
        "10.0.0.1:4000".parse().unwrap(),
        "10.0.0.2:10911".parse().unwrap(),
    )
}

fn read_all(store: &MessageStore, topic: &str, queue_id: i32) -> Vec<(i64, Vec<u8>)> {
    let mut out = Vec::new();
    let mut offset = store.min_offset(topic, queue_id);
    loop {
        let result = store.get_message(topic, queue_id, offset, 7, 1 << 20, None);
        if result.status != GetMessageStatus::Found {
            break;
        }
        for (bytes, queue_offset) in result.messages.iter().zip(&result.queue_offsets) {
            let stored = StoredMessage::parse(bytes).unwrap();
            assert_eq!(stored.queue_offset(), *queue_offset);
            assert_eq!(stored.topic().unwrap(), topic);
            stored.check_body_crc().unwrap();
            out.push((*queue_offset, stored.body().to_vec()));
        }
        offset = result.next_begin_offset;
    }
    out
}

#[test]
fn append_read_statuses_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = MessageStore::open(small_config(dir.path(), FlushDiskType::AsyncFlush)).unwrap();
    assert_eq!(
        store.get_message("T", 0, 0, 10, 1000, None).status,
        GetMessageStatus::NoMatchedLogicQueue
    );
    let mut offsets = Vec::new();
    for n in 0..300u32 {
        let tags = if n % 2 == 0 { "even" } else { "odd" };
        let result = store
            .append(&put("T", 0, vec![n as u8; 500], tags, &format!("k{n} all")))
            .unwrap();
        result.durable.wait().unwrap();
        assert_eq!(result.messages[0].queue_offset, n as i64);
        offsets.push(result.messages[0].physical_offset);
    }
    // Segments are 64 KiB, so this rolled over several times with blank markers.
    assert!(store.commit_log_max_offset() > 2 * 64 * 1024);
    let bodies = read_all(&store, "T", 0);
    assert_eq!(bodies.len(), 300);
    assert!(bodies
        .iter()
        .enumerate()
        .all(|(n, (offset, body))| *offset == n as i64 && body[0] == n as u8));

    let even = message::tags_code(Some("even"));
    let filtered = store.get_message("T", 0, 0, 10, 1 << 20, Some(&|code| code == even));
    assert_eq!(
        filtered.queue_offsets,
        vec![0, 2, 4, 6, 8, 10, 12, 14, 16, 18]
    );
    // An exact filter sees the whole record and can refuse what the tag hash let through.
    struct EvenBodies;
    impl MessageFilter for EvenBodies {
        fn matches_tags_code(&self, _: i64) -> bool {
            true
        }
        fn matches_message(&self, record: &[u8]) -> bool {
            StoredMessage::parse(record).is_ok_and(|m| m.body()[0] % 2 == 0)
        }
    }
    let exact = store.get_message("T", 0, 0, 5, 1 << 20, Some(&EvenBodies));
    assert_eq!(exact.queue_offsets, vec![0, 2, 4, 6, 8]);
    assert_eq!(exact.next_begin_offset, 9);
    assert_eq!(
        store.get_message("T", 0, 300, 10, 1000, None).status,
        GetMessageStatus::OffsetOverflowOne
    );
    let badly = store.get_message("T", 0, 400, 10, 1000, None);
    assert_eq!(
        (badly.status, badly.next_begin_offset),
        (GetMessageStatus::OffsetOverflowBadly, 300)
    );
    let limited = store.get_message("T", 0, 0, 32, 1300, None);
    assert_eq!(limited.messages.len(), 2);

    let at = store.message_at(offsets[7]).unwrap();
    assert_eq!(StoredMessage::parse(&at).unwrap().queue_offset(), 7);
    assert!(store.message_at(offsets[7] + 1).is_none());
    assert!(store.message_at(u64::MAX / 2).is_none());

    let stamp = store.store_timestamp_at("T", 0, 150).unwrap();
    let found = store.offset_by_timestamp("T", 0, stamp);
    assert!(found <= 150 && store.store_timestamp_at("T", 0, found) == Some(stamp));
    assert_eq!(store.offset_by_timestamp("T", 0, i64::MAX), 300);
    assert_eq!(store.offset_by_timestamp("T", 0, 0), 0);

    let by_key = store.query_by_key("T", "k42", 10, 0, i64::MAX);
    assert_eq!(by_key.messages.len(), 1);
    assert_eq!(
        StoredMessage::parse(&by_key.messages[0])
            .unwrap()
            .queue_offset(),
        42
    );
    assert_eq!(
        store
            .query_by_key("T", "all", 1000, 0, i64::MAX)
            .messages
            .len(),
        64
    );

    store.shutdown().unwrap();
    assert!(matches!(
        store.append(&put("T", 0, vec![1], "a", "b")),
        Err(Error::NotAvailable(_))
    ));
    drop(store);
    assert!(!dir.path().join("abort").exists());

    let store = MessageStore::open(small_config(dir.path(), FlushDiskType::AsyncFlush)).unwrap();
    assert_eq!(read_all(&store, "T", 0), bodies);
    assert_eq!(
        store
            .query_by_key("T", "k299", 10, 0, i64::MAX)
            .messages
            .len(),
        1
    );
    let next = store.append(&put("T", 0, vec![9], "a", "b")).unwrap();
    assert_eq!(next.messages[0].queue_offset, 300);
}

#[test]
fn a_deleted_topic_created_again_starts_empty() {
    let dir = tempfile::tempdir().unwrap();
    let config = small_config(dir.path(), FlushDiskType::AsyncFlush);
    let store = MessageStore::open(config.clone()).unwrap();
    for n in 0..5u8 {
        store.append(&put("Gone", 0, vec![n], "", "")).unwrap();
    }
    store.append(&put("Kept", 0, vec![9], "", "")).unwrap();
    store.delete_topic("Gone").unwrap();
    assert_eq!(store.max_offset("Gone", 0), 0);
    assert!(read_all(&store, "Gone", 0).is_empty());
    let again = store.append(&put("Gone", 0, vec![42], "", "")).unwrap();
    assert_eq!(again.messages[0].queue_offset, 0);
    assert_eq!(read_all(&store, "Gone", 0), vec![(0, vec![42])]);
    assert_eq!(read_all(&store, "Kept", 0), vec![(0, vec![9])]);
    store.shutdown().unwrap();
    drop(store);
    let store = MessageStore::open(config).unwrap();
    assert_eq!(read_all(&store, "Gone", 0), vec![(0, vec![42])]);
}

/// `behind` is what RocketMQ compares with `accessMessageInMemoryMaxRatio` to send a lagging
/// consumer to a follower: the CommitLog bytes past the last entry the read examined.
#[test]
fn a_read_says_how_far_behind_the_commit_log_s_end_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let store = MessageStore::open(small_config(dir.path(), FlushDiskType::AsyncFlush)).unwrap();
    let offsets: Vec<u64> = (0..10u8)
        .map(|n| store.append(&put("Far", 0, vec![n; 100], "", "")).unwrap())
        .map(|appended| appended.messages[0].physical_offset)
        .collect();
    store
        .append(&put("Other", 0, vec![0; 300], "", ""))
        .unwrap();
    let end = store.commit_log_max_offset();
    let first_three = store.get_message("Far", 0, 0, 3, 1 << 20, None);
    assert_eq!(first_three.messages.len(), 3);
    assert_eq!(first_three.behind, end - offsets[2]);
    let last = store.get_message("Far", 0, 9, 3, 1 << 20, None);
    assert_eq!(last.behind, end - offsets[9]);
    let caught_up = store.get_message("Far", 0, 10, 3, 1 << 20, None);
    assert_eq!(caught_up.status, GetMessageStatus::OffsetOverflowOne);
    assert_eq!(caught_up.behind, 0);
}
#[test]
fn errors_are_typed() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = small_config(dir.path(), FlushDiskType::AsyncFlush);
    config.max_message_size = 1000;
    let store = MessageStore::open(config.clone()).unwrap();
    assert!(matches!(
        store.append(&put("T", 0, vec![0; 1001], "a", "b")),
        Err(Error::MessageTooLarge {
            size: 1001,
            max: 1000
        })
    ));
    assert!(matches!(
        store.append(&put("../x", 0, vec![0], "a", "b")),
        Err(Error::IllegalTopic(_))
    ));
    let mut huge = put("T", 0, vec![0], "a", "b");
    huge.message.properties.insert("P", "x".repeat(40_000));
    assert!(matches!(store.append(&huge), Err(Error::IllegalMessage(_))));
    assert!(matches!(
        MessageStore::open(config),
        Err(Error::NotAvailable(_))
    ));
}

#[test]
fn what_the_metrics_read_follows_the_commit_log() {
    let dir = tempfile::tempdir().unwrap();
    let store = MessageStore::open(small_config(dir.path(), FlushDiskType::SyncFlush)).unwrap();
    assert_eq!(store.earliest_commit_log_time(), None);
    let flushes = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = flushes.clone();
    store.set_flush_listener(move |_took| {
        counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    });
    let first = store.append(&put("M", 0, vec![1], "", "")).unwrap();
    let stored_at = first.messages[0].store_timestamp;
    first.durable.wait().unwrap();
    let second = store.append(&put("M", 0, vec![2], "", "")).unwrap();
    second.durable.wait().unwrap();
    assert!(flushes.load(std::sync::atomic::Ordering::Relaxed) >= 1);
    assert_eq!(store.earliest_commit_log_time(), Some(stored_at));
    // SYNC_FLUSH dispatches what it flushed before the waiter returns.
    assert_eq!(store.dispatched_offset(), store.commit_log_max_offset());
    let ratio = store.disk_used_ratio().unwrap();
    assert!((0.0..=1.0).contains(&ratio), "{ratio}");
}

#[test]
fn sync_flush_group_commit_from_many_threads() {
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(
        MessageStore::open(small_config(dir.path(), FlushDiskType::SyncFlush)).unwrap(),
    );
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let store = std::sync::Arc::clone(&store);
            std::thread::spawn(move || {
                for n in 0..50u8 {
                    let result = store.append(&put("S", t, vec![n; 100], "a", "")).unwrap();
                    let end = result.end_offset;
                    result.durable.wait().unwrap();
                    assert!(store.commit_log_flushed_offset() >= end);
                    // Visible once durable.
                    assert!(store.max_offset("S", t) > result.messages[0].queue_offset);
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    for t in 0..8 {
        let bodies = read_all(&store, "S", t);
        assert_eq!(bodies.len(), 50);
        assert!(bodies
            .iter()
            .enumerate()
            .all(|(n, (_, body))| body[0] == n as u8));
    }
}

/// A store of 600 flushed messages over several CommitLog segments whose retention judges age
/// alone, or, with `force_above` 0, deletes by disk pressure whatever the host's disk is like.
fn store_for_retention(dir: &std::path::Path, force_above: u64) -> MessageStore {
    let store = MessageStore::open(StoreConfig {
        disk_max_used_space_ratio: 100,
        disk_space_clean_forcibly_ratio: force_above,
        ..small_config(dir, FlushDiskType::SyncFlush)
    })
    .unwrap();
    let appended: Vec<_> = (0..600u32)
        .map(|n| {
            store
                .append(&put(&format!("R{}", n % 3), 0, vec![n as u8; 400], "a", ""))
                .unwrap()
        })
        .collect();
    // Retention keeps what is not yet flushed; waiting on the last flush (a group commit
    // covers all before it) keeps the flusher's timing out of the test.
    appended.into_iter().last().unwrap().durable.wait().unwrap();
    store
}

#[test]
fn retention_deletes_old_segments_and_moves_queue_minimums() {
    let dir = tempfile::tempdir().unwrap();
    // The host's own disk usage must not decide this test: a build filling the disk past
    // the default force ratio would delete unexpired segments.
    let store = store_for_retention(dir.path(), 100);
    let before = store.commit_log_min_offset();
    let deleted = store.delete_expired_files(SystemTime::now()).unwrap();
    assert_eq!(deleted, 0, "nothing is expired yet");
    let later = SystemTime::now() + Duration::from_secs(73 * 3600);
    let deleted = store.delete_expired_files(later).unwrap();
    assert!(deleted > 0);
    let min = store.commit_log_min_offset();
    assert!(min > before);
    for topic in ["R0", "R1", "R2"] {
        let queue_min = store.min_offset(topic, 0);
        assert!(queue_min > 0);
        // Everything from the queue's min on is still readable.
        let bodies = read_all(&store, topic, 0);
        assert_eq!(bodies.len() as i64, store.max_offset(topic, 0) - queue_min);
        assert_eq!(bodies[0].0, queue_min);
        let too_small = store.get_message(topic, 0, 0, 1, 1000, None);
        assert_eq!(
            (too_small.status, too_small.next_begin_offset),
            (GetMessageStatus::OffsetTooSmall, queue_min)
        );
    }
    // The active segment always survives.
    assert!(store.commit_log_max_offset() > min);
}

#[test]
fn a_snapshot_s_piece_after_a_segment_s_end_cuts_a_record_the_group_never_had_there() {
    let dir = tempfile::tempdir().unwrap();
    let leader = MessageStore::open(small_config(
        &dir.path().join("leader"),
        FlushDiskType::SyncFlush,
    ))
    .unwrap();
    let segment = leader.config().mapped_file_size_commit_log;
    while segment - leader.commit_log_max_offset() % segment >= 5_000 {
        leader.append(&put("T", 0, vec![1; 1000], "a", "")).unwrap();
    }
    // A record that does not fit what the segment has left: a blank marker ends it.
    let from = leader.commit_log_max_offset();
    let rolled = leader.append(&put("T", 0, vec![2; 6000], "a", "")).unwrap();
    rolled.durable.wait().unwrap();
    let start = rolled.messages[0].physical_offset;
    assert!(start > from && start.is_multiple_of(segment));

    let follower = MessageStore::open_replica(
        small_config(&dir.path().join("follower"), FlushDiskType::SyncFlush),
        0,
    )
    .unwrap();
    let mut at = 0;
    while let Some((piece, records)) = leader.commit_log_records(at, from, 1 << 20).unwrap() {
        follower.copy_committed(at, piece, &records).unwrap();
        at = piece + records.len() as u64;
    }
    follower.apply_up_to(from).unwrap();
    // Stored where the group has its blank marker, never committed (a deposed leader's).
    let own = follower
        .append(&put("T", 0, vec![9; 100], "a", ""))
        .unwrap();
    assert_eq!(own.messages[0].physical_offset, from);

    let (piece, records) = leader
        .commit_log_records(from, rolled.end_offset, 1 << 20)
        .unwrap()
        .unwrap();
    assert_eq!(piece, start);
    follower.copy_committed(from, piece, &records).unwrap();
    assert_eq!(follower.commit_log_max_offset(), rolled.end_offset);
    assert!(
        follower.message_at(from).is_none(),
        "the record at {from} stayed"
    );
    assert_eq!(
        follower.commit_log_bytes(start, rolled.end_offset),
        leader.commit_log_bytes(start, rolled.end_offset)
    );
    follower.durable_up_to(rolled.end_offset).wait().unwrap();
    follower.apply_up_to(rolled.end_offset).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while follower.dispatched_offset() < rolled.end_offset && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(read_all(&follower, "T", 0), read_all(&leader, "T", 0));
}

#[test]
fn retention_keeps_what_a_copy_still_reads() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_for_retention(dir.path(), 100);
    let segment = store.config().mapped_file_size_commit_log;
    let hold = store.hold_retention(segment + 100);
    let later = SystemTime::now() + Duration::from_secs(73 * 3600);
    assert_eq!(store.delete_expired_files(later).unwrap(), 1);
    drop(hold);
    assert!(store.delete_expired_files(later).unwrap() > 0);
}

#[test]
fn retention_keeps_what_a_replica_s_raft_log_still_names() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_for_retention(dir.path(), 100);
    let segment = store.config().mapped_file_size_commit_log;
    let kept = 2 * segment + 100;
    store.keep_from(kept);
    let later = SystemTime::now() + Duration::from_secs(73 * 3600);
    assert_eq!(store.delete_expired_files(later).unwrap(), 2);
    assert_eq!(store.commit_log_min_offset(), 2 * segment);
    store.keep_from(u64::MAX);
    assert!(store.delete_expired_files(later).unwrap() > 0);
    assert!(store.commit_log_min_offset() > 2 * segment);
}

#[test]
fn a_disk_past_the_force_ratio_deletes_unexpired_segments() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_for_retention(dir.path(), 0);
    let before = store.commit_log_min_offset();
    let deleted = store.delete_expired_files(SystemTime::now()).unwrap();
    assert!(deleted > 0, "a full disk deletes what has not expired");
    assert!(store.commit_log_min_offset() > before);
    assert!(store.commit_log_max_offset() > store.commit_log_min_offset());
    for topic in ["R0", "R1", "R2"] {
        let queue_min = store.min_offset(topic, 0);
        assert_eq!(
            read_all(&store, topic, 0).len() as i64,
            store.max_offset(topic, 0) - queue_min
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]
    #[test]
    fn interleaved_appends_read_back_in_order(
        ops in proptest::collection::vec((0usize..3, 0i32..3, 1usize..3000, any::<bool>()), 1..120)
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut expected: HashMap<(String, i32), Vec<Vec<u8>>> = HashMap::new();
        {
            let store = MessageStore::open(small_config(dir.path(), FlushDiskType::AsyncFlush)).unwrap();
            for (n, (topic, queue_id, len, batch)) in ops.iter().enumerate() {
                let topic = format!("P{topic}");
                let bodies: Vec<Vec<u8>> = (0..if *batch { 3 } else { 1 }).map(|i| {
                    let mut body = vec![(n + i) as u8; *len];
                    body[0] = i as u8;
                    body
                }).collect();
                let puts: Vec<_> = bodies.iter().map(|b| put(&topic, *queue_id, b.clone(), "t", "")).collect();
                let result = store.append_batch(&puts).unwrap();
                let queue = expected.entry((topic, *queue_id)).or_default();
                for (message, body) in result.messages.iter().zip(bodies) {
                    prop_assert_eq!(message.queue_offset, queue.len() as i64);
                    queue.push(body);
                }
            }
            for ((topic, queue_id), bodies) in &expected {
                let read: Vec<Vec<u8>> = read_all(&store, topic, *queue_id).into_iter().map(|(_, b)| b).collect();
                prop_assert_eq!(&read, bodies);
            }
        }
        let store = MessageStore::open(small_config(dir.path(), FlushDiskType::AsyncFlush)).unwrap();
        for ((topic, queue_id), bodies) in &expected {
            let read: Vec<Vec<u8>> = read_all(&store, topic, *queue_id).into_iter().map(|(_, b)| b).collect();
            prop_assert_eq!(&read, bodies);
        }
    }
}

/// The CommitLog segment files of a store under `dir`, by name.
fn commit_log_files(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir.join("commitlog"))
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            let name = entry.file_name().into_string().unwrap();
            (name, std::fs::read(entry.path()).unwrap())
        })
        .collect();
    files.sort();
    files
}

#[test]
fn a_replica_s_copy_holds_the_same_bytes_at_the_same_offsets() {
    let (leader_dir, follower_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let config = |dir| small_config(dir, FlushDiskType::SyncFlush);
    let leader = MessageStore::open(config(leader_dir.path())).unwrap();
    let follower = MessageStore::open(config(follower_dir.path())).unwrap();
    for n in 0..120u32 {
        // Batches of 1 to 4 over two topics, 700 to 3,700 bytes each: 64 KiB segments roll
        // several times, with blank markers, between and inside the copies.
        let batch: Vec<PutMessage> = (0..1 + n % 4)
            .map(|i| {
                let topic = if n % 3 == 0 { "A" } else { "B" };
                put(
                    topic,
                    (n % 2) as i32,
                    vec![(n + i) as u8; 700 + (n as usize * 97) % 3000],
                    "t",
                    "k",
                )
            })
            .collect();
        let written = leader.append_batch(&batch).unwrap();
        written.durable.wait().unwrap();
        let start = written.messages[0].physical_offset;
        let bytes = leader.commit_log_bytes(start, written.end_offset).unwrap();
        let copied = follower.append_copy(start, &bytes).unwrap();
        copied.durable.wait().unwrap();
        assert_eq!(copied.messages, written.messages, "batch {n}");
        assert_eq!(copied.end_offset, written.end_offset);
    }
    assert!(leader.commit_log_max_offset() > 3 * 64 * 1024);
    for (topic, queue) in [("A", 0), ("A", 1), ("B", 0), ("B", 1)] {
        assert_eq!(
            read_all(&follower, topic, queue),
            read_all(&leader, topic, queue)
        );
    }

    // What does not continue this log, or is not whole records where they claim to be, is
    // refused and changes nothing.
    let end = follower.commit_log_max_offset();
    let last = leader.append(&put("A", 0, vec![1; 100], "t", "k")).unwrap();
    let start = last.messages[0].physical_offset;
    let bytes = leader
        .commit_log_bytes(start, last.end_offset)
        .unwrap()
        .to_vec();
    // A flipped body byte (the record's CRC covers the body; the Raft entry's CRC, the rest).
    let mut flipped = bytes.clone();
    flipped[bytes.len() / 2] ^= 0x40;
    let refusals = [
        (start + 8, bytes.clone()),
        (start, bytes[..bytes.len() - 1].to_vec()),
        (start, Vec::new()),
        (start, flipped),
    ];
    for (at, bad) in refusals {
        match follower.append_copy(at, &bad) {
            Err(Error::ReplicaMismatch { .. }) => {}
            other => panic!("a bad copy at {at} of {} bytes: {other:?}", bad.len()),
        }
        assert_eq!(follower.commit_log_max_offset(), end);
    }
    follower
        .append_copy(start, &bytes)
        .unwrap()
        .durable
        .wait()
        .unwrap();

    // The follower, leading now, goes on with the queue offsets the copies left.
    let next = follower
        .append(&put("A", 0, vec![2; 100], "t", "k"))
        .unwrap();
    next.durable.wait().unwrap();
    assert_eq!(
        next.messages[0].queue_offset,
        last.messages[0].queue_offset + 1
    );
    assert!(next.messages[0].store_timestamp >= last.messages[0].store_timestamp);
    let again = leader.append(&put("A", 0, vec![2; 100], "t", "k")).unwrap();
    assert_eq!(
        again.messages[0].physical_offset,
        next.messages[0].physical_offset
    );
    leader.shutdown().unwrap();
    follower.shutdown().unwrap();
    drop((leader, follower));

    // Apart from the last record's store time, the files are the same byte for byte.
    let (leader_files, follower_files) = (
        commit_log_files(leader_dir.path()),
        commit_log_files(follower_dir.path()),
    );
    let names = |files: &[(String, Vec<u8>)]| files.iter().map(|f| f.0.clone()).collect::<Vec<_>>();
    assert_eq!(names(&follower_files), names(&leader_files));
    let copied_end = next.messages[0].physical_offset as usize;
    let flat =
        |files: &[(String, Vec<u8>)]| files.iter().flat_map(|f| f.1.clone()).collect::<Vec<u8>>();
    assert!(flat(&follower_files)[..copied_end] == flat(&leader_files)[..copied_end]);
    let reopened = MessageStore::open(config(follower_dir.path())).unwrap();
    assert_eq!(read_all(&reopened, "A", 0).last().unwrap().1, vec![2; 100]);
}

#[test]
fn a_snapshot_s_pieces_copy_the_records_a_replica_lacks_even_past_retired_segments() {
    let dir = tempfile::tempdir().unwrap();
    let leader = store_for_retention(&dir.path().join("leader"), 100);
    let later = SystemTime::now() + Duration::from_secs(73 * 3600);
    assert!(leader.delete_expired_files(later).unwrap() > 0);
    for n in 0..400u32 {
        let put = put(&format!("R{}", n % 3), 0, vec![n as u8; 400], "a", "");
        leader.append(&put).unwrap().durable.wait().unwrap();
    }
    let (first, end) = (
        leader.commit_log_min_offset(),
        leader.commit_log_max_offset(),
    );
    assert!(first > 0 && end > first + 2 * 64 * 1024);

    // Pieces of at most 5,000 bytes, smaller than what a segment has left when it rolled:
    // the follower rolls where the leader did, and an empty one begins at the leader's
    // oldest segment.
    let config = small_config(&dir.path().join("follower"), FlushDiskType::SyncFlush);
    let follower = MessageStore::open_replica(config.clone(), 0).unwrap();
    let mut at = first;
    let mut pieces = 0;
    while let Some((start, records)) = leader.commit_log_records(at, end, 5_000).unwrap() {
        assert!(records.len() <= 5_000 && start >= at);
        follower.copy_committed(at, start, &records).unwrap();
        at = start + records.len() as u64;
        pieces += 1;
    }
    assert_eq!(at, end);
    assert!(pieces > 40, "{pieces} pieces");
    // Below what the leader retains there is nothing to copy.
    assert!(leader.commit_log_records(0, end, 5_000).is_err());
    assert_eq!(follower.commit_log_min_offset(), first);
    assert_eq!(follower.commit_log_max_offset(), end);
    // Applied as a snapshot is; under SYNC_FLUSH, dispatched once flushed.
    follower.durable_up_to(end).wait().unwrap();
    follower.apply_up_to(end).unwrap();
    let dispatched = |store: &MessageStore, end| {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while store.dispatched_offset() < end && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    dispatched(&follower, end);
    for topic in ["R0", "R1", "R2"] {
        assert_eq!(follower.max_offset(topic, 0), leader.max_offset(topic, 0));
        assert_eq!(read_all(&follower, topic, 0), read_all(&leader, topic, 0));
    }

    // Copying again what it holds writes nothing; other bytes than the group's, past what
    // it applied, are cut.
    let (start, records) = leader
        .commit_log_records(first, end, 5_000)
        .unwrap()
        .unwrap();
    follower.copy_committed(first, start, &records).unwrap();
    assert_eq!(follower.commit_log_max_offset(), end);
    follower
        .append(&put("R0", 0, vec![9; 300], "a", ""))
        .unwrap()
        .durable
        .wait()
        .unwrap();
    let ours = follower.commit_log_max_offset();
    let theirs = leader.append(&put("R1", 0, vec![7; 500], "a", "")).unwrap();
    theirs.durable.wait().unwrap();
    let (start, records) = leader
        .commit_log_records(end, theirs.end_offset, 5_000)
        .unwrap()
        .unwrap();
    assert_eq!(start, theirs.messages[0].physical_offset);
    follower.copy_committed(end, start, &records).unwrap();
    assert_ne!(follower.commit_log_max_offset(), ours);
    assert_eq!(follower.commit_log_max_offset(), theirs.end_offset);
    follower.durable_up_to(theirs.end_offset).wait().unwrap();
    follower.apply_up_to(theirs.end_offset).unwrap();
    dispatched(&follower, theirs.end_offset);
    assert_eq!(read_all(&follower, "R1", 0), read_all(&leader, "R1", 0));
    assert_eq!(read_all(&follower, "R0", 0), read_all(&leader, "R0", 0));
    follower.shutdown().unwrap();
    drop(follower);

    // Reopened, it starts where the leader's retained segments do.
    let reopened = MessageStore::open(config).unwrap();
    assert_eq!(reopened.commit_log_min_offset(), first);
    assert_eq!(reopened.commit_log_max_offset(), theirs.end_offset);
    assert_eq!(read_all(&reopened, "R2", 0), read_all(&leader, "R2", 0));
}

#[test]
fn a_replica_dispatches_what_it_applied_and_cuts_an_uncommitted_tail() {
    let dir = tempfile::tempdir().unwrap();
    let config = || small_config(dir.path(), FlushDiskType::SyncFlush);
    let store = MessageStore::open_replica(config(), 0).unwrap();
    let batch = |n: u8| -> Vec<PutMessage> {
        (0..3)
            .map(|i| put("T", 0, vec![n * 10 + i; 900], "t", "k"))
            .collect()
    };
    let mut ends = Vec::new();
    for n in 0..4 {
        let stored = store.append_batch(&batch(n)).unwrap();
        stored.durable.wait().unwrap();
        ends.push(stored.end_offset);
    }
    // Stored and flushed, but nothing is readable until applied.
    assert_eq!(store.max_offset("T", 0), 0);
    assert_eq!(store.dispatched_offset(), 0);
    store.apply_up_to(ends[1]).unwrap();
    assert_eq!(store.max_offset("T", 0), 6);
    assert_eq!(store.dispatched_offset(), ends[1]);

    // Below what is applied nothing is cut.
    let refused = store.cut_tail(ends[0]);
    assert!(
        matches!(refused, Err(Error::ReplicaMismatch { .. })),
        "{refused:?}"
    );
    assert_eq!(store.commit_log_max_offset(), ends[3]);

    // The last two batches were never committed: cut, their queue offsets are taken again.
    store.cut_tail(ends[2]).unwrap();
    assert_eq!(store.commit_log_max_offset(), ends[2]);
    assert!(store.commit_log_bytes(ends[2], ends[3]).is_none());
    let next = store.append(&put("T", 0, vec![99; 900], "t", "k")).unwrap();
    assert_eq!(next.messages[0].physical_offset, ends[2]);
    assert_eq!(next.messages[0].queue_offset, 9);
    next.durable.wait().unwrap();
    store.shutdown().unwrap();
    drop(store);

    // Reopened with what it applied: the unapplied records stay stored but unread, their
    // queue offsets taken, and the cut records do not come back.
    let store = MessageStore::open_replica(config(), ends[1]).unwrap();
    assert_eq!(store.commit_log_max_offset(), next.end_offset);
    assert_eq!(store.max_offset("T", 0), 6);
    let after = store.append(&put("T", 0, vec![98; 900], "t", "k")).unwrap();
    assert_eq!(after.messages[0].queue_offset, 10);
    after.durable.wait().unwrap();
    store.apply_up_to(after.end_offset).unwrap();
    let bodies: Vec<u8> = read_all(&store, "T", 0)
        .into_iter()
        .map(|(_, body)| body[0])
        .collect();
    assert_eq!(bodies, [0, 1, 2, 10, 11, 12, 20, 21, 22, 99, 98]);
}
