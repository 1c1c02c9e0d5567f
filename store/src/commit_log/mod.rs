//! The CommitLog: every message of every topic, appended to fixed-size mapped segments.

mod allocator;
mod append;
mod copy;
mod quarantine;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use message::record::BLANK_MIN_LEN;
use message::RecordHead;
use parking_lot::{Mutex, RwLock};

pub(crate) use append::now_millis;
pub(crate) use append::QueueOffsets;
pub use append::{AppendedMessage, PutMessage};

use crate::error::{Error, Result};
use crate::segment::{self, Segment};
use allocator::Allocator;
use append::Writer;
pub(crate) use quarantine::Quarantine;

/// Appends wait while this lives (a topic is being deleted).
pub(crate) struct AppendsPaused<'a>(parking_lot::MutexGuard<'a, Writer>);

impl AppendsPaused<'_> {
    /// Forgets a deleted topic's queue offsets: a topic created again starts at 0.
    pub(crate) fn forget_topic(&mut self, topic: &str) {
        self.0.forget_topic(topic);
    }

    /// See [`CommitLog::set_queue_offsets`].
    pub(crate) fn set_queue_offsets(&mut self, next: QueueOffsets) {
        self.0.set_queue_offsets(next);
    }
}

/// A record found at a CommitLog offset.
pub(crate) enum Found {
    /// A message record, its bytes exactly.
    Message(Arc<Segment>, usize, usize),
    /// Continue at this offset: the next segment (after a blank marker, or at a segment's
    /// end), or the end of a quarantined range.
    ContinueAt(u64),
    /// Nothing (yet) at this offset.
    End,
}

pub(crate) struct CommitLog {
    segment_size: u64,
    segments: RwLock<Vec<Arc<Segment>>>,
    writer: Mutex<Writer>,
    /// Published end of complete records; readers never look past it.
    write_position: AtomicU64,
    flushed_position: AtomicU64,
    /// Held through a flush, so a cut ([`CommitLog::cut`]) never sees a flush publish an end
    /// past the records it cut.
    flushing: Mutex<()>,
    allocator: Allocator,
    quarantine: Quarantine,
}

