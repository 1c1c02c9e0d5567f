//! [`MessageStore`]: the CommitLog, the consume queues and the index joined, plus the threads
//! that flush, checkpoint and clean them.

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use message::{property, sysflag, Properties, StoredMessage};
use parking_lot::{Mutex, RwLock};

use crate::checkpoint::{Checkpoint, CheckpointFile};
use crate::commit_log::{
    now_millis, AppendedMessage, CommitLog, Found, PutMessage, Quarantine, QueueOffsets,
};
use crate::config::{FlushDiskType, StoreConfig};
use crate::consume_queue::{ConsumeQueue, QueueEntry};
use crate::error::{Error, Result};
use crate::flush::{Durable, FlushRequests};
use crate::index::Index;
use crate::read::{
    ArrivedMessage, GetMessageResult, GetMessageStatus, MessageFilter, QueryMessageResult,
};
use crate::recovery::RepairReport;
use crate::wait::WaitWith;

/// RocketMQ scans at most this many consume-queue entries per pull when filtering
/// (`maxFilterMessageSize` 16000 bytes / 20).
const MAX_FILTER_SCAN: usize = 800;

/// The thread that times out SYNC_FLUSH waiters when the flush thread is stuck.
const DEADLINE_THREAD: &str = "flush-deadlines";

/// What a store's thread runs.
type Background = fn(Arc<Inner>);

/// The store's threads, each with its name.
const BACKGROUND: [(&str, Background); 3] = [
    ("commitlog-flush", flush_loop),
    ("store-maintenance", maintenance_loop),
    // Last: shutdown stops it by closing the requests once the others are done.
    (DEADLINE_THREAD, |inner| {
        inner.flush_requests.enforce_deadlines()
    }),
];

