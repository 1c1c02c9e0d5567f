use protocol::header::{SendMessageRequestHeader, SendMessageRequestHeaderV2};
use protocol::{RemotingCommand, RequestCode, ResponseCode};

use crate::broker::Broker;
use crate::config::BrokerConfig;
use crate::server::{Channel, Service};

/// A broker on a fresh store, and what it answers to one send built from `header`.
async fn answer_to(
    code: RequestCode,
    header: SendMessageRequestHeader,
    body: &'static str,
) -> (RemotingCommand, u64) {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::open(
        BrokerConfig::default(),
        store::StoreConfig::with_root(dir.path()),
    )
    .unwrap();
    let (channel, _outbound) = Channel::detached(1);
    let header = SendMessageRequestHeaderV2::from(SendMessageRequestHeader {
        default_topic: "TBW102".into(),
        default_topic_queue_nums: 4,
        born_timestamp: 1,
        ..header
    });
    let request = RemotingCommand::request(code, &header).with_body(body);
    let answer = broker.handle(request, &channel).await.unwrap();
    let stored = broker.store().commit_log_max_offset();
    broker.begin_shutdown();
    (answer, stored)
}

// An empty SEND_BATCH_MESSAGE body decodes to no messages, and the answer read the first
// stored one: the request task panicked and the producer waited out its timeout.
#[tokio::test(flavor = "multi_thread")]
async fn an_empty_batch_is_refused_as_illegal_and_stores_nothing() {
    let header = SendMessageRequestHeader {
        producer_group: "producer".into(),
        topic: "Orders".into(),
        ..SendMessageRequestHeader::default()
    };
    let (answer, stored) = answer_to(RequestCode::SendBatchMessage, header, "").await;
    assert_eq!(answer.code, ResponseCode::MessageIllegal.as_i32());
    assert_eq!(
        answer.remark.as_deref(),
        Some("the batch holds no messages")
    );
    assert_eq!(stored, 0);
}
