//! The replicas' calls: each Raft RPC is one length-prefixed frame on a connection (TCP
//! between brokers, transport.rs; tokio-util's codec), answered by one frame, in order. A
//! frame is JSON, its length first, then the raw bytes of the message batches an append
//! carries. A failed call drops its connection; the next call opens a new one.
//!
//! openraft opens one client per target and RPC kind (heartbeats apart from appends), so a
//! large append never delays a heartbeat into an election.
//!
//! A snapshot is the CommitLog up to its end ([`SnapshotEnd`]). Sending one asks the follower
//! where its applied records end, copies the leader's records from there in pieces of about
//! [`SNAPSHOT_PIECE_BYTES`] (the follower keeps those it holds already), then sends the
//! snapshot's metadata for openraft to install. Only committed records are in a snapshot,
//! and committed records are the same on every replica, so a piece is safe to store
//! whichever leader sent it and whatever its term: the install alone is checked against the
//! follower's vote.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{Future, SinkExt, Stream, StreamExt};
use openraft::alias::{SnapshotMetaOf, SnapshotOf, VoteOf};
use openraft::error::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{stream_append_sequential, RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::StreamAppendResult;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use openraft::{BasicNode, EntryPayload, OptionalSend};
use serde::{Deserialize, Serialize};
use store::MessageStore;
use tokio_util::codec::{Framed, LengthDelimitedCodec};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::transport::{BoxConnection, Dial, Listen, Tcp};
use super::{LogStore, Raft, SnapshotEnd, TypeConfig};

/// Frames above this are refused. An append carries about `MAX_APPEND_BYTES` of message
/// batches (more only when one batch is larger).
const MAX_FRAME_BYTES: usize = 64 * 1024 * 1024;
/// How long opening a connection to a peer may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// About how many bytes of records one piece of a snapshot carries.
const SNAPSHOT_PIECE_BYTES: usize = 4 * 1024 * 1024;
/// How long a follower may take to answer a snapshot's question or store one piece (a new
/// CommitLog segment, a flush of what it cut).
const SNAPSHOT_PIECE_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Serialize, Deserialize)]
enum Request {
    /// `attached` says which entries' batch bytes follow the JSON, in entry order.
    Append {
        rpc: AppendEntriesRequest<TypeConfig>,
        attached: Vec<bool>,
    },
    Vote(VoteRequest<TypeConfig>),
    /// Where the follower's applied records end, before a snapshot's records are sent.
    SnapshotFrom,
    /// A piece of a snapshot: the leader's records at `start`, attached, asked for from
    /// `from` (before the blank marker that ends a segment, when `start` is the next one's).
    SnapshotRecords {
        from: u64,
        start: u64,
    },
    /// The snapshot itself, once its records are copied.
    Snapshot {
        vote: VoteOf<TypeConfig>,
        meta: SnapshotMetaOf<TypeConfig>,
        end: u64,
    },
    TransferLeader(TransferLeaderRequest<TypeConfig>),
    /// Not Raft's: the address clients reach the replica's broker at, so that a follower
    /// can pass the sends that reach it on to the leader.
    BrokerAddr,
    /// The follower's records end before `retained`, where the leader's oldest segment
    /// begins: it begins again empty (`store::PendingReset`) and is sent the rest then.
    Reset {
        retained: u64,
    },
}

#[derive(Serialize, Deserialize)]
enum Response {
    Append(AppendEntriesResponse<TypeConfig>),
    Vote(VoteResponse<TypeConfig>),
    /// `applied`: where the follower's applied records end (or its CommitLog's first
    /// segment begins, past them: a copy that began past the leader's retired segments);
    /// `empty`: it holds no record, so it can begin wherever the leader's oldest retained
    /// segment does.
    SnapshotFrom {
        applied: u64,
        empty: bool,
    },
    SnapshotRecords,
    Snapshot(SnapshotResponse<TypeConfig>),
    /// The follower marked its store and restarts.
    Resetting,
    TransferLeader(TransferLeaderResponse<TypeConfig>),
    BrokerAddr(String),
    /// The peer's Raft could not take the request (it is stopping, or its storage failed).
    Failed(String),
}

fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .max_frame_length(MAX_FRAME_BYTES)
        .new_codec()
}

