//! openraft's state machine for a broker group: the last applied entry, the membership and
//! the current snapshot's metadata, saved in `raft/applied` (a [`SlotFile`] record, synced
//! as the flush mode says: `SyncPace`), so a restart resumes where it left off instead of
//! re-applying from a snapshot.
//!
//! The record never runs ahead of the CommitLog's flushed end: a state is saved once this
//! replica's flush has passed its last batch, so after a power loss the CommitLog holds every
//! batch the record says was applied. A replica applies what its group committed, which a
//! quorum holds without this replica's flush (the leader's own, say); what is applied but not
//! yet saved is applied again after a restart, from the log.
//!
//! Applying a message batch dispatches it: the store ([`MessageStore::open_replica`]) puts
//! records into the consume queues and index only up to the applied end, so readers see
//! committed messages only. A snapshot is the CommitLog up to the end of its last batch
//! ([`SnapshotEnd`]): the leader's records, which the transport copies into a follower's
//! CommitLog before the follower installs it (network.rs), and installing one dispatches
//! them.

use std::collections::VecDeque;
use std::io;
use std::path::Path;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use openraft::alias::{LogIdOf, SnapshotMetaOf, SnapshotOf, StoredMembershipOf};
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine, Snapshot};
use openraft::{EntryPayload, OptionalSend, StoredMembership};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use store::slots::SlotFile;
use store::MessageStore;

use super::{io_error, SyncPace, TypeConfig};

/// What `raft/applied` holds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Applied {
    last: Option<LogIdOf<TypeConfig>>,
    /// The CommitLog offset past the last applied batch: the store dispatches up to here.
    #[serde(default)]
    end: u64,
    membership: StoredMembershipOf<TypeConfig>,
    snapshot: Option<SnapshotMetaOf<TypeConfig>>,
    /// The CommitLog end the current snapshot covers.
    #[serde(default)]
    snapshot_end: u64,
}

/// A snapshot's data: the group's CommitLog up to `end`, the offset past its last applied
/// batch. The bytes stay in the CommitLog; a follower is sent those it lacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotEnd {
    pub end: u64,
}

struct Saved {
    file: SlotFile,
    /// What `file` holds: no batch past the CommitLog's flushed end.
    record: Applied,
    /// What this replica applied, as openraft knows it.
    applied: Applied,
    /// The states applied since `record`, oldest first, each saved once the CommitLog's
    /// flush passes its end.
    unflushed: VecDeque<Applied>,
}

impl Saved {
    /// Saves `applied` as both the record and the applied state, synced.
    fn save(&mut self, applied: Applied) -> io::Result<()> {
        self.keep(applied.clone(), true)?;
        self.unflushed.clear();
        self.applied = applied;
        Ok(())
    }

    /// Saves the newest applied state whose batches end by `flushed`, with the record's
    /// snapshot, synced or only written ([`SlotFile::write`]).
    fn keep_flushed(&mut self, flushed: u64, sync: bool) -> io::Result<()> {
        let mut newest = None;
        while self
            .unflushed
            .front()
            .is_some_and(|next| next.end <= flushed)
        {
            newest = self.unflushed.pop_front();
        }
        let Some(newest) = newest else {
            return Ok(());
        };
        let record = Applied {
            snapshot: self.record.snapshot.clone(),
            snapshot_end: self.record.snapshot_end,
            ..newest
        };
        self.keep(record, sync)
    }

    /// Saves `record`, synced or only written ([`SlotFile::write`]), as what the file holds.
    fn keep(&mut self, record: Applied, sync: bool) -> io::Result<()> {
        self.write(&record, sync)?;
        self.record = record;
        Ok(())
    }

    fn write(&mut self, record: &Applied, sync: bool) -> io::Result<()> {
        let body = serde_json::to_vec(record).map_err(io::Error::other)?;
        if sync {
            self.file.save(&body)
        } else {
            self.file.write(&body)
        }
        .map_err(io_error)
    }
}

