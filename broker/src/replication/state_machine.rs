//! openraft's state machine for a broker group: the last applied entry, the membership and
//! the current snapshot's metadata, saved in `raft/applied` after every applied batch (a
//! [`SlotFile`] record, synced as the flush mode says: `SyncPace`), so a restart resumes
//! where it left off instead of re-applying from a snapshot.
//!
//! Applying a message batch dispatches it: the store ([`MessageStore::open_replica`]) puts
//! records into the consume queues and index only up to the applied end, so readers see
//! committed messages only. A snapshot is the CommitLog up to the end of its last batch
//! ([`SnapshotEnd`]): the leader's records, which the transport copies into a follower's
//! CommitLog before the follower installs it (network.rs), and installing one dispatches
//! them.

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
    applied: Applied,
}

impl Saved {
    fn save(&mut self, applied: Applied) -> io::Result<()> {
        self.keep(applied, true)
    }

    /// Saves `applied`, synced or only written ([`SlotFile::write`]).
    fn keep(&mut self, applied: Applied, sync: bool) -> io::Result<()> {
        let body = serde_json::to_vec(&applied).map_err(io::Error::other)?;
        if sync {
            self.file.save(&body)
        } else {
            self.file.write(&body)
        }
        .map_err(io_error)?;
        self.applied = applied;
        Ok(())
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
            saved: Arc::new(Mutex::new(Saved { file, applied })),
            store: None,
            syncs: SyncPace::of(None),
        })
    }

    /// The CommitLog offset past the last applied batch: open the replica's store with it
    /// ([`MessageStore::open_replica`]).
    pub fn applied_end(&self) -> u64 {
        self.saved.lock().applied.end
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
        if saved.applied.last.is_some_and(|last| last != log_id) {
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

    /// The last applied entry's log id.
    pub fn applied_last(&self) -> Option<LogIdOf<TypeConfig>> {
        self.saved.lock().applied.last
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

/// Builds a snapshot of the state as it was when the builder was made.
pub struct SnapshotBuilder {
    saved: Arc<Mutex<Saved>>,
    view: Applied,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    type SnapshotData = SnapshotEnd;

    async fn build_snapshot(&mut self) -> io::Result<SnapshotOf<TypeConfig, SnapshotEnd>> {
        let meta = SnapshotMetaOf::<TypeConfig> {
            last_log_id: self.view.last,
            last_membership: self.view.membership.clone(),
        };
        let mut saved = self.saved.lock();
        let data = SnapshotEnd { end: self.view.end };
        let applied = Applied {
            snapshot: Some(meta.clone()),
            snapshot_end: data.end,
            ..saved.applied.clone()
        };
        saved.save(applied)?;
        Ok(Snapshot {
            meta,
            snapshot: data,
        })
    }
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
        // Answered once saved and dispatched: a client told its entry applied must not see
        // it unapplied after a restart (synced as the flush mode says), and finds it on its
        // next pull.
        let end = applied.end;
        self.saved.lock().keep(applied, self.syncs.due())?;
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
            view: self.saved.lock().applied.clone(),
        }
    }

    /// The transport copied the snapshot's records before this is called: the CommitLog
    /// must reach its end. They are made durable before the snapshot is recorded, then
    /// dispatched.
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
            store.durable_up_to(end).await.map_err(io_error)?;
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
        let end = saved.applied.snapshot_end;
        Ok(saved.applied.snapshot.clone().map(|meta| Snapshot {
            meta,
            snapshot: SnapshotEnd { end },
        }))
    }
}
