//! One client connection as a service sees it, and the bounded queue of frames waiting to
//! be written to it.
//!
//! Every queued frame holds one of the connection's request slots and its size in the
//! connection's response-byte budget until the writer has written it, so a client that does
//! not read makes its own requests wait, never the process's memory grow.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use parking_lot::Mutex;
use protocol::{RemotingCodec, RemotingCommand};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tracing::{debug, warn};

use super::{Answer, Limits};

/// An encoded frame on its way to the socket, with what it holds of the connection's
/// budgets; both are given back when the writer drops it.
pub struct Outgoing {
    /// What is left to write, in order: the length words and the header, the command's
    /// body as it came, then the records the body goes on with (a pull's, as the store maps
    /// them). Never copied together: the writer sends them with vectored writes.
    parts: VecDeque<Bytes>,
    _request: OwnedSemaphorePermit,
    _bytes: OwnedSemaphorePermit,
}

impl Outgoing {
    fn new(
        head: Bytes,
        body: Bytes,
        records: Vec<Bytes>,
        request: OwnedSemaphorePermit,
        bytes: OwnedSemaphorePermit,
    ) -> Outgoing {
        let parts = [head, body]
            .into_iter()
            .chain(records)
            .filter(|part| !part.is_empty())
            .collect();
        Outgoing {
            parts,
            _request: request,
            _bytes: bytes,
        }
    }

    /// What is left to write, in order.
    pub fn parts(&self) -> impl Iterator<Item = &Bytes> {
        self.parts.iter()
    }

    /// Bytes still to write.
    pub fn len(&self) -> usize {
        self.parts.iter().map(Bytes::len).sum()
    }

    /// Drops the first `written` bytes (at most [`Outgoing::len`]).
    pub fn advance(&mut self, mut written: usize) {
        while written > 0 {
            let Some(front) = self.parts.front_mut() else {
                return;
            };
            if written < front.len() {
                front.advance(written);
                return;
            }
            written -= front.len();
            self.parts.pop_front();
        }
    }

    /// The whole frame left to write, joined (tests only: the writer never joins it).
    #[cfg(test)]
    pub fn joined(&self) -> Vec<u8> {
        self.parts
            .iter()
            .flat_map(|part| part.iter().copied())
            .collect()
    }
}

/// One client connection, as seen by a service: who it is and a way to write to it.
#[derive(Clone, Debug)]
pub struct Channel {
    id: u64,
    peer: SocketAddr,
    local: SocketAddr,
    outbound: Arc<Outbound>,
}

/// Requests served as soon as they are read ([`super::Service::served_at_once`]) that one
/// connection may have in flight beside its request slots.
const AT_ONCE_SLOTS: usize = 64;

#[derive(Debug)]
struct Outbound {
    queue: mpsc::Sender<Outgoing>,
    requests: Arc<Semaphore>,
    at_once: Arc<Semaphore>,
    bytes: Arc<Semaphore>,
    max_bytes: u32,
    /// Requests of the server's own that wait for the client's answer, by opaque.
    calls: Mutex<HashMap<i32, oneshot::Sender<RemotingCommand>>>,
}

static NEXT_CHANNEL_ID: AtomicU64 = AtomicU64::new(1);

/// Opaques of requests the server starts (NOTIFY_CONSUMER_IDS_CHANGED, ...). Negative, so
/// they never look like an answer to one of the client's own requests.
static NEXT_SERVER_OPAQUE: AtomicI32 = AtomicI32::new(i32::MIN);

impl Channel {
    /// A channel for a new connection and the receiving end of its queue.
    pub(super) fn open(
        peer: SocketAddr,
        local: SocketAddr,
        limits: &Limits,
    ) -> (Channel, mpsc::Receiver<Outgoing>) {
        // Every queued frame holds a slot, so the queue never holds more than there are.
        let slots = limits.max_requests_in_flight as usize;
        let (queue, receiver) = mpsc::channel(slots + AT_ONCE_SLOTS);
        let outbound = Outbound {
            queue,
            requests: Arc::new(Semaphore::new(slots)),
            at_once: Arc::new(Semaphore::new(AT_ONCE_SLOTS)),
            bytes: Arc::new(Semaphore::new(limits.max_queued_response_bytes as usize)),
            max_bytes: limits.max_queued_response_bytes,
            calls: Mutex::new(HashMap::new()),
        };
        let channel = Channel {
            id: NEXT_CHANNEL_ID.fetch_add(1, Ordering::Relaxed),
            peer,
            local,
            outbound: Arc::new(outbound),
        };
        (channel, receiver)
    }

