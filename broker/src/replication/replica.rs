//! One replica of a broker group, as a broker runs it: its message store, Raft over the
//! store's files, the transport serving its peers and the leader's writes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, OnceLock};

use openraft::alias::LogIdOf;
use openraft::error::{InitializeError, RaftError};
use openraft::impls::leader_id_adv::LeaderId;
use openraft::{BasicNode, LogId, Membership, StoredMembership};
use store::{MessageStore, PendingReset, PutMessage, StoreConfig, WaitWith};
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::{
    raft_config, serve, LeaderWrites, LogStore, Network, PeerAddrs, Raft, Refused, Replicated,
    Served, StateMachine, Transport, TypeConfig,
};
use crate::error::{Error, Result};

/// The Raft files' folder under the store's root.
pub const RAFT_DIR: &str = "raft";
/// Raft log segments roll at this size; an entry is a few dozen bytes.
const RAFT_SEGMENT_BYTES: u64 = 16 * 1024 * 1024;

/// The log id of a group's first entry, as openraft's `initialize` logs it on replica `id`.
fn first_log_id(id: u64) -> LogIdOf<TypeConfig> {
    LogId::new(
        LeaderId {
            term: 0,
            node_id: id,
        },
        0,
    )
}

/// Makes the group's first replica, over a store written without replication, hold its
/// messages as the group's state at the group's first entry: applied, snapshotted and
/// purged, with the group's membership. The other replicas, new, are sent the snapshot: the
/// whole CommitLog. Each step can be done again, so a replica stopped halfway through
/// finishes at its next start.
fn adopt(
    state_machine: &StateMachine,
    log: &LogStore,
    store: &MessageStore,
    id: u64,
    members: &BTreeMap<u64, String>,
) -> std::io::Result<()> {
    let log_id = first_log_id(id);
    let voters: BTreeSet<u64> = members.keys().copied().collect();
    let nodes: BTreeMap<u64, BasicNode> = members
        .iter()
        .map(|(id, addr)| (*id, BasicNode::new(addr)))
        .collect();
    let membership = Membership::new(vec![voters], nodes).map_err(std::io::Error::other)?;
    let end = store.commit_log_max_offset();
    state_machine.adopt(log_id, StoredMembership::new(Some(log_id), membership), end)?;
    log.adopt(log_id)?;
    store.apply_up_to(end).map_err(std::io::Error::other)
}

pub struct Replica {
    raft: Raft,
    store: Arc<MessageStore>,
    log: LogStore,
    writes: LeaderWrites,
    peer_addrs: PeerAddrs,
    stop: CancellationToken,
    restart: CancellationToken,
}

