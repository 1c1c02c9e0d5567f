//! Bodies of the admin requests mqadmin and the operator use: topic and consume statistics,
//! client connections, consumer-group lists and offset resets.
//!
//! Several of them are maps keyed by a `MessageQueue` object. fastjson writes such a key as
//! the object itself, unquoted (`{{"brokerName":"b","queueId":0,"topic":"t"}:{...}}`), and
//! Java mqadmin reads only that form, so these bodies are written with [`encode`], which
//! turns the keys of the named maps back into bare objects. Reading goes through
//! [`super::from_json`], whose normaliser makes each object key its compact JSON text; the
//! [`queue_map`] field adapter parses that text back into a [`MessageQueue`].

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{
    ConsumeFromWhere, ConsumeType, DataVersion, MessageModel, MessageQueue, SubscriptionData,
    SubscriptionGroupConfig,
};
use crate::lenient;

/// The map properties whose keys are `MessageQueue` objects.
const QUEUE_KEYED_MAPS: &[&str] = &["offsetTable"];

/// Writes `value` as compact JSON, with the keys of every `offsetTable` written as bare
/// objects, as fastjson writes a `Map<MessageQueue, _>`.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let tree = serde_json::to_value(value).expect("admin bodies serialise to JSON");
    super::fastjson::to_vec_with_bare_keys(&tree, QUEUE_KEYED_MAPS)
}

/// Serde adapter for `BTreeMap<MessageQueue, V>`: keys are the queue's compact JSON text
/// (fields sorted, as fastjson sorts them), which [`encode`] writes bare.
pub mod queue_map {
    use super::*;
    use serde::de::Error as _;
    use serde::ser::SerializeMap;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer, V: Serialize>(
        map: &BTreeMap<MessageQueue, V>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let mut out = serializer.serialize_map(Some(map.len()))?;
        for (queue, value) in map {
            // Written by hand so the field order is fastjson's (sorted) whatever serde_json's
            // map ordering is.
            let key = format!(
                r#"{{"brokerName":{},"queueId":{},"topic":{}}}"#,
                Value::String(queue.broker_name.clone()),
                queue.queue_id,
                Value::String(queue.topic.clone())
            );
            out.serialize_entry(&key, value)?;
        }
        out.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>, V: Deserialize<'de>>(
        deserializer: D,
    ) -> Result<BTreeMap<MessageQueue, V>, D::Error> {
        let raw = Option::<BTreeMap<String, V>>::deserialize(deserializer)?.unwrap_or_default();
        raw.into_iter()
            .map(|(key, value)| {
                let queue: MessageQueue = serde_json::from_str(&key)
                    .map_err(|e| D::Error::custom(format!("bad MessageQueue key {key:?}: {e}")))?;
                Ok((queue, value))
            })
            .collect()
    }
}

/// One queue's offsets in GET_TOPIC_STATS_INFO.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicOffset {
    #[serde(default, deserialize_with = "lenient::i64")]
    pub min_offset: i64,
    #[serde(default, deserialize_with = "lenient::i64")]
    pub max_offset: i64,
    /// Store time of the queue's last message; 0 when it is empty.
    #[serde(default, deserialize_with = "lenient::i64")]
    pub last_update_timestamp: i64,
}

/// GET_TOPIC_STATS_INFO's answer (`TopicStatsTable`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicStatsTable {
    #[serde(default, with = "queue_map")]
    pub offset_table: BTreeMap<MessageQueue, TopicOffset>,
    #[serde(default)]
    pub topic_put_tps: f64,
}

/// One queue of a group in GET_CONSUME_STATS (`OffsetWrapper`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OffsetWrapper {
    /// The queue's max offset (next to be written).
    #[serde(default, deserialize_with = "lenient::i64")]
    pub broker_offset: i64,
    /// The group's committed offset.
    #[serde(default, deserialize_with = "lenient::i64")]
    pub consumer_offset: i64,
    /// 5.x: where the group's last pull left off (the committed offset until it pulls).
    #[serde(default, deserialize_with = "lenient::i64")]
    pub pull_offset: i64,
    /// Store time of the message just before the committed offset; 0 when none.
    #[serde(default, deserialize_with = "lenient::i64")]
    pub last_timestamp: i64,
}

