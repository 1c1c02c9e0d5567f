//! Sends on a replicated group's leader: a batch is stored in the leader's CommitLog, proposed
//! as a Raft entry, and acknowledged once a quorum holds it (docs/replication.md).
//!
//! Storing and queueing the proposal happen under one lock, and one task hands the queued
//! proposals to openraft in that order, so the Raft log lists batches in CommitLog order and
//! each follower's copy goes exactly where the leader's went. Storing stays synchronous, as
//! a standalone broker's append is: callers learn a batch's offsets at once and await its
//! acknowledgement after.
//!
//! Each proposal names the leadership it was stored under, and openraft refuses it under
//! any other (`with_leader`), atomically in its core; a batch stored under a leadership
//! that ended is never logged, so the first store under a new leadership first cuts every
//! CommitLog byte that no logged batch names.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use openraft::alias::CommittedLeaderIdOf;
use openraft::error::ClientWriteError;
use openraft::impls::ProgressResponder;
use parking_lot::Mutex;
use store::{AppendedMessage, MessageStore, PutMessage, WaitWith};
use tokio::sync::{mpsc, oneshot};

use super::{Batch, LogStore, Raft, TypeConfig};

/// Why a replicated append was not acknowledged.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    /// The store refused the batch: it was not stored.
    #[error(transparent)]
    Store(#[from] store::Error),
    /// This replica does not lead the group (the leader it knows of, if any).
    #[error("this replica is not the group's leader (the leader is {0:?})")]
    NotLeader(Option<u64>),
    /// Raft could not take or commit the entry: it is stored here but not acknowledged.
    #[error("replication failed: {0}")]
    Replication(String),
}

type LeaderId = CommittedLeaderIdOf<TypeConfig>;

/// A stored batch waiting to be proposed under the leadership that stored it.
struct Proposal {
    batch: Batch,
    leader: LeaderId,
    answer: oneshot::Sender<Result<(), Refused>>,
}

/// The leader's side of replicated sends.
pub struct LeaderWrites {
    store: Arc<MessageStore>,
    raft: Raft,
    log: LogStore,
    /// Held from storing a batch to queueing its proposal; holds the leadership whose
    /// unlogged tail was cut.
    order: Mutex<Option<LeaderId>>,
    proposals: mpsc::UnboundedSender<Proposal>,
}

/// A batch stored on the leader: where its messages went, and the acknowledgement.
#[derive(Debug)]
pub struct Replicated {
    pub messages: Vec<AppendedMessage>,
    pub end_offset: u64,
    pub committed: Committed,
}

/// Resolves once a quorum of the group holds the batch (flushed on each under SYNC_FLUSH),
/// or with why it may not be acknowledged.
#[derive(Debug)]
#[must_use = "a replicated batch is acknowledged only once this resolves"]
pub struct Committed(oneshot::Receiver<Result<(), Refused>>);

impl Future for Committed {
    type Output = Result<(), Refused>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx).map(|answer| {
            answer.unwrap_or_else(|_| Err(Refused::Replication("Raft stopped".into())))
        })
    }
}

impl LeaderWrites {
    /// The leader writes of `raft`, whose log store is `log` over `store`. Spawns the task
    /// that proposes (on the current tokio runtime); it ends when this is dropped.
    pub fn new(store: Arc<MessageStore>, raft: Raft, log: LogStore) -> LeaderWrites {
        let (proposals, queued) = mpsc::unbounded_channel();
        tokio::spawn(propose(raft.clone(), queued));
        LeaderWrites {
            store,
            raft,
            log,
            order: Mutex::new(None),
            proposals,
        }
    }

    /// Stores `messages` (all or none) and queues their proposal. The returned
    /// [`Committed`] resolves once a quorum holds them; until then they are stored here
    /// only, unreadable, and cut if the group never commits them. Waits (behind another
    /// append, for a segment) go through `wait_with`.
    pub fn append(
        &self,
        messages: &[PutMessage],
        wait_with: WaitWith,
    ) -> Result<Replicated, Refused> {
        // Waited for as the store waits behind another append: one stalled by a slow disk
        // must not hold every runtime worker here.
        let mut cut_under = store::lock_waiting_with(&self.order, wait_with);
        let leader = self
            .raft
            .as_leader()
            .map_err(|forward| Refused::NotLeader(forward.leader_id))?
            .to_committed_leader_id();
        if cut_under.as_ref() != Some(&leader) {
            self.log
                .cut_unlogged_tail()
                .map_err(|error| Refused::Replication(error.to_string()))?;
            *cut_under = Some(leader);
        }
        let appended = self.store.append_batch_waiting_with(messages, wait_with)?;
        let start = appended.messages[0].physical_offset;
        let bytes = self
            .store
            .commit_log_bytes(start, appended.end_offset)
            .ok_or_else(|| Refused::Replication(format!("batch at {start} not readable")))?;
        let (answer, committed) = oneshot::channel();
        // The proposer ends only with this sender dropped; a send cannot fail before.
        let _ = self.proposals.send(Proposal {
            batch: Batch::of(start, bytes),
            leader,
            answer,
        });
        Ok(Replicated {
            messages: appended.messages,
            end_offset: appended.end_offset,
            committed: Committed(committed),
        })
    }
}

/// Hands each proposal to openraft in the order queued, and answers it once committed.
async fn propose(raft: Raft, mut queued: mpsc::UnboundedReceiver<Proposal>) {
    while let Some(Proposal {
        batch,
        leader,
        answer,
    }) = queued.recv().await
    {
        let (responder, applied) = ProgressResponder::complete_only();
        if let Err(fatal) = raft
            .write(batch)
            .with_leader(leader)
            .responder(responder)
            .await
        {
            let _ = answer.send(Err(Refused::Replication(fatal.to_string())));
            continue;
        }
        // Applied, not merely committed: a committed batch becomes readable when applied,
        // and a producer told its message is stored must find it on its next pull.
        tokio::spawn(async move {
            let outcome = match applied.await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(ClientWriteError::ForwardToLeader(forward))) => {
                    Err(Refused::NotLeader(forward.leader_id))
                }
                Ok(Err(error)) => Err(Refused::Replication(error.to_string())),
                Err(_) => Err(Refused::Replication("Raft stopped".into())),
            };
            let _ = answer.send(outcome);
        });
    }
}