impl Replica {
    /// Opens replica `id` of `group` over the store `store_config` describes (its Raft files
    /// in [`RAFT_DIR`] under the store's root), serves its peers on `listener` and joins the
    /// group of `members` (replica id to Raft address, which is also where it reaches each
    /// peer: [`PeerAddrs`]). Every replica of a new group is started with the same member
    /// ids; a replica with Raft state of its own keeps it.
    /// `broker_addr` is where clients reach its broker, as peers that ask are told.
    pub async fn start(
        group: &str,
        id: u64,
        store_config: StoreConfig,
        transport: Transport,
        members: BTreeMap<u64, String>,
        broker_addr: String,
    ) -> Result<Replica> {
        let raft_dir = store_config.store_path_root_dir.join(RAFT_DIR);
        let flush = store_config.flush_disk_type;
        let io = |source| Error::Io {
            path: raft_dir.clone(),
            source,
        };
        let state_machine = StateMachine::open(&raft_dir).map_err(io)?;
        let log = LogStore::open(&raft_dir, RAFT_SEGMENT_BYTES).map_err(io)?;
        if let Some(reset) = PendingReset::find(&store_config)? {
            // Marked by a leader's request (network.rs): the messages go, then what Raft
            // applied and logged of them, and only then the mark.
            reset.clear_messages()?;
            state_machine.clear().map_err(io)?;
            log.clear().map_err(io)?;
            reset.finish()?;
            info!(
                group,
                "this replica begins again empty; its leader sends it the segments it keeps"
            );
        }
        let store = Arc::new(MessageStore::open_replica(
            store_config,
            state_machine.applied_end(),
        )?);
        let first = members.keys().next() == Some(&id);
        let held = store.commit_log_max_offset();
        let adopted = first_log_id(id);
        if first
            && held > 0
            && log.holds_nothing_past(adopted)
            && state_machine
                .applied_last()
                .is_none_or(|last| last == adopted)
        {
            adopt(&state_machine, &log, &store, id, &members).map_err(io)?;
            info!(
                group,
                commit_log_end = held,
                "this replica takes over the messages of a store written without \
                 replication; the others are sent them as a snapshot"
            );
        }
        let log = log.with_commit_log(store.clone()).map_err(io)?;
        if state_machine
            .snapshot_if_log_ends_before(log.last_index())
            .map_err(io)?
        {
            info!(
                group,
                applied = ?state_machine.applied_last(),
                log_end = ?log.last_index(),
                "this replica's record of what it applied outlived the Raft log's entries (a \
                 power loss under ASYNC_FLUSH): the applied state is its snapshot now"
            );
        }
        let peer_addrs = PeerAddrs::new(members.clone());
        let made = Arc::new(OnceLock::new());
        let raft = Raft::new(
            id,
            raft_config(group, flush),
            Network::new(
                store.clone(),
                log.clone(),
                peer_addrs.clone(),
                transport.dial,
                made.clone(),
            ),
            log.clone(),
            state_machine.with_store(store.clone()),
        )
        .await
        .map_err(|fatal| Error::Replication(fatal.to_string()))?;
        let _ = made.set(raft.clone());
        let stop = CancellationToken::new();
        let restart = CancellationToken::new();
        tokio::spawn(serve(
            transport.listen,
            Served {
                raft: raft.clone(),
                store: store.clone(),
                broker_addr: broker_addr.into(),
                restart: restart.clone(),
            },
            stop.clone(),
        ));
        // The first member logs the group's first membership; the others learn it from
        // the leader. openraft's first entry names the replica that logs it, so one replica
        // does, and a new group forms once that one has started. One with state refuses.
        if members.keys().next() == Some(&id) {
            let members: BTreeMap<u64, BasicNode> = members
                .into_iter()
                .map(|(id, addr)| (id, BasicNode::new(addr)))
                .collect();
            match raft.initialize(members).await {
                Ok(()) | Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {}
                Err(error) => return Err(Error::Replication(error.to_string())),
            }
        }
        let writes = LeaderWrites::new(store.clone(), raft.clone(), log.clone());
        Ok(Replica {
            raft,
            store,
            log,
            writes,
            peer_addrs,
            stop,
            restart,
        })
    }

    /// Resolves once this replica must be started again: its store was marked to begin
    /// again empty (a leader keeps none of its messages any more), which the next start
    /// does. The broker stops and starts itself over.
    pub async fn restart_requested(&self) {
        self.restart.cancelled().await
    }

    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    pub fn store(&self) -> &Arc<MessageStore> {
        &self.store
    }

    pub fn log(&self) -> &LogStore {
        &self.log
    }

    /// Where this replica reaches its peers' Raft ([`PeerAddrs`]).
    pub fn peer_addrs(&self) -> &PeerAddrs {
        &self.peer_addrs
    }

    /// Stores a batch on the leader and proposes it ([`LeaderWrites::append`]).
    pub fn append(
        &self,
        messages: &[PutMessage],
        wait_with: WaitWith,
    ) -> std::result::Result<Replicated, Refused> {
        self.writes.append(messages, wait_with)
    }

    /// Stops serving peers and stops Raft; the store stays open for its owner to shut down.
    pub async fn stop(&self) -> Result<()> {
        self.stop.cancel();
        self.raft
            .shutdown()
            .await
            .map_err(|error| Error::Replication(error.to_string()))
    }
}
