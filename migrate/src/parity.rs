//! Parity: do both sides hold the same records, window by window? This is the per-day count
//! comparison that teams run by hand during a migration, automated.
//!
//! Windows are cut by time on the Kafka side. For each boundary, librdkafka's
//! `offsets_for_times` gives the first offset of every partition at or after it. A window of a
//! partition is the offsets between two boundaries. Both sides are then read over those
//! offsets: Kafka from the partition, and Rocketry from the partition's queue, where each
//! message is placed by the source offset it carries (see [`crate::record`]).
//!
//! A window is clean when both sides counted the same records and their digests agree. The
//! digest runs over each record's offset, key and value, in order. A record missing on either
//! side, a repeat, a reordering or altered bytes all show.

use std::fmt;
use std::hash::{DefaultHasher, Hasher};
use std::time::{Duration, UNIX_EPOCH};

use futures::StreamExt;
use message::property;
use protocol::client::PullStatus;
use protocol::Client;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::{Message as _, Offset, TopicPartitionList};

use crate::record::{original_bytes, source_position};
use crate::source::{consumer, partition_count, Endpoints};
use crate::target::{Queue, Target};
use crate::{Error, Result};

/// How long a Kafka read waits for the next record of a window before taking the window as
/// ended: offsets of a window may end in a gap (compaction, transaction markers).
const KAFKA_IDLE: Duration = Duration::from_secs(10);

/// What to compare, and over which time.
#[derive(Debug, Clone)]
pub struct ParityConfig {
    pub endpoints: Endpoints,
    /// Start of the first window, milliseconds since the epoch.
    pub from_ms: i64,
    /// End of the last window (exclusive), milliseconds since the epoch.
    pub to_ms: i64,
    pub window: Duration,
}

/// What one side holds of one window of one partition.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Side {
    pub records: u64,
    pub digest: u64,
}

/// One window of one partition, on both sides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowParity {
    pub partition: i32,
    pub start_ms: i64,
    pub end_ms: i64,
    /// The source offsets the window spans, `[first, end)`.
    pub offsets: (i64, i64),
    pub kafka: Side,
    pub rocketry: Side,
}

impl WindowParity {
    pub fn is_clean(&self) -> bool {
        self.kafka == self.rocketry
    }
}

impl fmt::Display for WindowParity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "window [{}, {}) partition {} offsets [{}, {}): Kafka {} records, Rocketry {} records",
            rfc3339(self.start_ms),
            rfc3339(self.end_ms),
            self.partition,
            self.offsets.0,
            self.offsets.1,
            self.kafka.records,
            self.rocketry.records
        )?;
        match (self.is_clean(), self.kafka.records == self.rocketry.records) {
            (true, _) => write!(f, ", clean"),
            (false, true) => write!(f, ", MISMATCH: same count, different records"),
            (false, false) => write!(f, ", MISMATCH"),
        }
    }
}

/// `ms` (since the epoch) as an RFC 3339 time, to the millisecond.
pub fn rfc3339(ms: i64) -> String {
    let at = UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(at).to_string()
}

/// Every window of every partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParityReport {
    pub windows: Vec<WindowParity>,
}

impl ParityReport {
    pub fn is_clean(&self) -> bool {
        self.windows.iter().all(WindowParity::is_clean)
    }

    pub fn mismatches(&self) -> impl Iterator<Item = &WindowParity> {
        self.windows.iter().filter(|w| !w.is_clean())
    }
}

/// The window boundaries from `from_ms` to `to_ms`, `window` apart (the last may be shorter).
fn boundaries(from_ms: i64, to_ms: i64, window: Duration) -> Vec<i64> {
    let step = (window.as_millis() as i64).max(1);
    let mut at: Vec<i64> = (0..)
        .map(|n| from_ms + n * step)
        .take_while(|t| *t < to_ms)
        .collect();
    at.push(to_ms);
    at
}

/// Compares the two sides over the configured windows.
pub async fn parity(config: &ParityConfig) -> Result<ParityReport> {
    if config.to_ms <= config.from_ms {
        return Err(Error::Topology(format!(
            "the parity range ends ({}) before it starts ({})",
            rfc3339(config.to_ms),
            rfc3339(config.from_ms)
        )));
    }
    let endpoints = &config.endpoints;
    let topic = &endpoints.source_topic;
    let consumer = consumer(endpoints, &endpoints.group)?;
    let partitions = partition_count(&endpoints.kafka, topic)?;
    let target = Target::find(
        endpoints.first_namesrv(),
        &endpoints.target_topic,
        partitions,
    )
    .await?;
    let times = boundaries(config.from_ms, config.to_ms, config.window);
    let mut windows = Vec::new();
    for partition in 0..partitions as i32 {
        let offsets = kafka_offsets(&consumer, topic, partition, &times)?;
        let kafka = kafka_side(&consumer, topic, partition, &offsets).await?;
        let queue = target.queue(partition);
        let client = Client::connect(queue.broker_addr.as_str()).await?;
        let rocketry = rocketry_side(&target, &client, queue, partition, &offsets).await?;
        for w in 0..times.len() - 1 {
            windows.push(WindowParity {
                partition,
                start_ms: times[w],
                end_ms: times[w + 1],
                offsets: (offsets[w], offsets[w + 1]),
                kafka: kafka[w],
                rocketry: rocketry[w],
            });
        }
    }
    Ok(ParityReport { windows })
}

