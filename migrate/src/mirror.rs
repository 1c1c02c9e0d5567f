//! The mirror: copies one Kafka topic into one Rocketry topic, partition `p` to queue `p`,
//! in order, in batches.
//!
//! It keeps no state of its own. Each partition's copy resumes after the source offset that
//! the last message of its queue carries (see [`crate::record`]), which is exactly what
//! Rocketry acknowledged, so a mirror killed at any point skips nothing and, barring a broker
//! that holds a write past the request timeout, repeats nothing (docs/migration.md,
//! "Restarts").
//! It also commits its positions to a Kafka consumer group, but only so that Kafka's own
//! tools show its lag: those commits are never read back.
//!
//! A write whose outcome is unknown (a timeout, a dropped connection, a killed process) is
//! settled the same way: the partition waits out the send timeout, at start and after every
//! error, so that the old request has been stored or dropped, then reads the queue's tail on
//! a fresh connection and goes on from there.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::{Message as _, Offset, TopicPartitionList};
use tracing::{info, warn};

use crate::record::{from_kafka, is_dual_written};
use crate::source::{consumer, partition_count, Endpoints};
use crate::target::{Queue, Target};
use crate::{Error, Result};

/// What to copy, from where to where.
#[derive(Debug, Clone)]
pub struct MirrorConfig {
    pub endpoints: Endpoints,
    /// Where the mirror's metrics go: `rocketry_mirror_copied_records_total` and
    /// `rocketry_mirror_lag_records`, per source partition.
    pub registry: prometheus::Registry,
    /// Most records in one Rocketry batch.
    pub batch: usize,
    /// Most bytes of values in one batch (Rocketry refuses a batch over 4 MiB).
    pub batch_bytes: usize,
}

/// The mirror's metrics, per source partition.
struct MirrorMetrics {
    /// `rocketry_mirror_copied_records_total`: records this process copied.
    copied: IntCounterVec,
    /// `rocketry_mirror_lag_records`: records in Kafka not yet copied, from the partition's
    /// high watermark as of the last fetch.
    lag: IntGaugeVec,
}

impl MirrorMetrics {
    fn register(registry: &prometheus::Registry) -> Result<MirrorMetrics> {
        let labels = &["source_topic", "partition"];
        let copied = IntCounterVec::new(
            Opts::new(
                "rocketry_mirror_copied_records_total",
                "Kafka records this mirror process copied into Rocketry",
            ),
            labels,
        )?;
        let lag = IntGaugeVec::new(
            Opts::new(
                "rocketry_mirror_lag_records",
                "Kafka records not yet copied into Rocketry (high watermark minus the next offset to copy)",
            ),
            labels,
        )?;
        registry.register(Box::new(copied.clone()))?;
        registry.register(Box::new(lag.clone()))?;
        Ok(MirrorMetrics { copied, lag })
    }
}

/// Runs the mirror until a partition meets an error that retrying cannot fix.
pub async fn mirror(config: MirrorConfig) -> Result<()> {
    let config = Arc::new(config);
    let endpoints = &config.endpoints;
    let partitions = partition_count(&endpoints.kafka, &endpoints.source_topic)?;
    let target = Target::open(
        endpoints.first_namesrv(),
        &endpoints.target_topic,
        partitions,
    );
    let target = Arc::new(target.await?);
    info!(
        source = %endpoints.source_topic,
        target = %endpoints.target_topic,
        partitions,
        "mirroring"
    );
    let metrics = Arc::new(MirrorMetrics::register(&config.registry)?);
    let mut tasks = tokio::task::JoinSet::new();
    for partition in 0..partitions as i32 {
        let (config, target, metrics) = (config.clone(), target.clone(), metrics.clone());
        tasks.spawn(async move { copy_partition(&config, &target, &metrics, partition).await });
    }
    // A partition stops only on an error that retrying cannot fix; the rest stop with it.
    match tasks.join_next().await {
        Some(Ok(result)) => result,
        Some(Err(panic)) => std::panic::resume_unwind(panic.into_panic()),
        None => Ok(()),
    }
}

/// Copies one partition forever; returns only errors that retrying cannot fix.
async fn copy_partition(
    config: &MirrorConfig,
    target: &Target,
    metrics: &MirrorMetrics,
    partition: i32,
) -> Result<()> {
    let queue = target.queue(partition).clone();
    let consumer = consumer(&config.endpoints, &config.endpoints.group)?;
    let label = partition.to_string();
    let labels = [config.endpoints.source_topic.as_str(), label.as_str()];
    let counters = (
        metrics.copied.with_label_values(&labels),
        metrics.lag.with_label_values(&labels),
    );
    // A mirror process killed a moment ago may have a batch in flight; past the request
    // timeout it has been stored or dropped, so the tail read first is final too.
    tokio::time::sleep(protocol::client::DEFAULT_TIMEOUT).await;
    loop {
        let copy = copy_from_tail(config, target, &queue, &consumer, partition, &counters);
        let Err(error) = copy.await;
        if matches!(
            error,
            Error::Mapping { .. } | Error::Topology(_) | Error::Batch(_) | Error::Metrics(_)
        ) {
            return Err(error);
        }
        warn!(partition, %error, "copy interrupted; resuming from the target's tail");
        // Past the client's request timeout, a write sent before the error has been stored
        // or dropped by the broker, so the tail read next is final.
        tokio::time::sleep(protocol::client::DEFAULT_TIMEOUT).await;
    }
}

