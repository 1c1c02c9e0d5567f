//! Keeping the name servers informed: REGISTER_BROKER to each of them every
//! `registerNameServerPeriod` and at once when the topic table changes, UNREGISTER_BROKER
//! on a clean stop.
//!
//! Each name server has its own task that owns its connection and registers on its own, so
//! one that is down or silent delays nobody: not the other name servers, and not the client
//! whose send created a topic and waits until some name server knows the route.

use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use parking_lot::Mutex;
use protocol::body::{self, perm, RegisterBrokerBody, TopicConfigSerializeWrapper};
use protocol::header::{RegisterBrokerRequestHeader, UnregisterBrokerRequestHeader};
use protocol::{Client, RemotingCommand, RequestCode, ResponseCode};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use super::Broker;

/// A name server that does not accept within this is treated as down until the next round;
/// the OS alone would keep trying for minutes when its packets are dropped.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(6);
/// Longest a request that changed the topic table waits for a name server to learn of it.
/// A healthy name server answers in milliseconds; past this the client is answered anyway
/// and finds the route on a later lookup.
const ROUTE_WAIT: Duration = Duration::from_secs(3);
/// Bound on each UNREGISTER_BROKER at stop, connect included.
const UNREGISTER_TIMEOUT: Duration = Duration::from_secs(3);

/// What one name server has been told, as generations of the topic table.
#[derive(Debug, Clone, Copy, Default)]
struct Progress {
    /// The newest generation sent to it, whatever came of it.
    tried: u64,
    /// The newest generation it accepted.
    registered: u64,
}

pub struct Registrar {
    /// The generation of the topic table the name servers should know, bumped on each change.
    /// It starts at 1, the table at start, which no name server has yet.
    wanted: watch::Sender<u64>,
    /// Per name server, in `namesrvAddr` order.
    progress: watch::Sender<Vec<Progress>>,
    /// One task per name server, plus the one that turns `topics_changed` into generations.
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Registrar {
    pub fn new(namesrv_count: usize) -> Registrar {
        Registrar {
            wanted: watch::Sender::new(1),
            progress: watch::Sender::new(vec![Progress::default(); namesrv_count]),
            tasks: Mutex::new(Vec::new()),
        }
    }

    /// Asks for a registration of the topic table as it is now; returns its generation.
    fn request(&self) -> u64 {
        let mut generation = 0;
        self.wanted.send_modify(|wanted| {
            *wanted += 1;
            generation = *wanted;
        });
        generation
    }

    /// How many name servers have accepted a registration since the broker started. A name
    /// server that later goes away still counts: the broker did its part, and turning every
    /// broker unready because name servers are down would only take the brokers away too.
    pub fn registered_with(&self) -> usize {
        self.progress
            .borrow()
            .iter()
            .filter(|server| server.registered > 0)
            .count()
    }

    /// Waits, at most [`ROUTE_WAIT`], until a name server accepted `generation` or every one
    /// of them has been tried with it, so no one waits on a name server known to be down.
    async fn settled(&self, generation: u64) {
        let mut progress = self.progress.subscribe();
        let settled = progress.wait_for(|all| {
            all.iter().any(|server| server.registered >= generation)
                || all.iter().all(|server| server.tried >= generation)
        });
        if tokio::time::timeout(ROUTE_WAIT, settled).await.is_err() {
            debug!(
                generation,
                "no name server confirmed the registration in time"
            );
        }
    }
}

/// Registers now: after a topic is created on a client's behalf, so the route exists
/// before the client is answered (as RocketMQ's broker does), as long as one name server
/// answers.
pub async fn register_now(broker: &Broker) {
    let generation = broker.registrar.request();
    broker.registrar.settled(generation).await;
}

/// Starts registering with every name server until the broker stops, and waits for the first
/// registration as [`register_now`] does.
pub async fn start(broker: Arc<Broker>) {
    let mut tasks = Vec::new();
    for (index, addr) in broker.config.namesrv_addrs().into_iter().enumerate() {
        tasks.push(tokio::spawn(keep_registered(broker.clone(), index, addr)));
    }
    // Other processors signal table changes through `topics_changed`; one Notify wakes one
    // waiter, so it is turned into a generation every name server task sees.
    let forwarder = broker.clone();
    tasks.push(tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = forwarder.stopping.cancelled() => return,
                _ = forwarder.topics_changed.notified() => {
                    forwarder.registrar.request();
                }
            }
        }
    }));
    *broker.registrar.tasks.lock() = tasks;
    let first = *broker.registrar.wanted.borrow();
    broker.registrar.settled(first).await;
}

