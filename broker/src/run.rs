//! Starting and stopping the name server, the broker, or both in one process.

use std::future::Future;
use std::sync::{Arc, OnceLock};

use prometheus::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::acl::Acl;
use crate::broker::{metrics as broker_metrics, Broker, STATE_DIR};
use crate::config::{NamesrvConfig, Settings, TlsConfig, TlsMode};
use crate::error::{Error, Result};
use crate::health::Readiness;
use crate::http::Endpoint;
use crate::metrics::ExporterType;
use crate::namesrv::Namesrv;
use crate::server::{self, TlsServer};

/// Binds `addr`, naming it in the error.
pub async fn bind(addr: &str) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Listen {
            addr: addr.to_string(),
            source,
        })
}

/// Serves a name server on `listener` until `shutdown` resolves.
pub async fn run_namesrv(
    mut config: NamesrvConfig,
    tls: &TlsConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    listening_on(&mut config, &listener);
    let limits = config.server_limits();
    let tls = TlsServer::from_config(tls)?;
    let registry = Registry::new();
    let endpoint = Endpoint::start(
        &config.http_addr(),
        config.metrics_exporter_type,
        registry.clone(),
        Readiness::Listening,
    )
    .await?;
    let acl = Acl::for_namesrv(&config)?;
    let namesrv = Namesrv::with_acl(config, acl);
    namesrv
        .register_metrics(&registry)
        .expect("each metric registers once");
    namesrv.spawn_expiry();
    info!(addr = %local_addr(&listener), "name server ready");
    server::serve(listener, namesrv, limits, tls, shutdown).await;
    endpoint.stop().await;
    info!("name server stopped");
    Ok(())
}

/// Sets the name server's `listenPort` and `bindAddress` to what it really listens on, so
/// GET_NAMESRV_CONFIG tells the truth in `standalone` (whose name server reads no file of
/// its own) and with port 0.
fn listening_on(config: &mut NamesrvConfig, listener: &TcpListener) {
    let addr = local_addr(listener);
    config.listen_port = addr.port();
    config.bind_address = addr.ip().to_string();
}

/// A broker that is open and serving; [`RunningBroker::stop`] ends it cleanly.
pub struct RunningBroker {
    pub broker: Arc<Broker>,
    /// What the metrics endpoint exports; a standalone name server adds its own.
    pub registry: Registry,
    endpoint: Endpoint,
    stop: CancellationToken,
    server: tokio::task::JoinHandle<()>,
}

impl RunningBroker {
    /// Opens the store, starts serving on `listener`, and registers with the name servers
    /// once before returning, so clients find its routes as soon as it says it is ready.
    /// The HTTP endpoint starts first, so `/livez` answers through a long recovery while
    /// `/readyz` says what the broker is waiting for.
    pub async fn start(mut settings: Settings, listener: TcpListener) -> Result<RunningBroker> {
        // With listenPort 0 (tests) the advertised address must carry the real port.
        settings.broker.listen_port = local_addr(&listener).port();
        let limits = settings.broker.server_limits();
        let tls = TlsServer::from_config(&settings.tls)?;
        let namesrv_tls = settings.tls.client()?;
        // Filled once the store has recovered; a scrape before then finds no series.
        let registry = Registry::new();
        let opened = Arc::new(OnceLock::new());
        let endpoint = Endpoint::start(
            &settings.broker.http_addr(),
            settings.broker.metrics_exporter_type,
            registry.clone(),
            Readiness::Broker(opened.clone()),
        )
        .await?;
        // Recovery reads and checks the CommitLog's tail, which may take minutes: on a
        // blocking thread, so the endpoint keeps answering on the runtime's.
        let opened_broker = match settings.broker.dledger() {
            Ok(None) => {
                let (config, store) = (settings.broker, settings.store);
                on_blocking_thread(move || Broker::open_with_tls(config, store, namesrv_tls)).await
            }
            Ok(Some(dledger)) => open_replica(settings, dledger, namesrv_tls).await,
            Err(error) => Err(error),
        };
        let broker = match opened_broker {
            Ok(broker) => broker,
            Err(error) => {
                endpoint.stop().await;
                return Err(error);
            }
        };
        broker_metrics::register(&broker, &registry).expect("each metric registers once");
        let _ = opened.set(broker.clone());
        let stop = CancellationToken::new();
        let server = tokio::spawn(server::serve(
            listener,
            broker.clone(),
            limits,
            tls,
            stop.clone().cancelled_owned(),
        ));
        broker.start().await;
        Ok(RunningBroker {
            broker,
            registry,
            endpoint,
            stop,
            server,
        })
    }

    /// Where the HTTP endpoint (health, and metrics when enabled) listens.
    pub fn http_addr(&self) -> std::net::SocketAddr {
        self.endpoint.addr()
    }

    /// Stops accepting, finishes requests in flight, then flushes, checkpoints and
    /// unregisters.
    pub async fn stop(self) -> Result<()> {
        self.broker.begin_shutdown();
        self.stop.cancel();
        let _ = self.server.await;
        self.endpoint.stop().await;
        self.broker.shutdown().await
    }
}

