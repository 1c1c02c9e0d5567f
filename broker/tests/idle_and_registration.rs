//! An idle consumer costs the broker nothing: pulls on queues that were never written are
//! held like any other pull that finds nothing.

mod support;

use std::time::{Duration, Instant};

use protocol::body::{ConsumerData, HeartbeatData, SubscriptionData};
use protocol::client::{PullResult, PullStatus};
use protocol::header::{
    pull_sys_flag, CreateTopicRequestHeader, PullMessageRequestHeader, SendMessageRequestHeader,
};
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
    broker
        .create_topic(&CreateTopicRequestHeader {
            topic: "IdleTopic".into(),
            default_topic: "TBW102".into(),
            read_queue_nums: 1,
            write_queue_nums: 1,
            perm: 6,
            topic_filter_type: "SINGLE_TAG".into(),
            ..Default::default()
        })
        .await
        .unwrap();

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
