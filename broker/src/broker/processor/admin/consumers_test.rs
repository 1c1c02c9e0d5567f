use protocol::body::admin::ConsumeStatsList;
use protocol::body::{self, SubscriptionGroupConfig};
use protocol::header::{
    CloneGroupOffsetRequestHeader, GetConsumeStatsInBrokerHeader, SendMessageRequestHeader,
    SendMessageRequestHeaderV2,
};
use protocol::{RemotingCommand, RequestCode, ResponseCode};

use crate::broker::Broker;
use crate::server::{Channel, Service};

#[tokio::test(flavor = "multi_thread")]
async fn broker_consume_stats_covers_every_group_and_the_topics_it_consumed() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::open_default(dir.path());
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
        let answer = broker.handle(request, &channel).await.unwrap().joined();
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
    let answer = broker.handle(ask(false), &channel).await.unwrap().joined();
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
    let answer = broker.handle(ask(true), &channel).await.unwrap().joined();
    let list: ConsumeStatsList = body::from_json(&answer.body).unwrap();
    assert!(list.consume_stats_list[0]["busy"].is_empty());
    broker.begin_shutdown();
}

#[tokio::test(flavor = "multi_thread")]
async fn clone_group_offset_copies_the_source_offsets_of_topics_the_broker_has() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::open_default(dir.path());
    let (channel, _outbound) = Channel::detached(1);
    // TBW102 exists on every broker; "Gone" was never created here.
    broker.offsets.commit("TBW102", "src", 0, 7);
    broker.offsets.commit("TBW102", "src", 1, 9);
    broker.offsets.commit("Gone", "src", 0, 3);
    broker.offsets.commit("TBW102", "dest", 3, 1);
    let request = RemotingCommand::request(
        RequestCode::CloneGroupOffset,
        &CloneGroupOffsetRequestHeader {
            src_group: "src".into(),
            dest_group: "dest".into(),
            topic: None,
            offline: Some(true),
        },
    );
    let answer = broker.handle(request, &channel).await.unwrap().joined();
    assert_eq!(answer.code, ResponseCode::Success.as_i32(), "{answer:?}");
    // The destination's offsets on the topic are replaced, as Java's `cloneOffset` does.
    assert_eq!(
        broker.offsets.of("TBW102", "dest"),
        [(0, 7), (1, 9)].into_iter().collect()
    );
    assert!(broker.offsets.of("Gone", "dest").is_empty());
    broker.begin_shutdown();
}
