//! One ConsumeQueue: 20-byte entries (CommitLog offset i64, size i32, tag code i64) for a
//! (topic, queueId), in mapped segments named by their start byte offset.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use crate::error::{Error, Result};
use crate::segment::{self, Segment};

/// Bytes per entry (`CQ_STORE_UNIT_SIZE`).
pub(crate) const ENTRY_SIZE: u64 = 20;

/// One consume-queue entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueEntry {
    /// CommitLog offset of the message.
    pub physical_offset: u64,
    /// Record size.
    pub size: u32,
    /// Tag hash (`String.hashCode` of TAGS), 0 without tags.
    pub tags_code: i64,
}

impl QueueEntry {
    fn decode(bytes: &[u8]) -> Option<QueueEntry> {
        let physical = i64::from_be_bytes(bytes[..8].try_into().ok()?);
        let size = i32::from_be_bytes(bytes[8..12].try_into().ok()?);
        // RocketMQ's validity test; a pre-blank unit has size Integer.MAX_VALUE.
        if physical < 0 || size <= 0 || size == i32::MAX {
            return None;
        }
        Some(QueueEntry {
            physical_offset: physical as u64,
            size: size as u32,
            tags_code: i64::from_be_bytes(bytes[12..20].try_into().ok()?),
        })
    }

    fn encode(&self) -> [u8; ENTRY_SIZE as usize] {
        let mut bytes = [0u8; ENTRY_SIZE as usize];
        bytes[..8].copy_from_slice(&(self.physical_offset as i64).to_be_bytes());
        bytes[8..12].copy_from_slice(&(self.size as i32).to_be_bytes());
        bytes[12..].copy_from_slice(&self.tags_code.to_be_bytes());
        bytes
    }
}

pub(crate) struct ConsumeQueue {
    dir: PathBuf,
    file_size: u64,
    segments: RwLock<Vec<Arc<Segment>>>,
    min_offset: AtomicI64,
    /// Next queue offset to be written, published after its entry.
    max_offset: AtomicI64,
    flushed_offset: Mutex<i64>,
}

/// The index of the last valid entry in `bytes`, searched backward from the last written
/// byte (files are zeroed past what was written): a hole where `store repair` quarantined
/// a queue's messages, however long, does not end the queue.
fn last_valid_entry(bytes: &[u8]) -> Option<usize> {
    let size = ENTRY_SIZE as usize;
    let written = bytes.iter().rposition(|b| *b != 0)? / size + 1;
    (0..written)
        .rev()
        .find(|at| QueueEntry::decode(&bytes[at * size..(at + 1) * size]).is_some())
}

impl ConsumeQueue {
    /// Opens (or prepares, creating nothing yet) the queue in `dir`, finding its end by
    /// scanning the last segment for the first invalid entry.
    pub(crate) fn open(dir: &Path, file_size: u64) -> Result<ConsumeQueue> {
        let mut segments = Vec::new();
        for (start, path) in segment::list(dir)? {
            if !start.is_multiple_of(file_size) {
                return Err(Error::damaged(
                    &path,
                    "name is not a multiple of the file size",
                ));
            }
            segments.push(Arc::new(Segment::open(path, start, file_size as usize)?));
        }
        let queue = ConsumeQueue {
            dir: dir.to_owned(),
            file_size,
            segments: RwLock::new(segments),
            min_offset: AtomicI64::new(0),
            max_offset: AtomicI64::new(0),
            flushed_offset: Mutex::new(0),
        };
        let (min, max) = queue.scan_bounds();
        queue.min_offset.store(min, Ordering::Release);
        queue.max_offset.store(max, Ordering::Release);
        // Entries found at open may still be dirty in the page cache (a restart without a
        // power loss): the first checkpoint flushes them all before it counts on them.
        *queue.flushed_offset.lock() = min;
        Ok(queue)
    }

    fn scan_bounds(&self) -> (i64, i64) {
        let segments = self.segments.read();
        let Some(first) = segments.first() else {
            return (0, 0);
        };
        let first_offset = (first.start() / ENTRY_SIZE) as i64;
        // The first file may start with invalid units when the queue began past offset 0;
        // the last ones may be empty when they were created just before a stop.
        let first_leading = first
            .read(0, first.size())
            .chunks_exact(ENTRY_SIZE as usize)
            .take_while(|entry| QueueEntry::decode(entry).is_none())
            .count() as i64;
        for segment in segments.iter().rev() {
            if let Some(last) = last_valid_entry(segment.read(0, segment.size())) {
                let max = (segment.start() / ENTRY_SIZE) as i64 + last as i64 + 1;
                return ((first_offset + first_leading).min(max), max);
            }
        }
        (first_offset, first_offset)
    }

