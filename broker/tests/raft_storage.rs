//! The replication storage (broker::replication) judged by openraft's own storage suite, and a
//! restart: what openraft saved is what it reads back after the files are reopened.

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