/// A frame: the message's JSON, its length first, then the raw bytes attached to it.
fn frame(message: &impl Serialize, attachments: &[Bytes]) -> io::Result<Bytes> {
    let json = serde_json::to_vec(message)?;
    let attached: usize = attachments.iter().map(Bytes::len).sum();
    let mut frame = BytesMut::with_capacity(4 + json.len() + attached);
    frame.put_u32(json.len() as u32);
    frame.put_slice(&json);
    for attachment in attachments {
        frame.put_slice(attachment);
    }
    Ok(frame.freeze())
}

/// A frame's message and the bytes after it.
fn unframe<T: serde::de::DeserializeOwned>(mut frame: Bytes) -> io::Result<(T, Bytes)> {
    let invalid = |what: String| io::Error::new(io::ErrorKind::InvalidData, what);
    if frame.len() < 4 {
        return Err(invalid(format!("a frame of {} bytes", frame.len())));
    }
    let len = frame.get_u32() as usize;
    if len > frame.len() {
        return Err(invalid(format!(
            "{len} bytes of JSON in a frame of {}",
            frame.len()
        )));
    }
    let json = frame.split_to(len);
    let message = serde_json::from_slice(&json).map_err(|e| invalid(e.to_string()))?;
    Ok((message, frame))
}

/// Takes the batches' bytes out of an append, to travel raw beside its JSON.
fn detach(mut rpc: AppendEntriesRequest<TypeConfig>) -> (Request, Vec<Bytes>) {
    let mut attachments = Vec::new();
    let attached = rpc
        .entries
        .iter_mut()
        .map(|entry| match &mut entry.payload {
            EntryPayload::Normal(batch) => {
                batch.bytes.take().map(|b| attachments.push(b)).is_some()
            }
            _ => false,
        })
        .collect();
    (Request::Append { rpc, attached }, attachments)
}

/// Puts the bytes that came after an append's JSON back beside its batches.
fn reattach(
    mut rpc: AppendEntriesRequest<TypeConfig>,
    attached: &[bool],
    mut rest: Bytes,
) -> io::Result<AppendEntriesRequest<TypeConfig>> {
    for (entry, attached) in rpc.entries.iter_mut().zip(attached) {
        if let (EntryPayload::Normal(batch), true) = (&mut entry.payload, attached) {
            let len = batch.len as usize;
            if len > rest.len() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "a batch of {len} bytes with {} left in the frame",
                        rest.len()
                    ),
                ));
            }
            batch.bytes = Some(rest.split_to(len));
        }
    }
    Ok(rpc)
}

/// Makes a [`Peer`] for each replica openraft talks to; snapshots are sent from `store`'s
/// CommitLog.
#[derive(Clone)]
pub struct Network {
    store: Arc<MessageStore>,
    log: LogStore,
    addrs: PeerAddrs,
    dial: Arc<dyn Dial>,
    raft: Arc<OnceLock<Raft>>,
}

impl Network {
    /// `raft`: this replica's Raft, once made (it is made with this network), over `log`;
    /// peers are reached through `dial`.
    pub fn new(
        store: Arc<MessageStore>,
        log: LogStore,
        addrs: PeerAddrs,
        dial: Arc<dyn Dial>,
        raft: Arc<OnceLock<Raft>>,
    ) -> Network {
        Network {
            store,
            log,
            addrs,
            dial,
            raft,
        }
    }
}

/// Where this replica reaches each peer's Raft: at the address its own `dLegerPeers` gives,
/// as each DLedger node dials the peers of its own config, and at the address the group's
/// membership records for a member its config does not name (one added since it started).
/// The membership holds the addresses of the replica that logged it, which need not be the
/// way to a peer from here (a proxy per link, an address per network).
#[derive(Clone, Debug)]
pub struct PeerAddrs(Arc<std::collections::BTreeMap<u64, String>>);

impl PeerAddrs {
    /// `configured`: replica id to Raft address, this replica's `dLegerPeers`.
    pub fn new(configured: std::collections::BTreeMap<u64, String>) -> PeerAddrs {
        PeerAddrs(Arc::new(configured))
    }

