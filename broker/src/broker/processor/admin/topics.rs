//! Topic management: UPDATE_AND_CREATE_TOPIC 17, DELETE_TOPIC_IN_BROKER 215,
//! GET_ALL_TOPIC_CONFIG 21, GET_TOPIC_CONFIG 351 and GET_TOPIC_STATS_INFO 202.

use std::collections::BTreeMap;

use protocol::body::admin::{self, TopicOffset, TopicStatsTable};
use protocol::body::{self, perm, MessageQueue, TopicConfig, TopicFilterType};
use protocol::header::{
    CreateTopicRequestHeader, DeleteTopicRequestHeader, GetAllTopicConfigResponseHeader,
    GetTopicConfigRequestHeader, TopicRequestHeader,
};
use protocol::{RemotingCommand, ResponseCode};
use tracing::info;

use crate::broker::processor::{header, reply, success};
use crate::broker::topic_config::{validate_topic_name, NOT_ALLOWED_SEND_TOPICS};
use crate::broker::Broker;

pub fn create(broker: &Broker, request: &RemotingCommand) -> RemotingCommand {
    let h: CreateTopicRequestHeader = header!(request);
    if let Err(reason) = validate_topic_name(&h.topic) {
        return reply(request, ResponseCode::InvalidParameter, reason);
    }
    // TopicValidator.isSystemTopic: the broker's own topics are not for mqadmin to reshape.
    if NOT_ALLOWED_SEND_TOPICS.contains(&h.topic.as_str()) {
        return reply(
            request,
            ResponseCode::InvalidParameter,
            format!("The topic[{}] is conflict with system topic.", h.topic),
        );
    }
    if h.read_queue_nums <= 0 || h.write_queue_nums <= 0 {
        return reply(
            request,
            ResponseCode::InvalidParameter,
            format!(
                "readQueueNums {} and writeQueueNums {} must be positive",
                h.read_queue_nums, h.write_queue_nums
            ),
        );
    }
    let all_bits = perm::PRIORITY | perm::READ | perm::WRITE | perm::INHERIT;
    if h.perm & !all_bits != 0 {
        return reply(
            request,
            ResponseCode::InvalidParameter,
            format!(
                "perm {} has bits other than 8 (priority), 4 (read), 2 (write), 1 (inherit)",
                h.perm
            ),
        );
    }
    let filter = TopicFilterType::from_name(&h.topic_filter_type).unwrap_or_default();
    let topic = TopicConfig {
        topic_name: h.topic.clone(),
        read_queue_nums: h.read_queue_nums,
        write_queue_nums: h.write_queue_nums,
        perm: h.perm,
        topic_filter_type: filter,
        topic_sys_flag: h.topic_sys_flag.unwrap_or(0),
        order: h.order,
        attributes: parse_attributes(h.attributes.as_deref()),
    };
    match broker.topics.upsert(topic) {
        Ok(changed) => {
            if changed {
                info!(topic = %h.topic, read = h.read_queue_nums, write = h.write_queue_nums,
                    perm = h.perm, order = h.order, "topic created or updated");
                broker.topics_changed.notify_one();
            }
            success(request)
        }
        Err(error) => reply(request, ResponseCode::SystemError, error.to_string()),
    }
}

/// 5.x `attributes` header: `+key=value` entries joined by `,` (`-key` removes, which for a
/// new config means nothing to keep).
fn parse_attributes(text: Option<&str>) -> BTreeMap<String, String> {
    let mut attributes = BTreeMap::new();
    for entry in text.unwrap_or("").split(',') {
        if let Some((key, value)) = entry
            .trim()
            .strip_prefix('+')
            .and_then(|e| e.split_once('='))
        {
            attributes.insert(key.to_string(), value.to_string());
        }
    }
    attributes
}

pub fn delete(broker: &Broker, request: &RemotingCommand) -> RemotingCommand {
    let h: DeleteTopicRequestHeader = header!(request);
    match broker.topics.delete(&h.topic) {
        Ok(_) => {
            // Its messages go with it, as in RocketMQ: a topic created again starts empty.
            if let Err(error) = broker.store.delete_topic(&h.topic) {
                return reply(request, ResponseCode::SystemError, error.with_sources());
            }
            broker.offsets.remove_topic(&h.topic);
            broker.metrics.forget_topic(&h.topic);
            broker.topics_changed.notify_one();
            info!(topic = %h.topic, "topic deleted");
            success(request)
        }
        Err(error) => reply(request, ResponseCode::SystemError, error.to_string()),
    }
}

pub fn all(broker: &Broker, request: &RemotingCommand) -> RemotingCommand {
    let table = broker.topics.snapshot();
    let total = table.topic_config_table.len() as i32;
    success(request)
        .with_header(&GetAllTopicConfigResponseHeader {
            total_topic_num: Some(total),
        })
        .with_body(body::to_json(&table))
}

/// GET_TOPIC_CONFIG's body (`TopicConfigAndQueueMapping`): the topic config's fields, flat.
#[derive(serde::Serialize)]
struct TopicConfigAndMapping {
    #[serde(flatten)]
    topic_config: TopicConfig,
}

pub fn one(broker: &Broker, request: &RemotingCommand) -> RemotingCommand {
    let h: GetTopicConfigRequestHeader = header!(request);
    match broker.topics.get(&h.topic) {
        Some(topic) => success(request).with_body(body::to_json(&TopicConfigAndMapping {
            topic_config: topic,
        })),
        None => reply(
            request,
            ResponseCode::TopicNotExist,
            format!("No topic in this broker. topic: {}", h.topic),
        ),
    }
}

/// Min and max offset of every queue, `0..max(read, write)` as Java reports them, with the
/// store time of each queue's last message.
pub fn stats(broker: &Broker, request: &RemotingCommand) -> RemotingCommand {
    let h: TopicRequestHeader = header!(request);
    let Some(topic) = broker.topics.get(&h.topic) else {
        return reply(
            request,
            ResponseCode::TopicNotExist,
            format!("topic[{}] not exist", h.topic),
        );
    };
    let store = &broker.store;
    let mut table = TopicStatsTable::default();
    for queue_id in 0..topic.read_queue_nums.max(topic.write_queue_nums) {
        let min_offset = store.min_offset(&h.topic, queue_id).max(0);
        let max_offset = store.max_offset(&h.topic, queue_id).max(0);
        let last_update_timestamp = if max_offset > 0 {
            store
                .store_timestamp_at(&h.topic, queue_id, max_offset - 1)
                .unwrap_or(0)
        } else {
            0
        };
        table.offset_table.insert(
            MessageQueue {
                topic: h.topic.clone(),
                broker_name: broker.config.broker_name.clone(),
                queue_id,
            },
            TopicOffset {
                min_offset,
                max_offset,
                last_update_timestamp,
            },
        );
    }
    success(request).with_body(admin::encode(&table))
}
