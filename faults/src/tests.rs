use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{timeout, Instant};

use super::*;

/// Long enough that a fault which should hold bytes back would have let them through.
const QUIET: Duration = Duration::from_millis(300);
/// Deadline for what must happen.
const PROMPTLY: Duration = Duration::from_secs(10);

/// An upstream that echoes every byte back on each connection.
async fn echo() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut read, mut write) = stream.split();
                let _ = tokio::io::copy(&mut read, &mut write).await;
            });
        }
    });
    addr
}

async fn read_exactly(stream: &mut TcpStream, len: usize) -> Vec<u8> {
    let mut got = vec![0; len];
    timeout(PROMPTLY, stream.read_exact(&mut got))
        .await
        .expect("the bytes arrive")
        .unwrap();
    got
}

async fn nothing_arrives(stream: &mut TcpStream) {
    let mut byte = [0; 1];
    assert!(
        timeout(QUIET, stream.read(&mut byte)).await.is_err(),
        "bytes went through a fault that holds them"
    );
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

#[tokio::test]
async fn bytes_pass_both_ways_unchanged_and_an_end_of_stream_is_passed_on() {
    let proxy = Proxy::start(echo().await).await.unwrap();
    let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
    let sent = pattern(3 * 1024 * 1024);
    let (mut read, mut write) = stream.split();
    let writing = async {
        write.write_all(&sent).await.unwrap();
        write.shutdown().await.unwrap();
    };
    let mut got = Vec::new();
    let reading = timeout(PROMPTLY, read.read_to_end(&mut got));
    let (_, read_result) = tokio::join!(writing, reading);
    read_result.expect("the echo ends").unwrap();
    assert!(got == sent, "{} bytes back of {}", got.len(), sent.len());
    assert_eq!(proxy.accepted(), 1);
}

#[tokio::test]
async fn a_stalled_direction_holds_its_bytes_and_delivers_them_all_in_order_once_healed() {
    let proxy = Proxy::start(echo().await).await.unwrap();
    let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
    stream.write_all(b"before").await.unwrap();
    assert_eq!(read_exactly(&mut stream, 6).await, b"before");

    proxy.stall(Direction::ToClient);
    let held = pattern(200_000);
    stream.write_all(&held).await.unwrap();
    nothing_arrives(&mut stream).await;
    proxy.heal();
    assert!(read_exactly(&mut stream, held.len()).await == held);

    // The other way: the upstream never gets the bytes while it is stalled.
    proxy.stall(Direction::ToUpstream);
    stream.write_all(b"late").await.unwrap();
    nothing_arrives(&mut stream).await;
    proxy.heal();
    assert_eq!(read_exactly(&mut stream, 4).await, b"late");
}

#[tokio::test]
async fn a_delay_holds_each_chunk_that_long() {
    let proxy = Proxy::start(echo().await).await.unwrap();
    let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
    proxy.delay(Direction::ToUpstream, Duration::from_millis(150));
    proxy.delay(Direction::ToClient, Duration::from_millis(100));
    let started = Instant::now();
    stream.write_all(b"ping").await.unwrap();
    assert_eq!(read_exactly(&mut stream, 4).await, b"ping");
    assert!(started.elapsed() >= Duration::from_millis(250));

    proxy.heal();
    let started = Instant::now();
    stream.write_all(b"pong").await.unwrap();
    assert_eq!(read_exactly(&mut stream, 4).await, b"pong");
    assert!(started.elapsed() < Duration::from_millis(250));
}

#[tokio::test]
async fn a_cut_resets_live_links_and_new_ones_go_through() {
    let proxy = Proxy::start(echo().await).await.unwrap();
    let mut cut = TcpStream::connect(proxy.addr()).await.unwrap();
    cut.write_all(b"x").await.unwrap();
    read_exactly(&mut cut, 1).await;
    proxy.cut();
    let mut byte = [0; 1];
    let ended = timeout(PROMPTLY, cut.read(&mut byte))
        .await
        .expect("the link ends");
    assert_eq!(
        ended.map_err(|e| e.kind()),
        Err(io::ErrorKind::ConnectionReset),
        "a reset, not a clean end"
    );

    let mut next = TcpStream::connect(proxy.addr()).await.unwrap();
    next.write_all(b"again").await.unwrap();
    assert_eq!(read_exactly(&mut next, 5).await, b"again");
}

#[tokio::test]
async fn a_partition_holds_live_links_and_refuses_new_ones_until_healed() {
    let proxy = Proxy::start(echo().await).await.unwrap();
    let mut live = TcpStream::connect(proxy.addr()).await.unwrap();
    live.write_all(b"a").await.unwrap();
    read_exactly(&mut live, 1).await;

    proxy.partition();
    live.write_all(b"held").await.unwrap();
    nothing_arrives(&mut live).await;
    let mut refused = TcpStream::connect(proxy.addr()).await.unwrap();
    let mut byte = [0; 1];
    let answer = timeout(PROMPTLY, refused.read(&mut byte))
        .await
        .expect("closed at once");
    assert!(matches!(answer, Ok(0) | Err(_)), "{answer:?}");

    proxy.heal();
    assert_eq!(read_exactly(&mut live, 4).await, b"held");
    let mut after = TcpStream::connect(proxy.addr()).await.unwrap();
    after.write_all(b"ok").await.unwrap();
    assert_eq!(read_exactly(&mut after, 2).await, b"ok");
}
