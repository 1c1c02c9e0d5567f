//! Client-management headers, including the requests a broker sends to a client.

use crate::custom_header;

custom_header! {
    /// UNREGISTER_CLIENT (35). Note the capital `ID` in the Java field name.
    pub struct UnregisterClientRequestHeader {
        required client_id: String = "clientID",
        optional producer_group: String = "producerGroup",
        optional consumer_group: String = "consumerGroup",
    }
}

custom_header! {
    /// NOTIFY_CONSUMER_IDS_CHANGED (40), broker to client, oneway.
    pub struct NotifyConsumerIdsChangedRequestHeader {
        required consumer_group: String = "consumerGroup",
    }
}

custom_header! {
    /// CHECK_TRANSACTION_STATE (39), broker to producer, oneway.
    pub struct CheckTransactionStateRequestHeader {
        required tran_state_table_offset: i64 = "tranStateTableOffset",
        required commit_log_offset: i64 = "commitLogOffset",
        optional msg_id: String = "msgId",
        optional transaction_id: String = "transactionId",
        optional offset_msg_id: String = "offsetMsgId",
        optional topic: String = "topic",
        optional broker_name: String = "bname",
    }
}

custom_header! {
    /// GET_CONSUMER_RUNNING_INFO (307), relayed by the broker to one client.
    pub struct GetConsumerRunningInfoRequestHeader {
        required consumer_group: String = "consumerGroup",
        required client_id: String = "clientId",
        optional jstack_enable: bool = "jstackEnable",
    }
}

custom_header! {
    /// GET_CONSUMER_CONNECTION_LIST (203).
    pub struct GetConsumerConnectionListRequestHeader {
        required consumer_group: String = "consumerGroup",
    }
}

custom_header! {
    /// GET_PRODUCER_CONNECTION_LIST (204).
    pub struct GetProducerConnectionListRequestHeader {
        required producer_group: String = "producerGroup",
    }
}
