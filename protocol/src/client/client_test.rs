use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::codec::Framed;

use super::*;
use crate::body::{BrokerData, QueueData, TopicRouteData};
use crate::code::{RequestCode, ResponseCode};
use crate::header::{
    GetRouteInfoRequestHeader, PullMessageRequestHeader, QueryConsumerOffsetRequestHeader,
    SendMessageRequestHeader, SendMessageRequestHeaderV2, SendMessageResponseHeader,
};
use crate::version;

type ServerConnection = Framed<TcpStream, RemotingCodec>;

/// Binds 127.0.0.1:0 and hands the first accepted connection to `serve`.
async fn server<F, Fut>(serve: F) -> SocketAddr
where
    F: FnOnce(ServerConnection) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        serve(Framed::new(stream, RemotingCodec)).await;
    });
    addr
}

fn route_request(topic: &str) -> RemotingCommand {
    RemotingCommand::request(
        RequestCode::GetRouteinfoByTopic,
        &GetRouteInfoRequestHeader {
            topic: topic.into(),
            accept_standard_json_only: None,
        },
    )
}

#[tokio::test]
async fn responses_are_matched_by_opaque_even_out_of_order() {
    let addr = server(|mut connection| async move {
        let mut requests = Vec::new();
        for _ in 0..3 {
            requests.push(connection.next().await.unwrap().unwrap());
        }
        for request in requests.iter().rev() {
            let response = RemotingCommand::response_to(request, 0, None)
                .with_ext_field("echo", request.ext_fields["topic"].clone());
            connection.send(response).await.unwrap();
        }
        // Keep the connection open until the client is done.
        let _ = connection.next().await;
    })
    .await;
    let client = Client::connect(addr).await.unwrap();
    let timeout = Duration::from_secs(5);
    let (a, b, c) = tokio::join!(
        client.invoke(route_request("a"), timeout),
        client.invoke(route_request("b"), timeout),
        client.invoke(route_request("c"), timeout),
    );
    assert_eq!(a.unwrap().ext_fields["echo"], "a");
    assert_eq!(b.unwrap().ext_fields["echo"], "b");
    assert_eq!(c.unwrap().ext_fields["echo"], "c");
}

#[tokio::test]
async fn timeout_is_distinct_and_late_answers_are_dropped() {
    let addr = server(|mut connection| async move {
        let first = connection.next().await.unwrap().unwrap();
        let second = connection.next().await.unwrap().unwrap();
        // Answer the timed-out request late, then the live one.
        connection
            .send(RemotingCommand::response_to(&first, 0, Some("late".into())))
            .await
            .unwrap();
        connection
            .send(RemotingCommand::response_to(
                &second,
                0,
                Some("on time".into()),
            ))
            .await
            .unwrap();
        let _ = connection.next().await;
    })
    .await;
    let client = Client::connect(addr).await.unwrap();
    let error = client
        .invoke(route_request("slow"), Duration::from_millis(100))
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Timeout { .. }), "{error:?}");
    assert!(client
        .inner
        .shared
        .pending
        .lock()
        .unwrap()
        .as_ref()
        .unwrap()
        .is_empty());
    let response = client
        .invoke(route_request("fast"), Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(response.remark.as_deref(), Some("on time"));
}

