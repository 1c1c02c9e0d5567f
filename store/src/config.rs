use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// When an append counts as durable (`flushDiskType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FlushDiskType {
    /// Acknowledge at once; a background thread flushes on an interval.
    #[serde(rename = "ASYNC_FLUSH")]
    AsyncFlush,
    /// Acknowledge after the bytes are on disk; concurrent appends share one flush.
    #[serde(rename = "SYNC_FLUSH")]
    SyncFlush,
}

/// Store settings, named and defaulted as RocketMQ's `MessageStoreConfig`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct StoreConfig {
    /// Root of commitlog/, consumequeue/, index/, checkpoint and abort.
    pub store_path_root_dir: PathBuf,
    /// Bytes per CommitLog segment.
    pub mapped_file_size_commit_log: u64,
    /// Bytes per ConsumeQueue segment; a multiple of 20 (300,000 entries by default).
    pub mapped_file_size_consume_queue: u64,
    /// SYNC_FLUSH or ASYNC_FLUSH.
    pub flush_disk_type: FlushDiskType,
    /// ASYNC_FLUSH: ms between background flushes.
    pub flush_interval_commit_log: u64,
    /// ASYNC_FLUSH: pages that must be dirty before a periodic flush bothers.
    pub flush_commit_log_least_pages: u64,
    /// ASYNC_FLUSH: ms after which everything dirty is flushed whatever its size.
    pub flush_commit_log_thorough_interval: u64,
    /// ASYNC_FLUSH: sleep the whole interval (true) or let appends wake the flusher (false).
    pub flush_commit_log_timed: bool,
    /// SYNC_FLUSH: ms an append waits for its flush before FLUSH_DISK_TIMEOUT.
    pub sync_flush_timeout: u64,
    /// ms between ConsumeQueue/index flushes, each followed by a checkpoint.
    pub flush_interval_consume_queue: u64,
    /// Hours a CommitLog segment is kept after its last write.
    pub file_reserved_time: u64,
    /// Hours (`"04"` or `"04;05"`, UTC here) when expired files are deleted.
    pub delete_when: String,
    /// Disk use percentage above which expired files are deleted outside `deleteWhen`.
    pub disk_max_used_space_ratio: u64,
    /// Disk use percentage above which files are deleted whatever their age.
    pub disk_space_clean_forcibly_ratio: u64,
    /// ms between retention runs.
    pub clean_resource_interval: u64,
    /// At most this many CommitLog segments deleted per run.
    pub delete_file_batch_max: usize,
    /// Largest accepted body in bytes.
    pub max_message_size: usize,
    /// Pre-fault (touch every page of) each new CommitLog segment before it is used.
    pub warm_maped_file_enable: bool,
    /// Build the key/unique-key index.
    pub message_index_enable: bool,
    /// Hash slots per index file.
    pub max_hash_slot_num: u32,
    /// Entries per index file.
    pub max_index_num: u32,
    /// Cap on offsets one index query returns.
    pub max_msgs_num_batch: usize,
    /// Check body CRCs while recovering after a crash.
    #[serde(rename = "checkCRCOnRecover")]
    pub check_crc_on_recover: bool,
}

impl Default for StoreConfig {
    fn default() -> Self {
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_default();
        StoreConfig {
            store_path_root_dir: home.join("store"),
            mapped_file_size_commit_log: 1024 * 1024 * 1024,
            mapped_file_size_consume_queue: 300_000 * 20,
            flush_disk_type: FlushDiskType::AsyncFlush,
            flush_interval_commit_log: 500,
            flush_commit_log_least_pages: 4,
            flush_commit_log_thorough_interval: 10_000,
            flush_commit_log_timed: true,
            sync_flush_timeout: 5000,
            flush_interval_consume_queue: 1000,
            file_reserved_time: 72,
            delete_when: "04".to_owned(),
            disk_max_used_space_ratio: 75,
            disk_space_clean_forcibly_ratio: 85,
            clean_resource_interval: 10_000,
            delete_file_batch_max: 10,
            max_message_size: 4 * 1024 * 1024,
            warm_maped_file_enable: false,
            message_index_enable: true,
            max_hash_slot_num: 5_000_000,
            max_index_num: 20_000_000,
            max_msgs_num_batch: 64,
            check_crc_on_recover: true,
        }
    }
}

impl StoreConfig {
    /// Defaults rooted at `dir`.
    pub fn with_root(dir: impl Into<PathBuf>) -> Self {
        StoreConfig {
            store_path_root_dir: dir.into(),
            ..StoreConfig::default()
        }
    }

    pub(crate) fn validate(&self) -> crate::Result<()> {
        let fail = |reason: &str| Err(crate::Error::InvalidConfig(reason.to_owned()));
        if self.mapped_file_size_consume_queue == 0
            || !self.mapped_file_size_consume_queue.is_multiple_of(20)
        {
            return fail("mappedFileSizeConsumeQueue must be a positive multiple of 20");
        }
        if self.mapped_file_size_commit_log < 4096
            || self.mapped_file_size_commit_log > i32::MAX as u64
        {
            return fail("mappedFileSizeCommitLog must be between 4 KiB and 2 GiB");
        }
        if self.max_hash_slot_num == 0 || self.max_index_num < 2 {
            return fail("maxHashSlotNum must be positive and maxIndexNum at least 2");
        }
        Ok(())
    }

    pub(crate) fn commit_log_dir(&self) -> PathBuf {
        self.store_path_root_dir.join("commitlog")
    }

    pub(crate) fn consume_queue_dir(&self) -> PathBuf {
        self.store_path_root_dir.join("consumequeue")
    }

    pub(crate) fn index_dir(&self) -> PathBuf {
        self.store_path_root_dir.join("index")
    }

    pub(crate) fn quarantine_dir(&self) -> PathBuf {
        self.store_path_root_dir.join("quarantine")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_uses_rocketmq_names() {
        let json = serde_json::to_value(StoreConfig::with_root("/x")).unwrap();
        assert_eq!(json["storePathRootDir"], "/x");
        assert_eq!(json["mappedFileSizeCommitLog"], 1073741824u64);
        assert_eq!(json["flushDiskType"], "ASYNC_FLUSH");
        assert_eq!(json["syncFlushTimeout"], 5000);
        assert_eq!(json["warmMapedFileEnable"], false);
        assert_eq!(json["checkCRCOnRecover"], true);
        let parsed: StoreConfig =
            serde_json::from_str(r#"{"flushDiskType":"SYNC_FLUSH","fileReservedTime":48}"#)
                .unwrap();
        assert_eq!(parsed.flush_disk_type, FlushDiskType::SyncFlush);
        assert_eq!(parsed.file_reserved_time, 48);
        assert_eq!(parsed.max_message_size, 4 * 1024 * 1024);
    }
}
