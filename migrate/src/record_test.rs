use super::*;

fn record<'a>(headers: &'a [(&'a str, Option<&'a [u8]>)]) -> SourceRecord<'a> {
    SourceRecord {
        topic: "orders",
        partition: 2,
        offset: 41,
        timestamp: Some(1_700_000_000_123),
        key: Some(b"order-7"),
        value: Some(b"{\"total\":3}"),
        headers,
    }
}

#[test]
fn a_record_keeps_its_key_headers_and_source() {
    let headers = [("traceparent", Some(&b"00-ab-cd-01"[..])), ("empty", None)];
    let message = to_message(&record(&headers), "orders-rq").unwrap();
    assert_eq!(message.topic, "orders-rq");
    assert_eq!(&message.body[..], b"{\"total\":3}");
    assert_eq!(message.keys().collect::<Vec<_>>(), ["order-7"]);
    let p = &message.properties;
    assert_eq!(p.get("traceparent"), Some("00-ab-cd-01"));
    assert_eq!(p.get("empty"), Some(""));
    assert_eq!(p.get(SOURCE_TOPIC), Some("orders"));
    assert_eq!(p.get(SOURCE_TIMESTAMP), Some("1700000000123"));
    assert_eq!(p.get(TOMBSTONE), None);
    assert_eq!(p.get(BASE64), None);
    assert_eq!(original_bytes(&p.encode(), property::KEYS), b"order-7");
    assert_eq!(
        source_position(&p.encode()),
        Some(SourcePosition {
            partition: 2,
            offset: 41
        })
    );
}

#[test]
fn bytes_that_are_not_text_are_base64_and_named() {
    let headers = [
        ("bin", Some(&[0xff, 0x00, 0x01][..])),
        ("sep", Some(&b"a\x02b"[..])),
    ];
    let mut source = record(&headers);
    source.key = Some(&[0x80, 0x81]);
    let message = to_message(&source, "t").unwrap();
    let p = &message.properties;
    assert_eq!(p.get(property::KEYS), Some("gIE="));
    assert_eq!(p.get("bin"), Some("/wAB"));
    assert_eq!(p.get("sep"), Some("YQJi"));
    assert_eq!(p.get(BASE64), Some("KEYS,bin,sep"));
    let text = p.encode();
    assert_eq!(original_bytes(&text, property::KEYS), [0x80, 0x81]);
    assert_eq!(original_bytes(&text, "sep"), b"a\x02b");
    assert_eq!(original_bytes(&text, "traceparent"), b"");
}

#[test]
fn reserved_and_repeated_header_names_are_kept_apart() {
    let headers = [
        ("TAGS", Some(&b"x"[..])),
        (SOURCE_OFFSET, Some(&b"forged"[..])),
        ("h", Some(&b"1"[..])),
        ("h", Some(&b"2"[..])),
    ];
    let message = to_message(&record(&headers), "t").unwrap();
    let p = &message.properties;
    assert_eq!(
        p.get("TAGS"),
        None,
        "a header must not become the message's tag"
    );
    assert_eq!(p.get("KAFKA_HEADER_TAGS"), Some("x"));
    assert_eq!(p.get("KAFKA_HEADER_KAFKA_OFFSET"), Some("forged"));
    assert_eq!(p.get(SOURCE_OFFSET), Some("41"));
    assert_eq!((p.get("h"), p.get("h#3")), (Some("1"), Some("2")));
}

#[test]
fn a_tombstone_is_an_empty_body_marked_as_such() {
    let mut source = record(&[]);
    source.value = None;
    source.timestamp = None;
    let message = to_message(&source, "t").unwrap();
    assert!(message.body.is_empty());
    assert_eq!(message.properties.get(TOMBSTONE), Some("true"));
    assert_eq!(message.properties.get(SOURCE_TIMESTAMP), None);
}

#[test]
fn a_header_name_no_property_can_carry_is_refused_by_position() {
    let headers = [("a\u{1}b", Some(&b"v"[..]))];
    let error = to_message(&record(&headers), "t").unwrap_err().to_string();
    assert!(
        error.contains("partition 2") && error.contains("offset 41"),
        "{error}"
    );
}
