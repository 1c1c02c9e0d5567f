//! The name server: brokers register their topics here, clients ask it for routes.

mod route_table;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use protocol::body::{
    self, BrokerData, ClusterInfo, KvTable, QueueData, RegisterBrokerBody, TopicList,
    TopicRouteData,
};
use protocol::header::{
    AddWritePermOfBrokerResponseHeader, DeleteTopicFromNamesrvRequestHeader,
    GetKvConfigResponseHeader, GetKvListByNamespaceRequestHeader, GetRouteInfoRequestHeader,
    GetTopicsByClusterRequestHeader, KvConfigKeyRequestHeader, PutKvConfigRequestHeader,
    QueryDataVersionResponseHeader, RegisterBrokerRequestHeader, RegisterBrokerResponseHeader,
    UnregisterBrokerRequestHeader, WipeWritePermOfBrokerResponseHeader,
    WritePermOfBrokerRequestHeader,
};
use protocol::{RemotingCommand, RequestCode, ResponseCode};
use tracing::{info, warn};

pub use route_table::{QueueLayout, Registration, RouteTable};

use crate::acl::{self, Acl};
use crate::config::NamesrvConfig;
use crate::config_update;
use crate::metrics::{Node, RpcLatency};
use crate::server::{Answer, Channel, Service};

/// The shortest scan interval an update can set, so a typo cannot make the scan spin.
const MIN_EXPIRY_SCAN_INTERVAL: Duration = Duration::from_millis(100);

pub struct Namesrv {
    /// Changed at run time by UPDATE_NAMESRV_CONFIG (only `NamesrvConfig::RUNTIME_KEYS`).
    config: RwLock<NamesrvConfig>,
    routes: Mutex<RouteTable>,
    /// KV config namespaces (ORDER_TOPIC_CONFIG and whatever mqadmin stores). In memory
    /// only, as a documented difference: RocketMQ persists them to kvConfig.json.
    kv: Mutex<BTreeMap<String, BTreeMap<String, String>>>,
    /// `rocketmq_rpc_latency` with `node_type="nameserver"`. A name server serves every
    /// cluster, so its series carry an empty `cluster`.
    rpc: RpcLatency,
    /// With `aclEnable`, the changes of [`ADMIN_CODES`] need an administrator's signature.
    acl: Option<Arc<Acl>>,
}

/// The name server's requests that change what it tells clients or how it runs. Routes and
/// registrations stay open: clients and brokers do not sign what they send here.
const ADMIN_CODES: &[RequestCode] = &[
    RequestCode::PutKvConfig,
    RequestCode::DeleteKvConfig,
    RequestCode::UpdateNamesrvConfig,
    RequestCode::DeleteTopicInNamesrv,
    RequestCode::WipeWritePermOfBroker,
    RequestCode::AddWritePermOfBroker,
];

impl Namesrv {
    pub fn new(config: NamesrvConfig) -> Arc<Namesrv> {
        Namesrv::with_acl(config, None)
    }

    /// A name server whose changes need an administrator of `acl`.
    pub fn with_acl(config: NamesrvConfig, acl: Option<Arc<Acl>>) -> Arc<Namesrv> {
        let node = Node::nameserver(
            "",
            &format!("{}:{}", config.bind_address, config.listen_port),
        );
        Arc::new(Namesrv {
            rpc: RpcLatency::new(&node),
            config: RwLock::new(config),
            routes: Mutex::new(RouteTable::default()),
            kv: Mutex::new(BTreeMap::new()),
            acl,
        })
    }

    /// Registers the name server's metrics.
    pub fn register_metrics(&self, registry: &prometheus::Registry) -> prometheus::Result<()> {
        self.rpc.register(registry)
    }

