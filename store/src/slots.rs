//! A small record saved in place: two slots, one per page, each with a sequence number, the
//! body's length, the body and a CRC. A save writes the slot the latest synced save did not
//! use and syncs it, so a torn write leaves the previous record whole in the other slot; a
//! write without a sync goes to that slot too. Writing in place avoids the rename and
//! directory sync a temporary file would need on every save.
//!
//! The Raft log's `meta` (vote, committed, purge point) and the replication state machine's
//! applied entry and membership are such records: Raft must never forget them across a crash.

use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::segment::sync_dir;

const SLOT_SIZE: usize = 4096;
/// sequence (8) and length (4) before the body, CRC (4) after it.
const OVERHEAD: usize = 16;
/// The largest body a slot holds.
pub const MAX_BODY: usize = SLOT_SIZE - OVERHEAD;

pub struct SlotFile {
    path: PathBuf,
    file: File,
    /// The sequence number of the latest save or write.
    sequence: u64,
    /// The slot of the latest synced save, which every save and write leaves alone: a torn
    /// save, or a power loss after writes that were never synced, leaves it to be read.
    synced_slot: usize,
}

impl SlotFile {
    /// Opens (or creates, durably) the file at `path` and returns the body saved last, if
    /// any slot holds a whole one.
    pub fn open(path: &Path) -> Result<(SlotFile, Option<Vec<u8>>)> {
        let file = match OpenOptions::new().read(true).write(true).open(path) {
            Ok(file) => file,
            Err(error) if error.kind() == ErrorKind::NotFound => create(path)?,
            Err(error) => return Err(Error::io(path, error)),
        };
        // What is read may be a write never synced (the process died, the page cache kept
        // it): synced first, it is the record later writes leave alone.
        file.sync_data().map_err(|e| Error::io(path, e))?;
        let mut latest: Option<(u64, usize, Vec<u8>)> = None;
        for slot in 0..2 {
            let mut bytes = vec![0u8; SLOT_SIZE];
            let read = read_up_to(&file, &mut bytes, (slot * SLOT_SIZE) as u64)
                .map_err(|e| Error::io(path, e))?;
            durable!(flushed(path, slot * SLOT_SIZE, &bytes[..read]));
            if let Some((sequence, body)) = decode(&bytes[..read]) {
                if latest
                    .as_ref()
                    .is_none_or(|(newest, ..)| sequence > *newest)
                {
                    latest = Some((sequence, slot, body.to_vec()));
                }
            }
        }
        let (sequence, synced_slot) = latest
            .as_ref()
            .map_or((0, 0), |(sequence, slot, _)| (*sequence, *slot));
        let slots = SlotFile {
            path: path.to_owned(),
            file,
            sequence,
            synced_slot,
        };
        Ok((slots, latest.map(|(.., body)| body)))
    }

    /// Writes `body` to the slot the latest synced save did not use and syncs it.
    pub fn save(&mut self, body: &[u8]) -> Result<()> {
        self.write_slot(body, true)
    }

    /// Writes `body` as [`SlotFile::save`] does but does not sync it: it reaches the disk
    /// with the next save or the kernel's writeback, and a power loss before either leaves
    /// the latest synced save, or this write. For what may be lost that way, and is saved
    /// too often for an fdatasync each time.
    pub fn write(&mut self, body: &[u8]) -> Result<()> {
        self.write_slot(body, false)
    }

    fn write_slot(&mut self, body: &[u8], sync: bool) -> Result<()> {
        if body.len() > MAX_BODY {
            return Err(Error::damaged(
                &self.path,
                format!(
                    "a record of {} bytes does not fit a slot of {MAX_BODY}",
                    body.len()
                ),
            ));
        }
        let sequence = self.sequence + 1;
        let bytes = encode(sequence, body);
        let slot = 1 - self.synced_slot;
        let offset = slot * SLOT_SIZE;
        self.file
            .write_all_at(&bytes, offset as u64)
            .map_err(|e| Error::io(&self.path, e))?;
        if sync {
            self.file
                .sync_data()
                .map_err(|e| Error::io(&self.path, e))?;
            durable!(flushed(&self.path, offset, &bytes));
            self.synced_slot = slot;
        }
        self.sequence = sequence;
        Ok(())
    }
}

