use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// Everything the store can fail with; the broker maps each variant to a RocketMQ code.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No space left to create or pre-allocate a file (ENOSPC). Nothing was stored.
    #[error("disk full while creating {path}")]
    DiskFull {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Any other I/O failure on a store file.
    #[error("I/O error on {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A file on disk does not have the size or content the store expects.
    #[error("damaged store file {path}: {reason}")]
    DamagedSegment { path: PathBuf, reason: String },
    /// A record below the checkpointed flushed offset is damaged: that range was durable
    /// (acknowledged under SYNC_FLUSH), so recovery refuses to cut the CommitLog there and
    /// the store does not open. `rocketry store repair` quarantines the damaged range.
    #[error(
        "damaged record in {path} at CommitLog offset {offset}, below the checkpointed flushed \
         offset {flushed}: {reason}. The store was not opened, so nothing was deleted; \
         `rocketry store repair` quarantines the damaged range and keeps every other message \
         (docs/reliability.md)"
    )]
    CorruptBelowCheckpoint {
        path: PathBuf,
        offset: u64,
        flushed: u64,
        reason: String,
    },
    /// A flush failed earlier, so the store accepts no more writes until it is restarted:
    /// after an fsync/msync error Linux may have dropped the dirty pages and cleared the
    /// error, and a later flush would "succeed" over lost data.
    #[error("writes are fenced: {0}")]
    WritesFenced(String),
    /// The body exceeds `maxMessageSize` (RocketMQ MESSAGE_ILLEGAL).
    #[error("message body of {size} bytes exceeds maxMessageSize {max}")]
    MessageTooLarge { size: usize, max: usize },
    /// The message cannot be laid out (properties too long, ...): MESSAGE_ILLEGAL.
    #[error("message cannot be encoded")]
    IllegalMessage(#[source] message::Error),
    /// A topic that cannot name a consume-queue directory.
    #[error("illegal topic {0:?}")]
    IllegalTopic(String),
    /// The message was stored but not made durable within `syncFlushTimeout`
    /// (RocketMQ FLUSH_DISK_TIMEOUT: stored, but warn).
    #[error("flush of offset {offset} did not finish within {timeout:?}")]
    FlushTimeout { offset: u64, timeout: Duration },
    /// A flush failed; the message is in the page cache but its durability is unknown.
    #[error("flush failed")]
    FlushFailed(#[source] io::Error),
    /// The store is shut down or another process holds its lock (SERVICE_NOT_AVAILABLE).
    #[error("store not available: {0}")]
    NotAvailable(&'static str),
    /// Records copied from another replica that this CommitLog cannot take: they start
    /// elsewhere than where its next batch goes (the replicas diverged), or are not whole
    /// records stored where they claim. Nothing was written.
    #[error("replicated records at CommitLog offset {start} refused: {reason}")]
    ReplicaMismatch { start: u64, reason: String },
    /// A replicated group did not commit an append (its quorum was lost, or leadership
    /// moved): it is stored on this replica only, not acknowledged, and may be cut.
    #[error("not replicated: {0}")]
    NotReplicated(String),
    /// A Raft log append that does not continue the log.
    #[error("Raft log entry {got} appended where entry {expected} is next")]
    RaftLogGap { expected: u64, got: u64 },
    /// The configuration cannot work.
    #[error("invalid store configuration: {0}")]
    InvalidConfig(String),
}

/// Result with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Wraps an I/O error, singling out ENOSPC as [`Error::DiskFull`].
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        let path = path.into();
        if source.raw_os_error() == Some(libc::ENOSPC) {
            Error::DiskFull { path, source }
        } else {
            Error::Io { path, source }
        }
    }

    /// This error and its sources, for a log line or a refusal's remark.
    pub fn with_sources(&self) -> String {
        let mut text = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        text
    }

    pub(crate) fn damaged(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::DamagedSegment {
            path: path.into(),
            reason: reason.into(),
        }
    }
}
