//! Moving from Kafka to Rocketry (issue 19): the record mapping both sides share, and the
//! mirror that copies a Kafka topic into a Rocketry topic, resuming after any crash from what
//! Rocketry already holds, so an acknowledged copy is never written twice.

mod error;
pub mod mirror;
pub mod record;
mod target;

pub use error::{Error, Result};
pub use mirror::{mirror, MirrorConfig};
pub use record::{SourcePosition, SourceRecord};
pub use target::Target;