type ArrivalListener = Arc<dyn Fn(&ArrivedMessage<'_>) + Send + Sync>;
type FlushListener = Arc<dyn Fn(Duration) + Send + Sync>;

/// Where an append went, and the handle that resolves once it is durable.
#[derive(Debug)]
pub struct AppendResult {
    /// One entry per appended message, in order.
    pub messages: Vec<AppendedMessage>,
    /// CommitLog offset just past the last message.
    pub end_offset: u64,
    /// Resolves when the messages are on disk as `flushDiskType` defines it.
    pub durable: Durable,
}

pub(crate) struct Inner {
    pub(crate) config: StoreConfig,
    pub(crate) commit_log: CommitLog,
    queues: RwLock<HashMap<String, HashMap<i32, Arc<ConsumeQueue>>>>,
    pub(crate) index: Option<Index>,
    /// The reput offset: CommitLog records below it are in the consume queues and index.
    dispatched: Mutex<u64>,
    /// Dispatch stops here: a Raft replica's applied end ([`MessageStore::open_replica`]),
    /// `u64::MAX` for a store of its own.
    dispatch_limit: AtomicU64,
    /// Retention keeps the segment holding this offset and all after it: a Raft replica's
    /// oldest logged batch ([`MessageStore::keep_from`]). `u64::MAX` for a store of its own.
    kept_from: AtomicU64,
    /// Offsets copies of this CommitLog still read from ([`MessageStore::hold_retention`]),
    /// each with how many copies hold it: retention keeps them too.
    retention_holds: Mutex<std::collections::BTreeMap<u64, usize>>,
    /// Taken by each copy of another replica's records ([`MessageStore::copy_committed`]),
    /// so two never cut each other's.
    copying: Mutex<()>,
    flush_requests: FlushRequests,
    checkpoint: CheckpointFile,
    /// Held from reading the offsets a checkpoint records to saving it, and by a cut of the
    /// CommitLog from lowering the checkpoint to cutting, so no checkpoint read before a cut
    /// is saved after it.
    checkpointing: Mutex<()>,
    listener: RwLock<Option<ArrivalListener>>,
    flush_listener: RwLock<Option<FlushListener>>,
    /// Set once by the first failed flush; from then on appends are refused, the flushed
    /// offset and the checkpoint stay where they were, and the next start recovers.
    fence: OnceLock<String>,
    stopping: AtomicBool,
    /// Set only by the crash simulation: threads stop without flushing anything more.
    #[cfg(feature = "failpoints")]
    crashed: AtomicBool,
    /// Held from open to shutdown so one store directory has one process (RocketMQ's `lock`).
    lock: Mutex<Option<File>>,
}

/// Keeps retention from deleting what a copy still reads ([`MessageStore::hold_retention`]).
pub struct RetentionHold {
    inner: Arc<Inner>,
    from: u64,
}

impl Drop for RetentionHold {
    fn drop(&mut self) {
        let mut holds = self.inner.retention_holds.lock();
        if let Some(count) = holds.get_mut(&self.from) {
            *count -= 1;
            if *count == 0 {
                holds.remove(&self.from);
            }
        }
    }
}

impl Inner {
    /// Retention deletes no segment that ends after this.
    pub(crate) fn retention_floor(&self) -> u64 {
        let held = self.retention_holds.lock().keys().next().copied();
        self.kept_from
            .load(Ordering::Acquire)
            .min(held.unwrap_or(u64::MAX))
    }
}

/// The message store. Cheap to share behind an `Arc`; every method takes `&self`.
pub struct MessageStore {
    inner: Arc<Inner>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    stopped: AtomicBool,
}

impl MessageStore {
    /// Opens (creating if needed) the store under `config.store_path_root_dir`, recovering
    /// from a crash if the `abort` file says the last run did not stop cleanly.
    pub fn open(config: StoreConfig) -> Result<MessageStore> {
        MessageStore::open_with(config, u64::MAX)
    }

    /// Opens a Raft replica's store (docs/replication.md). Records are dispatched to the
    /// consume queues and index only up to `applied`, the end of the last batch this replica
    /// applied, and then as [`MessageStore::apply_up_to`] moves it, so no reader ever sees a
    /// record that a new leader may still cut ([`MessageStore::cut_tail`]).
    pub fn open_replica(config: StoreConfig, applied: u64) -> Result<MessageStore> {
        MessageStore::open_with(config, applied)
    }

    fn open_with(config: StoreConfig, dispatch_limit: u64) -> Result<MessageStore> {
        config.validate()?;
        let root = config.store_path_root_dir.clone();
        crate::segment::create_dir_durably(&root)?;
        let lock = lock_root(&root)?;
        let abort = root.join("abort");
        let clean = !abort.exists();
        let (checkpoint, saved) = CheckpointFile::open(&root.join("checkpoint"))?;
        let commit_log = CommitLog::open(
            &config.commit_log_dir(),
            config.mapped_file_size_commit_log,
            config.warm_maped_file_enable,
            Quarantine::load(&config.quarantine_dir())?,
        )?;
        let index = if config.message_index_enable {
            Some(Index::open(
                &config.index_dir(),
                config.max_hash_slot_num,
                config.max_index_num,
            )?)
        } else {
            None
        };
        let inner = Arc::new(Inner {
            queues: RwLock::new(load_queues(&config)?),
            config,
            commit_log,
            index,
            dispatched: Mutex::new(0),
            dispatch_limit: AtomicU64::new(dispatch_limit),
            kept_from: AtomicU64::new(u64::MAX),
            retention_holds: Mutex::new(Default::default()),
            copying: Mutex::new(()),
            checkpointing: Mutex::new(()),
            flush_requests: FlushRequests::default(),
            checkpoint,
            listener: RwLock::new(None),
            flush_listener: RwLock::new(None),
            fence: OnceLock::new(),
            stopping: AtomicBool::new(false),
            #[cfg(feature = "failpoints")]
            crashed: AtomicBool::new(false),
            lock: Mutex::new(Some(lock)),
        });
        crate::recovery::recover(&inner, clean, saved)?;
        write_durably(&abort, std::process::id().to_string().as_bytes())?;
        inner.save_checkpoint()?;

        let mut threads = Vec::new();
        #[cfg(feature = "failpoints")]
        let background: &[_] = if crate::durability::driven_here() {
            &[]
        } else {
            &BACKGROUND
        };
        #[cfg(not(feature = "failpoints"))]
        let background = &BACKGROUND;
        for (name, run) in background.iter().copied() {
            let inner = Arc::clone(&inner);
            let thread = std::thread::Builder::new()
                .name(name.into())
                .spawn(move || run(inner))
                .map_err(|e| Error::io(&root, e))?;
            threads.push(thread);
        }
        Ok(MessageStore {
            inner,
            threads: Mutex::new(threads),
            stopped: AtomicBool::new(false),
        })
    }

    /// `store repair`: offline (the store must not be open elsewhere), sets aside damaged
    /// CommitLog ranges below the checkpointed flushed offset so the next open succeeds and
    /// keeps every other message. See `recovery::repair`.
    pub fn repair(config: &StoreConfig) -> Result<RepairReport> {
        crate::recovery::repair(config)
    }

    /// The configuration in force.
    pub fn config(&self) -> &StoreConfig {
        &self.inner.config
    }

    /// Appends one message. Returns once it is written to the page cache and visible to the
    /// store's own bookkeeping; await (or `wait()` on) [`AppendResult::durable`] before
    /// acknowledging under SYNC_FLUSH. Never blocks on a disk flush.
    pub fn append(&self, message: &PutMessage) -> Result<AppendResult> {
        self.append_batch(std::slice::from_ref(message))
    }

    /// Appends messages contiguously (a SEND_BATCH_MESSAGE): all or none are stored.
    pub fn append_batch(&self, messages: &[PutMessage]) -> Result<AppendResult> {
        self.append_batch_waiting_with(messages, &crate::wait::here)
    }

    /// [`MessageStore::append_batch`], waiting through `wait_with` whenever it has to wait
    /// (behind another append, for a segment still being made, for dispatch), so an async
    /// caller can append on its worker and move only those waits off it.
    pub fn append_batch_waiting_with(
        &self,
        messages: &[PutMessage],
        wait_with: WaitWith,
    ) -> Result<AppendResult> {
        let inner = &self.inner;
        if inner.stopping.load(Ordering::Acquire) {
            return Err(Error::NotAvailable("store is shutting down"));
        }
        if let Some(reason) = inner.fence.get() {
            return Err(Error::WritesFenced(reason.clone()));
        }
        for put in messages {
            check_topic(&put.message.topic)?;
        }
        let (appended, end) =
            inner
                .commit_log
                .append(messages, inner.config.max_message_size, wait_with)?;
        let wait_store_ok = messages.iter().all(|put| put.message.wait_store_ok());
        Ok(self.stored(appended, end, wait_store_ok, wait_with))
    }

    /// Stores a copy of records another replica wrote at `start` (a Raft leader's batch, as
    /// [`MessageStore::commit_log_bytes`] read them there) at the same offset, so every
    /// replica's CommitLog holds the same bytes at the same offsets. `start` must be where
    /// this store's next batch goes; otherwise, or if the bytes are not whole records that
    /// name their own offsets with intact CRCs, nothing is written
    /// ([`Error::ReplicaMismatch`]). Durable as any append.
    pub fn append_copy(&self, start: u64, bytes: &[u8]) -> Result<AppendResult> {
        let inner = &self.inner;
        if inner.stopping.load(Ordering::Acquire) {
            return Err(Error::NotAvailable("store is shutting down"));
        }
        if let Some(reason) = inner.fence.get() {
            return Err(Error::WritesFenced(reason.clone()));
        }
        let (appended, end) = inner
            .commit_log
            .append_copy(start, bytes, &crate::wait::here)?;
        Ok(self.stored(appended, end, true, &crate::wait::here))
    }

    /// Resolves once the CommitLog up to `end` is durable as `flushDiskType` defines it (at
    /// once under ASYNC_FLUSH): what a replica waits for before reporting a batch it stored
    /// earlier as durable.
    pub fn durable_up_to(&self, end: u64) -> Durable {
        let inner = &self.inner;
        match inner.config.flush_disk_type {
            FlushDiskType::AsyncFlush => Durable::ready(end),
            FlushDiskType::SyncFlush => {
                let timeout = Duration::from_millis(inner.config.sync_flush_timeout);
                inner.flush_requests.request(end, timeout)
            }
        }
    }

    /// A replica's group committed and this replica applied the records up to `end`: they
    /// are dispatched (under SYNC_FLUSH once flushed here too, by the flush thread).
    pub fn apply_up_to(&self, end: u64) -> Result<()> {
        let inner = &self.inner;
        inner.dispatch_limit.fetch_max(end, Ordering::AcqRel);
        let ready = match inner.config.flush_disk_type {
            FlushDiskType::AsyncFlush => end,
            FlushDiskType::SyncFlush => end.min(inner.commit_log.flushed_offset()),
        };
        inner.dispatch_to(ready)
    }

    /// Cuts a replica's CommitLog at `from`: the records there and after it were never
    /// committed by the group (a leader's tail that a new leader overwrites). Durable when it
    /// returns; the queue offsets those records took are given back. Refused, cutting
    /// nothing, below what is applied or dispatched.
    pub fn cut_tail(&self, from: u64) -> Result<()> {
        let inner = &self.inner;
        let mut paused = inner.commit_log.pause_appends();
        let reput = inner.dispatched.lock();
        let end = inner.commit_log.max_offset();
        if from >= end {
            return Ok(());
        }
        let applied = inner.dispatch_limit.load(Ordering::Acquire);
        if from < applied || from < *reput {
            return Err(Error::ReplicaMismatch {
                start: from,
                reason: format!(
                    "cannot cut a CommitLog below what is applied ({}) or dispatched ({})",
                    applied.min(end),
                    *reput
                ),
            });
        }
        let next = inner.next_queue_offsets(*reput, from)?;
        tracing::warn!(from, end, "cutting the CommitLog's uncommitted tail");
        let checkpointing = inner.checkpointing.lock();
        if from < inner.commit_log.flushed_offset() {
            // The checkpoint may claim the CommitLog flushed past the cut, and recovery
            // refuses a CommitLog that ends before its checkpoint: it comes down first.
            inner.save_checkpoint_locked(*reput, from)?;
        }
        inner.commit_log.cut(&mut paused, from)?;
        drop(checkpointing);
        paused.set_queue_offsets(next);
        Ok(())
    }

    /// Retention deletes no CommitLog segment that ends after `offset`, whatever its age or
    /// the disk's use: a Raft replica's log names batches from there on, which its leader may
    /// still have to send a follower.
    pub fn keep_from(&self, offset: u64) {
        self.inner.kept_from.store(offset, Ordering::Release);
    }

    /// Retention deletes no CommitLog segment that ends after `from` while the hold lives:
    /// a copy of the records from there (a snapshot sent to another replica) is under way.
    pub fn hold_retention(&self, from: u64) -> RetentionHold {
        *self.inner.retention_holds.lock().entry(from).or_default() += 1;
        RetentionHold {
            inner: Arc::clone(&self.inner),
            from,
        }
    }

    /// Where a replica's dispatch may go: the end of the last batch it applied
    /// ([`MessageStore::open_replica`], [`MessageStore::apply_up_to`]).
    pub fn applied_end(&self) -> u64 {
        self.inner.dispatch_limit.load(Ordering::Acquire)
    }

    /// Whole records from `from` (or from the next segment's start, when a blank marker or a
    /// segment's end is there) up to `end`, within one segment, about `max_len` bytes (at
    /// least one record): a piece of the CommitLog for another replica's copy
    /// ([`MessageStore::copy_committed`]), with the offset it starts at. `None` once `end`
    /// is reached; an error if the records there are gone (retired, or quarantined).
    pub fn commit_log_records(
        &self,
        from: u64,
        end: u64,
        max_len: usize,
    ) -> Result<Option<(u64, Bytes)>> {
        let commit_log = &self.inner.commit_log;
        let end = end.min(commit_log.max_offset());
        let mut start = from;
        let mut at = from;
        while at < end {
            match commit_log.find(at, end)? {
                Found::Message(_, _, size) => {
                    if at > start && (at - start) as usize + size > max_len {
                        break;
                    }
                    at += size as u64;
                }
                Found::ContinueAt(next) if at == start && next > at => {
                    start = next;
                    at = next;
                }
                Found::ContinueAt(_) | Found::End => break,
            }
        }
        let gone = Error::NotAvailable("the CommitLog holds no records there");
        if at == start {
            return if start >= end { Ok(None) } else { Err(gone) };
        }
        let bytes = self.commit_log_bytes(start, at).ok_or(gone)?;
        Ok(Some((start, bytes)))
    }

    /// Makes this replica's CommitLog hold `bytes`, records the group committed (another
    /// replica's [`MessageStore::commit_log_records`]), at `start`: nothing is written if it
    /// holds them already; other bytes there were never committed and are cut (never below
    /// what is applied); and an empty store begins at `start` when the group's older segments
    /// were retired. Durable as any append, once [`MessageStore::durable_up_to`] says so.
    ///
    /// `from` is where the other replica read from: before `start` when a blank marker ends
    /// its segment there. A record this replica holds at `from` is then not the group's.
    pub fn copy_committed(&self, from: u64, start: u64, bytes: &[u8]) -> Result<()> {
        let inner = &self.inner;
        let _copying = inner.copying.lock();
        let end = self.commit_log_max_offset();
        if from < start && from < end {
            if let Found::Message(..) = inner.commit_log.find(from, end)? {
                self.cut_tail(from)?;
            }
        }
        let end = self.commit_log_max_offset();
        if start < end {
            let held = self.commit_log_bytes(start, start + bytes.len() as u64);
            if held.is_some_and(|held| held[..] == *bytes) {
                return Ok(());
            }
            self.cut_tail(start)?;
        }
        if start > end {
            // The writer's lock before dispatch's, in that order as everywhere (cut_tail).
            inner.commit_log.skip_to(start)?;
            let mut reput = inner.dispatched.lock();
            if *reput < inner.commit_log.min_offset() {
                // Nothing below the new first segment is here to dispatch.
                *reput = inner.commit_log.min_offset();
            }
        }
        self.append_copy(start, bytes).map(drop)
    }

    /// The CommitLog's published bytes from `start` to `end`, within one segment (a batch
    /// as an append wrote it); `None` if they are not all there.
    pub fn commit_log_bytes(&self, start: u64, end: u64) -> Option<Bytes> {
        let len = usize::try_from(end.checked_sub(start)?).ok()?;
        self.inner.commit_log.message_bytes(start, len)
    }

    /// What follows storing records up to `end`: dispatch, and the flush that makes them
    /// durable as `flushDiskType` says (SYNC_FLUSH waits for it only if `wait_store_ok`).
    fn stored(
        &self,
        appended: Vec<AppendedMessage>,
        end: u64,
        wait_store_ok: bool,
        wait_with: WaitWith,
    ) -> AppendResult {
        let inner = &self.inner;
        let durable = match inner.config.flush_disk_type {
            FlushDiskType::AsyncFlush => {
                // The message is stored whatever dispatch does: failing the send now would
                // make the client send it again. A failed dispatch is retried by the next
                // append or the maintenance thread, and the message becomes readable then.
                if let Err(error) = inner.dispatch_to_waiting_with(end, wait_with) {
                    tracing::warn!(%error, "dispatch failed; it will be retried");
                }
                if !inner.config.flush_commit_log_timed {
                    inner.flush_requests.nudge();
                }
                Durable::ready(end)
            }
            FlushDiskType::SyncFlush => {
                if wait_store_ok {
                    let timeout = Duration::from_millis(inner.config.sync_flush_timeout);
                    inner.flush_requests.request(end, timeout)
                } else {
                    inner.flush_requests.nudge();
                    Durable::ready(end)
                }
            }
        };
        AppendResult {
            messages: appended,
            end_offset: end,
            durable,
        }
    }

    /// Reads up to `max_count` messages (and about `max_bytes`, at least one) from a queue,
    /// starting at `offset`, skipping messages `filter` rejects.
    pub fn get_message(
        &self,
        topic: &str,
        queue_id: i32,
        offset: i64,
        max_count: usize,
        max_bytes: usize,
        filter: Option<&dyn MessageFilter>,
    ) -> GetMessageResult {
        let mut result = GetMessageResult {
            status: GetMessageStatus::NoMatchedLogicQueue,
            messages: Vec::new(),
            queue_offsets: Vec::new(),
            next_begin_offset: 0,
            min_offset: 0,
            max_offset: 0,
            behind: 0,
        };
        let Some(queue) = self.inner.queue(topic, queue_id) else {
            return result;
        };
        let (min, max) = (queue.min_offset(), queue.max_offset());
        result.min_offset = min;
        result.max_offset = max;
        (result.status, result.next_begin_offset) = if max == 0 {
            (GetMessageStatus::NoMessageInQueue, 0)
        } else if offset < min {
            (GetMessageStatus::OffsetTooSmall, min)
        } else if offset == max {
            (GetMessageStatus::OffsetOverflowOne, offset)
        } else if offset > max {
            (GetMessageStatus::OffsetOverflowBadly, max)
        } else {
            (GetMessageStatus::NoMatchedMessage, offset)
        };
        if result.status != GetMessageStatus::NoMatchedMessage {
            return result;
        }
        let commit_log_min = self.inner.commit_log.min_offset();
        let scan_limit = max_count.max(MAX_FILTER_SCAN) as i64;
        let mut bytes = 0usize;
        let mut removed = false;
        let mut holes = false;
        let mut next = offset;
        let mut last_examined = None;
        while next < max && next - offset < scan_limit && result.messages.len() < max_count {
            let Some(entry) = queue.entry(next) else {
                holes = true;
                next += 1;
                continue;
            };
            if !result.messages.is_empty() && bytes + entry.size as usize > max_bytes {
                break;
            }
            next += 1;
            last_examined = Some(entry.physical_offset);
            if filter.is_some_and(|filter| !filter.matches_tags_code(entry.tags_code)) {
                continue;
            }
            if entry.physical_offset < commit_log_min {
                removed = true;
                continue;
            }
            match self
                .inner
                .commit_log
                .message_bytes(entry.physical_offset, entry.size as usize)
            {
                Some(message) if filter.is_some_and(|filter| !filter.matches_message(&message)) => {
                }
                Some(message) => {
                    bytes += message.len();
                    result.messages.push(message);
                    result.queue_offsets.push(next - 1);
                }
                None => removed = true,
            }
        }
        result.next_begin_offset = next;
        if let Some(examined) = last_examined {
            result.behind = self.inner.commit_log.max_offset().saturating_sub(examined);
        }
        result.status = if !result.messages.is_empty() {
            GetMessageStatus::Found
        } else if removed {
            GetMessageStatus::MessageWasRemoving
        } else if holes {
            GetMessageStatus::OffsetFoundNull
        } else {
            GetMessageStatus::NoMatchedMessage
        };
        result
    }

    /// The stored record at a CommitLog offset (VIEW_MESSAGE_BY_ID); `None` for an offset
    /// that is not the start of a stored message.
    pub fn message_at(&self, physical_offset: u64) -> Option<Bytes> {
        let commit_log = &self.inner.commit_log;
        if physical_offset < commit_log.min_offset() {
            return None;
        }
        match commit_log
            .find(physical_offset, commit_log.max_offset())
            .ok()?
        {
            Found::Message(segment, position, size) => {
                let stored = StoredMessage::parse(segment.read(position, size)).ok()?;
                (stored.physical_offset() == physical_offset as i64)
                    .then(|| segment.bytes(position, size))
            }
            _ => None,
        }
    }

    /// A queue's min offset (0 for an unknown queue).
    pub fn min_offset(&self, topic: &str, queue_id: i32) -> i64 {
        self.inner
            .queue(topic, queue_id)
            .map_or(0, |q| q.min_offset())
    }

    /// A queue's max offset: the next offset to be written (0 for an unknown queue).
    pub fn max_offset(&self, topic: &str, queue_id: i32) -> i64 {
        self.inner
            .queue(topic, queue_id)
            .map_or(0, |q| q.max_offset())
    }

    /// Consume-queue entry at `offset`.
    pub fn queue_entry(&self, topic: &str, queue_id: i32, offset: i64) -> Option<QueueEntry> {
        self.inner.queue(topic, queue_id)?.entry(offset)
    }

    /// STORETIMESTAMP of the message at a queue offset.
    pub fn store_timestamp_at(&self, topic: &str, queue_id: i32, offset: i64) -> Option<i64> {
        let entry = self.queue_entry(topic, queue_id, offset)?;
        self.inner.store_timestamp(entry)
    }

    /// STORETIMESTAMP of a queue's oldest message (GET_EARLIEST_MSG_STORETIME).
    pub fn earliest_message_time(&self, topic: &str, queue_id: i32) -> Option<i64> {
        self.store_timestamp_at(topic, queue_id, self.min_offset(topic, queue_id))
    }

    /// SEARCH_OFFSET_BY_TIMESTAMP (lower boundary): the first queue offset whose message was
    /// stored at or after `timestamp`; the max offset if none was.
    pub fn offset_by_timestamp(&self, topic: &str, queue_id: i32, timestamp: i64) -> i64 {
        let Some(queue) = self.inner.queue(topic, queue_id) else {
            return 0;
        };
        let (mut low, mut high) = (queue.min_offset(), queue.max_offset());
        while low < high {
            let middle = low + (high - low) / 2;
            let stored = queue
                .entry(middle)
                .and_then(|e| self.inner.store_timestamp(e));
            match stored {
                Some(stored) if stored >= timestamp => high = middle,
                // A hole or a removed message counts as older.
                _ => low = middle + 1,
            }
        }
        low
    }

    /// QUERY_MESSAGE: messages indexed under `key` (a KEYS token or a UNIQ_KEY) of `topic`,
    /// stored within `[begin, end]` ms, at most `max` (capped at `maxMsgsNumBatch`).
    pub fn query_by_key(
        &self,
        topic: &str,
        key: &str,
        max: usize,
        begin: i64,
        end: i64,
    ) -> QueryMessageResult {
        let Some(index) = &self.inner.index else {
            return QueryMessageResult::default();
        };
        let max = max.min(self.inner.config.max_msgs_num_batch);
        let mut offsets = index.query(topic, key, max, begin, end);
        offsets.sort_unstable();
        let (timestamp, physical) = index.last_update();
        QueryMessageResult {
            messages: offsets
                .into_iter()
                .filter_map(|offset| self.message_at(offset))
                .collect(),
            index_last_update_timestamp: timestamp,
            index_last_update_physical_offset: physical,
        }
    }

    /// Oldest CommitLog offset still stored.
    pub fn commit_log_min_offset(&self) -> u64 {
        self.inner.commit_log.min_offset()
    }

    /// CommitLog offset of the next append.
    pub fn commit_log_max_offset(&self) -> u64 {
        self.inner.commit_log.max_offset()
    }

    /// CommitLog offset up to which bytes are on disk.
    pub fn commit_log_flushed_offset(&self) -> u64 {
        self.inner.commit_log.flushed_offset()
    }

    /// Flushes the CommitLog up to `end` now, on this thread, whatever the flush mode: a
    /// replica records a snapshot it installs only once the records it covers are on disk.
    pub fn flush_up_to(&self, end: u64) -> Result<()> {
        self.inner.flush_or_fence(end).map(|_| ())
    }

    /// CommitLog offset below which records are in the consume queues and the index.
    pub fn dispatched_offset(&self) -> u64 {
        self.inner.dispatched()
    }

    /// STORETIMESTAMP of the oldest message still in the CommitLog; `None` when it is empty.
    pub fn earliest_commit_log_time(&self) -> Option<i64> {
        let oldest = self.message_at(self.commit_log_min_offset())?;
        StoredMessage::parse(&oldest)
            .ok()
            .map(|m| m.store_timestamp())
    }

    /// Share of the store's filesystem in use, 0 to 1, as `df` reports it.
    pub fn disk_used_ratio(&self) -> Option<f64> {
        crate::retention::disk_used_percent(&self.inner.config.store_path_root_dir)
            .map(|percent| percent as f64 / 100.0)
    }

    /// Every (topic, queue id) that has a consume queue.
    pub fn queues(&self) -> Vec<(String, i32)> {
        let queues = self.inner.queues.read();
        let mut all: Vec<_> = queues
            .iter()
            .flat_map(|(topic, ids)| ids.keys().map(move |id| (topic.clone(), *id)))
            .collect();
        all.sort();
        all
    }

    /// Called for every message entering a consume queue (after its flush under
    /// SYNC_FLUSH), on the store's thread: keep it short (wake a long-polling pull).
    pub fn set_arrival_listener(
        &self,
        listener: impl Fn(&ArrivedMessage<'_>) + Send + Sync + 'static,
    ) {
        *self.inner.listener.write() = Some(Arc::new(listener));
    }

    /// Called after each CommitLog flush that succeeded, with how long it took, on the
    /// flush thread: keep it short (observe a histogram).
    pub fn set_flush_listener(&self, listener: impl Fn(Duration) + Send + Sync + 'static) {
        *self.inner.flush_listener.write() = Some(Arc::new(listener));
    }

    /// Joins the store's threads once `stopping` is set: the deadline thread last, after
    /// the flush requests close.
    fn join_threads(&self) {
        for thread in self.threads.lock().drain(..) {
            if thread.thread().name() == Some(DEADLINE_THREAD) {
                self.inner.flush_requests.close();
            }
            // The maintenance thread naps in `park_timeout`: wake it to see `stopping`.
            thread.thread().unpark();
            let _ = thread.join();
        }
    }

    /// Deletes a topic's consume queues and queue offsets (DELETE_TOPIC_IN_BROKER), so a
    /// topic created again under the same name starts empty at offset 0 instead of serving
    /// the old messages. The records stay in the CommitLog until retention removes them;
    /// the checkpoint taken here keeps a crash recovery from dispatching them again.
    pub fn delete_topic(&self, topic: &str) -> Result<()> {
        check_topic(topic)?;
        let inner = &self.inner;
        // No append while the topic goes: one appended before its queues are deleted but
        // dispatched after would bring a queue back at the old offsets.
        let mut paused = inner.commit_log.pause_appends();
        // Every record of the topic is flushed and dispatched first, and the checkpoint
        // below records both, so a crash recovery never dispatches them again.
        let end = inner.commit_log.max_offset();
        inner.flush_or_fence(end)?;
        inner.dispatch_to(end)?;
        {
            let _dispatch = inner.dispatched.lock();
            let removed = inner.queues.write().remove(topic);
            for queue in removed.into_iter().flat_map(HashMap::into_values) {
                queue.delete_files()?;
            }
            let dir = inner.config.consume_queue_dir().join(topic);
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => crate::segment::sync_dir(&inner.config.consume_queue_dir())?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(&dir, e)),
            }
        }
        paused.forget_topic(topic);
        drop(paused);
        inner.save_checkpoint()
    }

    /// Test-only (the `failpoints` feature): stops as a power loss would, mid-flight. The
    /// threads stop without another flush or checkpoint, `abort` stays, and the lock is
    /// released, so the crash simulation can rebuild the disk and open the store again. It
    /// takes `&self` because a replicated group's Raft shares the store: whatever still
    /// holds it finds it stopped, and dropping the last holder does not flush.
    #[cfg(feature = "failpoints")]
    #[doc(hidden)]
    pub fn crash(&self) {
        let inner = &self.inner;
        self.stopped.store(true, Ordering::Release);
        inner.crashed.store(true, Ordering::Release);
        inner.stopping.store(true, Ordering::Release);
        inner.flush_requests.stop_waiting();
        self.join_threads();
        inner.flush_requests.close();
        inner.commit_log.shutdown();
        inner.lock.lock().take();
    }

    /// Test-only (the `failpoints` feature): what the store's threads do, done once, here, for
    /// a store opened without them (`durability::drive_stores_on_this_thread`): a flush of
    /// all written, answering the appends that wait for it, and a checkpoint.
    #[cfg(feature = "failpoints")]
    #[doc(hidden)]
    pub fn step(&self) {
        if !self.stopped.load(Ordering::Acquire) {
            flush_round(&self.inner);
            checkpoint_round(&self.inner);
        }
    }

    /// Flushes consume queues and the index and writes the checkpoint now, as the
    /// maintenance thread does every `flushIntervalConsumeQueue`.
    pub fn checkpoint(&self) -> Result<()> {
        self.inner.save_checkpoint()
    }

    /// Why the store refuses writes, once a flush has failed (`None` while it accepts them).
    pub fn write_fence(&self) -> Option<&str> {
        self.inner.fence.get().map(String::as_str)
    }

    /// Runs retention now as the admin `deleteExpiredCommitLog` does, judging age against
    /// `now`. Returns the number of CommitLog segments deleted.
    pub fn delete_expired_files(&self, now: SystemTime) -> Result<usize> {
        crate::retention::clean(&self.inner, now, true)
    }

    /// Drops the consume-queue entries and index files that point below the CommitLog's
    /// minimum (mqadmin `cleanExpiredCQ`). Retention does this after every deletion, so this
    /// finds work only when a deletion's trim failed part-way.
    pub fn clean_expired_consume_queues(&self) -> Result<()> {
        self.inner.trim_to_commit_log()
    }

    /// Flushes everything, writes the checkpoint and removes `abort`, so the next open is a
    /// fast clean start. Pending SYNC_FLUSH waiters are completed first. Idempotent.
    pub fn shutdown(&self) -> Result<()> {
        if self.stopped.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let inner = &self.inner;
        inner.stopping.store(true, Ordering::Release);
        inner.flush_requests.stop_waiting();
        self.join_threads();
        inner.flush_requests.close();
        inner.commit_log.shutdown();
        if let Some(reason) = inner.fence.get() {
            // Nothing flushed now could be trusted; keep `abort` so the next start recovers
            // and checks every record past the last good checkpoint.
            tracing::warn!(%reason, "store stopped with writes fenced; the next start recovers");
            inner.lock.lock().take();
            return Ok(());
        }
        let end = inner.commit_log.max_offset();
        inner.flush_or_fence(end)?;
        inner.dispatch_to(end)?;
        inner.save_checkpoint()?;
        let abort = inner.config.store_path_root_dir.join("abort");
        std::fs::remove_file(&abort).map_err(|e| Error::io(&abort, e))?;
        crate::segment::sync_dir(&inner.config.store_path_root_dir)?;
        durable!(removed(&abort));
        inner.lock.lock().take();
        Ok(())
    }
}

