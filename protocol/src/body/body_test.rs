use std::collections::BTreeMap;

use super::*;
use crate::version;

fn sample_route() -> TopicRouteData {
    TopicRouteData {
        order_topic_conf: None,
        queue_datas: vec![QueueData {
            broker_name: "broker-a".into(),
            read_queue_nums: 4,
            write_queue_nums: 4,
            perm: 6,
            topic_sys_flag: 0,
        }],
        broker_datas: vec![BrokerData {
            cluster: "DefaultCluster".into(),
            broker_name: "broker-a".into(),
            broker_addrs: BTreeMap::from([
                (0, "127.0.0.1:10911".into()),
                (1, "127.0.0.1:10921".into()),
            ]),
            enable_acting_master: false,
            zone_name: None,
        }],
        filter_server_table: BTreeMap::new(),
        topic_queue_mapping_by_broker: None,
    }
}

#[test]
fn route_standard_form_for_modern_clients() {
    let route = sample_route();
    let body = route.encode_for_client(version::V4_9_4, false);
    assert_eq!(
        std::str::from_utf8(&body).unwrap(),
        r#"{"brokerDatas":[{"brokerAddrs":{"0":"127.0.0.1:10911","1":"127.0.0.1:10921"},"brokerName":"broker-a","cluster":"DefaultCluster","enableActingMaster":false}],"filterServerTable":{},"queueDatas":[{"brokerName":"broker-a","perm":6,"readQueueNums":4,"topicSysFlag":0,"writeQueueNums":4}]}"#
    );
    assert_eq!(TopicRouteData::decode(&body).unwrap(), route);
    // acceptStandardJsonOnly wins over an old version.
    assert_eq!(route.encode_for_client(version::V4_5_2, true), body);
}

