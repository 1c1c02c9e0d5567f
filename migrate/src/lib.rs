//! Moving from Kafka to Rocketry (issue 19): the record mapping both sides share; the mirror,
//! which copies a Kafka topic into a Rocketry topic and resumes after any crash from what
//! Rocketry already holds, so an acknowledged copy is never written twice; dual write, the
//! library applications write through, which spools what a side cannot take; parity, which
//! compares the two sides window by window; and the cutover (and rollback) of consumer groups,
//! which translates their offsets exactly through the source offsets the copy carries.

pub mod dual_write;
mod error;
pub mod mirror;
pub mod offsets;
pub mod parity;
pub mod record;
mod source;
mod spool;
mod target;

pub use dual_write::{DualWriteConfig, DualWriter, Record, Sent};
pub use error::{Error, Result};
pub use mirror::{mirror, MirrorConfig};
pub use offsets::{cutover, rollback, GroupMove, Translation};
pub use parity::{parity, rfc3339, ParityConfig, ParityReport, WindowParity};
pub use record::{SourcePosition, SourceRecord};
pub use source::{topic_names, Endpoints};
pub use target::Target;

/// Milliseconds since the epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