/// One name server's task: registers the newest generation, then again after each period or
/// new generation, over one connection kept open (a name server drops a broker's routes when
/// the connection it registered over closes, so registrations must not use throwaway ones).
async fn keep_registered(broker: Arc<Broker>, index: usize, addr: String) {
    let period = Duration::from_millis(broker.config.register_name_server_period.max(1000));
    let mut wanted = broker.registrar.wanted.subscribe();
    let mut connection = None;
    loop {
        // Read before the table is, so a change made after this read bumps `wanted` again.
        let generation = *wanted.borrow_and_update();
        let request = register_request(&broker);
        let accepted = tokio::select! {
            _ = broker.stopping.cancelled() => return,
            accepted = register(&addr, &mut connection, request) => accepted,
        };
        broker.registrar.progress.send_modify(|all| {
            all[index].tried = generation;
            if accepted {
                all[index].registered = generation;
            }
        });
        tokio::select! {
            _ = broker.stopping.cancelled() => return,
            _ = tokio::time::sleep(period) => {}
            _ = wanted.changed() => {}
        }
    }
}

fn register_header(broker: &Broker) -> RegisterBrokerRequestHeader {
    let config = &broker.config;
    RegisterBrokerRequestHeader {
        broker_name: config.broker_name.clone(),
        broker_addr: config.advertised_addr(),
        cluster_name: config.broker_cluster_name.clone(),
        // No master-slave HA service listens anywhere (replication will be Raft's), so no
        // address is advertised for one: a slave or tool would find nobody on listenPort+1.
        ha_server_addr: String::new(),
        broker_id: config.broker_id as i64,
        heartbeat_timeout_millis: None,
        enable_acting_master: Some(false),
        compressed: Some(false),
        body_crc32: None,
    }
}

/// The topic table as registered: a broker made read-only (or write-only) by
/// `brokerPermission` registers every topic with at most that permission, as RocketMQ's
/// `registerBrokerAll` does, so clients stop writing to (or reading from) it.
fn registered_topics(broker: &Broker) -> TopicConfigSerializeWrapper {
    let mut topics = broker.topics.snapshot();
    let permission = broker.permission() as i32;
    if !perm::is_writeable(permission) || !perm::is_readable(permission) {
        for topic in topics.topic_config_table.values_mut() {
            topic.perm &= permission;
        }
    }
    topics
}

fn register_request(broker: &Broker) -> RemotingCommand {
    let body = body::to_json(&RegisterBrokerBody {
        topic_config_serialize_wrapper: registered_topics(broker),
        filter_server_list: Vec::new(),
    });
    let mut header = register_header(broker);
    header.body_crc32 = Some((crc32fast::hash(&body) & 0x7FFF_FFFF) as i32);
    RemotingCommand::request(RequestCode::RegisterBroker, &header).with_body(body)
}

/// Sends one registration; true when the name server accepted it.
async fn register(addr: &str, connection: &mut Option<Client>, request: RemotingCommand) -> bool {
    match invoke(addr, connection, request).await {
        Ok(response) if response.code == ResponseCode::Success.as_i32() => {
            debug!(namesrv = %addr, "registered");
            true
        }
        Ok(response) => {
            warn!(namesrv = %addr, code = response.code, remark = ?response.remark, "registration refused");
            false
        }
        Err(error) => {
            warn!(namesrv = %addr, %error, "cannot register with the name server");
            false
        }
    }
}

/// Sends over the cached connection, reconnecting once if it is gone.
async fn invoke(
    addr: &str,
    slot: &mut Option<Client>,
    request: RemotingCommand,
) -> protocol::Result<RemotingCommand> {
    if slot.as_ref().is_none_or(Client::is_closed) {
        *slot = Some(connect(addr).await?);
    }
    let client = slot.as_ref().expect("connected above");
    let result = client.invoke(request, REQUEST_TIMEOUT).await;
    if result.is_err() {
        *slot = None;
    }
    result
}

async fn connect(addr: &str) -> protocol::Result<Client> {
    match tokio::time::timeout(CONNECT_TIMEOUT, Client::connect(addr)).await {
        Ok(connected) => connected,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no connection within {CONNECT_TIMEOUT:?}"),
        )
        .into()),
    }
}