/// The first offset of `partition` at or after each of `times`; the partition's end for a
/// time past its last record. librdkafka blocks here, so it runs off the async workers.
fn kafka_offsets(
    consumer: &StreamConsumer,
    topic: &str,
    partition: i32,
    times: &[i64],
) -> Result<Vec<i64>> {
    tokio::task::block_in_place(|| {
        let (_, end) = consumer.fetch_watermarks(topic, partition, Duration::from_secs(30))?;
        times
            .iter()
            .map(|time| {
                let mut query = TopicPartitionList::new();
                query.add_partition_offset(topic, partition, Offset::Offset(*time))?;
                let found = consumer.offsets_for_times(query, Duration::from_secs(30))?;
                let element = found
                    .find_partition(topic, partition)
                    .ok_or_else(|| Error::Topology(format!("Kafka lost partition {partition}")))?;
                element.error()?;
                Ok(match element.offset() {
                    Offset::Offset(offset) => offset.min(end),
                    _ => end,
                })
            })
            .collect()
    })
}

/// Feeds one record into a window's digest, the same way for both sides.
fn feed(hasher: &mut DefaultHasher, offset: i64, key: &[u8], value: &[u8]) {
    // DefaultHasher's algorithm may change between Rust releases, but both sides are hashed
    // by this one process, which is all a comparison needs.
    hasher.write_i64(offset);
    hasher.write_usize(key.len());
    hasher.write(key);
    hasher.write_usize(value.len());
    hasher.write(value);
}

/// Counts and digests per window, as records are placed by source offset.
struct Tally<'a> {
    offsets: &'a [i64],
    sides: Vec<Side>,
    hashers: Vec<DefaultHasher>,
}

impl<'a> Tally<'a> {
    fn new(offsets: &'a [i64]) -> Self {
        let windows = offsets.len() - 1;
        Tally {
            offsets,
            sides: vec![Side::default(); windows],
            hashers: vec![DefaultHasher::new(); windows],
        }
    }

    fn first(&self) -> i64 {
        self.offsets[0]
    }

    fn end(&self) -> i64 {
        self.offsets[self.offsets.len() - 1]
    }

    /// Counts a record of `offset`; one outside every window is not counted.
    fn add(&mut self, offset: i64, key: &[u8], value: &[u8]) {
        if offset < self.first() || offset >= self.end() {
            return;
        }
        let window = self.offsets.partition_point(|start| *start <= offset) - 1;
        self.sides[window].records += 1;
        feed(&mut self.hashers[window], offset, key, value);
    }

    fn finish(mut self) -> Vec<Side> {
        for (side, hasher) in self.sides.iter_mut().zip(&self.hashers) {
            side.digest = hasher.finish();
        }
        self.sides
    }
}

async fn kafka_side(
    consumer: &StreamConsumer,
    topic: &str,
    partition: i32,
    offsets: &[i64],
) -> Result<Vec<Side>> {
    let mut tally = Tally::new(offsets);
    if tally.first() < tally.end() {
        let mut assignment = TopicPartitionList::new();
        assignment.add_partition_offset(topic, partition, Offset::Offset(tally.first()))?;
        consumer.assign(&assignment)?;
        let mut stream = consumer.stream();
        while let Ok(Some(record)) = tokio::time::timeout(KAFKA_IDLE, stream.next()).await {
            let record = record?;
            if record.offset() >= tally.end() {
                break;
            }
            let (key, value) = (record.key(), record.payload());
            tally.add(
                record.offset(),
                key.unwrap_or_default(),
                value.unwrap_or_default(),
            );
            if record.offset() + 1 >= tally.end() {
                break;
            }
        }
        consumer.unassign()?;
    }
    Ok(tally.finish())
}

async fn rocketry_side(
    target: &Target,
    client: &Client,
    queue: &Queue,
    partition: i32,
    offsets: &[i64],
) -> Result<Vec<Side>> {
    let mut tally = Tally::new(offsets);
    let mut at = target
        .first_at_or_after(client, queue, tally.first())
        .await?;
    'pulls: loop {
        let pulled = target.pull(client, queue, at, 32).await?;
        if pulled.status != PullStatus::Found {
            break;
        }
        for message in pulled.messages()? {
            let properties = message.properties_text()?;
            let source = source_position(properties)
                .filter(|source| source.partition == partition)
                .ok_or_else(|| {
                    Error::Topology(format!(
                        "{} queue {} offset {} was not copied from partition {partition}",
                        target.topic,
                        queue.queue_id,
                        message.queue_offset()
                    ))
                })?;
            if source.offset >= tally.end() {
                break 'pulls;
            }
            let key = original_bytes(properties, property::KEYS);
            tally.add(source.offset, &key, message.body());
        }
        at = pulled.header.next_begin_offset;
    }
    Ok(tally.finish())
}

#[cfg(test)]
#[path = "parity_test.rs"]
mod parity_test;
