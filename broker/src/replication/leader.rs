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
//!
//! openraft also refuses writes within one leadership: while the leader's lease has run out
//! (no quorum heard from for an election timeout: a paused process, a stalled network) and
//! while it hands leadership over. A batch refused so must not leave a hole in the log that
//! a later batch of the same leadership steps over (the followers would refuse that batch,
//! and a refused append stops their Raft). So each proposal is known logged or refused
//! before the next goes to openraft; once one is refused, every batch stored after it is
//! refused too, and the next store cuts the CommitLog back to the end of the last logged
//! batch.

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

impl Refused {
    /// The same refusal, for another send of the same entry.
    fn again(&self) -> Refused {
        match self {
            Refused::NotLeader(leader) => Refused::NotLeader(*leader),
            Refused::Replication(why) => Refused::Replication(why.clone()),
            Refused::Store(error) => Refused::Replication(error.to_string()),
        }
    }
}

type LeaderId = CommittedLeaderIdOf<TypeConfig>;

/// A stored batch waiting to be proposed under the leadership that stored it.
struct Proposal {
    batch: Batch,
    leader: LeaderId,
    /// The run of stores it belongs to: a new run begins with each cut.
    run: u64,
    answer: oneshot::Sender<Result<(), Refused>>,
}

/// What appends hold while they store and queue, in order.
#[derive(Default)]
struct Order {
    /// The leadership whose unlogged tail was cut.
    cut_under: Option<LeaderId>,
    run: u64,
}

/// The leader's side of replicated sends.
pub struct LeaderWrites {
    store: Arc<MessageStore>,
    raft: Raft,
    log: LogStore,
    /// Held from storing a batch to queueing its proposal.
    order: Mutex<Order>,
    /// The run in which openraft refused a batch: set by the proposer, taken by the next
    /// store.
    refused: Arc<Mutex<Option<u64>>>,
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
        let refused = Arc::new(Mutex::new(None));
        tokio::spawn(propose(raft.clone(), queued, refused.clone()));
        LeaderWrites {
            store,
            raft,
            log,
            order: Mutex::new(Order::default()),
            refused,
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
        let mut order = store::lock_waiting_with(&self.order, wait_with);
        let leader = self
            .raft
            .as_leader()
            .map_err(|forward| Refused::NotLeader(forward.leader_id))?
            .to_committed_leader_id();
        let refused = self.refused.lock().take();
        if order.cut_under.as_ref() != Some(&leader) {
            self.log
                .cut_unlogged_tail()
                .map_err(|error| Refused::Replication(error.to_string()))?;
            order.cut_under = Some(leader);
            order.run += 1;
        } else if refused == Some(order.run) {
            // Every batch of the run stored since the refused one was refused with it, or
            // will be: the CommitLog goes back to the end of the last logged batch. Not to
            // where the refused one began: when it began a segment, the blank marker that
            // filled the one before would stay, and the next batch, stored after it, would
            // go where a follower's copy, which fits at the marker, does not.
            self.log
                .cut_unlogged_tail()
                .map_err(|error| Refused::Replication(error.to_string()))?;
            order.run += 1;
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
            run: order.run,
            answer,
        });
        Ok(Replicated {
            messages: appended.messages,
            end_offset: appended.end_offset,
            committed: Committed(committed),
        })
    }
}

/// Most bytes of stored batches proposed as one Raft entry.
const MAX_ENTRY_BYTES: u32 = 1024 * 1024;

/// Proposals stored one right after another under one leadership, proposed as one Raft
/// entry: replication's group commit. The sends stored while an entry is being logged travel
/// together in the next one, as the store's group commit flushes them together, instead of
/// costing an entry (a Raft-log write and a round to the followers) each.
struct Entry {
    parts: Vec<Batch>,
    end: u64,
    leader: LeaderId,
    run: u64,
    answers: Vec<oneshot::Sender<Result<(), Refused>>>,
}

impl Entry {
    fn of(proposal: Proposal) -> Entry {
        Entry {
            end: proposal.batch.end(),
            parts: vec![proposal.batch],
            leader: proposal.leader,
            run: proposal.run,
            answers: vec![proposal.answer],
        }
    }

    /// Takes `next` in if its bytes go on from this entry's under the same leadership and
    /// run; gives it back otherwise (a segment's end, a cut, another leadership, a full entry).
    fn join(&mut self, next: Proposal) -> Result<(), Proposal> {
        // The parts are contiguous: the entry's bytes run from its first part's start.
        let bytes = self.end - self.parts[0].start;
        if next.run != self.run
            || next.leader != self.leader
            || next.batch.start != self.end
            || bytes + u64::from(next.batch.len) > u64::from(MAX_ENTRY_BYTES)
        {
            return Err(next);
        }
        self.end = next.batch.end();
        self.parts.push(next.batch);
        self.answers.push(next.answer);
        Ok(())
    }