/// The state machine and its snapshot builders share the saved state.
#[derive(Clone)]
pub struct StateMachine {
    saved: Arc<Mutex<Saved>>,
    /// Where applied batches are dispatched; without it only the bookkeeping moves.
    store: Option<Arc<MessageStore>>,
    /// Which saves after applying are synced.
    syncs: SyncPace,
}

impl StateMachine {
    /// Opens (or creates) `dir/applied`.
    pub fn open(dir: &Path) -> io::Result<StateMachine> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("applied");
        let (file, body) = SlotFile::open(&path).map_err(io_error)?;
        let applied = match body {
            None => Applied::default(),
            Some(body) => serde_json::from_slice(&body).map_err(|error| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: not a state machine record: {error}", path.display()),
                )
            })?,
        };
        Ok(StateMachine {
            saved: Arc::new(Mutex::new(Saved {
                file,
                record: applied.clone(),
                applied,
                unflushed: VecDeque::new(),
            })),
            store: None,
            syncs: SyncPace::of(None),
        })
    }

    /// The CommitLog offset past the last applied batch: open the replica's store with it
    /// ([`MessageStore::open_replica`]).
    pub fn applied_end(&self) -> u64 {
        self.saved.lock().record.end
    }

    /// Forgets everything applied, the membership and the snapshot, durably: the replica's
    /// store begins again empty (`store::PendingReset`), and it learns the group's state
    /// from the snapshot its leader sends, as a new replica does.
    pub fn clear(&self) -> io::Result<()> {
        self.saved.lock().save(Applied::default())
    }

    /// Takes over a store written without replication, as the group's first replica does
    /// when a broker becomes one (`replicasPerGroup` 1 to 3): its CommitLog up to `end` is
    /// the state at `log_id`, applied and snapshotted with `membership`, so the other
    /// replicas are sent it as a snapshot. Only over a state machine that never applied
    /// anything but `log_id`.
    pub fn adopt(
        &self,
        log_id: LogIdOf<TypeConfig>,
        membership: StoredMembershipOf<TypeConfig>,
        end: u64,
    ) -> io::Result<()> {
        let mut saved = self.saved.lock();
        if saved.record.last.is_some_and(|last| last != log_id) {
            return Err(io::Error::other("this replica has applied Raft entries"));
        }
        let meta = SnapshotMetaOf::<TypeConfig> {
            last_log_id: Some(log_id),
            last_membership: membership.clone(),
        };
        saved.save(Applied {
            last: Some(log_id),
            end,
            membership,
            snapshot: Some(meta),
            snapshot_end: end,
        })
    }

    /// The last applied entry's log id, as saved.
    pub fn applied_last(&self) -> Option<LogIdOf<TypeConfig>> {
        self.saved.lock().record.last
    }

    /// Makes the saved applied state the current snapshot, durably, if the Raft log ends
    /// before it (`log_end`: its last entry's index, or its purge point's). Under
    /// ASYNC_FLUSH the record and the log are synced on paces of their own, and a power loss
    /// can keep a record of entries the log lost. Those entries were committed (this replica
    /// applied them) and their batches are in the CommitLog (the record waits for its
    /// flush), so the state is a snapshot like any other; openraft refuses to start over an
    /// applied entry that neither the log nor a snapshot holds. Returns whether it did.
    pub fn snapshot_if_log_ends_before(&self, log_end: Option<u64>) -> io::Result<bool> {
        let mut saved = self.saved.lock();
        let record = saved.record.clone();
        if record.last.map(|last| last.index) <= log_end {
            return Ok(false);
        }
        let meta = SnapshotMetaOf::<TypeConfig> {
            last_log_id: record.last,
            last_membership: record.membership.clone(),
        };
        saved.save(Applied {
            snapshot: Some(meta),
            snapshot_end: record.end,
            ..record
        })?;
        Ok(true)
    }

    /// Applied batches are dispatched in `store`.
    pub fn with_store(self, store: Arc<MessageStore>) -> StateMachine {
        StateMachine {
            syncs: SyncPace::of(Some(&store)),
            store: Some(store),
            ..self
        }
    }
}

