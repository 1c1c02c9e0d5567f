//! One file of the Raft log, named by the index of its first entry: records of
//! `[body length u32][CRC of the body u32][index u64][term u64][node u64][payload]`,
//! back to back, with the positions and ids of its entries kept in memory.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::{EntryId, RaftEntry};
use crate::error::{Error, Result};
use crate::segment::sync_dir;

const HEAD_LEN: usize = 8;
const ID_LEN: usize = 24;

pub(super) struct Segment {
    pub(super) path: PathBuf,
    file: File,
    /// The index of the first entry this file holds (or will hold).
    pub(super) first: u64,
    /// Each entry's id and the position of its record, in index order.
    entries: Vec<(EntryId, u64)>,
    /// Bytes of whole records.
    pub(super) len: u64,
    /// Bytes known to be on disk; those after it were written since the last sync.
    pub(super) synced: u64,
}

impl Segment {
    /// Creates `dir/<20-digit first index>`, the store's segment naming, and makes the name
    /// durable.
    pub(super) fn create(dir: &Path, first: u64) -> Result<Segment> {
        let path = dir.join(crate::segment::file_name(first));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        sync_dir(dir)?;
        durable!(created(&path, 0));
        Ok(Segment {
            path,
            file,
            first,
            entries: Vec::new(),
            len: 0,
            synced: 0,
        })
    }

    /// Opens a segment and reads its records up to the first that is torn, damaged or out of
    /// sequence; the file is cut there (`cut` says whether it was).
    pub(super) fn open(path: &Path, first: u64) -> Result<(Segment, bool)> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let mut entries = Vec::new();
        let mut position = 0usize;
        while let Some((id, len)) = decode_at(&bytes[position..]) {
            if id.index != first + entries.len() as u64 {
                break;
            }
            entries.push((id, position as u64));
            position += len;
        }
        let cut = position < bytes.len();
        let mut segment = Segment {
            path: path.to_owned(),
            file,
            first,
            entries,
            len: bytes.len() as u64,
            synced: 0,
        };
        if cut {
            segment.cut_at(position as u64)?;
        }
        // What a killed process left in the page cache is on disk only once synced, and the
        // log reports every entry it holds as durable.
        segment.file.sync_data().map_err(|e| Error::io(path, e))?;
        durable!(flushed(path, 0, &bytes[..position]));
        segment.synced = segment.len;
        Ok((segment, cut))
    }

    pub(super) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The index after this segment's last entry.
    pub(super) fn next(&self) -> u64 {
        self.first + self.entries.len() as u64
    }

    pub(super) fn id_at(&self, index: u64) -> Option<EntryId> {
        let at = index.checked_sub(self.first)?;
        self.entries.get(at as usize).map(|(id, _)| *id)
    }

    /// Writes `entry`, the next in sequence, after the last record.
    pub(super) fn append(&mut self, entry: &RaftEntry) -> Result<()> {
        let body_len = ID_LEN + entry.payload.len();
        let mut record = Vec::with_capacity(HEAD_LEN + body_len);
        record.extend_from_slice(&(body_len as u32).to_be_bytes());
        record.extend_from_slice(&[0; 4]);
        let mut id = [0u8; ID_LEN];
        entry.id.encode(&mut id);
        record.extend_from_slice(&id);
        record.extend_from_slice(&entry.payload);
        let crc = crc32fast::hash(&record[HEAD_LEN..]);
        record[4..8].copy_from_slice(&crc.to_be_bytes());
        self.file
            .write_all_at(&record, self.len)
            .map_err(|e| Error::io(&self.path, e))?;
        self.entries.push((entry.id, self.len));
        self.len += record.len() as u64;
        Ok(())
    }

    pub(super) fn read(&self, index: u64) -> Result<RaftEntry> {
        let at = (index - self.first) as usize;
        let (id, position) = self.entries[at];
        let end = self.entries.get(at + 1).map_or(self.len, |(_, next)| *next);
        let mut bytes = vec![0u8; (end - position) as usize];
        self.file
            .read_exact_at(&mut bytes, position)
            .map_err(|e| Error::io(&self.path, e))?;
        match decode_at(&bytes) {
            Some((read, _)) if read == id => Ok(RaftEntry {
                id,
                payload: bytes[HEAD_LEN + ID_LEN..].to_vec(),
            }),
            _ => Err(Error::damaged(
                &self.path,
                format!("Raft log entry {index} no longer reads back"),
            )),
        }
    }

    /// Keeps the entries before `index` and syncs the cut.
    pub(super) fn keep_before(&mut self, index: u64) -> Result<()> {
        let at = (index - self.first) as usize;
        if let Some(&(_, position)) = self.entries.get(at) {
            self.entries.truncate(at);
            self.cut_at(position)?;
        }
        Ok(())
    }

    fn cut_at(&mut self, len: u64) -> Result<()> {
        self.file
            .set_len(len)
            .and_then(|_| self.file.sync_all())
            .map_err(|e| Error::io(&self.path, e))?;
        durable!(truncated(&self.path, len as usize));
        self.len = len;
        self.synced = self.synced.min(len);
        Ok(())
    }

    /// Makes what was written since the last sync durable.
    pub(super) fn sync(&mut self) -> Result<()> {
        if self.synced == self.len {
            return Ok(());
        }
        // Where tests make the disk slow.
        fault!("store::raftlog::sync");
        self.file
            .sync_data()
            .map_err(|e| Error::io(&self.path, e))?;
        #[cfg(feature = "failpoints")]
        {
            let mut bytes = vec![0u8; (self.len - self.synced) as usize];
            self.file
                .read_exact_at(&mut bytes, self.synced)
                .map_err(|e| Error::io(&self.path, e))?;
            durable!(flushed(&self.path, self.synced as usize, &bytes));
        }
        self.synced = self.len;
        Ok(())
    }

    /// Removes the file; the caller syncs the directory once it has removed all it will.
    pub(super) fn remove(self) -> Result<()> {
        remove_file(&self.path)
    }
}

/// Removes a segment file that was never opened (one after a cut).
pub(super) fn remove_file(path: &Path) -> Result<()> {
    std::fs::remove_file(path).map_err(|e| Error::io(path, e))?;
    durable!(removed(path));
    Ok(())
}

/// The id and record length of a whole, intact record at the start of `bytes`.
fn decode_at(bytes: &[u8]) -> Option<(EntryId, usize)> {
    let head = bytes.get(..HEAD_LEN)?;
    let body_len = u32::from_be_bytes(head[..4].try_into().ok()?) as usize;
    if body_len < ID_LEN {
        return None;
    }
    let body = bytes.get(HEAD_LEN..HEAD_LEN + body_len)?;
    let crc = u32::from_be_bytes(head[4..8].try_into().ok()?);
    (crc == crc32fast::hash(body)).then(|| (EntryId::decode(&body[..ID_LEN]), HEAD_LEN + body_len))
}
