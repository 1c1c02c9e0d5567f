use protocol::header::{SendMessageRequestHeader, SendMessageRequestHeaderV2};
use protocol::{RemotingCommand, RequestCode, ResponseCode};

use crate::broker::Broker;
use crate::config::BrokerConfig;
use crate::server::{Channel, Service};

// An empty SEND_BATCH_MESSAGE body decodes to no messages, and the answer read the first
// stored one: the request task panicked and the producer waited out its timeout.
#[tokio::test(flavor = "multi_thread")]
async fn an_empty_batch_is_refused_as_illegal_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::open(
        BrokerConfig::default(),
        store::StoreConfig::with_root(dir.path()),
    )
    .unwrap();
    let (channel, _outbound) = Channel::detached(1);
    let header = SendMessageRequestHeaderV2::from(SendMessageRequestHeader {
        producer_group: "producer".into(),
        topic: "Orders".into(),
        default_topic: "TBW102".into(),
        default_topic_queue_nums: 4,
        queue_id: 0,
        born_timestamp: 1,
        ..SendMessageRequestHeader::default()
    });
    let request = RemotingCommand::request(RequestCode::SendBatchMessage, &header);
    let answer = broker.handle(request, &channel).await.unwrap();
    assert_eq!(answer.code, ResponseCode::MessageIllegal.as_i32());
    assert_eq!(
        answer.remark.as_deref(),
        Some("the batch holds no messages")
    );
    assert_eq!(broker.store().commit_log_max_offset(), 0);
    broker.begin_shutdown();
}

// A transactional producer's half message was answered SEND_OK and never delivered, not even
// once committed: until transactions work, it is refused and nothing is stored.
#[tokio::test(flavor = "multi_thread")]
async fn a_half_message_is_refused_not_acknowledged_and_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::open(
        BrokerConfig::default(),
        store::StoreConfig::with_root(dir.path()),
    )
    .unwrap();
    let (channel, _outbound) = Channel::detached(1);
    let header = SendMessageRequestHeaderV2::from(SendMessageRequestHeader {
        producer_group: "tx_producer".into(),
        topic: "Orders".into(),
        default_topic: "TBW102".into(),
        default_topic_queue_nums: 4,
        queue_id: 0,
        sys_flag: message::sysflag::TRANSACTION_PREPARED,
        born_timestamp: 1,
        ..SendMessageRequestHeader::default()
    });
    let request = RemotingCommand::request(RequestCode::SendMessageV2, &header).with_body("half");
    let answer = broker.handle(request, &channel).await.unwrap();
    assert_eq!(answer.code, ResponseCode::NoPermission.as_i32());
    let remark = answer.remark.unwrap_or_default();
    assert!(remark.contains("transaction"), "{remark}");
    assert_eq!(broker.store().commit_log_max_offset(), 0);
    broker.begin_shutdown();
}
