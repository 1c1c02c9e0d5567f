use super::*;

#[test]
fn a_spool_entry_comes_back_as_it_went_in() {
    let entry = Entry {
        record: Record {
            key: Some(b"k".to_vec()),
            value: None,
            headers: vec![("h".into(), Some(vec![0xff, 0])), ("empty".into(), None)],
            partition: Some(2),
            timestamp: Some(1_700_000_000_000),
        },
        placed: Some(Placed {
            partition: 2,
            offset: 41,
            timestamp: Some(1_700_000_000_001),
        }),
    };
    let back = decode(&encode(&entry).unwrap()).unwrap();
    assert_eq!(back.record, entry.record);
    assert_eq!(back.placed, entry.placed);
}

#[test]
fn a_record_rocketry_could_never_take_is_refused_before_kafka_sees_it() {
    let too_large = Record {
        value: Some(vec![b'x'; MAX_MESSAGE_BYTES + 1]),
        ..Record::default()
    };
    let refused = check_mappable(&too_large, "orders");
    assert!(matches!(refused, Err(Error::Mapping { .. })), "{refused:?}");
    let bad_header = Record {
        value: Some(b"v".to_vec()),
        headers: vec![("a\u{1}b".into(), None)],
        ..Record::default()
    };
    let refused = check_mappable(&bad_header, "orders");
    assert!(matches!(refused, Err(Error::Mapping { .. })), "{refused:?}");
    let fine = Record {
        value: Some(b"v".to_vec()),
        ..Record::default()
    };
    check_mappable(&fine, "orders").unwrap();
}

#[test]
fn only_passing_kafka_failures_are_spooled() {
    let timed_out = Error::Kafka(KafkaError::MessageProduction(
        RDKafkaErrorCode::MessageTimedOut,
    ));
    assert!(unreachable_kafka(&timed_out));
    let too_large = Error::Kafka(KafkaError::MessageProduction(
        RDKafkaErrorCode::MessageSizeTooLarge,
    ));
    assert!(!unreachable_kafka(&too_large));
    assert!(!unreachable_kafka(&Error::Topology("x".into())));
}
