//! Keeping the name servers informed: REGISTER_BROKER to each of them every
//! `registerNameServerPeriod` and at once when the topic table changes, UNREGISTER_BROKER
//! on a clean stop.

use std::sync::Arc;
use std::time::Duration;

use protocol::body::{self, RegisterBrokerBody};
use protocol::header::{RegisterBrokerRequestHeader, UnregisterBrokerRequestHeader};
use protocol::{Client, RemotingCommand, RequestCode, ResponseCode};
use tracing::{debug, warn};

use super::Broker;

const REQUEST_TIMEOUT: Duration = Duration::from_secs(6);

/// One connection per name server, kept open: a name server drops a broker's routes when
/// the connection it registered over closes, so registrations must not use throwaway ones.
pub struct Registrar {
    clients: tokio::sync::Mutex<Vec<Option<Client>>>,
}

impl Registrar {
    pub fn new(namesrv_count: usize) -> Registrar {
        Registrar {
            clients: tokio::sync::Mutex::new(vec![None; namesrv_count]),
        }
    }
}

/// Registers now: after a topic is created on a client's behalf, so the route exists
/// before the client is answered (as RocketMQ's broker does).
pub async fn register_now(broker: &Broker) {
    let mut clients = broker.registrar.clients.lock().await;
    register_all(broker, &mut clients).await;
}

/// Registers once, then keeps registering in the background until the broker stops.
pub async fn start(broker: Arc<Broker>) {
    register_now(&broker).await;
    tokio::spawn(async move {
        let period = Duration::from_millis(broker.config.register_name_server_period.max(1000));
        loop {
            tokio::select! {
                _ = broker.stopping.cancelled() => return,
                _ = tokio::time::sleep(period) => {}
                _ = broker.topics_changed.notified() => {}
            }
            register_now(&broker).await;
        }
    });
}

fn register_header(broker: &Broker) -> RegisterBrokerRequestHeader {
    let config = &broker.config;
    RegisterBrokerRequestHeader {
        broker_name: config.broker_name.clone(),
        broker_addr: config.advertised_addr(),
        cluster_name: config.broker_cluster_name.clone(),
        ha_server_addr: format!("{}:{}", config.broker_ip1, config.listen_port as u32 + 1),
        broker_id: config.broker_id as i64,
        heartbeat_timeout_millis: None,
        enable_acting_master: Some(false),
        compressed: Some(false),
        body_crc32: None,
    }
}

async fn register_all(broker: &Broker, clients: &mut [Option<Client>]) {
    let body = body::to_json(&RegisterBrokerBody {
        topic_config_serialize_wrapper: broker.topics.snapshot(),
        filter_server_list: Vec::new(),
    });
    let mut header = register_header(broker);
    header.body_crc32 = Some((crc32fast::hash(&body) & 0x7FFF_FFFF) as i32);
    for (addr, slot) in broker.config.namesrv_addrs().iter().zip(clients.iter_mut()) {
        let request =
            RemotingCommand::request(RequestCode::RegisterBroker, &header).with_body(body.clone());
        match invoke(addr, slot, request).await {
            Ok(response) if response.code == ResponseCode::Success.as_i32() => {
                debug!(namesrv = %addr, "registered");
            }
            Ok(response) => {
                warn!(namesrv = %addr, code = response.code, remark = ?response.remark, "registration refused")
            }
            Err(error) => warn!(namesrv = %addr, %error, "cannot register with the name server"),
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
        *slot = Some(Client::connect(addr).await?);
    }
    let client = slot.as_ref().expect("connected above");
    let result = client.invoke(request, REQUEST_TIMEOUT).await;
    if result.is_err() {
        *slot = None;
    }
    result
}

/// Tells every name server this broker is leaving, so clients stop routing to it now
/// rather than after the name server's two-minute expiry.
pub async fn unregister_all(broker: &Broker) {
    let register = register_header(broker);
    let header = UnregisterBrokerRequestHeader {
        broker_name: register.broker_name,
        broker_addr: register.broker_addr,
        cluster_name: register.cluster_name,
        broker_id: register.broker_id,
    };
    for addr in broker.config.namesrv_addrs() {
        let request = RemotingCommand::request(RequestCode::UnregisterBroker, &header);
        let mut slot = None;
        if let Err(error) = invoke(&addr, &mut slot, request).await {
            warn!(namesrv = %addr, %error, "cannot unregister from the name server");
        }
    }
}
