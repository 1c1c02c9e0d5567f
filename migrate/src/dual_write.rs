//! Dual write for applications: each record goes to Kafka, then its copy to Rocketry, mapped
//! as the mirror maps it (partition `p` to queue `p`, the Kafka offset in `KAFKA_OFFSET`), so
//! parity, cutover and rollback treat the two kinds of copy alike.
//!
//! When a side cannot be reached, the record goes to a local spool instead, fsynced
//! before [`DualWriter::send`] returns, and a background task replays the spool in order once
//! the side is back. Order is kept per partition: while the spool holds a record that Kafka
//! has not taken, every later record is spooled whole; while it holds only copies bound for
//! Rocketry, later records still go to Kafka at once and their copies queue behind. The
//! replay writes without holding up sends, so sends keep spooling at disk speed during an
//! outage. Once the replay is within one round of an empty spool, sends wait for it (up to
//! the Kafka timeout) instead of joining the spool's end, so that a steady stream of sends
//! does not keep the spool from ever emptying and the writer returns to writing both sides.
//! A full spool refuses the record before either side sees it, so nothing is half written.
//!
//! Kafka offsets name records uniquely, so a copy whose write had an unknown outcome (a
//! timeout, a connection that dropped, a crash of this process) is looked for among the
//! queue's last messages before it is written again: a copy is not repeated unless it has
//! since sunk below [`RECHECK_DEPTH`] other messages of its queue. Kafka itself is written
//! at least once: a record spooled whole and replayed after a crash that came between
//! Kafka's acknowledgement and the spool's advance is in Kafka twice, and so is one whose
//! write timed out but was taken (both copies then go to Rocketry, as above).
//!
//! The hand-over from the mirror: each Kafka record the writer writes carries the
//! [`DUAL_WRITTEN`] header, and the mirror leaves such records to the writer. A copy that does
//! not follow the last one the writer knows its queue holds (its first, or one after an error)
//! first looks at the Kafka records between the queue's end and it: the writer copies its own
//! (Kafka took them although the writer saw a timeout), and waits, in the spool, for the
//! mirror to copy the rest. So a queue holds its partition in Kafka's order, nothing missing,
//! whoever wrote each copy.
//!
//! Sends are serialized per writer (each waits for both sides), which keeps per-partition
//! order simple at the cost of throughput. Each partition must have one writer: parity and
//! cutover binary-search a queue by `KAFKA_OFFSET`, and two writers of one partition can land
//! their copies out of Kafka's order (docs/migration.md, "One writer per Kafka partition").

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;
use prometheus::{IntCounterVec, IntGauge, Opts};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message as _, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, Notify};
use tracing::{info, warn};

use crate::record::{from_kafka, is_dual_written, to_message, SourceRecord, DUAL_WRITTEN};
use crate::source::{client_config, first_namesrv, partition_count};
use crate::spool::Spool;
use crate::target::Target;
use crate::{Error, Result};

/// How many of a queue's last messages are searched for a copy whose write had an unknown
/// outcome.
pub const RECHECK_DEPTH: i64 = 256;

/// Most spooled entries replayed in one round.
const REPLAY_BATCH: usize = 64;

/// Rocketry's default limit on a message (body and properties).
const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// Where to write and how much to spool.
#[derive(Debug, Clone)]
pub struct DualWriteConfig {
    /// librdkafka settings: `bootstrap.servers` at least.
    pub kafka: HashMap<String, String>,
    pub source_topic: String,
    /// The Rocketry name servers, `host:port;host:port`.
    pub namesrv: String,
    pub target_topic: String,
    /// The spool's folder; one writer per folder.
    pub spool_dir: PathBuf,
    /// Most bytes the spool holds before sends are refused.
    pub spool_max_bytes: u64,
    /// How long Kafka may take to acknowledge before the record is spooled instead.
    pub kafka_timeout: Duration,
    /// How long the replay waits after a side failed before it tries again.
    pub retry_every: Duration,
    /// Where the writer's metrics go.
    pub registry: prometheus::Registry,
}