/// Reads where the queue's copy ends, then copies from the next source record on, until an
/// error stops it.
async fn copy_from_tail(
    config: &MirrorConfig,
    target: &Target,
    queue: &Queue,
    consumer: &StreamConsumer,
    partition: i32,
    (copied_total, lag): &(IntCounter, IntGauge),
) -> Result<std::convert::Infallible> {
    let client = protocol::Client::connect(queue.broker_addr.as_str()).await?;
    let next = match target.last_position(&client, queue).await? {
        Some(last) if last.partition != partition => {
            return Err(Error::Topology(format!(
                "queue {} of {} holds partition {}'s records, not partition {partition}'s",
                queue.queue_id, target.topic, last.partition
            )))
        }
        Some(last) => Offset::Offset(last.offset + 1),
        None => Offset::Beginning,
    };
    info!(partition, ?next, "copying");
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(&config.endpoints.source_topic, partition, next)?;
    consumer.assign(&assignment)?;

    let mut stream = consumer.stream();
    let mut next_to_copy = match next {
        Offset::Offset(offset) => Some(offset),
        _ => None,
    };
    let mut lag_checked = Instant::now();
    let mut copied = 0u64;
    let mut reported = Instant::now();
    let mut handed_off = false;
    loop {
        let mut batch = Vec::with_capacity(config.batch);
        let mut bytes = 0;
        let mut last_offset = -1;
        // The first record is awaited; the batch then takes what has already arrived. An
        // idle partition still has its lag measured, so it reads 0 once caught up.
        let mut next_record = match tokio::time::timeout(LAG_EVERY, stream.next()).await {
            Ok(record) => record,
            Err(_) => {
                let topic = &config.endpoints.source_topic;
                refresh_lag(consumer, topic, partition, next_to_copy, lag);
                lag_checked = Instant::now();
                continue;
            }
        };
        while let Some(record) = next_record {
            let record = record?;
            last_offset = record.offset();
            if is_dual_written(&record) {
                if !handed_off {
                    info!(
                        partition,
                        offset = last_offset,
                        "from here the dual writer copies its own records"
                    );
                    handed_off = true;
                }
            } else {
                bytes += record.payload_len();
                batch.push(from_kafka(&record, &target.topic)?);
                if batch.len() >= config.batch || bytes >= config.batch_bytes {
                    break;
                }
            }
            next_record = stream.next().now_or_never().flatten();
        }
        if batch.is_empty() {
            if last_offset >= 0 {
                next_to_copy = Some(last_offset + 1);
            }
            continue;
        }
        target.send(&client, queue, &batch).await?;
        copied += batch.len() as u64;
        copied_total.inc_by(batch.len() as u64);
        next_to_copy = Some(last_offset + 1);
        if lag_checked.elapsed() >= LAG_EVERY {
            refresh_lag(
                consumer,
                &config.endpoints.source_topic,
                partition,
                next_to_copy,
                lag,
            );
            lag_checked = Instant::now();
        }
        let mut position = TopicPartitionList::new();
        position.add_partition_offset(
            &config.endpoints.source_topic,
            partition,
            Offset::Offset(last_offset + 1),
        )?;
        if let Err(error) = consumer.commit(&position, CommitMode::Async) {
            warn!(partition, %error, "committing the mirror's position to Kafka (for lag tooling only)");
        }
        if reported.elapsed() >= Duration::from_secs(10) {
            info!(partition, copied, offset = last_offset, "copied");
            reported = Instant::now();
        }
    }
}

/// How often a partition's lag is measured (each time one request to Kafka).
const LAG_EVERY: Duration = Duration::from_secs(1);

/// Sets `lag` from the partition's high watermark and the next offset to copy (the low
/// watermark before the first copy). A failed request leaves the last value.
fn refresh_lag(
    consumer: &StreamConsumer,
    topic: &str,
    partition: i32,
    next_to_copy: Option<i64>,
    lag: &IntGauge,
) {
    let timeout = Duration::from_secs(5);
    let watermarks =
        tokio::task::block_in_place(|| consumer.fetch_watermarks(topic, partition, timeout));
    if let Ok((low, high)) = watermarks {
        lag.set((high - next_to_copy.unwrap_or(low)).max(0));
    }
}
