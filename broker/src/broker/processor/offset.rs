//! Consumer offsets (QUERY_CONSUMER_OFFSET 14, UPDATE_CONSUMER_OFFSET 15) and queue offset
//! lookups (GET_MAX_OFFSET 30, GET_MIN_OFFSET 31, SEARCH_OFFSET_BY_TIMESTAMP 29,
//! GET_EARLIEST_MSG_STORETIME 32).

use protocol::header::{
    GetEarliestMsgStoretimeRequestHeader, GetEarliestMsgStoretimeResponseHeader,
    GetMaxOffsetRequestHeader, GetMaxOffsetResponseHeader, GetMinOffsetRequestHeader,
    GetMinOffsetResponseHeader, QueryConsumerOffsetRequestHeader,
    QueryConsumerOffsetResponseHeader, SearchOffsetRequestHeader, SearchOffsetResponseHeader,
    UpdateConsumerOffsetRequestHeader,
};
use protocol::{RemotingCommand, RequestCode, ResponseCode};

use super::{header, reply, success};
use crate::broker::{page_cache, Broker};

pub fn process(broker: &Broker, code: RequestCode, request: &RemotingCommand) -> RemotingCommand {
    match code {
        RequestCode::QueryConsumerOffset => query(broker, request),
        RequestCode::UpdateConsumerOffset => update(broker, request),
        RequestCode::GetMaxOffset => {
            let h: GetMaxOffsetRequestHeader = header!(request);
            success(request).with_header(&GetMaxOffsetResponseHeader {
                offset: broker.store.max_offset(&h.topic, h.queue_id),
            })
        }
        RequestCode::GetMinOffset => {
            let h: GetMinOffsetRequestHeader = header!(request);
            success(request).with_header(&GetMinOffsetResponseHeader {
                offset: broker.store.min_offset(&h.topic, h.queue_id),
            })
        }
        RequestCode::SearchOffsetByTimestamp => {
            let h: SearchOffsetRequestHeader = header!(request);
            success(request).with_header(&SearchOffsetResponseHeader {
                offset: broker
                    .store
                    .offset_by_timestamp(&h.topic, h.queue_id, h.timestamp),
            })
        }
        _ => {
            let h: GetEarliestMsgStoretimeRequestHeader = header!(request);
            match broker.store.earliest_message_time(&h.topic, h.queue_id) {
                Some(timestamp) => success(request)
                    .with_header(&GetEarliestMsgStoretimeResponseHeader { timestamp }),
                None => reply(
                    request,
                    ResponseCode::SystemError,
                    format!(
                        "Failed to get earliest message store time, topic: {}, queueId: {}",
                        h.topic, h.queue_id
                    ),
                ),
            }
        }
    }
}

/// A group with no committed offset starts at 0 when the queue still begins at 0 and that
/// first message is still in memory, as RocketMQ's broker does; so a new group with
/// CONSUME_FROM_LAST_OFFSET still reads what a young topic already holds.
fn query(broker: &Broker, request: &RemotingCommand) -> RemotingCommand {
    let h: QueryConsumerOffsetRequestHeader = header!(request);
    if let Some(offset) = broker
        .offsets
        .query(&h.topic, &h.consumer_group, h.queue_id)
    {
        return success(request).with_header(&QueryConsumerOffsetResponseHeader { offset });
    }
    let not_found = || {
        reply(
            request,
            ResponseCode::QueryNotFound,
            "Not found, maybe this group consumer boot first",
        )
    };
    if h.set_zero_if_not_found == Some(false) {
        return not_found();
    }
    let store = &broker.store;
    let starts_at_zero = store.min_offset(&h.topic, h.queue_id) <= 0;
    let first_in_memory = store
        .queue_entry(&h.topic, h.queue_id, 0)
        .is_none_or(|entry| {
            let behind = store
                .commit_log_max_offset()
                .saturating_sub(entry.physical_offset);
            page_cache::holds(behind, broker.config.access_message_in_memory_max_ratio)
        });
    if starts_at_zero && first_in_memory {
        success(request).with_header(&QueryConsumerOffsetResponseHeader { offset: 0 })
    } else {
        not_found()
    }
}

fn update(broker: &Broker, request: &RemotingCommand) -> RemotingCommand {
    let h: UpdateConsumerOffsetRequestHeader = header!(request);
    if broker.topics.get(&h.topic).is_none() {
        return reply(
            request,
            ResponseCode::TopicNotExist,
            format!("Topic {} not exist!", h.topic),
        );
    }
    broker
        .offsets
        .commit(&h.topic, &h.consumer_group, h.queue_id, h.commit_offset);
    success(request)
}
