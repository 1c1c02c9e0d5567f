//! Cutover and rollback: moving a consumer group's position between the two sides.
//!
//! A Kafka group's committed offset of partition `p` is the next record it would read. Its
//! Rocketry position is the first message of queue `p` copied from that offset or a later
//! one, found through the `KAFKA_OFFSET` each mirrored message carries, so the translation is
//! exact. A cutover first waits for the mirror to copy up to the group's position, since until
//! then no message stands there. Rollback translates the other way; a Rocketry position at
//! the queue's end maps to the record after the last one copied.
//!
//! Both directions refuse a group with live consumers on either side: a running consumer
//! would overwrite the translated offsets with its own.

use std::fmt;
use std::time::Duration;

use protocol::header::{QueryConsumerOffsetRequestHeader, UpdateConsumerOffsetRequestHeader};
use protocol::Client;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::{Message as _, Offset, TopicPartitionList};

use crate::source::{consumer, partition_count, Endpoints};
use crate::target::{Queue, Target};
use crate::{Error, Result};

/// A consumer group to move, by its name on each side.
#[derive(Debug, Clone)]
pub struct GroupMove {
    pub endpoints: Endpoints,
    pub kafka_group: String,
    pub rocketry_group: String,
    /// How long a cutover waits for the mirror to copy up to the group's position.
    pub mirror_wait: Duration,
}

/// Where one partition's consumer stands on each side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Translation {
    pub partition: i32,
    /// The next Kafka offset to read.
    pub kafka_offset: i64,
    /// The next queue offset to read in the partition's Rocketry queue.
    pub queue_offset: i64,
}

impl fmt::Display for Translation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "partition {}: Kafka offset {} = queue offset {}",
            self.partition, self.kafka_offset, self.queue_offset
        )
    }
}

/// The two sides of a move, connected.
struct Sides {
    kafka: StreamConsumer,
    target: Target,
    partitions: usize,
}

async fn connect(group: &GroupMove) -> Result<Sides> {
    let endpoints = &group.endpoints;
    let kafka = consumer(endpoints, &group.kafka_group)?;
    let partitions = partition_count(&endpoints.kafka, &endpoints.source_topic)?;
    let target = Target::find(
        endpoints.first_namesrv(),
        &endpoints.target_topic,
        partitions,
    )
    .await?;
    let kafka_members = tokio::task::block_in_place(|| {
        kafka.fetch_group_list(Some(&group.kafka_group), Duration::from_secs(30))
    })?
    .groups()
    .iter()
    .map(|g| g.members().len())
    .sum::<usize>();
    if kafka_members > 0 {
        return Err(Error::Topology(format!(
            "the Kafka group {} has {kafka_members} live members; stop them first",
            group.kafka_group
        )));
    }
    for queue in &target.queues {
        let client = Client::connect(queue.broker_addr.as_str()).await?;
        // An error here means the broker knows no consumer of the group.
        let live = client
            .get_consumer_list_by_group(&group.rocketry_group)
            .await;
        if let Some(live) = live.ok().filter(|ids| !ids.is_empty()) {
            return Err(Error::Topology(format!(
                "the Rocketry group {} has {} live consumers on {}; stop them first",
                group.rocketry_group,
                live.len(),
                queue.broker_name
            )));
        }
    }
    Ok(Sides {
        kafka,
        target,
        partitions,
    })
}

/// Sets the Rocketry group's offsets from the Kafka group's committed ones.
pub async fn cutover(group: &GroupMove) -> Result<Vec<Translation>> {
    let sides = connect(group).await?;
    let topic = &group.endpoints.source_topic;
    let mut wanted = TopicPartitionList::new();
    for partition in 0..sides.partitions as i32 {
        wanted.add_partition(topic, partition);
    }
    let committed = tokio::task::block_in_place(|| {
        sides
            .kafka
            .committed_offsets(wanted, Duration::from_secs(30))
    })?;
    let mut moves = Vec::new();
    for partition in 0..sides.partitions as i32 {
        let kafka_offset = match committed
            .find_partition(topic, partition)
            .map(|e| e.offset())
        {
            Some(Offset::Offset(offset)) => offset,
            _ => {
                return Err(Error::Topology(format!(
                    "the Kafka group {} has no committed offset on partition {partition}: a \
                     consumer of it would start where auto.offset.reset says, which cannot be \
                     translated; commit one first",
                    group.kafka_group
                )))
            }
        };
        let queue = sides.target.queue(partition);
        let client = Client::connect(queue.broker_addr.as_str()).await?;
        let copied = CopiedUpTo {
            topic,
            partition,
            kafka_offset,
        };
        copied
            .wait(&sides, &client, queue, group.mirror_wait)
            .await?;
        let queue_offset = sides
            .target
            .first_at_or_after(&client, queue, kafka_offset)
            .await?;
        client
            .update_consumer_offset(&UpdateConsumerOffsetRequestHeader {
                consumer_group: group.rocketry_group.clone(),
                topic: sides.target.topic.clone(),
                queue_id: queue.queue_id,
                commit_offset: queue_offset,
                broker_name: Some(queue.broker_name.clone()),
            })
            .await?;
        moves.push(Translation {
            partition,
            kafka_offset,
            queue_offset,
        });
    }
    Ok(moves)
}

