//! REGISTER_BROKER's uncompressed body and the topic configuration table inside it (the same
//! table GET_ALL_TOPIC_CONFIG answers with).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::java_enum;
use crate::lenient;

java_enum! {
    pub enum TopicFilterType {
        #[default]
        SingleTag = "SINGLE_TAG",
        MultiTag = "MULTI_TAG",
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DataVersion {
    #[serde(default, deserialize_with = "lenient::i64")]
    pub counter: i64,
    #[serde(default, deserialize_with = "lenient::i64")]
    pub state_version: i64,
    #[serde(default, deserialize_with = "lenient::i64")]
    pub timestamp: i64,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicConfig {
    #[serde(default, deserialize_with = "lenient::string")]
    pub topic_name: String,
    #[serde(default, deserialize_with = "lenient::i32")]
    pub read_queue_nums: i32,
    #[serde(default, deserialize_with = "lenient::i32")]
    pub write_queue_nums: i32,
    #[serde(default, deserialize_with = "lenient::i32")]
    pub perm: i32,
    #[serde(default)]
    pub topic_filter_type: TopicFilterType,
    #[serde(default, deserialize_with = "lenient::i32")]
    pub topic_sys_flag: i32,
    #[serde(default, deserialize_with = "lenient::bool")]
    pub order: bool,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicConfigSerializeWrapper {
    #[serde(default)]
    pub topic_config_table: BTreeMap<String, TopicConfig>,
    #[serde(default)]
    pub data_version: DataVersion,
    /// 5.x static-topic data, carried opaquely.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mapping_data_version: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_queue_mapping_info_map: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegisterBrokerBody {
    #[serde(default)]
    pub topic_config_serialize_wrapper: TopicConfigSerializeWrapper,
    #[serde(default, deserialize_with = "lenient::string_list")]
    pub filter_server_list: Vec<String>,
}
