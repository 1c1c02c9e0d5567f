//! The Kafka side: its consumers and what they learn about a topic.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::KafkaError;
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

/// A librdkafka client config holding `kafka`'s settings.
pub fn client_config(kafka: &HashMap<String, String>) -> ClientConfig {
    let mut client = ClientConfig::new();
    for (name, value) in kafka {
        client.set(name, value);
    }
    client
}

/// A consumer of `group` that never commits on its own; `assign` decides what it reads.
pub fn consumer(endpoints: &Endpoints, group: &str) -> Result<StreamConsumer> {
    Ok(client_config(&endpoints.kafka)
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
/// librdkafka queued (errors and logs wait until polled). A refusal that retrying cannot fix
/// (see [`is_refusal`]) ends the wait at once with librdkafka's account of it; other errors
/// are retried, and named when the wait runs out, rather than a bare transport failure.
/// librdkafka blocks here, so it runs off the async workers.
fn metadata(kafka: &HashMap<String, String>, topic: Option<&str>) -> Result<Metadata> {
    const ASK_EVERY: Duration = Duration::from_secs(1);
    // No group: the probe's poll serves librdkafka's main queue, where errors and logs wait.
    let probe: BaseConsumer<KeptErrors> = client_config(kafka)
        .remove("group.id")
        .create_with_context(KeptErrors::default())?;
    let deadline = Instant::now() + METADATA_TIMEOUT;
    tokio::task::block_in_place(|| loop {
        let asked = Instant::now();
        let error = match probe.fetch_metadata(topic, ASK_EVERY) {
            Ok(metadata) => return Ok(metadata),
            Err(error) => error,
        };
        // Not a zero timeout: with zero, a poll returns after the first log line it serves.
        while probe.poll(Duration::from_millis(10)).is_some() {}
        let kept = probe.context().kept();
        if let Some(reason) = kept.refusal {
            return Err(Error::KafkaRefused(reason));
        }
        if Instant::now() > deadline {
            return Err(match kept.last {
                Some(reason) => Error::KafkaUnreachable {
                    source: error,
                    reason,
                },
                None => error.into(),
            });
        }
        std::thread::sleep(ASK_EVERY.saturating_sub(asked.elapsed()));
    })
}

/// Whether librdkafka's error is a refusal that retrying cannot fix: the broker said the login
/// failed, or the broker's certificate does not verify. The same codes also cover passing
/// troubles (a SASL handshake cut by a broker's restart, a token endpoint down, a socket error
/// in the middle of a TLS handshake), which are retried.
fn is_refusal(code: RDKafkaErrorCode, reason: &str) -> bool {
    match code {
        RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SaslAuthenticationFailed => {
            reason.contains("Authentication failed")
        }
        RDKafkaErrorCode::SSL => reason.contains("certificate verify failed"),
        _ => false,
    }
}

/// librdkafka's error events, logged as usual, and kept.
#[derive(Default)]
struct KeptErrors(Mutex<Kept>);

#[derive(Default, Clone)]
struct Kept {
    /// The last reason.
    last: Option<String>,
    /// The first refusal's reason (see [`is_refusal`]).
    refusal: Option<String>,
}

impl KeptErrors {
    fn kept(&self) -> Kept {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl ClientContext for KeptErrors {
    fn error(&self, error: KafkaError, reason: &str) {
        let code = error.rdkafka_error_code();
        {
            let mut kept = self.0.lock().unwrap_or_else(|e| e.into_inner());
            // "1/1 brokers are down" follows each broker's own reason, which says more.
            if code != Some(RDKafkaErrorCode::AllBrokersDown) {
                kept.last = Some(reason.to_string());
            }
            if kept.refusal.is_none() && code.is_some_and(|code| is_refusal(code, reason)) {
                kept.refusal = Some(reason.to_string());
            }
        }
        DefaultClientContext.error(error, reason);
    }
}

impl ConsumerContext for KeptErrors {}

#[cfg(test)]
#[path = "source_test.rs"]
mod source_test;
