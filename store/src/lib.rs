//! Rocketry's message store: RocketMQ's CommitLog, ConsumeQueues, key index, checkpoint and
//! crash recovery, with the same on-disk layout under `storePathRootDir`:
//! `commitlog/`, `consumequeue/<topic>/<queueId>/`, `index/`, `checkpoint`, `abort`, `lock`.
//!
//! No networking and no async runtime: [`MessageStore::append`] returns at once with the
//! offsets and a [`Durable`] the caller awaits (or blocks on) for SYNC_FLUSH durability.

mod checkpoint;
mod commit_log;
mod config;
mod consume_queue;
mod error;
mod flush;
mod index;
mod read;
mod recovery;
mod retention;
mod segment;
mod store;
#[cfg(test)]
mod store_test;

pub use commit_log::{AppendedMessage, PutMessage};
pub use config::{FlushDiskType, StoreConfig};
pub use consume_queue::QueueEntry;
pub use error::{Error, Result};
pub use flush::Durable;
pub use read::{
    ArrivedMessage, GetMessageResult, GetMessageStatus, MessageFilter, QueryMessageResult,
};
pub use store::{AppendResult, MessageStore};

#[doc(hidden)]
pub mod bench_support {
    //! Raw flush primitives, exposed only so the benchmark can measure them on this disk.
    pub use crate::retention::disk_used_percent;
}