    /// The address to reach member `id` at, whose membership entry is `node`.
    pub fn of(&self, id: u64, node: &BasicNode) -> String {
        self.0.get(&id).unwrap_or(&node.addr).clone()
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> Peer {
        Peer {
            addr: self.addrs.of(target, node),
            dial: self.dial.clone(),
            connection: None,
            leads: Some(Source {
                store: self.store.clone(),
                log: self.log.clone(),
                raft: self.raft.clone(),
                target,
            }),
        }
    }
}

/// One replica, as openraft's client of it.
pub struct Peer {
    addr: String,
    dial: Arc<dyn Dial>,
    connection: Option<Framed<BoxConnection, LengthDelimitedCodec>>,
    /// `None` for a client that replicates nothing.
    leads: Option<Source>,
}

/// What a leader replicates to replica `target` from.
struct Source {
    /// Where a snapshot's records are read.
    store: Arc<MessageStore>,
    /// The leader's log: how far it is purged tells a stale append (`stream_append`).
    log: LogStore,
    /// The leader's own Raft, told before a follower begins again empty.
    raft: Arc<OnceLock<Raft>>,
    target: u64,
}

/// Why a call failed: openraft backs off from an unreachable peer and retries a broken
/// connection at once.
enum CallError {
    Unreachable(io::Error),
    Network(io::Error),
    Remote(String),
}

impl From<CallError> for RPCError<TypeConfig> {
    fn from(error: CallError) -> Self {
        match error {
            CallError::Unreachable(error) => RPCError::Unreachable(Unreachable::new(&error)),
            CallError::Network(error) => RPCError::Network(NetworkError::new(&error)),
            CallError::Remote(error) => RPCError::Network(NetworkError::from_string(error)),
        }
    }
}

impl From<CallError> for StreamingError<TypeConfig> {
    fn from(error: CallError) -> Self {
        match RPCError::from(error) {
            RPCError::Unreachable(error) => StreamingError::Unreachable(error),
            RPCError::Network(error) => StreamingError::Network(error),
            other => StreamingError::Network(NetworkError::new(&other)),
        }
    }
}

fn unexpected(what: &str) -> CallError {
    CallError::Network(io::Error::new(
        io::ErrorKind::InvalidData,
        format!("a {what} request got another kind of answer"),
    ))
}

impl Peer {
    async fn call(
        &mut self,
        request: &Request,
        attachments: &[Bytes],
        timeout: Duration,
    ) -> Result<Response, CallError> {
        let result = tokio::time::timeout(timeout, self.exchange(request, attachments)).await;
        let result = result.unwrap_or_else(|_| {
            Err(CallError::Network(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("{} did not answer in {timeout:?}", self.addr),
            )))
        });
        match result {
            Ok(Response::Failed(error)) => {
                debug!(peer = %self.addr, %error, "a peer refused a Raft call");
                Err(CallError::Remote(error))
            }
            Ok(response) => Ok(response),
            Err(error) => {
                // Whatever the connection was in the middle of, it is not to be reused.
                self.connection = None;
                if let CallError::Network(error) | CallError::Unreachable(error) = &error {
                    debug!(peer = %self.addr, %error, "a Raft call failed");
                }
                Err(error)
            }
        }
    }