    pub(crate) fn min_offset(&self) -> i64 {
        self.min_offset.load(Ordering::Acquire)
    }

    pub(crate) fn max_offset(&self) -> i64 {
        self.max_offset.load(Ordering::Acquire)
    }

    fn segment_for(&self, queue_offset: i64) -> Option<Arc<Segment>> {
        let byte = queue_offset as u64 * ENTRY_SIZE;
        let segments = self.segments.read();
        let first = segments.first()?.start();
        let index = byte.checked_sub(first)? / self.file_size;
        segments.get(index as usize).cloned()
    }

    /// The entry at `queue_offset` if it is published and valid.
    pub(crate) fn entry(&self, queue_offset: i64) -> Option<QueueEntry> {
        if queue_offset < self.min_offset() || queue_offset >= self.max_offset() {
            return None;
        }
        let segment = self.segment_for(queue_offset)?;
        let position = (queue_offset as u64 * ENTRY_SIZE - segment.start()) as usize;
        QueueEntry::decode(segment.read(position, ENTRY_SIZE as usize))
    }

    /// Writes the entry for `queue_offset`. Re-dispatch is idempotent: an offset already
    /// written is skipped. Only the dispatcher calls this, so there is one writer.
    pub(crate) fn put(&self, queue_offset: i64, entry: QueueEntry) -> Result<()> {
        let max = self.max_offset();
        if queue_offset < max {
            return Ok(());
        }
        let byte = queue_offset as u64 * ENTRY_SIZE;
        let segment = match self.segment_for(queue_offset) {
            Some(segment) => segment,
            None => self.create_segment_for(byte)?,
        };
        if queue_offset > max {
            if max == 0 && self.min_offset() == 0 {
                // The first entry of a queue whose earlier messages were trimmed away.
                self.min_offset.store(queue_offset, Ordering::Release);
            } else {
                tracing::warn!(dir = %self.dir.display(), expected = max, got = queue_offset, "consume queue gap");
            }
        }
        // SAFETY: only the dispatcher writes, and this entry is past the published max offset
        // until the store below.
        unsafe { segment.write((byte - segment.start()) as usize, &entry.encode()) };
        self.max_offset.store(queue_offset + 1, Ordering::Release);
        Ok(())
    }

    fn create_segment_for(&self, byte: u64) -> Result<Arc<Segment>> {
        segment::create_dir_durably(&self.dir)?;
        let start = byte / self.file_size * self.file_size;
        let mut segments = self.segments.write();
        if let Some(last) = segments.last() {
            // Fill the hole if the queue skipped a whole file.
            let mut next = last.end();
            while next < start {
                segments.push(Arc::new(Segment::create(
                    &self.dir,
                    next,
                    self.file_size as usize,
                )?));
                next += self.file_size;
            }
        }
        let segment = Arc::new(Segment::create(&self.dir, start, self.file_size as usize)?);
        segments.push(Arc::clone(&segment));
        Ok(segment)
    }

    /// Drops entries pointing at or past `physical_offset` (recovery: the CommitLog ends or
    /// is rebuilt from there), zeroing them so they cannot resurface.
    pub(crate) fn truncate_from_physical(&self, physical_offset: u64) -> Result<()> {
        let min = self.min_offset();
        let mut cut = self.max_offset();
        while cut > min {
            match self.entry(cut - 1) {
                Some(entry) if entry.physical_offset < physical_offset => break,
                _ => cut -= 1,
            }
        }
        let byte = cut as u64 * ENTRY_SIZE;
        let mut segments = self.segments.write();
        while segments.len() > 1
            && segments
                .last()
                .is_some_and(|s| s.start() >= byte && s.start() > 0)
        {
            if let Some(last) = segments.pop() {
                last.delete()?;
            }
        }
        if let Some(last) = segments.last() {
            if byte >= last.start() && byte < last.end() {
                last.zero_from((byte - last.start()) as usize)?;
            }
        }
        self.max_offset.store(cut, Ordering::Release);
        if self.min_offset() > cut {
            self.min_offset.store(cut, Ordering::Release);
        }
        let mut flushed = self.flushed_offset.lock();
        *flushed = (*flushed).min(cut);
        Ok(())
    }

    /// Deletes every segment file (the topic is being deleted).
    pub(crate) fn delete_files(&self) -> Result<()> {
        for segment in self.segments.write().drain(..) {
            segment.delete()?;
        }
        self.max_offset.store(0, Ordering::Release);
        self.min_offset.store(0, Ordering::Release);
        Ok(())
    }

