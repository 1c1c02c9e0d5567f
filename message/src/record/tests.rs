use std::net::SocketAddr;

use proptest::prelude::*;

use super::*;
use crate::property::Properties;
use crate::sysflag;

fn fields(born: &str, store: &str) -> RecordFields {
    RecordFields {
        queue_id: 3,
        flag: 7,
        sys_flag: sysflag::COMPRESSED,
        born_timestamp: 1_700_000_000_000,
        born_host: born.parse().unwrap(),
        store_host: store.parse().unwrap(),
        reconsume_times: 2,
        prepared_transaction_offset: 99,
    }
}

#[test]
fn v1_round_trip_with_java_offsets() {
    let properties: Properties = [("TAGS", "a"), ("UNIQ_KEY", "X")].into_iter().collect();
    let text = properties.encode();
    let encoder = RecordEncoder::new(
        "TopicTest",
        b"hello",
        &text,
        fields("10.0.0.1:5000", "10.0.0.2:10911"),
    )
    .unwrap();
    let bytes = encoder.encode(5, 4096, 1_700_000_000_123);
    assert_eq!(bytes.len(), encoder.encoded_len());
    // IPv4 layout: STORETIMESTAMP at 56, RECONSUMETIMES at 72, BODY at 84.
    assert_eq!(&bytes[56..64], &1_700_000_000_123i64.to_be_bytes());
    assert_eq!(&bytes[84..88], &5i32.to_be_bytes());
    assert_eq!(&bytes[88..93], b"hello");
    assert_eq!(bytes[93], 9);

    let stored = StoredMessage::parse(&bytes).unwrap();
    assert_eq!(stored.magic(), MAGIC_V1);
    assert_eq!(stored.total_size(), bytes.len());
    assert_eq!(stored.queue_id(), 3);
    assert_eq!(stored.flag(), 7);
    assert_eq!(stored.queue_offset(), 5);
    assert_eq!(stored.physical_offset(), 4096);
    assert_eq!(stored.sys_flag(), sysflag::COMPRESSED);
    assert_eq!(stored.born_timestamp(), 1_700_000_000_000);
    assert_eq!(
        stored.born_host(),
        "10.0.0.1:5000".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(
        stored.store_host(),
        "10.0.0.2:10911".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(stored.store_timestamp(), 1_700_000_000_123);
    assert_eq!(stored.reconsume_times(), 2);
    assert_eq!(stored.prepared_transaction_offset(), 99);
    assert_eq!(stored.body(), b"hello");
    assert_eq!(stored.topic().unwrap(), "TopicTest");
    assert_eq!(stored.properties().unwrap(), properties);
    assert_eq!(stored.body_crc(), body_crc(b"hello"));
    stored.check_body_crc().unwrap();
    assert_eq!(
        RecordHead::peek(&bytes).unwrap(),
        RecordHead::Message { size: bytes.len() }
    );
}

#[test]
fn ipv6_hosts_set_sysflag_and_move_fields() {
    let encoder =
        RecordEncoder::new("T", b"b", "", fields("[::1]:1", "[2001:db8::2]:10911")).unwrap();
    let mut bytes = encoder.encode(1, 2, 3);
    let stored = StoredMessage::parse(&bytes).unwrap();
    assert_eq!(
        stored.sys_flag(),
        sysflag::COMPRESSED | sysflag::BORNHOST_V6 | sysflag::STOREHOSTADDRESS_V6
    );
    assert_eq!(
        stored.store_host(),
        "[2001:db8::2]:10911".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(stored.store_timestamp(), 3);

    let mut view = StoredRecordMut::new(&mut bytes).unwrap();
    view.set_queue_offset(10);
    view.set_physical_offset(20);
    view.set_store_timestamp(30);
    let stored = StoredMessage::parse(&bytes).unwrap();
    assert_eq!(
        (
            stored.queue_offset(),
            stored.physical_offset(),
            stored.store_timestamp()
        ),
        (10, 20, 30)
    );
}

#[test]
fn long_topic_uses_v2() {
    let topic = "%RETRY%".to_owned() + &"g".repeat(200);
    let encoder = RecordEncoder::new(&topic, b"", "", fields("1.1.1.1:1", "2.2.2.2:2")).unwrap();
    let bytes = encoder.encode(0, 0, 0);
    let stored = StoredMessage::parse(&bytes).unwrap();
    assert_eq!(stored.magic(), MAGIC_V2);
    assert_eq!(stored.topic().unwrap(), topic);
    let short = RecordEncoder::new(&topic[..127], b"", "", fields("1.1.1.1:1", "2.2.2.2:2"))
        .unwrap()
        .encode(0, 0, 0);
    assert_eq!(StoredMessage::parse(&short).unwrap().magic(), MAGIC_V1);
}

#[test]
fn rejects_oversized_properties() {
    let text = "a".repeat(MAX_PROPERTIES_LEN + 1);
    let result = RecordEncoder::new("T", b"", &text, fields("1.1.1.1:1", "2.2.2.2:2"));
    assert!(matches!(
        result,
        Err(crate::Error::TooLong {
            what: "properties",
            ..
        })
    ));
}

#[test]
fn detects_corruption() {
    let encoder = RecordEncoder::new("T", b"body", "", fields("1.1.1.1:1", "2.2.2.2:2")).unwrap();
    let mut bytes = encoder.encode(0, 0, 0);
    let body_at = bytes.len() - 2 - 1 - 1 - 4;
    bytes[body_at] ^= 0xFF;
    let stored = StoredMessage::parse(&bytes).unwrap();
    assert!(stored.check_body_crc().is_err());
    assert!(StoredMessage::parse(&bytes[..bytes.len() - 1]).is_err());
    bytes[0] = 0x7F;
    assert!(StoredMessage::parse(&bytes).is_err());
}

#[test]
fn a_record_written_but_for_its_head_reads_as_the_end_of_the_log() {
    let encoder = RecordEncoder::new(
        "C",
        b"a whole body",
        "",
        fields("10.0.0.1:5000", "10.0.0.2:10911"),
    )
    .unwrap();
    let mut buf = vec![0u8; encoder.encoded_len()];
    // What a process killed just before its last two stores leaves.
    encoder.encode_after_head(&mut buf[8..], 4, 0, 1);
    assert_eq!(RecordHead::peek(&buf).unwrap(), RecordHead::End);
    encoder.encode_into(&mut buf, 4, 0, 1).unwrap();
    assert_eq!(buf, encoder.encode(4, 0, 1));
    assert_eq!(StoredMessage::parse(&buf).unwrap().topic().unwrap(), "C");
}

#[test]
fn blank_marker_and_zeros_peek() {
    let marker = blank_marker(1000);
    assert_eq!(
        RecordHead::peek(&marker).unwrap(),
        RecordHead::Blank { size: 1000 }
    );
    assert_eq!(
        i32::from_be_bytes(marker[4..8].try_into().unwrap()),
        -875286124
    );
    assert_eq!(RecordHead::peek(&[0u8; 16]).unwrap(), RecordHead::End);
    assert_eq!(RecordHead::peek(&[0u8; 3]).unwrap(), RecordHead::End);
    assert!(RecordHead::peek(&[1, 2, 3, 4, 5, 6, 7, 8]).is_err());
}

proptest! {
    #[test]
    fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(stored) = StoredMessage::parse(&bytes) {
            let _ = (stored.topic(), stored.properties(), stored.body(), stored.store_host());
            let _ = (stored.reconsume_times(), stored.prepared_transaction_offset());
        }
        let _ = RecordHead::peek(&bytes);
    }

    #[test]
    fn parse_never_panics_on_mutated_records(
        body in proptest::collection::vec(any::<u8>(), 0..64),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        cut in any::<usize>(),
    ) {
        let encoder = RecordEncoder::new("T", &body, "K\u{1}V\u{2}", fields("1.1.1.1:1", "[::2]:2")).unwrap();
        let mut bytes = encoder.encode(1, 2, 3);
        for (at, value) in flips {
            let len = bytes.len();
            bytes[at % len] = value;
        }
        bytes.truncate(cut % (bytes.len() + 1));
        if let Ok(stored) = StoredMessage::parse(&bytes) {
            let _ = (stored.topic(), stored.properties(), stored.body(), stored.born_host());
            let _ = stored.check_body_crc();
        }
    }

    #[test]
    fn encode_parse_round_trip(
        topic in "[a-zA-Z0-9_%-]{1,200}",
        body in proptest::collection::vec(any::<u8>(), 0..256),
        queue_offset in any::<i64>(),
        physical_offset in any::<i64>(),
    ) {
        let encoder = RecordEncoder::new(&topic, &body, "A\u{1}b\u{2}", fields("9.9.9.9:9", "8.8.8.8:8")).unwrap();
        let bytes = encoder.encode(queue_offset, physical_offset, 5);
        let stored = StoredMessage::parse(&bytes).unwrap();
        prop_assert_eq!(stored.topic().unwrap(), topic.as_str());
        prop_assert_eq!(stored.body(), body.as_slice());
        prop_assert_eq!(stored.queue_offset(), queue_offset);
        prop_assert_eq!(stored.physical_offset(), physical_offset);
        prop_assert!(stored.check_body_crc().is_ok());
    }
}
