//! Starting and stopping the name server, the broker, or both in one process.

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::broker::Broker;
use crate::config::{NamesrvConfig, Settings};
use crate::error::{Error, Result};
use crate::namesrv::Namesrv;
use crate::server;

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
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    listening_on(&mut config, &listener);
    let limits = config.server_limits();
    let namesrv = Namesrv::new(config);
    namesrv.spawn_expiry();
    info!(addr = %local_addr(&listener), "name server ready");
    server::serve(listener, namesrv, limits, shutdown).await;
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
    stop: CancellationToken,
    server: tokio::task::JoinHandle<()>,
}

impl RunningBroker {
    /// Opens the store, starts serving on `listener`, and registers with the name servers
    /// once before returning, so clients find its routes as soon as it says it is ready.
    pub async fn start(mut settings: Settings, listener: TcpListener) -> Result<RunningBroker> {
        // With listenPort 0 (tests) the advertised address must carry the real port.
        settings.broker.listen_port = local_addr(&listener).port();
        let limits = settings.broker.server_limits();
        let broker = Broker::open(settings.broker, settings.store)?;
        let stop = CancellationToken::new();
        let server = tokio::spawn(server::serve(
            listener,
            broker.clone(),
            limits,
            stop.clone().cancelled_owned(),
        ));
        broker.start().await;
        Ok(RunningBroker {
            broker,
            stop,
            server,
        })
    }

    /// Stops accepting, finishes requests in flight, then flushes, checkpoints and
    /// unregisters.
    pub async fn stop(self) -> Result<()> {
        self.broker.begin_shutdown();
        self.stop.cancel();
        let _ = self.server.await;
        self.broker.shutdown().await
    }
}

/// Serves a broker on `listener` until `shutdown` resolves.
pub async fn run_broker(
    settings: Settings,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let running = RunningBroker::start(settings, listener).await?;
    info!(
        addr = %running.broker.config().advertised_addr(),
        store = %running.broker.store().config().store_path_root_dir.display(),
        "broker ready"
    );
    shutdown.await;
    running.stop().await
}

/// A name server and a broker in one process: the broker registers with the name server
/// next to it. The broker stops first, so it can still unregister.
pub async fn run_standalone(
    mut settings: Settings,
    namesrv_listener: TcpListener,
    broker_listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let namesrv_addr = local_addr(&namesrv_listener);
    settings.broker.namesrv_addr = format!("127.0.0.1:{}", namesrv_addr.port());
    listening_on(&mut settings.namesrv, &namesrv_listener);
    let namesrv = Namesrv::new(settings.namesrv.clone());
    namesrv.spawn_expiry();
    let namesrv_stop = CancellationToken::new();
    let namesrv_task = tokio::spawn(server::serve(
        namesrv_listener,
        namesrv,
        settings.namesrv.server_limits(),
        namesrv_stop.clone().cancelled_owned(),
    ));
    let running = RunningBroker::start(settings, broker_listener).await?;
    let store_dir = running.broker.store().config().store_path_root_dir.clone();
    println!(
        "Rocketry standalone is ready: name server {namesrv_addr}, broker {}, data in {}",
        running.broker.config().advertised_addr(),
        store_dir.display()
    );
    shutdown.await;
    info!("stopping");
    let result = running.stop().await;
    namesrv_stop.cancel();
    let _ = namesrv_task.await;
    result
}

fn local_addr(listener: &TcpListener) -> std::net::SocketAddr {
    listener
        .local_addr()
        .expect("a bound listener has an address")
}