    /// Flushes entries written since the last flush.
    pub(crate) fn flush(&self) -> Result<()> {
        let mut flushed = self.flushed_offset.lock();
        let max = self.max_offset();
        let mut at = (*flushed).max(self.min_offset());
        while at < max {
            let Some(segment) = self.segment_for(at) else {
                // Retention removed this file meanwhile: go on from the new minimum, and
                // never record as flushed what was not.
                let min = self.min_offset();
                if at < min {
                    at = min;
                    continue;
                }
                *flushed = at;
                return Ok(());
            };
            let from = (at as u64 * ENTRY_SIZE - segment.start()) as usize;
            let to_offset = max.min((segment.end() / ENTRY_SIZE) as i64);
            segment.flush(
                from,
                (to_offset as u64 * ENTRY_SIZE - segment.start()) as usize,
            )?;
            at = to_offset;
        }
        *flushed = max;
        Ok(())
    }

    /// Retention: deletes leading segments whose last entry points below the CommitLog's
    /// minimum (never the last segment), then moves the min offset to the first entry still
    /// backed by the CommitLog (`correctMinOffset`).
    pub(crate) fn trim_below_physical(&self, commit_log_min: u64) -> Result<()> {
        let max = self.max_offset();
        loop {
            let mut segments = self.segments.write();
            if segments.len() < 2 {
                break;
            }
            let last_offset = (segments[0].end() / ENTRY_SIZE) as i64 - 1;
            drop(segments);
            let below = match self.entry(last_offset.min(max - 1)) {
                Some(entry) => entry.physical_offset < commit_log_min,
                None => last_offset < self.min_offset(),
            };
            if !below {
                break;
            }
            segments = self.segments.write();
            let removed = segments.remove(0);
            drop(segments);
            removed.delete()?;
            let new_min = (removed.end() / ENTRY_SIZE) as i64;
            self.min_offset.fetch_max(new_min, Ordering::AcqRel);
        }
        let mut offset = self.min_offset();
        while offset < max {
            match self.entry(offset) {
                Some(entry) if entry.physical_offset >= commit_log_min => break,
                _ => offset += 1,
            }
        }
        self.min_offset.fetch_max(offset, Ordering::AcqRel);
        Ok(())
    }

    #[cfg(test)]
    pub(crate) fn segment_count(&self) -> usize {
        self.segments.read().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(physical_offset: u64) -> QueueEntry {
        QueueEntry {
            physical_offset,
            size: 10,
            tags_code: -5,
        }
    }

    #[test]
    fn put_read_reopen_truncate() {
        let dir = tempfile::tempdir().unwrap();
        let queue = ConsumeQueue::open(dir.path(), 100).unwrap();
        for offset in 0..12 {
            queue.put(offset, entry(offset as u64 * 10)).unwrap();
        }
        queue.put(3, entry(999)).unwrap();
        assert_eq!(queue.entry(3), Some(entry(30)));
        assert_eq!(queue.max_offset(), 12);
        assert_eq!(queue.segment_count(), 3);
        queue.flush().unwrap();
        drop(queue);

        let queue = ConsumeQueue::open(dir.path(), 100).unwrap();
        assert_eq!((queue.min_offset(), queue.max_offset()), (0, 12));
        queue.truncate_from_physical(55).unwrap();
        assert_eq!(queue.max_offset(), 6);
        assert_eq!(queue.segment_count(), 2);
        queue.put(6, entry(60)).unwrap();
        drop(queue);
        let queue = ConsumeQueue::open(dir.path(), 100).unwrap();
        assert_eq!(queue.max_offset(), 7);

        queue.trim_below_physical(52).unwrap();
        assert_eq!(queue.min_offset(), 6);
        assert_eq!(queue.segment_count(), 1);
        assert_eq!(queue.entry(5), None);
        assert_eq!(queue.entry(6), Some(entry(60)));
    }

    #[test]
    fn first_entry_past_zero_sets_min() {
        let dir = tempfile::tempdir().unwrap();
        let queue = ConsumeQueue::open(dir.path(), 100).unwrap();
        queue.put(7, entry(70)).unwrap();
        assert_eq!((queue.min_offset(), queue.max_offset()), (7, 8));
        assert_eq!(queue.entry(7), Some(entry(70)));
        drop(queue);
        let queue = ConsumeQueue::open(dir.path(), 100).unwrap();
        assert_eq!((queue.min_offset(), queue.max_offset()), (7, 8));
    }
}
