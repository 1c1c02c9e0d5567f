//! Async client over one TCP connection, multiplexed by `opaque`.
//!
//! A writer task owns the socket's write half and a reader task owns the read half. Each
//! [`Client::invoke`] parks a oneshot in the pending map under a fresh opaque; the reader
//! completes it when the matching response arrives. Frames without the response bit are
//! requests from the server (NOTIFY_CONSUMER_IDS_CHANGED, CHECK_TRANSACTION_STATE, ...) and go to
//! the optional handler channel. When the connection ends, every pending request fails with
//! [`Error::ConnectionClosed`] and later calls fail at once.

mod admin_api;
mod api;
mod tls;

pub use api::{PullResult, PullStatus, SendResult};
pub use tls::{pem_certificates, ClientTls};

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, ToSocketAddrs};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::codec::{FramedRead, FramedWrite};

use crate::acl::{self, Credentials};
use crate::command::{RemotingCommand, FLAG_ONEWAY, FLAG_RESPONSE};
use crate::error::{Error, Result};
use crate::frame::RemotingCodec;

/// Java's default RPC timeout (`ClientConfig.mqClientApiTimeout`, 3000 ms).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(3000);

/// Commands queued for the writer; bounded so a stalled peer pushes back on callers.
const OUTBOUND_QUEUE: usize = 1024;

type Pending = HashMap<i32, oneshot::Sender<Result<RemotingCommand>>>;

/// State shared with the reader and writer tasks. `None` means the connection is gone.
struct Shared {
    pending: Mutex<Option<Pending>>,
}

impl Shared {
    fn register(
        &self,
        opaque: i32,
        sender: oneshot::Sender<Result<RemotingCommand>>,
    ) -> Result<()> {
        let mut guard = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        match guard.as_mut() {
            Some(pending) => {
                pending.insert(opaque, sender);
                Ok(())
            }
            None => Err(Error::ConnectionClosed),
        }
    }

    fn take(&self, opaque: i32) -> Option<oneshot::Sender<Result<RemotingCommand>>> {
        let mut guard = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        guard.as_mut().and_then(|pending| pending.remove(&opaque))
    }

    fn is_closed(&self) -> bool {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_none()
    }

    /// Fails every waiting request and refuses new ones.
    fn close(&self) {
        let drained = self
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        for (_, sender) in drained.into_iter().flatten() {
            let _ = sender.send(Err(Error::ConnectionClosed));
        }
    }
}

/// Removes a pending entry when its caller stops waiting (timeout or a dropped future), so
/// the map cannot grow with abandoned requests.
struct PendingGuard<'a> {
    shared: &'a Shared,
    opaque: i32,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.shared.take(self.opaque);
    }
}

struct Inner {
    shared: Arc<Shared>,
    outbound: mpsc::Sender<RemotingCommand>,
    reader: JoinHandle<()>,
    next_opaque: AtomicI32,
    default_timeout_millis: AtomicU64,
    peer: SocketAddr,
    /// Signs every request when set, for brokers with the ACL on.
    credentials: Mutex<Option<Credentials>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The writer ends by itself once the outbound queue drains; the reader would otherwise
        // hold the socket open until the peer closes it.
        self.reader.abort();
        self.shared.close();
    }
}

/// A cheap-to-clone handle on one connection.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("peer", &self.inner.peer)
            .finish()
    }
}

impl Client {
    /// Connects without a handler: requests from the server are dropped (logged at debug).
    pub async fn connect(addr: impl ToSocketAddrs) -> Result<Client> {
        Self::connect_inner(addr, None).await
    }

    /// Connects and delivers server-initiated requests to `handler`. The reader waits for room
    /// in the channel, so a slow handler slows this connection rather than losing requests.
    /// Answer synchronous ones (GET_CONSUMER_RUNNING_INFO, ...) with [`Client::send_response`].
    pub async fn connect_with_handler(
        addr: impl ToSocketAddrs,
        handler: mpsc::Sender<RemotingCommand>,
    ) -> Result<Client> {
        Self::connect_inner(addr, Some(handler)).await
    }

    /// Connects to `addr` (`host:port`), over TLS when `tls` is given.
    pub async fn connect_with_tls(addr: &str, tls: Option<&ClientTls>) -> Result<Client> {
        let Some(tls) = tls else {
            return Self::connect(addr).await;
        };
        let host = addr.rsplit_once(':').map_or(addr, |(host, _)| host);
        let name = tls::server_name(host.trim_start_matches('[').trim_end_matches(']'))?;
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let peer = stream.peer_addr()?;
        let session = tokio_rustls::TlsConnector::from(tls.0.clone())
            .connect(name, stream)
            .await?;
        let (read_half, write_half) = tokio::io::split(session);
        Ok(Self::start(read_half, write_half, peer, None))
    }

