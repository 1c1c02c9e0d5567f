//! An idle consumer costs the broker nothing, and a name server that is down or silent
//! costs a client nothing: pulls on queues that were never written are held like any other
//! pull that finds nothing, and registration with the name servers happens beside the
//! requests that need it, never in their way.

mod support;

use std::time::{Duration, Instant};

use protocol::body::{ConsumerData, HeartbeatData, SubscriptionData};
use protocol::client::{PullResult, PullStatus};
use protocol::header::{pull_sys_flag, PullMessageRequestHeader, SendMessageRequestHeader};
use protocol::Client;
use support::*;

fn send_header(topic: &str, queue_id: i32) -> SendMessageRequestHeader {
    SendMessageRequestHeader {
        producer_group: "idle_producer".into(),
        topic: topic.into(),
        default_topic: "TBW102".into(),
        default_topic_queue_nums: 4,
        queue_id,
        born_timestamp: 1,
        ..SendMessageRequestHeader::default()
    }
}

/// Joins `group` as a Java push consumer of `topic` does: the heartbeat subscribes to the
/// topic and to `%RETRY%<group>`, which the broker creates for it and never writes.
async fn join_as_push_consumer(broker: &Client, group: &str, topic: &str) {
    let subscription = |topic: &str| SubscriptionData {
        topic: topic.into(),
        sub_string: "*".into(),
        expression_type: Some("TAG".into()),
        ..SubscriptionData::default()
    };
    let heartbeat = HeartbeatData {
        client_id: format!("127.0.0.1@{group}"),
        consumer_data_set: vec![ConsumerData {
            group_name: group.into(),
            subscription_data_set: vec![subscription(topic), subscription(&retry(group))],
            ..ConsumerData::default()
        }],
        ..HeartbeatData::default()
    };
    broker.heartbeat(&heartbeat).await.unwrap();
}

fn retry(group: &str) -> String {
    format!("%RETRY%{group}")
}

/// A push consumer's pull: suspend allowed, the subscription left to the heartbeat.
async fn pull(broker: &Client, group: &str, topic: &str, suspend: Duration) -> PullResult {
    broker
        .pull_message(&PullMessageRequestHeader {
            consumer_group: group.into(),
            topic: topic.into(),
            queue_id: 0,
            queue_offset: 0,
            max_msg_nums: 32,
            sys_flag: pull_sys_flag::build(false, true, false, false),
            commit_offset: 0,
            suspend_timeout_millis: suspend.as_millis() as i64,
            sub_version: 0,
            ..Default::default()
        })
        .await
        .unwrap()
}

// Pins the idle-consumer spin: a never-written queue (no consume queue yet) was answered
// PULL_NOT_FOUND at once, so every Java push consumer re-pulled its retry queue in a loop.
#[tokio::test]
async fn a_pull_on_a_never_written_retry_queue_is_held_for_its_suspend_time() {
    let rocketry = Rocketry::standalone("");
    let broker = Client::connect(rocketry.broker_addr.as_deref().unwrap())
        .await
        .unwrap();
    join_as_push_consumer(&broker, "held_group", "HeldTopic").await;

    let started = Instant::now();
    let pulled = pull(
        &broker,
        "held_group",
        &retry("held_group"),
        Duration::from_secs(2),
    )
    .await;
    let held = started.elapsed();
    assert_eq!(pulled.status, PullStatus::NoNewMessage);
    assert_eq!(pulled.header.next_begin_offset, 0);
    assert!(
        held >= Duration::from_millis(1500),
        "answered after {held:?}"
    );
    assert!(held < Duration::from_secs(5), "answered after {held:?}");
}

#[tokio::test]
async fn the_first_message_of_a_never_written_queue_wakes_its_held_pull() {
    let rocketry = Rocketry::standalone("");
    let addr = rocketry.broker_addr.clone().unwrap();
    let broker = Client::connect(&addr).await.unwrap();
    join_as_push_consumer(&broker, "woken_group", "WokenTopic").await;
    let retry_topic = retry("woken_group");

    let started = Instant::now();
    let held = tokio::spawn({
        let retry_topic = retry_topic.clone();
        async move {
            pull(
                &broker,
                "woken_group",
                &retry_topic,
                Duration::from_secs(10),
            )
            .await
        }
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        !held.is_finished(),
        "the pull was answered before any message"
    );
    // The send creates the queue's consume queue: the held pull must still hear of it.
    let producer = Client::connect(&addr).await.unwrap();
    producer
        .send_message(send_header(&retry_topic, 0), "first")
        .await
        .unwrap();
    let pulled = tokio::time::timeout(Duration::from_secs(5), held)
        .await
        .expect("the message did not wake the held pull")
        .unwrap();
    assert_eq!(pulled.status, PullStatus::Found, "{pulled:?}");
    let messages = pulled.messages().unwrap();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].body(), b"first");
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// Pulls `topic` queue 0 like a push consumer with nothing to do: again as soon as each
/// answer comes, for `duration`. Returns how many answers came.
async fn idle_pull_loop(broker: &Client, group: &str, topic: &str, duration: Duration) -> usize {
    let deadline = Instant::now() + duration;
    let mut answers = 0;
    while Instant::now() < deadline {
        let pulled = pull(broker, group, topic, Duration::from_secs(1)).await;
        assert_eq!(pulled.status, PullStatus::NoNewMessage);
        answers += 1;
    }
    answers
}

