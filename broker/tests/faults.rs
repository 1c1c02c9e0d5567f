//! Disk faults injected into a real `rocketry standalone` through the store's fault points
//! (FAILPOINTS; compiled into test builds only): a failed flush fences writes and loses no
//! acknowledged message, a stalled disk does not stall heartbeats or other queues' pulls,
//! and damage below the checkpoint stops the start until `rocketry store repair`.

mod support;

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use protocol::body::HeartbeatData;
use protocol::header::{pull_sys_flag, PullMessageRequestHeader, SendMessageRequestHeader};
use protocol::{Client, ResponseCode};
use support::*;

const TIMEOUT: Duration = Duration::from_secs(30);

fn send_header(topic: &str) -> SendMessageRequestHeader {
    SendMessageRequestHeader {
        producer_group: "faults_producer".into(),
        topic: topic.into(),
        default_topic: "TBW102".into(),
        default_topic_queue_nums: 1,
        queue_id: 0,
        born_timestamp: 1,
        ..SendMessageRequestHeader::default()
    }
}

fn pull_header(topic: &str, offset: i64) -> PullMessageRequestHeader {
    PullMessageRequestHeader {
        consumer_group: "faults_reader".into(),
        topic: topic.into(),
        queue_id: 0,
        queue_offset: offset,
        max_msg_nums: 32,
        sys_flag: pull_sys_flag::SUBSCRIPTION,
        subscription: Some("*".into()),
        ..Default::default()
    }
}

fn body(n: usize) -> Vec<u8> {
    format!("message-{n:05}-").repeat(64).into_bytes()
}

/// Every message of queue 0 of `topic`, as (queue offset, body), each CRC checked.
async fn read_queue(client: &Client, topic: &str) -> Vec<(i64, Vec<u8>)> {
    let mut found = Vec::new();
    let mut offset = 0;
    loop {
        let pulled = client
            .pull_message(&pull_header(topic, offset))
            .await
            .unwrap();
        let messages = pulled.messages().unwrap();
        if messages.is_empty() {
            if pulled.header.next_begin_offset > offset {
                offset = pulled.header.next_begin_offset;
                continue;
            }
            return found;
        }
        for message in messages {
            message.check_body_crc().unwrap();
            found.push((message.queue_offset(), message.body().to_vec()));
            offset = message.queue_offset() + 1;
        }
    }
}

