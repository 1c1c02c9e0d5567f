//! UPDATE_AND_CREATE_SUBSCRIPTIONGROUP's body and each entry of
//! GET_ALL_SUBSCRIPTIONGROUP_CONFIG: a consumer group's settings on a broker.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::lenient;

fn yes() -> bool {
    true
}

fn one() -> i32 {
    1
}

fn one_i64() -> i64 {
    1
}

fn sixteen() -> i32 {
    16
}

fn fifteen() -> i64 {
    15
}

/// Defaults are RocketMQ's (`SubscriptionGroupConfig`): retries go through one retry queue,
/// 16 attempts before the dead-letter queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionGroupConfig {
    #[serde(default, deserialize_with = "lenient::string")]
    pub group_name: String,
    #[serde(default = "yes", deserialize_with = "lenient::bool")]
    pub consume_enable: bool,
    #[serde(default = "yes", deserialize_with = "lenient::bool")]
    pub consume_from_min_enable: bool,
    #[serde(default = "yes", deserialize_with = "lenient::bool")]
    pub consume_broadcast_enable: bool,
    #[serde(default, deserialize_with = "lenient::bool")]
    pub consume_message_orderly: bool,
    #[serde(default = "one", deserialize_with = "lenient::i32")]
    pub retry_queue_nums: i32,
    #[serde(default = "sixteen", deserialize_with = "lenient::i32")]
    pub retry_max_times: i32,
    #[serde(default, deserialize_with = "lenient::i64")]
    pub broker_id: i64,
    #[serde(default = "one_i64", deserialize_with = "lenient::i64")]
    pub which_broker_when_consume_slowly: i64,
    #[serde(default = "yes", deserialize_with = "lenient::bool")]
    pub notify_consumer_ids_changed_enable: bool,
    #[serde(default, deserialize_with = "lenient::i32")]
    pub group_sys_flag: i32,
    #[serde(default = "fifteen", deserialize_with = "lenient::i64")]
    pub consume_timeout_minute: i64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, String>,
}

impl SubscriptionGroupConfig {
    /// A group with RocketMQ's defaults.
    pub fn named(group_name: impl Into<String>) -> Self {
        SubscriptionGroupConfig {
            group_name: group_name.into(),
            consume_enable: true,
            consume_from_min_enable: true,
            consume_broadcast_enable: true,
            consume_message_orderly: false,
            retry_queue_nums: one(),
            retry_max_times: sixteen(),
            broker_id: 0,
            which_broker_when_consume_slowly: 1,
            notify_consumer_ids_changed_enable: true,
            group_sys_flag: 0,
            consume_timeout_minute: fifteen(),
            attributes: BTreeMap::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_fields_take_rocketmq_defaults() {
        let config: SubscriptionGroupConfig =
            crate::body::from_json(br#"{"groupName":"g","retryMaxTimes":"3"}"#).unwrap();
        assert_eq!(config.retry_max_times, 3);
        assert_eq!(config.retry_queue_nums, 1);
        assert!(config.consume_enable);
        let mut expected = SubscriptionGroupConfig::named("g");
        expected.retry_max_times = 3;
        assert_eq!(config, expected);
    }
}
