//! The replication storage (broker::replication) judged by openraft's own storage suite; a
//! restart: what openraft saved is what it reads back after the files are reopened; and a
//! follower's log store taking message batches: only with their bytes, only the bytes the
//! entry's CRC names, and never over other bytes of its own.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use broker::replication::{LogStore, StateMachine, TypeConfig};
use openraft::alias::{EntryOf, LogIdOf, VoteOf};
use openraft::impls::leader_id_adv::LeaderId;
use openraft::storage::{IOFlushed, RaftLogReader, RaftLogStorage, RaftStateMachine};
use openraft::testing::log::{StoreBuilder, Suite};
use openraft::{BasicNode, EntryPayload, LogId, Membership, StorageError};

/// Small segments, so the suite's logs of a few dozen entries span several files and its
/// truncations and purges cross segment boundaries.
const SEGMENT_BYTES: u64 = 256;

fn open(dir: &Path) -> (LogStore, StateMachine) {
    let raft = dir.join("raft");
    (
        LogStore::open(&raft, SEGMENT_BYTES).unwrap(),
        StateMachine::open(&raft).unwrap(),
    )
}

struct Fresh;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Fresh {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError<TypeConfig>> {
        let dir = tempfile::tempdir().unwrap();
        let (log, state_machine) = open(dir.path());
        Ok((dir, log, state_machine))
    }
}

#[tokio::test]
async fn the_storage_passes_openraft_s_suite() {
    Suite::test_all(Fresh).await.unwrap();
}

fn log_id(term: u64, index: u64) -> LogIdOf<TypeConfig> {
    LogId::new(LeaderId { term, node_id: 1 }, index)
}

#[tokio::test]
async fn what_openraft_saved_is_read_back_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let members: BTreeMap<u64, BasicNode> = (0..3)
        .map(|node| (node, BasicNode::new(format!("127.0.0.1:{}", 40911 + node))))
        .collect();
    let membership = Membership::new(
        vec![members.keys().copied().collect::<BTreeSet<_>>()],
        members,
    )
    .unwrap();
    let entries: Vec<EntryOf<TypeConfig>> = std::iter::once(EntryOf::<TypeConfig> {
        log_id: log_id(1, 0),
        payload: EntryPayload::Membership(membership.clone()),
    })
    .chain((1..40).map(|index| EntryOf::<TypeConfig> {
        log_id: log_id(2, index),
        payload: EntryPayload::Normal(broker::replication::Batch {
            start: index * 4096,
            len: 4096,
            crc: index as u32,
            bytes: None,
        }),
    }))
    .collect();
    let vote = VoteOf::<TypeConfig> {
        leader_id: LeaderId {
            term: 2,
            node_id: 1,
        },
        committed: true,
    };
    {
        let (mut log, mut state_machine) = open(dir.path());
        log.append(entries.clone(), IOFlushed::noop())
            .await
            .unwrap();
        log.save_vote(&vote).await.unwrap();
        log.save_committed(Some(log_id(2, 30))).await.unwrap();
        log.truncate_after(Some(log_id(2, 35))).await.unwrap();
        log.purge(log_id(2, 9)).await.unwrap();
        let applied = futures::stream::iter(entries[..31].iter().cloned().map(|e| Ok((e, None))));
        state_machine.apply(applied).await.unwrap();
    }

    let (mut log, mut state_machine) = open(dir.path());
    let state = log.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, Some(log_id(2, 9)));
    assert_eq!(state.last_log_id, Some(log_id(2, 35)));
    assert_eq!(log.read_vote().await.unwrap(), Some(vote));
    assert_eq!(log.read_committed().await.unwrap(), Some(log_id(2, 30)));
    assert_eq!(
        log.try_get_log_entries(0..100).await.unwrap(),
        entries[10..36].to_vec()
    );
    let (applied, stored) = state_machine.applied_state().await.unwrap();
    assert_eq!(applied, Some(log_id(2, 30)));
    assert_eq!(stored.log_id(), &Some(log_id(1, 0)));
    assert_eq!(stored.membership(), &membership);
}

fn put(body: Vec<u8>) -> store::PutMessage {
    store::PutMessage::new(
        message::Message::new("orders", body),
        0,
        "10.0.0.1:4000".parse().unwrap(),
        "10.0.0.2:10911".parse().unwrap(),
    )
}

/// A replica's store: it dispatches only what is applied.
fn message_store(dir: &Path) -> std::sync::Arc<store::MessageStore> {
    std::sync::Arc::new(
        store::MessageStore::open_replica(store::StoreConfig::with_root(dir), 0).unwrap(),
    )
}

fn batch_entry(index: u64, batch: broker::replication::Batch) -> EntryOf<TypeConfig> {
    EntryOf::<TypeConfig> {
        log_id: log_id(1, index),
        payload: EntryPayload::Normal(batch),
    }
}

