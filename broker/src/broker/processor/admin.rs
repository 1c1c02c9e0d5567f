//! The admin and query requests this broker serves so far: topic management
//! (UPDATE_AND_CREATE_TOPIC 17, DELETE_TOPIC_IN_BROKER 215, GET_ALL_TOPIC_CONFIG 21,
//! GET_TOPIC_CONFIG 351), broker state (GET_BROKER_RUNTIME_INFO 28, GET_BROKER_CONFIG 26)
//! and messages by id or key (VIEW_MESSAGE_BY_ID 33, QUERY_MESSAGE 12).

use std::collections::BTreeMap;

use bytes::BytesMut;
use protocol::body::{self, KvTable, TopicConfig, TopicFilterType};
use protocol::header::{
    CreateTopicRequestHeader, DeleteTopicRequestHeader, GetAllTopicConfigResponseHeader,
    GetTopicConfigRequestHeader, QueryMessageRequestHeader, QueryMessageResponseHeader,
    ViewMessageRequestHeader,
};
use protocol::{RemotingCommand, RequestCode, ResponseCode};
use tracing::info;

use super::{header, reply, success};
use crate::broker::topic_config::validate_topic_name;
use crate::broker::Broker;

pub fn process(broker: &Broker, code: RequestCode, request: &RemotingCommand) -> RemotingCommand {
    match code {
        RequestCode::UpdateAndCreateTopic => create_topic(broker, request),
        RequestCode::DeleteTopicInBroker => {
            let h: DeleteTopicRequestHeader = header!(request);
            match broker.topics.delete(&h.topic) {
                Ok(_) => {
                    broker.offsets.remove_topic(&h.topic);
                    broker.topics_changed.notify_one();
                    info!(topic = %h.topic, "topic deleted");
                    success(request)
                }
                Err(error) => reply(request, ResponseCode::SystemError, error.to_string()),
            }
        }
        RequestCode::GetAllTopicConfig => {
            let table = broker.topics.snapshot();
            let total = table.topic_config_table.len() as i32;
            success(request)
                .with_header(&GetAllTopicConfigResponseHeader {
                    total_topic_num: Some(total),
                })
                .with_body(body::to_json(&table))
        }
        RequestCode::GetTopicConfig => {
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
        RequestCode::GetBrokerRuntimeInfo => success(request).with_body(body::to_json(&KvTable {
            table: runtime_info(broker),
        })),
        RequestCode::GetBrokerConfig => {
            let mut text = String::new();
            for (key, value) in broker.config.entries() {
                text.push_str(&format!("{key}={value}\n"));
            }
            success(request).with_body(text.into_bytes())
        }
        RequestCode::ViewMessageById => {
            let h: ViewMessageRequestHeader = header!(request);
            let message = u64::try_from(h.offset)
                .ok()
                .and_then(|offset| broker.store.message_at(offset));
            match message {
                Some(bytes) => success(request).with_body(bytes),
                None => reply(
                    request,
                    ResponseCode::SystemError,
                    format!("can not find message by the offset, {}", h.offset),
                ),
            }
        }
        _ => query_message(broker, request),
    }
}

/// GET_TOPIC_CONFIG's body (`TopicConfigAndQueueMapping`): the topic config's fields, flat.
#[derive(serde::Serialize)]
struct TopicConfigAndMapping {
    #[serde(flatten)]
    topic_config: TopicConfig,
}

fn create_topic(broker: &Broker, request: &RemotingCommand) -> RemotingCommand {
    let h: CreateTopicRequestHeader = header!(request);
    if let Err(reason) = validate_topic_name(&h.topic) {
        return reply(request, ResponseCode::InvalidParameter, reason);
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
    let filter = TopicFilterType::from_name(&h.topic_filter_type).unwrap_or_default();
    let topic = TopicConfig {
        topic_name: h.topic.clone(),
        read_queue_nums: h.read_queue_nums,
        write_queue_nums: h.write_queue_nums,
        perm: h.perm,
        topic_filter_type: filter,
        topic_sys_flag: h.topic_sys_flag.unwrap_or(0),
        order: h.order,
        attributes: BTreeMap::new(),
    };
    match broker.topics.upsert(topic) {
        Ok(changed) => {
            if changed {
                info!(topic = %h.topic, read = h.read_queue_nums, write = h.write_queue_nums, "topic created or updated");
                broker.topics_changed.notify_one();
            }
            success(request)
        }
        Err(error) => reply(request, ResponseCode::SystemError, error.to_string()),
    }
}

fn query_message(broker: &Broker, request: &RemotingCommand) -> RemotingCommand {
    let h: QueryMessageRequestHeader = header!(request);
    let max = if h.unique_key_query == Some(true) {
        32
    } else {
        h.max_num.max(1) as usize
    };
    let found =
        broker
            .store
            .query_by_key(&h.topic, &h.key, max, h.begin_timestamp, h.end_timestamp);
    if found.messages.is_empty() {
        return reply(
            request,
            ResponseCode::QueryNotFound,
            "can not find message, maybe time range not correct",
        );
    }
    let mut body = BytesMut::new();
    for message in &found.messages {
        body.extend_from_slice(message);
    }
    success(request)
        .with_header(&QueryMessageResponseHeader {
            index_last_update_timestamp: found.index_last_update_timestamp,
            index_last_update_phyoffset: found.index_last_update_physical_offset as i64,
        })
        .with_body(body.freeze())
}

/// What mqadmin's clusterList and brokerStatus read; values are strings, as in Java.
fn runtime_info(broker: &Broker) -> BTreeMap<String, String> {
    let store = &broker.store;
    let mut table = BTreeMap::new();
    let mut put = |key: &str, value: String| {
        table.insert(key.to_string(), value);
    };
    put(
        "brokerVersionDesc",
        format!("Rocketry_{}", env!("CARGO_PKG_VERSION")),
    );
    put("brokerVersion", protocol::version::CURRENT.to_string());
    put(
        "bootTimestamp",
        (now_millis() - broker.uptime().as_millis() as i64).to_string(),
    );
    put("brokerActive", "true".into());
    put(
        "commitLogMinOffset",
        store.commit_log_min_offset().to_string(),
    );
    put(
        "commitLogMaxOffset",
        store.commit_log_max_offset().to_string(),
    );
    // Traffic counters (putTps, msgPutTotal*, ...) are not kept yet; mqadmin prints blanks
    // for keys that are absent rather than figures nobody measured.
    if let Some(percent) =
        store::bench_support::disk_used_percent(&store.config().store_path_root_dir)
    {
        put(
            "commitLogDiskRatio",
            format!("{:.4}", percent as f64 / 100.0),
        );
    }
    table
}

fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