    async fn exchange(
        &mut self,
        request: &Request,
        attachments: &[Bytes],
    ) -> Result<Response, CallError> {
        if self.connection.is_none() {
            let stream = tokio::time::timeout(CONNECT_TIMEOUT, self.dial.dial(&self.addr))
                .await
                .unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into()))
                .map_err(CallError::Unreachable)?;
            self.connection = Some(Framed::new(stream, codec()));
        }
        let connection = self.connection.as_mut().expect("connected above");
        let frame = frame(request, attachments).map_err(CallError::Network)?;
        connection.send(frame).await.map_err(CallError::Network)?;
        let answer = connection
            .next()
            .await
            .unwrap_or_else(|| Err(io::ErrorKind::UnexpectedEof.into()))
            .map_err(CallError::Network)?;
        let (answer, _) = unframe(answer.freeze()).map_err(CallError::Network)?;
        Ok(answer)
    }

    /// Copies the records of a snapshot up to `end` that the follower lacks.
    async fn copy_snapshot_records(&mut self, end: u64) -> Result<(), CallError> {
        let source = self
            .leads
            .as_ref()
            .expect("a Raft peer sends snapshots from a store");
        // Owned: the calls below borrow the peer.
        let (store, raft, target) = (source.store.clone(), source.raft.clone(), source.target);
        let (applied, empty) = match self
            .call(&Request::SnapshotFrom, &[], SNAPSHOT_PIECE_TIMEOUT)
            .await?
        {
            Response::SnapshotFrom { applied, empty } => (applied, empty),
            _ => return Err(unexpected("snapshot-from")),
        };
        // Retention deletes nothing this copy still has to read.
        let _hold = store.hold_retention(applied);
        let retained = store.commit_log_min_offset();
        let mut at = if applied >= retained {
            applied
        } else if empty {
            retained
        } else {
            // Nothing it applied reaches the oldest record this replica keeps, so nothing
            // can be sent that continues it; it drops all it holds and is sent the rest as a
            // new replica. Raft loses nothing by it: the entry after its last is purged here,
            // so committed, and the quorum that committed it holds every entry the follower
            // held; any leader needs one of that quorum's votes. openraft takes a follower's
            // log going back for a bug unless its leader is told first.
            let raft = raft
                .get()
                .ok_or_else(|| unexpected("reset before Raft started"))?;
            match raft.trigger().allow_next_revert(&target, true).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => return Err(CallError::Remote(error.to_string())),
                Err(fatal) => return Err(CallError::Remote(fatal.to_string())),
            }
            match self
                .call(&Request::Reset { retained }, &[], SNAPSHOT_PIECE_TIMEOUT)
                .await?
            {
                Response::Resetting => {}
                _ => return Err(unexpected("reset")),
            }
            let why = format!(
                "{}'s records end at CommitLog offset {applied}, before the oldest this \
                 replica keeps ({retained}): it begins again empty and is sent them from there",
                self.addr
            );
            warn!("{why}");
            return Err(CallError::Remote(why));
        };
        let local = |error: store::Error| CallError::Network(io::Error::other(error));
        while let Some((start, records)) = store
            .commit_log_records(at, end, SNAPSHOT_PIECE_BYTES)
            .map_err(local)?
        {
            let request = Request::SnapshotRecords { from: at, start };
            at = start + records.len() as u64;
            match self
                .call(&request, &[records], SNAPSHOT_PIECE_TIMEOUT)
                .await?
            {
                Response::SnapshotRecords => {}
                _ => return Err(unexpected("snapshot-records")),
            }
        }
        Ok(())
    }
}

