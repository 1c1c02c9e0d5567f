//! Broker administration headers used by mqadmin and the operator.

use crate::custom_header;

custom_header! {
    /// UPDATE_AND_CREATE_TOPIC (17).
    pub struct CreateTopicRequestHeader {
        required topic: String = "topic",
        required default_topic: String = "defaultTopic",
        required read_queue_nums: i32 = "readQueueNums",
        required write_queue_nums: i32 = "writeQueueNums",
        /// `PermName` bits: 4 read, 2 write, 1 inherit.
        required perm: i32 = "perm",
        /// `SINGLE_TAG` or `MULTI_TAG`.
        required topic_filter_type: String = "topicFilterType",
        optional topic_sys_flag: i32 = "topicSysFlag",
        required order: bool = "order",
        /// 5.x, e.g. `+message.type=NORMAL`.
        optional attributes: String = "attributes",
        optional force: bool = "force",
    }
}

impl CreateTopicRequestHeader {
    /// A readable and writable topic of `queues` queues, as `mqadmin updateTopic` makes by
    /// default.
    pub fn read_write(topic: impl Into<String>, queues: i32) -> Self {
        CreateTopicRequestHeader {
            topic: topic.into(),
            default_topic: "TBW102".into(),
            read_queue_nums: queues,
            write_queue_nums: queues,
            perm: crate::body::perm::READ | crate::body::perm::WRITE,
            topic_filter_type: "SINGLE_TAG".into(),
            order: false,
            ..Default::default()
        }
    }
}

custom_header! {
    /// DELETE_TOPIC_IN_BROKER (215).
    pub struct DeleteTopicRequestHeader {
        required topic: String = "topic",
    }
}

custom_header! {
    /// GET_TOPIC_STATS_INFO (202) and QUERY_TOPIC_CONSUME_BY_WHO (300).
    pub struct TopicRequestHeader {
        required topic: String = "topic",
    }
}

custom_header! {
    /// GET_TOPIC_CONFIG (351, 5.x).
    pub struct GetTopicConfigRequestHeader {
        required topic: String = "topic",
        optional logical: bool = "lo",
    }
}

custom_header! {
    /// GET_ALL_TOPIC_CONFIG (21) paging fields (5.x); older clients send none.
    pub struct GetAllTopicConfigRequestHeader {
        optional topic_seq: i32 = "topicSeq",
        optional data_version: String = "dataVersion",
        optional max_topic_num: i32 = "maxTopicNum",
    }
}

custom_header! {
    /// A 5.x client takes a single page as everything when `totalTopicNum` is absent.
    pub struct GetAllTopicConfigResponseHeader {
        optional total_topic_num: i32 = "totalTopicNum",
    }
}

custom_header! {
    /// GET_CONSUME_STATS (208).
    pub struct GetConsumeStatsRequestHeader {
        required consumer_group: String = "consumerGroup",
        optional topic: String = "topic",
        /// 5.x, `;`-joined.
        optional topic_list: String = "topicList",
    }
}

custom_header! {
    /// GET_BROKER_CONSUME_STATS (317): every group on the broker; `isOrder` keeps only
    /// ordered topics.
    pub struct GetConsumeStatsInBrokerHeader {
        required is_order: bool = "isOrder",
    }
}

custom_header! {
    /// CLONE_GROUP_OFFSET (314): `destGroup` takes `srcGroup`'s offsets on `topic` (every
    /// topic of `srcGroup` when absent); unless `offline`, only topics an online `srcGroup`
    /// subscribes to.
    pub struct CloneGroupOffsetRequestHeader {
        required src_group: String = "srcGroup",
        required dest_group: String = "destGroup",
        optional topic: String = "topic",
        optional offline: bool = "offline",
    }
}

custom_header! {
    /// DELETE_SUBSCRIPTIONGROUP (207).
    pub struct DeleteSubscriptionGroupRequestHeader {
        required group_name: String = "groupName",
        optional clean_offset: bool = "cleanOffset",
    }
}

custom_header! {
    /// GET_SUBSCRIPTIONGROUP_CONFIG (352, 5.x).
    pub struct GetSubscriptionGroupConfigRequestHeader {
        required group: String = "group",
    }
}

custom_header! {
    /// GET_ALL_SUBSCRIPTIONGROUP_CONFIG (201) paging fields (5.x); older clients send none.
    pub struct GetAllSubscriptionGroupRequestHeader {
        optional group_seq: i32 = "groupSeq",
        optional data_version: String = "dataVersion",
        optional max_group_num: i32 = "maxGroupNum",
    }
}

custom_header! {
    /// A 5.x client takes a single page as everything when `totalGroupNum` is absent.
    pub struct GetAllSubscriptionGroupResponseHeader {
        optional total_group_num: i32 = "totalGroupNum",
    }
}

custom_header! {
    /// INVOKE_BROKER_TO_RESET_OFFSET (222), and RESET_CONSUMER_CLIENT_OFFSET (220) which the
    /// broker sends on to the group's clients. `timestamp` -1 means "the max offset";
    /// 5.x adds `queueId` (-1 = every queue) with `offset` to set one queue directly.
    pub struct ResetOffsetRequestHeader {
        required topic: String = "topic",
        required group: String = "group",
        required timestamp: i64 = "timestamp",
        required is_force: bool = "isForce",
        optional queue_id: i32 = "queueId",
        optional offset: i64 = "offset",
    }
}

custom_header! {
    /// AUTH_CREATE_USER (3001), AUTH_UPDATE_USER (3002), AUTH_DELETE_USER (3003) and
    /// AUTH_GET_USER (3004): the user named; the first two carry a [`crate::body::UserInfo`].
    pub struct UserRequestHeader {
        required username: String = "username",
    }
}

custom_header! {
    /// AUTH_LIST_USER (3005): users whose name contains `filter`, or all.
    pub struct ListUsersRequestHeader {
        optional filter: String = "filter",
    }
}

custom_header! {
    /// AUTH_CREATE_ACL (3006), AUTH_UPDATE_ACL (3007) and AUTH_GET_ACL (3009): the subject
    /// (`User:<name>`); the first two carry a [`crate::body::admin::AclInfo`].
    pub struct AclRequestHeader {
        required subject: String = "subject",
    }
}

custom_header! {
    /// AUTH_DELETE_ACL (3008): the subject's grant on `resource`, or all of its grants.
    pub struct DeleteAclRequestHeader {
        required subject: String = "subject",
        optional policy_type: String = "policyType",
        optional resource: String = "resource",
    }
}

custom_header! {
    /// AUTH_LIST_ACL (3010): grants whose subject and resource contain the filters.
    pub struct ListAclsRequestHeader {
        optional subject_filter: String = "subjectFilter",
        optional resource_filter: String = "resourceFilter",
    }
}

custom_header! {
    /// ROCKETRY_TRANSFER_LEADER (10000, Rocketry's own), sent to the leader of a replicated
    /// broker group.
    pub struct TransferLeaderRequestHeader {
        /// The replica to lead, as `dLegerSelfId` names it (`n1`); absent: the follower
        /// whose log is furthest along.
        optional to: String = "to",
    }
}

custom_header! {
    pub struct TransferLeaderResponseHeader {
        /// The replica that leads now (`n1`).
        required leader: String = "leader",
    }
}
