//! GET_ROUTEINFO_BY_TOPIC's answer, and the broker-id map shared with cluster info.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::fastjson;
use crate::lenient;
use crate::version;

/// Broker id 0 is the master (`MixAll.MASTER_ID`); clients publish only to brokers that have it.
pub const MASTER_ID: i64 = 0;

/// `PermName` bits.
pub mod perm {
    pub const PRIORITY: i32 = 8;
    pub const READ: i32 = 4;
    pub const WRITE: i32 = 2;
    pub const INHERIT: i32 = 1;

    pub const fn is_readable(perm: i32) -> bool {
        perm & READ != 0
    }
    pub const fn is_writeable(perm: i32) -> bool {
        perm & WRITE != 0
    }
    pub const fn is_inherited(perm: i32) -> bool {
        perm & INHERIT != 0
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicRouteData {
    /// `brokerName:queueNums;...`; when set, clients build publish queues only from it.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::option_string"
    )]
    pub order_topic_conf: Option<String>,
    #[serde(default)]
    pub queue_datas: Vec<QueueData>,
    #[serde(default)]
    pub broker_datas: Vec<BrokerData>,
    /// Always written, even empty: Java does.
    #[serde(default)]
    pub filter_server_table: BTreeMap<String, Vec<String>>,
    /// 5.x static topics; carried opaquely.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_queue_mapping_by_broker: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueData {
    #[serde(default, deserialize_with = "lenient::string")]
    pub broker_name: String,
    #[serde(default, deserialize_with = "lenient::i32")]
    pub read_queue_nums: i32,
    #[serde(default, deserialize_with = "lenient::i32")]
    pub write_queue_nums: i32,
    #[serde(default, deserialize_with = "lenient::i32")]
    pub perm: i32,
    #[serde(default, deserialize_with = "lenient::i32")]
    pub topic_sys_flag: i32,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BrokerData {
    #[serde(default, deserialize_with = "lenient::string")]
    pub cluster: String,
    #[serde(default, deserialize_with = "lenient::string")]
    pub broker_name: String,
    /// Broker id to `ip:port`; see [`MASTER_ID`].
    #[serde(default)]
    pub broker_addrs: BTreeMap<i64, String>,
    #[serde(default, deserialize_with = "lenient::bool")]
    pub enable_acting_master: bool,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::option_string"
    )]
    pub zone_name: Option<String>,
}

impl BrokerData {
    pub fn master_addr(&self) -> Option<&str> {
        self.broker_addrs.get(&MASTER_ID).map(String::as_str)
    }
}

/// The map property fastjson writes with bare numeric keys.
pub(crate) const BROKER_ADDRS: &str = "brokerAddrs";

/// Whether the Java name server would answer a client of `client_version` with standard JSON
/// (`{"0":"addr"}`) rather than fastjson's legacy `{0:"addr"}`: from V4_9_4 (401) on, or when
/// the request asked for it with `acceptStandardJsonOnly=true`. Older "manual-parse" clients
/// (Go at 317, C++ at 333) expect the legacy form.
pub fn wants_standard_json(client_version: i32, accept_standard_json_only: bool) -> bool {
    accept_standard_json_only || client_version >= version::V4_9_4
}

impl TopicRouteData {
    /// Encodes the route the way the Java name server would for this client: compact (the Go
    /// hand parser does not trim whitespace), keys sorted, and broker ids quoted or bare
    /// according to [`wants_standard_json`].
    pub fn encode_for_client(
        &self,
        client_version: i32,
        accept_standard_json_only: bool,
    ) -> Vec<u8> {
        if wants_standard_json(client_version, accept_standard_json_only) {
            super::to_json(self)
        } else {
            let tree = serde_json::to_value(self).expect("route serialises to JSON");
            fastjson::to_vec_with_bare_keys(&tree, &[BROKER_ADDRS])
        }
    }

    /// Reads either form.
    pub fn decode(body: &[u8]) -> crate::Result<Self> {
        super::from_json(body)
    }
}
