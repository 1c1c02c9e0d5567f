//! Three replicas of one group in this process, each with its own message store, over real
//! TCP on localhost: openraft with Rocketry's storage, transport and leader writes
//! (broker::replication). The leader stores message batches and they are committed on all
//! three; with the leader stopped, the other two elect a new one and go on; the old leader,
//! restarted from its files, catches up; every replica then holds the same Raft log, and every
//! acknowledged message at the same CommitLog offset with the same bytes; a write refused
//! for want of a lease leaves no hole. (Processes, SIGKILL and real clients are in
//! dledger.rs and chaos.rs.)

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{self, Duration, Instant};

use broker::replication::{Replica, Transport};
use message::Message;
use openraft::async_runtime::WatchReceiver;
use openraft::storage::RaftLogReader;
use openraft::{Instant as _, ServerState};
use store::{FlushDiskType, PutMessage, StoreConfig};
use tokio::net::TcpListener;

const WAIT: Option<Duration> = Some(Duration::from_secs(20));

/// Replica `id`'s store under `dir`.
fn store_config(id: u64, dir: &Path) -> StoreConfig {
    StoreConfig {
        // Small segments: the batches roll across several, with blank markers.
        mapped_file_size_commit_log: 64 * 1024,
        flush_disk_type: FlushDiskType::SyncFlush,
        ..StoreConfig::with_root(dir.join(format!("n{id}")))
    }
}

/// A listener for each of three replicas, their addresses, and the group's members.
async fn listen() -> (Vec<TcpListener>, Vec<String>, BTreeMap<u64, String>) {
    let mut listeners = Vec::new();
    for _ in 0..3 {
        listeners.push(TcpListener::bind("127.0.0.1:0").await.unwrap());
    }
    let addrs: Vec<String> = listeners
        .iter()
        .map(|l| l.local_addr().unwrap().to_string())
        .collect();
    let members = addrs
        .iter()
        .enumerate()
        .map(|(id, addr)| (id as u64, addr.clone()))
        .collect();
    (listeners, addrs, members)
}

async fn start(
    id: u64,
    dir: &Path,
    listener: TcpListener,
    members: &BTreeMap<u64, String>,
) -> Replica {
    Replica::start(
        "broker-a",
        id,
        store_config(id, dir),
        Transport::tcp(listener),
        members.clone(),
        broker_addr(id),
    )
    .await
    .unwrap()
}

/// Starts a replica on each listener, in order.
async fn start_all(
    dir: &Path,
    listeners: Vec<TcpListener>,
    members: &BTreeMap<u64, String>,
) -> BTreeMap<u64, Replica> {
    let mut replicas = BTreeMap::new();
    for (id, listener) in listeners.into_iter().enumerate() {
        let replica = start(id as u64, dir, listener, members).await;
        replicas.insert(id as u64, replica);
    }
    replicas
}

async fn stop_all(replicas: BTreeMap<u64, Replica>) {
    for (_, replica) in replicas {
        stop(replica).await;
    }
}

/// What replica `id` says its broker's address is.
fn broker_addr(id: u64) -> String {
    format!("10.0.0.{id}:10911")
}

async fn stop(replica: Replica) {
    replica.stop().await.unwrap();
    replica.store().shutdown().unwrap();
}

async fn leader(replicas: &BTreeMap<u64, Replica>) -> u64 {
    let (_, any) = replicas.iter().next().unwrap();
    let metrics = any
        .raft()
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
    leads(replicas, leader).await;
    leader
}

/// Batch `n`: 1 to 3 messages of 500 to 2,600 bytes to one of the 4 queues of `orders`.
fn batch(n: u64) -> Vec<PutMessage> {
    (0..1 + n % 3)
        .map(|i| {
            let body = vec![(n + i) as u8; 500 + (n as usize * 131) % 2100];
            PutMessage::new(
                Message::new("orders", body),
                (n % 4) as i32,
                "10.0.0.1:4000".parse().unwrap(),
                "10.0.0.2:10911".parse().unwrap(),
            )
        })
        .collect()
}

