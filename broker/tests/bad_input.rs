//! Bad input gets a clear answer or a closed connection, never a panic, and never harms
//! another connection: malformed and oversized frames, unknown codes, bad topics, missing
//! header fields, oversized bodies, random bytes, and a full disk.

mod support;

use std::time::Duration;

use protocol::header::{GetRouteInfoRequestHeader, SendMessageRequestHeader};
use protocol::{Client, RemotingCommand, RequestCode, ResponseCode};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TIMEOUT: Duration = Duration::from_secs(10);

fn send_header(topic: &str, queue_id: i32) -> SendMessageRequestHeader {
    SendMessageRequestHeader {
        producer_group: "bad_input_producer".into(),
        topic: topic.into(),
        default_topic: "TBW102".into(),
        default_topic_queue_nums: 4,
        queue_id,
        born_timestamp: 1,
        ..SendMessageRequestHeader::default()
    }
}

/// The broker still answers a good request on a new connection.
async fn still_serves(addr: &str) {
    let client = Client::connect(addr).await.expect("broker gone");
    let request = RemotingCommand::request(
        RequestCode::GetMaxOffset,
        &protocol::header::GetMaxOffsetRequestHeader {
            topic: "TBW102".into(),
            queue_id: 0,
            ..Default::default()
        },
    );
    let response = client.invoke(request, TIMEOUT).await.unwrap();
    assert_eq!(response.code, ResponseCode::Success.as_i32());
}

/// Writes `bytes` on a fresh connection and expects the server to close it.
async fn closes_connection(addr: &str, bytes: &[u8]) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut buffer = [0u8; 64];
    let read = tokio::time::timeout(TIMEOUT, stream.read(&mut buffer)).await;
    match read {
        Ok(Ok(0)) | Ok(Err(_)) => {}
        other => panic!("connection not closed after {bytes:02x?}: {other:?}"),
    }
}

#[tokio::test]
async fn malformed_frames_close_only_their_own_connection() {
    let rocketry = Rocketry::standalone("");
    let addr = rocketry.broker_addr.clone().unwrap();
    // A healthy connection opened before, which must survive its neighbours' garbage.
    let bystander = Client::connect(&addr).await.unwrap();
    let cases: Vec<Vec<u8>> = vec![
        // Negative length.
        vec![0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0],
        // Length over the 16 MiB frame limit.
        vec![0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0],
        // Header length larger than the frame.
        vec![0, 0, 0, 8, 0, 0, 0, 200, 0, 0, 0, 0],
        // Unknown serialize type 7.
        vec![0, 0, 0, 6, 7, 0, 0, 2, b'{', b'}'],
        // A JSON header that is not JSON.
        [vec![0, 0, 0, 9, 0, 0, 0, 5], b"{{{{{".to_vec()].concat(),
    ];
    for case in &cases {
        closes_connection(&addr, case).await;
    }
    let route = RemotingCommand::request(
        RequestCode::GetMaxOffset,
        &protocol::header::GetMaxOffsetRequestHeader {
            topic: "TBW102".into(),
            queue_id: 0,
            ..Default::default()
        },
    );
    let response = bystander.invoke(route, TIMEOUT).await.unwrap();
    assert_eq!(response.code, ResponseCode::Success.as_i32());
    assert!(!rocketry.log_text().contains("panicked"));
    assert!(rocketry.log_text().contains("malformed frame"));
}

