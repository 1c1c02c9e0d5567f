use std::sync::Arc;

use message::{property, sysflag, Properties};
use protocol::header::{
    SendMessageRequestHeader, SendMessageRequestHeaderV2, SendMessageResponseHeader,
};
use protocol::{RemotingCommand, RequestCode, ResponseCode};

use super::transaction::{self, Decision, HALF_TOPIC, OP_TOPIC};
use crate::broker::Broker;
use crate::config::BrokerConfig;
use crate::server::{Channel, Service};

fn open(dir: &std::path::Path, config: BrokerConfig) -> Arc<Broker> {
    Broker::open(config, store::StoreConfig::with_root(dir)).unwrap()
}

/// Sends one half message of `group` to `Orders` as a Java TransactionMQProducer does;
/// returns the answer and, when stored, the half message's CommitLog and queue offsets.
async fn send_half(broker: &Broker, group: &str) -> (RemotingCommand, Option<(i64, i64)>) {
    let mut properties = Properties::new();
    properties.insert(property::TRAN_MSG, "true");
    properties.insert(property::PGROUP, group);
    properties.insert(property::UNIQ_KEY, "0A0000010000000000000000000000AA");
    let header = SendMessageRequestHeaderV2::from(SendMessageRequestHeader {
        producer_group: group.into(),
        topic: "Orders".into(),
        default_topic: "TBW102".into(),
        default_topic_queue_nums: 4,
        queue_id: 2,
        sys_flag: sysflag::TRANSACTION_PREPARED,
        born_timestamp: 1,
        properties: Some(properties.encode()),
        ..SendMessageRequestHeader::default()
    });
    let request = RemotingCommand::request(RequestCode::SendMessageV2, &header).with_body("body");
    let (channel, _outbound) = Channel::detached(1);
    let answer = broker.handle(request, &channel).await.unwrap().joined();
    let offsets = answer
        .decode_header::<SendMessageResponseHeader>()
        .ok()
        .map(|sent| {
            let (_, offset) = message::decode_offset_message_id(&sent.msg_id).unwrap();
            (offset, sent.queue_offset)
        });
    (answer, offsets)
}

/// The broker's count of `name` (a per-topic transaction counter) for `Orders`.
fn counted(broker: &Arc<Broker>, name: &str) -> Option<f64> {
    let registry = prometheus::Registry::new();
    crate::broker::metrics::register(broker, &registry).unwrap();
    crate::broker::metrics::sample(&registry.gather(), name, &[("topic", "Orders")])
}

fn stored_in(broker: &Broker, topic: &str, queue_id: i32) -> i64 {
    broker.store().max_offset(topic, queue_id)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_half_message_is_invisible_until_committed_and_committed_once() {
    let dir = tempfile::tempdir().unwrap();
    let broker = open(dir.path(), BrokerConfig::default());
    let (answer, offsets) = send_half(&broker, "tx_producer").await;
    assert_eq!(answer.code, ResponseCode::Success.as_i32());
    let (commit_log_offset, queue_offset) = offsets.unwrap();
    assert_eq!(
        stored_in(&broker, "Orders", 2),
        0,
        "invisible before the commit"
    );
    assert_eq!(stored_in(&broker, HALF_TOPIC, 0), 1);
    let decide = || {
        transaction::decide(
            &broker,
            "tx_producer",
            commit_log_offset,
            queue_offset,
            Decision::Commit,
        )
    };
    assert!(decide().await.unwrap(), "the first commit applies");
    assert!(!decide().await.unwrap(), "the second does nothing");
    assert_eq!(
        stored_in(&broker, "Orders", 2),
        1,
        "its real topic and queue"
    );
    assert_eq!(stored_in(&broker, OP_TOPIC, 0), 1, "one op record");
    assert_eq!(
        counted(&broker, "rocketmq_commit_messages_total"),
        Some(1.0)
    );
    assert_eq!(counted(&broker, "rocketmq_rollback_messages_total"), None);
    broker.begin_shutdown();
}

// The broker stopped after a commit's put and before its op record: restarted, it does not
// know the decision, the checker asks the producer again, and the producer's second commit
// must not deliver the message twice.
#[tokio::test(flavor = "multi_thread")]
async fn a_commit_whose_op_record_was_lost_is_not_stored_twice() {
    let dir = tempfile::tempdir().unwrap();
    let (commit_log_offset, queue_offset) = {
        let broker = open(dir.path(), BrokerConfig::default());
        let (_, offsets) = send_half(&broker, "tx_producer").await;
        let offsets = offsets.unwrap();
        transaction::decide(
            &broker,
            "tx_producer",
            offsets.0,
            offsets.1,
            Decision::Commit,
        )
        .await
        .unwrap();
        broker.shutdown().await.unwrap();
        offsets
    };
    // The op record is what a crash before it would have lost: forget it.
    std::fs::remove_dir_all(dir.path().join("consumequeue").join(OP_TOPIC)).unwrap();
    let broker = open(dir.path(), BrokerConfig::default());
    assert_eq!(stored_in(&broker, "Orders", 2), 1);
    let applied = transaction::decide(
        &broker,
        "tx_producer",
        commit_log_offset,
        queue_offset,
        Decision::Commit,
    )
    .await
    .unwrap();
    assert!(applied, "the decision was not known");
    assert_eq!(stored_in(&broker, "Orders", 2), 1, "still one copy");
    broker.begin_shutdown();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rollback_stores_nothing_and_a_wrong_group_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let broker = open(dir.path(), BrokerConfig::default());
    let (_, offsets) = send_half(&broker, "tx_producer").await;
    let (commit_log_offset, queue_offset) = offsets.unwrap();
    let refusal = transaction::decide(
        &broker,
        "someone_else",
        commit_log_offset,
        queue_offset,
        Decision::Commit,
    )
    .await
    .unwrap_err();
    assert_eq!(refusal.0, ResponseCode::SystemError);
    assert!(transaction::decide(
        &broker,
        "tx_producer",
        commit_log_offset,
        queue_offset,
        Decision::Rollback,
    )
    .await
    .unwrap());
    assert_eq!(stored_in(&broker, "Orders", 2), 0);
    assert_eq!(stored_in(&broker, OP_TOPIC, 0), 1);
    assert_eq!(
        counted(&broker, "rocketmq_rollback_messages_total"),
        Some(1.0)
    );
    assert_eq!(counted(&broker, "rocketmq_commit_messages_total"), None);
    broker.begin_shutdown();
}

#[tokio::test(flavor = "multi_thread")]
async fn with_reject_transaction_message_a_half_message_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = BrokerConfig {
        reject_transaction_message: true,
        ..BrokerConfig::default()
    };
    let broker = open(dir.path(), config);
    let (answer, _) = send_half(&broker, "tx_producer").await;
    assert_eq!(answer.code, ResponseCode::NoPermission.as_i32());
    assert_eq!(broker.store().commit_log_max_offset(), 0);
    broker.begin_shutdown();
}
