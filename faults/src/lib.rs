//! Test-only machinery for network faults: a TCP proxy in front of one address, whose links a
//! test stalls, slows, cuts and refuses while traffic flows. The tests that use it put it
//! between two processes (a client and a broker, or two replicas) and need no privileges and
//! no change to the host's network, so they run on a shared machine.
//!
//! The faults are the ones a TCP connection can meet, and nothing a real network could not do
//! to it: a stalled direction holds its bytes (a partition that heals before TCP gives up
//! delivers everything, in order, late), a cut resets every live connection (a peer that
//! crashed, or a partition that outlasted TCP's patience), a refusing proxy closes new
//! connections at once. Bytes inside a live stream are never dropped or reordered, since
//! TCP never does that either.
//!
//! Written here rather than taken from a crate: the proxies on crates.io (and toxiproxy, a Go
//! server with an HTTP API) drop or slow traffic, but none holds one direction of live
//! connections and lets it go again, which is what a healed partition is.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Which way bytes go through the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From the client that connected to the proxy to the upstream address.
    ToUpstream,
    /// From the upstream address back to the client.
    ToClient,
}

/// What one direction of every link does with its bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flow {
    /// Bytes are held, not forwarded, until the flow opens again.
    pub stalled: bool,
    /// Each chunk is forwarded this long after it arrived.
    pub delay: Duration,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct State {
    to_upstream: Flow,
    to_client: Flow,
    /// New connections are closed as soon as they are accepted.
    refuse: bool,
    /// Bumped by each cut: every connection made before it resets.
    cuts: u64,
}

impl State {
    fn flow(&self, direction: Direction) -> &Flow {
        match direction {
            Direction::ToUpstream => &self.to_upstream,
            Direction::ToClient => &self.to_client,
        }
    }

    fn flow_mut(&mut self, direction: Direction) -> &mut Flow {
        match direction {
            Direction::ToUpstream => &mut self.to_upstream,
            Direction::ToClient => &mut self.to_client,
        }
    }
}

/// Most bytes read at once, and so the size of one forwarded chunk.
const CHUNK: usize = 64 * 1024;

/// Chunks read but not yet forwarded, per direction of a link: what a stalled direction
/// holds before it stops reading, so the sender meets TCP's own backpressure.
const QUEUED_CHUNKS: usize = 16;

/// A proxy listening on a local port and forwarding every connection to `upstream`. Dropping
/// it closes the listener and every link.
pub struct Proxy {
    addr: SocketAddr,
    state: watch::Sender<State>,
    accepted: Arc<AtomicU64>,
    _accepting: JoinSet<()>,
}

impl Proxy {
    /// A proxy on a free port of 127.0.0.1.
    pub async fn start(upstream: SocketAddr) -> io::Result<Proxy> {
        Proxy::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), upstream).await
    }

    /// A proxy listening on `listen`.
    pub async fn start_on(listen: SocketAddr, upstream: SocketAddr) -> io::Result<Proxy> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let (state, watching) = watch::channel(State::default());
        let accepted = Arc::new(AtomicU64::new(0));
        let mut accepting = JoinSet::new();
        accepting.spawn(accept(listener, upstream, watching, Arc::clone(&accepted)));
        Ok(Proxy {
            addr,
            state,
            accepted,
            _accepting: accepting,
        })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections accepted so far, refused ones included.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Holds the bytes going `direction` on every link, live and new, until [`Proxy::heal`]
    /// (one-way loss, as the other side sees it).
    pub fn stall(&self, direction: Direction) {
        self.state
            .send_modify(|state| state.flow_mut(direction).stalled = true);
    }

    /// Forwards each chunk going `direction` `delay` after it arrived.
    pub fn delay(&self, direction: Direction, delay: Duration) {
        self.state
            .send_modify(|state| state.flow_mut(direction).delay = delay);
    }

    /// A partition: both directions of every link stall, and new connections are refused.
    pub fn partition(&self) {
        self.state.send_modify(|state| {
            state.to_upstream.stalled = true;
            state.to_client.stalled = true;
            state.refuse = true;
        });
    }

    /// Closes new connections as soon as they are accepted, or stops doing so.
    pub fn refuse(&self, refuse: bool) {
        self.state.send_modify(|state| state.refuse = refuse);
    }

    /// Resets every live link (both sides see a connection reset); new connections go
    /// through as before.
    pub fn cut(&self) {
        self.state.send_modify(|state| state.cuts += 1);
    }

    /// Ends every fault: held bytes go on, in order, without delay, and new connections are
    /// accepted again.
    pub fn heal(&self) {
        self.state.send_modify(|state| {
            *state = State {
                cuts: state.cuts,
                ..State::default()
            }
        });
    }
}

async fn accept(
    listener: TcpListener,
    upstream: SocketAddr,
    state: watch::Receiver<State>,
    accepted: Arc<AtomicU64>,
) {
    // Dropped with this task, so dropping the proxy ends every link.
    let mut links = JoinSet::new();
    loop {
        let client = tokio::select! {
            accepted = listener.accept() => accepted,
            // Reap finished links, so a long test does not keep them all.
            Some(_) = links.join_next(), if !links.is_empty() => continue,
        };
        let Ok((client, _)) = client else {
            continue;
        };
        accepted.fetch_add(1, Ordering::Relaxed);
        if state.borrow().refuse {
            reset(&client);
            continue;
        }
        links.spawn(link(client, upstream, state.clone()));
    }
}

/// Closes with a reset (RST) rather than a clean end of stream, as a crashed peer would.
fn reset(stream: &TcpStream) {
    let _ = stream.set_zero_linger();
}

async fn link(mut client: TcpStream, upstream: SocketAddr, mut state: watch::Receiver<State>) {
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        reset(&client);
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let cuts = state.borrow().cuts;
    let cut = {
        let (client_read, client_write) = client.split();
        let (server_read, server_write) = server.split();
        let to_upstream = pump(
            client_read,
            server_write,
            Direction::ToUpstream,
            state.clone(),
        );
        let to_client = pump(
            server_read,
            client_write,
            Direction::ToClient,
            state.clone(),
        );
        let both = async { tokio::join!(to_upstream, to_client) };
        tokio::select! {
            _ = both => false,
            _ = state.wait_for(|s| s.cuts != cuts) => true,
        }
    };
    if cut {
        reset(&client);
        reset(&server);
    }
}

/// Forwards one direction of a link until its reader ends, then passes the end on.
async fn pump(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    direction: Direction,
    state: watch::Receiver<State>,
) {
    let (queue, mut queued) = mpsc::channel::<(Instant, Bytes)>(QUEUED_CHUNKS);
    let reading = async {
        let mut buffer = BytesMut::new();
        loop {
            buffer.reserve(CHUNK);
            match from.read_buf(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let delay = state.borrow().flow(direction).delay;
            let chunk = buffer.split().freeze();
            if queue.send((Instant::now() + delay, chunk)).await.is_err() {
                break;
            }
        }
        drop(queue);
    };
    let mut writing_state = state.clone();
    let writing = async {
        while let Some((due, chunk)) = queued.recv().await {
            tokio::time::sleep_until(due).await;
            let open = writing_state.wait_for(|s| !s.flow(direction).stalled);
            if open.await.is_err() || to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        // The reader saw the end of its stream: pass it on (a half-close).
        let _ = to.shutdown().await;
    };
    tokio::join!(reading, writing);
}

#[cfg(test)]
mod tests;
