//! Keeping the name servers informed: REGISTER_BROKER to each of them every
//! `registerNameServerPeriod` and at once when the topic table changes, UNREGISTER_BROKER
//! on a clean stop.
//!
//! Each name server has its own task that owns its connection and registers on its own, so
//! one that is down or silent delays nobody: not the other name servers, and not the client
//! whose send created a topic and waits until some name server knows the route.
//!
//! The list follows `namesrvAddr` as UPDATE_BROKER_CONFIG changes it (name servers scaled
//! under a running broker): a new name server gets its task, a removed one loses its task and
//! is told the broker is leaving it, and the others keep theirs and their connections.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use parking_lot::Mutex;
use protocol::body::{self, perm, RegisterBrokerBody, TopicConfigSerializeWrapper};
use protocol::client::ClientTls;
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
    /// The name servers to register with: `namesrvAddr` as it is now.
    namesrvs: watch::Sender<Vec<String>>,
    /// Per name server being registered with, by address: an entry comes and goes with the
    /// name server's task, so a name server added again starts from nothing.
    progress: watch::Sender<BTreeMap<String, Progress>>,
    /// The task of each name server being registered with.
    tasks: Mutex<HashMap<String, JoinHandle<()>>>,
    /// The task that turns `topics_changed` into generations and the one that follows
    /// `namesrvs`.
    duties: Mutex<Vec<JoinHandle<()>>>,
    /// TLS for the connections to name servers (`tls.enable`), if on.
    tls: Option<ClientTls>,
}

impl Registrar {
    pub fn new(namesrvs: Vec<String>) -> Registrar {
        // Entries from the start, so the wait for the first registration has them to wait on.
        let progress = namesrvs
            .iter()
            .map(|addr| (addr.clone(), Progress::default()))
            .collect();
        Registrar {
            wanted: watch::Sender::new(1),
            namesrvs: watch::Sender::new(namesrvs),
            progress: watch::Sender::new(progress),
            tasks: Mutex::new(HashMap::new()),
            duties: Mutex::new(Vec::new()),
            tls: None,
        }
    }

    /// Connects to name servers over TLS with `tls`.
    pub fn with_tls(mut self, tls: Option<ClientTls>) -> Registrar {
        self.tls = tls;
        self
    }

    /// Registers with `namesrvs` from now on, in place of the name servers before.
    pub fn set_namesrvs(&self, namesrvs: Vec<String>) {
        self.namesrvs.send_replace(namesrvs);
    }

    /// How many name servers `namesrvAddr` lists now.
    pub fn namesrv_count(&self) -> usize {
        self.namesrvs.borrow().len()
    }

    /// Asks for a registration of the topic table as it is now; returns its generation.
    pub(super) fn request(&self) -> u64 {
        let mut generation = 0;
        self.wanted.send_modify(|wanted| {
            *wanted += 1;
            generation = *wanted;
        });
        generation
    }

    /// How many name servers of the current list have accepted a registration since the
    /// broker started (or since they joined the list). A name server that later goes down
    /// still counts: the broker did its part, and turning every broker unready because name
    /// servers are down would only take the brokers away too.
    pub fn registered_with(&self) -> usize {
        let namesrvs = self.namesrvs.borrow();
        self.progress
            .borrow()
            .iter()
            .filter(|(addr, server)| server.registered > 0 && namesrvs.contains(addr))
            .count()
    }

    /// Waits, at most [`ROUTE_WAIT`], until a name server accepted `generation` or every one
    /// of them has been tried with it, so no one waits on a name server known to be down.
    async fn settled(&self, generation: u64) {
        let mut progress = self.progress.subscribe();
        let settled = progress.wait_for(|all| {
            all.values().any(|server| server.registered >= generation)
                || all.values().all(|server| server.tried >= generation)
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
    // Other processors signal table changes through `topics_changed`; one Notify wakes one
    // waiter, so it is turned into a generation every name server task sees.
    let forwarder = broker.clone();
    let forwarding = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = forwarder.stopping.cancelled() => return,
                _ = forwarder.topics_changed.notified() => {
                    forwarder.registrar.request();
                }
            }
        }
    });
    // Subscribed here, so a change made before the task first runs is not missed.
    let namesrvs = broker.registrar.namesrvs.subscribe();
    let following = tokio::spawn(follow_namesrvs(broker.clone(), namesrvs));
    *broker.registrar.duties.lock() = vec![forwarding, following];
    let first = *broker.registrar.wanted.borrow();
    broker.registrar.settled(first).await;
}

