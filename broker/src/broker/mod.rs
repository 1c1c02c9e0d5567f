//! The broker: the message store behind RocketMQ's request codes, plus the state a broker
//! keeps beside it (topics, consumer offsets, client registrations, held pulls).

mod client_manager;
mod clock;
mod consume_progress;
mod consumer_offset;
mod long_polling;
pub mod metrics;
mod page_cache;
mod processor;
mod queue_lock;
mod registration;
mod replicated;
mod retry;
mod schedule;
mod stats;
mod subscription_group;
mod timer;
mod topic_config;
mod transaction;
#[cfg(test)]
mod transaction_test;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::RwLock;
use protocol::client::ClientTls;
use protocol::{RemotingCommand, RequestCode};
use store::MessageStore;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use client_manager::ClientManager;
pub use consumer_offset::ConsumerOffsets;
pub use long_polling::PullHolds;
pub use subscription_group::SubscriptionGroups;
pub(crate) use topic_config::{has_legal_characters, validate_topic_name};
pub use topic_config::{TopicConfigs, DLQ_GROUP_TOPIC_PREFIX, RETRY_GROUP_TOPIC_PREFIX};

use crate::acl::Acl;
use crate::config::BrokerConfig;
use crate::error::{Error, Result};
use crate::health::NotReady;
use crate::namesrv::not_supported;
use crate::server::{Answer, Channel, HeaderCheck, Service};

/// The folder of the broker's state files, under `storePathRootDir`; it and the files in it
/// have Apache RocketMQ's names.
pub const STATE_DIR: &str = "config";
pub const TOPICS_FILE: &str = "topics.json";
pub const GROUPS_FILE: &str = "subscriptionGroup.json";
pub const OFFSETS_FILE: &str = "consumerOffset.json";
pub const DELAY_OFFSETS_FILE: &str = "delayOffset.json";
/// Where the transaction checker resumes (Apache keeps it as consumer offsets of
/// `CID_RMQ_SYS_TRANS`).
pub const TRANSACTION_PROGRESS_FILE: &str = "transactionCheckOffset.json";
/// What the timer wheel has enqueued and delivered (Apache's is the binary `timercheck`).
pub const TIMER_PROGRESS_FILE: &str = "timerProgress.json";
/// The timer wheel's files, under `storePathRootDir` (Apache's are `timerwheel` too).
pub const TIMER_WHEEL_DIR: &str = "timerwheel";
/// How soon a changed ACL file applies.
const ACL_FILE_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// How often silent clients are looked for.
const CLIENT_SCAN_INTERVAL: Duration = Duration::from_secs(10);

pub struct Broker {
    /// The settings the broker started with.
    config: BrokerConfig,
    /// `config` as UPDATE_BROKER_CONFIG has changed it since: only
    /// `BrokerConfig::RUNTIME_KEYS` can differ, and those are read from here on every use.
    current: RwLock<BrokerConfig>,
    store: Arc<MessageStore>,
    /// Present when the group replicates with Raft (`enableDLegerCommitLog`): the store is
    /// the replica's, and appends go through its leader writes.
    replica: Option<replicated::Member>,
    topics: TopicConfigs,
    offsets: ConsumerOffsets,
    groups: SubscriptionGroups,
    clients: ClientManager,
    locks: queue_lock::QueueLocks,
    delay_levels: schedule::DelayLevels,
    schedule: schedule::Schedule,
    transactions: transaction::Transactions,
    timers: timer::Timers,
    pulls: Arc<PullHolds>,
    /// Message counters for GET_BROKER_RUNTIME_INFO.
    stats: stats::BrokerStats,
    /// What the metrics endpoint exports (docs/observability.md).
    metrics: metrics::BrokerMetrics,
    /// The address written into stored messages and offset message ids: where clients
    /// reach this broker (brokerIP1, resolved, and the listen port).
    store_host: SocketAddr,
    /// UNIQ_KEYs for messages whose producer sent none.
    unique_ids: message::UniqueIdGenerator,
    registrar: registration::Registrar,
    /// Woken when the topic table changes, so the name servers learn of it at once.
    topics_changed: Notify,
    /// Present when `aclEnable`, `authenticationEnabled` or `authorizationEnabled` is set.
    acl: Option<Arc<Acl>>,
    stopping: CancellationToken,
    started: Instant,
}