#[tokio::test]
async fn requests_the_broker_cannot_serve_get_rocketmq_codes() {
    let rocketry = Rocketry::standalone("");
    let broker = Client::connect(rocketry.broker_addr.as_deref().unwrap())
        .await
        .unwrap();

    let unknown = broker
        .invoke(RemotingCommand::request(9999, &()), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(unknown.code, ResponseCode::RequestCodeNotSupported.as_i32());
    assert_eq!(
        unknown.remark.as_deref(),
        Some(" request type 9999 not supported")
    );

    let bad_topic = broker
        .send_message(send_header("bad topic!", 0), "x")
        .await
        .unwrap_err();
    assert!(
        matches!(bad_topic, protocol::Error::Remote { code, .. } if code == ResponseCode::InvalidParameter.as_i32()),
        "{bad_topic:?}"
    );

    // A send without its topic field (`b`).
    let mut missing = RemotingCommand::request(
        RequestCode::SendMessageV2,
        &protocol::header::SendMessageRequestHeaderV2::from(send_header("T", 0)),
    );
    missing.ext_fields.remove("b");
    let response = broker.invoke(missing, TIMEOUT).await.unwrap();
    assert_eq!(response.code, ResponseCode::SystemError.as_i32());
    assert!(response.remark.unwrap_or_default().contains('b'));

    let too_big = broker
        .send_message(send_header("BigBody", 0), vec![7u8; 4 * 1024 * 1024 + 1])
        .await
        .unwrap_err();
    assert!(
        matches!(too_big, protocol::Error::Remote { code, .. } if code == ResponseCode::MessageIllegal.as_i32()),
        "{too_big:?}"
    );

    let bad_queue = broker
        .send_message(send_header("QueueRange", 99), "x")
        .await
        .unwrap_err();
    assert!(
        matches!(bad_queue, protocol::Error::Remote { code, .. } if code == ResponseCode::InvalidParameter.as_i32()),
        "{bad_queue:?}"
    );

    let namesrv = Client::connect(&rocketry.namesrv).await.unwrap();
    let no_route = namesrv.get_route_info("NoSuchTopic").await.unwrap_err();
    assert!(
        matches!(no_route, protocol::Error::Remote { code, .. } if code == ResponseCode::TopicNotExist.as_i32()),
        "{no_route:?}"
    );
    let missing_topic = namesrv
        .invoke(
            RemotingCommand::request(RequestCode::GetRouteinfoByTopic, &()),
            TIMEOUT,
        )
        .await
        .unwrap();
    assert_eq!(missing_topic.code, ResponseCode::SystemError.as_i32());
    let _ = GetRouteInfoRequestHeader::default();
    still_serves(rocketry.broker_addr.as_deref().unwrap()).await;
}

/// Random and mutated frames over many connections: the broker never panics and keeps
/// serving.
#[tokio::test]
async fn random_bytes_never_take_the_broker_down() {
    let rocketry = Rocketry::standalone("");
    let addr = rocketry.broker_addr.clone().unwrap();
    let valid = protocol::frame::encode_to_bytes(&RemotingCommand::request(
        RequestCode::SendMessageV2,
        &protocol::header::SendMessageRequestHeaderV2::from(send_header("Fuzzed", 0)),
    ))
    .unwrap();
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..200 {
        let mut bytes = valid.to_vec();
        for _ in 0..(next() % 8 + 1) {
            let at = (next() as usize) % bytes.len();
            bytes[at] = next() as u8;
        }
        if next() % 4 == 0 {
            bytes.truncate((next() as usize) % bytes.len());
        }
        let Ok(mut stream) = TcpStream::connect(&addr).await else {
            panic!("broker stopped accepting:\n{}", rocketry.log_text());
        };
        let _ = stream.write_all(&bytes).await;
        let _ = stream.shutdown().await;
        let mut sink = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(2), stream.read_to_end(&mut sink)).await;
    }
    still_serves(&addr).await;
    assert!(!rocketry.log_text().contains("panicked"));
}

/// A full disk refuses sends with SERVICE_NOT_AVAILABLE and a clear remark, keeps every
/// acknowledged message readable, and keeps serving.
#[tokio::test]
async fn a_full_disk_refuses_sends_and_loses_nothing() {
    let mount = tempfile::tempdir().unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=24m", "tmpfs"])
        .arg(mount.path())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !mounted {
        println!("SKIPPED: cannot mount a small tmpfs here (needs root) to fill a disk");
        return;
    }
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(mount.path().to_path_buf());
    let rocketry = Rocketry::standalone(&format!(
        "storePathRootDir={}\nmappedFileSizeCommitLog=4194304\nmappedFileSizeConsumeQueue=120000\n\
         maxHashSlotNum=1000\nmaxIndexNum=4000\nflushDiskType=SYNC_FLUSH\n",
        mount.path().join("store").display()
    ));
    let broker = Client::connect(rocketry.broker_addr.as_deref().unwrap())
        .await
        .unwrap();
    create_topic_on(&broker, "Full", 1).await;
    let body = vec![b'd'; 64 * 1024];
    let mut acknowledged = 0i64;
    let refusal = loop {
        match broker
            .send_message(send_header("Full", 0), body.clone())
            .await
        {
            Ok(result) => {
                assert_eq!(result.header.queue_offset, acknowledged);
                acknowledged += 1;
                assert!(acknowledged < 1000, "24 MiB never filled up");
            }
            Err(error) => break error,
        }
    };
    match &refusal {
        protocol::Error::Remote { code, remark } => {
            assert_eq!(
                *code,
                ResponseCode::ServiceNotAvailable.as_i32(),
                "{remark:?}"
            );
            assert!(
                remark.as_deref().unwrap_or("").contains("disk"),
                "{remark:?}"
            );
        }
        other => panic!("unexpected refusal {other:?}"),
    }
    assert!(acknowledged > 0);
    // Every acknowledged message reads back whole.
    let mut offset = 0i64;
    while offset < acknowledged {
        let pulled = broker
            .pull_message(&protocol::header::PullMessageRequestHeader {
                consumer_group: "full_reader".into(),
                topic: "Full".into(),
                queue_id: 0,
                queue_offset: offset,
                max_msg_nums: 32,
                sys_flag: protocol::header::pull_sys_flag::SUBSCRIPTION,
                commit_offset: 0,
                suspend_timeout_millis: 0,
                sub_version: 0,
                subscription: Some("*".into()),
                ..Default::default()
            })
            .await;
        let pulled = match pulled {
            Ok(pulled) => pulled,
            Err(error) => panic!("pull at {offset} failed: {error:?}"),
        };
        let messages = pulled.messages().unwrap();
        assert!(
            !messages.is_empty(),
            "pull at {offset}: {:?}",
            pulled.status
        );
        for message in messages {
            assert_eq!(message.queue_offset(), offset);
            assert_eq!(message.body(), &body[..]);
            message.check_body_crc().unwrap();
            offset += 1;
        }
    }
    still_serves(rocketry.broker_addr.as_deref().unwrap()).await;
    assert!(!rocketry.log_text().contains("panicked"));
}