/// The name servers to start and to stop to go from the `running` ones to the `wanted` ones;
/// the ones in both are left alone.
#[derive(Debug, PartialEq, Eq)]
struct Change {
    added: Vec<String>,
    removed: Vec<String>,
}

impl Change {
    fn between(running: &[String], wanted: &[String]) -> Change {
        Change {
            added: wanted
                .iter()
                .filter(|addr| !running.contains(addr))
                .cloned()
                .collect(),
            removed: running
                .iter()
                .filter(|addr| !wanted.contains(addr))
                .cloned()
                .collect(),
        }
    }
}

/// Keeps one task per name server of `namesrvAddr`, at start and after each change, until
/// the broker stops. Changes are taken one at a time, so a name server removed and added
/// again is unregistered before it is registered with again, never after.
async fn follow_namesrvs(broker: Arc<Broker>, mut namesrvs: watch::Receiver<Vec<String>>) {
    loop {
        let wanted = namesrvs.borrow_and_update().clone();
        let running: Vec<String> = broker.registrar.tasks.lock().keys().cloned().collect();
        let change = Change::between(&running, &wanted);
        // The new ones first: they must not wait on the removed ones' unregistration.
        for addr in change.added {
            broker.registrar.progress.send_modify(|all| {
                all.entry(addr.clone()).or_default();
            });
            let task = tokio::spawn(keep_registered(broker.clone(), addr.clone()));
            broker.registrar.tasks.lock().insert(addr, task);
        }
        for addr in change.removed {
            let task = broker.registrar.tasks.lock().remove(&addr);
            if let Some(task) = task {
                task.abort();
                let _ = task.await;
            }
            broker.registrar.progress.send_modify(|all| {
                all.remove(&addr);
            });
            unregister(&broker, &addr).await;
        }
        tokio::select! {
            _ = broker.stopping.cancelled() => return,
            changed = namesrvs.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
    }
}

/// One name server's task: registers the newest generation, then again after each period or
/// new generation, over one connection kept open (a name server drops a broker's routes when
/// the connection it registered over closes, so registrations must not use throwaway ones).
///
/// A refused or failed registration is tried again after 1 s, then 2, 4 and every 5 s (or
/// the period, if shorter) until accepted: until a name server accepts this broker it routes
/// nothing to it, and a broker is ready once any one name server has it. On Kubernetes a broker often starts before a name server
/// answers; waiting the whole period (30 s) left producers that asked that name server with
/// "No route info" for that long after the cluster was Running.
async fn keep_registered(broker: Arc<Broker>, addr: String) {
    let period = Duration::from_millis(broker.config.register_name_server_period.max(1000));
    let mut retry = FIRST_RETRY;
    let mut wanted = broker.registrar.wanted.subscribe();
    let mut connection = None;
    loop {
        // Read before the table is, so a change made after this read bumps `wanted` again.
        let generation = *wanted.borrow_and_update();
        let request = register_request(&broker);
        let accepted = tokio::select! {
            _ = broker.stopping.cancelled() => return,
            accepted = register(&broker.registrar, &addr, &mut connection, request) => accepted,
        };
        broker.registrar.progress.send_if_modified(|all| {
            // Gone when the name server left the list while this registration was under way.
            let Some(server) = all.get_mut(&addr) else {
                return false;
            };
            server.tried = generation;
            if accepted {
                server.registered = generation;
            }
            true
        });
        let wait = if accepted {
            retry = FIRST_RETRY;
            period
        } else {
            let wait = retry.min(period);
            retry = (retry * 2).min(LAST_RETRY);
            wait
        };
        tokio::select! {
            _ = broker.stopping.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
            _ = wanted.changed() => {}
        }
    }
}

/// The first wait after a registration failed, and the longest.
const FIRST_RETRY: Duration = Duration::from_secs(1);
const LAST_RETRY: Duration = Duration::from_secs(5);

fn register_header(broker: &Broker) -> RegisterBrokerRequestHeader {
    let config = &broker.config;
    RegisterBrokerRequestHeader {
        broker_name: config.broker_name.clone(),
        broker_addr: config.advertised_addr(),
        cluster_name: config.broker_cluster_name.clone(),
        // No master-slave HA service listens anywhere (replication will be Raft's), so no
        // address is advertised for one: a slave or tool would find nobody on listenPort+1.
        ha_server_addr: String::new(),
        broker_id: broker.broker_id() as i64,
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
async fn register(
    registrar: &Registrar,
    addr: &str,
    connection: &mut Option<Client>,
    request: RemotingCommand,
) -> bool {
    match invoke(registrar, addr, connection, request).await {
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
    registrar: &Registrar,
    addr: &str,
    slot: &mut Option<Client>,
    request: RemotingCommand,
) -> protocol::Result<RemotingCommand> {
    if slot.as_ref().is_none_or(Client::is_closed) {
        *slot = Some(connect(addr, registrar.tls.as_ref()).await?);
    }
    let client = slot.as_ref().expect("connected above");
    let result = client.invoke(request, REQUEST_TIMEOUT).await;
    if result.is_err() {
        *slot = None;
    }
    result
}

async fn connect(addr: &str, tls: Option<&ClientTls>) -> protocol::Result<Client> {
    match tokio::time::timeout(CONNECT_TIMEOUT, Client::connect_with_tls(addr, tls)).await {
        Ok(connected) => connected,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no connection within {CONNECT_TIMEOUT:?}"),
        )
        .into()),
    }
}

/// The address the name servers list as this broker group's master (brokerId 0), from the
/// first that answers: where a replicated group's follower copies its leader's state from.
pub(super) async fn master_addr(broker: &Broker) -> Option<String> {
    let namesrvs = broker.registrar.namesrvs.borrow().clone();
    for addr in namesrvs {
        let asked = async {
            let client = connect(&addr, broker.registrar.tls.as_ref()).await.ok()?;
            client.get_cluster_info().await.ok()
        };
        let Ok(Some(info)) = tokio::time::timeout(REQUEST_TIMEOUT, asked).await else {
            continue;
        };
        if let Some(group) = info.broker_addr_table.get(&broker.config.broker_name) {
            return group.broker_addrs.get(&0).cloned();
        }
    }
    None
}

/// Tells every name server of the current list at once that this broker is leaving, so
/// clients stop routing to it now rather than after the name server's two-minute expiry. The
/// registering tasks end first, so none registers again behind the unregistration, and the
/// list is no longer followed, so none starts again.
pub async fn unregister_all(broker: &Broker) {
    let duties = std::mem::take(&mut *broker.registrar.duties.lock());
    let tasks = std::mem::take(&mut *broker.registrar.tasks.lock());
    for task in duties.into_iter().chain(tasks.into_values()) {
        task.abort();
        let _ = task.await;
    }
    let addrs = broker.registrar.namesrvs.borrow().clone();
    join_all(addrs.iter().map(|addr| unregister(broker, addr))).await;
}

/// One UNREGISTER_BROKER, over a connection of its own, bounded by [`UNREGISTER_TIMEOUT`];
/// a name server that does not answer drops the broker at its expiry instead.
async fn unregister(broker: &Broker, addr: &str) {
    let register = register_header(broker);
    let header = UnregisterBrokerRequestHeader {
        broker_name: register.broker_name,
        broker_addr: register.broker_addr,
        cluster_name: register.cluster_name,
        broker_id: register.broker_id,
    };
    let request = RemotingCommand::request(RequestCode::UnregisterBroker, &header);
    let mut slot = None;
    let unregistering = invoke(&broker.registrar, addr, &mut slot, request);
    match tokio::time::timeout(UNREGISTER_TIMEOUT, unregistering).await {
        Ok(Ok(_)) => debug!(namesrv = %addr, "unregistered"),
        Ok(Err(error)) => {
            warn!(namesrv = %addr, %error, "cannot unregister from the name server")
        }
        Err(_) => {
            warn!(namesrv = %addr, "the name server did not answer the unregistration in time")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "10.0.0.1:9876";
    const B: &str = "10.0.0.2:9876";
    const C: &str = "10.0.0.3:9876";

    fn addrs(list: &[&str]) -> Vec<String> {
        list.iter().map(|addr| addr.to_string()).collect()
    }

    #[tokio::test]
    async fn one_name_server_accepting_settles_a_generation_while_another_hangs() {
        let registrar = Registrar::new(addrs(&[A, B]));
        let generation = registrar.request();
        registrar.progress.send_modify(|all| {
            all.insert(
                A.into(),
                Progress {
                    tried: generation,
                    registered: generation,
                },
            );
        });
        let waited = std::time::Instant::now();
        registrar.settled(generation).await;
        assert!(waited.elapsed() < ROUTE_WAIT);
    }

    #[tokio::test]
    async fn every_name_server_failing_settles_a_generation_at_once() {
        let registrar = Registrar::new(addrs(&[A, B]));
        let generation = registrar.request();
        let waiter = registrar.settled(generation);
        registrar.progress.send_modify(|all| {
            for server in all.values_mut() {
                server.tried = generation;
            }
        });
        let waited = std::time::Instant::now();
        waiter.await;
        assert!(waited.elapsed() < ROUTE_WAIT);
    }

    #[tokio::test]
    async fn an_older_registration_does_not_settle_a_newer_generation() {
        let registrar = Arc::new(Registrar::new(addrs(&[A])));
        let older = registrar.request();
        let newer = registrar.request();
        let waiter = tokio::spawn({
            let registrar = registrar.clone();
            async move { registrar.settled(newer).await }
        });
        registrar.progress.send_modify(|all| {
            all.insert(
                A.into(),
                Progress {
                    tried: older,
                    registered: older,
                },
            );
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!waiter.is_finished());
        registrar.progress.send_modify(|all| {
            all.get_mut(A).unwrap().registered = newer;
        });
        waiter.await.unwrap();
    }

    #[test]
    fn a_changed_list_starts_the_new_name_servers_and_stops_the_removed_ones_only() {
        assert_eq!(
            Change::between(&addrs(&[A, B]), &addrs(&[B, C])),
            Change {
                added: addrs(&[C]),
                removed: addrs(&[A]),
            }
        );
        let unchanged = Change::between(&addrs(&[A, B]), &addrs(&[B, A]));
        assert!(unchanged.added.is_empty() && unchanged.removed.is_empty());
        // At start nothing runs: every name server is new.
        assert_eq!(Change::between(&[], &addrs(&[A, B])).added, addrs(&[A, B]));
    }

    #[test]
    fn only_name_servers_of_the_current_list_count_as_registered_with() {
        let registrar = Registrar::new(addrs(&[A, B]));
        registrar.progress.send_modify(|all| {
            all.get_mut(A).unwrap().registered = 1;
        });
        assert_eq!(registrar.registered_with(), 1);
        // A left the list: its acceptance no longer counts, even before its task is stopped.
        registrar.set_namesrvs(addrs(&[B, C]));
        assert_eq!(registrar.namesrv_count(), 2);
        assert_eq!(registrar.registered_with(), 0);
        registrar.progress.send_modify(|all| {
            all.entry(C.into()).or_default().registered = 1;
        });
        assert_eq!(registrar.registered_with(), 1);
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
        broker.registrar.progress.send_modify(|all| {
            all.get_mut("127.0.0.1:1").unwrap().tried = 1;
        });
        assert_eq!(broker.readiness(), unregistered);
        broker.registrar.progress.send_modify(|all| {
            all.get_mut("127.0.0.1:2").unwrap().registered = 1;
        });
        assert_eq!(broker.registrar.registered_with(), 1);
        assert_eq!(broker.readiness(), Ok(()));
        broker.begin_shutdown();
        assert_eq!(broker.readiness(), Err(NotReady::Stopping));
    }

    #[test]
    fn a_read_only_broker_registers_every_topic_read_only() {
        let dir = tempfile::tempdir().unwrap();
        let broker = Broker::open_default(dir.path());
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