/// Sends batches `first..first + count` through the leader; each returns once a quorum holds
/// it. Returns each message's CommitLog offset.
async fn send(leader: &Replica, first: u64, count: u64) -> Vec<u64> {
    let mut offsets = Vec::new();
    for n in first..first + count {
        let stored = leader.append(&batch(n), &|wait| wait()).unwrap();
        stored.committed.await.unwrap();
        offsets.extend(stored.messages.iter().map(|m| m.physical_offset));
    }
    offsets
}

/// Waits until every replica applied the leader's last entry, and returns its index.
async fn caught_up(replicas: &BTreeMap<u64, Replica>, leader: u64) -> Option<u64> {
    let last = replicas[&leader]
        .raft()
        .metrics()
        .borrow_watched()
        .last_log_index;
    for replica in replicas.values() {
        replica
            .raft()
            .wait(WAIT)
            .applied_index_at_least(last, "caught up with the leader")
            .await
            .unwrap();
    }
    last
}

/// Waits until every replica applied the leader's last entry, then checks their logs match.
async fn assert_same_logs(replicas: &mut BTreeMap<u64, Replica>, leader: u64) {
    let last = caught_up(replicas, leader).await;
    let mut logs = Vec::new();
    for (id, replica) in replicas.iter_mut() {
        let entries = replica
            .log()
            .clone()
            .try_get_log_entries(0..)
            .await
            .unwrap();
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

/// Every replica holds each acknowledged message at its offset, with the leader's bytes.
/// Each replica's consumers read them too: every queue ends where the leader's does.
async fn assert_same_messages(replicas: &BTreeMap<u64, Replica>, leader: u64, offsets: &[u64]) {
    let end = replicas[&leader].store().commit_log_max_offset();
    for (id, replica) in replicas {
        assert_eq!(replica.store().commit_log_max_offset(), end, "replica {id}");
        for offset in offsets {
            let message = replica.store().message_at(*offset);
            assert!(message.is_some(), "replica {id} has no message at {offset}");
            assert_eq!(message, replicas[&leader].store().message_at(*offset));
        }
        // Applied, so dispatched once flushed here (SYNC_FLUSH: within the flush thread's
        // next round).
        let deadline = Instant::now() + Duration::from_secs(10);
        while replica.store().dispatched_offset() < end && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        for queue in 0..4 {
            assert_eq!(
                replica.store().max_offset("orders", queue),
                replicas[&leader].store().max_offset("orders", queue),
                "replica {id}'s queue {queue}"
            );
        }
    }
}

/// Waits until replica `id` leads and holds its lease.
async fn leads(replicas: &BTreeMap<u64, Replica>, id: u64) {
    replicas[&id]
        .raft()
        .wait(WAIT)
        .metrics(
            |m| {
                // Acknowledged lately: an acknowledgement from before its followers stopped
                // is no lease (openraft's lasts an election timeout, 1 s at the least).
                m.state == ServerState::Leader
                    && m.last_quorum_acked
                        .is_some_and(|at| at.elapsed() < Duration::from_millis(500))
            },
            "the leader holds its lease",
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_of_three_replicates_messages_elects_a_new_leader_and_catches_the_old_one_up() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            "openraft=warn,broker=debug",
        ))
        .with_test_writer()
        .try_init();
    let dir = tempfile::tempdir().unwrap();
    let (listeners, addrs, members) = listen().await;
    let mut replicas = start_all(dir.path(), listeners, &members).await;

    let first_leader = leader(&replicas).await;
    // Each replica tells its peers where its broker is (a follower passes sends on there).
    for (id, addr) in &members {
        assert_eq!(
            broker::replication::broker_addr_of(addr).await.unwrap(),
            broker_addr(*id)
        );
    }
    let mut offsets = send(&replicas[&first_leader], 0, 80).await;
    assert_same_logs(&mut replicas, first_leader).await;
    assert_same_messages(&replicas, first_leader, &offsets).await;
    assert!(replicas[&first_leader].store().commit_log_max_offset() > 3 * 64 * 1024);

    // The leader stops; the other two elect one of themselves and commit without it.
    let stopped = Instant::now();
    stop(replicas.remove(&first_leader).unwrap()).await;
    let second_leader = leader(&replicas).await;
    println!(
        "replica {second_leader} leads {:?} after replica {first_leader} stopped",
        stopped.elapsed()
    );
    assert_ne!(second_leader, first_leader);
    offsets.extend(send(&replicas[&second_leader], 80, 30).await);

    // The old leader comes back from its files on its own address and catches up.
    let listener = TcpListener::bind(&addrs[first_leader as usize])
        .await
        .unwrap();
    let restarted = start(first_leader, dir.path(), listener, &members).await;
    replicas.insert(first_leader, restarted);
    offsets.extend(send(&replicas[&second_leader], 110, 10).await);
    assert_same_logs(&mut replicas, second_leader).await;
    assert_same_messages(&replicas, second_leader, &offsets).await;

    // A follower holding a batch the group never logged (stored once as a leader whose
    // proposal died with its leadership) is given the leadership: it cuts that batch before
    // its first, and every replica goes on from the same offsets.
    let third = (0..3)
        .find(|id| *id != first_leader && *id != second_leader)
        .unwrap();
    let unlogged = replicas[&third]
        .store()
        .append(&PutMessage::new(
            Message::new("orders", vec![0xee; 900]),
            0,
            "10.0.0.1:4000".parse().unwrap(),
            "10.0.0.2:10911".parse().unwrap(),
        ))
        .unwrap();
    unlogged.durable.wait().unwrap();
    replicas[&second_leader]
        .raft()
        .trigger()
        .transfer_leader(third)
        .await
        .unwrap();
    leads(&replicas, third).await;
    let sent = send(&replicas[&third], 120, 10).await;
    assert_eq!(sent[0], unlogged.messages[0].physical_offset);
    offsets.extend(sent);
    assert_same_logs(&mut replicas, third).await;
    assert_same_messages(&replicas, third, &offsets).await;

    // A leader that hears from no follower for an election timeout has no lease, and
    // openraft refuses its writes while it still leads: the batch it stored is cut, and
    // once the followers are back the next batch goes where it was, not after a hole the
    // followers would refuse.
    let followers: Vec<u64> = (0..3).filter(|id| *id != third).collect();
    for id in &followers {
        stop(replicas.remove(id).unwrap()).await;
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let refused = replicas[&third]
        .append(
            &[PutMessage::new(
                Message::new("orders", vec![0xdd; 700]),
                1,
                "10.0.0.1:4000".parse().unwrap(),
                "10.0.0.2:10911".parse().unwrap(),
            )],
            &|wait| wait(),
        )
        .unwrap();
    let refused_at = refused.messages[0].physical_offset;
    assert!(refused.committed.await.is_err(), "a write without a lease");
    for id in &followers {
        let listener = TcpListener::bind(&addrs[*id as usize]).await.unwrap();
        let restarted = start(*id, dir.path(), listener, &members).await;
        replicas.insert(*id, restarted);
    }
    let fourth = leader(&replicas).await;
    let sent = send(&replicas[&fourth], 130, 10).await;
    if fourth == third {
        assert_eq!(sent[0], refused_at, "the refused batch was not cut");
    }
    println!(
        "replica {fourth} leads after the lease ran out on replica {third}; its next batch \
         at {} (the refused one was at {refused_at})",
        sent[0]
    );
    offsets.extend(sent);
    assert_same_logs(&mut replicas, fourth).await;
    assert_same_messages(&replicas, fourth, &offsets).await;
    println!(
        "{} messages at the same offsets on the 3 replicas, CommitLogs ending at {}",
        offsets.len(),
        replicas[&fourth].store().commit_log_max_offset()
    );

    stop_all(replicas).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_stored_faster_than_they_are_logged_are_all_committed_across_segment_ends() {
    let dir = tempfile::tempdir().unwrap();
    let (listeners, _, members) = listen().await;
    let replicas = start_all(dir.path(), listeners, &members).await;
    let leader_id = leader(&replicas).await;
    // Stored without waiting for any: the proposer finds many queued, joins those whose
    // bytes run on into one entry, and keeps the one that begins a new segment (after a
    // blank marker) for the next; none may be lost, nor leave a hole before the next.
    let mut stored = Vec::new();
    for n in 0..200 {
        stored.push(
            replicas[&leader_id]
                .append(&batch(n), &|wait| wait())
                .unwrap(),
        );
    }
    assert!(replicas[&leader_id].store().commit_log_max_offset() > 4 * 64 * 1024);
    let mut offsets = Vec::new();
    for (n, stored) in stored.into_iter().enumerate() {
        if let Err(refused) = stored.committed.await {
            panic!(
                "batch {n} at {}: {refused}",
                stored.messages[0].physical_offset
            );
        }
        offsets.extend(stored.messages.iter().map(|m| m.physical_offset));
    }
    caught_up(&replicas, leader_id).await;
    assert_same_messages(&replicas, leader_id, &offsets).await;
    assert_same_commit_logs(&replicas, leader_id);
    stop_all(replicas).await;
}

/// Every replica's CommitLog holds the leader's bytes, from its first byte to its end.
fn assert_same_commit_logs(replicas: &BTreeMap<u64, Replica>, leader: u64) {
    let leader = replicas[&leader].store();
    let (first, end) = (
        leader.commit_log_min_offset(),
        leader.commit_log_max_offset(),
    );
    for (id, replica) in replicas {
        let store = replica.store();
        assert_eq!(store.commit_log_min_offset(), first, "replica {id}");
        let mut at = first;
        while let Some((start, records)) = leader.commit_log_records(at, end, 1 << 20).unwrap() {
            let held = store.commit_log_bytes(start, start + records.len() as u64);
            assert!(held == Some(records.clone()), "replica {id} at {start}");
            at = start + records.len() as u64;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_s_own_store_becomes_its_group_s_and_new_replicas_are_sent_its_messages() {
    let dir = tempfile::tempdir().unwrap();
    // What a broker without replication stored, over several segments.
    let standalone = store::MessageStore::open(store_config(0, dir.path())).unwrap();
    let mut offsets = Vec::new();
    for n in 0..120 {
        let stored = standalone.append_batch(&batch(n)).unwrap();
        stored.durable.wait().unwrap();
        offsets.extend(stored.messages.iter().map(|m| m.physical_offset));
    }
    let held = standalone.commit_log_max_offset();
    assert!(held > 3 * 64 * 1024);
    standalone.shutdown().unwrap();
    drop(standalone);

    // It restarts as n0 of three, beside two new replicas.
    let (listeners, _, members) = listen().await;
    let replicas = start_all(dir.path(), listeners, &members).await;
    let first_leader = leader(&replicas).await;
    assert_eq!(first_leader, 0, "only n0 knows the group at first");
    offsets.extend(send(&replicas[&0], 120, 30).await);
    caught_up(&replicas, 0).await;
    assert_same_messages(&replicas, 0, &offsets).await;
    assert_same_commit_logs(&replicas, 0);
    for id in [1, 2] {
        let metrics = replicas[&id].raft().metrics().borrow_watched().clone();
        assert!(
            metrics.snapshot.is_some(),
            "replica {id} was sent a snapshot"
        );
    }
    println!(
        "{} bytes of a standalone store, then 30 batches, on the 3 replicas",
        held
    );

    // It can lose its leadership, and a new replica leads the group with all of it.
    replicas[&0]
        .raft()
        .trigger()
        .transfer_leader(2)
        .await
        .unwrap();
    leads(&replicas, 2).await;
    offsets.extend(send(&replicas[&2], 150, 10).await);
    caught_up(&replicas, 2).await;
    assert_same_messages(&replicas, 2, &offsets).await;
    stop_all(replicas).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_behind_the_purged_log_is_sent_the_records_it_lacks() {
    let dir = tempfile::tempdir().unwrap();
    let (listeners, addrs, members) = listen().await;
    let mut replicas = start_all(dir.path(), listeners, &members).await;
    let leader_id = leader(&replicas).await;
    let mut offsets = send(&replicas[&leader_id], 0, 20).await;
    caught_up(&replicas, leader_id).await;

    // A follower stops; the leader goes on, snapshots and purges its log.
    let behind = (0..3).find(|id| *id != leader_id).unwrap();
    stop(replicas.remove(&behind).unwrap()).await;
    offsets.extend(send(&replicas[&leader_id], 20, 80).await);
    let last = snapshot_and_purge(&replicas[&leader_id]).await;

    // Back, it is sent the records from where it had applied, and goes on with the group.
    let listener = TcpListener::bind(&addrs[behind as usize]).await.unwrap();
    replicas.insert(behind, start(behind, dir.path(), listener, &members).await);
    offsets.extend(send(&replicas[&leader_id], 100, 10).await);
    caught_up(&replicas, leader_id).await;
    assert_same_messages(&replicas, leader_id, &offsets).await;
    assert_same_commit_logs(&replicas, leader_id);
    let snapshot = replicas[&behind].raft().metrics().borrow_watched().snapshot;
    assert!(
        snapshot.is_some_and(|s| s.index >= last),
        "replica {behind} installed the leader's snapshot, not its entries: {snapshot:?}"
    );
    stop_all(replicas).await;
}

/// A replica's snapshot of the last entry it applied, and its log purged up to it; returns
/// that entry's index.
async fn snapshot_and_purge(replica: &Replica) -> u64 {
    let raft = replica.raft().clone();
    let last = raft.metrics().borrow_watched().last_applied.unwrap().index;
    raft.trigger().snapshot().await.unwrap();
    raft.wait(WAIT)
        .metrics(
            |m| m.snapshot.is_some_and(|s| s.index >= last),
            "a snapshot of the last applied entry",
        )
        .await
        .unwrap();
    raft.trigger().purge_log(last).await.unwrap();
    raft.wait(WAIT)
        .metrics(
            |m| m.purged.is_some_and(|p| p.index >= last),
            "the log purged",
        )
        .await
        .unwrap();
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_behind_the_leader_s_oldest_segment_begins_again_and_catches_up() {
    let dir = tempfile::tempdir().unwrap();
    let (listeners, addrs, members) = listen().await;
    let mut replicas = start_all(dir.path(), listeners, &members).await;
    let leader_id = leader(&replicas).await;
    send(&replicas[&leader_id], 0, 20).await;
    caught_up(&replicas, leader_id).await;

    // A follower stops. The others go on over many segments, snapshot, purge their logs
    // and retire every segment they may (as fileReservedTime would, hours later).
    let behind = (0..3).find(|id| *id != leader_id).unwrap();
    let left = replicas.remove(&behind).unwrap();
    let its_end = left.store().commit_log_max_offset();
    stop(left).await;
    let mut offsets = send(&replicas[&leader_id], 20, 300).await;
    caught_up(&replicas, leader_id).await;
    let later = time::SystemTime::now() + Duration::from_secs(1000 * 3600);
    for replica in replicas.values() {
        snapshot_and_purge(replica).await;
        assert!(replica.store().delete_expired_files(later).unwrap() > 0);
    }
    let retained = replicas[&leader_id].store().commit_log_min_offset();
    assert!(retained > its_end, "{retained} <= {its_end}");
    offsets.retain(|offset| *offset >= retained);

    // Back, it is told to begin again: it marks its store and asks to be started over.
    let listener = TcpListener::bind(&addrs[behind as usize]).await.unwrap();
    let back = start(behind, dir.path(), listener, &members).await;
    tokio::time::timeout(Duration::from_secs(30), back.restart_requested())
        .await
        .expect("the replica asked to be started over");
    stop(back).await;
    // Started over, it holds nothing of its own, and is sent the leader's retained segments.
    let listener = TcpListener::bind(&addrs[behind as usize]).await.unwrap();
    replicas.insert(behind, start(behind, dir.path(), listener, &members).await);
    offsets.extend(send(&replicas[&leader_id], 320, 10).await);
    caught_up(&replicas, leader_id).await;
    assert_same_messages(&replicas, leader_id, &offsets).await;
    assert_same_commit_logs(&replicas, leader_id);
    stop_all(replicas).await;
}
