use super::*;
use crate::command::RemotingCommand;

fn ext(pairs: &[(&str, &str)]) -> ExtFields {
    pairs
        .iter()
        .map(|(k, v)| ((*k).into(), (*v).into()))
        .collect()
}

fn sample_send() -> SendMessageRequestHeader {
    SendMessageRequestHeader {
        producer_group: "pg".into(),
        topic: "T".into(),
        default_topic: "TBW102".into(),
        default_topic_queue_nums: 4,
        queue_id: -1,
        sys_flag: 0,
        born_timestamp: 1_700_000_000_000,
        flag: 0,
        properties: Some("UNIQ_KEY\u{1}ABC\u{2}".into()),
        reconsume_times: None,
        unit_mode: Some(false),
        batch: None,
        max_reconsume_times: None,
        broker_name: Some("broker-a".into()),
    }
}

#[test]
fn send_header_round_trips_in_both_namings() {
    let v1 = sample_send();
    let fields = v1.to_ext_field_map();
    assert_eq!(fields["producerGroup"], "pg");
    assert_eq!(fields["queueId"], "-1");
    assert_eq!(fields["unitMode"], "false");
    assert!(!fields.contains_key("batch"));
    assert_eq!(
        SendMessageRequestHeader::from_ext_fields(&fields).unwrap(),
        v1
    );

    let v2: SendMessageRequestHeaderV2 = v1.clone().into();
    let short = v2.to_ext_field_map();
    assert_eq!(short["a"], "pg");
    assert_eq!(short["b"], "T");
    assert_eq!(short["g"], "1700000000000");
    assert_eq!(short["n"], "broker-a");
    assert_eq!(SendMessageRequestHeader::parse(310, &short).unwrap(), v1);
    assert_eq!(SendMessageRequestHeader::parse(320, &short).unwrap(), v1);
    assert_eq!(SendMessageRequestHeader::parse(10, &fields).unwrap(), v1);
    assert!(SendMessageRequestHeader::parse(10, &short).is_err());
}

#[test]
fn missing_required_field_is_named() {
    let mut short = SendMessageRequestHeaderV2::from(sample_send()).to_ext_field_map();
    short.remove("g");
    match SendMessageRequestHeaderV2::from_ext_fields(&short) {
        Err(Error::MissingField { field }) => assert_eq!(field, "g"),
        other => panic!("{other:?}"),
    }
    match GetRouteInfoRequestHeader::from_ext_fields(&ExtFields::new()) {
        Err(Error::MissingField { field }) => assert_eq!(field, "topic"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn numbers_are_parsed_leniently_and_garbage_is_named() {
    let header = PullMessageRequestHeader::from_ext_fields(&ext(&[
        ("consumerGroup", "cg"),
        ("topic", "T"),
        ("queueId", " 3 "),
        ("queueOffset", "10.0"),
        ("maxMsgNums", "32"),
        ("sysFlag", "6"),
        ("commitOffset", "0"),
        ("suspendTimeoutMillis", "15000"),
        ("subVersion", "1700000000000"),
        ("expressionType", "TAG"),
        ("maxMsgBytes", ""),
    ]))
    .unwrap();
    assert_eq!(header.queue_id, 3);
    assert_eq!(header.queue_offset, 10);
    assert_eq!(header.max_msg_bytes, None);
    assert!(pull_sys_flag::has_suspend(header.sys_flag));
    assert!(pull_sys_flag::has_subscription(header.sys_flag));
    assert!(!pull_sys_flag::has_commit_offset(header.sys_flag));

    match GetMaxOffsetRequestHeader::from_ext_fields(&ext(&[("topic", "T"), ("queueId", "x")])) {
        Err(Error::InvalidField { field, value }) => {
            assert_eq!(field, "queueId");
            assert_eq!(value, "x");
        }
        other => panic!("{other:?}"),
    }
    // i32 overflow is invalid, not wrapped.
    assert!(GetMaxOffsetRequestHeader::from_ext_fields(&ext(&[
        ("topic", "T"),
        ("queueId", "4294967296")
    ]))
    .is_err());
}

#[test]
fn boundary_type_is_case_insensitive() {
    let header = SearchOffsetRequestHeader::from_ext_fields(&ext(&[
        ("topic", "T"),
        ("queueId", "0"),
        ("timestamp", "5"),
        ("boundaryType", "upper"),
    ]))
    .unwrap();
    assert_eq!(header.boundary_type, Some(BoundaryType::Upper));
    assert_eq!(header.to_ext_field_map()["boundaryType"], "UPPER");
}

#[test]
fn response_headers_carry_the_extra_send_fields() {
    let response = SendMessageResponseHeader {
        msg_id: "0A00000100002A9F0000000000000000".into(),
        queue_id: 1,
        queue_offset: 7,
        transaction_id: Some("U".into()),
        msg_region: Some("DefaultRegion".into()),
        trace_on: Some("true".into()),
        ..Default::default()
    };
    let command = RemotingCommand::response(0, 1, None).with_header(&response);
    assert_eq!(command.ext_fields["MSG_REGION"], "DefaultRegion");
    assert_eq!(command.ext_fields["TRACE_ON"], "true");
    assert_eq!(
        command
            .decode_header::<SendMessageResponseHeader>()
            .unwrap(),
        response
    );
}

#[test]
fn java_field_names_are_kept() {
    let header = UnregisterClientRequestHeader {
        client_id: "c".into(),
        producer_group: None,
        consumer_group: Some("cg".into()),
    };
    assert_eq!(
        header.to_ext_field_map(),
        ext(&[("clientID", "c"), ("consumerGroup", "cg")])
    );
    assert_eq!(
        PullMessageRequestHeader::FIELD_NAMES
            .iter()
            .filter(|n| **n == "proxyFrowardClientId")
            .count(),
        1
    );
    let check = CheckTransactionStateRequestHeader::from_ext_fields(&ext(&[
        ("tranStateTableOffset", "1"),
        ("commitLogOffset", "2"),
    ]))
    .unwrap();
    assert_eq!(check.commit_log_offset, 2);
}

#[test]
fn pull_sys_flag_bits() {
    assert_eq!(pull_sys_flag::build(true, true, true, true), 0xF);
    assert_eq!(pull_sys_flag::clear_commit_offset(0x3), 0x2);
    assert!(pull_sys_flag::has_lite_pull(0x10));
    assert!(pull_sys_flag::has_class_filter(0x8));
}
