//! The Raft log of a replicated broker group (docs/replication.md, issue 16, step 1): entries
//! in segment files named by their first index, and `meta` with the vote, the committed
//! entry and the purge point. An entry's payload is opaque here: the replication layer
//! encodes openraft's blank, membership and message entries into it, so this crate knows
//! nothing of openraft.
//!
//! Crash safety follows the store's rules: an entry is durable once [`RaftLog::sync`] has
//! returned, and opening cuts the log at the first record that is torn, damaged or out of
//! sequence, along with every segment after it (nothing there was ever reported durable,
//! because a sync covers every segment before it returns). Truncation and removal are
//! synced before they return, so an entry cut from the log never comes back.

mod meta;
#[cfg(test)]
#[path = "raft_log_test.rs"]
mod raft_log_test;
mod segment;

use std::ops::Range;
use std::path::{Path, PathBuf};

use meta::MetaFile;
pub use meta::{Meta, Vote};
use segment::Segment;

use crate::error::{Error, Result};
use crate::segment::sync_dir;

/// An entry's place in the log: its index and the leader (term and node) that wrote it
/// (openraft's `LogId` with the standard leader id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryId {
    pub term: u64,
    pub node: u64,
    pub index: u64,
}

impl EntryId {
    fn encode(&self, out: &mut [u8]) {
        out[0..8].copy_from_slice(&self.index.to_be_bytes());
        out[8..16].copy_from_slice(&self.term.to_be_bytes());
        out[16..24].copy_from_slice(&self.node.to_be_bytes());
    }

