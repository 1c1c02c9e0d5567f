//! A replica's store begun again empty. A replica whose records all end before the oldest
//! segment its leader keeps (down longer than `fileReservedTime`) can be sent nothing it
//! could append: the leader's records begin past a gap. Its messages are all older than the
//! group keeps, so it drops them and is sent the leader's retained segments as a new replica
//! is. The broker marks the store ([`MessageStore::mark_for_reset`]) and restarts; before
//! the store opens again, [`PendingReset`] deletes its messages and the broker clears its
//! Raft state, and only then is the mark removed, so a stop anywhere in between finishes the
//! reset at the next start.

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::segment::sync_dir;
use crate::store::{lock_root, write_durably};
use crate::{MessageStore, StoreConfig};

/// The mark, in the store's root.
const MARK: &str = "reset";

impl MessageStore {
    /// Marks this store to begin again empty before it next opens, durably. Until then it
    /// goes on as it was.
    pub fn mark_for_reset(&self) -> Result<()> {
        let path = self.config().store_path_root_dir.join(MARK);
        write_durably(&path, b"")?;
        tracing::warn!(
            mark = %path.display(),
            "this store begins again empty at its next start"
        );
        Ok(())
    }
}

/// A reset marked and not finished. It holds the store's lock, so no store opens over it.
pub struct PendingReset {
    root: PathBuf,
    /// What holds messages or their positions, deleted whole.
    folders: [PathBuf; 4],
    _lock: File,
}

impl PendingReset {
    /// The reset the store `config` describes was marked for, if any.
    pub fn find(config: &StoreConfig) -> Result<Option<PendingReset>> {
        let root = config.store_path_root_dir.clone();
        if !root.join(MARK).exists() {
            return Ok(None);
        }
        let lock = lock_root(&root)?;
        Ok(Some(PendingReset {
            folders: [
                config.commit_log_dir(),
                config.consume_queue_dir(),
                config.index_dir(),
                config.quarantine_dir(),
            ],
            root,
            _lock: lock,
        }))
    }

    /// Deletes the CommitLog, consume queues, index, quarantine records and checkpoint,
    /// durably; the store opens as a new one. Can be done again.
    pub fn clear_messages(&self) -> Result<()> {
        for folder in &self.folders {
            remove_all(folder)?;
        }
        for file in ["checkpoint", "abort"] {
            remove_if_there(&self.root.join(file))?;
        }
        sync_dir(&self.root)?;
        tracing::warn!(store = %self.root.display(), "store begun again empty");
        Ok(())
    }

    /// Ends the reset: the mark goes, durably, and the store may open.
    pub fn finish(self) -> Result<()> {
        remove_if_there(&self.root.join(MARK))?;
        sync_dir(&self.root)
    }
}

fn remove_all(folder: &Path) -> Result<()> {
    match std::fs::remove_dir_all(folder) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(folder, e)),
        _ => Ok(()),
    }
}

fn remove_if_there(file: &Path) -> Result<()> {
    match std::fs::remove_file(file) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(file, e)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use message::Message;

    use super::*;
    use crate::{FlushDiskType, PutMessage};

    fn config(dir: &Path) -> StoreConfig {
        StoreConfig {
            mapped_file_size_commit_log: 64 * 1024,
            flush_disk_type: FlushDiskType::SyncFlush,
            ..StoreConfig::with_root(dir)
        }
    }

    fn put(n: usize) -> PutMessage {
        let mut message = Message::new("T", vec![n as u8; 3000]);
        let key = format!("key-{n}");
        message.set_keys([key.as_str()]);
        PutMessage::new(
            message,
            0,
            "127.0.0.1:1".parse().unwrap(),
            "127.0.0.1:2".parse().unwrap(),
        )
    }

    #[test]
    fn a_marked_store_opens_empty_once_the_reset_is_done_and_not_before() {
        let dir = tempfile::tempdir().unwrap();
        let store = MessageStore::open(config(dir.path())).unwrap();
        for n in 0..50 {
            store.append(&put(n)).unwrap().durable.wait().unwrap();
        }
        assert_eq!(
            store
                .query_by_key("T", "key-7", 10, 0, i64::MAX)
                .messages
                .len(),
            1
        );
        assert!(PendingReset::find(&config(dir.path())).unwrap().is_none());
        store.mark_for_reset().unwrap();
        // Marked, it goes on as it was.
        assert_eq!(store.max_offset("T", 0), 50);
        store.shutdown().unwrap();
        drop(store);

        // Found, the reset holds the store's lock.
        let reset = PendingReset::find(&config(dir.path())).unwrap().unwrap();
        assert!(MessageStore::open(config(dir.path())).is_err());
        // Stopped after the deletions and before the mark went: found again, done again.
        reset.clear_messages().unwrap();
        drop(reset);
        let reset = PendingReset::find(&config(dir.path())).unwrap().unwrap();
        reset.clear_messages().unwrap();
        reset.finish().unwrap();
        assert!(PendingReset::find(&config(dir.path())).unwrap().is_none());

        let store = MessageStore::open(config(dir.path())).unwrap();
        assert_eq!(store.commit_log_max_offset(), 0);
        assert_eq!(store.max_offset("T", 0), 0);
        assert!(store
            .query_by_key("T", "key-7", 10, 0, i64::MAX)
            .messages
            .is_empty());
        store.append(&put(99)).unwrap().durable.wait().unwrap();
        assert_eq!(store.max_offset("T", 0), 1);
    }
}
