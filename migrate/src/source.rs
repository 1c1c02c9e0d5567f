//! The Kafka side: its consumers and what they learn about a topic.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::metadata::Metadata;
use rdkafka::types::RDKafkaErrorCode;

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

/// How long a metadata request may go unanswered, in all, before the Kafka side counts as
/// down.
const METADATA_TIMEOUT: Duration = Duration::from_secs(30);

/// How many partitions `topic` has; an error when it has none (or does not exist).
pub fn partition_count(kafka: &HashMap<String, String>, topic: &str) -> Result<usize> {
    let metadata = metadata(kafka, Some(topic))?;
    match metadata.topics().first().map(|t| t.partitions().len()) {
        Some(n) if n > 0 => Ok(n),
        _ => Err(Error::Topology(format!(
            "the Kafka topic {topic} has no partitions (does it exist?)"
        ))),
    }
}

/// The names of every topic of the Kafka cluster `kafka` (librdkafka settings) reaches.
pub fn topic_names(kafka: &HashMap<String, String>) -> Result<Vec<String>> {
    Ok(metadata(kafka, None)?
        .topics()
        .iter()
        .map(|topic| topic.name().to_string())
        .collect())
}

/// Fetches metadata (of `topic`, or of every topic) with a probe client of its own, asking
/// again each second for up to [`METADATA_TIMEOUT`]. Between asks the probe serves what
/// librdkafka queued (it queues errors and logs until polled), so that a refusal that retrying
/// cannot fix (a wrong password, a certificate that does not verify) ends the wait at once
/// with librdkafka's own account of it, rather than after the timeout as a transport failure.
/// librdkafka blocks here, so it runs off the async workers.
fn metadata(kafka: &HashMap<String, String>, topic: Option<&str>) -> Result<Metadata> {
    let mut client = ClientConfig::new();
    for (name, value) in kafka {
        client.set(name, value);
    }
    // No group: the probe's poll serves librdkafka's main queue, where errors and logs wait.
    client.remove("group.id");
    let probe: BaseConsumer<FailureLog> = client.create_with_context(FailureLog::default())?;
    let deadline = Instant::now() + METADATA_TIMEOUT;
    tokio::task::block_in_place(|| loop {
        let error = match probe.fetch_metadata(topic, Duration::from_secs(1)) {
            Ok(metadata) => return Ok(metadata),
            Err(error) => error,
        };
        while let Some(event) = probe.poll(Duration::ZERO) {
            let refused = event
                .err()
                .and_then(|e| e.rdkafka_error_code())
                .filter(|code| {
                    matches!(
                        code,
                        RDKafkaErrorCode::Authentication
                            | RDKafkaErrorCode::SaslAuthenticationFailed
                            | RDKafkaErrorCode::SSL
                    )
                });
            if let Some(code) = refused {
                let reason = probe.context().last().unwrap_or_else(|| code.to_string());
                return Err(Error::KafkaRefused(reason));
            }
        }
        if Instant::now() > deadline {
            return Err(error.into());
        }
    })
}

/// librdkafka's logs, passed on as usual, with the last error-level line kept: the one that
/// names why a connection failed.
#[derive(Default)]
struct FailureLog {
    last: std::sync::Mutex<Option<String>>,
}

impl FailureLog {
    fn last(&self) -> Option<String> {
        self.last.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl ClientContext for FailureLog {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        DefaultClientContext.log(level, fac, log_message);
        if (level as i32) <= RDKafkaLogLevel::Error as i32 {
            *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some(log_message.to_string());
        }
    }
}

impl ConsumerContext for FailureLog {}
