use std::sync::Arc;

use message::{property, Properties};
use prometheus::Registry;
use protocol::body::admin::ConsumeStats;
use protocol::body::{self};
use protocol::header::{
    pull_sys_flag, DeleteTopicRequestHeader, GetConsumeStatsRequestHeader,
    PullMessageRequestHeader, SendMessageRequestHeader, SendMessageRequestHeaderV2,
};
use protocol::{RemotingCommand, RequestCode, ResponseCode};

use super::collector::lag_of;
use super::sample as value;
use crate::broker::Broker;
use crate::server::{Channel, Service};

/// A broker on a fresh store, with its metrics in a registry of their own.
fn broker(dir: &tempfile::TempDir) -> (Arc<Broker>, Registry) {
    let broker = Broker::open_default(dir.path());
    let registry = Registry::new();
    super::register(&broker, &registry).unwrap();
    (broker, registry)
}

async fn ask(broker: &Broker, request: RemotingCommand) -> RemotingCommand {
    let (channel, _outbound) = Channel::detached(1);
    let answer = broker.handle(request, &channel).await.unwrap().joined();
    assert_eq!(answer.code, ResponseCode::Success.as_i32(), "{answer:?}");
    answer
}

/// Sends one message to queue 0 of `topic` with `properties`.
async fn send(broker: &Broker, topic: &str, properties: &Properties) {
    let header = SendMessageRequestHeaderV2::from(SendMessageRequestHeader {
        producer_group: "producer".into(),
        topic: topic.into(),
        default_topic: "TBW102".into(),
        default_topic_queue_nums: 4,
        queue_id: 0,
        born_timestamp: 1,
        properties: Some(properties.encode()),
        ..SendMessageRequestHeader::default()
    });
    ask(
        broker,
        RemotingCommand::request(RequestCode::SendMessageV2, &header).with_body("m"),
    )
    .await;
}

async fn consume_stats(broker: &Broker, group: &str, topic: &str) -> ConsumeStats {
    let request = RemotingCommand::request(
        RequestCode::GetConsumeStats,
        &GetConsumeStatsRequestHeader {
            consumer_group: group.into(),
            topic: Some(topic.into()),
            topic_list: None,
        },
    );
    body::from_json(&ask(broker, request).await.body).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn consume_tps_is_what_the_group_pulled_over_the_last_minute() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, _registry) = broker(&dir);
    for _ in 0..5 {
        send(&broker, "Orders", &Properties::new()).await;
    }
    let pull = PullMessageRequestHeader {
        consumer_group: "g".into(),
        topic: "Orders".into(),
        queue_id: 0,
        queue_offset: 0,
        max_msg_nums: 32,
        sys_flag: pull_sys_flag::build(false, false, true, false),
        subscription: Some("*".into()),
        expression_type: Some("TAG".into()),
        ..Default::default()
    };
    ask(
        &broker,
        RemotingCommand::request(RequestCode::PullMessage, &pull),
    )
    .await;
    // Read at once after the pull: at most one second's worth, and not nothing.
    let tps = consume_stats(&broker, "g", "Orders").await.consume_tps;
    assert!(tps > 0.0 && tps <= 5.0, "{tps}");
    let idle = consume_stats(&broker, "h", "Orders").await.consume_tps;
    assert_eq!(idle, 0.0, "a group that never pulled");
}

