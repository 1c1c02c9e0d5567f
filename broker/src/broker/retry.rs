//! Where a message goes when its consumer gives up on it: back through `%RETRY%<group>`
//! after a growing delay, or, once a group's attempts are spent, into `%DLQ%<group>`, a
//! one-queue topic an operator can read and resend from.

use message::{property, Message};
use protocol::body::{perm, SubscriptionGroupConfig};

use super::topic_config::{DLQ_GROUP_TOPIC_PREFIX, RETRY_GROUP_TOPIC_PREFIX};
use super::Broker;
use crate::error::Result;

pub fn dlq_topic(group: &str) -> String {
    format!("{DLQ_GROUP_TOPIC_PREFIX}{group}")
}

/// The group a retry topic belongs to.
pub fn retry_group(topic: &str) -> Option<&str> {
    topic.strip_prefix(RETRY_GROUP_TOPIC_PREFIX)
}

/// How many attempts a group gets: the client's own setting when it sends one, else the
/// group's `retryMaxTimes` (16 by default).
pub fn max_reconsume_times(client: Option<i32>, group: &SubscriptionGroupConfig) -> i32 {
    client.unwrap_or(group.retry_max_times)
}

/// Moves `message` to the group's dead-letter queue (created on first use: one queue,
/// readable and writable as from RocketMQ 4.9.2), keeping where it came from. Returns the
/// queue id to store it in.
pub fn to_dead_letter(broker: &Broker, group: &str, message: &mut Message) -> Result<i32> {
    let dlq = dlq_topic(group);
    if broker.topics.get(&dlq).is_none() {
        broker.topics.ensure(&dlq, 1, perm::READ | perm::WRITE)?;
        broker.topics_changed.notify_one();
    }
    let origin_topic = message
        .properties
        .get(property::RETRY_TOPIC)
        .unwrap_or(&message.topic)
        .to_string();
    broker.metrics.record_dead_letter(&origin_topic, group);
    message
        .properties
        .insert(property::DLQ_ORIGIN_TOPIC, origin_topic);
    if let Some(id) = message.unique_key().map(str::to_string) {
        message
            .properties
            .insert(property::DLQ_ORIGIN_MESSAGE_ID, id);
    }
    message.properties.remove(property::DELAY);
    message.topic = dlq.into();
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_setting_wins_over_the_group() {
        let mut group = SubscriptionGroupConfig::named("g");
        group.retry_max_times = 5;
        assert_eq!(max_reconsume_times(None, &group), 5);
        assert_eq!(max_reconsume_times(Some(2), &group), 2);
        assert_eq!(retry_group("%RETRY%g"), Some("g"));
        assert_eq!(retry_group("T"), None);
        assert_eq!(dlq_topic("g"), "%DLQ%g");
    }
}