#[cfg(test)]
impl Broker {
    /// A broker with the default settings on a store under `dir`, for unit tests.
    pub(crate) fn open_default(dir: &std::path::Path) -> Arc<Broker> {
        Broker::open(BrokerConfig::default(), store::StoreConfig::with_root(dir)).unwrap()
    }
}

impl Broker {
    /// Opens the store and the broker's state files.
    pub fn open(config: BrokerConfig, store_config: store::StoreConfig) -> Result<Arc<Broker>> {
        Broker::open_with_tls(config, store_config, None)
    }

    /// [`Broker::open`], reaching its name servers over TLS with `namesrv_tls`.
    pub fn open_with_tls(
        config: BrokerConfig,
        store_config: store::StoreConfig,
        namesrv_tls: Option<ClientTls>,
    ) -> Result<Arc<Broker>> {
        let store = Arc::new(MessageStore::open(store_config)?);
        Broker::open_on(config, store, None, namesrv_tls)
    }

    /// A replica of a Raft-replicated group ([`Broker::open_with_tls`] otherwise): its store
    /// is the replica's, and it registers as master while it leads.
    pub fn open_replica(
        config: BrokerConfig,
        replica: crate::replication::Replica,
        self_id: u64,
        namesrv_tls: Option<ClientTls>,
    ) -> Result<Arc<Broker>> {
        let store = replica.store().clone();
        let member = replicated::Member::new(replica, self_id);
        Broker::open_on(config, store, Some(member), namesrv_tls)
    }

    fn open_on(
        config: BrokerConfig,
        store: Arc<MessageStore>,
        replica: Option<replicated::Member>,
        namesrv_tls: Option<ClientTls>,
    ) -> Result<Arc<Broker>> {
        let config_dir = store.config().store_path_root_dir.join(STATE_DIR);
        let delay_levels =
            schedule::DelayLevels::parse(&config.message_delay_level).map_err(|reason| {
                Error::ConfigValue {
                    key: "messageDelayLevel".into(),
                    value: config.message_delay_level.clone(),
                    reason,
                }
            })?;
        let topics = TopicConfigs::open(config_dir.join(TOPICS_FILE), &config)?;
        topics.ensure(
            schedule::SCHEDULE_TOPIC,
            delay_levels.max_level(),
            protocol::body::perm::READ | protocol::body::perm::WRITE,
        )?;
        let schedule = schedule::Schedule::open(config_dir.join(DELAY_OFFSETS_FILE))?;
        for topic in [
            transaction::HALF_TOPIC,
            transaction::OP_TOPIC,
            transaction::CHECK_MAX_TOPIC,
            timer::TIMER_TOPIC,
        ] {
            topics.ensure(
                topic,
                1,
                protocol::body::perm::READ | protocol::body::perm::WRITE,
            )?;
        }
        let transactions =
            transaction::Transactions::open(config_dir.join(TRANSACTION_PROGRESS_FILE), &store)?;
        let timers = timer::Timers::open(
            config_dir.join(TIMER_PROGRESS_FILE),
            store.config().store_path_root_dir.join(TIMER_WHEEL_DIR),
        )?;
        let offsets = ConsumerOffsets::open(config_dir.join(OFFSETS_FILE))?;
        let groups = SubscriptionGroups::open(
            config_dir.join(GROUPS_FILE),
            config.auto_create_subscription_group,
        )?;
        let pulls = Arc::new(PullHolds::default());
        let holds = pulls.clone();
        store.set_arrival_listener(move |arrived| {
            holds.arrived(
                arrived.topic,
                arrived.queue_id,
                arrived.max_offset,
                arrived.tags_code,
            )
        });
        let registrar = registration::Registrar::new(config.namesrv_addrs()).with_tls(namesrv_tls);
        let store_host = SocketAddr::new(resolve_ip(&config.broker_ip1), config.listen_port);
        let metrics = metrics::BrokerMetrics::new(&config);
        let acl = Acl::for_broker(&config, &config_dir)?;
        Ok(Arc::new(Broker {
            current: RwLock::new(config.clone()),
            config,
            store,
            replica,
            topics,
            offsets,
            groups,
            clients: ClientManager::default(),
            locks: queue_lock::QueueLocks::default(),
            delay_levels,
            schedule,
            transactions,
            timers,
            pulls,
            stats: stats::BrokerStats::default(),
            metrics,
            store_host,
            unique_ids: message::UniqueIdGenerator::new(store_host.ip(), std::process::id() as i32),
            registrar,
            topics_changed: Notify::new(),
            acl,
            stopping: CancellationToken::new(),
            started: Instant::now(),
        }))
    }