impl DualWriteConfig {
    /// A writer's settings with the defaults: 1 GiB of spool, 10 s for Kafka, retries each
    /// second, metrics in a registry of its own.
    pub fn new(
        bootstrap_servers: &str,
        source_topic: &str,
        namesrv: &str,
        target_topic: &str,
        spool_dir: PathBuf,
    ) -> DualWriteConfig {
        DualWriteConfig {
            kafka: HashMap::from([("bootstrap.servers".into(), bootstrap_servers.into())]),
            source_topic: source_topic.into(),
            namesrv: namesrv.into(),
            target_topic: target_topic.into(),
            spool_dir,
            spool_max_bytes: 1 << 30,
            kafka_timeout: Duration::from_secs(10),
            retry_every: Duration::from_secs(1),
            registry: prometheus::Registry::new(),
        }
    }
}

/// A record an application writes: what a Kafka producer record holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub key: Option<Vec<u8>>,
    /// `None` is a tombstone.
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    /// `None` leaves the partition to Kafka's partitioner (by key).
    pub partition: Option<i32>,
    /// Milliseconds since the epoch; `None` is the time of the send.
    pub timestamp: Option<i64>,
}

/// Where a sent record stands when [`DualWriter::send`] returns. Every outcome is durable:
/// what is not yet written is in the fsynced spool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// In Kafka at this position, and its copy in Rocketry.
    Both { partition: i32, offset: i64 },
    /// In Kafka at this position; its copy is spooled for Rocketry.
    Kafka { partition: i32, offset: i64 },
    /// Spooled for both sides.
    Spooled,
}

/// A record's place in Kafka, once Kafka acknowledged it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Placed {
    partition: i32,
    offset: i64,
    timestamp: Option<i64>,
}

/// One spooled record, with its Kafka place when Kafka already holds it.
#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    record: Record,
    placed: Option<Placed>,
}

/// The spool and what sends decide by. A send holds it throughout, which serializes sends;
/// the replay holds it only to read the front and to take entries off it, never across a
/// write, so that sends keep spooling while a side is down.
struct State {
    spool: Spool,
    /// Spooled entries Kafka has not taken yet.
    unplaced: u64,
}

/// The connections to Rocketry, shared by sends and the replay.
#[derive(Default)]
struct Rocketry {
    /// The topic, found at the first write to it, so that a writer starts (and spools)
    /// while Rocketry is down.
    target: Option<Target>,
    /// One connection per broker address, dropped on any error.
    brokers: HashMap<String, protocol::Client>,
    /// Queues whose last write had an unknown outcome (and all queues after a restart).
    recheck: HashSet<i32>,
    /// Per queue, the last source offset this writer knows the queue holds; a copy that does
    /// not follow it is checked for a gap first (see [`gap`]).
    copied_to: HashMap<i32, i64>,
}

struct Shared {
    config: DualWriteConfig,
    producer: FutureProducer,
    /// Sends take their turn in call order, held through the send, so that a send waiting
    /// for the catch-up is not overtaken by a later one that came after the spool drained.
    send_order: Mutex<()>,
    state: Mutex<State>,
    rocketry: Mutex<Rocketry>,
    /// Wakes the replay when a send spooled an entry.
    spooled: Notify,
    /// Whether the replay's last round wrote entries to both sides: it is catching up.
    catching_up: AtomicBool,
    /// Wakes the sends waiting for the replay to catch up: the spool became empty, or a
    /// replay round failed.
    drained: Notify,
    metrics: Metrics,
}

/// `rocketry_dual_write_*`, labelled by source topic.
struct Metrics {
    spool_records: IntGauge,
    spool_bytes: IntGauge,
    /// Records by outcome of their send: `both`, `kafka` or `spooled`.
    sent: IntCounterVec,
}

impl Metrics {
    fn register(registry: &prometheus::Registry, topic: &str) -> Result<Metrics> {
        let gauge = |name: &str, help: &str| -> Result<IntGauge> {
            let gauge =
                IntGauge::with_opts(Opts::new(name, help).const_label("source_topic", topic))?;
            registry.register(Box::new(gauge.clone()))?;
            Ok(gauge)
        };
        let sent = IntCounterVec::new(
            Opts::new(
                "rocketry_dual_write_sent_records_total",
                "Records sent through the dual writer, by where they were when the send returned",
            )
            .const_label("source_topic", topic),
            &["outcome"],
        )?;
        registry.register(Box::new(sent.clone()))?;
        Ok(Metrics {
            spool_records: gauge(
                "rocketry_dual_write_spool_records",
                "Records in the dual writer's spool, waiting for Kafka, Rocketry or both",
            )?,
            spool_bytes: gauge(
                "rocketry_dual_write_spool_bytes",
                "Bytes of the dual writer's spool file on disk",
            )?,
            sent,
        })
    }

