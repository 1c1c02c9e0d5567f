use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use futures::{SinkExt, StreamExt};
use protocol::{RemotingCodec, RemotingCommand};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::codec::{Framed, FramedRead};
use tokio_util::sync::CancellationToken;

use super::{serve, Answer, Channel, Limits, Service};

const QUICK: i32 = 1;
/// Answered only once the test gives the service a permit.
const HELD: i32 = 2;

/// Served as soon as it is read (`Service::served_at_once`).
const AT_ONCE: i32 = 3;

const PROMPTLY: Duration = Duration::from_secs(10);

struct Fake {
    handled: AtomicUsize,
    body_size: usize,
    held: Semaphore,
}

impl Service for Fake {
    async fn handle(&self, request: RemotingCommand, _channel: &Channel) -> Option<Answer> {
        if request.code == HELD {
            self.held.acquire().await.unwrap().forget();
        }
        self.handled.fetch_add(1, Ordering::SeqCst);
        Some(
            RemotingCommand::response(0, 0, None)
                .with_body(vec![0u8; self.body_size])
                .into(),
        )
    }

    fn served_at_once(&self, code: i32) -> bool {
        code == AT_ONCE
    }
}

struct Server {
    addr: std::net::SocketAddr,
    service: Arc<Fake>,
    stop: CancellationToken,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Serves a [`Fake`] on a socket with small send buffers, so that the kernel absorbs
/// little of what a client does not read.
async fn start(limits: Limits, body_size: usize) -> Server {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_send_buffer_size(64 * 1024).unwrap();
    socket.bind(([127, 0, 0, 1], 0).into()).unwrap();
    let listener = socket.listen(64).unwrap();
    let service = Arc::new(Fake {
        handled: AtomicUsize::new(0),
        body_size,
        held: Semaphore::new(0),
    });
    let stop = CancellationToken::new();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(
        listener,
        service.clone(),
        limits,
        None,
        stop.clone().cancelled_owned(),
    ));
    Server {
        addr,
        service,
        stop,
    }
}

fn request(code: i32, opaque: i32) -> RemotingCommand {
    let mut request = RemotingCommand::request(code, &());
    request.opaque = opaque;
    request
}

async fn answer(client: &mut Framed<TcpStream, RemotingCodec>) -> RemotingCommand {
    tokio::time::timeout(PROMPTLY, client.next())
        .await
        .expect("an answer")
        .expect("the connection is open")
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_does_not_read_stops_being_read() {
    const REQUESTS: i32 = 2000;
    let server = start(Limits::new(10, 16, 256 * 1024, 0, 0, 65536), 64 * 1024).await;
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(64 * 1024).unwrap();
    let (unread, mut requests) = socket.connect(server.addr).await.unwrap().into_split();
    let mut frames = BytesMut::new();
    for opaque in 0..REQUESTS {
        protocol::frame::encode(&request(QUICK, opaque), &mut frames).unwrap();
    }
    let writing = tokio::spawn(async move {
        requests.write_all(&frames).await.unwrap();
        requests
    });

    // Wait until the server stops handling requests.
    let mut handled = 0;
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = server.service.handled.load(Ordering::SeqCst);
        if now > 0 && now == handled {
            break;
        }
        handled = now;
    }
    assert!(
        handled < 200,
        "{handled} of {REQUESTS} requests handled for a client that reads nothing"
    );

    // Once the client reads, every request is answered.
    let mut answers = FramedRead::new(unread, RemotingCodec);
    let mut opaques = HashSet::new();
    for _ in 0..REQUESTS {
        let answer = tokio::time::timeout(PROMPTLY, answers.next())
            .await
            .expect("an answer")
            .unwrap()
            .unwrap();
        assert_eq!(answer.body.len(), 64 * 1024);
        opaques.insert(answer.opaque);
    }
    assert_eq!(opaques.len(), REQUESTS as usize);
    writing.await.unwrap();
}

#[tokio::test]
async fn the_next_frame_waits_for_a_request_slot() {
    let server = start(Limits::new(10, 2, 1024 * 1024, 0, 0, 65536), 0).await;
    let stream = TcpStream::connect(server.addr).await.unwrap();
    let mut client = Framed::new(stream, RemotingCodec);
    client.send(request(HELD, 1)).await.unwrap();
    client.send(request(HELD, 2)).await.unwrap();
    client.send(request(QUICK, 3)).await.unwrap();
    let early = tokio::time::timeout(Duration::from_millis(300), client.next()).await;
    assert!(early.is_err(), "answered with both slots held: {early:?}");

    server.service.held.add_permits(1);
    let first = answer(&mut client).await.opaque;
    let second = answer(&mut client).await.opaque;
    assert!(first == 1 || first == 2);
    assert_eq!(second, 3);
}

/// A request served at once is read past the requests waiting for a slot and answered
/// while they wait: a client's heartbeat is never stuck behind its own flood of sends.
#[tokio::test]
async fn a_request_served_at_once_overtakes_requests_waiting_for_a_slot() {
    let server = start(Limits::new(10, 2, 1024 * 1024, 0, 0, 65536), 0).await;
    let stream = TcpStream::connect(server.addr).await.unwrap();
    let mut client = Framed::new(stream, RemotingCodec);
    for opaque in 1..=50 {
        client.feed(request(HELD, opaque)).await.unwrap();
    }
    client.send(request(AT_ONCE, 99)).await.unwrap();
    assert_eq!(answer(&mut client).await.opaque, 99);
    assert_eq!(server.service.handled.load(Ordering::SeqCst), 1);

    server.service.held.add_permits(50);
    let mut rest = HashSet::new();
    for _ in 0..50 {
        rest.insert(answer(&mut client).await.opaque);
    }
    assert_eq!(rest, (1..=50).collect());
}

/// Requests read ahead and still waiting for a slot when the client closes the connection
/// are handled all the same, as they were when each frame was read only once it had a slot:
/// a producer's last oneway sends are stored even if it closes right after writing them.
#[tokio::test]
async fn requests_waiting_for_a_slot_when_the_client_closes_are_still_handled() {
    let server = start(Limits::new(10, 2, 1024 * 1024, 0, 0, 65536), 0).await;
    let stream = TcpStream::connect(server.addr).await.unwrap();
    let mut client = Framed::new(stream, RemotingCodec);
    client.feed(request(HELD, 1)).await.unwrap();
    client.feed(request(HELD, 2)).await.unwrap();
    for opaque in 3..22 {
        client.feed(request(QUICK, opaque)).await.unwrap();
    }
    client.send(request(QUICK, 22)).await.unwrap();
    // Read ahead by now: the server has them, behind the two held requests.
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(client);
    server.service.held.add_permits(2);
    let deadline = tokio::time::Instant::now() + PROMPTLY;
    while server.service.handled.load(Ordering::SeqCst) < 22 {
        assert!(tokio::time::Instant::now() < deadline, "dropped unhandled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn connections_past_the_cap_are_closed_at_once() {
    let server = start(Limits::new(1, 16, 1024 * 1024, 0, 0, 65536), 0).await;
    let mut served = Framed::new(
        TcpStream::connect(server.addr).await.unwrap(),
        RemotingCodec,
    );
    served.send(request(QUICK, 1)).await.unwrap();
    assert_eq!(answer(&mut served).await.opaque, 1);

    let mut refused = TcpStream::connect(server.addr).await.unwrap();
    let read = tokio::time::timeout(PROMPTLY, refused.read(&mut [0u8; 16])).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");

    served.send(request(QUICK, 2)).await.unwrap();
    assert_eq!(answer(&mut served).await.opaque, 2);
}
