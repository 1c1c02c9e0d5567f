//! A deleted topic takes its messages with it: created again under the same name, it
//! starts empty at queue offset 0, as in Apache RocketMQ.

mod support;

use protocol::header::{pull_sys_flag, PullMessageRequestHeader, SendMessageRequestHeader};
use protocol::Client;
use support::*;

fn send_header(topic: &str) -> SendMessageRequestHeader {
    SendMessageRequestHeader {
        producer_group: "topics_producer".into(),
        topic: topic.into(),
        default_topic: "TBW102".into(),
        default_topic_queue_nums: 1,
        queue_id: 0,
        born_timestamp: 1,
        ..SendMessageRequestHeader::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_topic_created_again_serves_none_of_its_old_messages() {
    let rocketry = Rocketry::standalone("");
    let client = Client::connect(rocketry.broker_addr.as_deref().unwrap())
        .await
        .unwrap();
    for n in 0..3 {
        let sent = client
            .send_message(send_header("Recreated"), format!("old-{n}"))
            .await
            .unwrap();
        assert_eq!(sent.header.queue_offset, n);
    }
    client.delete_topic_in_broker("Recreated").await.unwrap();
    let sent = client
        .send_message(send_header("Recreated"), "new")
        .await
        .unwrap();
    assert_eq!(sent.header.queue_offset, 0);
    let pulled = client
        .pull_message(&PullMessageRequestHeader {
            consumer_group: "topics_reader".into(),
            topic: "Recreated".into(),
            queue_id: 0,
            queue_offset: 0,
            max_msg_nums: 32,
            sys_flag: pull_sys_flag::SUBSCRIPTION,
            subscription: Some("*".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let bodies: Vec<Vec<u8>> = pulled
        .messages()
        .unwrap()
        .iter()
        .map(|m| m.body().to_vec())
        .collect();
    assert_eq!(bodies, vec![b"new".to_vec()]);
    assert_eq!(pulled.header.max_offset, 1);
}
