use std::time::Duration;

use protocol::header::GetMaxOffsetRequestHeader;
use protocol::{RemotingCommand, RequestCode};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use super::{FrameReader, ReadError};
use crate::server::tls::ReadSide;
use crate::server::Limits;

const SHORT: Duration = Duration::from_millis(200);

/// A reader over the server's end of a fresh loopback connection, and the client's end.
async fn connected(limits: Limits) -> (FrameReader, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (server, _) = listener.accept().await.unwrap();
    let (read_half, _write_half) = server.into_split();
    (
        FrameReader::new(ReadSide::Plain(read_half), limits, None),
        client,
    )
}

fn limits(first_frame_max_bytes: usize, timeouts: Option<Duration>) -> Limits {
    Limits {
        max_connections: 1,
        max_requests_in_flight: 1,
        max_queued_response_bytes: 1,
        idle_timeout: timeouts,
        frame_timeout: timeouts,
        first_frame_max_bytes,
    }
}

fn request(opaque: i32, body: Vec<u8>) -> Vec<u8> {
    let mut request = RemotingCommand::request(
        RequestCode::GetMaxOffset,
        &GetMaxOffsetRequestHeader {
            topic: "T".into(),
            queue_id: 0,
            ..Default::default()
        },
    )
    .with_body(body);
    request.opaque = opaque;
    protocol::frame::encode_to_bytes(&request).unwrap().to_vec()
}

#[tokio::test]
async fn reads_pipelined_frames_then_the_close() {
    let (mut reader, mut client) = connected(limits(65536, None)).await;
    let frames = [
        request(1, vec![]),
        request(2, vec![7; 100]),
        request(3, vec![]),
    ]
    .concat();
    client.write_all(&frames).await.unwrap();
    client.shutdown().await.unwrap();
    for opaque in 1..=3 {
        let command = reader.next().await.unwrap().unwrap();
        assert_eq!(command.opaque, opaque);
    }
    assert!(reader.next().await.unwrap().is_none());
}

#[tokio::test]
async fn an_idle_reader_holds_no_buffer() {
    let (mut reader, mut client) = connected(limits(65536, None)).await;
    client.write_all(&request(1, vec![1; 3000])).await.unwrap();
    let command = reader.next().await.unwrap().unwrap();
    assert_eq!(command.body.len(), 3000);
    assert_eq!(reader.buffer.capacity(), 0);
}

#[tokio::test]
async fn a_large_first_frame_is_read_only_with_a_request_header() {
    let (mut reader, mut client) = connected(limits(1024, None)).await;
    // Announces 4 KiB, then a header that is not RocketMQ's.
    let mut stranger = 4096u32.to_be_bytes().to_vec();
    stranger.extend_from_slice(&[0, 0, 0, 16]);
    stranger.extend_from_slice(b"GET / HTTP/1.1\r\n");
    client.write_all(&stranger).await.unwrap();
    assert!(matches!(
        reader.next().await,
        Err(ReadError::TooLargeBeforeFirstRequest { max: 1024, .. })
    ));

    let (mut reader, mut client) = connected(limits(1024, None)).await;
    client.write_all(&request(1, vec![1; 4096])).await.unwrap();
    assert_eq!(reader.next().await.unwrap().unwrap().body.len(), 4096);
    // Once a request has come, the limit is the codec's.
    let answer = RemotingCommand::response(0, 9, None).with_body(vec![2; 4096]);
    client
        .write_all(&protocol::frame::encode_to_bytes(&answer).unwrap())
        .await
        .unwrap();
    assert_eq!(reader.next().await.unwrap().unwrap().opaque, 9);
}

#[tokio::test]
async fn with_a_check_every_large_frame_header_must_pass_it_before_its_body_is_read() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut client = TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (server, _) = listener.accept().await.unwrap();
    let (read_half, _write_half) = server.into_split();
    let check: crate::server::HeaderCheck =
        std::sync::Arc::new(|header: &RemotingCommand| header.ext_fields.contains_key("AccessKey"));
    let mut reader = FrameReader::new(ReadSide::Plain(read_half), limits(1024, None), Some(check));
    // Small frames pass unchecked, and the connection has now spoken.
    client.write_all(&request(1, vec![])).await.unwrap();
    assert_eq!(reader.next().await.unwrap().unwrap().opaque, 1);
    // A 16 MiB request without the key: only its header is sent, and the reader refuses
    // it on the header alone, with none of the body buffered.
    let frame = request(2, vec![0; 16 * 1024 * 1024 - 512]);
    let header_end = 8 + (u32::from_be_bytes(frame[4..8].try_into().unwrap()) & 0xFF_FFFF) as usize;
    client.write_all(&frame[..header_end]).await.unwrap();
    assert!(matches!(
        reader.next().await,
        Err(ReadError::TooLargeUnauthenticated { max: 1024, .. })
    ));
    assert!(
        reader.buffer.capacity() < 64 * 1024,
        "{}",
        reader.buffer.capacity()
    );
}

#[tokio::test]
async fn a_frame_that_stops_arriving_times_out() {
    let (mut reader, mut client) = connected(limits(65536, Some(SHORT))).await;
    let frame = request(1, vec![]);
    client.write_all(&frame[..frame.len() - 1]).await.unwrap();
    assert!(matches!(
        reader.next().await,
        Err(ReadError::FrameTimeout(_))
    ));
}

#[tokio::test]
async fn silence_times_out_whether_reading_or_not() {
    let (mut reader, _client) = connected(limits(65536, Some(SHORT))).await;
    assert!(matches!(reader.idle().await, ReadError::Idle(_)));
    assert!(matches!(reader.next().await, Err(ReadError::Idle(_))));
}