#[tokio::test]
async fn a_follower_takes_a_batch_as_sent_cutting_an_uncommitted_tail_of_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let leader = message_store(&dir.path().join("leader"));
    let follower = message_store(&dir.path().join("follower"));
    let mut log = LogStore::open(&dir.path().join("follower/raft"), SEGMENT_BYTES)
        .unwrap()
        .with_commit_log(follower.clone())
        .unwrap();
    let stored = leader
        .append_batch(&[put(vec![1; 300]), put(vec![2; 300])])
        .unwrap();
    let start = stored.messages[0].physical_offset;
    let bytes = leader.commit_log_bytes(start, stored.end_offset).unwrap();
    let batch = broker::replication::Batch::of(start, bytes.clone());

    // Without its bytes, or with bytes that are not the batch's, nothing is taken.
    let bare = broker::replication::Batch {
        bytes: None,
        ..batch.clone()
    };
    let mut other = bytes.to_vec();
    other[100] ^= 1;
    let forged = broker::replication::Batch {
        bytes: Some(other.into()),
        ..batch.clone()
    };
    for wrong in [bare, forged] {
        let error = log
            .append([batch_entry(0, wrong)], IOFlushed::noop())
            .await
            .unwrap_err();
        println!("refused: {error}");
        assert_eq!(follower.commit_log_max_offset(), 0);
        assert_eq!(log.get_log_state().await.unwrap().last_log_id, None);
    }

    log.append([batch_entry(0, batch.clone())], IOFlushed::noop())
        .await
        .unwrap();
    assert_eq!(
        follower.commit_log_bytes(start, stored.end_offset).unwrap(),
        bytes
    );
    // Sent again, it is already there.
    log.truncate_after(None).await.unwrap();
    log.append([batch_entry(0, batch)], IOFlushed::noop())
        .await
        .unwrap();

    // A batch of its own the group never took (it led once) is cut for the leader's.
    let own = follower.append(&put(vec![3; 700])).unwrap();
    let next = leader.append(&put(vec![4; 500])).unwrap();
    let start = next.messages[0].physical_offset;
    assert_eq!(own.messages[0].physical_offset, start);
    let bytes = leader.commit_log_bytes(start, next.end_offset).unwrap();
    log.append(
        [batch_entry(
            1,
            broker::replication::Batch::of(start, bytes.clone()),
        )],
        IOFlushed::noop(),
    )
    .await
    .unwrap();
    assert_eq!(follower.commit_log_max_offset(), next.end_offset);
    assert_eq!(
        follower.commit_log_bytes(start, next.end_offset).unwrap(),
        bytes
    );

    // Never over what it applied: other bytes there are refused and nothing changes.
    follower.apply_up_to(next.end_offset).unwrap();
    let mut other = bytes.to_vec();
    other[bytes.len() - 1] ^= 1;
    let error = log
        .append(
            [batch_entry(
                2,
                broker::replication::Batch::of(start, other.into()),
            )],
            IOFlushed::noop(),
        )
        .await
        .unwrap_err();
    println!("refused: {error}");
    assert_eq!(
        follower.commit_log_bytes(start, next.end_offset).unwrap(),
        bytes
    );
    assert_eq!(
        log.get_log_state().await.unwrap().last_log_id,
        Some(log_id(1, 1))
    );
}

#[tokio::test]
async fn a_replica_reopened_cuts_what_its_raft_log_does_not_name() {
    let dir = tempfile::tempdir().unwrap();
    let store = message_store(&dir.path().join("replica"));
    let raft = dir.path().join("replica/raft");
    let mut log = LogStore::open(&raft, SEGMENT_BYTES)
        .unwrap()
        .with_commit_log(store.clone())
        .unwrap();
    let logged = store.append(&put(vec![5; 400])).unwrap();
    let start = logged.messages[0].physical_offset;
    let bytes = store.commit_log_bytes(start, logged.end_offset).unwrap();
    log.append(
        [batch_entry(0, broker::replication::Batch::of(start, bytes))],
        IOFlushed::noop(),
    )
    .await
    .unwrap();
    // Stored as a leader, never logged: its proposal died with the leadership.
    let unlogged = store.append(&put(vec![6; 400])).unwrap();
    assert!(unlogged.end_offset > logged.end_offset);
    drop(log);
    store.shutdown().unwrap();
    drop(store);

    let store = message_store(&dir.path().join("replica"));
    let _log = LogStore::open(&raft, SEGMENT_BYTES)
        .unwrap()
        .with_commit_log(store.clone())
        .unwrap();
    assert_eq!(store.commit_log_max_offset(), logged.end_offset);
}

/// `enableDLegerCommitLog` turned on over a standalone broker's store, on a replica that does
/// not take it over (only n0 does, as it starts a new group: raft_group.rs): its messages
/// are in no Raft log, and the replica refuses to start rather than cut them.
#[tokio::test]
async fn a_standalone_store_is_refused_as_a_replica_s_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("broker");
    let standalone = store::MessageStore::open(store::StoreConfig::with_root(&root)).unwrap();
    for n in 0..3u8 {
        standalone.append(&put(vec![n; 300])).unwrap();
    }
    let end = standalone.commit_log_max_offset();
    standalone.shutdown().unwrap();
    drop(standalone);

    let store = message_store(&root);
    let error = LogStore::open(&root.join("raft"), SEGMENT_BYTES)
        .unwrap()
        .with_commit_log(store.clone())
        .err()
        .expect("a replica over a standalone store")
        .to_string();
    assert!(error.contains("written without replication"), "{error}");
    assert_eq!(store.commit_log_max_offset(), end);
    assert_eq!(store.max_offset("orders", 0), 3);
}
