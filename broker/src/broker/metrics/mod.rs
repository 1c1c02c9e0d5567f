//! The broker's metrics under Apache RocketMQ 5.x's names (BrokerMetricsConstant): what
//! the send, pull and dead-letter paths count as they go, here; what is read from the
//! broker's state when Prometheus scrapes, in [`collector`].

mod collector;
#[cfg(test)]
mod collector_test;

use std::sync::{Arc, Weak};

use message::property;
use prometheus::{Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry};
use store::PutMessage;

use crate::broker::schedule::SCHEDULE_TOPIC;
use crate::broker::Broker;
use crate::config::BrokerConfig;
use crate::metrics::{valid, Node, RpcLatency, SeriesCap};

/// Apache's message size buckets (BrokerMetricsManager): 1 KB, 4 KB, 512 KB, 1 MB, 2 MB,
/// 4 MB, in bytes.
const MESSAGE_SIZE_BUCKETS: [f64; 6] = [
    1024.0,
    4.0 * 1024.0,
    512.0 * 1024.0,
    1024.0 * 1024.0,
    2.0 * 1024.0 * 1024.0,
    4.0 * 1024.0 * 1024.0,
];

/// Flush latency buckets in milliseconds: Apache's RPC buckets, since a SYNC_FLUSH send
/// waits for its flush and the two are read side by side.
const FLUSH_LATENCY_BUCKETS_MS: [f64; 9] =
    [1.0, 3.0, 5.0, 7.0, 10.0, 100.0, 1000.0, 2000.0, 3000.0];

/// Apache's `message_type` label values (TopicMessageType, lowercased).
const MESSAGE_TYPES: [&str; 4] = ["normal", "fifo", "delay", "transaction"];

pub struct BrokerMetrics {
    node: Node,
    messages_in: IntCounterVec,
    throughput_in: IntCounterVec,
    message_size: HistogramVec,
    messages_out: IntCounterVec,
    throughput_out: IntCounterVec,
    send_to_dlq: IntCounterVec,
    commits: IntCounterVec,
    rollbacks: IntCounterVec,
    timers_enqueued: IntCounterVec,
    timers_dequeued: IntCounterVec,
    flush_latency: Histogram,
    held_pulls: IntGauge,
    pub(crate) rpc: RpcLatency,
    series: SeriesCap,
}

fn counter(node: &Node, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    valid(IntCounterVec::new(
        Opts::new(name, help).const_labels(node.const_labels()),
        labels,
    ))
}

/// Apache's TopicMessageType.parseFromMessageProperty: a prepared transaction, then any
/// delay, then a sharding key (FIFO); anything else is normal.
fn message_type(put: &PutMessage) -> &'static str {
    let properties = &put.message.properties;
    if properties.get(property::TRAN_MSG) == Some("true") {
        "transaction"
    } else if [
        property::DELAY,
        property::TIMER_DELIVER_MS,
        property::TIMER_DELAY_SEC,
        property::TIMER_DELAY_MS,
    ]
    .iter()
    .any(|name| properties.get(name).is_some())
    {
        "delay"
    } else if properties.get(property::SHARDING_KEY).is_some() {
        "fifo"
    } else {
        "normal"
    }
}

/// The labels of `rocketmq_messages_in_total` and its siblings for `put`.
fn in_labels(put: &PutMessage) -> [&str; 2] {
    [sent_topic(put), message_type(put)]
}

/// The topic a producer sent to: a delayed message waits in the schedule topic and names
/// its own in REAL_TOPIC.
fn sent_topic(put: &PutMessage) -> &str {
    match put.message.properties.get(property::REAL_TOPIC) {
        Some(real) if put.message.topic == SCHEDULE_TOPIC => real,
        _ => &put.message.topic,
    }
}