/// GET_CONSUME_STATS's answer (`ConsumeStats`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsumeStats {
    #[serde(default, with = "queue_map")]
    pub offset_table: BTreeMap<MessageQueue, OffsetWrapper>,
    #[serde(default)]
    pub consume_tps: f64,
}

impl ConsumeStats {
    /// What mqadmin prints as "Diff Total": broker minus consumer offset over every queue.
    pub fn total_diff(&self) -> i64 {
        self.offset_table
            .values()
            .map(|w| w.broker_offset - w.consumer_offset)
            .sum()
    }
}

/// GET_BROKER_CONSUME_STATS's answer (`ConsumeStatsList`): for each group on the broker,
/// one `ConsumeStats` per topic it has offsets on, each list in a map of its own (Java's
/// `List<Map<group, List<ConsumeStats>>>`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsumeStatsList {
    #[serde(default)]
    pub consume_stats_list: Vec<BTreeMap<String, Vec<ConsumeStats>>>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::option_string"
    )]
    pub broker_addr: Option<String>,
    /// Broker minus consumer offset over every queue of every group.
    #[serde(default, deserialize_with = "lenient::i64")]
    pub total_diff: i64,
    /// Pull minus consumer offset over the same queues.
    #[serde(default, deserialize_with = "lenient::i64")]
    pub total_inflight_diff: i64,
}

/// One client connection (`Connection`). `language` is the Java enum name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Connection {
    #[serde(default, deserialize_with = "lenient::string")]
    pub client_id: String,
    #[serde(default, deserialize_with = "lenient::string")]
    pub client_addr: String,
    #[serde(default, deserialize_with = "lenient::string")]
    pub language: String,
    #[serde(default, deserialize_with = "lenient::i32")]
    pub version: i32,
}

/// GET_CONSUMER_CONNECTION_LIST's answer (`ConsumerConnection`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerConnection {
    #[serde(default)]
    pub connection_set: BTreeSet<Connection>,
    #[serde(default)]
    pub subscription_table: BTreeMap<String, SubscriptionData>,
    #[serde(default)]
    pub consume_type: ConsumeType,
    #[serde(default)]
    pub message_model: MessageModel,
    #[serde(default)]
    pub consume_from_where: ConsumeFromWhere,
}

/// GET_PRODUCER_CONNECTION_LIST's answer (`ProducerConnection`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProducerConnection {
    #[serde(default)]
    pub connection_set: BTreeSet<Connection>,
}

/// QUERY_TOPIC_CONSUME_BY_WHO's answer (`GroupList`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupList {
    #[serde(default, deserialize_with = "lenient::string_list")]
    pub group_list: Vec<String>,
}

/// INVOKE_BROKER_TO_RESET_OFFSET's answer and RESET_CONSUMER_CLIENT_OFFSET's body
/// (`ResetOffsetBody`): the new offset of each queue.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResetOffsetBody {
    #[serde(default, with = "queue_map")]
    pub offset_table: BTreeMap<MessageQueue, i64>,
}

/// GET_ALL_SUBSCRIPTIONGROUP_CONFIG's answer (`SubscriptionGroupWrapper`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionGroupWrapper {
    #[serde(default)]
    pub subscription_group_table: BTreeMap<String, SubscriptionGroupConfig>,
    /// 5.x: group -> topic -> forbidden bits; Rocketry forbids nothing.
    #[serde(default)]
    pub forbidden_table: BTreeMap<String, BTreeMap<String, i32>>,
    #[serde(default)]
    pub data_version: DataVersion,
}

/// GET_ALL_CONSUMER_OFFSET's answer (`ConsumerOffsetSerializeWrapper`): `topic@group` to
/// queue id to the next offset to consume. A slave copies its master's with it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerOffsetWrapper {
    #[serde(default)]
    pub offset_table: BTreeMap<String, BTreeMap<i32, i64>>,
}

