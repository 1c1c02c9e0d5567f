//! Rocketry's message store: RocketMQ's CommitLog, ConsumeQueues, key index, checkpoint and
//! crash recovery, with the same on-disk layout under `storePathRootDir`:
//! `commitlog/`, `consumequeue/<topic>/<queueId>/`, `index/`, `checkpoint`, `abort`, `lock`.
//!
//! No networking and no async runtime: [`MessageStore::append`] returns at once with the
//! offsets and a [`Durable`] the caller awaits (or blocks on) for SYNC_FLUSH durability.

/// A named fault point (the `fail` crate's `fail_point!`) where tests inject I/O errors,
/// stalls and crashes into the real store. Compiled to nothing in builds without the
/// `failpoints` feature, so release builds pay nothing for it.
#[cfg(feature = "failpoints")]
macro_rules! fault {
    ($name:literal) => {
        fail::fail_point!($name)
    };
    ($name:literal, $action:expr) => {
        fail::fail_point!($name, $action)
    };
}
#[cfg(not(feature = "failpoints"))]
macro_rules! fault {
    ($name:literal) => {};
    ($name:literal, $action:expr) => {};
}

/// Tells the crash simulation what reached the disk; nothing without the feature.
macro_rules! durable {
    ($call:ident($($arg:expr),*)) => {
        #[cfg(feature = "failpoints")]
        crate::durability::$call($($arg),*);
    };
}

mod checkpoint;
mod commit_log;
mod config;
mod consume_queue;
#[cfg(feature = "failpoints")]
#[doc(hidden)]
pub mod durability;
mod error;
#[cfg(feature = "failpoints")]
mod fault_config;
mod flush;
mod index;
pub mod raft_log;
mod read;
mod recovery;
mod reset;
mod retention;
mod segment;
pub mod slots;
mod store;
#[cfg(test)]
mod store_test;
mod wait;

pub use commit_log::{AppendedMessage, PutMessage};
pub use config::{FlushDiskType, StoreConfig};
pub use consume_queue::QueueEntry;
pub use error::{Error, Result};
pub use flush::Durable;
pub use read::{
    ArrivedMessage, GetMessageResult, GetMessageStatus, MessageFilter, QueryMessageResult,
};
pub use recovery::{QuarantinedRange, RepairReport};
pub use reset::PendingReset;
pub use store::{AppendResult, MessageStore, RetentionHold};
pub use wait::{lock as lock_waiting_with, WaitWith};

/// Configures the store's fault points from the environment, for tests that start a real
/// broker: `FAILPOINTS` (`name=action;...`, the `fail` crate's syntax) at start, and the file
/// `FAILPOINTS_FILE` names whenever it changes. Does nothing in builds without the
/// `failpoints` feature, which release builds never enable.
pub fn configure_faults_from_env() {
    #[cfg(feature = "failpoints")]
    fault_config::configure_from_env();
}
