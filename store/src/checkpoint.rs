//! The `checkpoint` file: RocketMQ's 4 KiB layout (physicMsgTimestamp, logicsMsgTimestamp,
//! indexMsgTimestamp, masterFlushedOffset, confirmPhyOffset) plus two Rocketry fields: the
//! CommitLog offset up to which ConsumeQueues and the index are durable, and a CRC so a torn
//! checkpoint is detected and recovery falls back to a full scan.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

const FILE_SIZE: usize = 4096;
const CRC_POSITION: usize = 48;

/// What the last checkpoint recorded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Checkpoint {
    pub(crate) physic_msg_timestamp: i64,
    pub(crate) logics_msg_timestamp: i64,
    pub(crate) index_msg_timestamp: i64,
    /// CommitLog bytes below this are on disk (RocketMQ's confirmPhyOffset slot).
    pub(crate) commit_log_flushed: u64,
    /// ConsumeQueue and index entries for records below this are on disk.
    pub(crate) dispatched: u64,
}

pub(crate) struct CheckpointFile {
    path: PathBuf,
    file: File,
}

impl CheckpointFile {
    pub(crate) fn open(path: &Path) -> Result<(CheckpointFile, Option<Checkpoint>)> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        let mut bytes = [0u8; FILE_SIZE];
        let read = file
            .read_at(&mut bytes, 0)
            .map_err(|e| Error::io(path, e))?;
        let checkpoint = (read >= CRC_POSITION + 4).then(|| decode(&bytes)).flatten();
        Ok((
            CheckpointFile {
                path: path.to_owned(),
                file,
            },
            checkpoint,
        ))
    }

    /// Writes and syncs the checkpoint.
    pub(crate) fn save(&self, checkpoint: &Checkpoint) -> Result<()> {
        let mut bytes = [0u8; FILE_SIZE];
        bytes[0..8].copy_from_slice(&checkpoint.physic_msg_timestamp.to_be_bytes());
        bytes[8..16].copy_from_slice(&checkpoint.logics_msg_timestamp.to_be_bytes());
        bytes[16..24].copy_from_slice(&checkpoint.index_msg_timestamp.to_be_bytes());
        bytes[32..40].copy_from_slice(&(checkpoint.commit_log_flushed as i64).to_be_bytes());
        bytes[40..48].copy_from_slice(&(checkpoint.dispatched as i64).to_be_bytes());
        let crc = crc32fast::hash(&bytes[..CRC_POSITION]);
        bytes[CRC_POSITION..CRC_POSITION + 4].copy_from_slice(&crc.to_be_bytes());
        self.file
            .write_all_at(&bytes, 0)
            .and_then(|_| self.file.sync_data())
            .map_err(|e| Error::io(&self.path, e))?;
        durable!(flushed(&self.path, 0, &bytes));
        Ok(())
    }
}

fn decode(bytes: &[u8; FILE_SIZE]) -> Option<Checkpoint> {
    let stored = u32::from_be_bytes(bytes[CRC_POSITION..CRC_POSITION + 4].try_into().ok()?);
    if stored != crc32fast::hash(&bytes[..CRC_POSITION]) {
        return None;
    }
    let long = |at: usize| i64::from_be_bytes(bytes[at..at + 8].try_into().unwrap());
    Some(Checkpoint {
        physic_msg_timestamp: long(0),
        logics_msg_timestamp: long(8),
        index_msg_timestamp: long(16),
        commit_log_flushed: long(32).max(0) as u64,
        dispatched: long(40).max(0) as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_torn_detection() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("checkpoint");
        let (file, none) = CheckpointFile::open(&path).unwrap();
        assert_eq!(none, None);
        let checkpoint = Checkpoint {
            physic_msg_timestamp: 1,
            logics_msg_timestamp: 2,
            index_msg_timestamp: 3,
            commit_log_flushed: 4,
            dispatched: 5,
        };
        file.save(&checkpoint).unwrap();
        assert_eq!(CheckpointFile::open(&path).unwrap().1, Some(checkpoint));
        file.file.write_all_at(&[9], 41).unwrap();
        assert_eq!(CheckpointFile::open(&path).unwrap().1, None);
    }
}