impl CommitLog {
    /// Maps every segment in `dir`. Positions stay at 0 until recovery calls [`Self::reset_end`].
    pub(crate) fn open(
        dir: &Path,
        segment_size: u64,
        warm: bool,
        quarantine: Quarantine,
    ) -> Result<CommitLog> {
        segment::create_dir_durably(dir)?;
        let mut segments = Vec::new();
        let files = segment::list(dir)?;
        let last = files.len().saturating_sub(1);
        for (index, (start, path)) in files.into_iter().enumerate() {
            // RocketMQ drops an empty last file (a creation cut short by a crash).
            if index == last && std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0) == 0 {
                let _ = std::fs::remove_file(&path);
                continue;
            }
            if !start.is_multiple_of(segment_size) {
                return Err(Error::damaged(
                    &path,
                    "name is not a multiple of the segment size",
                ));
            }
            if let Some(previous) = segments.last().map(|s: &Arc<Segment>| s.end()) {
                if previous != start {
                    return Err(Error::damaged(
                        &path,
                        format!("gap: previous segment ends at {previous}"),
                    ));
                }
            }
            segments.push(Arc::new(Segment::open(path, start, segment_size as usize)?));
        }
        Ok(CommitLog {
            segment_size,
            segments: RwLock::new(segments),
            writer: Mutex::new(Writer::default()),
            write_position: AtomicU64::new(0),
            flushed_position: AtomicU64::new(0),
            flushing: Mutex::new(()),
            allocator: Allocator::start(dir.to_owned(), segment_size as usize, warm),
            quarantine,
        })
    }

    /// Offset of the oldest byte still stored.
    pub(crate) fn min_offset(&self) -> u64 {
        let segments = self.segments.read();
        match segments.first() {
            Some(first) => first.start(),
            None => self.write_position.load(Ordering::Acquire),
        }
    }

    /// End of the published records (the next append's offset, or a segment's end).
    pub(crate) fn max_offset(&self) -> u64 {
        self.write_position.load(Ordering::Acquire)
    }

    pub(crate) fn flushed_offset(&self) -> u64 {
        self.flushed_position.load(Ordering::Acquire)
    }

    pub(crate) fn segments(&self) -> Vec<Arc<Segment>> {
        self.segments.read().clone()
    }

    pub(crate) fn segment_for(&self, offset: u64) -> Option<Arc<Segment>> {
        let segments = self.segments.read();
        let first = segments.first()?.start();
        let index = offset.checked_sub(first)? / self.segment_size;
        segments.get(index as usize).cloned()
    }

    /// What lies at `offset`, looking at published bytes only (or, during recovery, at
    /// everything up to `limit`).
    pub(crate) fn find(&self, offset: u64, limit: u64) -> Result<Found> {
        if let Some(end) = self.quarantine.skip(offset) {
            return Ok(Found::ContinueAt(end));
        }
        let Some(segment) = self.segment_for(offset) else {
            return Ok(Found::End);
        };
        let position = (offset - segment.start()) as usize;
        let available = (limit.min(segment.end()) - offset.min(limit)) as usize;
        if available == 0 {
            return Ok(if offset == segment.end() {
                Found::ContinueAt(offset)
            } else {
                Found::End
            });
        }
        let head = segment.read(position, BLANK_MIN_LEN.min(available));
        match RecordHead::peek(head) {
            Ok(RecordHead::Message { size }) if size <= available => {
                Ok(Found::Message(segment, position, size))
            }
            Ok(RecordHead::Blank { .. }) => Ok(Found::ContinueAt(segment.end())),
            Ok(RecordHead::End) | Ok(RecordHead::Message { .. }) => Ok(Found::End),
            Err(error) => Err(Error::damaged(
                segment.path(),
                format!("bad record at offset {offset}: {error}"),
            )),
        }
    }

    /// The published record starting exactly at `offset`, zero-copy.
    pub(crate) fn message_bytes(&self, offset: u64, size: usize) -> Option<Bytes> {
        if offset + size as u64 > self.max_offset()
            || offset < self.min_offset()
            || self.quarantine.skip(offset).is_some()
        {
            return None;
        }
        let segment = self.segment_for(offset)?;
        let position = (offset - segment.start()) as usize;
        if position + size > segment.size() {
            return None;
        }
        Some(segment.bytes(position, size))
    }

    /// Sets where appends continue after recovery: zeroes everything at and past `end` and
    /// deletes segments that start after it. `flushed` is what is known to be on disk.
    pub(crate) fn reset_end(&self, end: u64, flushed: u64) -> Result<()> {
        let mut writer = self.writer.lock();
        self.cut_locked(&mut writer, end, flushed)
    }

    /// Cuts the records at and past `end` while the store runs (a Raft replica's tail that
    /// the group never committed), durably: the zeroing is synced before this returns, and
    /// no flush in flight can publish an end past the cut. Appends are paused by the caller.
    pub(crate) fn cut(&self, paused: &mut AppendsPaused<'_>, end: u64) -> Result<()> {
        let _flushing = self.flushing.lock();
        let flushed = self.flushed_offset();
        self.cut_locked(&mut paused.0, end, flushed)
    }

    fn cut_locked(&self, writer: &mut Writer, end: u64, flushed: u64) -> Result<()> {
        let mut segments = self.segments.write();
        // Readers stop at the new end before its bytes go. Only `flushed` is known to be on
        // disk: what recovery found past it may still be dirty in the page cache (a restart
        // without a power loss), and must be flushed before a checkpoint may claim it.
        self.write_position.store(end, Ordering::Release);
        self.flushed_position
            .store(flushed.min(end), Ordering::Release);
        while let Some(last) = segments.last() {
            if last.start() > end || (last.start() == end && end > 0 && segments.len() > 1) {
                last.delete()?;
                segments.pop();
            } else {
                break;
            }
        }
        if let Some(last) = segments.last() {
            if end >= last.start() && end < last.end() {
                last.zero_from((end - last.start()) as usize)?;
            }
        }
        writer.reset(segments.last().filter(|s| end < s.end()).cloned());
        Ok(())
    }

    /// Holds off every append until the returned guard is dropped.
    pub(crate) fn pause_appends(&self) -> AppendsPaused<'_> {
        AppendsPaused(self.writer.lock())
    }

    /// Sets the next queue offset of every queue (after recovery or a cut), forgetting
    /// queues `next` does not name.
    pub(crate) fn set_queue_offsets(&self, next: QueueOffsets) {
        self.writer.lock().set_queue_offsets(next);
    }

    /// Flushes everything written up to `target` and returns the new flushed offset. On an
    /// error nothing past what was really flushed is published: the caller fences writes.
    pub(crate) fn flush_to(&self, target: u64) -> Result<u64> {
        let _flushing = self.flushing.lock();
        let flushed = self.flushed_position.load(Ordering::Acquire);
        if target <= flushed {
            return Ok(flushed);
        }
        fault!("store::commitlog::flush", |_| Err(Error::io(
            "commitlog",
            std::io::Error::from_raw_os_error(libc::EIO)
        )));
        let mut at = flushed.max(self.min_offset());
        while at < target {
            let Some(segment) = self.segment_for(at) else {
                // Retention removed it meanwhile: nothing there needs flushing any more.
                let min = self.min_offset();
                if at < min {
                    at = min;
                    continue;
                }
                return Err(Error::NotAvailable(
                    "flush target lies past the last segment",
                ));
            };
            let to = target.min(segment.end());
            segment.flush(
                (at - segment.start()) as usize,
                (to - segment.start()) as usize,
            )?;
            at = to;
        }
        self.flushed_position.fetch_max(target, Ordering::AcqRel);
        Ok(target)
    }

    /// Removes the oldest segment if `should_delete` says so and it is not the active one.
    /// The file is unlinked after the segment list's lock is released: unlinking a 1 GiB
    /// file can take long on a busy disk, and readers need that lock.
    pub(crate) fn delete_oldest_if(
        &self,
        should_delete: impl Fn(&Segment) -> bool,
    ) -> Result<bool> {
        let oldest = {
            let mut segments = self.segments.write();
            if segments.len() < 2 || !should_delete(&segments[0]) {
                return Ok(false);
            }
            segments.remove(0)
        };
        tracing::info!(path = %oldest.path().display(), "deleting expired CommitLog segment");
        oldest.delete()?;
        Ok(true)
    }

    pub(crate) fn shutdown(&self) {
        self.allocator.shutdown();
    }
}
