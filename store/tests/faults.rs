//! Disk faults injected at the store's fault points (the `failpoints` feature, test builds
//! only): a failed flush or checkpoint fences writes for good, and a dispatch error after
//! an ASYNC_FLUSH append does not fail a message that was stored.

use std::path::Path;
use std::time::{Duration, Instant};

use fail::FailScenario;
use message::Message;
use store::{Error, FlushDiskType, MessageStore, PutMessage, StoreConfig};

fn config(dir: &Path, flush: FlushDiskType) -> StoreConfig {
    StoreConfig {
        mapped_file_size_commit_log: 1 << 20,
        mapped_file_size_consume_queue: 20 * 100,
        flush_disk_type: flush,
        flush_interval_consume_queue: 50,
        max_hash_slot_num: 101,
        max_index_num: 1000,
        ..StoreConfig::with_root(dir)
    }
}

fn put(body: &str) -> PutMessage {
    PutMessage::new(
        Message::new("T", body.to_string()),
        0,
        "127.0.0.1:1".parse().unwrap(),
        "127.0.0.1:2".parse().unwrap(),
    )
}

fn bodies(store: &MessageStore) -> Vec<Vec<u8>> {
    let result = store.get_message("T", 0, 0, 32, 1 << 20, None);
    result
        .messages
        .iter()
        .map(|bytes| {
            message::StoredMessage::parse(bytes)
                .unwrap()
                .body()
                .to_vec()
        })
        .collect()
}

#[test]
fn a_failed_flush_fences_writes_and_never_publishes_the_failed_range() {
    let scenario = FailScenario::setup();
    let dir = tempfile::tempdir().unwrap();
    let store = MessageStore::open(config(dir.path(), FlushDiskType::SyncFlush)).unwrap();
    let first = store.append(&put("durable")).unwrap();
    first.durable.wait().unwrap();
    let flushed = store.commit_log_flushed_offset();

    fail::cfg("store::commitlog::flush", "return").unwrap();
    let failed = store.append(&put("lost flush")).unwrap();
    assert!(matches!(failed.durable.wait(), Err(Error::FlushFailed(_))));
    // The disk "recovers", as Linux makes it look after an EIO: nothing may flush again.
    fail::remove("store::commitlog::flush");
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(store.commit_log_flushed_offset(), flushed);
    assert!(matches!(
        store.append(&put("refused")),
        Err(Error::WritesFenced(_))
    ));
    assert!(store.write_fence().unwrap().contains("flush failed"));
    assert!(matches!(store.checkpoint(), Err(Error::WritesFenced(_))));
    // Reads go on; a stop leaves `abort`, so the next start recovers.
    assert_eq!(bodies(&store)[0], b"durable");
    store.shutdown().unwrap();
    drop(store);
    assert!(dir.path().join("abort").exists());
    let store = MessageStore::open(config(dir.path(), FlushDiskType::SyncFlush)).unwrap();
    assert_eq!(bodies(&store)[0], b"durable");
    assert!(store.append(&put("after restart")).is_ok());
    scenario.teardown();
}

#[test]
fn a_failed_checkpoint_fences_writes() {
    let scenario = FailScenario::setup();
    let dir = tempfile::tempdir().unwrap();
    // No periodic checkpoint: the fault must fire in the one asked for below.
    let config = StoreConfig {
        flush_interval_consume_queue: 3_600_000,
        ..config(dir.path(), FlushDiskType::AsyncFlush)
    };
    let store = MessageStore::open(config).unwrap();
    store.append(&put("one")).unwrap();
    fail::cfg("store::checkpoint", "1*return").unwrap();
    assert!(store.checkpoint().is_err());
    assert!(matches!(
        store.append(&put("two")),
        Err(Error::WritesFenced(_))
    ));
    scenario.teardown();
}