impl Drop for MessageStore {
    fn drop(&mut self) {
        if let Err(error) = self.shutdown() {
            tracing::error!(%error, "store shutdown failed");
        }
    }
}

impl Inner {
    pub(crate) fn queue(&self, topic: &str, queue_id: i32) -> Option<Arc<ConsumeQueue>> {
        self.queues.read().get(topic)?.get(&queue_id).cloned()
    }

    pub(crate) fn all_queues(&self) -> Vec<(String, i32, Arc<ConsumeQueue>)> {
        let queues = self.queues.read();
        queues
            .iter()
            .flat_map(|(topic, ids)| {
                ids.iter()
                    .map(move |(id, q)| (topic.clone(), *id, Arc::clone(q)))
            })
            .collect()
    }

    fn queue_or_create(&self, topic: &str, queue_id: i32) -> Result<Arc<ConsumeQueue>> {
        if let Some(queue) = self.queue(topic, queue_id) {
            return Ok(queue);
        }
        let mut queues = self.queues.write();
        let ids = queues.entry(topic.to_owned()).or_default();
        if let Some(queue) = ids.get(&queue_id) {
            return Ok(Arc::clone(queue));
        }
        let dir = self
            .config
            .consume_queue_dir()
            .join(topic)
            .join(queue_id.to_string());
        let queue = Arc::new(ConsumeQueue::open(
            &dir,
            self.config.mapped_file_size_consume_queue,
        )?);
        ids.insert(queue_id, Arc::clone(&queue));
        Ok(queue)
    }

