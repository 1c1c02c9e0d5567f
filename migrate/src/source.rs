//! The Kafka side: its consumers and what they learn about a topic.

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::client::{Client as KafkaClient, ClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};

use crate::{Error, Result};

/// The two ends of a migration: a Kafka topic and the Rocketry topic it maps to.
#[derive(Debug, Clone)]
pub struct Endpoints {
    /// librdkafka settings: `bootstrap.servers` at least; security settings go here too.
    pub kafka: HashMap<String, String>,
    /// The Kafka consumer group the migration's consumers commit under (for lag tooling).
    pub group: String,
    pub source_topic: String,
    /// The Rocketry name servers, `host:port;host:port`.
    pub namesrv: String,
    pub target_topic: String,
}

impl Endpoints {
    /// The first name server of the list (the protocol client talks to one at a time).
    pub fn first_namesrv(&self) -> &str {
        first_namesrv(&self.namesrv)
    }
}

/// The first name server of a `host:port;host:port` list.
pub fn first_namesrv(list: &str) -> &str {
    list.split(';')
        .map(str::trim)
        .find(|a| !a.is_empty())
        .unwrap_or(list)
}

/// A consumer of `group` that never commits on its own; `assign` decides what it reads.
pub fn consumer(endpoints: &Endpoints, group: &str) -> Result<StreamConsumer> {
    let mut client = ClientConfig::new();
    for (name, value) in &endpoints.kafka {
        client.set(name, value);
    }
    Ok(client
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .create()?)
}

/// How many partitions the source topic has, as any of our Kafka clients (`consumer.client()`,
/// `producer.client()`) learns it; an error when it has none (or does not exist). librdkafka
/// blocks here, so it runs off the async workers.
pub fn partition_count<C: ClientContext>(client: &KafkaClient<C>, topic: &str) -> Result<usize> {
    let metadata = tokio::task::block_in_place(|| {
        client.fetch_metadata(Some(topic), Duration::from_secs(30))
    })?;
    match metadata.topics().first().map(|t| t.partitions().len()) {
        Some(n) if n > 0 => Ok(n),
        _ => Err(Error::Topology(format!(
            "the Kafka topic {topic} has no partitions (does it exist?)"
        ))),
    }
}

/// The names of every topic of the Kafka cluster `kafka` (librdkafka settings) reaches.
/// librdkafka blocks here, so it runs off the async workers.
pub fn topic_names(kafka: &HashMap<String, String>) -> Result<Vec<String>> {
    let mut client = ClientConfig::new();
    for (name, value) in kafka {
        client.set(name, value);
    }
    let consumer: BaseConsumer = client.create()?;
    let metadata =
        tokio::task::block_in_place(|| consumer.fetch_metadata(None, Duration::from_secs(30)))?;
    Ok(metadata
        .topics()
        .iter()
        .map(|topic| topic.name().to_string())
        .collect())
}
