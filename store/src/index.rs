//! The key index: RocketMQ's IndexFile layout (40-byte header, hash slots, 20-byte entries
//! chained newest first), so `QUERY_MESSAGE` by KEYS or UNIQ_KEY needs no CommitLog scan.
//!
//! Files are named by the CommitLog offset of their first entry (RocketMQ uses the creation
//! time); ordering by name is then ordering by offset, which is what recovery needs.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;

use crate::error::Result;
use crate::segment::{self, Segment};

const HEADER_SIZE: usize = 40;
const SLOT_SIZE: usize = 4;
const ENTRY_SIZE: usize = 20;

/// RocketMQ's key hash: `abs(String.hashCode())` of `topic#key`, MIN_VALUE mapping to 0.
pub(crate) fn key_hash(topic: &str, key: &str) -> u32 {
    let hash = message::java_string_hash_of(&[topic, "#", key]);
    if hash == i32::MIN {
        0
    } else {
        hash.unsigned_abs()
    }
}

struct IndexFile {
    segment: Segment,
    slots: u32,
    capacity: u32,
    /// Published entry count; entry 0 is RocketMQ's invalid sentinel, so it starts at 1.
    count: AtomicU32,
    /// `count` when the file was last flushed: entries below it are on disk.
    flushed_count: AtomicU32,
    begin_timestamp: AtomicI64,
    end_timestamp: AtomicI64,
    begin_physical: AtomicU64,
    end_physical: AtomicU64,
}

impl IndexFile {
    fn file_len(slots: u32, capacity: u32) -> usize {
        HEADER_SIZE + slots as usize * SLOT_SIZE + capacity as usize * ENTRY_SIZE
    }

    fn load(segment: Segment, slots: u32, capacity: u32) -> IndexFile {
        let header = segment.read(0, HEADER_SIZE);
        let long = |at: usize| i64::from_be_bytes(header[at..at + 8].try_into().unwrap());
        let count = u32::from_be_bytes(header[36..40].try_into().unwrap()).clamp(1, capacity);
        IndexFile {
            count: AtomicU32::new(count),
            flushed_count: AtomicU32::new(count),
            begin_timestamp: AtomicI64::new(long(0)),
            end_timestamp: AtomicI64::new(long(8)),
            begin_physical: AtomicU64::new(long(16) as u64),
            end_physical: AtomicU64::new(long(24) as u64),
            segment,
            slots,
            capacity,
        }
    }

    fn is_full(&self) -> bool {
        self.count.load(Ordering::Acquire) >= self.capacity
    }

    fn entry_position(&self, index: u32) -> usize {
        HEADER_SIZE + self.slots as usize * SLOT_SIZE + index as usize * ENTRY_SIZE
    }

    /// The hash slot for `hash`: the newest entry index with that hash, big-endian as
    /// RocketMQ stores it. The dispatcher updates slots while queries read them, so every
    /// access is atomic (Release on write, Acquire on read).
    fn slot(&self, hash: u32) -> &AtomicU32 {
        self.segment
            .atomic_u32(HEADER_SIZE + (hash % self.slots) as usize * SLOT_SIZE)
            .expect("slots are 4-byte aligned and inside the file")
    }

    /// Adds one entry; the caller (the single dispatcher) checked it is not full.
    fn put(&self, hash: u32, physical: u64, timestamp: i64) {
        let index = self.count.load(Ordering::Acquire);
        if index <= 1 {
            self.begin_timestamp.store(timestamp, Ordering::Release);
            self.begin_physical.store(physical, Ordering::Release);
        }
        let begin = self.begin_timestamp.load(Ordering::Acquire);
        let diff = if begin <= 0 {
            0
        } else {
            ((timestamp - begin) / 1000).clamp(0, i32::MAX as i64)
        };
        let slot = self.slot(hash);
        let previous = u32::from_be(slot.load(Ordering::Acquire));
        let mut entry = [0u8; ENTRY_SIZE];
        entry[..4].copy_from_slice(&hash.to_be_bytes());
        entry[4..12].copy_from_slice(&(physical as i64).to_be_bytes());
        entry[12..16].copy_from_slice(&(diff as i32).to_be_bytes());
        entry[16..20].copy_from_slice(&previous.to_be_bytes());
        // SAFETY: the single dispatcher writes entry `index`, which no reader follows until
        // the count below publishes it (a slot pointing at an index >= count is ignored).
        unsafe { self.segment.write(self.entry_position(index), &entry) };
        self.count.store(index + 1, Ordering::Release);
        slot.store(index.to_be(), Ordering::Release);
        self.end_timestamp.store(timestamp, Ordering::Release);
        self.end_physical.store(physical, Ordering::Release);
        let mut header = [0u8; HEADER_SIZE];
        header[0..8].copy_from_slice(&self.begin_timestamp.load(Ordering::Acquire).to_be_bytes());
        header[8..16].copy_from_slice(&timestamp.to_be_bytes());
        header[16..24]
            .copy_from_slice(&(self.begin_physical.load(Ordering::Acquire) as i64).to_be_bytes());
        header[24..32].copy_from_slice(&(physical as i64).to_be_bytes());
        header[32..36].copy_from_slice(&index.min(self.slots).to_be_bytes());
        header[36..40].copy_from_slice(&(index + 1).to_be_bytes());
        // SAFETY: the on-disk header is only read when a file is opened; while it is live,
        // readers use the atomics above, so the dispatcher is its only user.
        unsafe { self.segment.write(0, &header) };
    }

