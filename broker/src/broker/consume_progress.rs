//! A consumer group's progress on a topic, queue by queue: what GET_CONSUME_STATS (208)
//! answers mqadmin's `consumerProgress` with, and what the metrics endpoint's lag gauges
//! are computed from. One place, so mqadmin, `rocketry admin consumer lag` and Prometheus
//! always agree.

use std::collections::BTreeSet;

use protocol::body::admin::{ConsumeStats, OffsetWrapper};
use protocol::body::MessageQueue;

use crate::broker::Broker;

pub fn queue(broker: &Broker, topic: &str, queue_id: i32) -> MessageQueue {
    MessageQueue {
        topic: topic.to_string(),
        broker_name: broker.config.broker_name.clone(),
        queue_id,
    }
}

/// One queue as a group sees it: the queue's max offset, the group's committed offset (0
/// when none), where its last pull left off (never below the committed offset) and the
/// store time of the last message the group consumed, as Java 5.x's `getConsumeStats`.
pub fn offsets_of(broker: &Broker, group: &str, topic: &str, queue_id: i32) -> OffsetWrapper {
    let store = &broker.store;
    let broker_offset = store.max_offset(topic, queue_id).max(0);
    let consumer_offset = broker
        .offsets
        .query(topic, group, queue_id)
        .unwrap_or(0)
        .max(0);
    let last_timestamp = if consumer_offset > 0 {
        store
            .store_timestamp_at(topic, queue_id, consumer_offset - 1)
            .unwrap_or(0)
    } else {
        0
    };
    let pull_offset = broker
        .offsets
        .query_pulled(topic, group, queue_id)
        .map_or(consumer_offset, |pulled| {
            pulled.clamp(consumer_offset, broker_offset.max(consumer_offset))
        });
    OffsetWrapper {
        broker_offset,
        consumer_offset,
        pull_offset,
        last_timestamp,
    }
}

/// The topics a group online with subscriptions subscribes to; `None` when any topic counts.
pub fn subscribed_topics(broker: &Broker, group: &str) -> Option<BTreeSet<String>> {
    broker
        .clients
        .consumer_group(group)
        .filter(|g| !g.subscriptions.is_empty())
        .map(|g| g.subscriptions.keys().cloned().collect())
}

/// The group's progress on each of `topic`'s read queues and its pull rate, as
/// GET_CONSUME_STATS reports them; `None` for a topic the broker does not have, or one the group, online with
/// subscriptions (`subscribed`), does not subscribe to.
pub fn topic_progress(
    broker: &Broker,
    group: &str,
    topic: &str,
    subscribed: Option<&BTreeSet<String>>,
) -> Option<ConsumeStats> {
    let config = broker.topics.get(topic)?;
    if subscribed.is_some_and(|s| !s.contains(topic)) {
        return None;
    }
    let mut stats = ConsumeStats {
        consume_tps: broker.stats.group_get_tps(topic, group),
        ..ConsumeStats::default()
    };
    for queue_id in 0..config.read_queue_nums {
        stats.offset_table.insert(
            queue(broker, topic, queue_id),
            offsets_of(broker, group, topic, queue_id),
        );
    }
    Some(stats)
}
