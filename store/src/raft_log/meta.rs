//! `raft/meta`: the vote, the committed entry and the last purged entry, which Raft must never
//! forget across a crash (a forgotten vote lets a node vote twice in one term).
//!
//! Two slots, one per page, each with a sequence number and a CRC; a save writes the slot
//! the latest save did not use and syncs it, so a torn write leaves the previous state
//! whole in the other slot. Writing in place avoids the rename and directory sync a
//! temporary file would need.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::EntryId;
use crate::error::{Error, Result};

const SLOT_SIZE: u64 = 4096;
/// sequence (8), flags (1), vote (8 + 8 + 1), committed (24), purged (24).
const BODY_LEN: usize = 74;

/// The vote a node last cast or saw: the leader it stands for in a term, and whether a
/// quorum granted it (openraft's `Vote`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vote {
    pub term: u64,
    pub node: u64,
    pub committed: bool,
}

/// What `raft/meta` holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Meta {
    pub vote: Option<Vote>,
    /// The last entry known committed (openraft's `save_committed`).
    pub committed: Option<EntryId>,
    /// Entries up to this one are purged: no longer kept, and the log starts after it.
    pub purged: Option<EntryId>,
}

impl Meta {
    /// The first index the log holds (or will hold): the one after the purge point.
    pub fn log_start(&self) -> u64 {
        self.purged.map_or(0, |purged| purged.index + 1)
    }
}

pub(super) struct MetaFile {
    path: PathBuf,
    file: File,
    /// The sequence number of the latest save; the next goes to the other slot.
    sequence: u64,
}

impl MetaFile {
    pub(super) fn open(path: &Path) -> Result<(MetaFile, Meta)> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        let mut latest: Option<(u64, Meta)> = None;
        for slot in 0..2 {
            let mut bytes = [0u8; BODY_LEN + 4];
            let read = file
                .read_at(&mut bytes, slot * SLOT_SIZE)
                .map_err(|e| Error::io(path, e))?;
            if read < bytes.len() {
                continue;
            }
            if let Some((sequence, meta)) = decode(&bytes) {
                if latest.is_none_or(|(newest, _)| sequence > newest) {
                    latest = Some((sequence, meta));
                }
            }
        }
        let (sequence, meta) = latest.unwrap_or_default();
        let meta_file = MetaFile {
            path: path.to_owned(),
            file,
            sequence,
        };
        Ok((meta_file, meta))
    }

    /// Writes `meta` to the slot the latest save did not use and syncs it.
    pub(super) fn save(&mut self, meta: &Meta) -> Result<()> {
        let sequence = self.sequence + 1;
        let bytes = encode(sequence, meta);
        let offset = (sequence % 2) * SLOT_SIZE;
        self.file
            .write_all_at(&bytes, offset)
            .and_then(|_| self.file.sync_data())
            .map_err(|e| Error::io(&self.path, e))?;
        durable!(flushed(&self.path, offset as usize, &bytes));
        self.sequence = sequence;
        Ok(())
    }
}

fn encode(sequence: u64, meta: &Meta) -> [u8; BODY_LEN + 4] {
    let mut bytes = [0u8; BODY_LEN + 4];
    bytes[0..8].copy_from_slice(&sequence.to_be_bytes());
    let mut flags = 0u8;
    if let Some(vote) = meta.vote {
        flags |= 1;
        bytes[9..17].copy_from_slice(&vote.term.to_be_bytes());
        bytes[17..25].copy_from_slice(&vote.node.to_be_bytes());
        bytes[25] = vote.committed as u8;
    }
    if let Some(committed) = meta.committed {
        flags |= 2;
        committed.encode(&mut bytes[26..50]);
    }
    if let Some(purged) = meta.purged {
        flags |= 4;
        purged.encode(&mut bytes[50..74]);
    }
    bytes[8] = flags;
    let crc = crc32fast::hash(&bytes[..BODY_LEN]);
    bytes[BODY_LEN..].copy_from_slice(&crc.to_be_bytes());
    bytes
}

fn decode(bytes: &[u8; BODY_LEN + 4]) -> Option<(u64, Meta)> {
    let stored = u32::from_be_bytes(bytes[BODY_LEN..].try_into().ok()?);
    // A slot never written is all zeros, whose CRC is not zero.
    if stored != crc32fast::hash(&bytes[..BODY_LEN]) {
        return None;
    }
    let long = |at: usize| u64::from_be_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
    let flags = bytes[8];
    let meta = Meta {
        vote: (flags & 1 != 0).then(|| Vote {
            term: long(9),
            node: long(17),
            committed: bytes[25] != 0,
        }),
        committed: (flags & 2 != 0).then(|| EntryId::decode(&bytes[26..50])),
        purged: (flags & 4 != 0).then(|| EntryId::decode(&bytes[50..74])),
    };
    Some((long(0), meta))
}
