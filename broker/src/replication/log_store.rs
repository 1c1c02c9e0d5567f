//! openraft's log storage over the store's Raft log (`store::raft_log`): entries, the vote
//! and the committed id. An entry's payload (blank, membership or a [`Batch`]'s metadata) is
//! serialized into the log's opaque payload; its log id maps onto the log's `EntryId`. A
//! batch's bytes live in the CommitLog: read from there for followers, written there (at the
//! leader's offsets) when a follower takes the entry.

use std::fmt;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::Arc;

use openraft::alias::{EntryOf, LogIdOf, VoteOf};
use openraft::impls::leader_id_adv::LeaderId;
use openraft::storage::{IOFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{EntryPayload, LogId, OptionalSend};
use parking_lot::Mutex;
use store::raft_log::{EntryId, RaftEntry, RaftLog, Vote};
use store::{Durable, MessageStore};

use super::{io_error, Batch, SyncPace, TypeConfig};

/// The log store and its readers share one log; each call holds the lock for its own work
/// only, so readers see every append once it returns.
#[derive(Clone)]
pub struct LogStore {
    log: Arc<Mutex<RaftLog>>,
    /// Where message batches' bytes live; without it entries carry their metadata only.
    commit_log: Option<Arc<MessageStore>>,
    /// Which appends sync the log.
    syncs: SyncPace,
}

impl LogStore {
    /// Opens (or creates) the log in `dir`; segments roll at `segment_bytes`.
    pub fn open(dir: &Path, segment_bytes: u64) -> io::Result<LogStore> {
        let log = RaftLog::open(dir, segment_bytes).map_err(io_error)?;
        Ok(LogStore {
            log: Arc::new(Mutex::new(log)),
            commit_log: None,
            syncs: SyncPace::of(None),
        })
    }

    /// Message batches read from this log carry their bytes from `store`'s CommitLog, and
    /// batches appended to it that `store` lacks are written there at the same offsets.
    /// Entries naming batches the CommitLog lost are dropped, and what the CommitLog holds
    /// past the last batch the log names is cut: a leader stored it and the group never
    /// logged it.
    pub fn with_commit_log(self, store: Arc<MessageStore>) -> io::Result<LogStore> {
        let log = LogStore {
            syncs: SyncPace::of(Some(&store)),
            commit_log: Some(store),
            ..self
        };
        log.forget_lost_batches()?;
        log.cut_unlogged_tail()?;
        log.keep_logged_batches()?;
        Ok(log)
    }

    /// Tells retention to keep the CommitLog from the oldest batch this log names (from the
    /// applied end, if it names none: every later batch starts past it). A leader reads a
    /// batch's bytes from the CommitLog to send it, and a missing one is a storage error that
    /// stops its Raft.
    fn keep_logged_batches(&self) -> io::Result<()> {
        let Some(store) = &self.commit_log else {
            return Ok(());
        };
        let log = self.log.lock();
        let mut index = log.meta().log_start();
        while index < log.next_index() {
            let entries = log.entries(index..index + 64).map_err(io_error)?;
            for entry in entries {
                if let EntryPayload::Normal(batch) = decode(entry)?.payload {
                    store.keep_from(batch.start);
                    return Ok(());
                }
            }
            index += 64;
        }
        store.keep_from(store.applied_end());
        Ok(())
    }

    /// Cuts the CommitLog after the last batch this log names, or what this replica applied
    /// if that goes further (a snapshot's records, installed before openraft purged the log
    /// up to it), as a new leader does before its first batch and a follower whose log was
    /// truncated: bytes a leader stored under a leadership that ended, whose proposal was
    /// never logged or was cut from the log, must not sit between the group's batches. What
    /// lies below the CommitLog's first segment is gone already: an empty replica whose copy
    /// of a snapshot began past the leader's retired segments and was interrupted keeps its
    /// first segment, empty. Refused below what the store applied or dispatched.
    pub fn cut_unlogged_tail(&self) -> io::Result<()> {
        let Some(store) = &self.commit_log else {
            return Ok(());
        };
        let log = self.log.lock();
        let Kept {
            end: logged_end,
            standalone,
        } = kept_before(&log, store, log.next_index())?;
        // The log stays locked: no batch is logged (or its bytes written) meanwhile.
        store.cut_tail(logged_end).map_err(|error| {
            if standalone {
                // The usual way here: enableDLegerCommitLog turned on over a standalone
                // broker's store on a replica other than n0, which alone takes such a store
                // over (replica.rs). Its messages are not the group's, and no replica may
                // drop them silently.
                return io::Error::other(format!(
                    "this replica's CommitLog holds {} bytes of dispatched messages and its \
                     Raft log names none: only the group's first replica (n0 in dLegerPeers) \
                     takes over a store written without replication, when it starts a new \
                     group. Start this replica with an empty storePathRootDir (after reading \
                     the old store out), or run it without enableDLegerCommitLog ({error})",
                    store.commit_log_max_offset()
                ));
            }
            io::Error::other(format!(
                "this replica's CommitLog holds records its Raft log does not name, from \
                 {logged_end}, and cannot cut them: {error}"
            ))
        })
    }

    /// After a power loss the log can name batches the CommitLog lost: under SYNC_FLUSH an
    /// entry is synced before its batch's flush is awaited, under ASYNC_FLUSH each is synced
    /// on a pace of its own. The first such entry goes, with every one after it, and the
    /// committed entry comes back to the last one kept (openraft re-applies up to it). This
    /// replica acknowledged none of them under SYNC_FLUSH (it does once the batch is
    /// flushed); under ASYNC_FLUSH it acknowledged its page cache, which is what that mode
    /// risks (docs/replication.md). The leader sends them again.
    fn forget_lost_batches(&self) -> io::Result<()> {
        let Some(store) = &self.commit_log else {
            return Ok(());
        };
        let mut log = self.log.lock();
        let mut first_lost = None;
        // Batches follow one another in the CommitLog, which a power loss cuts at one
        // place: once one is held, every one before it is.
        while let Some((index, batch)) =
            last_batch_before(&log, first_lost.unwrap_or(log.next_index()))?
        {
            if holds(store, &batch) {
                break;
            }
            first_lost = Some(index);
        }
        if let Some(first_lost) = first_lost {
            log.truncate_after(first_lost.checked_sub(1))
                .map_err(io_error)?;
            tracing::warn!(
                first_lost,
                commit_log_end = store.commit_log_max_offset(),
                "the Raft log named batches the CommitLog lost (a power loss); they are \
                 dropped from the log and the leader sends them again"
            );
        }
        // The committed entry is written unsynced, and so can outlive entries a power loss
        // took from the log as well as those dropped here.
        let kept = log.last_id();
        let committed = log.meta().committed;
        if committed.is_some_and(|committed| kept.is_none_or(|kept| committed.index > kept.index)) {
            log.save_committed(kept).map_err(io_error)?;
        }
        Ok(())
    }

    /// Forgets every entry, the committed one and the purge point, keeping the vote
    /// (`RaftLog::clear`): the replica begins again empty.
    pub fn clear(&self) -> io::Result<()> {
        self.log.lock().clear().map_err(io_error)
    }

    /// Whether this log holds no vote and no entry past `log_id`: a replica that never took
    /// part in a group, or was stopped while it took a store over ([`LogStore::adopt`]).
    pub fn holds_nothing_past(&self, log_id: LogIdOf<TypeConfig>) -> bool {
        let log = self.log.lock();
        log.meta().vote.is_none() && log.last_id().is_none_or(|last| last == entry_id(&log_id))
    }

    /// The index of the last entry this log purged, if any.
    pub fn purged_index(&self) -> Option<u64> {
        self.log.lock().meta().purged.map(|id| id.index)
    }

    /// The index of the last entry this log holds, or of the last it purged.
    pub fn last_index(&self) -> Option<u64> {
        let log = self.log.lock();
        log.last_id().or(log.meta().purged).map(|id| id.index)
    }

    /// Starts a new log as if it had held the entries up to `log_id`, committed and purged:
    /// the state a store written without replication is taken over at
    /// ([`super::StateMachine::adopt`]).
    pub fn adopt(&self, log_id: LogIdOf<TypeConfig>) -> io::Result<()> {
        let mut log = self.log.lock();
        log.purge(entry_id(&log_id)).map_err(io_error)?;
        log.save_committed(Some(entry_id(&log_id)))
            .map_err(io_error)
    }

    /// Puts a batch's bytes beside it, from the CommitLog.
    fn attach(&self, entry: &mut EntryOf<TypeConfig>) -> io::Result<()> {
        let (Some(store), EntryPayload::Normal(batch)) = (&self.commit_log, &mut entry.payload)
        else {
            return Ok(());
        };
        let bytes = store
            .commit_log_bytes(batch.start, batch.end())
            .ok_or_else(|| {
                io::Error::other(format!(
                    "Raft entry {}: its batch at {} is not in the CommitLog",
                    entry.log_id.index, batch.start
                ))
            })?;
        batch.bytes = Some(bytes);
        Ok(())
    }

    /// Makes sure the CommitLog holds a batch the log is taking, and returns what resolves
    /// once it is durable as the flush mode says: a follower writes the leader's bytes at the
    /// same offset; the leader stored the batch before proposing it. `kept` tells where the
    /// records this replica keeps end before the batch (the batch before it, or what it
    /// applied), asked only when the batch is not held already.
    fn store_batch(
        &self,
        index: u64,
        batch: &Batch,
        kept: impl FnOnce() -> io::Result<u64>,
    ) -> io::Result<Option<Durable>> {
        let Some(store) = &self.commit_log else {
            return Ok(None);
        };
        let refused = |why: String| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("Raft entry {index}, batch at {}: {why}", batch.start),
            )
        };
        let have = store.commit_log_max_offset();
        if batch.start < have && holds(store, batch) {
            // Stored before: the leader's own batch, or one sent again.
            return Ok(Some(store.durable_up_to(batch.end())));
        }
        let kept = kept()?;
        if have > kept {
            // Bytes no logged batch names: a replica that led can hold a batch the group
            // never committed, where this one goes or before it. Cut from where the kept
            // records end, not from the batch's start: a batch that begins a segment follows
            // the blank marker the leader wrote after the batch before, and this replica's
            // own records there would stay, unnamed, to be served as the group's once it
            // led. Never below what it applied.
            store.cut_tail(kept).map_err(|error| {
                refused(format!("this replica holds other bytes there: {error}"))
            })?;
        }
        let Some(bytes) = &batch.bytes else {
            return Err(refused(format!(
                "its bytes did not come with it, and the CommitLog ends at {have}"
            )));
        };
        if bytes.len() != batch.len as usize || crc32fast::hash(bytes) != batch.crc {
            return Err(refused(
                "the bytes are not the batch's (length or CRC)".into(),
            ));
        }
        let copied = store.append_copy(batch.start, bytes).map_err(io_error)?;
        Ok(Some(copied.durable))
    }
}

