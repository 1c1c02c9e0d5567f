//! The TCP side shared by the name server and the broker: accept connections within the
//! connection cap, read whole frames, hand each request to a [`Service`], and write the
//! answers back, holding each connection to its limits (see [`Limits`]).

mod channel;
mod connection;
mod frame_reader;
mod limits;
mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use protocol::RemotingCommand;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::warn;

pub use channel::Channel;
pub use limits::Limits;
pub(crate) use tls::protocol_error as tls_error;
pub use tls::TlsServer;

/// How long a graceful stop waits for requests already being processed.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(20);

/// What a service answers with: a command, and the stored records its body goes on with.
/// A pull answers with the CommitLog's records as the store maps them, and the writer sends
/// them from there behind the header, so their bytes are never copied in user space.
#[derive(Debug)]
pub struct Answer {
    pub command: RemotingCommand,
    pub records: Vec<Bytes>,
}

impl Answer {
    /// The command as a client decodes it, its records joined into its body (tests only:
    /// the server never joins them).
    #[cfg(test)]
    pub fn joined(self) -> RemotingCommand {
        if self.records.is_empty() {
            return self.command;
        }
        let mut body = self.command.body.to_vec();
        for record in &self.records {
            body.extend_from_slice(record);
        }
        self.command.with_body(body)
    }
}

impl From<RemotingCommand> for Answer {
    fn from(command: RemotingCommand) -> Answer {
        Answer {
            command,
            records: Vec::new(),
        }
    }
}

/// Answers requests. `None` means no answer (oneway requests, or a request the service
/// answers later through the [`Channel`]).
pub trait Service: Send + Sync + 'static {
    fn handle(
        &self,
        request: RemotingCommand,
        channel: &Channel,
    ) -> impl Future<Output = Option<Answer>> + Send;

    /// Whether a request is served as soon as it is read, from slots of its own, rather than
    /// waiting for one of the connection's request slots behind the requests read before
    /// it. A client that floods a connection with sends must not hold up its heartbeat or
    /// its unregistering: RocketMQ serves those from executors of their own, and a client
    /// whose heartbeat times out closes the connection and sends again what was in flight.
    fn served_at_once(&self, _code: i32) -> bool {
        false
    }

    /// Called once when a connection closes, for example to drop the client's registrations.
    fn disconnected(&self, _channel: &Channel) {}

    /// What the header of any frame above `serverFirstFrameMaxBytes` must pass before its
    /// body is read, on every connection opened from now on; `None` vets only frames
    /// before a connection's first request.
    fn large_frame_check(&self) -> Option<HeaderCheck> {
        None
    }
}

/// A test of a request's header alone, made before its body is buffered.
pub type HeaderCheck = Arc<dyn Fn(&RemotingCommand) -> bool + Send + Sync>;

/// How often, at most, refused connections are logged.
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// How often the TLS certificate files are looked at for a change.
const CERTIFICATE_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Serves `listener` until `shutdown` resolves, then stops accepting, lets requests in
/// flight finish (up to a bound) and returns. With `tls`, connections speak TLS as its
/// mode says.
pub async fn serve<S: Service>(
    listener: TcpListener,
    service: Arc<S>,
    limits: Limits,
    tls: Option<Arc<TlsServer>>,
    shutdown: impl Future<Output = ()>,
) {
    let tracker = TaskTracker::new();
    let closing = CancellationToken::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut refusals = Refusals::default();
    let mut certificate_check = tokio::time::interval(CERTIFICATE_CHECK_INTERVAL);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = certificate_check.tick(), if tls.is_some() => {
                if let Some(tls) = &tls {
                    tls.reload_if_changed();
                }
            }
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    // Accepting and closing at once, rather than leaving connections in the
                    // backlog, tells the client straight away and costs us nothing to keep.
                    let Ok(slot) = slots.clone().try_acquire_owned() else {
                        refusals.refused(peer, limits.max_connections);
                        drop(stream);
                        continue;
                    };
                    let service = service.clone();
                    let closing = closing.clone();
                    let tls = tls.clone();
                    tracker.spawn(async move {
                        connection::serve(stream, peer, service, limits, tls, closing).await;
                        drop(slot);
                    });
                }
                // Running out of file descriptors must not end the server; back off a little.
                Err(error) => {
                    warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
    drop(listener);
    closing.cancel();
    tracker.close();
    if tokio::time::timeout(DRAIN_TIMEOUT, tracker.wait())
        .await
        .is_err()
    {
        warn!("requests still running after {DRAIN_TIMEOUT:?}; stopping anyway");
    }
}

/// Logs refused connections at most once per [`REFUSAL_LOG_INTERVAL`], so a flood of them
/// does not flood the log too.
#[derive(Default)]
struct Refusals {
    last_logged: Option<Instant>,
    unlogged: u64,
}

impl Refusals {
    fn refused(&mut self, peer: SocketAddr, max_connections: usize) {
        self.unlogged += 1;
        if self
            .last_logged
            .is_some_and(|at| at.elapsed() < REFUSAL_LOG_INTERVAL)
        {
            return;
        }
        warn!(
            %peer,
            refused = self.unlogged,
            "connection limit of {max_connections} reached (serverMaxConnections); closing new connections"
        );
        self.last_logged = Some(Instant::now());
        self.unlogged = 0;
    }
}

#[cfg(test)]
#[path = "server_test.rs"]
mod server_test;