    fn show(&self, spool: &Spool) {
        self.spool_records.set(spool.len() as i64);
        self.spool_bytes.set(spool.bytes() as i64);
    }
}

/// Writes records to Kafka and Rocketry; see the module documentation. Needs the
/// multi-threaded Tokio runtime (spool writes and librdkafka calls block their thread).
pub struct DualWriter {
    shared: Arc<Shared>,
    replay: tokio::task::JoinHandle<()>,
}

impl Drop for DualWriter {
    fn drop(&mut self) {
        self.replay.abort();
        // So that a writer opened next in the same registry can register its own.
        let (registry, metrics) = (&self.shared.config.registry, &self.shared.metrics);
        let _ = registry.unregister(Box::new(metrics.spool_records.clone()));
        let _ = registry.unregister(Box::new(metrics.spool_bytes.clone()));
        let _ = registry.unregister(Box::new(metrics.sent.clone()));
    }
}

impl DualWriter {
    /// Opens the spool and a Kafka producer; neither side has to be up. What an earlier writer
    /// left in the spool is replayed first. The Rocketry topic is found at the first write to
    /// it, and created when missing with one queue per Kafka partition.
    pub async fn open(config: DualWriteConfig) -> Result<DualWriter> {
        let producer: FutureProducer = client_config(&config.kafka)
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set(
                "message.timeout.ms",
                config.kafka_timeout.as_millis().to_string(),
            )
            .create()?;
        let topic = &config.source_topic;
        let mut spool =
            tokio::task::block_in_place(|| Spool::open(&config.spool_dir, config.spool_max_bytes))?;
        let mut unplaced = 0;
        tokio::task::block_in_place(|| {
            spool.visit(|bytes| {
                unplaced += u64::from(decode(bytes)?.placed.is_none());
                Ok(true)
            })
        })?;
        if !spool.is_empty() {
            info!(
                records = spool.len(),
                unplaced, "replaying what the last writer spooled"
            );
        }
        let metrics = Metrics::register(&config.registry, topic)?;
        metrics.show(&spool);
        let shared = Arc::new(Shared {
            config,
            producer,
            send_order: Mutex::new(()),
            state: Mutex::new(State { spool, unplaced }),
            rocketry: Mutex::new(Rocketry::default()),
            spooled: Notify::new(),
            catching_up: AtomicBool::new(false),
            drained: Notify::new(),
            metrics,
        });
        let replay = tokio::spawn(replay(shared.clone()));
        Ok(DualWriter { shared, replay })
    }

    /// Writes `record` to both sides, or spools what could not be written; returns once the
    /// record is in Kafka and Rocketry, or durably spooled. Errors mean nothing was written:
    /// the record cannot be mapped, a side refused it for good, or the spool is full.
    pub async fn send(&self, record: Record) -> Result<Sent> {
        let shared = &self.shared;
        let entry = Entry {
            record,
            placed: None,
        };
        check_mappable(&entry.record, &shared.config.source_topic)?;
        let _turn = shared.send_order.lock().await;
        let mut state = wait_for_catch_up(shared).await;
        // Room for the entry with its place (a few bytes more once placed), checked before
        // either side sees it.
        let room_needed = encode(&entry)?.len() + 32;
        if !state.spool.has_room(room_needed as u64) {
            return Err(state.spool.full_error());
        }
        let sent = if state.unplaced > 0 {
            spool(shared, &mut state, &entry)?;
            Sent::Spooled
        } else {
            match to_kafka(shared, &entry.record).await {
                Err(error) if unreachable_kafka(&error) => {
                    warn!(%error, "Kafka did not take the record; spooling it");
                    spool(shared, &mut state, &entry)?;
                    Sent::Spooled
                }
                Err(error) => return Err(error),
                Ok(placed) => {
                    let entry = Entry {
                        placed: Some(placed),
                        ..entry
                    };
                    let (partition, offset) = (placed.partition, placed.offset);
                    if !state.spool.is_empty() {
                        spool(shared, &mut state, &entry)?;
                        Sent::Kafka { partition, offset }
                    } else {
                        match to_rocketry(shared, std::slice::from_ref(&entry)).await {
                            Ok(()) => Sent::Both { partition, offset },
                            Err(error) => {
                                warn!(%error, "Rocketry did not take the copy; spooling it");
                                spool(shared, &mut state, &entry)?;
                                Sent::Kafka { partition, offset }
                            }
                        }
                    }
                }
            }
        };
        let outcome = match sent {
            Sent::Both { .. } => "both",
            Sent::Kafka { .. } => "kafka",
            Sent::Spooled => "spooled",
        };
        shared.metrics.sent.with_label_values(&[outcome]).inc();
        Ok(sent)
    }

