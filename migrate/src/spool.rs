//! The dual writer's spool: a bounded log of entries on local disk, each fsynced before
//! [`Spool::append`] returns, replayed front to back.
//!
//! Two files in one folder. `spool.log` holds frames of `[length u32][crc32 u32][entry]`
//! (little-endian); `spool.head` holds the byte position of the first entry not yet replayed,
//! replaced atomically (write, fsync, rename) each time entries are taken off the front. When
//! the front reaches the end, both are reset to empty, so a spool that drains gives its disk
//! back. A crash can leave a torn last frame (an append that never returned): opening cuts the
//! log at the first frame that is short or fails its CRC, which only ever drops an entry whose
//! append was never acknowledged.
//!
//! Written by hand: it is some 150 lines over `std::fs`, and the log crates on offer either
//! keep no CRC per frame or bring a whole embedded database for what is one append-only file.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::{Error, Result};

const LOG: &str = "spool.log";
const HEAD: &str = "spool.head";
const FRAME_HEADER: u64 = 8;

pub struct Spool {
    dir: PathBuf,
    log: File,
    /// Byte position of the first entry not yet taken.
    head: u64,
    /// Byte position where the next entry goes.
    end: u64,
    /// Entries between `head` and `end`.
    entries: u64,
    /// Most bytes the log file may hold.
    max_bytes: u64,
}

impl Spool {
    /// Opens (or creates) the spool in `dir`, holding at most `max_bytes` of log.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Spool> {
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        let log_path = dir.join(LOG);
        let mut log = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&log_path)
            .map_err(|e| io(&log_path, e))?;
        let head = read_head(&dir.join(HEAD))?;
        let length = log.metadata().map_err(|e| io(&log_path, e))?.len();
        let head = head.min(length);
        let (end, entries) = scan(&mut log, head, length).map_err(|e| io(&log_path, e))?;
        if end < length {
            tracing::warn!(
                spool = %dir.display(),
                cut = length - end,
                "cutting a torn last entry (its append never returned)"
            );
            log.set_len(end).map_err(|e| io(&log_path, e))?;
            log.sync_all().map_err(|e| io(&log_path, e))?;
        }
        Ok(Spool {
            dir: dir.to_owned(),
            log,
            head,
            end,
            entries,
            max_bytes,
        })
    }

    /// Entries not yet taken.
    pub fn len(&self) -> u64 {
        self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    /// Bytes of log the spool holds on disk, taken entries included until it drains.
    pub fn bytes(&self) -> u64 {
        self.end
    }

    /// Whether an entry of `length` bytes fits under the bound now.
    pub fn has_room(&self, length: u64) -> bool {
        self.end + FRAME_HEADER + length <= self.max_bytes
    }

    /// The error for an entry that does not fit.
    pub fn full_error(&self) -> Error {
        Error::SpoolFull {
            dir: self.dir.clone(),
            max_bytes: self.max_bytes,
        }
    }

    /// Shows `visit` the entries from the front, oldest first, until it returns `false`.
    pub fn visit(&mut self, mut visit: impl FnMut(&[u8]) -> Result<bool>) -> Result<()> {
        let path = self.dir.join(LOG);
        let mut at = self.head;
        while at < self.end {
            let entry = read_frame(&mut self.log, at, self.end).map_err(|e| io(&path, e))?;
            if !visit(&entry)? {
                break;
            }
            at += FRAME_HEADER + entry.len() as u64;
        }
        Ok(())
    }

    /// Appends `entry` and fsyncs it; [`Error::SpoolFull`] when it would pass the bound, and
    /// then nothing is written.
    pub fn append(&mut self, entry: &[u8]) -> Result<()> {
        if !self.has_room(entry.len() as u64) {
            return Err(self.full_error());
        }
        let frame_len = FRAME_HEADER + entry.len() as u64;
        let mut frame = Vec::with_capacity(frame_len as usize);
        frame.extend_from_slice(&(entry.len() as u32).to_le_bytes());
        frame.extend_from_slice(&crc32fast::hash(entry).to_le_bytes());
        frame.extend_from_slice(entry);
        let path = self.dir.join(LOG);
        let written = self
            .log
            .seek(SeekFrom::Start(self.end))
            .and_then(|_| self.log.write_all(&frame))
            .and_then(|_| self.log.sync_data());
        if let Err(error) = written {
            // Whatever part reached the file is past `end`; the next append overwrites it and
            // a reopen cuts it.
            return Err(io(&path, error));
        }
        self.end += frame_len;
        self.entries += 1;
        Ok(())
    }

    /// Up to `max` entries from the front, oldest first, without taking them.
    pub fn front(&mut self, max: usize) -> Result<Vec<Vec<u8>>> {
        let mut entries = Vec::new();
        if max > 0 {
            self.visit(|entry| {
                entries.push(entry.to_vec());
                Ok(entries.len() < max)
            })?;
        }
        Ok(entries)
    }

    /// Takes the first `count` entries off the front, durably: after a crash they are not
    /// replayed again.
    pub fn take(&mut self, count: usize) -> Result<()> {
        let path = self.dir.join(LOG);
        let taken = (count as u64).min(self.entries);
        if taken == self.entries {
            // Drained: the log restarts empty. The head goes first, so a crash in between
            // leaves a head past a shorter log, which `open` clamps.
            self.write_head(0)?;
            self.log.set_len(0).map_err(|e| io(&path, e))?;
            self.log.sync_all().map_err(|e| io(&path, e))?;
            (self.head, self.end) = (0, 0);
        } else {
            let mut head = self.head;
            for _ in 0..taken {
                head += frame_length(&mut self.log, head, self.end).map_err(|e| io(&path, e))?;
            }
            self.write_head(head)?;
            self.head = head;
        }
        self.entries -= taken;
        Ok(())
    }

    fn write_head(&self, head: u64) -> Result<()> {
        let path = self.dir.join(HEAD);
        let temporary = self.dir.join(format!("{HEAD}.tmp"));
        let write = || -> std::io::Result<()> {
            let mut file = File::create(&temporary)?;
            file.write_all(&head.to_le_bytes())?;
            file.sync_all()?;
            std::fs::rename(&temporary, &path)?;
            File::open(&self.dir)?.sync_all()
        };
        write().map_err(|e| io(&path, e))
    }
}