    fn store_timestamp(&self, entry: QueueEntry) -> Option<i64> {
        let bytes = self
            .commit_log
            .message_bytes(entry.physical_offset, entry.size as usize)?;
        StoredMessage::parse(&bytes)
            .ok()
            .map(|m| m.store_timestamp())
    }

    pub(crate) fn dispatched(&self) -> u64 {
        *self.dispatched.lock()
    }

    pub(crate) fn set_dispatched(&self, offset: u64) {
        *self.dispatched.lock() = offset;
    }

    /// Builds consume-queue and index entries for every record up to `end` (RocketMQ's
    /// ReputMessageService, run inline). Serialized by the reput lock, so entries are written
    /// in CommitLog order by one writer at a time.
    pub(crate) fn dispatch_to(&self, end: u64) -> Result<()> {
        self.dispatch_to_waiting_with(end, &crate::wait::here)
    }

    fn dispatch_to_waiting_with(&self, end: u64, wait_with: WaitWith) -> Result<()> {
        let end = end.min(self.dispatch_limit.load(Ordering::Acquire));
        let mut reput = crate::wait::lock(&self.dispatched, wait_with);
        if *reput < end {
            fault!("store::dispatch", |_| Err(Error::io(
                "consumequeue",
                std::io::Error::from_raw_os_error(libc::ENOSPC)
            )));
        }
        while *reput < end {
            match self.commit_log.find(*reput, end)? {
                Found::Message(segment, position, size) => {
                    let bytes = segment.read(position, size);
                    match StoredMessage::parse(bytes) {
                        Ok(stored) => self.dispatch_one(&stored)?,
                        Err(error) => {
                            tracing::error!(offset = *reput, %error, "[BUG] undecodable record skipped by dispatch")
                        }
                    }
                    *reput += size as u64;
                }
                Found::ContinueAt(next) => *reput = next.min(end),
                Found::End => break,
            }
        }
        Ok(())
    }

