//! The crate's one error type.

/// Result alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Kafka side (librdkafka) refused or failed.
    #[error("Kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),

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

    /// A message batch Rocketry would not take.
    #[error("encoding a batch: {0}")]
    Batch(#[from] message::Error),
}