    fn flush(&self) -> Result<()> {
        let count = self.count.load(Ordering::Acquire);
        let flushed = self.flushed_count.load(Ordering::Acquire);
        if count == flushed {
            return Ok(());
        }
        self.segment.flush(0, self.entry_position(0))?;
        self.segment
            .flush(self.entry_position(flushed), self.entry_position(count))?;
        self.flushed_count.store(count, Ordering::Release);
        Ok(())
    }

    fn query(&self, hash: u32, begin: i64, end: i64, max: usize, found: &mut Vec<u64>) {
        // The slot first: `put` publishes the count before the slot, so a count loaded
        // after the slot always covers the entry the slot names.
        let mut index = u32::from_be(self.slot(hash).load(Ordering::Acquire));
        let count = self.count.load(Ordering::Acquire);
        let base = self.begin_timestamp.load(Ordering::Acquire);
        let mut steps = 0u32;
        while index > 0 && index < count && found.len() < max && steps < count {
            steps += 1;
            let bytes = self.segment.read(self.entry_position(index), ENTRY_SIZE);
            let entry_hash = u32::from_be_bytes(bytes[..4].try_into().unwrap());
            let physical = i64::from_be_bytes(bytes[4..12].try_into().unwrap());
            let diff = i32::from_be_bytes(bytes[12..16].try_into().unwrap()) as i64;
            let previous = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
            let timestamp = base + diff * 1000;
            if entry_hash == hash && timestamp >= begin && timestamp <= end && physical >= 0 {
                found.push(physical as u64);
            }
            if timestamp < begin || previous >= index {
                break;
            }
            index = previous;
        }
    }
}

pub(crate) struct Index {
    dir: PathBuf,
    slots: u32,
    capacity: u32,
    files: RwLock<Vec<Arc<IndexFile>>>,
}

impl Index {
    pub(crate) fn open(dir: &Path, slots: u32, capacity: u32) -> Result<Index> {
        segment::create_dir_durably(dir)?;
        let len = IndexFile::file_len(slots, capacity);
        let mut files = Vec::new();
        for (start, path) in segment::list(dir)? {
            files.push(Arc::new(IndexFile::load(
                Segment::open(path, start, len)?,
                slots,
                capacity,
            )));
        }
        Ok(Index {
            dir: dir.to_owned(),
            slots,
            capacity,
            files: RwLock::new(files),
        })
    }

    /// After a crash: deletes files that may hold entries past `dispatched` (their pages may
    /// be torn) and returns the CommitLog offset re-dispatch must start from to rebuild them.
    pub(crate) fn drop_unsafe_files(&self, dispatched: u64) -> Result<Option<u64>> {
        let mut files = self.files.write();
        let mut rebuild_from = None;
        while let Some(last) = files.last() {
            let count = last.count.load(Ordering::Acquire);
            if last.end_physical.load(Ordering::Acquire) < dispatched && count > 1 {
                break;
            }
            let begin = if count > 1 {
                last.begin_physical.load(Ordering::Acquire)
            } else {
                last.segment.start()
            };
            rebuild_from = Some(begin.min(rebuild_from.unwrap_or(u64::MAX)));
            last.segment.delete()?;
            files.pop();
        }
        Ok(rebuild_from)
    }