    fn dispatch_one(&self, stored: &StoredMessage<'_>) -> Result<()> {
        let Ok(topic) = stored.topic() else {
            return Ok(());
        };
        let properties = stored.properties_text().unwrap_or_default();
        let find = |name| Properties::find_in(properties, name);
        let transaction = sysflag::transaction_type(stored.sys_flag());
        if PutMessage::takes_queue_offset(stored.sys_flag()) {
            let queue = self.queue_or_create(topic, stored.queue_id())?;
            let tags_code = message::tags_code(find(property::TAGS));
            queue.put(
                stored.queue_offset(),
                QueueEntry {
                    physical_offset: stored.physical_offset() as u64,
                    size: stored.total_size() as u32,
                    tags_code,
                },
            )?;
            if let Some(listener) = self.listener.read().clone() {
                listener(&ArrivedMessage {
                    topic,
                    queue_id: stored.queue_id(),
                    max_offset: queue.max_offset(),
                    tags_code,
                    store_timestamp: stored.store_timestamp(),
                });
            }
        }
        if let Some(index) = &self.index {
            if transaction != sysflag::TRANSACTION_ROLLBACK {
                let keys = find(property::KEYS)
                    .unwrap_or("")
                    .split(property::KEY_SEPARATOR)
                    .filter(|k| !k.is_empty())
                    .chain(find(property::UNIQ_KEY));
                index.put(
                    topic,
                    keys,
                    stored.physical_offset() as u64,
                    stored.store_timestamp(),
                )?;
            }
        }
        Ok(())
    }

