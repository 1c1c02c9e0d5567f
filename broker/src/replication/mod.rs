//! Raft replication of a broker group with openraft (docs/replication.md, issue 16).
//!
//! [`LogStore`] keeps the Raft log and vote in the store's `raft_log`, and each message batch
//! in the CommitLog, at the same offset on every replica; [`StateMachine`] keeps the applied
//! entry and the membership (both pass openraft's storage suite, tests/raft_storage.rs). The
//! calls are [`Network`] and [`serve`], over a [`Transport`]; [`LeaderWrites`] stores a batch on the leader and
//! answers once a quorum holds it; [`Replica`] puts them together for a broker.

mod leader;
mod log_store;
mod network;
mod replica;
mod runtime;
mod state_machine;
mod transport;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

pub use leader::{Committed, LeaderWrites, Refused, Replicated};
pub use log_store::LogStore;
pub use network::{broker_addr_of, serve, Network, PeerAddrs, Served};
use parking_lot::Mutex;
pub use replica::{Replica, RAFT_DIR};
pub use runtime::seed_this_thread;
use serde::{Deserialize, Serialize};
pub use state_machine::{SnapshotEnd, StateMachine};
pub use transport::{BoxConnection, Connection, Dial, Listen, Tcp, Transport};

openraft::declare_raft_types!(
    /// Rocketry's Raft. A node is a replica of one broker group, numbered as DLedger numbers
    /// its peers (`n0` is node 0); entries carry CommitLog batches.
    pub TypeConfig:
        D = Batch,
        // The leader knows a batch's offsets before it proposes it, so applying answers
        // nothing more.
        R = (),
        AsyncRuntime = runtime::Runtime,
);

/// The longest a follower waits for a heartbeat before it stands for election; a leader not
/// acknowledged by a quorum for this long may have been replaced.
pub const ELECTION_TIMEOUT_MAX: std::time::Duration = std::time::Duration::from_secs(2);

/// Entries between snapshots. A snapshot is a few hundred bytes of metadata saved once.
pub const SNAPSHOT_EVERY: u64 = 5_000;
/// Entries kept in the log before the last snapshot, so that a follower a little behind
/// still catches up entry by entry.
pub const LOG_KEPT_AFTER_SNAPSHOT: u64 = 1_000;

/// How long a follower may take to install a snapshot whose records were copied.
const INSTALL_SNAPSHOT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// A replica's Raft, over Rocketry's storage.
pub type Raft = openraft::Raft<TypeConfig, StateMachine>;

/// openraft's settings for the group `group`: a heartbeat every 250 ms, an election after 1 to
/// 2 s without one. openraft's defaults (50 ms, 150 to 300 ms) suit a dedicated network; on a
/// shared node a follower's fsync or a paused process must not cost an election, and a
/// failover still stays far inside issue 16's 5 s.
///
/// A snapshot (the CommitLog up to the last applied batch, [`SnapshotEnd`]) is taken every
/// [`SNAPSHOT_EVERY`] entries, and the log before it purged but for the last
/// [`LOG_KEPT_AFTER_SNAPSHOT`] entries: a follower further behind is sent the records it
/// lacks instead of the entries.
///
/// A replica restarted after leading starts as a follower (openraft would restore it as
/// leader of its old term at once): a broker that believed it led would register as master
/// and take sends until it heard of the newer term.
///
/// Under ASYNC_FLUSH a follower's log may go back after its power loss (it acknowledged
/// entries its page cache held, docs/replication.md); the leader then sends them again
/// instead of taking it for a bug (openraft's `allow_log_reversion`). Under SYNC_FLUSH it
/// acknowledges only what it flushed, and its log never goes back.
pub fn raft_config(group: &str, flush: store::FlushDiskType) -> std::sync::Arc<openraft::Config> {
    let config = openraft::Config {
        cluster_name: group.to_owned(),
        heartbeat_interval: 250,
        election_timeout_min: 1000,
        election_timeout_max: ELECTION_TIMEOUT_MAX.as_millis() as u64,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(SNAPSHOT_EVERY),
        max_in_snapshot_log_to_keep: LOG_KEPT_AFTER_SNAPSHOT,
        // The last call of a snapshot's transfer (network.rs) waits while the follower
        // flushes and dispatches what was copied: openraft's 200 ms would send it all again.
        install_snapshot_timeout: INSTALL_SNAPSHOT_TIMEOUT.as_millis() as u64,
        enable_leader_restore: Some(false),
        allow_log_reversion: Some(flush == store::FlushDiskType::AsyncFlush),
        ..Default::default()
    };
    std::sync::Arc::new(config.validate().expect("these settings are valid"))
}