    /// Records in the spool.
    pub async fn spooled(&self) -> u64 {
        self.shared.state.lock().await.spool.len()
    }
}

/// The state for a send, once the spool is empty, when the replay is catching up and within
/// one round of done. When a replay round fails, after the Kafka timeout, or at once when the
/// replay is failing or far behind, the send goes on with the spool as it is (and joins its
/// end).
async fn wait_for_catch_up(shared: &Shared) -> tokio::sync::MutexGuard<'_, State> {
    let drained = shared.drained.notified();
    tokio::pin!(drained);
    // Registered before the spool is looked at, so that a drain in between is not missed.
    drained.as_mut().enable();
    {
        let state = shared.state.lock().await;
        let near_done = (1..=REPLAY_BATCH as u64).contains(&state.spool.len());
        if !(near_done && shared.catching_up.load(Ordering::Relaxed)) {
            return state;
        }
    }
    if tokio::time::timeout(shared.config.kafka_timeout, drained)
        .await
        .is_err()
    {
        // A round that neither ends nor fails (a gap read, a slow side): later sends do not
        // wait for it too, until a round succeeds again.
        shared.catching_up.store(false, Ordering::Relaxed);
    }
    shared.state.lock().await
}

fn encode(entry: &Entry) -> Result<Vec<u8>> {
    postcard::to_stdvec(entry).map_err(|e| Error::SpoolEntry(e.to_string()))
}

fn decode(bytes: &[u8]) -> Result<Entry> {
    postcard::from_bytes(bytes).map_err(|e| Error::SpoolEntry(e.to_string()))
}

/// Appends `entry` to the spool and wakes the replay.
fn spool(shared: &Shared, state: &mut State, entry: &Entry) -> Result<()> {
    let bytes = encode(entry)?;
    tokio::task::block_in_place(|| state.spool.append(&bytes))?;
    if entry.placed.is_none() {
        state.unplaced += 1;
    }
    shared.metrics.show(&state.spool);
    shared.spooled.notify_one();
    Ok(())
}

/// Refuses what Rocketry could never take, before Kafka takes it.
fn check_mappable(record: &Record, topic: &str) -> Result<()> {
    let message = to_message(&source_record(record, topic, None, &headers(record)), topic)?;
    let size = message.body.len() + message.properties.encode().len();
    if size > MAX_MESSAGE_BYTES {
        return Err(Error::Mapping {
            partition: record.partition.unwrap_or(-1),
            offset: -1,
            reason: format!("{size} bytes is over Rocketry's {MAX_MESSAGE_BYTES} byte limit"),
        });
    }
    Ok(())
}

fn headers(record: &Record) -> Vec<(&str, Option<&[u8]>)> {
    record
        .headers
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_deref()))
        .collect()
}

fn source_record<'a>(
    record: &'a Record,
    topic: &'a str,
    placed: Option<Placed>,
    headers: &'a [(&'a str, Option<&'a [u8]>)],
) -> SourceRecord<'a> {
    SourceRecord {
        topic,
        partition: placed.map_or(record.partition.unwrap_or(0), |p| p.partition),
        offset: placed.map_or(0, |p| p.offset),
        timestamp: placed.and_then(|p| p.timestamp).or(record.timestamp),
        key: record.key.as_deref(),
        value: record.value.as_deref(),
        headers,
    }
}