/// Tells every name server at once that this broker is leaving, so clients stop routing to
/// it now rather than after the name server's two-minute expiry. The registering tasks end
/// first, so none registers again behind the unregistration.
pub async fn unregister_all(broker: &Broker) {
    let tasks = std::mem::take(&mut *broker.registrar.tasks.lock());
    for task in tasks {
        task.abort();
        let _ = task.await;
    }
    let register = register_header(broker);
    let header = UnregisterBrokerRequestHeader {
        broker_name: register.broker_name,
        broker_addr: register.broker_addr,
        cluster_name: register.cluster_name,
        broker_id: register.broker_id,
    };
    let header = &header;
    let addrs = broker.config.namesrv_addrs();
    join_all(addrs.iter().map(|addr| async move {
        let request = RemotingCommand::request(RequestCode::UnregisterBroker, header);
        let mut slot = None;
        match tokio::time::timeout(UNREGISTER_TIMEOUT, invoke(addr, &mut slot, request)).await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => {
                warn!(namesrv = %addr, %error, "cannot unregister from the name server")
            }
            Err(_) => {
                warn!(namesrv = %addr, "the name server did not answer the unregistration in time")
            }
        }
    }))
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_name_server_accepting_settles_a_generation_while_another_hangs() {
        let registrar = Registrar::new(2);
        let generation = registrar.request();
        registrar.progress.send_modify(|all| {
            all[0] = Progress {
                tried: generation,
                registered: generation,
            }
        });
        let waited = std::time::Instant::now();
        registrar.settled(generation).await;
        assert!(waited.elapsed() < ROUTE_WAIT);
    }

    #[tokio::test]
    async fn every_name_server_failing_settles_a_generation_at_once() {
        let registrar = Registrar::new(2);
        let generation = registrar.request();
        let waiter = registrar.settled(generation);
        registrar.progress.send_modify(|all| {
            for server in all.iter_mut() {
                server.tried = generation;
            }
        });
        let waited = std::time::Instant::now();
        waiter.await;
        assert!(waited.elapsed() < ROUTE_WAIT);
    }

    #[tokio::test]
    async fn an_older_registration_does_not_settle_a_newer_generation() {
        let registrar = Arc::new(Registrar::new(1));
        let older = registrar.request();
        let newer = registrar.request();
        let waiter = tokio::spawn({
            let registrar = registrar.clone();
            async move { registrar.settled(newer).await }
        });
        registrar.progress.send_modify(|all| {
            all[0] = Progress {
                tried: older,
                registered: older,
            }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!waiter.is_finished());
        registrar
            .progress
            .send_modify(|all| all[0].registered = newer);
        waiter.await.unwrap();
    }

    #[test]
    fn a_broker_is_ready_once_one_name_server_accepted_it_and_until_it_stops() {
        use crate::config::BrokerConfig;
        use crate::health::NotReady;
        let dir = tempfile::tempdir().unwrap();
        let config = BrokerConfig {
            namesrv_addr: "127.0.0.1:1;127.0.0.1:2".into(),
            ..BrokerConfig::default()
        };
        let broker = Broker::open(config, store::StoreConfig::with_root(dir.path())).unwrap();
        let unregistered = Err(NotReady::Unregistered { name_servers: 2 });
        assert_eq!(broker.readiness(), unregistered);
        // Tried and refused is not registered.
        broker
            .registrar
            .progress
            .send_modify(|all| all[0].tried = 1);
        assert_eq!(broker.readiness(), unregistered);
        broker
            .registrar
            .progress
            .send_modify(|all| all[1].registered = 1);
        assert_eq!(broker.registrar.registered_with(), 1);
        assert_eq!(broker.readiness(), Ok(()));
        broker.begin_shutdown();
        assert_eq!(broker.readiness(), Err(NotReady::Stopping));
    }

    #[test]
    fn a_read_only_broker_registers_every_topic_read_only() {
        use crate::config::BrokerConfig;
        let dir = tempfile::tempdir().unwrap();
        let broker = Broker::open(
            BrokerConfig::default(),
            store::StoreConfig::with_root(dir.path()),
        )
        .unwrap();
        let perm_of =
            |topics: &TopicConfigSerializeWrapper, name: &str| topics.topic_config_table[name].perm;
        let as_is = registered_topics(&broker);
        assert_eq!(
            perm_of(&as_is, "TBW102"),
            perm::READ | perm::WRITE | perm::INHERIT
        );
        broker.current.write().broker_permission = perm::READ as u32;
        let read_only = registered_topics(&broker);
        assert_eq!(perm_of(&read_only, "TBW102"), perm::READ);
        assert_eq!(perm_of(&read_only, "SELF_TEST_TOPIC"), perm::READ);
        // The broker's own table keeps its perms.
        assert_eq!(
            perm_of(&broker.topics.snapshot(), "TBW102"),
            perm::READ | perm::WRITE | perm::INHERIT
        );
        broker.begin_shutdown();
    }
}
