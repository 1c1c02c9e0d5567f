//! How replicas reach each other: TCP between brokers, and whatever a test puts in its place
//! (the deterministic simulation's network, tests/raft_simulation.rs), with the same frames
//! and calls over it (network.rs).

use std::io;
use std::sync::Arc;

use futures::future::BoxFuture;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};

/// A connection to or from a peer.
pub trait Connection: AsyncRead + AsyncWrite + Send + Sync + Unpin + 'static {}

impl<T: AsyncRead + AsyncWrite + Send + Sync + Unpin + 'static> Connection for T {}

pub type BoxConnection = Box<dyn Connection>;

/// Opens connections to peers' Raft addresses.
pub trait Dial: Send + Sync + 'static {
    fn dial(&self, addr: &str) -> BoxFuture<'static, io::Result<BoxConnection>>;
}

/// Takes the connections peers open; each comes with a name for the logs.
pub trait Listen: Send + 'static {
    fn accept(&mut self) -> BoxFuture<'_, io::Result<(BoxConnection, String)>>;
}

/// What a replica reaches its peers with, and is reached on.
pub struct Transport {
    pub dial: Arc<dyn Dial>,
    pub listen: Box<dyn Listen>,
}

impl Transport {
    /// TCP: accepted on `listener`, dialed at each peer's address.
    pub fn tcp(listener: TcpListener) -> Transport {
        Transport {
            dial: Arc::new(Tcp),
            listen: Box::new(listener),
        }
    }
}

/// Dials over TCP.
pub struct Tcp;

impl Dial for Tcp {
    fn dial(&self, addr: &str) -> BoxFuture<'static, io::Result<BoxConnection>> {
        let addr = addr.to_owned();
        Box::pin(async move {
            let stream = TcpStream::connect(addr).await?;
            // Raft calls are small request-answer exchanges.
            let _ = stream.set_nodelay(true);
            Ok(Box::new(stream) as BoxConnection)
        })
    }
}

impl Listen for TcpListener {
    fn accept(&mut self) -> BoxFuture<'_, io::Result<(BoxConnection, String)>> {
        Box::pin(async move {
            let (stream, peer) = TcpListener::accept(self).await?;
            let _ = stream.set_nodelay(true);
            Ok((Box::new(stream) as BoxConnection, peer.to_string()))
        })
    }
}
