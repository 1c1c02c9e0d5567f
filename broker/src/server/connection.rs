//! One connection: read frames within the server's limits, handle each request in its own
//! task, and write the answers back as they are ready.
//!
//! Each request runs in its own task, because a held PULL (long polling) must not stall the
//! other requests multiplexed on the same connection; answers are matched by opaque, so
//! they may leave in any order. One writer task owns the socket's write half and writes
//! whatever answers are ready with one vectored write.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use protocol::{RemotingCommand, ResponseCode};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, OwnedSemaphorePermit};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, trace, warn};

use super::channel::Outgoing;
use super::frame_reader::{FrameReader, ReadError};
use super::tls::{self, WriteSide};
use super::{Channel, Limits, Service, TlsServer};

/// Most frames handed to one vectored write.
const MAX_BATCH: usize = 64;

/// Bytes of requests a connection may have read ahead of its request slots (see
/// [`Service::served_at_once`]). 16 MiB holds some 29,000 small sends, more than Apache
/// RocketMQ's whole send queue (10,000): a heartbeat sent behind 10,000 oneway sends that a
/// loaded broker stores at 3,000 a second must still be read within the client's 3 s, or the
/// client closes the connection and drops what it has not written (4 MiB was not enough).
const READ_AHEAD_BYTES: usize = 16 << 20;

/// Most buffers handed to one vectored write: Linux's IOV_MAX, beyond which `writev`
/// refuses the call. A batch of pull answers (32 records each) can hold more; the rest
/// goes in the next call.
const MAX_IOVECS: usize = 1024;

/// How long answers already queued may take to leave once the client has closed its side;
/// a client that half-closes and stops reading must not keep the writer forever.
const CLOSE_LINGER: Duration = Duration::from_secs(5);

/// How the reading side ended.
enum End {
    /// The server is stopping: answer what is in flight, then close.
    Stopping,
    /// The client closed its side.
    PeerClosed,
    /// We close the connection.
    Failed(ReadError),
}

pub(super) async fn serve<S: Service>(
    stream: TcpStream,
    peer: SocketAddr,
    service: Arc<S>,
    limits: Limits,
    tls: Option<Arc<TlsServer>>,
    closing: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let Ok(local) = stream.local_addr() else {
        return;
    };
    let (read_half, write_half) = match tls {
        None => tls::plain(stream),
        Some(tls) => match tls.accept(stream, limits.frame_timeout).await {
            Ok(halves) => halves,
            // A plaintext client in enforcing mode ends here, as does a failed handshake.
            Err(error) => {
                debug!(%peer, %error, "TLS handshake failed; closing the connection");
                return;
            }
        },
    };
    let (channel, queue) = Channel::open(peer, local, &limits);
    debug!(%peer, id = channel.id(), "connection opened");
    let done = CancellationToken::new();
    let mut writer = tokio::spawn(write(write_half, queue, done.clone(), peer));

    let requests = TaskTracker::new();
    let mut reader = FrameReader::new(read_half, limits, service.large_frame_check());
    let mut waiting = Waiting::default();
    let spawn = |request, slot| {
        requests.spawn(handle(service.clone(), channel.clone(), request, slot));
    };
    let end = loop {
        // Backpressure: a waiting request runs once it has a request slot and there is room
        // for answers, and reading stops while READ_AHEAD_BYTES wait, so a client that does
        // not read its answers stops being read and the kernel's buffers push back on it.
        if waiting.is_full() {
            match slot_or_end(&channel, &closing, &reader).await {
                Ok(slot) => spawn(waiting.pop(), slot),
                Err(end) => break end,
            }
            tokio::task::yield_now().await;
            continue;
        }
        let next = tokio::select! {
            biased;
            _ = closing.cancelled() => break End::Stopping,
            slot = channel.admit(), if !waiting.is_empty() => {
                spawn(waiting.pop(), slot);
                // Let the request run before reading the next frame: otherwise the reader
                // admits a burst of requests while the answer budget is still empty, and
                // all of their answers (256 KiB per PULL) are built before the budget can
                // say no. Measured on 20,000 pipelined PULLs: +20 MiB without this, +4 MiB
                // with it.
                tokio::task::yield_now().await;
                continue;
            }
            next = reader.next() => next,
        };
        let request = match next {
            Ok(Some(command)) => command,
            Ok(None) => break End::PeerClosed,
            Err(error) => break End::Failed(error),
        };
        if request.is_response() {
            channel.answered(request);
        } else if service.served_at_once(request.code) {
            let slot = tokio::select! {
                _ = closing.cancelled() => break End::Stopping,
                slot = channel.admit_at_once() => slot,
            };
            spawn(request, slot);
        } else {
            waiting.push(request);
        }
    };
    // What was read before the end is served as if it had been read one frame at a time:
    // a client that sends and then closes or breaks its connection still has those requests
    // handled (a oneway send stored). A stopping server serves only what it had started.
    if !matches!(end, End::Stopping) {
        while !waiting.is_empty() {
            let Ok(slot) = slot_or_end(&channel, &closing, &reader).await else {
                break;
            };
            spawn(waiting.pop(), slot);
        }
    }
    drop(reader);
    requests.close();
    match end {
        End::Stopping => {
            requests.wait().await;
            service.disconnected(&channel);
            done.cancel();
            let _ = writer.await;
        }
        End::PeerClosed => {
            service.disconnected(&channel);
            done.cancel();
            if tokio::time::timeout(CLOSE_LINGER, &mut writer)
                .await
                .is_err()
            {
                writer.abort();
                debug!(%peer, "answers left unwritten: the client stopped reading");
            }
        }
        End::Failed(error) => {
            match &error {
                ReadError::Idle(_) | ReadError::Io(_) => {
                    debug!(%peer, %error, "closing the connection")
                }
                _ => warn!(%peer, %error, "closing the connection"),
            }
            writer.abort();
            service.disconnected(&channel);
        }
    }
    // Requests still running (a held PULL) find the connection gone instead of waiting.
    channel.close();
    debug!(%peer, "connection closed");
}

