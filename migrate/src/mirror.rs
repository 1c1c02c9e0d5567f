//! The mirror: copies one Kafka topic into one Rocketry topic, partition `p` to queue `p`,
//! in order, in batches.
//!
//! It keeps no state of its own. Each partition's copy resumes after the source offset that
//! the last message of its queue carries (see [`crate::record`]), which is exactly what
//! Rocketry acknowledged, so a mirror killed at any point neither skips nor repeats a record.
//! It also commits its positions to a Kafka consumer group, but only so that Kafka's own
//! tools show its lag: those commits are never read back.
//!
//! A write whose outcome is unknown (a timeout, a dropped connection) is settled the same
//! way: the partition waits out the send timeout on a fresh connection, so that the old
//! request has been stored or dropped, then re-reads the queue's tail and goes on from there.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::{Message as _, Offset, TopicPartitionList};
use tracing::{info, warn};

use crate::record::{to_message, SourceRecord};
use crate::source::{consumer, partition_count, Endpoints};
use crate::target::{Queue, Target};
use crate::{Error, Result};

/// What to copy, from where to where.
#[derive(Debug, Clone)]
pub struct MirrorConfig {
    pub endpoints: Endpoints,
    /// Most records in one Rocketry batch.
    pub batch: usize,
    /// Most bytes of values in one batch (Rocketry refuses a batch over 4 MiB).
    pub batch_bytes: usize,
}

/// Runs the mirror until a partition meets an error that retrying cannot fix.
pub async fn mirror(config: MirrorConfig) -> Result<()> {
    let config = Arc::new(config);
    let endpoints = &config.endpoints;
    let partitions = partition_count(
        &consumer(endpoints, &endpoints.group)?,
        &endpoints.source_topic,
    )?;
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
    let mut tasks = tokio::task::JoinSet::new();
    for partition in 0..partitions as i32 {
        let (config, target) = (config.clone(), target.clone());
        tasks.spawn(async move { copy_partition(&config, &target, partition).await });
    }
    // A partition stops only on an error that retrying cannot fix; the rest stop with it.
    match tasks.join_next().await {
        Some(Ok(result)) => result,
        Some(Err(panic)) => std::panic::resume_unwind(panic.into_panic()),
        None => Ok(()),
    }
}

/// Copies one partition forever; returns only errors that retrying cannot fix.
async fn copy_partition(config: &MirrorConfig, target: &Target, partition: i32) -> Result<()> {
    let queue = target.queue(partition).clone();
    let consumer = consumer(&config.endpoints, &config.endpoints.group)?;
    loop {
        let Err(error) = copy_from_tail(config, target, &queue, &consumer, partition).await;
        if matches!(
            error,
            Error::Mapping { .. } | Error::Topology(_) | Error::Batch(_)
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
    let mut copied = 0u64;
    let mut reported = Instant::now();
    loop {
        let mut batch = Vec::with_capacity(config.batch);
        let mut bytes = 0;
        let mut last_offset = -1;
        // The first record is awaited; the batch then takes what has already arrived.
        let mut next_record = stream.next().await;
        while let Some(record) = next_record {
            let record = record?;
            bytes += record.payload_len();
            last_offset = record.offset();
            batch.push(map(&record, &target.topic)?);
            if batch.len() >= config.batch || bytes >= config.batch_bytes {
                break;
            }
            next_record = stream.next().now_or_never().flatten();
        }
        if batch.is_empty() {
            continue;
        }
        target.send(&client, queue, &batch).await?;
        copied += batch.len() as u64;
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

fn map(record: &BorrowedMessage<'_>, topic: &str) -> Result<message::Message> {
    let headers: Vec<(&str, Option<&[u8]>)> = record
        .headers()
        .map(|headers| headers.iter().map(|h| (h.key, h.value)).collect())
        .unwrap_or_default();
    to_message(
        &SourceRecord {
            topic: record.topic(),
            partition: record.partition(),
            offset: record.offset(),
            timestamp: record.timestamp().to_millis(),
            key: record.key(),
            value: record.payload(),
            headers: &headers,
        },
        topic,
    )
}