/// Runs `open` on a blocking thread (a store's recovery), passing on a panic.
async fn on_blocking_thread<T: Send + 'static>(
    open: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    match tokio::task::spawn_blocking(open).await {
        Ok(opened) => opened,
        Err(panicked) => std::panic::resume_unwind(panicked.into_panic()),
    }
}

/// Opens a replica of a Raft-replicated group: its Raft listens on its `dLegerPeers`
/// address's port, on `bindAddress`.
async fn open_replica(
    settings: Settings,
    dledger: crate::config::Dledger,
    namesrv_tls: Option<protocol::client::ClientTls>,
) -> Result<Arc<Broker>> {
    let own = dledger.own_addr();
    let port = own.rsplit_once(':').map_or(own, |(_, port)| port);
    let listener = bind(&format!("{}:{port}", settings.broker.bind_address)).await?;
    let (config, store) = (settings.broker, settings.store);
    let runtime = tokio::runtime::Handle::current();
    on_blocking_thread(move || {
        let replica = runtime.block_on(crate::replication::Replica::start(
            &dledger.group,
            dledger.self_id,
            store,
            crate::replication::Transport::tcp(listener),
            dledger.peers.clone(),
            config.advertised_addr(),
        ))?;
        Broker::open_replica(config, replica, dledger.self_id, namesrv_tls)
    })
    .await
}

/// Why a broker stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Stopped {
    /// As asked (SIGTERM).
    Asked,
    /// It must be started over: a replica's store begins again empty at its next start
    /// ([`Broker::restart_requested`]).
    ToRestart,
}

/// Waits for `shutdown`, or for the broker to need a restart.
async fn until_stopped(broker: &Broker, shutdown: impl Future<Output = ()>) -> Stopped {
    tokio::select! {
        _ = shutdown => Stopped::Asked,
        _ = broker.restart_requested() => {
            info!("stopping to start over");
            Stopped::ToRestart
        }
    }
}

/// Serves a broker on `listener` until `shutdown` resolves or it must start over.
pub async fn run_broker(
    settings: Settings,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<Stopped> {
    let running = RunningBroker::start(settings, listener).await?;
    info!(
        addr = %running.broker.config().advertised_addr(),
        store = %running.broker.store().config().store_path_root_dir.display(),
        "broker ready"
    );
    let stopped = until_stopped(&running.broker, shutdown).await;
    running.stop().await?;
    Ok(stopped)
}

/// A name server and a broker in one process: the broker registers with the name server
/// next to it. The broker stops first, so it can still unregister.
pub async fn run_standalone(
    mut settings: Settings,
    namesrv_listener: TcpListener,
    broker_listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<Stopped> {
    // The name server's own address, or loopback when it listens on every address: a name
    // server bound to one address (bindAddress) is not on loopback.
    let mut namesrv_addr = local_addr(&namesrv_listener);
    if namesrv_addr.ip().is_unspecified() {
        namesrv_addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    settings.broker.namesrv_addr = namesrv_addr.to_string();
    // The broker's own name server takes only TLS in enforcing mode, so the broker speaks it.
    if settings.tls.mode == TlsMode::Enforcing {
        settings.tls.client_enable = true;
    }
    listening_on(&mut settings.namesrv, &namesrv_listener);
    // The broker's ACL settings and users guard its name server's changes too.
    let state_dir = settings.store.store_path_root_dir.join(STATE_DIR);
    let acl = Acl::for_broker(&settings.broker, &state_dir)?;
    let namesrv = Namesrv::with_acl(settings.namesrv.clone(), acl);
    namesrv.spawn_expiry();
    let namesrv_stop = CancellationToken::new();
    let namesrv_task = tokio::spawn(server::serve(
        namesrv_listener,
        namesrv.clone(),
        settings.namesrv.server_limits(),
        TlsServer::from_config(&settings.tls)?,
        namesrv_stop.clone().cancelled_owned(),
    ));
    let running = RunningBroker::start(settings, broker_listener).await?;
    // One process, one endpoint: the broker's, with the name server's series beside its own
    // (told apart by node_type); the name server's metrics keys are not read.
    namesrv
        .register_metrics(&running.registry)
        .expect("each metric registers once");
    let store_dir = running.broker.store().config().store_path_root_dir.clone();
    let http = running.http_addr();
    let metrics = match running.broker.config().metrics_exporter_type {
        ExporterType::Prom => format!(", metrics http://{http}/metrics"),
        ExporterType::Disable => String::new(),
    };
    println!(
        "Rocketry standalone is ready: name server {namesrv_addr}, broker {}, data in {}{metrics}, health http://{http}/readyz",
        running.broker.config().advertised_addr(),
        store_dir.display()
    );
    let stopped = until_stopped(&running.broker, shutdown).await;
    info!("stopping");
    let result = running.stop().await;
    namesrv_stop.cancel();
    let _ = namesrv_task.await;
    result.map(|()| stopped)
}

fn local_addr(listener: &TcpListener) -> std::net::SocketAddr {
    listener
        .local_addr()
        .expect("a bound listener has an address")
}