/// A request slot and room for answers, or how the connection ends while it waits for them:
/// the server stops, or the client has sent nothing for the idle timeout.
async fn slot_or_end(
    channel: &Channel,
    closing: &CancellationToken,
    reader: &FrameReader,
) -> Result<OwnedSemaphorePermit, End> {
    tokio::select! {
        _ = closing.cancelled() => Err(End::Stopping),
        slot = channel.admit() => Ok(slot),
        error = reader.idle() => Err(End::Failed(error)),
    }
}

/// Requests read ahead of a free request slot, oldest first, and about how many bytes they
/// hold: reading goes on past them, up to READ_AHEAD_BYTES, so that a request served at once
/// is not stuck behind them in the socket.
#[derive(Default)]
struct Waiting {
    requests: VecDeque<RemotingCommand>,
    bytes: usize,
}

impl Waiting {
    fn push(&mut self, request: RemotingCommand) {
        self.bytes += Self::held_bytes(&request);
        self.requests.push_back(request);
    }

    fn pop(&mut self) -> RemotingCommand {
        let request = self
            .requests
            .pop_front()
            .expect("a slot is taken only for a waiting request");
        self.bytes -= Self::held_bytes(&request);
        request
    }

    fn is_empty(&self) -> bool {
        self.requests.is_empty()
    }

    fn is_full(&self) -> bool {
        self.bytes >= READ_AHEAD_BYTES
    }

    /// About the memory a request holds: its body and a header (a decoded header's size is
    /// not kept; a send's is well under this).
    fn held_bytes(request: &RemotingCommand) -> usize {
        request.body.len() + 512
    }
}

async fn handle<S: Service>(
    service: Arc<S>,
    channel: Channel,
    request: RemotingCommand,
    slot: OwnedSemaphorePermit,
) {
    let oneway = request.is_oneway();
    let opaque = request.opaque;
    let code = request.code;
    let Some(mut answer) = service.handle(request, &channel).await else {
        return;
    };
    let response = &mut answer.command;
    trace!(peer = %channel.peer_addr(), code, opaque, answer = response.code, remark = ?response.remark, "request served");
    if oneway {
        if response.code != ResponseCode::Success.as_i32() {
            debug!(peer = %channel.peer_addr(), code, answer = response.code, "oneway request failed");
        }
        return;
    }
    response.opaque = opaque;
    response.mark_response();
    channel.answer(answer, slot).await;
}

/// Writes queued frames until `done`, then whatever is still queued.
async fn write(
    mut socket: WriteSide,
    mut queue: mpsc::Receiver<Outgoing>,
    done: CancellationToken,
    peer: SocketAddr,
) {
    let mut batch = VecDeque::new();
    loop {
        let next = tokio::select! {
            biased;
            next = queue.recv() => next,
            _ = done.cancelled() => queue.try_recv().ok(),
        };
        let Some(first) = next else {
            return;
        };
        batch.push_back(first);
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(outgoing) => batch.push_back(outgoing),
                Err(_) => break,
            }
        }
        if let Err(error) = write_batch(&mut socket, &mut batch).await {
            debug!(%peer, %error, "write failed; closing the connection");
            return;
        }
    }
}

/// Writes every frame of `batch`, dropping each (and so giving back its budgets) as soon
/// as it is written, then flushes (a TLS session may hold the last record back).
async fn write_batch(
    socket: &mut WriteSide,
    batch: &mut VecDeque<Outgoing>,
) -> std::io::Result<()> {
    while !batch.is_empty() {
        let slices: Vec<IoSlice<'_>> = batch
            .iter()
            .flat_map(Outgoing::parts)
            .take(MAX_IOVECS)
            .map(|part| IoSlice::new(part))
            .collect();
        let mut written = socket.write_vectored(&slices).await?;
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        while written > 0 {
            let front = batch
                .front_mut()
                .expect("written bytes come from the batch");
            let length = front.len();
            if written >= length {
                written -= length;
                batch.pop_front();
            } else {
                front.advance(written);
                written = 0;
            }
        }
    }
    socket.flush().await
}