/// Sends `record` to Kafka and waits for its acknowledgement.
async fn to_kafka(shared: &Shared, record: &Record) -> Result<Placed> {
    let topic = &shared.config.source_topic;
    // The mark the mirror leaves the record alone by (its copy is ours to write).
    let mut headers = OwnedHeaders::new_with_capacity(record.headers.len() + 1).insert(Header {
        key: DUAL_WRITTEN,
        value: Some("true"),
    });
    for (key, value) in &record.headers {
        headers = headers.insert(Header {
            key,
            value: value.as_deref(),
        });
    }
    let mut future = FutureRecord::<[u8], [u8]>::to(topic).headers(headers);
    if let Some(key) = &record.key {
        future = future.key(key);
    }
    if let Some(value) = &record.value {
        future = future.payload(value);
    }
    if let Some(partition) = record.partition {
        future = future.partition(partition);
    }
    let timestamp = record.timestamp.unwrap_or_else(crate::now_ms);
    future = future.timestamp(timestamp);
    match shared
        .producer
        .send(future, shared.config.kafka_timeout)
        .await
    {
        Ok(delivery) => Ok(Placed {
            partition: delivery.partition,
            offset: delivery.offset,
            timestamp: delivery.timestamp.to_millis().or(Some(timestamp)),
        }),
        Err((error, _)) => Err(error.into()),
    }
}

/// Whether Kafka failed for a reason that passes (the record is spooled), rather than
/// refusing the record for good (the caller gets the error).
fn unreachable_kafka(error: &Error) -> bool {
    use RDKafkaErrorCode::*;
    let Error::Kafka(error) = error else {
        return false;
    };
    let code = match error {
        KafkaError::MessageProduction(code) => *code,
        KafkaError::Canceled => return true,
        _ => return false,
    };
    matches!(
        code,
        MessageTimedOut
            | BrokerTransportFailure
            | AllBrokersDown
            | QueueFull
            | RequestTimedOut
            | NetworkException
            | LeaderNotAvailable
            | NotLeaderForPartition
            | BrokerNotAvailable
            | NotEnoughReplicas
            | NotEnoughReplicasAfterAppend
            | NotCoordinator
            | PurgeQueue
            | PurgeInflight
    )
}

/// Writes the copies of `entries` (all placed, in spool order) to Rocketry, one batch per
/// queue. A queue whose last write had an unknown outcome is first searched for the copies
/// already there.
async fn to_rocketry(shared: &Shared, entries: &[Entry]) -> Result<()> {
    let mut by_partition: Vec<(i32, Vec<&Entry>)> = Vec::new();
    for entry in entries {
        let partition = entry
            .placed
            .expect("only placed entries go to Rocketry")
            .partition;
        match by_partition.iter_mut().find(|(p, _)| *p == partition) {
            Some((_, batch)) => batch.push(entry),
            None => by_partition.push((partition, vec![entry])),
        }
    }
    let mut rocketry = shared.rocketry.lock().await;
    let target = match rocketry.target.take() {
        Some(target) => target,
        None => resolve(shared, &mut rocketry).await?,
    };
    let written = to_queues(shared, &mut rocketry, &target, by_partition).await;
    rocketry.target = Some(target);
    written
}

/// Finds the Rocketry topic (creating it when missing). Every queue is then rechecked
/// before its first write: a crash of an earlier writer may have come between a write and
/// the spool's advance.
async fn resolve(shared: &Shared, rocketry: &mut Rocketry) -> Result<Target> {
    let config = &shared.config;
    let topic = &config.source_topic;
    let partitions = partition_count(&config.kafka, topic)?;
    let namesrv = first_namesrv(&config.namesrv);
    let target = Target::open(namesrv, &config.target_topic, partitions).await?;
    rocketry.recheck = (0..partitions as i32).collect();
    rocketry.copied_to.clear();
    Ok(target)
}