#[tokio::test]
async fn an_idle_push_consumer_makes_a_handful_of_pulls_not_thousands() {
    let rocketry = Rocketry::standalone("");
    let broker = Client::connect(rocketry.broker_addr.as_deref().unwrap())
        .await
        .unwrap();
    join_as_push_consumer(&broker, "idle_group", "IdleTopic").await;
    // The topic itself exists (created by an admin) but no message was ever sent to it.
    create_topic_on(&broker, "IdleTopic", 1).await;

    let window = Duration::from_secs(5);
    let retry_topic = retry("idle_group");
    let (retry_answers, topic_answers) = tokio::join!(
        idle_pull_loop(&broker, "idle_group", &retry_topic, window),
        idle_pull_loop(&broker, "idle_group", "IdleTopic", window),
    );
    println!("answers in {window:?}: retry queue {retry_answers}, topic queue {topic_answers}");
    // Each pull is held for its 1 s suspend time: about five answers per queue.
    assert!(retry_answers <= 8, "retry queue: {retry_answers} answers");
    assert!(topic_answers <= 8, "topic queue: {topic_answers} answers");
}

/// A name server that takes the connection and never answers: the kernel completes the
/// handshake into the listen backlog, and nobody reads. Held open while the value lives.
fn silent_name_server() -> (std::net::TcpListener, String) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    (listener, addr)
}

/// A name server whose connects hang, as behind a firewall that drops packets: a listener
/// with a full accept queue, whose kernel drops every further SYN. Returns the listener and
/// the connections that fill its queue, to hold while the test runs.
async fn unreachable_name_server() -> (tokio::net::TcpListener, Vec<tokio::net::TcpStream>, String)
{
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(0).unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let mut fillers = Vec::new();
    loop {
        let connect = tokio::net::TcpStream::connect(&addr);
        match tokio::time::timeout(Duration::from_millis(300), connect).await {
            Ok(stream) => fillers.push(stream.unwrap()),
            Err(_) => break,
        }
        assert!(fillers.len() < 16, "the accept queue never filled");
    }
    (listener, fillers, addr)
}

/// Sends the first message of a new topic (the broker creates it and registers it) and
/// returns how long the send took.
async fn time_topic_creating_send(broker_addr: &str, topic: &str) -> Duration {
    let producer = Client::connect(broker_addr).await.unwrap();
    // Longer than the Java producer's 3 s, so a slow answer is measured, not lost.
    producer.set_default_timeout(Duration::from_secs(20));
    let started = Instant::now();
    producer
        .send_message(send_header(topic, 0), "new topic")
        .await
        .unwrap();
    started.elapsed()
}

// Pins registration on the send path: topic creation registered with every name server in
// turn before answering, so a silent one held the send for its whole request timeout (6 s).
#[tokio::test]
async fn a_silent_name_server_delays_neither_topic_creation_nor_shutdown() {
    let namesrv = Rocketry::namesrv();
    let (_silent, silent_addr) = silent_name_server();
    let mut broker = Rocketry::broker(
        &format!("{};{silent_addr}", namesrv.namesrv),
        "silent_ns_broker",
    );
    let broker_addr = broker.broker_addr.clone().unwrap();

    let took = time_topic_creating_send(&broker_addr, "SilentNsTopic").await;
    println!("the topic-creating send took {took:?}");
    assert!(took < Duration::from_secs(2), "the send took {took:?}");
    // The live name server knew the route before the producer was answered.
    let lookup = Client::connect(&namesrv.namesrv).await.unwrap();
    let route = lookup.get_route_info("SilentNsTopic").await.unwrap();
    assert_eq!(route.broker_datas[0].broker_name, "silent_ns_broker");

    let started = Instant::now();
    assert!(broker.terminate().success());
    let stopping = started.elapsed();
    println!("stopping took {stopping:?}");
    assert!(
        stopping < Duration::from_secs(5),
        "stopping took {stopping:?}"
    );
    // Unregistered: the live name server stopped routing to the broker at once.
    let gone = lookup.get_route_info("SilentNsTopic").await;
    assert!(
        gone.as_ref().is_err() || gone.as_ref().unwrap().broker_datas.is_empty(),
        "{gone:?}"
    );
}

// Pins the connect without a timeout: a name server whose packets are dropped held the
// broker's start (and every topic-creating send) until the kernel gave up, minutes later.
#[tokio::test]
async fn an_unreachable_name_server_delays_neither_start_nor_topic_creation() {
    let namesrv = Rocketry::namesrv();
    let (_listener, _fillers, unreachable_addr) = unreachable_name_server().await;
    let started = Instant::now();
    let broker = Rocketry::broker(
        &format!("{};{unreachable_addr}", namesrv.namesrv),
        "unreachable_ns_broker",
    );
    let start = started.elapsed();
    println!("the start took {start:?}");
    assert!(start < Duration::from_secs(10), "the start took {start:?}");

    let took =
        time_topic_creating_send(broker.broker_addr.as_deref().unwrap(), "UnreachableNsTopic")
            .await;
    println!("the topic-creating send took {took:?}");
    assert!(took < Duration::from_secs(2), "the send took {took:?}");
    let lookup = Client::connect(&namesrv.namesrv).await.unwrap();
    let route = lookup.get_route_info("UnreachableNsTopic").await.unwrap();
    assert_eq!(route.broker_datas[0].broker_name, "unreachable_ns_broker");
}