impl RaftNetworkV2<TypeConfig> for Peer {
    type SnapshotData = SnapshotEnd;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        let (request, attachments) = detach(rpc);
        match self.call(&request, &attachments, option.soft_ttl()).await? {
            Response::Append(answer) => Ok(answer),
            _ => Err(unexpected("append").into()),
        }
    }

    /// openraft's own sequential streaming, stopped with an error at a stale append: one
    /// whose previous entry lies before the leader's purge point. openraft 0.10.0-alpha.37
    /// can keep streaming from a range chosen before a purge (a follower that was down, or
    /// whose log went back), asking the log for entries it no longer holds (the log store
    /// answers none, so the append carries none), while its engine wants a snapshot sent.
    /// The stream goes on as long as the follower answers, so the follower would be sent
    /// heartbeats from that stale range for good; the error ends the stream, and openraft
    /// starts the one its engine chose. openraft itself never chooses such a range: it
    /// sends from the follower's matching entry only once that is at or past the purge point,
    /// and purges nothing a stream in flight still needs. Heartbeats come through
    /// `append_entries`, not here.
    fn stream_append<'s, S>(
        &'s mut self,
        input: S,
        option: RPCOption,
    ) -> BoxFuture<
        's,
        Result<
            BoxStream<'s, Result<StreamAppendResult<TypeConfig>, RPCError<TypeConfig>>>,
            RPCError<TypeConfig>,
        >,
    >
    where
        S: Stream<Item = AppendEntriesRequest<TypeConfig>> + OptionalSend + Unpin + 'static,
    {
        // Asked at each append: a stream outlives purges.
        let log = self.leads.as_ref().map(|source| source.log.clone());
        let stale = Arc::new(AtomicBool::new(false));
        let seen = stale.clone();
        let fresh = input.take_while(move |rpc| {
            let purged = log.as_ref().and_then(LogStore::purged_index);
            let prev = rpc.prev_log_id.as_ref().map(|prev| prev.index);
            let is_stale = purged.is_some() && prev < purged;
            seen.store(is_stale, Ordering::Relaxed);
            std::future::ready(!is_stale)
        });
        Box::pin(async move {
            let answers = stream_append_sequential(self, Box::pin(fresh), option).await?;
            let stopped = futures::stream::once(async move { stale.load(Ordering::Relaxed) })
                .filter_map(|stale| {
                    std::future::ready(stale.then(|| {
                        Err(RPCError::Network(NetworkError::from_string(
                            "this append follows an entry the leader purged; a snapshot follows",
                        )))
                    }))
                });
            Ok(answers.chain(stopped).boxed())
        })
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        match self
            .call(&Request::Vote(rpc), &[], option.soft_ttl())
            .await?
        {
            Response::Vote(answer) => Ok(answer),
            _ => Err(unexpected("vote").into()),
        }
    }

    async fn full_snapshot(
        &mut self,
        vote: VoteOf<TypeConfig>,
        snapshot: SnapshotOf<TypeConfig, SnapshotEnd>,
        cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let end = snapshot.snapshot.end;
        tokio::select! {
            biased;
            closed = cancel => return Err(StreamingError::Closed(closed)),
            copied = self.copy_snapshot_records(end) => copied?,
        }
        let request = Request::Snapshot {
            vote,
            meta: snapshot.meta,
            end,
        };
        match self.call(&request, &[], option.hard_ttl()).await? {
            Response::Snapshot(answer) => Ok(answer),
            _ => Err(unexpected("snapshot").into()),
        }
    }

    async fn transfer_leader(
        &mut self,
        request: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        match self
            .call(&Request::TransferLeader(request), &[], option.soft_ttl())
            .await?
        {
            Response::TransferLeader(answer) => Ok(answer),
            _ => Err(unexpected("transfer-leader").into()),
        }
    }
}

/// The broker address of the replica whose Raft listens at `raft_addr`.
pub async fn broker_addr_of(raft_addr: &str) -> io::Result<String> {
    let mut peer = Peer {
        addr: raft_addr.to_string(),
        dial: Arc::new(Tcp),
        connection: None,
        leads: None,
    };
    match peer.call(&Request::BrokerAddr, &[], CONNECT_TIMEOUT).await {
        Ok(Response::BrokerAddr(addr)) => Ok(addr),
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "a broker-address request got another kind of answer",
        )),
        Err(CallError::Unreachable(error) | CallError::Network(error)) => Err(error),
        Err(CallError::Remote(error)) => Err(io::Error::other(error)),
    }
}

/// What a replica serves its peers' RPCs with.
#[derive(Clone)]
pub struct Served {
    pub raft: Raft,
    /// Where snapshots' records go.
    pub store: Arc<MessageStore>,
    /// This replica's broker, as clients reach it.
    pub broker_addr: Arc<str>,
    /// Cancelled once the store is marked to begin again empty.
    pub restart: CancellationToken,
}

/// Serves the peers' RPCs on `listener` until `stop` is cancelled.
///
/// Its `select!`s are biased (stop first): an unbiased one draws on the runtime's random
/// generator, and the simulation must replay a seed exactly.
pub async fn serve(mut listener: Box<dyn Listen>, served: Served, stop: CancellationToken) {
    loop {
        let (stream, peer) = tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    debug!(%error, "accepting a peer failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let served = served.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut frames = Framed::new(stream, codec());
            loop {
                let next = tokio::select! {
                    biased;
                    _ = stop.cancelled() => return,
                    next = frames.next() => next,
                };
                let received = match next {
                    Some(Ok(received)) => received,
                    Some(Err(error)) => {
                        debug!(%peer, %error, "closing a peer's connection");
                        return;
                    }
                    None => return,
                };
                let answer = match unframe(received.freeze()) {
                    Ok((request, rest)) => handle(&served, request, rest).await,
                    Err(error) => Response::Failed(format!("not a Raft request: {error}")),
                };
                let Ok(answer) = frame(&answer, &[]) else {
                    return;
                };
                if frames.send(answer).await.is_err() {
                    return;
                }
            }
        });
    }
}

