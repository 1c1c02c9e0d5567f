//! The gauges Prometheus reads at scrape time from state the broker keeps anyway: consumer
//! lag from committed offsets and queue max offsets (through the same code as
//! GET_CONSUME_STATS), store positions, connections, permission and held pulls. Nothing on
//! the send path keeps them up to date, and a scrape holds each of the broker's locks only
//! long enough to copy what it reads.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Weak;

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use protocol::body::{perm, ConsumeType};

use crate::broker::consume_progress::{subscribed_topics, topic_progress};
use crate::broker::Broker;
use crate::metrics::{Family, Node};

pub struct BrokerCollector {
    /// Weak: the registry outlives no broker, and must not keep one alive.
    broker: Weak<Broker>,
    node: Node,
}

impl BrokerCollector {
    pub fn new(broker: Weak<Broker>, node: Node) -> BrokerCollector {
        BrokerCollector { broker, node }
    }
}

impl Collector for BrokerCollector {
    /// None: the families are written whole at each scrape, and an unchecked collector
    /// is what the prometheus crate allows for that.
    fn desc(&self) -> Vec<&Desc> {
        Vec::new()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let Some(broker) = self.broker.upgrade() else {
            return Vec::new();
        };
        let now = crate::broker::clock::now_millis();
        let mut families = lag(&broker, &self.node, now);
        // After the lag series, so this scrape's refusals are in it.
        let mut dropped = Family::counter(
            "rocketry_metrics_series_dropped_total",
            "Topic and consumer group series left out because metricsMaxTopicGroupSeries was reached, counted each time one was refused.",
        );
        dropped.add(&self.node, &[], broker.metrics.series.dropped() as f64);
        families.push(dropped.into_family());
        families.extend(store(&broker, &self.node, now));
        families.extend(connections(&broker, &self.node));
        families.extend(state(&broker, &self.node));
        families
    }
}

/// One (topic, group) pair's figures, summed over the topic's read queues.
#[derive(Debug, Default, PartialEq)]
pub struct Lag {
    /// Max offset − committed offset (mqadmin's "Diff Total").
    pub messages: i64,
    /// Max offset − pulled offset.
    pub ready: i64,
    /// Pulled offset − committed offset.
    pub inflight: i64,
    /// Store time of the oldest message not committed, ms since the epoch.
    pub oldest_uncommitted: Option<i64>,
    /// Store time of the oldest message not pulled.
    pub oldest_ready: Option<i64>,
}

/// The lag of `group` on `topic`, from GET_CONSUME_STATS's figures; `None` when the topic
/// is gone or the online group does not subscribe to it, as GET_CONSUME_STATS leaves it out.
pub fn lag_of(
    broker: &Broker,
    group: &str,
    topic: &str,
    subscribed: Option<&BTreeSet<String>>,
) -> Option<Lag> {
    let progress = topic_progress(broker, group, topic, subscribed)?;
    let mut lag = Lag::default();
    let oldest =
        |queue_id: i32, offset: i64| broker.store.store_timestamp_at(topic, queue_id, offset);
    for (queue, offsets) in &progress.offset_table {
        lag.messages += offsets.broker_offset - offsets.consumer_offset;
        lag.ready += offsets.broker_offset - offsets.pull_offset;
        lag.inflight += offsets.pull_offset - offsets.consumer_offset;
        if offsets.consumer_offset < offsets.broker_offset {
            let at = oldest(queue.queue_id, offsets.consumer_offset);
            lag.oldest_uncommitted = min_time(lag.oldest_uncommitted, at);
        }
        if offsets.pull_offset < offsets.broker_offset {
            let at = oldest(queue.queue_id, offsets.pull_offset);
            lag.oldest_ready = min_time(lag.oldest_ready, at);
        }
    }
    Some(lag)
}