impl BrokerMetrics {
    pub fn new(config: &BrokerConfig) -> BrokerMetrics {
        let node = Node::broker(&config.broker_cluster_name, &config.broker_name);
        let in_labels = ["topic", "message_type"];
        let out_labels = ["topic", "consumer_group"];
        BrokerMetrics {
            messages_in: counter(
                &node,
                "rocketmq_messages_in_total",
                "Messages stored, by topic and message type.",
                &in_labels,
            ),
            throughput_in: counter(
                &node,
                "rocketmq_throughput_in_total",
                "Bytes stored (whole records), by topic and message type.",
                &in_labels,
            ),
            message_size: valid(HistogramVec::new(
                HistogramOpts::new(
                    "rocketmq_message_size",
                    "Size of each stored message (whole record), in bytes.",
                )
                .const_labels(node.const_labels())
                .buckets(MESSAGE_SIZE_BUCKETS.to_vec()),
                &in_labels,
            )),
            messages_out: counter(
                &node,
                "rocketmq_messages_out_total",
                "Messages handed to consumers by pulls, by topic and consumer group.",
                &out_labels,
            ),
            throughput_out: counter(
                &node,
                "rocketmq_throughput_out_total",
                "Bytes handed to consumers by pulls, by topic and consumer group.",
                &out_labels,
            ),
            send_to_dlq: counter(
                &node,
                "rocketmq_send_to_dlq_messages_total",
                "Messages moved to a dead-letter queue, by original topic and consumer group.",
                &out_labels,
            ),
            commits: counter(
                &node,
                "rocketmq_commit_messages_total",
                "Transactional messages committed, by topic.",
                &["topic"],
            ),
            rollbacks: counter(
                &node,
                "rocketmq_rollback_messages_total",
                "Transactional messages rolled back, by topic.",
                &["topic"],
            ),
            timers_enqueued: counter(
                &node,
                "rocketmq_timer_enqueue_total",
                "Timer messages put on the timer wheel, by topic.",
                &["topic"],
            ),
            timers_dequeued: counter(
                &node,
                "rocketmq_timer_dequeue_total",
                "Timer messages put into their topic when due, by topic.",
                &["topic"],
            ),
            flush_latency: valid(Histogram::with_opts(
                HistogramOpts::new(
                    "rocketry_storage_flush_latency",
                    "Time each CommitLog flush took, in milliseconds.",
                )
                .const_labels(node.const_labels())
                .buckets(FLUSH_LATENCY_BUCKETS_MS.to_vec()),
            )),
            held_pulls: valid(IntGauge::with_opts(
                Opts::new(
                    "rocketry_pulls_held",
                    "Pulls waiting for messages (long polling).",
                )
                .const_labels(node.const_labels()),
            )),
            rpc: RpcLatency::new(&node),
            series: SeriesCap::new(config.metrics_max_topic_group_series),
            node,
        }
    }