/// The last message batch `log` holds before entry `end`, and its index; `None` when it holds
/// none from its start (past the purge point) up to there.
fn last_batch_before(log: &RaftLog, end: u64) -> io::Result<Option<(u64, Batch)>> {
    let mut index = end;
    while index > log.meta().log_start() {
        index -= 1;
        let entry = log.entries(index..index + 1).map_err(io_error)?.pop();
        if let Some(EntryPayload::Normal(batch)) = entry.map(decode).transpose()?.map(|e| e.payload)
        {
            return Ok(Some((index, batch)));
        }
    }
    Ok(None)
}

/// Where the CommitLog records a replica keeps before entry `before` end: after the last
/// batch its log names there, or what it applied if that goes further (a snapshot's records,
/// installed before openraft purged the log up to it).
struct Kept {
    end: u64,
    /// The store was written without replication: its log names nothing and it applied
    /// nothing, yet may have dispatched records of its own.
    standalone: bool,
}

fn kept_before(log: &RaftLog, store: &MessageStore, before: u64) -> io::Result<Kept> {
    // Before the purge point (if any) every batch is applied.
    let logged = last_batch_before(log, before)?.map(|(_, batch)| batch.end());
    let names_none = logged.is_none() && log.meta().purged.is_none();
    // What a replica dispatched it had applied, so the group committed, even where
    // `raft/applied` (saved once flushed) or a power loss left its record behind. A store
    // that never applied anything dispatched on its own (below).
    let standalone = names_none && store.applied_end() == 0;
    let dispatched = if standalone {
        0
    } else {
        store.dispatched_offset()
    };
    let end = logged
        .unwrap_or(0)
        .max(store.applied_end())
        .max(dispatched)
        .max(store.commit_log_min_offset());
    Ok(Kept { end, standalone })
}

