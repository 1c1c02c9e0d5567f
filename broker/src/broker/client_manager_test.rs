use std::sync::Arc;
use std::time::Instant;

use protocol::body::{ConsumerData, SubscriptionData};
use protocol::LanguageCode;

use super::{ClientInfo, ClientManager, Unsubscribed};
use crate::server::Channel;

fn heartbeat(manager: &ClientManager, channel: &Channel, tags: &str, sub_version: i64) {
    let data = ConsumerData {
        group_name: "orders-group".into(),
        subscription_data_set: vec![SubscriptionData {
            topic: "Orders".into(),
            sub_string: tags.into(),
            tags_set: SubscriptionData::parse_tags(tags),
            sub_version,
            ..SubscriptionData::default()
        }],
        ..ConsumerData::default()
    };
    let client = ClientInfo {
        client_id: "127.0.0.1@1".into(),
        channel: channel.clone(),
        language: LanguageCode::Java,
        version: 0,
        last_seen: Instant::now(),
    };
    manager.register_consumer(&data, client);
}

#[test]
fn a_repeated_heartbeat_keeps_the_compiled_filter_and_a_newer_subscription_replaces_it() {
    let manager = ClientManager::default();
    let (channel, _outbound) = Channel::detached(1);
    assert_eq!(
        manager.subscribed("orders-group", "Orders").unwrap_err(),
        Unsubscribed::NoGroup
    );
    heartbeat(&manager, &channel, "paid || shipped", 1);
    let first = manager.subscribed("orders-group", "Orders").unwrap();
    assert!(first.filter.as_ref().is_ok_and(|filter| !filter.is_all()));
    assert_eq!(
        manager.subscribed("orders-group", "Payments").unwrap_err(),
        Unsubscribed::NoTopic
    );

    heartbeat(&manager, &channel, "paid || shipped", 1);
    let again = manager.subscribed("orders-group", "Orders").unwrap();
    assert!(
        Arc::ptr_eq(&first, &again),
        "an unchanged subscription was compiled again"
    );

    // An older version than the one registered is ignored; a newer one replaces it.
    heartbeat(&manager, &channel, "*", 0);
    let stale = manager.subscribed("orders-group", "Orders").unwrap();
    assert!(Arc::ptr_eq(&first, &stale));
    heartbeat(&manager, &channel, "*", 2);
    let newer = manager.subscribed("orders-group", "Orders").unwrap();
    assert_eq!(newer.data.sub_string, "*");
    assert!(newer.filter.as_ref().is_ok_and(|filter| filter.is_all()));
}