async fn to_queues(
    shared: &Shared,
    rocketry: &mut Rocketry,
    target: &Target,
    by_partition: Vec<(i32, Vec<&Entry>)>,
) -> Result<()> {
    let topic = &shared.config.source_topic;
    for (partition, batch) in by_partition {
        let queue = target.queue(partition).clone();
        let client = match rocketry.brokers.get(&queue.broker_addr) {
            Some(client) => client.clone(),
            None => {
                let client = protocol::Client::connect(queue.broker_addr.as_str()).await?;
                rocketry
                    .brokers
                    .insert(queue.broker_addr.clone(), client.clone());
                client
            }
        };
        let present = if rocketry.recheck.contains(&partition) {
            let found = target
                .recent_source_offsets(&client, &queue, RECHECK_DEPTH)
                .await;
            match found {
                Ok(found) => found,
                Err(error) => {
                    rocketry.brokers.remove(&queue.broker_addr);
                    return Err(error);
                }
            }
        } else {
            HashSet::new()
        };
        // What this writer already wrote to the queue: a replayed batch whose write failed at
        // a later partition (the mirror behind there, say) wrote this one's copies already.
        let written = rocketry.copied_to.get(&partition).copied();
        let mut messages = Vec::with_capacity(batch.len());
        let mut first = None;
        let mut last = written.unwrap_or(-1);
        for entry in batch {
            let placed = entry.placed.expect("placed");
            last = last.max(placed.offset);
            if present.contains(&placed.offset) || written.is_some_and(|w| placed.offset <= w) {
                continue;
            }
            first.get_or_insert(placed.offset);
            let headers = headers(&entry.record);
            let record = source_record(&entry.record, topic, Some(placed), &headers);
            messages.push(to_message(&record, &shared.config.target_topic)?);
        }
        let follows =
            first.is_none_or(|first| rocketry.copied_to.get(&partition) == Some(&(first - 1)));
        if let (Some(first), false) = (first, follows) {
            match gap(shared, target, &client, &queue, partition, first).await {
                Ok(gap) if gap.is_empty() => {}
                Ok(gap) => {
                    info!(
                        partition,
                        records = gap.len(),
                        first,
                        "copying records of this writer Kafka took without telling it"
                    );
                    messages.splice(0..0, gap);
                }
                Err(error) => {
                    rocketry.brokers.remove(&queue.broker_addr);
                    return Err(error);
                }
            }
        }
        if !messages.is_empty() {
            if let Err(error) = target.send(&client, &queue, &messages).await {
                rocketry.brokers.remove(&queue.broker_addr);
                rocketry.recheck.insert(partition);
                rocketry.copied_to.remove(&partition);
                return Err(error);
            }
        }
        rocketry.recheck.remove(&partition);
        rocketry.copied_to.insert(partition, last);
    }
    Ok(())
}

/// The copies that must go into `partition`'s queue before this writer's copy of Kafka offset
/// `first`, so that the queue holds its partition in Kafka's order with nothing missing: the
/// Kafka records between the queue's last copy and `first`. Records this writer wrote (its
/// mark) are copied here: Kafka took them although the writer saw a timeout, and replayed them
/// from the spool (Kafka holds those twice, and so will the queue). A record without the mark
/// is the mirror's to copy (a producer the writer replaced): the copy waits until the mirror
/// has. Offsets that hold no record (transaction markers, compaction) are skipped as any
/// consumer skips them.
async fn gap(
    shared: &Shared,
    target: &Target,
    client: &protocol::Client,
    queue: &crate::target::Queue,
    partition: i32,
    first: i64,
) -> Result<Vec<message::Message>> {
    let copied = target.last_position(client, queue).await?.map(|p| p.offset);
    if copied.is_some_and(|copied| copied >= first - 1) {
        return Ok(Vec::new());
    }
    let config = &shared.config;
    let consumer: BaseConsumer = client_config(&config.kafka)
        .set("group.id", "rocketry-dual-writer")
        .set("enable.auto.commit", "false")
        .create()?;
    let mut assignment = TopicPartitionList::new();
    let from = copied.map_or(Offset::Beginning, |copied| Offset::Offset(copied + 1));
    assignment.add_partition_offset(&config.source_topic, partition, from)?;
    consumer.assign(&assignment)?;
    let deadline = Instant::now() + config.kafka_timeout;
    let mut gap = Vec::new();
    tokio::task::block_in_place(|| loop {
        let Some(record) = consumer.poll(Duration::from_millis(200)) else {
            if Instant::now() > deadline {
                return Err(Error::Topology(format!(
                    "partition {partition}: Kafka gave no record before offset {first} within {:?}",
                    config.kafka_timeout
                )));
            }
            continue;
        };
        let record = record?;
        if record.offset() >= first {
            return Ok(gap);
        }
        if !is_dual_written(&record) {
            return Err(Error::MirrorBehind {
                partition,
                copied,
                first,
            });
        }
        gap.push(from_kafka(&record, &config.target_topic)?);
    })
}