#[tokio::test(flavor = "multi_thread")]
async fn lag_is_what_get_consume_stats_reports() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, registry) = broker(&dir);
    for _ in 0..5 {
        send(&broker, "Orders", &Properties::new()).await;
    }
    broker.offsets.commit("Orders", "g", 0, 2);
    broker.offsets.pulled("Orders", "g", 0, 4);

    let stats = consume_stats(&broker, "g", "Orders").await;
    let lag = lag_of(&broker, "g", "Orders", None).unwrap();
    assert_eq!(lag.messages, stats.total_diff());
    assert_eq!(lag.messages, 3);
    let pulled: i64 = stats.offset_table.values().map(|w| w.pull_offset).sum();
    assert_eq!(pulled, 4);
    assert_eq!((lag.ready, lag.inflight), (1, 2));
    assert_eq!(
        lag.oldest_uncommitted,
        broker.store.store_timestamp_at("Orders", 0, 2)
    );
    assert_eq!(
        lag.oldest_ready,
        broker.store.store_timestamp_at("Orders", 0, 4)
    );
    assert_eq!(lag_of(&broker, "g", "Missing", None), None);

    let families = registry.gather();
    let series = [("topic", "Orders"), ("consumer_group", "g")];
    assert_eq!(
        value(&families, "rocketmq_consumer_lag_messages", &series),
        Some(3.0)
    );
    assert!(value(&families, "rocketmq_consumer_lag_latency", &series).unwrap() >= 0.0);
    assert_eq!(
        value(&families, "rocketmq_consumer_inflight_messages", &series),
        Some(2.0)
    );
    assert_eq!(
        value(&families, "rocketmq_consumer_ready_messages", &series),
        Some(1.0)
    );
    assert_eq!(
        value(
            &families,
            "rocketmq_messages_in_total",
            &[("topic", "Orders")]
        ),
        Some(5.0)
    );
    assert_eq!(
        value(&families, "rocketmq_broker_permission", &[]),
        Some(6.0)
    );
    assert_eq!(value(&families, "rocketry_broker_writable", &[]), Some(1.0));
    assert_eq!(
        value(&families, "rocketry_store_write_fenced", &[]),
        Some(0.0)
    );
    broker.begin_shutdown();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_delayed_message_counts_under_its_own_topic_as_delay() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, registry) = broker(&dir);
    let mut delayed = Properties::new();
    delayed.insert(property::DELAY, "3");
    send(&broker, "Later", &delayed).await;
    let mut ordered = Properties::new();
    ordered.insert(property::SHARDING_KEY, "k");
    send(&broker, "Later", &ordered).await;
    let families = registry.gather();
    let count = |kind: &str| {
        value(
            &families,
            "rocketmq_messages_in_total",
            &[("topic", "Later"), ("message_type", kind)],
        )
    };
    assert_eq!(count("delay"), Some(1.0));
    assert_eq!(count("fifo"), Some(1.0));
    assert_eq!(count("normal"), None);
    broker.begin_shutdown();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_topic_leaves_no_series() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, registry) = broker(&dir);
    send(&broker, "Gone", &Properties::new()).await;
    broker.offsets.commit("Gone", "g", 0, 0);
    broker.metrics.record_out("Gone", "g", 1, 100);
    let families = registry.gather();
    assert!(value(
        &families,
        "rocketmq_messages_out_total",
        &[("topic", "Gone")]
    )
    .is_some());
    assert!(value(
        &families,
        "rocketmq_consumer_lag_messages",
        &[("topic", "Gone")]
    )
    .is_some());

    let request = RemotingCommand::request(
        RequestCode::DeleteTopicInBroker,
        &DeleteTopicRequestHeader {
            topic: "Gone".into(),
        },
    );
    ask(&broker, request).await;
    let families = registry.gather();
    for name in [
        "rocketmq_messages_in_total",
        "rocketmq_messages_out_total",
        "rocketmq_consumer_lag_messages",
    ] {
        assert_eq!(value(&families, name, &[("topic", "Gone")]), None, "{name}");
    }
    broker.begin_shutdown();
}

// The series are looked up once per run of equal labels in a batch: a run that changes
// labels midway must still count each message under its own.
#[tokio::test(flavor = "multi_thread")]
async fn a_batch_counts_each_message_under_its_own_labels() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, registry) = broker(&dir);
    let plain = message::Message::new("Mixed", "m");
    let mut delayed = plain.clone();
    delayed.properties.insert(property::DELAY, "3");
    let batch = [plain.clone(), delayed, plain.clone(), plain];
    let header = SendMessageRequestHeaderV2::from(SendMessageRequestHeader {
        producer_group: "producer".into(),
        topic: "Mixed".into(),
        default_topic: "TBW102".into(),
        default_topic_queue_nums: 4,
        queue_id: 0,
        born_timestamp: 1,
        batch: Some(true),
        ..SendMessageRequestHeader::default()
    });
    let body = message::encode_batch(&batch).unwrap();
    ask(
        &broker,
        RemotingCommand::request(RequestCode::SendBatchMessage, &header).with_body(body),
    )
    .await;
    let families = registry.gather();
    let count = |kind: &str| {
        value(
            &families,
            "rocketmq_messages_in_total",
            &[("topic", "Mixed"), ("message_type", kind)],
        )
    };
    assert_eq!(count("normal"), Some(3.0));
    assert_eq!(count("delay"), Some(1.0));
    let sizes = families
        .iter()
        .find(|f| f.name() == "rocketmq_message_size")
        .unwrap();
    let observed: u64 = sizes
        .get_metric()
        .iter()
        .map(|m| m.get_histogram().get_sample_count())
        .sum();
    assert_eq!(observed, 4);
    broker.begin_shutdown();
}