    pub fn config(&self) -> &BrokerConfig {
        &self.config
    }

    /// `brokerPermission` now: PermName bits, 6 unless an update made the broker read-only.
    pub fn permission(&self) -> u32 {
        self.current.read().broker_permission
    }

    pub fn store(&self) -> &MessageStore {
        &self.store
    }

    /// Registers with the name servers, then starts the background duties: periodic
    /// registration, client expiry, offset persistence. They end at [`Broker::shutdown`].
    pub async fn start(self: &Arc<Self>) {
        if self.replica.is_some() {
            replicated::spawn(self.clone());
        }
        registration::start(self.clone()).await;
        schedule::spawn(self.clone());
        transaction::spawn(self.clone());
        timer::spawn(self.clone());
        let broker = self.clone();
        tokio::spawn(async move {
            let mut clients = tokio::time::interval(CLIENT_SCAN_INTERVAL);
            let mut acl_file = tokio::time::interval(ACL_FILE_CHECK_INTERVAL);
            let mut offsets = tokio::time::interval(Duration::from_millis(
                broker.config.flush_consumer_offset_interval.max(100),
            ));
            loop {
                tokio::select! {
                    _ = broker.stopping.cancelled() => return,
                    _ = clients.tick() => {
                        let timeout = Duration::from_millis(broker.config.channel_expired_timeout);
                        for group in broker.clients.expire(Instant::now(), timeout) {
                            broker.group_changed(&group);
                        }
                        broker.pulls.prune();
                    }
                    _ = offsets.tick() => {
                        if let Err(error) = broker.offsets.persist() {
                            warn!(%error, "cannot persist consumer offsets");
                        }
                    }
                    _ = acl_file.tick() => {
                        if let Some(acl) = &broker.acl {
                            acl.tick();
                        }
                    }
                }
            }
        });
    }

    /// Resolves once this broker must be started over: a replica whose store was marked to
    /// begin again empty ([`crate::replication::Replica::restart_requested`]). Never for a
    /// broker without replication.
    pub async fn restart_requested(&self) {
        match &self.replica {
            Some(replica) => replica.restart_requested().await,
            None => std::future::pending().await,
        }
    }

    /// Stops the broker's own duties after the server stopped accepting: answers held
    /// pulls, persists offsets, unregisters from the name servers, flushes and checkpoints
    /// the store.
    pub async fn shutdown(&self) -> Result<()> {
        self.begin_shutdown();
        self.offsets.persist()?;
        registration::unregister_all(self).await;
        if let Some(replica) = &self.replica {
            replica.stop().await?;
        }
        self.store.shutdown()?;
        // Only now is every delivered delayed message flushed, so its progress may be kept;
        // the same for the transaction checker's copies and op records.
        self.schedule
            .persist(self.store.commit_log_flushed_offset())?;
        self.transactions
            .persist(self.store.commit_log_flushed_offset())?;
        self.timers
            .persist(self.store.commit_log_flushed_offset())?;
        info!("broker stopped cleanly");
        Ok(())
    }

