//! The crate's one error type.

/// Result alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Kafka side (librdkafka) refused or failed.
    #[error("Kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),

    /// Kafka refused this client in a way retrying cannot fix (a login, a certificate);
    /// librdkafka's account of it.
    #[error("Kafka refused the connection: {0}")]
    KafkaRefused(String),

    /// Kafka did not answer within the wait; librdkafka's last account of why.
    #[error("Kafka: {source} (librdkafka last reported: {reason})")]
    KafkaUnreachable {
        source: rdkafka::error::KafkaError,
        reason: String,
    },

    /// The Rocketry side (name server or broker) refused or failed.
    #[error("Rocketry: {0}")]
    Rocketry(#[from] protocol::Error),

    /// A record that has no faithful Rocketry form; the mirror stops on it rather than
    /// dropping or altering it.
    #[error("the record at partition {partition}, offset {offset} cannot be mapped: {reason}")]
    Mapping {
        partition: i32,
        offset: i64,
        reason: String,
    },

    /// The topics on the two sides do not fit the mapping.
    #[error("{0}")]
    Topology(String),

    /// A metric that could not be registered (a name taken twice in one registry).
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),

    /// The dual writer's spool could not be read or written.
    #[error("spool {}: {source}", path.display())]
    Spool {
        path: std::path::PathBuf,
        source: std::io::Error,
    },

    /// The dual writer's first copy for a partition waits until the mirror has copied every
    /// record before it, so that each queue stays in Kafka's order.
    #[error("partition {partition}: the mirror has copied up to offset {copied:?}, and the dual writer's first copy is offset {first}; the copies wait in the spool until the mirror has copied what comes before")]
    MirrorBehind {
        partition: i32,
        copied: Option<i64>,
        first: i64,
    },

    /// The spool is at its bound: the record was not taken, and the caller must hold it
    /// (or slow down) until the spool drains.
    #[error("the spool in {} is full ({max_bytes} bytes); the record was not written", dir.display())]
    SpoolFull {
        dir: std::path::PathBuf,
        max_bytes: u64,
    },

    /// A spool entry that does not decode (written by another version).
    #[error("a spool entry does not decode: {0}")]
    SpoolEntry(String),

    /// A message batch Rocketry would not take.
    #[error("encoding a batch: {0}")]
    Batch(#[from] message::Error),
}
