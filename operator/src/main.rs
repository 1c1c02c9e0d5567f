//! `rocketry-operator`: serves /metrics, /healthz and /readyz and KEDA's external scaler, waits
//! to hold the leader lease, then reconciles until the lease is lost or the process is told to
//! stop.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use operator::http::{self, Health};
use operator::leader::LeaseLock;
use operator::metrics::Metrics;
use operator::Context;
use tokio::sync::watch;

#[derive(Parser)]
#[command(version, about = "The Rocketry Kubernetes operator")]
struct Args {
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, default_value = "0.0.0.0:8080")]
    http_address: SocketAddr,
    /// Address of KEDA's external scaler (gRPC); every replica serves it, leader or not.
    #[arg(long, default_value = "0.0.0.0:9090")]
    external_scaler_address: SocketAddr,
    /// Watch only this namespace (every namespace when unset).
    #[arg(long, env = "WATCH_NAMESPACE")]
    watch_namespace: Option<String>,
    /// Namespace of the leader-election Lease (the operator's own namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    /// Name of the leader-election Lease.
    #[arg(long, default_value = "rocketry-operator")]
    lease_name: String,
    /// This replica's name in the Lease (the pod name); each process adds its own suffix.
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Reconcile without holding the Lease (a single replica only).
    #[arg(long)]
    no_leader_election: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,kube=warn".into()),
        )
        .init();
    let args = Args::parse();
    let client = kube::Client::try_default()
        .await
        .context("no Kubernetes client configuration")?;
    // One identity per process, not per pod, as client-go's leader election does: a replica
    // whose container was killed and restarted must not take the lease its dead process held
    // for its own, but wait for it like any other standby.
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let identity = format!(
        "{}_{:x}{:x}",
        args.identity.as_deref().unwrap_or("rocketry-operator"),
        std::process::id(),
        started % (1 << 32)
    );
    let metrics = Metrics::default();
    let ready = Arc::new(AtomicBool::new(false));
    let (stop, stopped) = watch::channel(false);
    let listener = tokio::net::TcpListener::bind(args.http_address)
        .await
        .with_context(|| format!("cannot listen on {}", args.http_address))?;
    let health = Health {
        metrics: metrics.clone(),
        ready: ready.clone(),
    };
    let server = tokio::spawn(http::serve(listener, health, wait_for(stopped.clone())));
    let scaler_listener = tokio::net::TcpListener::bind(args.external_scaler_address)
        .await
        .with_context(|| format!("cannot listen on {}", args.external_scaler_address))?;
    let scaler = tokio::spawn(operator::external_scaler::serve(
        scaler_listener,
        client.clone(),
        wait_for(stopped.clone()),
    ));
    // SIGTERM is how the kubelet stops the pod; SIGINT is Ctrl-C at a terminal.
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot listen for SIGTERM")?;
    tokio::spawn(async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
        let _ = stop.send(true);
    });

    let context = Arc::new(Context::new(
        client.clone(),
        metrics,
        Some(identity.clone()),
    ));
    let lease = LeaseLock::new(
        client,
        &args.lease_namespace,
        &args.lease_name,
        &identity,
        Duration::from_secs(15),
    );
    if !args.no_leader_election {
        // A standby is ready too: it answers and takes over as soon as the lease expires.
        ready.store(true, Ordering::Relaxed);
        tracing::info!(%identity, lease = %args.lease_name, "waiting for the leader lease");
        tokio::select! {
            acquired = lease.acquire() => acquired.context("leader election failed")?,
            _ = wait_for(stopped.clone()) => return Ok(()),
        }
        tracing::info!(%identity, "holding the leader lease; reconciling");
    }
    ready.store(true, Ordering::Relaxed);
    let controller = operator::run(
        context,
        args.watch_namespace.as_deref(),
        wait_for(stopped.clone()),
    );
    let outcome = if args.no_leader_election {
        controller.await;
        Ok(())
    } else {
        // In-flight reconciles get a moment to finish once a signal stops the controllers,
        // but no more: one waiting on a slow broker must not keep the lease from a standby
        // until the kubelet's SIGKILL. Reconciles are level-triggered, so the next leader
        // redoes whatever one left half done.
        let grace_spent = async {
            wait_for(stopped.clone()).await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        };
        tokio::select! {
            _ = controller => release(&lease).await,
            _ = grace_spent => {
                tracing::warn!(grace = ?SHUTDOWN_GRACE, "reconciles still running at shutdown; leaving them to the next leader");
                release(&lease).await
            }
            held = lease.hold() => {
                // Exiting is the safe answer to a lost lease: another replica may already be
                // reconciling, and the Deployment restarts this one as a standby.
                held.context("leader lease renewal failed")?;
                Err(anyhow::anyhow!("lost the leader lease"))
            }
        }
    };
    server.abort();
    scaler.abort();
    outcome
}

/// Stopped on a signal: hands the lease to a standby now rather than after it expires.
async fn release(lease: &LeaseLock) -> anyhow::Result<()> {
    if let Err(error) = lease.release().await {
        tracing::warn!(%error, "cannot release the leader lease");
    }
    Ok(())
}

/// How long in-flight reconciles may run once the operator is told to stop.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

async fn wait_for(mut stopped: watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stop| *stop).await;
}
