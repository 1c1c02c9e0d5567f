use protocol::body::admin::ConsumeStatsList;
use protocol::body::{self, SubscriptionGroupConfig};
use protocol::header::{
    GetConsumeStatsInBrokerHeader, SendMessageRequestHeader, SendMessageRequestHeaderV2,
};
use protocol::{RemotingCommand, RequestCode, ResponseCode};

use crate::broker::Broker;
use crate::config::BrokerConfig;
use crate::server::{Channel, Service};

#[tokio::test(flavor = "multi_thread")]
async fn broker_consume_stats_covers_every_group_and_the_topics_it_consumed() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::open(
        BrokerConfig::default(),
        store::StoreConfig::with_root(dir.path()),
    )
    .unwrap();
    let (channel, _outbound) = Channel::detached(1);
    for n in 0..3 {
        let header = SendMessageRequestHeaderV2::from(SendMessageRequestHeader {
            producer_group: "producer".into(),
            topic: "Orders".into(),
            default_topic: "TBW102".into(),
            default_topic_queue_nums: 4,
            queue_id: 0,
            born_timestamp: 1,
            ..SendMessageRequestHeader::default()
        });
        let request = RemotingCommand::request(RequestCode::SendMessageV2, &header)
            .with_body(format!("m{n}"));
        let answer = broker.handle(request, &channel).await.unwrap();
        assert_eq!(answer.code, ResponseCode::Success.as_i32(), "{answer:?}");
    }
    for group in ["busy", "idle"] {
        broker
            .groups
            .upsert(SubscriptionGroupConfig::named(group))
            .unwrap();
    }
    broker.offsets.commit("Orders", "busy", 0, 2);

    let ask = |order: bool| {
        RemotingCommand::request(
            RequestCode::GetBrokerConsumeStats,
            &GetConsumeStatsInBrokerHeader { is_order: order },
        )
    };
    let answer = broker.handle(ask(false), &channel).await.unwrap();
    assert_eq!(answer.code, ResponseCode::Success.as_i32());
    let list: ConsumeStatsList = body::from_json(&answer.body).unwrap();
    assert_eq!(list.broker_addr.as_deref(), Some("127.0.0.1:10911"));
    let groups: Vec<_> = list.consume_stats_list.iter().flatten().collect();
    assert_eq!(groups.len(), 2);
    let (name, busy) = groups[0];
    assert_eq!(name, "busy");
    assert_eq!(busy.len(), 1);
    assert_eq!(busy[0].offset_table.len(), 4, "every write queue of Orders");
    let first = busy[0].offset_table.iter().next().unwrap();
    assert_eq!((first.0.topic.as_str(), first.0.queue_id), ("Orders", 0));
    assert_eq!((first.1.broker_offset, first.1.consumer_offset), (3, 2));
    assert!(first.1.last_timestamp > 0);
    assert_eq!(groups[1], (&"idle".to_string(), &Vec::new()));
    assert_eq!(list.total_diff, 1);

    // Orders is not an ordered topic.
    let answer = broker.handle(ask(true), &channel).await.unwrap();
    let list: ConsumeStatsList = body::from_json(&answer.body).unwrap();
    assert!(list.consume_stats_list[0]["busy"].is_empty());
    broker.begin_shutdown();
}