/// What a follower holds, as a leader sending it a snapshot asks: where its applied records
/// end (or its CommitLog's first segment begins, past them: a copy that began past the
/// leader's retired segments), and whether it holds no record at all. What it dispatched
/// counts as applied: it dispatches only what it applied, so what the group committed,
/// and under ASYNC_FLUSH its saved record of what it applied (`raft/applied`, kept only as
/// far as the CommitLog is flushed) can lag its consume queues after a power loss. A copy
/// from below that would have it cut records it dispatched, which it refuses.
fn held(store: &MessageStore) -> (u64, bool) {
    (
        store
            .applied_end()
            .max(store.dispatched_offset())
            .max(store.commit_log_min_offset()),
        store.commit_log_max_offset() == 0,
    )
}

async fn handle(served: &Served, request: Request, attachments: Bytes) -> Response {
    let Served {
        raft,
        store,
        broker_addr,
        restart,
    } = served;
    let failed = |error: &dyn std::fmt::Display| Response::Failed(error.to_string());
    match request {
        Request::Append { rpc, attached } => {
            let rpc = match reattach(rpc, &attached, attachments) {
                Ok(rpc) => rpc,
                Err(error) => return failed(&error),
            };
            match raft.append_entries(rpc).await {
                Ok(answer) => Response::Append(answer),
                Err(error) => failed(&error),
            }
        }
        Request::Vote(rpc) => match raft.vote(rpc).await {
            Ok(answer) => Response::Vote(answer),
            Err(error) => failed(&error),
        },
        Request::SnapshotFrom => {
            let (applied, empty) = held(store);
            Response::SnapshotFrom { applied, empty }
        }
        Request::SnapshotRecords { from, start } => {
            let store = store.clone();
            // It may wait for a new segment, or sync what it cut.
            match off_the_workers(move || store.copy_committed(from, start, &attachments)).await {
                Ok(Ok(())) => Response::SnapshotRecords,
                Ok(Err(error)) => failed(&error),
                Err(error) => failed(&error),
            }
        }
        Request::Snapshot { vote, meta, end } => {
            let snapshot = SnapshotOf::<TypeConfig, SnapshotEnd> {
                meta,
                snapshot: SnapshotEnd { end },
            };
            match raft.install_full_snapshot(vote, snapshot).await {
                Ok(answer) => Response::Snapshot(answer),
                Err(error) => failed(&error),
            }
        }
        Request::TransferLeader(rpc) => match raft.handle_transfer_leader(rpc).await {
            Ok(answer) => Response::TransferLeader(answer),
            Err(error) => failed(&error),
        },
        Request::BrokerAddr => Response::BrokerAddr(broker_addr.to_string()),
        Request::Reset { retained } => {
            let (applied, empty) = held(store);
            if applied >= retained || empty {
                return failed(&format!(
                    "not beginning again: this replica's records end at {applied}, and the \
                     leader keeps from {retained}"
                ));
            }
            match store.mark_for_reset() {
                Ok(()) => {
                    restart.cancel();
                    Response::Resetting
                }
                Err(error) => failed(&error),
            }
        }
    }
}

/// Runs `work`, which may wait on the disk, on a blocking thread, so that it takes no
/// worker from heartbeats; on a current-thread runtime (the simulation's) in place, where a
/// thread of its own would make the moment its answer arrives a matter of real time.
async fn off_the_workers<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, tokio::task::JoinError> {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::current().runtime_flavor() {
        RuntimeFlavor::CurrentThread => Ok(work()),
        _ => tokio::task::spawn_blocking(work).await,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use openraft::BasicNode;

    use super::PeerAddrs;

    #[test]
    fn a_peer_is_reached_where_this_replicas_config_says_else_where_the_membership_does() {
        let addrs = PeerAddrs::new(BTreeMap::from([(1, "127.0.0.1:7001".to_string())]));
        let logged = |addr: &str| BasicNode::new(addr);
        assert_eq!(addrs.of(1, &logged("10.0.0.1:40915")), "127.0.0.1:7001");
        // Added to the group after this replica started: only the membership names it.
        assert_eq!(addrs.of(3, &logged("10.0.0.3:40915")), "10.0.0.3:40915");
    }
}