/// One group-commit batch of encoded message records, written at the same CommitLog offset
/// on every replica. The Raft log keeps where the bytes are and their CRC; the bytes stay
/// in the CommitLog and travel beside the entry (`bytes`), read from the leader's CommitLog
/// and written at the same offset into each follower's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    pub start: u64,
    pub len: u32,
    /// CRC32 of the whole batch: a record's own CRC covers only its body.
    pub crc: u32,
    /// The records, when the entry is on its way to a follower.
    #[serde(skip)]
    pub bytes: Option<bytes::Bytes>,
}

impl Batch {
    /// The batch of `bytes` stored at `start`.
    pub fn of(start: u64, bytes: bytes::Bytes) -> Batch {
        Batch {
            start,
            len: bytes.len() as u32,
            crc: crc32fast::hash(&bytes),
            bytes: Some(bytes),
        }
    }

    /// The CommitLog offset just past the batch.
    pub fn end(&self) -> u64 {
        self.start + u64::from(self.len)
    }

    /// The batches of `parts`, each stored right where the one before ends, as one batch.
    /// Their CRCs combine without reading the bytes again.
    pub fn joined(parts: Vec<Batch>) -> Batch {
        let mut parts = parts.into_iter();
        let first = parts.next().expect("a batch joins at least one");
        let (start, mut len) = (first.start, u64::from(first.len));
        let mut crc = crc32fast::Hasher::new_with_initial_len(first.crc, len);
        let mut bytes = first.bytes.map(|bytes| vec![bytes]);
        for part in parts {
            debug_assert_eq!(part.start, start + len, "joined batches are contiguous");
            crc.combine(&crc32fast::Hasher::new_with_initial_len(
                part.crc,
                u64::from(part.len),
            ));
            len += u64::from(part.len);
            bytes = bytes.zip(part.bytes).map(|(mut all, part)| {
                all.push(part);
                all
            });
        }
        let bytes = bytes.map(|all| match <[_; 1]>::try_from(all) {
            Ok([one]) => one,
            Err(all) => bytes::Bytes::from(all.concat()),
        });
        Batch {
            start,
            len: u32::try_from(len).expect("a joined batch stays under 4 GiB"),
            crc: crc.finalize(),
            bytes,
        }
    }
}

impl fmt::Display for Batch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} bytes at {} (crc {:08x})",
            self.len, self.start, self.crc
        )
    }
}

/// Which writes of replication's own records (Raft-log entries, the applied entry) are
/// synced: every one under SYNC_FLUSH, and under ASYNC_FLUSH, whose quorum ack means the page
/// cache of a majority (docs/replication.md), one a flush interval, as the CommitLog is
/// flushed. A sync per write there cost each replica two fdatasyncs per entry on a runtime
/// worker and kept nothing the CommitLog beside them does not: a killed process leaves all
/// of it in the page cache, and a power loss takes the CommitLog's unflushed tail with or
/// without the records that name it.
#[derive(Clone)]
struct SyncPace {
    /// `None`: every write.
    every: Option<Duration>,
    /// tokio's clock: the simulation's is its own.
    last: Arc<Mutex<tokio::time::Instant>>,
}

impl SyncPace {
    /// The pace for a replica over `store` (every write without one).
    fn of(store: Option<&store::MessageStore>) -> SyncPace {
        let every = store
            .map(|store| store.config())
            .filter(|config| config.flush_disk_type == store::FlushDiskType::AsyncFlush)
            .map(|config| Duration::from_millis(config.flush_interval_commit_log));
        SyncPace {
            every,
            last: Arc::new(Mutex::new(tokio::time::Instant::now())),
        }
    }

    /// Whether the write about to be made is synced.
    fn due(&self) -> bool {
        let Some(every) = self.every else {
            return true;
        };
        let mut last = self.last.lock();
        if last.elapsed() < every {
            return false;
        }
        *last = tokio::time::Instant::now();
        true
    }
}

/// openraft reports storage failures as `std::io::Error`; the store's error is its source.
fn io_error(error: store::Error) -> std::io::Error {
    std::io::Error::other(error)
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::Batch;

    #[test]
    fn joined_batches_are_the_batch_of_their_bytes_end_to_end() {
        let parts = [&b"first records"[..], b"", b"and the rest of them"];
        let mut start = 4096;
        let batches = parts
            .iter()
            .map(|part| {
                let batch = Batch::of(start, Bytes::from_static(part));
                start = batch.end();
                batch
            })
            .collect();
        assert_eq!(
            Batch::joined(batches),
            Batch::of(4096, Bytes::from(parts.concat()))
        );

        // Entries read back from the Raft log carry no bytes: joined, neither does the
        // batch, and its CRC is still the whole's.
        let bare = |batch: Batch| Batch {
            bytes: None,
            ..batch
        };
        let first = Batch::of(0, Bytes::from_static(b"abc"));
        let second = Batch::of(3, Bytes::from_static(b"def"));
        assert_eq!(
            Batch::joined(vec![bare(first), second]),
            bare(Batch::of(0, Bytes::from_static(b"abcdef")))
        );
    }
}