#[test]
fn route_legacy_form_for_old_clients() {
    let route = sample_route();
    let body = route.encode_for_client(version::V4_6_0, false);
    let text = std::str::from_utf8(&body).unwrap();
    assert!(
        text.contains(r#""brokerAddrs":{0:"127.0.0.1:10911",1:"127.0.0.1:10921"}"#),
        "{text}"
    );
    assert!(
        !text.contains(' '),
        "the Go hand parser needs compact output"
    );
    assert!(serde_json::from_slice::<serde_json::Value>(&body).is_err());
    assert_eq!(TopicRouteData::decode(&body).unwrap(), route);

    // What the Go client does with the brokerAddrs text: strip braces, split on ',' and the
    // first ':', drop quotes.
    let start = text.find(r#""brokerAddrs":{"#).unwrap() + r#""brokerAddrs":{"#.len();
    let end = start + text[start..].find('}').unwrap();
    let parsed: Vec<(String, String)> = text[start..end]
        .split(',')
        .map(|entry| {
            let (id, addr) = entry.split_once(':').unwrap();
            (id.replace('"', ""), addr.replace('"', ""))
        })
        .collect();
    assert_eq!(parsed[0], ("0".into(), "127.0.0.1:10911".into()));
}

#[test]
fn heartbeat_from_java_go_and_cpp() {
    let java = br#"{"clientID":"10.0.0.5@12345#849302211","producerDataSet":[{"groupName":"CLIENT_INNER_PRODUCER"},{"groupName":"pg1"}],"consumerDataSet":[{"groupName":"cg1","consumeType":"CONSUME_PASSIVELY","messageModel":"CLUSTERING","consumeFromWhere":"CONSUME_FROM_LAST_OFFSET","unitMode":false,"subscriptionDataSet":[{"classFilterMode":false,"topic":"T","subString":"tagA || tagB","tagsSet":["tagA","tagB"],"codeSet":[3552015,3552016],"subVersion":1700000000000,"expressionType":"TAG"}]}],"heartbeatFingerprint":0,"withoutSub":false}"#;
    let data: HeartbeatData = from_json(java).unwrap();
    assert_eq!(data.client_id, "10.0.0.5@12345#849302211");
    assert_eq!(data.producer_data_set.len(), 2);
    let consumer = &data.consumer_data_set[0];
    assert_eq!(consumer.consume_type, ConsumeType::ConsumePassively);
    assert_eq!(consumer.message_model, MessageModel::Clustering);
    let subscription = &consumer.subscription_data_set[0];
    assert_eq!(subscription.sub_version, 1_700_000_000_000);
    assert!(subscription.tags_set.contains("tagB"));
    assert_eq!(
        SubscriptionData::parse_tags(&subscription.sub_string),
        subscription.tags_set
    );

    // C++: ordinals, subVersion as a string, no expressionType/classFilterMode/unitMode,
    // empty sets omitted, an unknown field.
    let cpp = br#"{"clientID":"10.0.0.6@9","producerDataSet":[],"consumerDataSet":[{"groupName":"cg2","consumeType":1,"messageModel":0,"consumeFromWhere":4,"subscriptionDataSet":[{"topic":"T","subString":"*","subVersion":"1700000000001"}],"extra":true}]}"#;
    let data: HeartbeatData = from_json(cpp).unwrap();
    let consumer = &data.consumer_data_set[0];
    assert_eq!(consumer.consume_type, ConsumeType::ConsumePassively);
    assert_eq!(consumer.message_model, MessageModel::Broadcasting);
    assert_eq!(
        consumer.consume_from_where,
        ConsumeFromWhere::ConsumeFromFirstOffset
    );
    assert_eq!(
        consumer.subscription_data_set[0].sub_version,
        1_700_000_000_001
    );
    assert!(consumer.subscription_data_set[0].subscribes_all());
    assert!(consumer.subscription_data_set[0].expression_type.is_none());

    // Written back by name, round trip.
    let encoded = to_json(&data);
    assert!(std::str::from_utf8(&encoded)
        .unwrap()
        .contains(r#""consumeType":"CONSUME_PASSIVELY""#));
    assert_eq!(from_json::<HeartbeatData>(&encoded).unwrap(), data);

    assert!(
        from_json::<HeartbeatData>(br#"{"consumerDataSet":[{"consumeType":"NOPE"}]}"#).is_err()
    );
    assert!(from_json::<HeartbeatData>(br#"{"consumerDataSet":[{"consumeType":7}]}"#).is_err());
    // Numbers in string fields.
    let numeric: HeartbeatData =
        from_json(br#"{"clientID":12,"producerDataSet":[{"groupName":34}]}"#).unwrap();
    assert_eq!(numeric.client_id, "12");
    assert_eq!(numeric.producer_data_set[0].group_name, "34");
}

#[test]
fn register_broker_body_round_trip() {
    let text = br#"{"filterServerList":[],"topicConfigSerializeWrapper":{"dataVersion":{"counter":3,"stateVersion":0,"timestamp":1700000000000},"topicConfigTable":{"TBW102":{"topicName":"TBW102","readQueueNums":8,"writeQueueNums":8,"perm":7,"topicFilterType":"SINGLE_TAG","topicSysFlag":0,"order":false,"attributes":{}}},"mappingDataVersion":{"counter":0},"topicQueueMappingInfoMap":{}}}"#;
    let body: RegisterBrokerBody = from_json(text).unwrap();
    let config = &body.topic_config_serialize_wrapper.topic_config_table["TBW102"];
    assert_eq!(config.perm, 7);
    assert_eq!(config.topic_filter_type, TopicFilterType::SingleTag);
    assert_eq!(body.topic_config_serialize_wrapper.data_version.counter, 3);
    assert_eq!(
        from_json::<RegisterBrokerBody>(&to_json(&body)).unwrap(),
        body
    );
}

#[test]
fn cluster_info_uses_bare_broker_ids() {
    let route = sample_route();
    let info = ClusterInfo {
        broker_addr_table: BTreeMap::from([("broker-a".into(), route.broker_datas[0].clone())]),
        cluster_addr_table: BTreeMap::from([(
            "DefaultCluster".into(),
            ["broker-a".to_string()].into(),
        )]),
    };
    let body = info.encode();
    let text = std::str::from_utf8(&body).unwrap();
    assert!(
        text.contains(r#"{0:"127.0.0.1:10911",1:"127.0.0.1:10921"}"#),
        "{text}"
    );
    assert!(text.contains(r#""clusterAddrTable":{"DefaultCluster":["broker-a"]}"#));
    assert_eq!(ClusterInfo::decode(&body).unwrap(), info);
}

#[test]
fn small_bodies() {
    let lock: LockBatchRequestBody = from_json(
        br#"{"consumerGroup":"g","clientId":"c","onlyThisBroker":false,"mqSet":[{"brokerName":"b","queueId":0,"topic":"t"},{"brokerName":"b","queueId":"1","topic":"t"}]}"#,
    )
    .unwrap();
    assert_eq!(lock.mq_set.len(), 2);
    let response = LockBatchResponseBody {
        lock_ok_mq_set: lock.mq_set.clone(),
    };
    assert_eq!(
        std::str::from_utf8(&to_json(&response)).unwrap(),
        r#"{"lockOKMQSet":[{"brokerName":"b","queueId":0,"topic":"t"},{"brokerName":"b","queueId":1,"topic":"t"}]}"#
    );
    let list: ConsumerListByGroupResponseBody =
        from_json(br#"{"consumerIdList":["a","b"]}"#).unwrap();
    assert_eq!(list.consumer_id_list, ["a", "b"]);
    let topics = TopicList {
        topic_list: vec!["t1".into()],
        broker_addr: None,
    };
    assert_eq!(to_json(&topics), br#"{"topicList":["t1"]}"#);
    let table: KvTable = from_json(br#"{table:{'brokerVersionDesc':'V5_3_3'}}"#).unwrap();
    assert_eq!(table.table["brokerVersionDesc"], "V5_3_3");
}

#[test]
fn fastjson_normalizer() {
    let cases: &[(&str, &str)] = &[
        (r#"{0:"a",1:'b'}"#, r#"{"0":"a","1":"b"}"#),
        (r#"{name:'it''s',}"#, ""),
        (r#"{name:'it\'s "q"',,}"#, r#"{"name":"it's \"q\""}"#),
        (r#"[1,,2,]"#, r#"[1,2]"#),
        (
            r#"{"offsetTable":{{"brokerName":"b","queueId":0,"topic":"t"}:{"minOffset":0}}}"#,
            r#"{"offsetTable":{"{\"brokerName\":\"b\",\"queueId\":0,\"topic\":\"t\"}":{"minOffset":0}}}"#,
        ),
        (" { a : -1.5e3 , b : null } ", r#"{"a":-1.5e3,"b":null}"#),
    ];
    for (input, expected) in cases {
        match fastjson::normalize(input) {
            Ok(output) => assert_eq!(&output, expected, "{input}"),
            Err(_) => assert!(expected.is_empty(), "{input}"),
        }
    }
    assert!(fastjson::normalize("{a:bareword}").is_err());
    assert!(fastjson::normalize(&"[".repeat(200)).is_err());
    assert!(fastjson::normalize("{\"a\":1} x").is_err());
}
