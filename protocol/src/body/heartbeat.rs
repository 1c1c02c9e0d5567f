//! HEART_BEAT's body. Read leniently: the C++ client sends enum ordinals, `subVersion` as a
//! string and omits several fields; 5.x Java adds fields older readers must ignore.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::java_enum;
use crate::lenient;

java_enum! {
    pub enum ConsumeType {
        /// Pull consumer.
        ConsumeActively = "CONSUME_ACTIVELY",
        /// Push consumer.
        #[default]
        ConsumePassively = "CONSUME_PASSIVELY",
        ConsumePop = "CONSUME_POP",
    }
}

java_enum! {
    pub enum MessageModel {
        Broadcasting = "BROADCASTING",
        #[default]
        Clustering = "CLUSTERING",
    }
}

java_enum! {
    /// Ordinals matter: the C++ client sends them.
    pub enum ConsumeFromWhere {
        #[default]
        ConsumeFromLastOffset = "CONSUME_FROM_LAST_OFFSET",
        ConsumeFromLastOffsetAndFromMinWhenBootFirst = "CONSUME_FROM_LAST_OFFSET_AND_FROM_MIN_WHEN_BOOT_FIRST",
        ConsumeFromMinOffset = "CONSUME_FROM_MIN_OFFSET",
        ConsumeFromMaxOffset = "CONSUME_FROM_MAX_OFFSET",
        ConsumeFromFirstOffset = "CONSUME_FROM_FIRST_OFFSET",
        ConsumeFromTimestamp = "CONSUME_FROM_TIMESTAMP",
    }
}

/// `"*"` or empty subscribes to every tag.
pub const SUBSCRIBE_ALL: &str = "*";

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeartbeatData {
    /// `ip@instanceName`; must be echoed exactly by GET_CONSUMER_LIST_BY_GROUP.
    #[serde(rename = "clientID", default, deserialize_with = "lenient::string")]
    pub client_id: String,
    #[serde(default, deserialize_with = "lenient::null_as_default")]
    pub producer_data_set: Vec<ProducerData>,
    #[serde(default, deserialize_with = "lenient::null_as_default")]
    pub consumer_data_set: Vec<ConsumerData>,
    /// 5.x; non-zero selects the V2 heartbeat path.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::option_i64"
    )]
    pub heartbeat_fingerprint: Option<i64>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::option_bool"
    )]
    pub without_sub: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProducerData {
    #[serde(default, deserialize_with = "lenient::string")]
    pub group_name: String,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerData {
    #[serde(default, deserialize_with = "lenient::string")]
    pub group_name: String,
    #[serde(default)]
    pub consume_type: ConsumeType,
    #[serde(default)]
    pub message_model: MessageModel,
    #[serde(default)]
    pub consume_from_where: ConsumeFromWhere,
    #[serde(default, deserialize_with = "lenient::null_as_default")]
    pub subscription_data_set: Vec<SubscriptionData>,
    #[serde(default, deserialize_with = "lenient::bool")]
    pub unit_mode: bool,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionData {
    #[serde(default, deserialize_with = "lenient::bool")]
    pub class_filter_mode: bool,
    #[serde(default, deserialize_with = "lenient::string")]
    pub topic: String,
    #[serde(default, deserialize_with = "lenient::string")]
    pub sub_string: String,
    #[serde(default, deserialize_with = "string_set")]
    pub tags_set: BTreeSet<String>,
    /// Java `String.hashCode` of each tag.
    #[serde(default, deserialize_with = "code_set")]
    pub code_set: BTreeSet<i32>,
    /// Milliseconds; the broker answers SUBSCRIPTION_NOT_LATEST when a pull carries a newer one.
    #[serde(default, deserialize_with = "lenient::i64")]
    pub sub_version: i64,
    /// `TAG` or `SQL92`; absent (C++) means TAG.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::option_string"
    )]
    pub expression_type: Option<String>,
}

impl SubscriptionData {
    /// True when every tag matches (`*` or an empty expression).
    pub fn subscribes_all(&self) -> bool {
        let expression = self.sub_string.trim();
        expression.is_empty() || expression == SUBSCRIBE_ALL
    }

    /// Splits an expression like FilterAPI does: `||`-separated, trimmed, empty parts dropped.
    pub fn parse_tags(expression: &str) -> BTreeSet<String> {
        let expression = expression.trim();
        if expression.is_empty() || expression == SUBSCRIBE_ALL {
            return BTreeSet::new();
        }
        expression
            .split("||")
            .map(str::trim)
            .filter(|tag| !tag.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

fn string_set<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeSet<String>, D::Error> {
    Ok(lenient::string_list(deserializer)?.into_iter().collect())
}

fn code_set<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<BTreeSet<i32>, D::Error> {
    Ok(lenient::i32_list(deserializer)?.into_iter().collect())
}

/// CHECK_CLIENT_CONFIG's body: a consumer asks whether the broker accepts its subscription
/// (sent at start for SQL92 subscriptions).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckClientRequestBody {
    #[serde(default, deserialize_with = "lenient::string")]
    pub client_id: String,
    #[serde(default, deserialize_with = "lenient::string")]
    pub group: String,
    #[serde(default)]
    pub subscription_data: SubscriptionData,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::option_string"
    )]
    pub namespace: Option<String>,
}
