//! Sends on a replicated group's leader: a batch is stored in the leader's CommitLog, proposed
//! as a Raft entry, and answered once a quorum holds it (docs/replication.md). Storing and
//! proposing happen in one order, so the Raft log lists batches in CommitLog order and each
//! follower's copy goes exactly where the leader's went.

use std::sync::Arc;

use openraft::error::ClientWriteError;
use openraft::impls::ProgressResponder;
use store::{AppendResult, MessageStore, PutMessage};

use super::{Batch, Raft};

/// Why a replicated append was not acknowledged.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error(transparent)]
    Store(#[from] store::Error),
    /// This replica does not lead the group (the leader it knows of, if any).
    #[error("this replica is not the group's leader (the leader is {0:?})")]
    NotLeader(Option<u64>),
    /// Raft could not take or commit the entry.
    #[error("replication failed: {0}")]
    Replication(String),
}

/// The leader's side of replicated sends.
pub struct LeaderWrites {
    store: Arc<MessageStore>,
    raft: Raft,
    /// Held from storing a batch to proposing it.
    order: tokio::sync::Mutex<()>,
}

impl LeaderWrites {
    pub fn new(store: Arc<MessageStore>, raft: Raft) -> LeaderWrites {
        LeaderWrites {
            store,
            raft,
            order: tokio::sync::Mutex::new(()),
        }
    }

    /// Stores `messages` and returns once a quorum of the group holds them (flushed on each,
    /// under SYNC_FLUSH). A refused proposal leaves the batch in this CommitLog uncommitted.
    pub async fn append(&self, messages: &[PutMessage]) -> Result<AppendResult, Refused> {
        let (appended, committed) = {
            let _order = self.order.lock().await;
            if !self.raft.is_leader() {
                return Err(Refused::NotLeader(self.raft.current_leader().await));
            }
            let appended = self.store.append_batch(messages)?;
            let start = appended.messages[0].physical_offset;
            let bytes = self
                .store
                .commit_log_bytes(start, appended.end_offset)
                .ok_or_else(|| Refused::Replication(format!("batch at {start} not readable")))?;
            let (responder, _log_id, committed) = ProgressResponder::new();
            self.raft
                .client_write_ff(Batch::of(start, bytes), Some(responder))
                .await
                .map_err(|fatal| Refused::Replication(fatal.to_string()))?;
            (appended, committed)
        };
        match committed.await {
            Ok(Ok(_)) => Ok(appended),
            Ok(Err(ClientWriteError::ForwardToLeader(forward))) => {
                Err(Refused::NotLeader(forward.leader_id))
            }
            Ok(Err(error)) => Err(Refused::Replication(error.to_string())),
            Err(_) => Err(Refused::Replication("Raft stopped".into())),
        }
    }
}