    /// Registers every broker metric, and the collector that reads `broker` at scrape time.
    pub fn register(&self, registry: &Registry, broker: Weak<Broker>) -> prometheus::Result<()> {
        for metric in [
            Box::new(self.messages_in.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(self.throughput_in.clone()),
            Box::new(self.message_size.clone()),
            Box::new(self.messages_out.clone()),
            Box::new(self.throughput_out.clone()),
            Box::new(self.send_to_dlq.clone()),
            Box::new(self.commits.clone()),
            Box::new(self.rollbacks.clone()),
            Box::new(self.timers_enqueued.clone()),
            Box::new(self.timers_dequeued.clone()),
            Box::new(self.flush_latency.clone()),
            Box::new(self.held_pulls.clone()),
            Box::new(collector::BrokerCollector::new(broker, self.node.clone())),
        ] {
            registry.register(metric)?;
        }
        self.rpc.register(registry)
    }

    /// Messages the store accepted: `appended` holds one entry per `puts` entry.
    pub fn record_in(&self, puts: &[PutMessage], appended: &[store::AppendedMessage]) {
        // A batch's messages share their labels, so the series are looked up once for each
        // run of equal labels rather than three times per message.
        let mut rest = puts.iter().zip(appended).peekable();
        while let Some((put, stored)) = rest.next() {
            let labels = in_labels(put);
            let sizes = self.message_size.with_label_values(&labels);
            let (mut count, mut bytes) = (0u64, 0u64);
            let mut stored = Some(stored);
            while let Some(one) = stored {
                count += 1;
                bytes += one.size as u64;
                sizes.observe(one.size as f64);
                stored = rest
                    .next_if(|(next, _)| in_labels(next) == labels)
                    .map(|(_, one)| one);
            }
            self.messages_in.with_label_values(&labels).inc_by(count);
            self.throughput_in.with_label_values(&labels).inc_by(bytes);
        }
    }

    /// A pull handed `count` messages of `bytes` to `group`.
    pub fn record_out(&self, topic: &str, group: &str, count: usize, bytes: usize) {
        if count == 0 || !self.series.admit(topic, group) {
            return;
        }
        let labels = [topic, group];
        self.messages_out
            .with_label_values(&labels)
            .inc_by(count as u64);
        self.throughput_out
            .with_label_values(&labels)
            .inc_by(bytes as u64);
    }

    /// A message of `topic` consumed by `group` went to the group's dead-letter queue.
    pub fn record_dead_letter(&self, topic: &str, group: &str) {
        if self.series.admit(topic, group) {
            self.send_to_dlq.with_label_values(&[topic, group]).inc();
        }
    }

    /// A transactional message of `topic` was decided: committed or rolled back.
    pub fn record_transaction_end(&self, topic: &str, committed: bool) {
        let counter = if committed {
            &self.commits
        } else {
            &self.rollbacks
        };
        counter.with_label_values(&[topic]).inc();
    }

    /// A timer message of `topic` went on the wheel.
    pub fn record_timer_enqueued(&self, topic: &str) {
        self.timers_enqueued.with_label_values(&[topic]).inc();
    }

    /// A due timer message was put into `topic`.
    pub fn record_timer_dequeued(&self, topic: &str) {
        self.timers_dequeued.with_label_values(&[topic]).inc();
    }

    /// Counts a pull as held until the guard drops, however its wait ends.
    pub fn pull_held(&self) -> HeldPull {
        self.held_pulls.inc();
        HeldPull(self.held_pulls.clone())
    }

    /// A deleted topic leaves no series behind.
    pub fn forget_topic(&self, topic: &str) {
        for message_type in MESSAGE_TYPES {
            let labels = [topic, message_type];
            let _ = self.messages_in.remove_label_values(&labels);
            let _ = self.throughput_in.remove_label_values(&labels);
            let _ = self.message_size.remove_label_values(&labels);
        }
        for counter in [
            &self.commits,
            &self.rollbacks,
            &self.timers_enqueued,
            &self.timers_dequeued,
        ] {
            let _ = counter.remove_label_values(&[topic]);
        }
        for group in self.series.forget_topic(topic) {
            self.forget_pair(topic, &group);
        }
    }

    /// A deleted group leaves no series behind.
    pub fn forget_group(&self, group: &str) {
        for topic in self.series.forget_group(group) {
            self.forget_pair(&topic, group);
        }
    }

    fn forget_pair(&self, topic: &str, group: &str) {
        let labels = [topic, group];
        let _ = self.messages_out.remove_label_values(&labels);
        let _ = self.throughput_out.remove_label_values(&labels);
        let _ = self.send_to_dlq.remove_label_values(&labels);
    }
}

/// See [`BrokerMetrics::pull_held`].
pub struct HeldPull(IntGauge);

impl Drop for HeldPull {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Registers `broker`'s metrics and feeds the store's flush timings into them.
pub fn register(broker: &Arc<Broker>, registry: &Registry) -> prometheus::Result<()> {
    broker.metrics.register(registry, Arc::downgrade(broker))?;
    // The histogram alone, not the broker: the flush thread must never hold the last
    // reference to the broker that owns its store.
    let flush_latency = broker.metrics.flush_latency.clone();
    broker
        .store
        .set_flush_listener(move |took| flush_latency.observe(took.as_secs_f64() * 1000.0));
    Ok(())
}

/// The value of the one series of `name` whose labels include `labels`.
#[cfg(test)]
pub(crate) fn sample(
    families: &[prometheus::proto::MetricFamily],
    name: &str,
    labels: &[(&str, &str)],
) -> Option<f64> {
    let family = families.iter().find(|f| f.name() == name)?;
    let series = family.get_metric().iter().find(|m| {
        labels.iter().all(|(key, value)| {
            m.get_label()
                .iter()
                .any(|l| l.name() == *key && l.value() == *value)
        })
    })?;
    Some(
        if family.get_field_type() == prometheus::proto::MetricType::COUNTER {
            series.get_counter().get_value()
        } else {
            series.get_gauge().get_value()
        },
    )
}