    fn answer(self, result: Result<(), Refused>) {
        for answer in self.answers {
            let _ = answer.send(result.as_ref().map_err(Refused::again).copied());
        }
    }
}

/// Hands the queued proposals to openraft in the order queued, those already waiting when one
/// goes joined into one entry, and answers each once applied. An entry goes to openraft only
/// once the one before is logged or refused: after a write, the proposer asks openraft's core
/// for nothing (an empty state read), and since the core takes requests in order, by its
/// answer the write is either logged, or refused with its answer already sent. A refusal
/// refuses the rest of its run.
async fn propose(
    raft: Raft,
    mut queued: mpsc::UnboundedReceiver<Proposal>,
    refused: Arc<Mutex<Option<u64>>>,
) {
    let mut refused_run = None;
    let mut held = None;
    loop {
        // Not `held.or(queued.recv().await)`: that receives (and drops) the next proposal
        // even when one is held.
        let first = match held.take() {
            Some(first) => first,
            None => match queued.recv().await {
                Some(first) => first,
                None => return,
            },
        };
        let mut entry = Entry::of(first);
        while let Ok(next) = queued.try_recv() {
            if let Err(next) = entry.join(next) {
                held = Some(next);
                break;
            }
        }
        if refused_run == Some(entry.run) {
            entry.answer(Err(Refused::NotLeader(None)));
            continue;
        }
        let (leader, run) = (entry.leader, entry.run);
        let batch = Batch::joined(std::mem::take(&mut entry.parts));
        let (responder, mut applied) = ProgressResponder::complete_only();
        let submitted = async {
            raft.write(batch)
                .with_leader(leader)
                .responder(responder)
                .await?;
            raft.with_raft_state(|_| ()).await
        };
        let outcome = match submitted.await {
            Err(fatal) => Some(Err(Refused::Replication(fatal.to_string()))),
            Ok(()) => match applied.try_recv() {
                Ok(result) => Some(answered(result)),
                Err(oneshot::error::TryRecvError::Empty) => None,
                Err(oneshot::error::TryRecvError::Closed) => {
                    Some(Err(Refused::Replication("Raft stopped".into())))
                }
            },
        };
        match outcome {
            // Logged: answered once applied. Applied, not merely committed: a committed
            // batch becomes readable when applied, and a producer told its message is
            // stored must find it on its next pull.
            None => {
                tokio::spawn(async move {
                    let result = applied.await.map_or_else(
                        |_| Err(Refused::Replication("Raft stopped".into())),
                        answered,
                    );
                    entry.answer(result);
                });
            }
            Some(result) => {
                if result.is_err() {
                    refused_run = Some(run);
                    *refused.lock() = Some(run);
                }
                entry.answer(result);
            }
        }
    }
}

/// What a write's final answer means for its batch.
fn answered<T>(result: Result<T, ClientWriteError<TypeConfig>>) -> Result<(), Refused> {
    match result {
        Ok(_) => Ok(()),
        Err(ClientWriteError::ForwardToLeader(forward)) => {
            Err(Refused::NotLeader(forward.leader_id))
        }
        Err(error) => Err(Refused::Replication(error.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use openraft::impls::leader_id_adv::LeaderId;

    use super::{Batch, Entry, Proposal, MAX_ENTRY_BYTES};

    fn proposal(start: u64, len: usize, term: u64, run: u64) -> Proposal {
        Proposal {
            batch: Batch::of(start, Bytes::from(vec![7u8; len])),
            leader: LeaderId { term, node_id: 0 },
            run,
            answer: tokio::sync::oneshot::channel().0,
        }
    }

    #[test]
    fn an_entry_takes_the_proposals_that_go_on_from_it_under_its_leadership_and_run() {
        let mut entry = Entry::of(proposal(100, 10, 2, 1));
        assert!(entry.join(proposal(110, 5, 2, 1)).is_ok());
        assert!(entry.join(proposal(115, 1, 2, 1)).is_ok());
        // A gap (a segment's blank end), another run (a cut), another leadership.
        assert!(entry.join(proposal(120, 1, 2, 1)).is_err());
        assert!(entry.join(proposal(116, 1, 2, 2)).is_err());
        assert!(entry.join(proposal(116, 1, 3, 1)).is_err());
        assert_eq!(entry.answers.len(), 3);
        assert_eq!(
            Batch::joined(entry.parts),
            Batch::of(100, Bytes::from(vec![7u8; 16]))
        );

        let mut full = Entry::of(proposal(0, MAX_ENTRY_BYTES as usize - 1, 2, 1));
        assert!(full
            .join(proposal(u64::from(MAX_ENTRY_BYTES) - 1, 2, 2, 1))
            .is_err());
        assert!(full
            .join(proposal(u64::from(MAX_ENTRY_BYTES) - 1, 1, 2, 1))
            .is_ok());
    }
}