/// A partition's Kafka position that the mirror must have copied up to before it can be
/// translated: until then the queue has no message for it to point at.
struct CopiedUpTo<'a> {
    topic: &'a str,
    partition: i32,
    kafka_offset: i64,
}

impl CopiedUpTo<'_> {
    /// Waits up to `limit` for the mirror to copy every record before `kafka_offset`.
    async fn wait(
        &self,
        sides: &Sides,
        client: &Client,
        queue: &Queue,
        limit: Duration,
    ) -> Result<()> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let last = sides.target.last_position(client, queue).await?;
            if self.reached(sides, last.map(|l| l.offset)).await? {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Topology(format!(
                    "the mirror has copied partition {} up to offset {}, and the group reads \
                     from {} on: run the mirror until it catches up, then retry",
                    self.partition,
                    last.map_or("none".to_string(), |l| l.offset.to_string()),
                    self.kafka_offset
                )));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Whether no Kafka record before `kafka_offset` is left to copy after `last`. Offsets
    /// may have gaps (transaction markers, compaction), so the next record is read rather
    /// than the next offset assumed.
    async fn reached(&self, sides: &Sides, last: Option<i64>) -> Result<bool> {
        let from = last.map_or(Offset::Beginning, |last| Offset::Offset(last + 1));
        if matches!(from, Offset::Offset(next) if next >= self.kafka_offset) {
            return Ok(true);
        }
        let mut assignment = TopicPartitionList::new();
        assignment.add_partition_offset(self.topic, self.partition, from)?;
        sides.kafka.assign(&assignment)?;
        let next = tokio::time::timeout(Duration::from_secs(5), sides.kafka.recv()).await;
        sides.kafka.unassign()?;
        match next {
            Ok(record) => Ok(record?.offset() >= self.kafka_offset),
            // Nothing left to read at all.
            Err(_) => Ok(true),
        }
    }
}

/// Commits the Kafka group's offsets from the Rocketry group's.
pub async fn rollback(group: &GroupMove) -> Result<Vec<Translation>> {
    let sides = connect(group).await?;
    let topic = &group.endpoints.source_topic;
    let mut moves = Vec::new();
    let mut commit = TopicPartitionList::new();
    for partition in 0..sides.partitions as i32 {
        let queue = sides.target.queue(partition);
        let client = Client::connect(queue.broker_addr.as_str()).await?;
        let queue_offset = committed_queue_offset(&client, &sides.target, queue, group).await?;
        let at = (partition, queue_offset);
        let kafka_offset = kafka_offset_at(&sides, &client, queue, topic, at).await?;
        commit.add_partition_offset(topic, partition, Offset::Offset(kafka_offset))?;
        moves.push(Translation {
            partition,
            kafka_offset,
            queue_offset,
        });
    }
    tokio::task::block_in_place(|| sides.kafka.commit(&commit, CommitMode::Sync))?;
    Ok(moves)
}

async fn committed_queue_offset(
    client: &Client,
    target: &Target,
    queue: &Queue,
    group: &GroupMove,
) -> Result<i64> {
    client
        .query_consumer_offset(&QueryConsumerOffsetRequestHeader {
            consumer_group: group.rocketry_group.clone(),
            topic: target.topic.clone(),
            queue_id: queue.queue_id,
            set_zero_if_not_found: Some(false),
            broker_name: Some(queue.broker_name.clone()),
        })
        .await?
        .ok_or_else(|| {
            Error::Topology(format!(
                "the Rocketry group {} has no offset on {} queue {}",
                group.rocketry_group, target.topic, queue.queue_id
            ))
        })
}

/// The Kafka offset of the record a Rocketry consumer of `partition`'s queue at
/// `queue_offset` reads next.
async fn kafka_offset_at(
    sides: &Sides,
    client: &Client,
    queue: &Queue,
    topic: &str,
    (partition, queue_offset): (i32, i64),
) -> Result<i64> {
    let end = client
        .get_max_offset(&sides.target.topic, queue.queue_id)
        .await?;
    if queue_offset < end {
        return Ok(sides
            .target
            .position_at(client, queue, queue_offset)
            .await?
            .offset);
    }
    match sides.target.last_position(client, queue).await? {
        // Read to the end: Kafka resumes after the last record copied.
        Some(last) => Ok(last.offset + 1),
        // Nothing copied yet: from the partition's start.
        None => {
            let (low, _) = tokio::task::block_in_place(|| {
                sides
                    .kafka
                    .fetch_watermarks(topic, partition, Duration::from_secs(30))
            })?;
            Ok(low)
        }
    }
}
