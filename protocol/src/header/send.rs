//! Producer headers: SEND_MESSAGE (10, long names), SEND_MESSAGE_V2 / SEND_BATCH_MESSAGE
//! (310/320, one-letter names) and their common response.

use crate::code::RequestCode;
use crate::command::ExtFields;
use crate::custom_header;
use crate::error::Result;
use crate::header::{CompactString, CustomHeader};

// Names (group, topic, template, broker) are `CompactString`s: they fit its 24 inline bytes,
// so decoding a send copies them out of the header's fields without an allocation each.
custom_header! {
    /// SEND_MESSAGE (10); the Go client's single-message send.
    pub struct SendMessageRequestHeader {
        required producer_group: CompactString = "producerGroup",
        required topic: CompactString = "topic",
        /// Template topic for auto-creation, normally `TBW102`.
        required default_topic: CompactString = "defaultTopic",
        required default_topic_queue_nums: i32 = "defaultTopicQueueNums",
        /// Negative means "broker picks a writable queue".
        required queue_id: i32 = "queueId",
        required sys_flag: i32 = "sysFlag",
        required born_timestamp: i64 = "bornTimestamp",
        required flag: i32 = "flag",
        optional properties: String = "properties",
        optional reconsume_times: i32 = "reconsumeTimes",
        optional unit_mode: bool = "unitMode",
        optional batch: bool = "batch",
        optional max_reconsume_times: i32 = "maxReconsumeTimes",
        /// 5.x `RpcRequestHeader` broker name.
        optional broker_name: CompactString = "bname",
    }
}

custom_header! {
    /// SEND_MESSAGE_V2 (310) and SEND_BATCH_MESSAGE (320): the same fields under one-letter
    /// names, chosen by Java to shrink every send request.
    pub struct SendMessageRequestHeaderV2 {
        required producer_group: CompactString = "a",
        required topic: CompactString = "b",
        required default_topic: CompactString = "c",
        required default_topic_queue_nums: i32 = "d",
        required queue_id: i32 = "e",
        required sys_flag: i32 = "f",
        required born_timestamp: i64 = "g",
        required flag: i32 = "h",
        optional properties: String = "i",
        optional reconsume_times: i32 = "j",
        optional unit_mode: bool = "k",
        optional max_reconsume_times: i32 = "l",
        optional batch: bool = "m",
        /// 4.9.7 and 5.x only.
        optional broker_name: CompactString = "n",
    }
}

impl From<SendMessageRequestHeaderV2> for SendMessageRequestHeader {
    fn from(v2: SendMessageRequestHeaderV2) -> Self {
        SendMessageRequestHeader {
            producer_group: v2.producer_group,
            topic: v2.topic,
            default_topic: v2.default_topic,
            default_topic_queue_nums: v2.default_topic_queue_nums,
            queue_id: v2.queue_id,
            sys_flag: v2.sys_flag,
            born_timestamp: v2.born_timestamp,
            flag: v2.flag,
            properties: v2.properties,
            reconsume_times: v2.reconsume_times,
            unit_mode: v2.unit_mode,
            batch: v2.batch,
            max_reconsume_times: v2.max_reconsume_times,
            broker_name: v2.broker_name,
        }
    }
}

impl From<SendMessageRequestHeader> for SendMessageRequestHeaderV2 {
    fn from(v1: SendMessageRequestHeader) -> Self {
        SendMessageRequestHeaderV2 {
            producer_group: v1.producer_group,
            topic: v1.topic,
            default_topic: v1.default_topic,
            default_topic_queue_nums: v1.default_topic_queue_nums,
            queue_id: v1.queue_id,
            sys_flag: v1.sys_flag,
            born_timestamp: v1.born_timestamp,
            flag: v1.flag,
            properties: v1.properties,
            reconsume_times: v1.reconsume_times,
            unit_mode: v1.unit_mode,
            batch: v1.batch,
            max_reconsume_times: v1.max_reconsume_times,
            broker_name: v1.broker_name,
        }
    }
}

impl SendMessageRequestHeader {
    /// Reads a send header under whichever naming the request code uses: Java decodes 310
    /// **and** 320 with the short names, everything else with the long ones.
    pub fn parse(code: i32, ext_fields: &ExtFields) -> Result<Self> {
        if code == RequestCode::SendMessageV2.as_i32()
            || code == RequestCode::SendBatchMessage.as_i32()
        {
            SendMessageRequestHeaderV2::from_ext_fields(ext_fields).map(Into::into)
        } else {
            SendMessageRequestHeader::from_ext_fields(ext_fields)
        }
    }
}

custom_header! {
    /// Response to every send code. `MSG_REGION` and `TRACE_ON` are not Java header fields but
    /// the Java broker adds them to every send response and clients read them from extFields.
    pub struct SendMessageResponseHeader {
        /// Offset message id(s) of the stored message(s), comma-joined for a batch.
        required msg_id: String = "msgId",
        required queue_id: i32 = "queueId",
        /// For a batch, the offset of the first message.
        required queue_offset: i64 = "queueOffset",
        /// The message's UNIQ_KEY.
        optional transaction_id: String = "transactionId",
        optional batch_uniq_id: String = "batchUniqId",
        optional recall_handle: String = "recallHandle",
        optional msg_region: CompactString = "MSG_REGION",
        optional trace_on: CompactString = "TRACE_ON",
    }
}