    async fn connect_inner(
        addr: impl ToSocketAddrs,
        handler: Option<mpsc::Sender<RemotingCommand>>,
    ) -> Result<Client> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let peer = stream.peer_addr()?;
        let (read_half, write_half) = stream.into_split();
        Ok(Self::start(read_half, write_half, peer, handler))
    }

    /// Starts the reader and writer tasks over the connection's halves.
    fn start<R, W>(
        read_half: R,
        write_half: W,
        peer: SocketAddr,
        handler: Option<mpsc::Sender<RemotingCommand>>,
    ) -> Client
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let shared = Arc::new(Shared {
            pending: Mutex::new(Some(HashMap::new())),
        });
        let (outbound, queue) = mpsc::channel(OUTBOUND_QUEUE);
        tokio::spawn(write_loop(write_half, queue, shared.clone()));
        let reader = tokio::spawn(read_loop(read_half, handler, shared.clone()));
        Client {
            inner: Arc::new(Inner {
                shared,
                outbound,
                reader,
                // Java starts at 0 and Go at 1; any value works as long as it is unique per
                // connection while a request is outstanding.
                next_opaque: AtomicI32::new(1),
                default_timeout_millis: AtomicU64::new(DEFAULT_TIMEOUT.as_millis() as u64),
                peer,
                credentials: Mutex::new(None),
            }),
        }
    }

    pub fn peer_addr(&self) -> SocketAddr {
        self.inner.peer
    }

    /// True once the connection has failed or been closed by the peer.
    pub fn is_closed(&self) -> bool {
        self.inner.shared.is_closed()
    }

    /// The timeout the typed helpers use.
    pub fn default_timeout(&self) -> Duration {
        Duration::from_millis(self.inner.default_timeout_millis.load(Ordering::Relaxed))
    }

    pub fn set_default_timeout(&self, timeout: Duration) {
        self.inner
            .default_timeout_millis
            .store(timeout.as_millis() as u64, Ordering::Relaxed);
    }

    /// Signs every request from now on with `credentials` (RocketMQ's ACL signature), with
    /// a timestamp and nonce for brokers that refuse replays.
    pub fn set_credentials(&self, credentials: Credentials) {
        *self.inner.credentials.lock().unwrap() = Some(credentials);
    }

    fn sign(&self, command: &mut RemotingCommand) {
        if let Some(credentials) = self.inner.credentials.lock().unwrap().as_ref() {
            acl::add_replay_fields(command);
            acl::sign(command, credentials);
        }
    }

    fn next_opaque(&self) -> i32 {
        self.inner.next_opaque.fetch_add(1, Ordering::Relaxed)
    }

    /// Sends a request and waits for its response. The command's opaque is replaced by this
    /// connection's own counter, and its response/oneway bits are cleared.
    pub async fn invoke(
        &self,
        mut command: RemotingCommand,
        timeout: Duration,
    ) -> Result<RemotingCommand> {
        let opaque = self.next_opaque();
        command.opaque = opaque;
        command.flag &= !(FLAG_RESPONSE | FLAG_ONEWAY);
        self.sign(&mut command);
        let (sender, receiver) = oneshot::channel();
        let shared = &self.inner.shared;
        shared.register(opaque, sender)?;
        let _guard = PendingGuard { shared, opaque };
        let exchange = async {
            self.inner
                .outbound
                .send(command)
                .await
                .map_err(|_| Error::ConnectionClosed)?;
            receiver.await.map_err(|_| Error::ConnectionClosed)?
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(Error::Timeout { opaque, timeout }),
        }
    }

    /// Sends a request with the oneway bit; the server must not answer. Returns once the
    /// command is queued for writing.
    pub async fn invoke_oneway(&self, mut command: RemotingCommand) -> Result<()> {
        command.opaque = self.next_opaque();
        command.flag = (command.flag & !FLAG_RESPONSE) | FLAG_ONEWAY;
        self.sign(&mut command);
        self.enqueue(command).await
    }

    /// Answers a request the server sent to us; `response.opaque` must be the request's.
    pub async fn send_response(&self, mut response: RemotingCommand) -> Result<()> {
        response.mark_response();
        self.enqueue(response).await
    }

    async fn enqueue(&self, command: RemotingCommand) -> Result<()> {
        if self.is_closed() {
            return Err(Error::ConnectionClosed);
        }
        self.inner
            .outbound
            .send(command)
            .await
            .map_err(|_| Error::ConnectionClosed)
    }
}

async fn write_loop<W: AsyncWrite + Unpin>(
    write_half: W,
    mut queue: mpsc::Receiver<RemotingCommand>,
    shared: Arc<Shared>,
) {
    let mut sink = FramedWrite::new(write_half, RemotingCodec);
    while let Some(command) = queue.recv().await {
        let opaque = command.opaque;
        let awaits_response = !command.is_response() && !command.is_oneway();
        // Feed without flushing while more commands wait, so bursts share syscalls.
        let result = match sink.feed(command).await {
            Ok(()) if queue.is_empty() => SinkExt::<RemotingCommand>::flush(&mut sink).await,
            other => other,
        };
        match result {
            Ok(()) => {}
            // A command that cannot be encoded (too large, a code beyond i16 in a binary
            // header) fails only its own request; the stream is still in sync.
            Err(error @ (Error::FrameTooLarge { .. } | Error::FieldOverflow { .. })) => {
                if let Some(sender) = shared.take(opaque).filter(|_| awaits_response) {
                    let _ = sender.send(Err(error));
                }
            }
            Err(error) => {
                tracing::debug!(%error, "remoting write failed; closing connection");
                shared.close();
                return;
            }
        }
    }
}

async fn read_loop<R: AsyncRead + Unpin>(
    read_half: R,
    handler: Option<mpsc::Sender<RemotingCommand>>,
    shared: Arc<Shared>,
) {
    let mut frames = FramedRead::new(read_half, RemotingCodec);
    while let Some(frame) = frames.next().await {
        let command = match frame {
            Ok(command) => command,
            Err(error) => {
                tracing::debug!(%error, "remoting read failed; closing connection");
                break;
            }
        };
        if command.is_response() {
            match shared.take(command.opaque) {
                Some(sender) => {
                    let _ = sender.send(Ok(command));
                }
                // Late answers to timed-out requests, or Go-style answers to oneway calls.
                None => tracing::debug!(opaque = command.opaque, "dropping unmatched response"),
            }
        } else if let Some(handler) = &handler {
            if handler.send(command).await.is_err() {
                tracing::debug!("request handler gone; dropping server request");
            }
        } else {
            tracing::debug!(code = command.code, "no handler for server request");
        }
    }
    shared.close();
}

#[cfg(test)]
mod client_test;