fn min_time(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn age(now: i64, since: Option<i64>) -> f64 {
    since.map_or(0.0, |at| (now - at).max(0) as f64)
}

fn lag(broker: &Broker, node: &Node, now: i64) -> Vec<MetricFamily> {
    let mut messages = Family::gauge(
        "rocketmq_consumer_lag_messages",
        "Messages not yet committed by the consumer group: queue max offset minus committed offset, summed over the topic's queues.",
    );
    let mut latency = Family::gauge(
        "rocketmq_consumer_lag_latency",
        "Age of the oldest message the consumer group has not committed, in milliseconds.",
    );
    let mut ready = Family::gauge(
        "rocketmq_consumer_ready_messages",
        "Messages not yet pulled by the consumer group: queue max offset minus pulled offset.",
    );
    let mut inflight = Family::gauge(
        "rocketmq_consumer_inflight_messages",
        "Messages pulled but not yet committed by the consumer group.",
    );
    let mut queueing = Family::gauge(
        "rocketmq_consumer_queueing_latency",
        "Age of the oldest message the consumer group has not pulled, in milliseconds.",
    );
    let mut subscriptions: HashMap<String, Option<BTreeSet<String>>> = HashMap::new();
    for (topic, group) in broker.offsets.pairs() {
        let subscribed = subscriptions
            .entry(group.clone())
            .or_insert_with(|| subscribed_topics(broker, &group));
        let Some(lag) = lag_of(broker, &group, &topic, subscribed.as_ref()) else {
            continue;
        };
        if !broker.metrics.series.admit(&topic, &group) {
            continue;
        }
        let labels = [
            ("topic", topic.as_str()),
            ("consumer_group", group.as_str()),
        ];
        messages.add(node, &labels, lag.messages as f64);
        latency.add(node, &labels, age(now, lag.oldest_uncommitted));
        ready.add(node, &labels, lag.ready as f64);
        inflight.add(node, &labels, lag.inflight as f64);
        queueing.add(node, &labels, age(now, lag.oldest_ready));
    }
    [messages, latency, ready, inflight, queueing]
        .into_iter()
        .map(Family::into_family)
        .collect()
}

fn single(name: &str, help: &str, node: &Node, value: f64) -> MetricFamily {
    let mut family = Family::gauge(name, help);
    family.add(node, &[], value);
    family.into_family()
}

fn store(broker: &Broker, node: &Node, now: i64) -> Vec<MetricFamily> {
    let store = &broker.store;
    let max = store.commit_log_max_offset();
    let mut families = vec![
        single(
            "rocketmq_storage_message_reserve_time",
            "Age of the oldest message still stored, in milliseconds.",
            node,
            age(now, store.earliest_commit_log_time()),
        ),
        single(
            "rocketmq_storage_dispatch_behind_bytes",
            "CommitLog bytes not yet dispatched to consume queues and the index.",
            node,
            max.saturating_sub(store.dispatched_offset()) as f64,
        ),
        single(
            "rocketmq_storage_flush_behind_bytes",
            "CommitLog bytes written but not yet flushed to disk.",
            node,
            max.saturating_sub(store.commit_log_flushed_offset()) as f64,
        ),
        single(
            "rocketry_store_write_fenced",
            "1 once a failed flush made the store refuse writes until a restart (docs/reliability.md).",
            node,
            f64::from(u8::from(store.write_fence().is_some())),
        ),
    ];
    if let Some(ratio) = store.disk_used_ratio() {
        families.push(single(
            "rocketry_storage_disk_used_ratio",
            "Share of the store's filesystem in use, 0 to 1.",
            node,
            ratio,
        ));
    }
    families
}

/// Apache's `consume_mode` label values (ConsumeType.getTypeCN, lowercased).
fn consume_mode(kind: ConsumeType) -> &'static str {
    match kind {
        ConsumeType::ConsumeActively => "pull",
        ConsumeType::ConsumePassively => "push",
        ConsumeType::ConsumePop => "pop",
    }
}

fn connections(broker: &Broker, node: &Node) -> Vec<MetricFamily> {
    let mut producers: BTreeMap<String, usize> = BTreeMap::new();
    for language in broker.clients.producer_languages() {
        *producers
            .entry(language.name().to_ascii_lowercase())
            .or_default() += 1;
    }
    let mut consumers: BTreeMap<(String, String, &str), usize> = BTreeMap::new();
    for (group, language, kind) in broker.clients.consumer_connections() {
        *consumers
            .entry((
                group,
                language.name().to_ascii_lowercase(),
                consume_mode(kind),
            ))
            .or_default() += 1;
    }
    let mut producer_family = Family::gauge(
        "rocketmq_producer_connections",
        "Producer connections, by client language.",
    );
    for (language, count) in &producers {
        producer_family.add(node, &[("language", language)], *count as f64);
    }
    let mut consumer_family = Family::gauge(
        "rocketmq_consumer_connections",
        "Consumer connections, by consumer group, client language and consume mode.",
    );
    for ((group, language, mode), count) in &consumers {
        consumer_family.add(
            node,
            &[
                ("consumer_group", group),
                ("language", language),
                ("consume_mode", mode),
            ],
            *count as f64,
        );
    }
    vec![producer_family.into_family(), consumer_family.into_family()]
}

fn state(broker: &Broker, node: &Node) -> Vec<MetricFamily> {
    let permission = broker.permission();
    let writable = permission & perm::WRITE as u32 != 0
        && broker.store.write_fence().is_none()
        && !broker.is_stopping();
    vec![
        single(
            "rocketmq_broker_permission",
            "The broker's permission bits (brokerPermission): 6 read and write, 4 read-only, 2 write-only.",
            node,
            f64::from(permission),
        ),
        single(
            "rocketry_broker_writable",
            "1 while the broker accepts sends: write permission, store not fenced, not stopping.",
            node,
            f64::from(u8::from(writable)),
        ),
        single(
            "rocketmq_topic_number",
            "Topics on the broker.",
            node,
            broker.topics.count() as f64,
        ),
        single(
            "rocketmq_consumer_group_number",
            "Subscription groups on the broker.",
            node,
            broker.groups.count() as f64,
        ),
    ]
}
