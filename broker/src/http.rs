//! The process's one small HTTP server, on `metricsPromExporterHost:metricsPromExporterPort`:
//! `/livez` and `/readyz` always, `/metrics` only when `metricsExporterType` is PROM (with
//! DISABLE it is 404, and the probes still have their endpoint). It runs apart from remoting,
//! so a slow scrape or probe never shares a connection or a task with client traffic.

use std::net::SocketAddr;

use prometheus::Registry;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::error::Result;
use crate::health::{self, Readiness};
use crate::metrics::{self, ExporterType};
use crate::run::bind;

pub struct Endpoint {
    addr: SocketAddr,
    stop: CancellationToken,
    server: JoinHandle<()>,
}

impl Endpoint {
    /// Binds `addr` and serves there. A port already taken stops the start, as the remoting
    /// port does: a broker without its endpoint would never turn ready, and without metrics
    /// it would alert no one.
    pub async fn start(
        addr: &str,
        exporter: ExporterType,
        registry: Registry,
        readiness: Readiness,
    ) -> Result<Endpoint> {
        let listener = bind(addr).await?;
        let addr = listener
            .local_addr()
            .expect("a bound listener has an address");
        let mut app = health::router(readiness);
        if exporter == ExporterType::Prom {
            app = app.merge(metrics::router(registry));
        }
        let stop = CancellationToken::new();
        let shutdown = stop.clone().cancelled_owned();
        let server = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
            {
                warn!(%error, "http endpoint stopped");
            }
        });
        info!(%addr, metrics = %exporter, "http endpoint ready: /livez, /readyz and, with PROM, /metrics");
        Ok(Endpoint { addr, stop, server })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.server.await;
    }
}