/// Replays the spool front to back, forever: unplaced entries go to Kafka first, then every
/// copy to Rocketry; entries leave the spool only once both sides hold them.
async fn replay(shared: Arc<Shared>) {
    // Where Kafka put the front entries, when they were unplaced and the replay wrote them to
    // Kafka but not yet to Rocketry: a retry does not write them to Kafka again. Only the
    // replay takes entries off the front, so the front stays the same entries until it does.
    let mut front_placed = Vec::new();
    loop {
        let waiting = shared.spooled.notified();
        let round = replay_some(&shared, &mut front_placed).await;
        shared
            .catching_up
            .store(matches!(round, Ok(true)), Ordering::Relaxed);
        match round {
            Ok(true) => continue,
            Ok(false) => waiting.await,
            Err(error) => {
                // Sends waiting for the catch-up would wait out their timeout: let them spool.
                shared.drained.notify_waiters();
                warn!(%error, "replaying the spool; trying again");
                tokio::time::sleep(shared.config.retry_every).await;
            }
        }
    }
}

/// Replays up to [`REPLAY_BATCH`] entries from the front; whether there were any.
async fn replay_some(shared: &Shared, front_placed: &mut Vec<Placed>) -> Result<bool> {
    let mut entries = {
        let mut state = shared.state.lock().await;
        if state.spool.is_empty() {
            return Ok(false);
        }
        let front = tokio::task::block_in_place(|| state.spool.front(REPLAY_BATCH))?;
        front
            .iter()
            .map(|bytes| decode(bytes))
            .collect::<Result<Vec<_>>>()?
    };
    let unplaced = if entries[0].placed.is_none() {
        // The leading run of unplaced entries goes to Kafka at once (the idempotent producer
        // keeps their order), then to Rocketry; a crash in between writes them to Kafka again.
        // Past a failure, what follows is sent again next round.
        let run = entries.iter().take_while(|e| e.placed.is_none()).count();
        entries.truncate(run);
        let known = front_placed.len().min(run);
        let sent = join_all(entries[known..].iter().map(|e| to_kafka(shared, &e.record))).await;
        let mut failure = None;
        for result in sent {
            match (result, &failure) {
                (Ok(placed), None) => front_placed.push(placed),
                (Ok(_), Some(_)) => {}
                (Err(error), _) => {
                    failure.get_or_insert(error);
                }
            }
        }
        let placed = front_placed.len().min(run);
        if let (0, Some(error)) = (placed, failure) {
            return Err(error);
        }
        entries.truncate(placed);
        for (entry, placed) in entries.iter_mut().zip(front_placed.iter()) {
            entry.placed = Some(*placed);
        }
        placed as u64
    } else {
        // The leading run of placed entries; an unplaced one after it waits its turn.
        let run = entries.iter().take_while(|e| e.placed.is_some()).count();
        entries.truncate(run);
        0
    };
    to_rocketry(shared, &entries).await?;
    front_placed.drain(..unplaced as usize);
    let mut state = shared.state.lock().await;
    take(shared, &mut state, entries.len(), unplaced)?;
    Ok(true)
}

fn take(shared: &Shared, state: &mut State, count: usize, unplaced: u64) -> Result<()> {
    tokio::task::block_in_place(|| state.spool.take(count))?;
    state.unplaced -= unplaced;
    shared.metrics.show(&state.spool);
    if state.spool.is_empty() {
        shared.drained.notify_waiters();
    }
    Ok(())
}

#[cfg(test)]
#[path = "dual_write_test.rs"]
mod dual_write_test;