    /// Refuses new sends and answers held pulls at once, so in-flight requests finish.
    pub fn begin_shutdown(&self) {
        self.stopping.cancel();
        self.pulls.wake_all();
    }

    /// Whether clients can use the broker (its `/readyz`): its store is open, which it is
    /// once it exists, and some name server knows its routes.
    pub fn readiness(&self) -> std::result::Result<(), NotReady> {
        if self.is_stopping() {
            return Err(NotReady::Stopping);
        }
        if self.registrar.registered_with() == 0 {
            return Err(NotReady::Unregistered {
                name_servers: self.registrar.namesrv_count(),
            });
        }
        Ok(())
    }

    fn is_stopping(&self) -> bool {
        self.stopping.is_cancelled()
    }

    /// A consumer group's membership changed: its members rebalance now.
    fn group_changed(&self, group: &str) {
        if self.config.notify_consumer_ids_changed_enable {
            self.clients.notify_ids_changed(group);
        }
    }

    /// Topics were created for a client: tell the name servers before answering it, so
    /// the client finds their routes on its next lookup.
    async fn topics_created(&self) {
        registration::register_now(self).await;
    }

    /// Appends to the store on this worker, and waits off it. An append mostly copies
    /// bytes, and handing each one to `block_in_place` cost a blocking-pool thread wake-up
    /// per request: measured with `bench produce` on 2 cores (16 producers, 1 KiB) that cut
    /// throughput by a quarter and doubled p99. But an append may wait (for a segment the
    /// background allocator is still making, behind another append that a slow disk
    /// stalled), and heartbeats and pulls must not wait behind it; so the store hands each
    /// such wait to `block_in_place`, which gives this worker's other tasks to another
    /// thread meanwhile. A replicated group's leader proposes the batch too, and its
    /// acknowledgement waits for the quorum; any other replica refuses it.
    fn append(&self, puts: &[store::PutMessage]) -> store::Result<replicated::Appended> {
        let block_in_place = |wait: &mut dyn FnMut()| tokio::task::block_in_place(wait);
        let in_place = |wait: &mut dyn FnMut()| wait();
        let wait_with: store::WaitWith =
            match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
                Ok(tokio::runtime::RuntimeFlavor::MultiThread) => &block_in_place,
                // A current-thread runtime (a unit test) has no other worker to hand tasks to.
                _ => &in_place,
            };
        match &self.replica {
            Some(replica) => replica.append(puts, wait_with),
            None => Ok(self
                .store
                .append_batch_waiting_with(puts, wait_with)?
                .into()),
        }
    }

    /// Whether this broker writes: always on its own, only while leading when replicated.
    /// The loops that write (delay levels, timers, the transaction checker) skip their
    /// rounds while it does not.
    fn writes_here(&self) -> bool {
        self.replica.as_ref().is_none_or(replicated::Member::leads)
    }

    /// The id it registers with: `brokerId`, or a replica's by its role.
    fn broker_id(&self) -> u64 {
        match &self.replica {
            Some(replica) => replica.broker_id(),
            None => self.config.broker_id,
        }
    }

    fn uptime(&self) -> Duration {
        self.started.elapsed()
    }
}

/// `brokerIP1` may be a DNS name (a Kubernetes headless Service); stored messages need an
/// IP, so resolve it once at start. An unresolvable name falls back to loopback with a
/// warning rather than refusing to start.
fn resolve_ip(host: &str) -> IpAddr {
    if let Ok(ip) = host.parse() {
        return ip;
    }
    match std::net::ToSocketAddrs::to_socket_addrs(&(host, 0)) {
        Ok(mut addrs) => {
            if let Some(addr) = addrs.next() {
                return addr.ip();
            }
        }
        Err(error) => warn!(%host, %error, "cannot resolve brokerIP1"),
    }
    IpAddr::V4(Ipv4Addr::LOCALHOST)
}