    /// Refuses writes from now on, for `reason`; the first reason is kept.
    pub(crate) fn fence(&self, reason: String) {
        if self.fence.set(reason.clone()).is_ok() {
            tracing::error!(%reason, "store writes fenced: sends are refused until a restart");
        }
    }

    /// Flushes the CommitLog up to `target`, fencing writes if that fails.
    fn flush_or_fence(&self, target: u64) -> Result<u64> {
        self.commit_log.flush_to(target).inspect_err(|error| {
            self.fence(format!("CommitLog flush failed: {}", error.with_sources()));
        })
    }

    /// Flushes consume queues and index, then records how far they (and the CommitLog) are
    /// durable. The dispatched offset is read first, so everything below it is flushed.
    /// Once writes are fenced the checkpoint never moves again: a flush error may have
    /// dropped pages that a later, "successful" flush would not bring back.
    pub(crate) fn save_checkpoint(&self) -> Result<()> {
        let dispatched = self.dispatched();
        let _checkpointing = self.checkpointing.lock();
        self.save_checkpoint_locked(dispatched, u64::MAX)
    }

    /// [`Inner::save_checkpoint`] with `checkpointing` held, of `dispatched` (read before:
    /// a cut holds the dispatch lock) and claiming the CommitLog flushed no further than
    /// `flushed_limit`.
    fn save_checkpoint_locked(&self, dispatched: u64, flushed_limit: u64) -> Result<()> {
        if let Some(reason) = self.fence.get() {
            return Err(Error::WritesFenced(reason.clone()));
        }
        let result = self.flush_and_save_checkpoint(dispatched, flushed_limit);
        if let Err(error) = &result {
            self.fence(format!("checkpoint failed: {}", error.with_sources()));
        }
        result
    }

