//! A fixed-size file mapped into memory: the unit of the CommitLog, ConsumeQueue and index.
//!
//! Concurrency contract (the reason this is not a plain `&mut [u8]`): one writer at a time
//! writes past a position it then publishes with a Release store elsewhere; readers only
//! touch bytes below a position they loaded with Acquire. Published bytes never change again
//! except during recovery, before any reader exists. Under that contract the raw-pointer
//! accesses below never race.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use memmap2::{MmapOptions, MmapRaw};

use crate::error::{Error, Result};

const PAGE_SIZE: usize = 4096;

/// One mapped segment file.
#[derive(Debug)]
pub(crate) struct Segment {
    path: PathBuf,
    start: u64,
    size: usize,
    file: File,
    map: MmapRaw,
}

impl Segment {
    /// Creates `dir/<20-digit start>` with its blocks reserved, so a full disk shows up here
    /// as ENOSPC instead of as SIGBUS on a later write into a sparse mapping.
    pub(crate) fn create(dir: &Path, start: u64, size: usize) -> Result<Segment> {
        let path = dir.join(file_name(start));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        // SAFETY: plain syscall on an open descriptor.
        let code = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, size as libc::off_t) };
        if code != 0 {
            let _ = std::fs::remove_file(&path);
            return Err(Error::io(&path, std::io::Error::from_raw_os_error(code)));
        }
        // The new name must survive a power loss as well as its bytes: a flushed record in a
        // file whose directory entry was lost is lost with it.
        sync_dir(dir)?;
        durable!(created(&path, size));
        Segment::map(path, file, start, size)
    }

    /// Opens an existing segment, which must be exactly `size` bytes long.
    pub(crate) fn open(path: PathBuf, start: u64, size: usize) -> Result<Segment> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        let len = file.metadata().map_err(|e| Error::io(&path, e))?.len();
        if len != size as u64 {
            return Err(Error::damaged(
                &path,
                format!("length {len}, expected {size}"),
            ));
        }
        Segment::map(path, file, start, size)
    }

    fn map(path: PathBuf, file: File, start: u64, size: usize) -> Result<Segment> {
        let map = MmapOptions::new()
            .len(size)
            .map_raw(&file)
            .map_err(|e| Error::io(&path, e))?;
        Ok(Segment {
            path,
            start,
            size,
            file,
            map,
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Global offset of the first byte.
    pub(crate) fn start(&self) -> u64 {
        self.start
    }

    pub(crate) fn size(&self) -> usize {
        self.size
    }

    /// Global offset just past the last byte.
    pub(crate) fn end(&self) -> u64 {
        self.start + self.size as u64
    }

    /// Bytes `[position, position + len)`, clamped to the file. Only published bytes.
    pub(crate) fn read(&self, position: usize, len: usize) -> &[u8] {
        let position = position.min(self.size);
        let len = len.min(self.size - position);
        // SAFETY: in bounds of a mapping that lives as long as `self`; see the module contract.
        unsafe { std::slice::from_raw_parts(self.map.as_ptr().add(position), len) }
    }

    /// Mutable bytes `[position, position + len)` for the single writer, clamped to the file.
    ///
    /// # Safety
    /// The caller is the one writer of these bytes (it holds its owner's writer lock, or runs
    /// before any reader exists, as recovery does), and no reader can reach them: they lie
    /// at or past the position the owner has published. The slice must be dropped before that
    /// position is published.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn write_slice(&self, position: usize, len: usize) -> &mut [u8] {
        let position = position.min(self.size);
        let len = len.min(self.size - position);
        // SAFETY: in bounds of the mapping; exclusivity is the caller's promise above.
        unsafe { std::slice::from_raw_parts_mut(self.map.as_mut_ptr().add(position), len) }
    }

    /// Copies `data` to `position`.
    ///
    /// # Safety
    /// As [`Segment::write_slice`]: unpublished bytes, one writer.
    pub(crate) unsafe fn write(&self, position: usize, data: &[u8]) {
        // SAFETY: forwarded to the caller.
        unsafe { self.write_slice(position, data.len()) }.copy_from_slice(data);
    }

    /// The aligned 4-byte word at `position` as an atomic, for words that a writer updates
    /// while readers look (the index's hash slots): plain reads and writes there would race.
    /// `None` when the word is out of bounds or not 4-byte aligned.
    pub(crate) fn atomic_u32(&self, position: usize) -> Option<&std::sync::atomic::AtomicU32> {
        if !position.is_multiple_of(4) || position + 4 > self.size {
            return None;
        }
        // SAFETY: in bounds and aligned (the mapping is page-aligned); AtomicU32 has the
        // layout of u32, and every access to this word goes through this atomic view.
        Some(unsafe {
            &*self
                .map
                .as_ptr()
                .add(position)
                .cast::<std::sync::atomic::AtomicU32>()
        })
    }

    /// A zero-copy [`Bytes`] over published bytes; it keeps the mapping alive even if the
    /// segment is deleted meanwhile.
    pub(crate) fn bytes(self: &Arc<Self>, position: usize, len: usize) -> Bytes {
        Bytes::from_owner(SegmentSlice {
            segment: Arc::clone(self),
            position,
            len,
        })
    }

    /// Makes `[from, to)` durable with msync(MS_SYNC) on just that range. Measured on the
    /// development VM (docs/benchmarks.md, "Store micro-benchmark"), a 4 KiB mapped write costs the same
    /// made durable either way (6.4k/s msync(range) vs 6.7k/s fdatasync, within noise), so
    /// msync wins on the other grounds: POSIX only promises that msync writes back a shared
    /// mapping (fdatasync doing so is a Linux page-cache detail), and its work is bounded to
    /// the range this group commit appended rather than every dirty page of the file.
    pub(crate) fn flush(&self, from: usize, to: usize) -> Result<()> {
        let from = from.min(self.size) / PAGE_SIZE * PAGE_SIZE;
        let to = to.min(self.size);
        if to <= from {
            return Ok(());
        }
        self.map
            .flush_range(from, to - from)
            .map_err(|e| Error::io(&self.path, e))?;
        durable!(flushed(&self.path, from, self.read(from, to - from)));
        Ok(())
    }

    /// Zeroes `[from, end of file)` durably. Recovery uses it so stale bytes past a cut can
    /// never be mistaken for records later. FALLOC_FL_ZERO_RANGE makes it a metadata update
    /// even for a 1 GiB segment; filesystems without it get zeros written through the map.
    pub(crate) fn zero_from(&self, from: usize) -> Result<()> {
        if from >= self.size {
            return Ok(());
        }
        // SAFETY: plain syscall on an open descriptor.
        let code = unsafe {
            libc::fallocate(
                self.file.as_raw_fd(),
                libc::FALLOC_FL_ZERO_RANGE,
                from as libc::off_t,
                (self.size - from) as libc::off_t,
            )
        };
        if code != 0 {
            // SAFETY: zeroing happens in recovery or truncation, before readers reach `from`.
            unsafe { self.write_slice(from, self.size - from) }.fill(0);
            self.flush(from, self.size)?;
        }
        self.file
            .sync_data()
            .map_err(|e| Error::io(&self.path, e))?;
        durable!(flushed(&self.path, from, &vec![0; self.size - from]));
        Ok(())
    }

    /// Touches every page so the first appends do not stall on page faults, and asks the
    /// kernel to keep it resident (RocketMQ's `warmMappedFile`).
    pub(crate) fn warm(&self) {
        // SAFETY: a new segment no reader has seen yet, touched by the thread preparing it.
        let bytes = unsafe { self.write_slice(0, self.size) };
        for page in bytes.chunks_mut(PAGE_SIZE) {
            page[0] = 0;
        }
        // SAFETY: advising on our own mapping.
        unsafe {
            libc::madvise(self.map.as_mut_ptr().cast(), self.size, libc::MADV_WILLNEED);
        }
    }

    /// Faults `[from, to)` in writable without changing a byte (MADV_POPULATE_WRITE), so the
    /// appends that reach it find their pages mapped: on a fresh segment each first touch of
    /// a page costs a fault that allocates and zeroes it, most of the broker's CPU with
    /// 16 KiB messages when it happened on the append path. Kernels before 5.14 lack the
    /// advice and refuse it; the appends then fault as before.
    pub(crate) fn populate(&self, from: usize, to: usize) {
        let from = from.min(self.size) / PAGE_SIZE * PAGE_SIZE;
        let to = to.min(self.size);
        if to <= from {
            return;
        }
        // SAFETY: advice on a range inside our own mapping; it changes no content.
        unsafe {
            libc::madvise(
                self.map.as_mut_ptr().add(from).cast(),
                to - from,
                libc::MADV_POPULATE_WRITE,
            );
        }
    }

    /// Drops `[from, end of file)` from the page cache where the kernel can, so the next
    /// read of it comes from the disk. After a failed flush Linux may keep pages it could
    /// not write, marked clean: read back, they would look durable when they are not.
    /// Dirty pages are written back first, never dropped, so nothing written is lost.
    pub(crate) fn drop_cached(&self, from: usize) {
        if from >= self.size {
            return;
        }
        // SAFETY: plain syscall on an open descriptor; advice only.
        unsafe {
            libc::posix_fadvise(
                self.file.as_raw_fd(),
                from as libc::off_t,
                (self.size - from) as libc::off_t,
                libc::POSIX_FADV_DONTNEED,
            );
        }
    }

    /// Seconds since the file was last modified, for retention.
    pub(crate) fn modified(&self) -> Option<std::time::SystemTime> {
        self.file.metadata().and_then(|m| m.modified()).ok()
    }

    /// Removes the file; mappings held by readers stay valid until dropped.
    pub(crate) fn delete(&self) -> Result<()> {
        std::fs::remove_file(&self.path).map_err(|e| Error::io(&self.path, e))?;
        // A file recovery cut away must not come back after a power loss.
        if let Some(dir) = self.path.parent() {
            sync_dir(dir)?;
        }
        durable!(removed(&self.path));
        Ok(())
    }
}

struct SegmentSlice {
    segment: Arc<Segment>,
    position: usize,
    len: usize,
}

impl AsRef<[u8]> for SegmentSlice {
    fn as_ref(&self) -> &[u8] {
        self.segment.read(self.position, self.len)
    }
}

/// fsyncs a directory, so names created or removed in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|dir| dir.sync_all())
        .map_err(|e| Error::io(dir, e))
}