impl Broker {
    /// The answer to one request, from the processor of its code.
    async fn answer(&self, request: &RemotingCommand, channel: &Channel) -> Answer {
        let Some(code) = RequestCode::from_i32(request.code) else {
            return not_supported(request).into();
        };
        use RequestCode::*;
        let command = match code {
            SendMessage | SendMessageV2 | SendBatchMessage => {
                let forwarded = match &self.replica {
                    Some(member) => member.forward(request).await,
                    None => None,
                };
                match forwarded {
                    Some(answer) => answer,
                    None => processor::send::process(self, request, channel).await,
                }
            }
            PullMessage | LitePullMessage => return processor::pull::process(self, request).await,
            QueryConsumerOffset
            | UpdateConsumerOffset
            | GetMaxOffset
            | GetMinOffset
            | SearchOffsetByTimestamp
            | GetEarliestMsgStoretime => processor::offset::process(self, code, request),
            HeartBeat | UnregisterClient | GetConsumerListByGroup | CheckClientConfig => {
                processor::client::process(self, code, request, channel).await
            }
            ConsumerSendMsgBack => processor::send_back::process(self, request).await,
            EndTransaction => processor::end_transaction::process(self, request).await,
            LockBatchMq | UnlockBatchMq => processor::lock::process(self, code, request),
            GetConsumerRunningInfo => processor::admin::consumer_running_info(self, request).await,
            RocketryTransferLeader => processor::admin::transfer_leader(self, request).await,
            UpdateAndCreateTopic
            | DeleteTopicInBroker
            | GetAllTopicConfig
            | GetTopicConfig
            | GetTopicStatsInfo
            | UpdateAndCreateSubscriptiongroup
            | GetAllSubscriptiongroupConfig
            | GetAllConsumerOffset
            | GetAllDelayOffset
            | DeleteSubscriptiongroup
            | GetSubscriptiongroupConfig
            | GetConsumeStats
            | GetBrokerConsumeStats
            | QueryTopicConsumeByWho
            | GetConsumerConnectionList
            | GetProducerConnectionList
            | InvokeBrokerToResetOffset
            | CloneGroupOffset
            | GetBrokerRuntimeInfo
            | GetBrokerConfig
            | UpdateBrokerConfig
            | DeleteExpiredCommitlog
            | CleanExpiredConsumequeue
            | ViewMessageById
            | QueryMessage
            | AuthCreateUser
            | AuthUpdateUser
            | AuthDeleteUser
            | AuthGetUser
            | AuthListUser
            | AuthCreateAcl
            | AuthUpdateAcl
            | AuthDeleteAcl
            | AuthGetAcl
            | AuthListAcl => processor::admin::process(self, code, request),
            _ => not_supported(request),
        };
        command.into()
    }
}

impl Service for Broker {
    async fn handle(&self, request: RemotingCommand, channel: &Channel) -> Option<Answer> {
        let started = Instant::now();
        let denied = match &self.acl {
            Some(acl) => crate::acl::refusal(acl, &request, channel, Acl::check).await,
            None => None,
        };
        let answer = match denied {
            Some(refusal) => refusal.into(),
            None => self.answer(&request, channel).await,
        };
        self.metrics
            .rpc
            .observe(request.code, answer.command.code, started.elapsed());
        Some(answer)
    }

    /// Everything but the requests that come in floods: sends and pulls wait for the
    /// connection's request slots in arrival order, as RocketMQ's send and pull executors
    /// take them; heartbeats, offsets, transactions and admin requests do not wait behind them.
    fn served_at_once(&self, code: i32) -> bool {
        use RequestCode::*;
        !matches!(
            RequestCode::from_i32(code),
            Some(
                SendMessage
                    | SendMessageV2
                    | SendBatchMessage
                    | ConsumerSendMsgBack
                    | PullMessage
                    | LitePullMessage
            )
        )
    }

    fn disconnected(&self, channel: &Channel) {
        for group in self.clients.channel_closed(channel) {
            self.group_changed(&group);
        }
    }

    fn large_frame_check(&self) -> Option<HeaderCheck> {
        let acl = self.acl.clone()?;
        Some(Arc::new(move |header| acl.knows(header)))
    }
}