/// Whether `store`'s CommitLog holds `batch`'s bytes.
fn holds(store: &MessageStore, batch: &Batch) -> bool {
    store
        .commit_log_bytes(batch.start, batch.end())
        .is_some_and(|held| crc32fast::hash(&held) == batch.crc)
}

/// About how many bytes of message batches one append to a follower carries.
const MAX_APPEND_BYTES: usize = 4 * 1024 * 1024;

fn entry_id(log_id: &LogIdOf<TypeConfig>) -> EntryId {
    EntryId {
        term: log_id.leader_id.term,
        node: log_id.leader_id.node_id,
        index: log_id.index,
    }
}

fn log_id(id: EntryId) -> LogIdOf<TypeConfig> {
    LogId::new(
        LeaderId {
            term: id.term,
            node_id: id.node,
        },
        id.index,
    )
}

fn encode(entry: &EntryOf<TypeConfig>) -> io::Result<RaftEntry> {
    Ok(RaftEntry {
        id: entry_id(&entry.log_id),
        payload: serde_json::to_vec(&entry.payload).map_err(io::Error::other)?,
    })
}

fn decode(entry: RaftEntry) -> io::Result<EntryOf<TypeConfig>> {
    let payload = serde_json::from_slice(&entry.payload).map_err(|error| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("Raft entry {}: {error}", entry.id.index),
        )
    })?;
    Ok(EntryOf::<TypeConfig> {
        log_id: log_id(entry.id),
        payload,
    })
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + fmt::Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> io::Result<Vec<EntryOf<TypeConfig>>> {
        let start = match range.start_bound() {
            Bound::Included(&start) => start,
            Bound::Excluded(&start) => start.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(&end) => end.saturating_add(1),
            Bound::Excluded(&end) => end,
            Bound::Unbounded => u64::MAX,
        };
        let entries = self.log.lock().entries(start..end).map_err(io_error)?;
        entries
            .into_iter()
            .map(|entry| {
                let mut entry = decode(entry)?;
                self.attach(&mut entry)?;
                Ok(entry)
            })
            .collect()
    }

    /// At least one entry, then no more once their batches pass [`MAX_APPEND_BYTES`]: openraft
    /// caps an append at a number of entries (300), and batches can be large.
    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> io::Result<Vec<EntryOf<TypeConfig>>> {
        let mut entries = self.try_get_log_entries(start..end).await?;
        if entries
            .first()
            .is_some_and(|first| first.log_id.index != start)
        {
            // The log was purged past `start` after openraft's replication to a follower
            // chose to send from there (a snapshot taken while that follower was down, say).
            // Entries from further on would go after a previous entry they do not follow
            // (openraft asserts against it in debug builds; a follower would log a hole), and
            // an error would stop the leader: none are sent. openraft sends an append of no
            // entries from that range instead, which the transport refuses (`stream_append`
            // in network.rs), and openraft sends the snapshot its engine chose.
            entries.clear();
            return Ok(entries);
        }
        let mut bytes = 0;
        let keep = entries
            .iter()
            .take_while(|entry| {
                let first = bytes == 0;
                if let EntryPayload::Normal(batch) = &entry.payload {
                    bytes += batch.len as usize;
                }
                first || bytes <= MAX_APPEND_BYTES
            })
            .count();
        entries.truncate(keep.max(1));
        Ok(entries)
    }

    async fn read_vote(&mut self) -> io::Result<Option<VoteOf<TypeConfig>>> {
        Ok(self
            .log
            .lock()
            .meta()
            .vote
            .map(|vote| VoteOf::<TypeConfig> {
                leader_id: LeaderId {
                    term: vote.term,
                    node_id: vote.node,
                },
                committed: vote.committed,
            }))
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> io::Result<LogState<TypeConfig>> {
        let log = self.log.lock();
        Ok(LogState {
            last_purged_log_id: log.meta().purged.map(log_id),
            last_log_id: log.last_id().map(log_id),
        })
    }

    async fn get_log_reader(&mut self) -> LogStore {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &VoteOf<TypeConfig>) -> io::Result<()> {
        self.log
            .lock()
            .save_vote(Vote {
                term: vote.leader_id.term,
                node: vote.leader_id.node_id,
                committed: vote.committed,
            })
            .map_err(io_error)
    }

    async fn save_committed(&mut self, committed: Option<LogIdOf<TypeConfig>>) -> io::Result<()> {
        self.log
            .lock()
            .save_committed(committed.as_ref().map(entry_id))
            .map_err(io_error)
    }

    async fn read_committed(&mut self) -> io::Result<Option<LogIdOf<TypeConfig>>> {
        Ok(self.log.lock().meta().committed.map(log_id))
    }

    /// Writes the batches into the CommitLog first (a Raft entry never names bytes that are
    /// not there), then appends the entries and syncs the log (as [`SyncPace`] says), then
    /// waits for the batches' flush (the store's group commit) before `callback` hears the
    /// entries are durable; every write (votes too) is done in the order openraft asks for
    /// them.
    async fn append<I>(&mut self, entries: I, callback: IOFlushed<TypeConfig>) -> io::Result<()>
    where
        I: IntoIterator<Item = EntryOf<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut flushes = Vec::new();
        // Where the kept records end before each entry: known from the log for the first,
        // then from the batches taken here.
        let mut kept = None;
        let entries = entries
            .into_iter()
            .map(|entry| {
                if let EntryPayload::Normal(batch) = &entry.payload {
                    let index = entry.log_id.index;
                    let before = || match (kept, &self.commit_log) {
                        (Some(kept), _) => Ok(kept),
                        (None, Some(store)) => Ok(kept_before(&self.log.lock(), store, index)?.end),
                        (None, None) => Ok(0),
                    };
                    flushes.extend(self.store_batch(index, batch, before)?);
                    kept = Some(batch.end());
                }
                encode(&entry)
            })
            .collect::<io::Result<Vec<_>>>()?;
        let mut result = {
            let mut log = self.log.lock();
            log.append(&entries)
                .and_then(|()| if self.syncs.due() { log.sync() } else { Ok(()) })
        };
        for flush in flushes {
            if result.is_ok() {
                result = flush.await;
            }
        }
        match result {
            Ok(()) => {
                callback.io_completed(Ok(()));
                Ok(())
            }
            Err(error) => {
                let error = io_error(error);
                callback.io_completed(Err(io::Error::new(error.kind(), error.to_string())));
                Err(error)
            }
        }
    }

    /// Cuts the CommitLog after the batches that remain too: a truncated entry was never
    /// committed, and its records left in place would be dispatched once the applied end
    /// passed them when the leader's next batch begins past them (in the next segment).
    async fn truncate_after(&mut self, last: Option<LogIdOf<TypeConfig>>) -> io::Result<()> {
        self.log
            .lock()
            .truncate_after(last.map(|last| last.index))
            .map_err(io_error)?;
        self.cut_unlogged_tail()
    }

    async fn purge(&mut self, upto: LogIdOf<TypeConfig>) -> io::Result<()> {
        self.log.lock().purge(entry_id(&upto)).map_err(io_error)?;
        self.keep_logged_batches()
    }
}
