//! The TCP side shared by the name server and the broker: accept connections, read whole
//! frames, hand each request to a [`Service`], and write the answers back.
//!
//! Each request runs in its own task, because a held PULL (long polling) must not stall the
//! other requests multiplexed on the same connection; answers are matched by opaque, so
//! they may leave in any order. One writer task per connection owns the socket's write
//! half and batches whatever answers are ready into one flush.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use protocol::{RemotingCodec, RemotingCommand, ResponseCode};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::codec::{FramedRead, FramedWrite};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

/// How long a graceful stop waits for requests already being processed.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(20);

/// Answers requests. `None` means no answer (oneway requests, or a request the service
/// answers later through the [`Channel`]).
pub trait Service: Send + Sync + 'static {
    fn handle(
        &self,
        request: RemotingCommand,
        channel: &Channel,
    ) -> impl Future<Output = Option<RemotingCommand>> + Send;

    /// Called once when a connection closes, for example to drop the client's registrations.
    fn disconnected(&self, _channel: &Channel) {}
}

/// One client connection, as seen by a service: who it is and a way to write to it.
#[derive(Clone, Debug)]
pub struct Channel {
    id: u64,
    peer: SocketAddr,
    local: SocketAddr,
    outbound: mpsc::UnboundedSender<RemotingCommand>,
}

static NEXT_CHANNEL_ID: AtomicU64 = AtomicU64::new(1);

/// Opaques of requests the server starts (NOTIFY_CONSUMER_IDS_CHANGED, ...). Negative, so
/// they never look like an answer to one of the client's own requests.
static NEXT_SERVER_OPAQUE: AtomicI32 = AtomicI32::new(i32::MIN);

impl Channel {
    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Queues a command (a late answer, or a request such as NOTIFY_CONSUMER_IDS_CHANGED)
    /// for this connection; false when the connection is gone.
    pub fn send(&self, command: RemotingCommand) -> bool {
        self.outbound.send(command).is_ok()
    }

    /// Sends a request of the server's own to the client, with a fresh opaque.
    pub fn send_request(&self, mut request: RemotingCommand) -> bool {
        request.opaque = NEXT_SERVER_OPAQUE.fetch_add(1, Ordering::Relaxed);
        self.send(request)
    }

    /// A channel not backed by a socket, whose writes go to the returned receiver.
    #[cfg(test)]
    pub fn detached(id: u64) -> (Channel, mpsc::UnboundedReceiver<RemotingCommand>) {
        let (outbound, queue) = mpsc::unbounded_channel();
        let addr: SocketAddr = ([127, 0, 0, 1], 1).into();
        let channel = Channel {
            id,
            peer: addr,
            local: addr,
            outbound,
        };
        (channel, queue)
    }

    pub fn is_open(&self) -> bool {
        !self.outbound.is_closed()
    }
}

impl PartialEq for Channel {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

impl Eq for Channel {}

impl std::hash::Hash for Channel {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.id.hash(state)
    }
}

/// Serves `listener` until `shutdown` resolves, then stops accepting, lets requests in
/// flight finish (up to a bound) and returns.
pub async fn serve<S: Service>(
    listener: TcpListener,
    service: Arc<S>,
    shutdown: impl Future<Output = ()>,
) {
    let tracker = TaskTracker::new();
    let closing = CancellationToken::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let service = service.clone();
                    let closing = closing.clone();
                    tracker.spawn(connection(stream, peer, service, closing));
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

async fn connection<S: Service>(
    stream: TcpStream,
    peer: SocketAddr,
    service: Arc<S>,
    closing: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let local = match stream.local_addr() {
        Ok(addr) => addr,
        Err(_) => return,
    };
    let (read_half, write_half) = stream.into_split();
    let (outbound, mut queue) = mpsc::unbounded_channel::<RemotingCommand>();
    let channel = Channel {
        id: NEXT_CHANNEL_ID.fetch_add(1, Ordering::Relaxed),
        peer,
        local,
        outbound,
    };
    debug!(%peer, id = channel.id, "connection opened");

    // Ends when `done` is cancelled, after writing whatever is already queued.
    let done = CancellationToken::new();
    let writer_done = done.clone();
    let writer = tokio::spawn(async move {
        let mut sink = FramedWrite::new(write_half, RemotingCodec);
        loop {
            let first = tokio::select! {
                biased;
                command = queue.recv() => command,
                _ = writer_done.cancelled() => None,
            };
            let finishing = first.is_none();
            for command in first
                .into_iter()
                .chain(std::iter::from_fn(|| queue.try_recv().ok()))
            {
                if let Err(error) = sink.feed(command).await {
                    warn!(%peer, %error, "write failed; closing the connection");
                    return;
                }
            }
            if SinkExt::<RemotingCommand>::flush(&mut sink).await.is_err() || finishing {
                return;
            }
        }
    });

    let requests = TaskTracker::new();
    let mut peer_gone = true;
    let mut frames = FramedRead::new(read_half, RemotingCodec);
    loop {
        let next = tokio::select! {
            _ = closing.cancelled() => {
                peer_gone = false;
                break;
            }
            next = frames.next() => next,
        };
        let request = match next {
            None => break,
            Some(Ok(command)) => command,
            // A frame we cannot parse leaves the stream unsynchronised: close this
            // connection (as RocketMQ's NettyDecoder does) and nobody else's.
            Some(Err(error)) => {
                warn!(%peer, %error, "closing the connection: malformed frame");
                break;
            }
        };
        if request.is_response() {
            // Answers to broker-initiated requests; nothing waits for them yet.
            continue;
        }
        let service = service.clone();
        let channel = channel.clone();
        requests.spawn(async move {
            let oneway = request.is_oneway();
            let opaque = request.opaque;
            let code = request.code;
            let answer = service.handle(request, &channel).await;
            if let Some(response) = &answer {
                tracing::trace!(peer = %channel.peer, code, opaque, answer = response.code, remark = ?response.remark, "request served");
            }
            if let Some(mut response) = answer {
                if !oneway {
                    response.opaque = opaque;
                    response.mark_response();
                    channel.send(response);
                } else if response.code != ResponseCode::Success.as_i32() {
                    debug!(peer = %channel.peer, code, answer = response.code, "oneway request failed");
                }
            }
        });
    }
    requests.close();
    if !peer_gone {
        // A graceful stop: answer what is in flight before closing.
        requests.wait().await;
    }
    service.disconnected(&channel);
    done.cancel();
    let _ = writer.await;
    debug!(%peer, "connection closed");
}