/// Creates `dir` and any missing parents, fsyncing the parent of each one created, so the
/// new folders survive a power loss.
pub(crate) fn create_dir_durably(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        create_dir_durably(parent)?;
    }
    match std::fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(Error::io(dir, e)),
    }
    match dir.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => sync_dir(parent),
        _ => Ok(()),
    }
}

/// RocketMQ names files by their start offset, 20 digits, zero-padded.
pub(crate) fn file_name(start: u64) -> String {
    format!("{start:020}")
}

/// Segment files in `dir` sorted by start offset; other names are ignored.
pub(crate) fn list(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut found = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(found),
        Err(e) => return Err(Error::io(dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.len() == 20 && name.bytes().all(|b| b.is_ascii_digit()) {
            if let Ok(start) = name.parse::<u64>() {
                found.push((start, entry.path()));
            }
        }
    }
    found.sort();
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_write_read_zero() {
        let dir = tempfile::tempdir().unwrap();
        let segment = Arc::new(Segment::create(dir.path(), 8192, 8192).unwrap());
        assert_eq!(segment.path().file_name().unwrap(), "00000000000000008192");
        // SAFETY: this test is the only user of the segment.
        unsafe { segment.write(10, b"hello") };
        assert_eq!(segment.read(10, 5), b"hello");
        let bytes = segment.bytes(10, 5);
        segment.flush(0, 20).unwrap();
        segment.zero_from(12).unwrap();
        assert_eq!(segment.read(10, 5), b"he\0\0\0");
        assert_eq!(&bytes[..2], b"he");
        assert!(Segment::create(dir.path(), 8192, 8192).is_err());
        drop(segment);
        let reopened = Segment::open(dir.path().join(file_name(8192)), 8192, 8192).unwrap();
        assert_eq!(reopened.read(10, 3), b"he\0");
        assert!(Segment::open(dir.path().join(file_name(8192)), 8192, 4096).is_err());
        assert_eq!(list(dir.path()).unwrap().len(), 1);
    }

    /// KiB of the segment's mapping in this process's page tables (`Rss` in smaps).
    fn mapped_kib(segment: &Segment) -> u64 {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let start = format!("{:x}-", segment.map.as_ptr() as usize);
        let mut lines = smaps.lines().skip_while(|line| !line.starts_with(&start));
        lines.next().expect("the mapping is listed");
        let rss = lines.find(|line| line.starts_with("Rss:")).unwrap();
        rss.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    #[test]
    fn populate_maps_just_the_range_and_keeps_the_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let segment = Segment::create(dir.path(), 0, 256 * PAGE_SIZE).unwrap();
        // SAFETY: this test is the only user of the segment.
        unsafe { segment.write(PAGE_SIZE * 64 + 10, b"kept") };
        let before = mapped_kib(&segment);
        assert!(before < 100, "{before} KiB mapped after one write");
        segment.populate(PAGE_SIZE * 100 + 100, PAGE_SIZE * 160);
        let after = mapped_kib(&segment);
        assert_eq!(
            after - before,
            60 * PAGE_SIZE as u64 / 1024,
            "{before} -> {after} KiB"
        );
        assert_eq!(segment.read(PAGE_SIZE * 64 + 8, 8), b"\0\0kept\0\0");
        assert!(segment
            .read(PAGE_SIZE * 100, PAGE_SIZE * 60)
            .iter()
            .all(|b| *b == 0));
    }
}