fn io(path: &Path, source: std::io::Error) -> Error {
    Error::Spool {
        path: path.to_owned(),
        source,
    }
}

fn read_head(path: &Path) -> Result<u64> {
    match std::fs::read(path) {
        Ok(bytes) => match <[u8; 8]>::try_from(bytes.as_slice()) {
            Ok(bytes) => Ok(u64::from_le_bytes(bytes)),
            Err(_) => Err(io(
                path,
                std::io::Error::new(ErrorKind::InvalidData, "the head file is not 8 bytes"),
            )),
        },
        Err(error) if error.kind() == ErrorKind::NotFound => Ok(0),
        Err(error) => Err(io(path, error)),
    }
}

/// The end of the last whole, intact frame from `head` on, and how many frames lie before it.
fn scan(log: &mut File, head: u64, length: u64) -> std::io::Result<(u64, u64)> {
    let (mut at, mut entries) = (head, 0);
    while at + FRAME_HEADER <= length {
        match read_frame(log, at, length) {
            Ok(entry) => {
                at += FRAME_HEADER + entry.len() as u64;
                entries += 1;
            }
            Err(error) if error.kind() == ErrorKind::InvalidData => break,
            Err(error) if error.kind() == ErrorKind::UnexpectedEof => break,
            Err(error) => return Err(error),
        }
    }
    Ok((at, entries))
}

/// The header of the frame at `at`, (entry length, CRC), leaving the file positioned at the
/// entry. The frame must end by `limit`, else `UnexpectedEof`: a torn length is never trusted
/// to size a buffer.
fn read_header(log: &mut File, at: u64, limit: u64) -> std::io::Result<(u32, u32)> {
    let mut header = [0u8; FRAME_HEADER as usize];
    log.seek(SeekFrom::Start(at))?;
    log.read_exact(&mut header)?;
    let length = u32::from_le_bytes(header[..4].try_into().expect("4 bytes"));
    let crc = u32::from_le_bytes(header[4..].try_into().expect("4 bytes"));
    if at + FRAME_HEADER + length as u64 > limit {
        return Err(ErrorKind::UnexpectedEof.into());
    }
    Ok((length, crc))
}

/// The whole length of the frame at `at`, read from its header alone.
fn frame_length(log: &mut File, at: u64, limit: u64) -> std::io::Result<u64> {
    let (length, _) = read_header(log, at, limit)?;
    Ok(FRAME_HEADER + length as u64)
}

/// The entry of the frame at `at`, which must end by `limit` (see [`read_header`]);
/// `InvalidData` when its CRC fails.
fn read_frame(log: &mut File, at: u64, limit: u64) -> std::io::Result<Vec<u8>> {
    let (length, crc) = read_header(log, at, limit)?;
    let mut entry = vec![0u8; length as usize];
    log.read_exact(&mut entry)?;
    if crc32fast::hash(&entry) != crc {
        return Err(std::io::Error::new(
            ErrorKind::InvalidData,
            "spool frame fails its CRC",
        ));
    }
    Ok(entry)
}

#[cfg(test)]
#[path = "spool_test.rs"]
mod spool_test;