/// GET_ALL_DELAY_OFFSET's answer (`delayOffset.json`'s content): delay level to the next
/// offset of its schedule queue to deliver.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DelayOffsetWrapper {
    #[serde(default)]
    pub offset_table: BTreeMap<i32, i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(id: i32) -> MessageQueue {
        MessageQueue {
            topic: "T".into(),
            broker_name: "b".into(),
            queue_id: id,
        }
    }

    #[test]
    fn queue_keys_are_written_as_bare_objects_and_read_back() {
        let mut stats = TopicStatsTable::default();
        stats.offset_table.insert(
            queue(1),
            TopicOffset {
                min_offset: 0,
                max_offset: 5,
                last_update_timestamp: 7,
            },
        );
        let text = String::from_utf8(encode(&stats)).unwrap();
        assert_eq!(
            text,
            r#"{"offsetTable":{{"brokerName":"b","queueId":1,"topic":"T"}:{"lastUpdateTimestamp":7,"maxOffset":5,"minOffset":0}},"topicPutTps":0.0}"#
        );
        let back: TopicStatsTable = crate::body::from_json(text.as_bytes()).unwrap();
        assert_eq!(back, stats);
    }

    #[test]
    fn a_broker_consume_stats_list_writes_nested_queue_keys_bare() {
        let mut stats = ConsumeStats::default();
        stats.offset_table.insert(
            queue(0),
            OffsetWrapper {
                broker_offset: 5,
                consumer_offset: 3,
                pull_offset: 3,
                last_timestamp: 9,
            },
        );
        let list = ConsumeStatsList {
            consume_stats_list: vec![
                BTreeMap::from([("g".to_string(), vec![stats])]),
                BTreeMap::from([("idle".to_string(), Vec::new())]),
            ],
            broker_addr: Some("127.0.0.1:10911".into()),
            total_diff: 2,
            total_inflight_diff: 0,
        };
        let text = String::from_utf8(encode(&list)).unwrap();
        assert!(
            text.contains(r#"{"g":[{"consumeTps":0.0,"offsetTable":{{"brokerName":"b","queueId":0,"topic":"T"}:"#),
            "{text}"
        );
        assert!(text.contains(r#"{"idle":[]}"#), "{text}");
        let back: ConsumeStatsList = crate::body::from_json(text.as_bytes()).unwrap();
        assert_eq!(back, list);
    }

    #[test]
    fn reads_what_a_java_broker_writes() {
        // The shape of a Java 5.5.0 broker's GET_CONSUME_STATS body.
        let java = br#"{"consumeTps":1.5,"offsetTable":{{"brokerName":"broker-a","queueId":3,"topic":"T"}:{"brokerOffset":5,"consumerOffset":4,"lastTimestamp":1700000000000,"pullOffset":5}}}"#;
        let stats: ConsumeStats = crate::body::from_json(java).unwrap();
        let wrapper = &stats.offset_table[&MessageQueue {
            topic: "T".into(),
            broker_name: "broker-a".into(),
            queue_id: 3,
        }];
        assert_eq!(wrapper.broker_offset - wrapper.consumer_offset, 1);
        assert_eq!(stats.total_diff(), 1);
        let reset: ResetOffsetBody = crate::body::from_json(
            br#"{"offsetTable":{{"brokerName":"b","queueId":0,"topic":"T"}:12}}"#,
        )
        .unwrap();
        assert_eq!(reset.offset_table[&queue(0)], 12);
    }
}

/// A user of ACL 2.0's requests (AUTH_CREATE_USER and the rest), as `UserInfo.java`
/// carries it: `userType` is `Super` or `Normal`, `userStatus` `enable` or `disable`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserInfo {
    #[serde(default)]
    pub username: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_status: Option<String>,
}

/// A subject's grants in ACL 2.0's requests, as `AclInfo.java` carries them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AclInfo {
    #[serde(default)]
    pub subject: String,
    #[serde(default, deserialize_with = "lenient::null_as_default")]
    pub policies: Vec<PolicyInfo>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyInfo {
    /// `Custom` or `Default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_type: Option<String>,
    #[serde(default, deserialize_with = "lenient::null_as_default")]
    pub entries: Vec<PolicyEntryInfo>,
}

/// One grant: `resource` is `Topic:<name>` or `Group:<name>` (a trailing `*` for a
/// prefix), `actions` among `Pub`, `Sub`, `All`, `decision` `Allow` or `Deny`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyEntryInfo {
    #[serde(default)]
    pub resource: String,
    #[serde(default, deserialize_with = "lenient::null_as_default")]
    pub actions: Vec<String>,
    #[serde(default, deserialize_with = "lenient::null_as_default")]
    pub source_ips: Vec<String>,
    #[serde(default)]
    pub decision: String,
}