    /// Indexes `keys` of one message. Offsets at or below the newest file's end were indexed
    /// already (re-dispatch after recovery) and are skipped.
    pub(crate) fn put<'k>(
        &self,
        topic: &str,
        keys: impl IntoIterator<Item = &'k str>,
        physical: u64,
        timestamp: i64,
    ) -> Result<()> {
        let mut keys = keys.into_iter().peekable();
        if keys.peek().is_none() {
            return Ok(());
        }
        let mut file = self.files.read().last().cloned();
        if let Some(current) = &file {
            if current.count.load(Ordering::Acquire) > 1
                && physical <= current.end_physical.load(Ordering::Acquire)
            {
                return Ok(());
            }
        }
        for key in keys {
            if file.as_ref().is_none_or(|f| f.is_full()) {
                file = Some(self.create(physical)?);
            }
            if let Some(file) = &file {
                file.put(key_hash(topic, key), physical, timestamp);
            }
        }
        Ok(())
    }

    fn create(&self, physical: u64) -> Result<Arc<IndexFile>> {
        let mut files = self.files.write();
        let start = files
            .last()
            .map_or(physical, |last| physical.max(last.segment.start() + 1));
        let segment = Segment::create(
            &self.dir,
            start,
            IndexFile::file_len(self.slots, self.capacity),
        )?;
        let file = Arc::new(IndexFile::load(segment, self.slots, self.capacity));
        files.push(Arc::clone(&file));
        Ok(file)
    }

    /// CommitLog offsets of messages indexed under `topic#key` stored within `[begin, end]`
    /// ms, newest first, at most `max`. Hash collisions are possible: callers re-check.
    pub(crate) fn query(
        &self,
        topic: &str,
        key: &str,
        max: usize,
        begin: i64,
        end: i64,
    ) -> Vec<u64> {
        let hash = key_hash(topic, key);
        let files = self.files.read().clone();
        let mut found = Vec::new();
        for file in files.iter().rev() {
            if found.len() >= max {
                break;
            }
            let file_begin = file.begin_timestamp.load(Ordering::Acquire);
            let file_end = file.end_timestamp.load(Ordering::Acquire);
            if file_end < begin || file_begin > end {
                continue;
            }
            file.query(hash, begin, end, max, &mut found);
        }
        found
    }

    /// Newest indexed store timestamp and CommitLog offset (QUERY_MESSAGE's response header).
    pub(crate) fn last_update(&self) -> (i64, u64) {
        self.files.read().last().map_or((0, 0), |f| {
            (
                f.end_timestamp.load(Ordering::Acquire),
                f.end_physical.load(Ordering::Acquire),
            )
        })
    }

    /// Flushes what changed since the last flush: nothing of a file that gained no entry,
    /// else its header and hash slots (a slot can change with any entry) and its new
    /// entries. A file maps 420 MB by default, and the checkpoint flushes every second; the
    /// full files behind the newest never change again.
    pub(crate) fn flush(&self) -> Result<()> {
        for file in self.files.read().iter() {
            file.flush()?;
        }
        Ok(())
    }

    /// Retention: deletes files (never the newest) whose entries all point below `min`.
    pub(crate) fn trim_below_physical(&self, min: u64) -> Result<()> {
        let mut files = self.files.write();
        while files.len() > 1 && files[0].end_physical.load(Ordering::Acquire) < min {
            files.remove(0).segment.delete()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_query_roll_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(dir.path(), 7, 5).unwrap();
        for n in 0..10u64 {
            index
                .put(
                    "T",
                    ["k", format!("u{n}").as_str()],
                    n * 100,
                    1_000_000 + n as i64 * 1000,
                )
                .unwrap();
        }
        // Re-dispatch of an indexed offset is ignored.
        index.put("T", ["k"], 900, 1_009_000).unwrap();
        let all = index.query("T", "k", 64, 0, i64::MAX);
        assert_eq!(all, vec![900, 800, 700, 600, 500, 400, 300, 200, 100, 0]);
        assert_eq!(index.query("T", "u3", 64, 0, i64::MAX), vec![300]);
        assert_eq!(index.query("T", "k", 2, 0, i64::MAX).len(), 2);
        assert_eq!(
            index.query("T", "k", 64, 1_002_000, 1_004_000),
            vec![400, 300, 200]
        );
        assert!(index.query("U", "k", 64, 0, i64::MAX).is_empty());
        index.flush().unwrap();
        drop(index);

        let index = Index::open(dir.path(), 7, 5).unwrap();
        assert_eq!(index.query("T", "k", 64, 0, i64::MAX).len(), 10);
        assert_eq!(index.last_update(), (1_009_000, 900));
        let rebuild = index.drop_unsafe_files(850).unwrap();
        assert_eq!(rebuild, Some(800));
        assert_eq!(
            index.query("T", "k", 64, 0, i64::MAX),
            vec![700, 600, 500, 400, 300, 200, 100, 0]
        );
        index.trim_below_physical(500).unwrap();
        assert_eq!(index.query("T", "u1", 64, 0, i64::MAX), Vec::<u64>::new());
    }

    #[test]
    fn java_key_hash() {
        assert_eq!(
            key_hash("T", "k"),
            message::java_string_hash("T#k").unsigned_abs()
        );
    }
}
