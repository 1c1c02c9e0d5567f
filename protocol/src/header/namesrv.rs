//! Name-server headers.

use crate::custom_header;

custom_header! {
    /// GET_ROUTEINFO_BY_TOPIC (105).
    pub struct GetRouteInfoRequestHeader {
        required topic: String = "topic",
        /// 5.x: forces standard JSON in the answer whatever the client version.
        optional accept_standard_json_only: bool = "acceptStandardJsonOnly",
    }
}

custom_header! {
    /// REGISTER_BROKER (103).
    pub struct RegisterBrokerRequestHeader {
        required broker_name: String = "brokerName",
        required broker_addr: String = "brokerAddr",
        required cluster_name: String = "clusterName",
        required ha_server_addr: String = "haServerAddr",
        required broker_id: i64 = "brokerId",
        optional heartbeat_timeout_millis: i64 = "heartbeatTimeoutMillis",
        /// Absent marks an old broker.
        optional enable_acting_master: bool = "enableActingMaster",
        optional compressed: bool = "compressed",
        /// Non-zero: `crc32(body) & 0x7FFFFFFF` must match.
        optional body_crc32: i32 = "bodyCrc32",
    }
}

custom_header! {
    pub struct RegisterBrokerResponseHeader {
        optional ha_server_addr: String = "haServerAddr",
        optional master_addr: String = "masterAddr",
    }
}

custom_header! {
    /// UNREGISTER_BROKER (104).
    pub struct UnregisterBrokerRequestHeader {
        required broker_name: String = "brokerName",
        required broker_addr: String = "brokerAddr",
        required cluster_name: String = "clusterName",
        required broker_id: i64 = "brokerId",
    }
}

custom_header! {
    /// QUERY_DATA_VERSION (322).
    pub struct QueryDataVersionRequestHeader {
        required broker_name: String = "brokerName",
        required broker_addr: String = "brokerAddr",
        required cluster_name: String = "clusterName",
        required broker_id: i64 = "brokerId",
    }
}

custom_header! {
    pub struct QueryDataVersionResponseHeader {
        required changed: bool = "changed",
    }
}

custom_header! {
    /// GET_TOPICS_BY_CLUSTER (224).
    pub struct GetTopicsByClusterRequestHeader {
        required cluster: String = "cluster",
    }
}

custom_header! {
    /// DELETE_TOPIC_IN_NAMESRV (216).
    pub struct DeleteTopicFromNamesrvRequestHeader {
        required topic: String = "topic",
        optional cluster_name: String = "clusterName",
    }
}

custom_header! {
    /// PUT_KV_CONFIG (100).
    pub struct PutKvConfigRequestHeader {
        required namespace: String = "namespace",
        required key: String = "key",
        required value: String = "value",
    }
}

custom_header! {
    /// GET_KV_CONFIG (101) and DELETE_KV_CONFIG (102).
    pub struct KvConfigKeyRequestHeader {
        required namespace: String = "namespace",
        required key: String = "key",
    }
}

custom_header! {
    pub struct GetKvConfigResponseHeader {
        optional value: String = "value",
    }
}

custom_header! {
    /// GET_KVLIST_BY_NAMESPACE (219).
    pub struct GetKvListByNamespaceRequestHeader {
        required namespace: String = "namespace",
    }
}

custom_header! {
    /// WIPE_WRITE_PERM_OF_BROKER (205) and ADD_WRITE_PERM_OF_BROKER (327): every queue the
    /// name server lists for this broker name.
    pub struct WritePermOfBrokerRequestHeader {
        required broker_name: String = "brokerName",
    }
}

custom_header! {
    /// WIPE_WRITE_PERM_OF_BROKER's answer: how many topics it changed.
    pub struct WipeWritePermOfBrokerResponseHeader {
        required wipe_topic_count: i32 = "wipeTopicCount",
    }
}

custom_header! {
    /// ADD_WRITE_PERM_OF_BROKER's answer: how many topics it changed.
    pub struct AddWritePermOfBrokerResponseHeader {
        required add_topic_count: i32 = "addTopicCount",
    }
}