fn remote_code(error: &protocol::Error) -> (i32, String) {
    match error {
        protocol::Error::Remote { code, remark } => (*code, remark.clone().unwrap_or_default()),
        other => panic!("not a refusal: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_flush_fences_sends_and_keeps_every_acknowledged_message() {
    // Under SYNC_FLUSH every send is one flush: the 21st flush fails with EIO.
    let mut rocketry = Rocketry::standalone_with_env(
        "flushDiskType=SYNC_FLUSH\n",
        &[("FAILPOINTS", "store::commitlog::flush=20*off->return")],
    );
    let addr = rocketry.broker_addr.clone().unwrap();
    let client = Client::connect(&addr).await.unwrap();
    for n in 0..20 {
        let sent = client
            .send_message(send_header("Fenced"), body(n))
            .await
            .unwrap();
        assert_eq!(sent.code, ResponseCode::Success.as_i32());
    }
    let failed = client
        .send_message(send_header("Fenced"), body(20))
        .await
        .expect_err("the send whose flush failed is not acknowledged");
    let (code, remark) = remote_code(&failed);
    assert_eq!(code, ResponseCode::SystemError.as_i32(), "{remark}");
    assert!(remark.contains("flush"), "{remark}");

    // From now on every send is refused, with a remark that says why, although the fault
    // point would let the next flush "succeed" (as Linux does after an EIO).
    for n in 21..24 {
        let refused = client
            .send_message(send_header("Fenced"), body(n))
            .await
            .expect_err("writes are fenced");
        let (code, remark) = remote_code(&refused);
        assert_eq!(code, ResponseCode::ServiceNotAvailable.as_i32(), "{remark}");
        assert!(
            remark.contains("refuses writes") && remark.contains("flush failed"),
            "{remark}"
        );
    }
    // Acknowledged messages are still served.
    let read = read_queue(&client, "Fenced").await;
    assert!(read.len() >= 20, "{} read", read.len());
    for (n, (offset, got)) in read.iter().take(20).enumerate() {
        assert_eq!((*offset, got), (n as i64, &body(n)));
    }
    assert!(rocketry.log_text().contains("store writes fenced"));
    // The broker says so to tools too (mqadmin brokerStatus shows these keys).
    let status = client.get_broker_runtime_info().await.unwrap().table;
    assert_eq!(
        status.get("brokerActive").map(String::as_str),
        Some("false")
    );
    assert!(
        status
            .get("writeFenceReason")
            .is_some_and(|reason| reason.contains("flush failed")),
        "{status:?}"
    );

    // After a restart on a healthy disk every acknowledged message is there, and sends
    // work again.
    drop(client);
    assert!(rocketry.terminate().success());
    rocketry.env.clear();
    rocketry.restart();
    let client = Client::connect(&addr).await.unwrap();
    let read = read_queue(&client, "Fenced").await;
    for (n, (offset, got)) in read.iter().take(20).enumerate() {
        assert_eq!((*offset, got), (n as i64, &body(n)));
    }
    let sent = client
        .send_message(send_header("Fenced"), body(99))
        .await
        .unwrap();
    assert_eq!(sent.header.queue_offset, read.len() as i64);
    assert!(!rocketry.log_text().contains("panicked"));
}

/// Waits until the broker has logged `count` changes of its fault points.
async fn fault_changes_seen(rocketry: &Rocketry, count: usize) {
    let deadline = Instant::now() + TIMEOUT;
    while rocketry.log_text().matches("fault points changed").count() < count {
        assert!(Instant::now() < deadline, "{}", rocketry.log_text());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Fault points change while the broker runs (the chaos test's slow disks come and go
/// this way): one set and then cleared before any flush fails nothing, and one set again
/// fails the next flush.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_points_set_while_the_broker_runs_take_effect_and_clear() {
    let rocketry = Rocketry::standalone("flushDiskType=SYNC_FLUSH\n");
    let client = Client::connect(rocketry.broker_addr.as_deref().unwrap())
        .await
        .unwrap();
    let flush_fails = "store::commitlog::flush=return";
    rocketry.set_faults(flush_fails);
    fault_changes_seen(&rocketry, 1).await;
    rocketry.set_faults("");
    fault_changes_seen(&rocketry, 2).await;
    let sent = client
        .send_message(send_header("Changing"), body(0))
        .await
        .unwrap();
    assert_eq!(sent.code, ResponseCode::Success.as_i32());

    rocketry.set_faults(flush_fails);
    fault_changes_seen(&rocketry, 3).await;
    let failed = client
        .send_message(send_header("Changing"), body(1))
        .await
        .expect_err("the flush fails");
    let (code, remark) = remote_code(&failed);
    assert_eq!(code, ResponseCode::SystemError.as_i32(), "{remark}");
    assert!(remark.contains("flush"), "{remark}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_segment_creation_leaves_heartbeats_and_other_queues_answered() {
    // The first CommitLog segment is made at once; the next one, prepared in the background
    // right after, takes 5 s, so the append that rolls over to it waits for it.
    let rocketry = Rocketry::standalone_with_env(
        "mappedFileSizeCommitLog=1048576\n",
        &[("FAILPOINTS", "store::commitlog::create=1*off->sleep(5000)")],
    );
    let addr = rocketry.broker_addr.clone().unwrap();
    let client = Client::connect(&addr).await.unwrap();
    for n in 0..10 {
        client
            .send_message(send_header("Quiet"), body(n))
            .await
            .unwrap();
    }
    // Four producers write 2 MiB to another topic: one of them rolls into the stall and
    // the others queue behind the CommitLog's writer lock.
    let stalled = Instant::now();
    let mut producers = Vec::new();
    for p in 0..4 {
        let addr = addr.clone();
        producers.push(tokio::spawn(async move {
            let client = Client::connect(&addr).await.unwrap();
            client.set_default_timeout(TIMEOUT);
            let mut slowest = Duration::ZERO;
            for n in 0..8 {
                let started = Instant::now();
                client
                    .send_message(send_header(&format!("Busy{p}")), vec![b'b'; 64 * 1024 + n])
                    .await
                    .unwrap();
                slowest = slowest.max(started.elapsed());
            }
            slowest
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Meanwhile heartbeats and pulls of the quiet topic are answered at once (well within
    // the stall).
    let heartbeat = HeartbeatData {
        client_id: "faults-client".into(),
        ..HeartbeatData::default()
    };
    let mut served = 0;
    while stalled.elapsed() < Duration::from_secs(4) {
        let started = Instant::now();
        client.heartbeat(&heartbeat).await.unwrap();
        let pulled = client.pull_message(&pull_header("Quiet", 0)).await.unwrap();
        assert_eq!(pulled.messages().unwrap().len(), 10);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "a heartbeat and a pull took {:?} while the disk stalled",
            started.elapsed()
        );
        served += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut slowest = Duration::ZERO;
    for producer in producers {
        slowest = slowest.max(producer.await.unwrap());
    }
    // The stall did happen: some send waited for the slow segment.
    assert!(
        slowest >= Duration::from_secs(2),
        "no send stalled: {slowest:?}"
    );
    assert!(served >= 5, "{served}");
}

/// CommitLog offsets of the records in the first segment of `store`, and where they end.
fn record_offsets(store: &Path) -> (Vec<u64>, u64) {
    let bytes = std::fs::read(segment(store)).unwrap();
    let mut offsets = Vec::new();
    let mut at = 0usize;
    while let Ok(message::RecordHead::Message { size }) = message::RecordHead::peek(&bytes[at..]) {
        offsets.push(at as u64);
        at += size;
    }
    (offsets, at as u64)
}

fn segment(store: &Path) -> PathBuf {
    store.join("commitlog").join(format!("{:020}", 0))
}

/// The checkpoint a crash would leave when consume queues were durable up to `dispatched`
/// and the CommitLog up to `flushed` (RocketMQ's layout plus Rocketry's fields and CRC).
fn crash_with_checkpoint(store: &Path, dispatched: u64, flushed: u64) {
    let mut bytes = [0u8; 4096];
    bytes[32..40].copy_from_slice(&(flushed as i64).to_be_bytes());
    bytes[40..48].copy_from_slice(&(dispatched as i64).to_be_bytes());
    let crc = crc32fast::hash(&bytes[..48]);
    bytes[48..52].copy_from_slice(&crc.to_be_bytes());
    std::fs::write(store.join("checkpoint"), bytes).unwrap();
    std::fs::write(store.join("abort"), "1").unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damage_below_the_checkpoint_stops_the_start_and_store_repair_keeps_the_rest() {
    let mut rocketry = Rocketry::standalone("flushDiskType=SYNC_FLUSH\n");
    let addr = rocketry.broker_addr.clone().unwrap();
    let client = Client::connect(&addr).await.unwrap();
    for n in 0..50 {
        client
            .send_message(send_header("Damaged"), body(n))
            .await
            .unwrap();
    }
    drop(client);
    assert!(rocketry.terminate().success());

    let store = rocketry.data_dir.join("store");
    let (offsets, end) = record_offsets(&store);
    assert_eq!(offsets.len(), 50);
    // A crash left consume queues checkpointed at message 20 and the CommitLog flushed to
    // its end; then a bad sector flipped a byte of message 30's body.
    crash_with_checkpoint(&store, offsets[20], end);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(segment(&store))
        .unwrap();
    file.write_all_at(&[0xEE], offsets[30] + 600).unwrap();
    drop(file);

    let (status, log) = rocketry.start_expecting_exit();
    assert!(!status.success());
    assert!(
        log.contains(&format!("CommitLog offset {}", offsets[30]))
            && log.contains("below the checkpointed flushed offset")
            && log.contains("rocketry store repair"),
        "{log}"
    );
    assert!(!log.contains("panicked"), "{log}");

    let repair = std::process::Command::new(env!("CARGO_BIN_EXE_rocketry"))
        .args(["store", "repair", "--data-dir"])
        .arg(&store)
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&repair.stdout);
    assert!(
        repair.status.success(),
        "{printed}{}",
        String::from_utf8_lossy(&repair.stderr)
    );
    assert!(
        printed.contains(&format!(
            "quarantined CommitLog [{}, {})",
            offsets[30], offsets[31]
        )),
        "{printed}"
    );

    rocketry.restart();
    let client = Client::connect(&addr).await.unwrap();
    let read = read_queue(&client, "Damaged").await;
    let expected: Vec<(i64, Vec<u8>)> = (0..50)
        .filter(|n| *n != 30)
        .map(|n| (n as i64, body(n)))
        .collect();
    assert_eq!(read.len(), expected.len());
    assert!(read == expected, "messages other than 30 changed");
    let sent = client
        .send_message(send_header("Damaged"), body(50))
        .await
        .unwrap();
    assert_eq!(sent.header.queue_offset, 50);
    assert!(!rocketry.log_text().contains("panicked"));
}