    /// Drops silent brokers every `scanNotActiveBrokerInterval` until the namesrv is
    /// dropped. Both settings are read on every scan, so an update takes effect at once.
    pub fn spawn_expiry(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let Some(interval) = weak.upgrade().map(|namesrv| {
                    Duration::from_millis(namesrv.config.read().scan_not_active_broker_interval)
                }) else {
                    return;
                };
                tokio::time::sleep(interval.max(MIN_EXPIRY_SCAN_INTERVAL)).await;
                let Some(namesrv) = weak.upgrade() else {
                    return;
                };
                if let Some(acl) = &namesrv.acl {
                    acl.tick();
                }
                let timeout =
                    Duration::from_millis(namesrv.config.read().broker_channel_expired_time);
                for addr in namesrv.routes.lock().expire(Instant::now(), timeout) {
                    warn!(broker = %addr, "broker silent for {timeout:?}; its routes are dropped");
                }
            }
        });
    }

    fn register(&self, request: &RemotingCommand, channel: &Channel) -> RemotingCommand {
        let header: RegisterBrokerRequestHeader = match request.decode_header() {
            Ok(header) => header,
            Err(error) => return invalid(request, error),
        };
        if header.compressed == Some(true) {
            return RemotingCommand::response_to(
                request,
                ResponseCode::SystemError,
                Some(
                    "compressed broker registration is not supported; set compressedRegister=false"
                        .into(),
                ),
            );
        }
        if let Some(expected) = header.body_crc32.filter(|crc| *crc != 0) {
            let actual = (crc32fast::hash(&request.body) & 0x7FFF_FFFF) as i32;
            if actual != expected {
                return RemotingCommand::response_to(
                    request,
                    ResponseCode::SystemError,
                    Some("crc32 not match".into()),
                );
            }
        }
        let registration_body: RegisterBrokerBody = if request.body.is_empty() {
            RegisterBrokerBody::default()
        } else {
            match body::from_json(&request.body) {
                Ok(parsed) => parsed,
                Err(error) => return invalid(request, error),
            }
        };
        let topics = registration_body
            .topic_config_serialize_wrapper
            .topic_config_table
            .into_iter()
            .map(|(name, topic)| {
                let layout = QueueLayout {
                    read_queue_nums: topic.read_queue_nums.max(0) as u32,
                    write_queue_nums: topic.write_queue_nums.max(0) as u32,
                    perm: topic.perm.max(0) as u32,
                    topic_sys_flag: topic.topic_sys_flag.max(0) as u32,
                };
                (name, layout)
            })
            .collect();
        let broker_id = header.broker_id.max(0) as u64;
        let first_time = self
            .routes
            .lock()
            .ha_server_addr(&header.broker_addr)
            .is_none();
        let master = self.routes.lock().register(
            Registration {
                cluster: header.cluster_name.clone(),
                broker_name: header.broker_name.clone(),
                broker_addr: header.broker_addr.clone(),
                broker_id,
                ha_server_addr: header.ha_server_addr.clone(),
                topics,
                data_version: registration_body
                    .topic_config_serialize_wrapper
                    .data_version,
                channel_id: channel.id(),
            },
            Instant::now(),
        );
        if first_time {
            info!(
                cluster = %header.cluster_name,
                broker = %header.broker_name,
                id = broker_id,
                addr = %header.broker_addr,
                "broker registered"
            );
        }
        RemotingCommand::response_to(request, ResponseCode::Success, None).with_header(
            &RegisterBrokerResponseHeader {
                ha_server_addr: master.as_ref().map(|_| header.ha_server_addr.clone()),
                master_addr: master,
            },
        )
    }

    fn route(&self, request: &RemotingCommand) -> RemotingCommand {
        let header: GetRouteInfoRequestHeader = match request.decode_header() {
            Ok(header) => header,
            Err(error) => return invalid(request, error),
        };
        let Some(route) = self.routes.lock().route(&header.topic) else {
            return RemotingCommand::response_to(
                request,
                ResponseCode::TopicNotExist,
                Some(format!(
                    "No topic route info in name server for the topic: {}",
                    header.topic
                )),
            );
        };
        let order_topic_conf = self
            .kv
            .lock()
            .get(ORDER_TOPIC_CONFIG)
            .and_then(|table| table.get(&header.topic).cloned());
        let data = TopicRouteData {
            order_topic_conf,
            queue_datas: route
                .queues
                .into_iter()
                .map(|(broker_name, layout)| QueueData {
                    broker_name,
                    read_queue_nums: layout.read_queue_nums as i32,
                    write_queue_nums: layout.write_queue_nums as i32,
                    perm: layout.perm as i32,
                    topic_sys_flag: layout.topic_sys_flag as i32,
                })
                .collect(),
            broker_datas: route.groups.iter().map(broker_data).collect(),
            ..TopicRouteData::default()
        };
        let accept_standard = header.accept_standard_json_only.unwrap_or(false);
        RemotingCommand::response_to(request, ResponseCode::Success, None)
            .with_body(data.encode_for_client(request.version, accept_standard))
    }

    fn cluster_info(&self, request: &RemotingCommand) -> RemotingCommand {
        let routes = self.routes.lock();
        let info = ClusterInfo {
            broker_addr_table: routes
                .groups()
                .iter()
                .map(|(name, group)| (name.clone(), broker_data(group)))
                .collect(),
            cluster_addr_table: routes.clusters().clone(),
        };
        RemotingCommand::response_to(request, ResponseCode::Success, None).with_body(info.encode())
    }

    fn topic_list(&self, request: &RemotingCommand, topics: Vec<String>) -> RemotingCommand {
        let list = TopicList {
            topic_list: topics,
            broker_addr: None,
        };
        RemotingCommand::response_to(request, ResponseCode::Success, None)
            .with_body(body::to_json(&list))
    }

    fn kv(&self, request: &RemotingCommand, code: RequestCode) -> RemotingCommand {
        let ok = RemotingCommand::response_to(request, ResponseCode::Success, None);
        match code {
            RequestCode::PutKvConfig => match request.decode_header::<PutKvConfigRequestHeader>() {
                Ok(h) => {
                    self.kv
                        .lock()
                        .entry(h.namespace)
                        .or_default()
                        .insert(h.key, h.value);
                    ok
                }
                Err(error) => invalid(request, error),
            },
            RequestCode::GetKvConfig => match request.decode_header::<KvConfigKeyRequestHeader>() {
                Ok(h) => match self.kv.lock().get(&h.namespace).and_then(|t| t.get(&h.key)) {
                    Some(value) => ok.with_header(&GetKvConfigResponseHeader {
                        value: Some(value.clone()),
                    }),
                    None => RemotingCommand::response_to(
                        request,
                        ResponseCode::QueryNotFound,
                        Some(format!(
                            "No config item, Namespace: {} Key: {}",
                            h.namespace, h.key
                        )),
                    ),
                },
                Err(error) => invalid(request, error),
            },
            RequestCode::DeleteKvConfig => {
                match request.decode_header::<KvConfigKeyRequestHeader>() {
                    Ok(h) => {
                        if let Some(table) = self.kv.lock().get_mut(&h.namespace) {
                            table.remove(&h.key);
                        }
                        ok
                    }
                    Err(error) => invalid(request, error),
                }
            }
            _ => match request.decode_header::<GetKvListByNamespaceRequestHeader>() {
                Ok(h) => match self.kv.lock().get(&h.namespace) {
                    Some(table) => ok.with_body(body::to_json(&KvTable {
                        table: table.clone(),
                    })),
                    None => RemotingCommand::response_to(
                        request,
                        ResponseCode::QueryNotFound,
                        Some(format!("No config item, Namespace: {}", h.namespace)),
                    ),
                },
                Err(error) => invalid(request, error),
            },
        }
    }

    /// WIPE_WRITE_PERM_OF_BROKER and ADD_WRITE_PERM_OF_BROKER: answers how many topics the
    /// broker group serves, each now read-only or read-write.
    fn write_perm(&self, request: &RemotingCommand, wipe: bool) -> RemotingCommand {
        let header: WritePermOfBrokerRequestHeader = match request.decode_header() {
            Ok(header) => header,
            Err(error) => return invalid(request, error),
        };
        let name = &header.broker_name;
        let ok = RemotingCommand::response_to(request, ResponseCode::Success, None);
        if wipe {
            let count = self.routes.lock().wipe_write_perm(name);
            info!(broker = %name, topics = count, "write permission wiped");
            ok.with_header(&WipeWritePermOfBrokerResponseHeader {
                wipe_topic_count: count as i32,
            })
        } else {
            let count = self.routes.lock().add_write_perm(name);
            info!(broker = %name, topics = count, "write permission given back");
            ok.with_header(&AddWritePermOfBrokerResponseHeader {
                add_topic_count: count as i32,
            })
        }
    }

    /// GET_NAMESRV_CONFIG: every setting as Java properties text.
    fn get_config(&self, request: &RemotingCommand) -> RemotingCommand {
        let text: String = self
            .config
            .read()
            .entries()
            .into_iter()
            .map(|(key, value)| format!("{key}={value}\n"))
            .collect();
        RemotingCommand::response_to(request, ResponseCode::Success, None)
            .with_body(text.into_bytes())
    }

    /// UPDATE_NAMESRV_CONFIG: only `NamesrvConfig::RUNTIME_KEYS`, whole or not at all.
    fn update_config(&self, request: &RemotingCommand) -> RemotingCommand {
        let mut config = self.config.write();
        match config_update::apply(
            &*config,
            &request.body,
            NamesrvConfig::RUNTIME_KEYS,
            NamesrvConfig::set,
        ) {
            Ok(updated) => {
                info!(update = %String::from_utf8_lossy(&request.body).trim(), "name server config updated");
                *config = updated;
                RemotingCommand::response_to(request, ResponseCode::Success, None)
            }
            Err(refusal) => {
                warn!(remark = %refusal.remark, "name server config update refused");
                RemotingCommand::response_to(request, refusal.code, Some(refusal.remark))
            }
        }
    }
}

