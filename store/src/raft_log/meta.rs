//! `raft/meta`: the vote, the committed entry and the last purged entry, which Raft must never
//! forget across a crash (a forgotten vote lets a node vote twice in one term).
//!
//! It is a [`SlotFile`] record, so a torn save leaves the previous state whole.

use std::path::Path;

use super::EntryId;
use crate::error::{Error, Result};
use crate::slots::SlotFile;

/// flags (1), vote (8 + 8 + 1), committed (24), purged (24), began (8).
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
    /// The index an empty log's first append came with, when past the log's start: openraft
    /// lets an empty log begin anywhere, and the segments alone cannot tell a log that began
    /// there from one whose first segment was lost.
    pub began: u64,
}

impl Meta {
    /// The first index the log holds (or will hold): the one after the purge point, or where
    /// the log began if that is later.
    pub fn log_start(&self) -> u64 {
        self.purged
            .map_or(0, |purged| purged.index + 1)
            .max(self.began)
    }
}

pub(super) struct MetaFile(SlotFile);

impl MetaFile {
    pub(super) fn open(path: &Path) -> Result<(MetaFile, Meta)> {
        let (slots, body) = SlotFile::open(path)?;
        // A record that is whole but not a meta's is not a state to start from.
        let meta = match body {
            None => Meta::default(),
            Some(body) => decode(&body).ok_or_else(|| {
                Error::damaged(path, format!("a Raft meta record of {} bytes", body.len()))
            })?,
        };
        Ok((MetaFile(slots), meta))
    }

    /// Saves `meta` durably; a torn save leaves the previous one.
    pub(super) fn save(&mut self, meta: &Meta) -> Result<()> {
        self.0.save(&encode(meta))
    }

    /// Writes `meta` without syncing it ([`crate::slots::SlotFile::write`]).
    pub(super) fn write(&mut self, meta: &Meta) -> Result<()> {
        self.0.write(&encode(meta))
    }
}

fn encode(meta: &Meta) -> [u8; BODY_LEN] {
    let mut bytes = [0u8; BODY_LEN];
    let mut flags = 0u8;
    if let Some(vote) = meta.vote {
        flags |= 1;
        bytes[1..9].copy_from_slice(&vote.term.to_be_bytes());
        bytes[9..17].copy_from_slice(&vote.node.to_be_bytes());
        bytes[17] = vote.committed as u8;
    }
    if let Some(committed) = meta.committed {
        flags |= 2;
        committed.encode(&mut bytes[18..42]);
    }
    if let Some(purged) = meta.purged {
        flags |= 4;
        purged.encode(&mut bytes[42..66]);
    }
    bytes[66..74].copy_from_slice(&meta.began.to_be_bytes());
    bytes[0] = flags;
    bytes
}

fn decode(bytes: &[u8]) -> Option<Meta> {
    let bytes: &[u8; BODY_LEN] = bytes.try_into().ok()?;
    let long = |at: usize| u64::from_be_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
    let flags = bytes[0];
    Some(Meta {
        vote: (flags & 1 != 0).then(|| Vote {
            term: long(1),
            node: long(9),
            committed: bytes[17] != 0,
        }),
        committed: (flags & 2 != 0).then(|| EntryId::decode(&bytes[18..42])),
        purged: (flags & 4 != 0).then(|| EntryId::decode(&bytes[42..66])),
        began: long(66),
    })
}
