//! Messages by id or key: VIEW_MESSAGE_BY_ID 33 and QUERY_MESSAGE 12.

use bytes::BytesMut;
use protocol::header::{
    QueryMessageRequestHeader, QueryMessageResponseHeader, ViewMessageRequestHeader,
};
use protocol::{RemotingCommand, ResponseCode};

use crate::broker::processor::{header, reply, success};
use crate::broker::Broker;

/// How many messages a unique-key lookup returns (`defaultQueryMaxNum` in Java).
const UNIQUE_KEY_QUERY_MAX: usize = 32;

pub fn view_by_id(broker: &Broker, request: &RemotingCommand) -> RemotingCommand {
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

pub fn query(broker: &Broker, request: &RemotingCommand) -> RemotingCommand {
    let h: QueryMessageRequestHeader = header!(request);
    let max = if h.unique_key_query == Some(true) {
        UNIQUE_KEY_QUERY_MAX
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