/// The KV namespace mqadmin's `updateOrderConf` writes and routes read.
const ORDER_TOPIC_CONFIG: &str = "ORDER_TOPIC_CONFIG";

fn broker_data(group: &route_table::BrokerGroup) -> BrokerData {
    BrokerData {
        cluster: group.cluster.clone(),
        broker_name: group.broker_name.clone(),
        broker_addrs: group
            .addrs
            .iter()
            .map(|(id, addr)| (*id as i64, addr.clone()))
            .collect(),
        ..BrokerData::default()
    }
}

/// A request whose header or body does not parse.
pub(crate) fn invalid(request: &RemotingCommand, error: protocol::Error) -> RemotingCommand {
    RemotingCommand::response_to(request, ResponseCode::SystemError, Some(error.to_string()))
}

/// The answer RocketMQ gives to a code it does not serve.
pub(crate) fn not_supported(request: &RemotingCommand) -> RemotingCommand {
    RemotingCommand::response_to(
        request,
        ResponseCode::RequestCodeNotSupported,
        Some(format!(" request type {} not supported", request.code)),
    )
}

impl Namesrv {
    /// The answer to one request, from the processor of its code.
    async fn answer(&self, request: &RemotingCommand, channel: &Channel) -> RemotingCommand {
        let Some(code) = RequestCode::from_i32(request.code) else {
            return not_supported(request);
        };
        match code {
            RequestCode::RegisterBroker => self.register(request, channel),
            RequestCode::UnregisterBroker => {
                match request.decode_header::<UnregisterBrokerRequestHeader>() {
                    Ok(h) => {
                        self.routes.lock().unregister(
                            &h.broker_name,
                            &h.broker_addr,
                            h.broker_id.max(0) as u64,
                        );
                        info!(broker = %h.broker_name, addr = %h.broker_addr, "broker unregistered");
                        RemotingCommand::response_to(request, ResponseCode::Success, None)
                    }
                    Err(error) => invalid(request, error),
                }
            }
            RequestCode::GetRouteinfoByTopic => self.route(request),
            RequestCode::GetBrokerClusterInfo => self.cluster_info(request),
            RequestCode::GetAllTopicListFromNameserver => {
                let topics = self.routes.lock().topic_names().cloned().collect();
                self.topic_list(request, topics)
            }
            RequestCode::GetTopicsByCluster => {
                match request.decode_header::<GetTopicsByClusterRequestHeader>() {
                    Ok(h) => {
                        let topics = self.routes.lock().topics_of_cluster(&h.cluster);
                        self.topic_list(request, topics)
                    }
                    Err(error) => invalid(request, error),
                }
            }
            RequestCode::GetSystemTopicListFromNs => {
                // As RocketMQ: each cluster name and broker name doubles as a system topic.
                let routes = self.routes.lock();
                let topics = routes
                    .clusters()
                    .iter()
                    .flat_map(|(cluster, names)| {
                        std::iter::once(cluster.clone()).chain(names.iter().cloned())
                    })
                    .collect();
                drop(routes);
                self.topic_list(request, topics)
            }
            RequestCode::DeleteTopicInNamesrv => {
                match request.decode_header::<DeleteTopicFromNamesrvRequestHeader>() {
                    Ok(h) => {
                        self.routes
                            .lock()
                            .delete_topic(&h.topic, h.cluster_name.as_deref());
                        RemotingCommand::response_to(request, ResponseCode::Success, None)
                    }
                    Err(error) => invalid(request, error),
                }
            }
            // Rocketry brokers register in full every time, so the answer is always "changed".
            RequestCode::QueryDataVersion => {
                RemotingCommand::response_to(request, ResponseCode::Success, None)
                    .with_header(&QueryDataVersionResponseHeader { changed: true })
            }
            RequestCode::WipeWritePermOfBroker => self.write_perm(request, true),
            RequestCode::AddWritePermOfBroker => self.write_perm(request, false),
            RequestCode::GetNamesrvConfig => self.get_config(request),
            RequestCode::UpdateNamesrvConfig => self.update_config(request),
            RequestCode::PutKvConfig
            | RequestCode::GetKvConfig
            | RequestCode::DeleteKvConfig
            | RequestCode::GetKvlistByNamespace => self.kv(request, code),
            _ => not_supported(request),
        }
    }
}