#[tokio::test]
async fn closing_the_connection_fails_pending_and_later_requests() {
    let addr = server(|mut connection| async move {
        let _ = connection.next().await;
        drop(connection);
    })
    .await;
    let client = Client::connect(addr).await.unwrap();
    let error = client
        .invoke(route_request("t"), Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(matches!(error, Error::ConnectionClosed), "{error:?}");
    assert!(client.is_closed());
    let error = client
        .invoke(route_request("t"), Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(matches!(error, Error::ConnectionClosed), "{error:?}");
}

#[tokio::test]
async fn oneway_sets_the_bit_and_expects_nothing() {
    let (seen, mut seen_rx) = mpsc::channel(1);
    let addr = server(|mut connection| async move {
        let request = connection.next().await.unwrap().unwrap();
        seen.send(request).await.unwrap();
        let _ = connection.next().await;
    })
    .await;
    let client = Client::connect(addr).await.unwrap();
    client.invoke_oneway(route_request("t")).await.unwrap();
    let request = seen_rx.recv().await.unwrap();
    assert!(request.is_oneway());
    assert!(!request.is_response());
    assert!(client
        .inner
        .shared
        .pending
        .lock()
        .unwrap()
        .as_ref()
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn server_requests_reach_the_handler_and_can_be_answered() {
    let (answer_tx, mut answer_rx) = mpsc::channel(1);
    let addr = server(|mut connection| async move {
        let mut notify = RemotingCommand::request(RequestCode::NotifyConsumerIdsChanged, &())
            .with_ext_field("consumerGroup", "cg");
        notify.mark_oneway();
        connection.send(notify).await.unwrap();
        let mut running_info = RemotingCommand::request(RequestCode::GetConsumerRunningInfo, &());
        running_info.opaque = 77;
        connection.send(running_info).await.unwrap();
        let answer = connection.next().await.unwrap().unwrap();
        answer_tx.send(answer).await.unwrap();
    })
    .await;
    let (handler, mut requests) = mpsc::channel(8);
    let client = Client::connect_with_handler(addr, handler).await.unwrap();
    let notify = requests.recv().await.unwrap();
    assert_eq!(notify.code, RequestCode::NotifyConsumerIdsChanged.as_i32());
    assert_eq!(notify.ext_fields["consumerGroup"], "cg");
    let running_info = requests.recv().await.unwrap();
    client
        .send_response(RemotingCommand::response_to(&running_info, 0, None).with_body(&b"{}"[..]))
        .await
        .unwrap();
    let answer = answer_rx.recv().await.unwrap();
    assert!(answer.is_response());
    assert_eq!(answer.opaque, 77);
    assert_eq!(&answer.body[..], b"{}");
}

#[tokio::test]
async fn typed_helpers_against_a_scripted_broker() {
    let addr = server(|mut connection| async move {
        while let Some(Ok(request)) = connection.next().await {
            let response = match RequestCode::from_i32(request.code) {
                Some(RequestCode::GetRouteinfoByTopic) => {
                    let route = TopicRouteData {
                        queue_datas: vec![QueueData {
                            broker_name: "b".into(),
                            read_queue_nums: 1,
                            write_queue_nums: 1,
                            perm: 6,
                            topic_sys_flag: 0,
                        }],
                        broker_datas: vec![BrokerData {
                            cluster: "c".into(),
                            broker_name: "b".into(),
                            broker_addrs: [(0, "127.0.0.1:10911".to_string())].into(),
                            ..Default::default()
                        }],
                        ..Default::default()
                    };
                    // Legacy form on purpose: the client must read it too.
                    RemotingCommand::response_to(&request, 0, None)
                        .with_body(route.encode_for_client(version::V4_5_2, false))
                }
                Some(RequestCode::SendMessageV2) => {
                    let header: SendMessageRequestHeaderV2 = request.decode_header().unwrap();
                    assert_eq!(header.topic, "T");
                    assert_eq!(&request.body[..], b"payload");
                    RemotingCommand::response_to(&request, 0, None).with_header(
                        &SendMessageResponseHeader {
                            msg_id: "ID".into(),
                            queue_id: 0,
                            queue_offset: 41,
                            ..Default::default()
                        },
                    )
                }
                Some(RequestCode::QueryConsumerOffset) => {
                    RemotingCommand::response_to(&request, ResponseCode::QueryNotFound, None)
                }
                Some(RequestCode::GetMaxOffset) => {
                    RemotingCommand::response_to(&request, 0, None).with_ext_field("offset", "42")
                }
                Some(RequestCode::PullMessage) => {
                    RemotingCommand::response_to(&request, ResponseCode::PullNotFound, None)
                        .with_ext_field("suggestWhichBrokerId", "0")
                        .with_ext_field("nextBeginOffset", "42")
                        .with_ext_field("minOffset", "0")
                        .with_ext_field("maxOffset", "42")
                }
                _ => RemotingCommand::response_to(
                    &request,
                    ResponseCode::TopicNotExist,
                    Some("nope".into()),
                ),
            };
            connection.send(response).await.unwrap();
        }
    })
    .await;
    let client = Client::connect(addr).await.unwrap();
    let route = client.get_route_info("T").await.unwrap();
    assert_eq!(route.broker_datas[0].master_addr(), Some("127.0.0.1:10911"));

    let send = client
        .send_message(
            SendMessageRequestHeader {
                producer_group: "pg".into(),
                topic: "T".into(),
                default_topic: "TBW102".into(),
                default_topic_queue_nums: 4,
                ..Default::default()
            },
            &b"payload"[..],
        )
        .await
        .unwrap();
    assert_eq!(send.header.queue_offset, 41);

    let offset = client
        .query_consumer_offset(&QueryConsumerOffsetRequestHeader {
            consumer_group: "cg".into(),
            topic: "T".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(offset, None);
    assert_eq!(client.get_max_offset("T", 0).await.unwrap(), 42);

    let pull = client
        .pull_message(&PullMessageRequestHeader {
            consumer_group: "cg".into(),
            topic: "T".into(),
            queue_offset: 42,
            max_msg_nums: 32,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(pull.status, PullStatus::NoNewMessage);
    assert_eq!(pull.header.next_begin_offset, 42);
    assert!(pull.messages().unwrap().is_empty());

    match client.get_cluster_info().await {
        Err(Error::Remote { code: 17, remark }) => assert_eq!(remark.as_deref(), Some("nope")),
        other => panic!("{other:?}"),
    }
}
