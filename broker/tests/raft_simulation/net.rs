//! The simulation's network: in-memory pipes between the replicas' transports, each carried
//! by two forwarding tasks (one a direction) that deliver what was written after the link's
//! latency. A link can be cut in one direction or both, as a partition or a one-way loss
//! does. As with TCP across a partition that heals, a cut link holds what a connection
//! carries until it heals, and delivers it then, nothing lost or reordered; a connection
//! being opened across it waits too (the caller's timeout ends the wait). A connection
//! breaks when a replica's process goes, with its tasks. Everything runs on the runtimes
//! the simulation steps, so it is as deterministic as they are.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::sync::Arc;
use std::time::Duration;

use broker::replication::{BoxConnection, Dial, Listen, Transport};
use futures::future::BoxFuture;
use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, ReadHalf, WriteHalf};
use tokio::sync::mpsc;

/// Bytes a pipe buffers before its writer waits.
const PIPE_BYTES: usize = 256 * 1024;
/// How often a wait on a cut link looks again (simulated time).
const RETRY: Duration = Duration::from_millis(10);

#[derive(Default)]
struct State {
    /// Where each replica's Raft is reached, and who it is.
    addrs: BTreeMap<String, u64>,
    listeners: BTreeMap<u64, mpsc::UnboundedSender<(BoxConnection, String)>>,
    /// Directed links that deliver nothing.
    cut: BTreeSet<(u64, u64)>,
    /// Each directed link's latency (1 ms unless set).
    latency: BTreeMap<(u64, u64), Duration>,
}

#[derive(Clone, Default)]
pub struct Net(Arc<Mutex<State>>);

impl Net {
    /// Replica `id` is reached at `addr`.
    pub fn name(&self, id: u64, addr: &str) {
        self.0.lock().addrs.insert(addr.to_owned(), id);
    }

    /// The transport of replica `id`, as it starts: connections opened to it before are
    /// gone with its last run.
    pub fn transport(&self, id: u64) -> Transport {
        let (accepted, incoming) = mpsc::unbounded_channel();
        self.0.lock().listeners.insert(id, accepted);
        Transport {
            dial: Arc::new(Dialer {
                net: self.clone(),
                from: id,
            }),
            listen: Box::new(Listener(incoming)),
        }
    }

    pub fn cut(&self, from: u64, to: u64) {
        self.0.lock().cut.insert((from, to));
    }

    /// Every link delivers again, at 1 ms.
    pub fn heal(&self) {
        let mut state = self.0.lock();
        state.cut.clear();
        state.latency.clear();
    }

    pub fn set_latency(&self, from: u64, to: u64, latency: Duration) {
        self.0.lock().latency.insert((from, to), latency);
    }

    fn delivers(&self, from: u64, to: u64) -> bool {
        !self.0.lock().cut.contains(&(from, to))
    }

    fn latency(&self, from: u64, to: u64) -> Duration {
        let state = self.0.lock();
        state
            .latency
            .get(&(from, to))
            .copied()
            .unwrap_or(Duration::from_millis(1))
    }

    /// Until the link from `from` to `to` delivers.
    async fn healed(&self, from: u64, to: u64) {
        while !self.delivers(from, to) {
            tokio::time::sleep(RETRY).await;
        }
    }

    /// Carries what `from` writes on `reader` to `to`'s `writer`, until either end closes.
    async fn forward(
        self,
        from: u64,
        to: u64,
        mut reader: ReadHalf<DuplexStream>,
        mut writer: WriteHalf<DuplexStream>,
    ) {
        let mut buffer = vec![0; 64 * 1024];
        loop {
            let read = match reader.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(read) => read,
            };
            tokio::time::sleep(self.latency(from, to)).await;
            self.healed(from, to).await;
            if writer.write_all(&buffer[..read]).await.is_err() {
                return;
            }
        }
    }
}

struct Dialer {
    net: Net,
    from: u64,
}

impl Dial for Dialer {
    fn dial(&self, addr: &str) -> BoxFuture<'static, io::Result<BoxConnection>> {
        let (net, from) = (self.net.clone(), self.from);
        let to = net.0.lock().addrs.get(addr).copied();
        Box::pin(async move {
            let to = to.ok_or(io::ErrorKind::ConnectionRefused)?;
            // The handshake crosses the link both ways.
            tokio::time::sleep(net.latency(from, to) + net.latency(to, from)).await;
            net.healed(from, to).await;
            net.healed(to, from).await;
            let listener = net.0.lock().listeners.get(&to).cloned();
            let listener = listener.ok_or(io::ErrorKind::ConnectionRefused)?;
            let (dialer, dialer_side) = tokio::io::duplex(PIPE_BYTES);
            let (accepted, accepted_side) = tokio::io::duplex(PIPE_BYTES);
            listener
                .send((Box::new(accepted) as BoxConnection, format!("n{from}")))
                .map_err(|_| io::Error::from(io::ErrorKind::ConnectionRefused))?;
            let (dialer_reads, dialer_writes) = tokio::io::split(dialer_side);
            let (accepted_reads, accepted_writes) = tokio::io::split(accepted_side);
            tokio::spawn(net.clone().forward(from, to, dialer_reads, accepted_writes));
            tokio::spawn(net.forward(to, from, accepted_reads, dialer_writes));
            Ok(Box::new(dialer) as BoxConnection)
        })
    }
}

struct Listener(mpsc::UnboundedReceiver<(BoxConnection, String)>);

impl Listen for Listener {
    fn accept(&mut self) -> BoxFuture<'_, io::Result<(BoxConnection, String)>> {
        Box::pin(async move {
            match self.0.recv().await {
                Some(accepted) => Ok(accepted),
                None => std::future::pending().await,
            }
        })
    }
}