impl Service for Namesrv {
    async fn handle(&self, request: RemotingCommand, channel: &Channel) -> Option<Answer> {
        let started = Instant::now();
        let guarded = RequestCode::from_i32(request.code).is_some_and(|c| ADMIN_CODES.contains(&c));
        let denied = match &self.acl {
            Some(acl) if guarded => acl::refusal(acl, &request, channel, Acl::check_admin).await,
            _ => None,
        };
        let response = match denied {
            Some(refusal) => refusal,
            None => self.answer(&request, channel).await,
        };
        self.rpc
            .observe(request.code, response.code, started.elapsed());
        Some(response.into())
    }

    fn disconnected(&self, channel: &Channel) {
        for addr in self.routes.lock().channel_closed(channel.id()) {
            info!(broker = %addr, "broker connection closed; its routes are dropped");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn ask(namesrv: &Namesrv, code: RequestCode, body: &str) -> RemotingCommand {
        let (channel, _outbound) = Channel::detached(1);
        let request = RemotingCommand::request(code, &()).with_body(body.to_string());
        namesrv.handle(request, &channel).await.unwrap().joined()
    }

    #[tokio::test]
    async fn a_config_update_changes_allowed_keys_and_refuses_the_rest() {
        let namesrv = Namesrv::new(NamesrvConfig::default());
        let answer = ask(
            &namesrv,
            RequestCode::UpdateNamesrvConfig,
            "scanNotActiveBrokerInterval=1000\n",
        )
        .await;
        assert_eq!(answer.code, ResponseCode::Success.as_i32());
        let refused = ask(
            &namesrv,
            RequestCode::UpdateNamesrvConfig,
            "brokerChannelExpiredTime=1\nconfigStorePath=/tmp/x\n",
        )
        .await;
        assert_eq!(refused.code, ResponseCode::NoPermission.as_i32());
        assert!(refused
            .remark
            .unwrap()
            .starts_with("configStorePath names a file"));
        let config = ask(&namesrv, RequestCode::GetNamesrvConfig, "").await;
        let text = String::from_utf8(config.body.to_vec()).unwrap();
        assert!(
            text.contains("scanNotActiveBrokerInterval=1000\n"),
            "{text}"
        );
        assert!(text.contains("brokerChannelExpiredTime=120000\n"), "{text}");
        assert!(text.contains("listenPort=9876\n"), "{text}");
    }
}
