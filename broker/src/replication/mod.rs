//! Raft replication of a broker group with openraft (docs/replication.md, issue 16).
//!
//! So far this is openraft's storage over the store's files: [`LogStore`] keeps the Raft log
//! and vote in the store's `raft_log`, and [`StateMachine`] keeps the applied entry and the
//! membership. Both pass openraft's own storage suite (tests/raft_storage.rs). No broker runs
//! Raft yet: message entries, the network and the broker's roles are the next steps.

mod log_store;
mod network;
mod state_machine;

use std::fmt;

pub use log_store::LogStore;
pub use network::{serve, Network};
use serde::{Deserialize, Serialize};
pub use state_machine::StateMachine;

openraft::declare_raft_types!(
    /// Rocketry's Raft. A node is a replica of one broker group, numbered as DLedger numbers
    /// its peers (`n0` is node 0); entries carry CommitLog batches.
    pub TypeConfig:
        D = Batch,
        // The leader knows a batch's offsets before it proposes it, so applying answers
        // nothing more.
        R = (),
);

/// A replica's Raft, over Rocketry's storage.
pub type Raft = openraft::Raft<TypeConfig, StateMachine>;

/// One group-commit batch of encoded message records, written at the same CommitLog offset
/// on every replica. The bytes stay in the CommitLog; the entry says where they are and
/// what their CRC is, so a replica can tell its copy from the leader's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    pub start: u64,
    pub len: u32,
    pub crc: u32,
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

/// openraft reports storage failures as `std::io::Error`; the store's error is its source.
fn io_error(error: store::Error) -> std::io::Error {
    std::io::Error::other(error)
}