#[test]
fn a_dispatch_error_after_an_async_append_still_acknowledges_it() {
    let scenario = FailScenario::setup();
    let dir = tempfile::tempdir().unwrap();
    let store = MessageStore::open(config(dir.path(), FlushDiskType::AsyncFlush)).unwrap();
    fail::cfg("store::dispatch", "1*return").unwrap();
    // Stored: failing it would make the client send it again.
    let appended = store.append(&put("stored")).unwrap();
    appended.durable.wait().unwrap();
    // Dispatch is retried in the background and the message becomes readable.
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.max_offset("T", 0) < 1 {
        assert!(Instant::now() < deadline, "never dispatched");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(bodies(&store), vec![b"stored".to_vec()]);
    scenario.teardown();
}

#[test]
fn a_roll_waits_for_a_slow_background_segment_instead_of_racing_it() {
    let scenario = FailScenario::setup();
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig {
        mapped_file_size_commit_log: 64 * 1024,
        ..config(dir.path(), FlushDiskType::AsyncFlush)
    };
    // The first segment is made at once; every later creation takes 5.2 s. The roll used
    // to give up on the background file after 5 s and make the same file itself, which
    // failed with EEXIST once the background thread got there first.
    fail::cfg("store::commitlog::create", "1*off->sleep(5200)").unwrap();
    let store = MessageStore::open(config).unwrap();
    let body = "r".repeat(20 * 1024);
    for _ in 0..6 {
        store
            .append(&put(&body))
            .expect("a roll onto a slow segment waits for it");
    }
    assert_eq!(store.max_offset("T", 0), 6);
    fail::remove("store::commitlog::create");
    scenario.teardown();
}

#[test]
fn a_message_whose_sync_flush_failed_is_never_served() {
    let scenario = FailScenario::setup();
    let dir = tempfile::tempdir().unwrap();
    let store = MessageStore::open(config(dir.path(), FlushDiskType::SyncFlush)).unwrap();
    store
        .append(&put("durable"))
        .unwrap()
        .durable
        .wait()
        .unwrap();
    fail::cfg("store::commitlog::flush", "return").unwrap();
    let failed = store.append(&put("not durable")).unwrap();
    assert!(failed.durable.wait().is_err());
    fail::remove("store::commitlog::flush");
    // The maintenance thread's dispatch catch-up (every 50 ms here) must not publish it.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(store.max_offset("T", 0), 1);
    assert_eq!(bodies(&store), vec![b"durable".to_vec()]);
    scenario.teardown();
}

#[test]
fn a_deleted_topic_stays_deleted_after_a_crash() {
    let scenario = FailScenario::setup();
    let dir = tempfile::tempdir().unwrap();
    let store = MessageStore::open(config(dir.path(), FlushDiskType::AsyncFlush)).unwrap();
    for n in 0..5 {
        store.append(&put(&format!("old {n}"))).unwrap();
    }
    store.delete_topic("T").unwrap();
    store.append(&put("new")).unwrap();
    // Nothing flushed the new message; a crash may lose it, but the old ones must not
    // come back from a recovery that dispatches the CommitLog again.
    store.crash();
    drop(store);
    let store = MessageStore::open(config(dir.path(), FlushDiskType::AsyncFlush)).unwrap();
    let served = bodies(&store);
    assert!(
        served.iter().all(|body| body == b"new"),
        "deleted messages came back: {served:?}"
    );
    scenario.teardown();
}

#[test]
fn a_replica_that_cut_below_its_checkpoint_opens_again_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig {
        mapped_file_size_commit_log: 64 * 1024,
        ..config(dir.path(), FlushDiskType::AsyncFlush)
    };
    // A replica's store: dispatched only as far as applied (nothing here), so any of its
    // tail may be cut, as a new leader's truncation cuts an old leader's.
    let store = MessageStore::open_replica(config.clone(), 0).unwrap();
    let offsets: Vec<u64> = (0..40)
        .map(|n| {
            let appended = store
                .append(&put(&format!("{n}:{}", "x".repeat(4000))))
                .unwrap();
            appended.messages[0].physical_offset
        })
        .collect();
    let end = store.commit_log_max_offset();
    assert!(end > 2 * 64 * 1024);
    store.flush_up_to(end).unwrap();
    store.checkpoint().unwrap();

    // Cut into the first segment: the later ones go, below the checkpoint's flushed offset.
    let cut = offsets[5];
    store.cut_tail(cut).unwrap();
    store.crash();
    drop(store);
    let store = MessageStore::open_replica(config, 0)
        .unwrap_or_else(|error| panic!("{}", error.with_sources()));
    assert_eq!(store.commit_log_max_offset(), cut);
}