    fn flush_and_save_checkpoint(&self, dispatched: u64, flushed_limit: u64) -> Result<()> {
        fault!("store::checkpoint", |_| Err(Error::io(
            "checkpoint",
            std::io::Error::from_raw_os_error(libc::EIO)
        )));
        let commit_log_flushed = self.commit_log.flushed_offset().min(flushed_limit);
        for (_, _, queue) in self.all_queues() {
            queue.flush()?;
        }
        if let Some(index) = &self.index {
            index.flush()?;
        }
        let now = now_millis();
        self.checkpoint.save(&Checkpoint {
            physic_msg_timestamp: now,
            logics_msg_timestamp: now,
            index_msg_timestamp: now,
            commit_log_flushed,
            dispatched,
        })
    }

    /// After CommitLog segments were deleted: trims consume queues and index below its min.
    pub(crate) fn trim_to_commit_log(&self) -> Result<()> {
        let min = self.commit_log.min_offset();
        for (_, _, queue) in self.all_queues() {
            queue.trim_below_physical(min)?;
        }
        if let Some(index) = &self.index {
            index.trim_below_physical(min)?;
        }
        Ok(())
    }

    /// The next queue offset of every queue once the records up to `end` are stored: the
    /// consume queues' ends, moved on by the records from `dispatched` to `end`, which took
    /// their offsets but are not in the queues yet (a replica's uncommitted tail).
    pub(crate) fn next_queue_offsets(&self, dispatched: u64, end: u64) -> Result<QueueOffsets> {
        let mut next = QueueOffsets::new();
        for (topic, queue_id, queue) in self.all_queues() {
            next.entry(topic)
                .or_default()
                .insert(queue_id, queue.max_offset());
        }
        let mut at = dispatched;
        while at < end {
            match self.commit_log.find(at, end)? {
                Found::Message(segment, position, size) => {
                    if let Ok(stored) = StoredMessage::parse(segment.read(position, size)) {
                        if let (Ok(topic), true) = (
                            stored.topic(),
                            PutMessage::takes_queue_offset(stored.sys_flag()),
                        ) {
                            let queue = next
                                .entry(topic.to_owned())
                                .or_default()
                                .entry(stored.queue_id())
                                .or_insert(0);
                            *queue = (*queue).max(stored.queue_offset() + 1);
                        }
                    }
                    at += size as u64;
                }
                Found::ContinueAt(continue_at) => at = continue_at,
                Found::End => break,
            }
        }
        Ok(next)
    }