    /// A channel not backed by a socket, whose writes go to the returned receiver.
    #[cfg(test)]
    pub fn detached(id: u64) -> (Channel, mpsc::Receiver<Outgoing>) {
        let addr: SocketAddr = ([127, 0, 0, 1], 1).into();
        let limits = Limits::new(1, 64, 1024 * 1024, 0, 0, 65536);
        let (mut channel, receiver) = Channel::open(addr, addr, &limits);
        channel.id = id;
        (channel, receiver)
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Queues a command the server starts (NOTIFY_CONSUMER_IDS_CHANGED, ...); false when
    /// the connection is gone or so backed up that it has no room. Such commands are hints
    /// a client also gets by polling, so dropping one beats waiting on a client that does
    /// not read.
    pub fn send(&self, command: RemotingCommand) -> bool {
        let Ok(request) = self.outbound.requests.clone().try_acquire_owned() else {
            debug!(peer = %self.peer, code = command.code, "connection backed up; command dropped");
            return false;
        };
        let Some(head) = self.encode_head(&command, 0) else {
            return false;
        };
        let Ok(bytes) = self
            .outbound
            .bytes
            .clone()
            .try_acquire_many_owned(self.charge(head.len() + command.body.len()))
        else {
            debug!(peer = %self.peer, code = command.code, "connection backed up; command dropped");
            return false;
        };
        self.outbound
            .queue
            .try_send(Outgoing::new(
                head,
                command.body,
                Vec::new(),
                request,
                bytes,
            ))
            .is_ok()
    }

    /// Sends a request of the server's own to the client, with a fresh opaque.
    pub fn send_request(&self, mut request: RemotingCommand) -> bool {
        request.opaque = NEXT_SERVER_OPAQUE.fetch_add(1, Ordering::Relaxed);
        self.send(request)
    }

    /// Sends a request of the server's own and waits up to `timeout` for the client's
    /// answer (GET_CONSUMER_RUNNING_INFO relayed to a consumer); None when it could not be
    /// queued, the connection closed, or the client did not answer in time.
    pub async fn call(
        &self,
        mut request: RemotingCommand,
        timeout: Duration,
    ) -> Option<RemotingCommand> {
        let opaque = NEXT_SERVER_OPAQUE.fetch_add(1, Ordering::Relaxed);
        request.opaque = opaque;
        let (answer, answered) = oneshot::channel();
        self.outbound.calls.lock().insert(opaque, answer);
        let response = if self.send(request) {
            tokio::time::timeout(timeout, answered)
                .await
                .ok()
                .and_then(Result::ok)
        } else {
            None
        };
        self.outbound.calls.lock().remove(&opaque);
        response
    }

    /// Hands a client's answer to the [`Channel::call`] waiting for it; an answer nothing
    /// waits for (late, or to a oneway notice) is dropped.
    pub(super) fn answered(&self, response: RemotingCommand) {
        if let Some(waiter) = self.outbound.calls.lock().remove(&response.opaque) {
            let _ = waiter.send(response);
        }
    }

    pub fn is_open(&self) -> bool {
        !self.outbound.queue.is_closed()
    }

    /// Takes one of the connection's request slots, then waits for room for one more byte
    /// of answers: the byte budget is fair, so that also waits for every answer already
    /// waiting to be queued. Reading the next frame only after both is what carries
    /// backpressure back to a client that does not read.
    pub(super) async fn admit(&self) -> OwnedSemaphorePermit {
        self.admit_from(&self.outbound.requests).await
    }

    /// [`Channel::admit`] for a request served as soon as it is read, from slots of its own.
    pub(super) async fn admit_at_once(&self) -> OwnedSemaphorePermit {
        self.admit_from(&self.outbound.at_once).await
    }

    async fn admit_from(&self, slots: &Arc<Semaphore>) -> OwnedSemaphorePermit {
        let request = slots
            .clone()
            .acquire_owned()
            .await
            .expect("the request semaphores are never closed");
        // Err only once the connection is closing, when nothing waits for bytes any more.
        drop(self.outbound.bytes.acquire().await);
        request
    }

    /// Queues the answer to a request admitted with `request`, waiting for room in the
    /// byte budget; false when the connection is gone.
    pub(super) async fn answer(&self, answer: Answer, request: OwnedSemaphorePermit) -> bool {
        let Answer { command, records } = answer;
        let trailing = records.iter().map(Bytes::len).sum();
        let Some(head) = self.encode_head(&command, trailing) else {
            return false;
        };
        let Ok(bytes) = self
            .outbound
            .bytes
            .clone()
            .acquire_many_owned(self.charge(head.len() + command.body.len() + trailing))
            .await
        else {
            return false;
        };
        let outgoing = Outgoing::new(head, command.body, records, request, bytes);
        self.outbound.queue.send(outgoing).await.is_ok()
    }

    /// Wakes requests waiting for byte budget once the connection is closing, and calls
    /// still waiting for an answer.
    pub(super) fn close(&self) {
        self.outbound.bytes.close();
        self.outbound.calls.lock().clear();
    }

    /// What a frame takes of the byte budget: all of it at most, so that one answer larger
    /// than the budget still goes out, alone.
    fn charge(&self, frame_length: usize) -> u32 {
        frame_length.min(self.outbound.max_bytes as usize) as u32
    }

    fn encode_head(&self, command: &RemotingCommand, trailing: usize) -> Option<Bytes> {
        let mut head = BytesMut::new();
        match RemotingCodec::encode_head(command, trailing, &mut head) {
            Ok(()) => Some(head.freeze()),
            Err(error) => {
                warn!(peer = %self.peer, code = command.code, %error, "cannot encode; not sent");
                None
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backed_up_connection_drops_server_requests_instead_of_queueing_them() {
        let addr: SocketAddr = ([127, 0, 0, 1], 1).into();
        let limits = Limits::new(1, 2, 1024 * 1024, 0, 0, 65536);
        let (channel, mut queue) = Channel::open(addr, addr, &limits);
        let notice = || RemotingCommand::request(40, &());
        assert!(channel.send_request(notice()));
        assert!(channel.send_request(notice()));
        assert!(
            !channel.send_request(notice()),
            "queued past the request slots"
        );
        // A written frame gives its slot back.
        drop(queue.try_recv().unwrap());
        assert!(channel.send_request(notice()));
    }

    #[tokio::test]
    async fn a_call_gets_the_answer_to_its_own_opaque_and_nothing_once_the_connection_closes() {
        use protocol::ResponseCode;
        use tokio_util::codec::Decoder;

        let addr: SocketAddr = ([127, 0, 0, 1], 1).into();
        let limits = Limits::new(1, 4, 1024 * 1024, 0, 0, 65536);
        let (channel, mut queue) = Channel::open(addr, addr, &limits);
        let call = |channel: &Channel| {
            let channel = channel.clone();
            tokio::spawn(async move {
                channel
                    .call(RemotingCommand::request(307, &()), Duration::from_secs(60))
                    .await
            })
        };
        let waiting = call(&channel);
        let frame = queue.recv().await.unwrap().joined();
        let sent = RemotingCodec
            .decode(&mut BytesMut::from(&frame[..]))
            .unwrap()
            .unwrap();
        // An answer nobody waits for is dropped; the caller gets only its own.
        channel.answered(RemotingCommand::response(
            ResponseCode::SystemError,
            sent.opaque + 1,
            None,
        ));
        channel.answered(
            RemotingCommand::response_to(&sent, ResponseCode::Success, None).with_body("info"),
        );
        let answer = waiting.await.unwrap().expect("the answer");
        assert_eq!(answer.code, ResponseCode::Success.as_i32());
        assert_eq!(&answer.body[..], b"info");

        let waiting = call(&channel);
        queue.recv().await.unwrap();
        channel.close();
        assert!(waiting.await.unwrap().is_none());
    }

    /// The body leaves from where it lies, after the header, and a pull's records after
    /// it, each from where the store mapped it; a partial write may stop in any of them, and
    /// what is left is the rest of the same frame.
    #[tokio::test]
    async fn a_frame_goes_out_as_head_body_and_records_and_partial_writes_resume_in_any() {
        use tokio_util::codec::{Decoder, Encoder};

        let (channel, mut queue) = Channel::detached(1);
        let command = RemotingCommand::request(307, &()).with_body(vec![7u8; 100]);
        assert!(channel.send(command.clone()));
        let mut outgoing = queue.try_recv().unwrap();
        let mut whole = BytesMut::new();
        RemotingCodec.encode(&command, &mut whole).unwrap();
        let frame = outgoing.joined();
        assert_eq!(frame, whole);
        let head = frame.len() - 100;
        outgoing.advance(head - 3);
        assert_eq!(outgoing.len(), 3 + 100);
        outgoing.advance(13);
        assert_eq!(outgoing.joined(), &frame[frame.len() - 90..]);
        outgoing.advance(90);
        assert_eq!(outgoing.len(), 0);

        let records = vec![Bytes::from(vec![1u8; 40]), Bytes::from(vec![2u8; 60])];
        let answer = Answer {
            command: RemotingCommand::response(0, 9, None).with_body("lead"),
            records: records.clone(),
        };
        let slot = channel.admit().await;
        assert!(channel.answer(answer, slot).await);
        let mut outgoing = queue.try_recv().unwrap();
        assert_eq!(
            outgoing.parts().count(),
            4,
            "head, body and each record apart"
        );
        let frame = outgoing.joined();
        let decoded = RemotingCodec
            .decode(&mut BytesMut::from(&frame[..]))
            .unwrap()
            .unwrap();
        assert_eq!(
            decoded.body,
            [&b"lead"[..], &records[0], &records[1]].concat()
        );
        outgoing.advance(frame.len() - 70);
        assert_eq!(
            outgoing.parts().count(),
            2,
            "10 bytes of the first record, the second"
        );
        assert_eq!(outgoing.joined(), &frame[frame.len() - 70..]);
    }
}
