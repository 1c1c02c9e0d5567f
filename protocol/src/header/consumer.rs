//! Consumer headers: pull, offsets, send-back.

use crate::custom_header;
use crate::header::BoundaryType;

custom_header! {
    /// PULL_MESSAGE (11) and LITE_PULL_MESSAGE (361).
    pub struct PullMessageRequestHeader {
        required consumer_group: String = "consumerGroup",
        required topic: String = "topic",
        required queue_id: i32 = "queueId",
        /// Next consume-queue index wanted.
        required queue_offset: i64 = "queueOffset",
        required max_msg_nums: i32 = "maxMsgNums",
        /// See [`crate::header::pull_sys_flag`].
        required sys_flag: i32 = "sysFlag",
        required commit_offset: i64 = "commitOffset",
        required suspend_timeout_millis: i64 = "suspendTimeoutMillis",
        optional subscription: String = "subscription",
        required sub_version: i64 = "subVersion",
        optional expression_type: String = "expressionType",
        optional max_msg_bytes: i32 = "maxMsgBytes",
        optional request_source: i32 = "requestSource",
        /// Misspelt in Java, and therefore on the wire.
        optional proxy_forward_client_id: String = "proxyFrowardClientId",
        optional broker_name: String = "bname",
    }
}

custom_header! {
    pub struct PullMessageResponseHeader {
        /// A single-master server always answers 0 (master).
        required suggest_which_broker_id: i64 = "suggestWhichBrokerId",
        required next_begin_offset: i64 = "nextBeginOffset",
        required min_offset: i64 = "minOffset",
        required max_offset: i64 = "maxOffset",
        optional offset_delta: i64 = "offsetDelta",
        optional topic_sys_flag: i32 = "topicSysFlag",
        optional group_sys_flag: i32 = "groupSysFlag",
        optional forbidden_type: i32 = "forbiddenType",
    }
}

custom_header! {
    /// QUERY_CONSUMER_OFFSET (14).
    pub struct QueryConsumerOffsetRequestHeader {
        required consumer_group: String = "consumerGroup",
        required topic: String = "topic",
        required queue_id: i32 = "queueId",
        /// 5.x.
        optional set_zero_if_not_found: bool = "setZeroIfNotFound",
        optional broker_name: String = "bname",
    }
}

custom_header! {
    pub struct QueryConsumerOffsetResponseHeader {
        required offset: i64 = "offset",
    }
}

custom_header! {
    /// UPDATE_CONSUMER_OFFSET (15); the Java push consumer sends it oneway.
    pub struct UpdateConsumerOffsetRequestHeader {
        required consumer_group: String = "consumerGroup",
        required topic: String = "topic",
        required queue_id: i32 = "queueId",
        required commit_offset: i64 = "commitOffset",
        optional broker_name: String = "bname",
    }
}

custom_header! {
    /// GET_MAX_OFFSET (30).
    pub struct GetMaxOffsetRequestHeader {
        required topic: String = "topic",
        required queue_id: i32 = "queueId",
        /// 5.x, default true.
        optional committed: bool = "committed",
        optional broker_name: String = "bname",
    }
}

custom_header! {
    pub struct GetMaxOffsetResponseHeader {
        required offset: i64 = "offset",
    }
}

custom_header! {
    /// GET_MIN_OFFSET (31).
    pub struct GetMinOffsetRequestHeader {
        required topic: String = "topic",
        required queue_id: i32 = "queueId",
        optional broker_name: String = "bname",
    }
}

custom_header! {
    pub struct GetMinOffsetResponseHeader {
        required offset: i64 = "offset",
    }
}

custom_header! {
    /// SEARCH_OFFSET_BY_TIMESTAMP (29).
    pub struct SearchOffsetRequestHeader {
        required topic: String = "topic",
        required queue_id: i32 = "queueId",
        required timestamp: i64 = "timestamp",
        /// 5.x; absent means LOWER.
        optional boundary_type: BoundaryType = "boundaryType",
        optional broker_name: String = "bname",
    }
}

custom_header! {
    pub struct SearchOffsetResponseHeader {
        required offset: i64 = "offset",
    }
}

custom_header! {
    /// GET_EARLIEST_MSG_STORETIME (32).
    pub struct GetEarliestMsgStoretimeRequestHeader {
        required topic: String = "topic",
        required queue_id: i32 = "queueId",
        optional broker_name: String = "bname",
    }
}

custom_header! {
    pub struct GetEarliestMsgStoretimeResponseHeader {
        required timestamp: i64 = "timestamp",
    }
}

custom_header! {
    /// GET_CONSUMER_LIST_BY_GROUP (38).
    pub struct GetConsumerListByGroupRequestHeader {
        required consumer_group: String = "consumerGroup",
    }
}

custom_header! {
    /// CONSUMER_SEND_MSG_BACK (36).
    pub struct ConsumerSendMsgBackRequestHeader {
        /// Commit-log offset of the failed message.
        required offset: i64 = "offset",
        required group: String = "group",
        /// 0 = broker picks `3 + reconsumeTimes`; negative = straight to the DLQ.
        required delay_level: i32 = "delayLevel",
        optional origin_msg_id: String = "originMsgId",
        optional origin_topic: String = "originTopic",
        optional unit_mode: bool = "unitMode",
        optional max_reconsume_times: i32 = "maxReconsumeTimes",
        optional broker_name: String = "bname",
    }
}

custom_header! {
    /// QUERY_MESSAGE (12). `_UNIQUE_KEY_QUERY` is not a Java field but an extField the client
    /// adds beside the header.
    pub struct QueryMessageRequestHeader {
        required topic: String = "topic",
        required key: String = "key",
        required max_num: i32 = "maxNum",
        required begin_timestamp: i64 = "beginTimestamp",
        required end_timestamp: i64 = "endTimestamp",
        optional unique_key_query: bool = "_UNIQUE_KEY_QUERY",
    }
}

custom_header! {
    pub struct QueryMessageResponseHeader {
        required index_last_update_timestamp: i64 = "indexLastUpdateTimestamp",
        required index_last_update_phyoffset: i64 = "indexLastUpdatePhyoffset",
    }
}

custom_header! {
    /// VIEW_MESSAGE_BY_ID (33).
    pub struct ViewMessageRequestHeader {
        /// Commit-log offset.
        required offset: i64 = "offset",
        optional topic: String = "topic",
    }
}

custom_header! {
    /// END_TRANSACTION (37), sent oneway.
    pub struct EndTransactionRequestHeader {
        required producer_group: String = "producerGroup",
        required tran_state_table_offset: i64 = "tranStateTableOffset",
        required commit_log_offset: i64 = "commitLogOffset",
        /// A transaction sysflag value: 0 unknown, 8 commit, 12 rollback.
        required commit_or_rollback: i32 = "commitOrRollback",
        optional from_transaction_check: bool = "fromTransactionCheck",
        required msg_id: String = "msgId",
        optional transaction_id: String = "transactionId",
        optional topic: String = "topic",
        optional broker_name: String = "bname",
    }
}