/// Builds a snapshot of the saved state: what the CommitLog holds on disk.
pub struct SnapshotBuilder {
    saved: Arc<Mutex<Saved>>,
    store: Option<Arc<MessageStore>>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    type SnapshotData = SnapshotEnd;

    async fn build_snapshot(&mut self) -> io::Result<SnapshotOf<TypeConfig, SnapshotEnd>> {
        let mut saved = self.saved.lock();
        // The newest state the flush has passed by now, for a snapshot as recent as can be.
        saved.keep_flushed(flushed_end(self.store.as_deref()), false)?;
        let view = saved.record.clone();
        let meta = SnapshotMetaOf::<TypeConfig> {
            last_log_id: view.last,
            last_membership: view.membership.clone(),
        };
        let data = SnapshotEnd { end: view.end };
        let record = Applied {
            snapshot: Some(meta.clone()),
            snapshot_end: data.end,
            ..view
        };
        saved.keep(record, true)?;
        Ok(Snapshot {
            meta,
            snapshot: data,
        })
    }
}

/// Where the CommitLog is flushed up to (everything, without a store).
fn flushed_end(store: Option<&MessageStore>) -> u64 {
    store.map_or(u64::MAX, MessageStore::commit_log_flushed_offset)
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = SnapshotEnd;
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> io::Result<(Option<LogIdOf<TypeConfig>>, StoredMembershipOf<TypeConfig>)> {
        let saved = self.saved.lock();
        Ok((saved.applied.last, saved.applied.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> io::Result<()>
    where
        Strm: Stream<Item = io::Result<EntryResponder<TypeConfig>>> + Unpin + OptionalSend,
    {
        let mut applied = self.saved.lock().applied.clone();
        let mut responders = Vec::new();
        while let Some(next) = entries.next().await {
            let (entry, responder) = next?;
            applied.last = Some(entry.log_id);
            match entry.payload {
                EntryPayload::Membership(membership) => {
                    applied.membership = StoredMembership::new(Some(entry.log_id), membership);
                }
                EntryPayload::Normal(batch) => applied.end = applied.end.max(batch.end()),
                EntryPayload::Blank => {}
            }
            responders.extend(responder);
        }
        // Answered once dispatched: a client told its entry applied finds it on its next
        // pull. Saved once flushed here (a restart before that applies it again).
        let end = applied.end;
        {
            let mut saved = self.saved.lock();
            saved.applied = applied.clone();
            saved.unflushed.push_back(applied);
            saved.keep_flushed(flushed_end(self.store.as_deref()), self.syncs.due())?;
        }
        if let Some(store) = &self.store {
            store.apply_up_to(end).map_err(io_error)?;
        }
        for responder in responders {
            responder.send(());
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        SnapshotBuilder {
            saved: self.saved.clone(),
            store: self.store.clone(),
        }
    }

    /// The transport copied the snapshot's records before this is called: the CommitLog
    /// must reach its end. They are flushed before the snapshot is recorded (whatever the
    /// flush mode: the log is purged up to it), then dispatched.
    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMetaOf<TypeConfig>,
        snapshot: SnapshotEnd,
    ) -> io::Result<()> {
        let end = snapshot.end;
        if let Some(store) = &self.store {
            let have = store.commit_log_max_offset();
            if have < end {
                return Err(io::Error::other(format!(
                    "a snapshot up to CommitLog offset {end}, and this replica's CommitLog \
                     ends at {have}: its records were not copied"
                )));
            }
            store.flush_up_to(end).map_err(io_error)?;
        }
        self.saved.lock().save(Applied {
            last: meta.last_log_id,
            end,
            membership: meta.last_membership.clone(),
            snapshot: Some(meta.clone()),
            snapshot_end: end,
        })?;
        if let Some(store) = &self.store {
            store.apply_up_to(end).map_err(io_error)?;
        }
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> io::Result<Option<SnapshotOf<TypeConfig, SnapshotEnd>>> {
        let saved = self.saved.lock();
        let end = saved.record.snapshot_end;
        Ok(saved.record.snapshot.clone().map(|meta| Snapshot {
            meta,
            snapshot: SnapshotEnd { end },
        }))
    }
}