    pub(crate) fn truncate_queues(&self, physical: u64) -> Result<()> {
        for (_, _, queue) in self.all_queues() {
            queue.truncate_from_physical(physical)?;
        }
        Ok(())
    }
}

pub(crate) fn check_topic(topic: &str) -> Result<()> {
    // The topic names a directory; a separator or dot name would escape consumequeue/.
    if topic.is_empty() || topic == "." || topic == ".." || topic.contains(['/', '\0']) {
        return Err(Error::IllegalTopic(topic.to_owned()));
    }
    Ok(())
}

/// Writes a small file and makes it and its name durable.
pub(crate) fn write_durably(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    let io = |e| Error::io(path, e);
    let mut file = File::create(path).map_err(io)?;
    std::io::Write::write_all(&mut file, bytes).map_err(io)?;
    file.sync_all().map_err(io)?;
    if let Some(dir) = path.parent() {
        crate::segment::sync_dir(dir)?;
    }
    durable!(created(path, 0));
    durable!(flushed(path, 0, bytes));
    Ok(())
}

pub(crate) fn lock_root(root: &std::path::Path) -> Result<File> {
    let path = root.join("lock");
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
    // SAFETY: flock on our own open descriptor.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Err(Error::NotAvailable("another process holds the store lock"));
    }
    Ok(file)
}

fn load_queues(config: &StoreConfig) -> Result<HashMap<String, HashMap<i32, Arc<ConsumeQueue>>>> {
    let mut queues: HashMap<String, HashMap<i32, Arc<ConsumeQueue>>> = HashMap::new();
    let root = config.consume_queue_dir();
    let topics = match std::fs::read_dir(&root) {
        Ok(topics) => topics,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(queues),
        Err(e) => return Err(Error::io(&root, e)),
    };
    for topic in topics {
        let topic = topic.map_err(|e| Error::io(&root, e))?;
        let Ok(topic_name) = topic.file_name().into_string() else {
            continue;
        };
        let dir: PathBuf = topic.path();
        for queue in std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))? {
            let queue = queue.map_err(|e| Error::io(&dir, e))?;
            let Some(queue_id) = queue
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<i32>().ok())
            else {
                continue;
            };
            let consume_queue =
                ConsumeQueue::open(&queue.path(), config.mapped_file_size_consume_queue)?;
            queues
                .entry(topic_name.clone())
                .or_default()
                .insert(queue_id, Arc::new(consume_queue));
        }
    }
    Ok(queues)
}

fn flush_loop(inner: Arc<Inner>) {
    let config = &inner.config;
    let sync = config.flush_disk_type == FlushDiskType::SyncFlush;
    // Group commit polls often so deadlines are enforced; async flushes on its interval.
    let interval = if sync {
        Duration::from_millis(10)
    } else {
        Duration::from_millis(config.flush_interval_commit_log)
    };
    let thorough = Duration::from_millis(config.flush_commit_log_thorough_interval);
    let least_pages = config.flush_commit_log_least_pages;
    let mut last_thorough = Instant::now();
    loop {
        let stopping = inner.stopping.load(Ordering::Acquire);
        if !stopping {
            inner.flush_requests.wait_for_work(interval);
        }
        #[cfg(feature = "failpoints")]
        if inner.crashed.load(Ordering::Acquire) {
            return;
        }
        if !sync && !stopping {
            let dirty_pages =
                inner.commit_log.max_offset() / 4096 - inner.commit_log.flushed_offset() / 4096;
            if last_thorough.elapsed() >= thorough {
                last_thorough = Instant::now();
            } else if dirty_pages < least_pages.max(1) {
                continue;
            }
        }
        flush_round(&inner);
        if stopping {
            return;
        }
    }
}

/// Flushes all the CommitLog holds, dispatches it under SYNC_FLUSH, and answers the appends
/// that waited for it.
fn flush_round(inner: &Inner) {
    if inner.fence.get().is_some() {
        inner.flush_requests.failed();
        return;
    }
    let target = inner.commit_log.max_offset();
    let started = Instant::now();
    match inner.flush_or_fence(target) {
        Ok(_) => {
            let listener = inner.flush_listener.read().clone();
            if let Some(listener) = listener {
                listener(started.elapsed());
            }
            if inner.config.flush_disk_type == FlushDiskType::SyncFlush {
                if let Err(error) = inner.dispatch_to(target) {
                    tracing::error!(%error, "dispatch after flush failed; it will be retried");
                }
            }
            inner.flush_requests.flushed(target);
        }
        Err(_) => inner.flush_requests.failed(),
    }
}

/// Catches up a dispatch that failed (a full disk, say), and saves the checkpoint. Under
/// SYNC_FLUSH only what is flushed may be dispatched: a consumer must never see a message
/// whose flush failed or has not happened.
fn checkpoint_round(inner: &Inner) {
    let end = match inner.config.flush_disk_type {
        FlushDiskType::SyncFlush => inner.commit_log.flushed_offset(),
        FlushDiskType::AsyncFlush => inner.commit_log.max_offset(),
    };
    if inner.dispatched() < end {
        if let Err(error) = inner.dispatch_to(end) {
            tracing::warn!(%error, "dispatch still failing");
        }
    }
    if inner.fence.get().is_none() {
        if let Err(error) = inner.save_checkpoint() {
            tracing::error!(%error, "checkpoint failed");
        }
    }
}

fn maintenance_loop(inner: Arc<Inner>) {
    let checkpoint_every = Duration::from_millis(inner.config.flush_interval_consume_queue);
    let clean_every = Duration::from_millis(inner.config.clean_resource_interval);
    let mut last_checkpoint = Instant::now();
    let mut last_clean = Instant::now();
    while !inner.stopping.load(Ordering::Acquire) {
        std::thread::park_timeout(Duration::from_millis(20).min(checkpoint_every));
        if last_checkpoint.elapsed() >= checkpoint_every {
            last_checkpoint = Instant::now();
            checkpoint_round(&inner);
        }
        if last_clean.elapsed() >= clean_every {
            last_clean = Instant::now();
            if let Err(error) = crate::retention::clean(&inner, SystemTime::now(), false) {
                tracing::error!(%error, "retention failed");
            }
        }
    }
}