/// A new file whose name is durable before any save: a vote saved into a file whose
/// directory entry a power loss then drops would be forgotten.
fn create(path: &Path) -> Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    if let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    durable!(created(path, 0));
    Ok(file)
}

/// Reads what the file holds from `offset`, up to `bytes.len()`.
fn read_up_to(file: &File, bytes: &mut [u8], offset: u64) -> std::io::Result<usize> {
    let mut read = 0;
    while read < bytes.len() {
        match file.read_at(&mut bytes[read..], offset + read as u64)? {
            0 => break,
            n => read += n,
        }
    }
    Ok(read)
}

fn encode(sequence: u64, body: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(OVERHEAD + body.len());
    bytes.extend_from_slice(&sequence.to_be_bytes());
    bytes.extend_from_slice(&(body.len() as u32).to_be_bytes());
    bytes.extend_from_slice(body);
    let crc = crc32fast::hash(&bytes);
    bytes.extend_from_slice(&crc.to_be_bytes());
    bytes
}

/// The sequence and body of a whole slot; `None` for one never written, torn or damaged.
fn decode(slot: &[u8]) -> Option<(u64, &[u8])> {
    let sequence = u64::from_be_bytes(slot.get(0..8)?.try_into().ok()?);
    let len = u32::from_be_bytes(slot.get(8..12)?.try_into().ok()?) as usize;
    let end = 12usize
        .checked_add(len)
        .filter(|end| *end <= MAX_BODY + 12)?;
    let stored = u32::from_be_bytes(slot.get(end..end + 4)?.try_into().ok()?);
    // A slot never written is all zeros, whose CRC is not zero.
    (stored == crc32fast::hash(&slot[..end])).then(|| (sequence, &slot[12..end]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latest_whole_save_wins_and_a_torn_one_leaves_the_previous() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("record");
        let (mut slots, body) = SlotFile::open(&path).unwrap();
        assert_eq!(body, None);
        slots.save(b"first").unwrap();
        slots.save(b"second, longer").unwrap();
        assert_eq!(SlotFile::open(&path).unwrap().1.unwrap(), b"second, longer");

        // Tear the newest save (sequence 2, slot 0): the one before it is read.
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        file.write_all_at(b"X", 14).unwrap();
        let (mut slots, body) = SlotFile::open(&path).unwrap();
        assert_eq!(body.unwrap(), b"first");
        // The next save goes to the slot the surviving one did not use.
        slots.save(b"third").unwrap();
        assert_eq!(SlotFile::open(&path).unwrap().1.unwrap(), b"third");
        assert_eq!(SlotFile::open(&path).unwrap().1.unwrap(), b"third");
    }

    #[test]
    fn writes_without_a_sync_leave_the_last_synced_save_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("record");
        let (mut slots, _) = SlotFile::open(&path).unwrap();
        slots.save(b"synced").unwrap();
        slots.write(b"written").unwrap();
        slots.write(b"written again").unwrap();
        assert_eq!(SlotFile::open(&path).unwrap().1.unwrap(), b"written again");

        // Both writes went to slot 0 (the save to slot 1): a power loss that tears it
        // leaves the synced save, where alternating slots would have torn both.
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        file.write_all_at(b"X", 14).unwrap();
        let (mut slots, body) = SlotFile::open(&path).unwrap();
        assert_eq!(body.unwrap(), b"synced");
        // Opening synced what it read, so the next writes leave that slot alone too.
        slots.write(b"after").unwrap();
        slots.write(b"after again").unwrap();
        file.write_all_at(b"X", 14).unwrap();
        assert_eq!(SlotFile::open(&path).unwrap().1.unwrap(), b"synced");
    }

    #[test]
    fn a_body_larger_than_a_slot_is_refused_and_nothing_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("record");
        let (mut slots, _) = SlotFile::open(&path).unwrap();
        slots.save(b"kept").unwrap();
        assert!(slots.save(&vec![7; MAX_BODY + 1]).is_err());
        slots.save(&vec![7; MAX_BODY]).unwrap();
        assert_eq!(SlotFile::open(&path).unwrap().1.unwrap(), vec![7; MAX_BODY]);
    }
}