    fn decode(bytes: &[u8]) -> EntryId {
        let long = |at: usize| u64::from_be_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        EntryId {
            index: long(0),
            term: long(8),
            node: long(16),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaftEntry {
    pub id: EntryId,
    pub payload: Vec<u8>,
}

pub struct RaftLog {
    dir: PathBuf,
    /// In index order; appends go to the last.
    segments: Vec<Segment>,
    meta_file: MetaFile,
    meta: Meta,
    /// The index the next append must have.
    next: u64,
    /// A segment is full from this many bytes on.
    segment_bytes: u64,
}

impl RaftLog {
    /// Opens (or creates) the log in `dir`, cutting a torn tail; new segments start once the
    /// last has `segment_bytes`.
    pub fn open(dir: &Path, segment_bytes: u64) -> Result<RaftLog> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let (meta_file, meta) = MetaFile::open(&dir.join("meta"))?;
        let start = meta.log_start();
        let mut segments: Vec<Segment> = Vec::new();
        let mut removed = false;
        let mut broken = false;
        for (first, path) in crate::segment::list(dir)? {
            let continues = segments
                .last()
                .map_or(first <= start, |last| last.next() == first);
            if broken || !continues {
                if segments.is_empty() && !broken && first > start {
                    return Err(Error::damaged(
                        &path,
                        format!("the Raft log starts at entry {first}, not at entry {start}"),
                    ));
                }
                segment::remove_file(&path)?;
                removed = true;
                continue;
            }
            let (segment, cut) = Segment::open(&path, first)?;
            // A cut tail was never synced, and neither was anything after it, even behind a
            // segment that a purge covers (a purge removes it before the next sync).
            broken = cut;
            if segment.first < start && segment.next() <= start {
                // Wholly purged: the purge was saved, the removal had not happened yet.
                segment.remove()?;
                removed = true;
                continue;
            }
            segments.push(segment);
        }
        if removed {
            sync_dir(dir)?;
        }
        let next = segments.last().map_or(start, |last| last.next().max(start));
        Ok(RaftLog {
            dir: dir.to_owned(),
            segments,
            meta_file,
            meta,
            next,
            segment_bytes,
        })
    }

    /// The vote, the committed entry and the purge point, as last saved.
    pub fn meta(&self) -> Meta {
        self.meta
    }

    pub fn save_vote(&mut self, vote: Vote) -> Result<()> {
        self.save_meta(Meta {
            vote: Some(vote),
            ..self.meta
        })
    }

    /// Records the committed entry without syncing it: it only spares a restarted replica
    /// waiting to learn it from the leader (openraft re-applies up to it at start, and asks
    /// nothing durable of it). It is written once per committed entry, and the vote and
    /// purge point saved with it are already durable, so a power loss loses at most this.
    pub fn save_committed(&mut self, committed: Option<EntryId>) -> Result<()> {
        let meta = Meta {
            committed,
            ..self.meta
        };
        self.meta_file.write(&meta)?;
        self.meta = meta;
        Ok(())
    }

    fn save_meta(&mut self, meta: Meta) -> Result<()> {
        self.meta_file.save(&meta)?;
        self.meta = meta;
        Ok(())
    }

    fn start(&self) -> u64 {
        self.meta.log_start()
    }

    /// The index the next append must have.
    pub fn next_index(&self) -> u64 {
        self.next
    }

    /// The id of the last entry, or of the last purged one when none is left.
    pub fn last_id(&self) -> Option<EntryId> {
        self.id_at(self.next.checked_sub(1)?).or(self.meta.purged)
    }

    /// The id of the entry at `index`, if the log holds it.
    pub fn id_at(&self, index: u64) -> Option<EntryId> {
        if index < self.start() || index >= self.next {
            return None;
        }
        self.segment_of(index)?.id_at(index)
    }

    fn segment_of(&self, index: u64) -> Option<&Segment> {
        let at = self
            .segments
            .partition_point(|segment| segment.first <= index);
        self.segments[..at].last()
    }

    /// The entries the log holds with indexes in `range`.
    pub fn entries(&self, range: Range<u64>) -> Result<Vec<RaftEntry>> {
        let from = range.start.max(self.start());
        let to = range.end.min(self.next);
        (from..to)
            .map(|index| {
                self.segment_of(index)
                    .expect("indexes from start to next are in a segment")
                    .read(index)
            })
            .collect()
    }

    /// Writes `entries`, which must continue the log (an empty log may begin at any index);
    /// they are readable at once and durable after the next [`RaftLog::sync`].
    pub fn append(&mut self, entries: &[RaftEntry]) -> Result<()> {
        for entry in entries {
            if entry.id.index > self.next && self.next == self.start() {
                // An empty log begins where its first entry says (openraft's contract).
                self.save_meta(Meta {
                    began: entry.id.index,
                    ..self.meta
                })?;
                self.remove_segments_below_start()?;
                self.next = entry.id.index;
            }
            if entry.id.index != self.next {
                return Err(Error::RaftLogGap {
                    expected: self.next,
                    got: entry.id.index,
                });
            }
            let full = self
                .segments
                .last()
                .is_none_or(|last| !last.is_empty() && last.len >= self.segment_bytes);
            if full {
                self.segments.push(Segment::create(&self.dir, self.next)?);
            }
            self.segments
                .last_mut()
                .expect("a segment to append to")
                .append(entry)?;
            self.next += 1;
        }
        Ok(())
    }

    /// Makes every entry appended so far durable.
    pub fn sync(&mut self) -> Result<()> {
        for segment in &mut self.segments {
            segment.sync()?;
        }
        Ok(())
    }

    /// Keeps the entries up to `last` (none with `None`) and removes the rest, durably:
    /// a new leader's entries replace them.
    pub fn truncate_after(&mut self, last: Option<u64>) -> Result<()> {
        let keep = last.map_or(0, |last| last + 1).max(self.start());
        if keep >= self.next {
            return Ok(());
        }
        let mut removed = false;
        while let Some(mut segment) = self.segments.pop() {
            if segment.first >= keep {
                segment.remove()?;
                removed = true;
                continue;
            }
            segment.keep_before(keep)?;
            self.segments.push(segment);
            break;
        }
        if removed {
            sync_dir(&self.dir)?;
        }
        self.next = keep;
        Ok(())
    }

    /// Forgets the entries up to and including `upto`, which may lie past the last entry
    /// (a follower that installed a snapshot): the purge point is saved first, then the
    /// segments wholly below it are removed.
    pub fn purge(&mut self, upto: EntryId) -> Result<()> {
        if self
            .meta
            .purged
            .is_some_and(|purged| purged.index >= upto.index)
        {
            return Ok(());
        }
        self.save_meta(Meta {
            purged: Some(upto),
            ..self.meta
        })?;
        self.remove_segments_below_start()?;
        self.next = self.next.max(self.start());
        Ok(())
    }

    /// Forgets every entry, the committed one and the purge point, and keeps the vote: a
    /// replica whose messages were all older than its leader keeps begins again as an empty
    /// one (`store::PendingReset`), which no leader's entry or snapshot conflicts with, and
    /// casts no second vote in a term. The segments go first, then the meta that would
    /// place the log's start past them, so a stop between the two leaves a log that is
    /// cleared again, never one that looks damaged.
    pub fn clear(&mut self) -> Result<()> {
        for segment in self.segments.drain(..) {
            segment.remove()?;
        }
        sync_dir(&self.dir)?;
        self.save_meta(Meta {
            vote: self.meta.vote,
            ..Meta::default()
        })?;
        self.next = 0;
        Ok(())
    }

    /// Removes the segments that hold nothing from the log's start on, durably.
    fn remove_segments_below_start(&mut self) -> Result<()> {
        let start = self.start();
        let below = self
            .segments
            .iter()
            .take_while(|segment| segment.next() <= start)
            .count();
        if below == 0 {
            return Ok(());
        }
        for segment in self.segments.drain(..below) {
            segment.remove()?;
        }
        sync_dir(&self.dir)
    }
}
