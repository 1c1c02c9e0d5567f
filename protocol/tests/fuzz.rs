//! Fuzz-style properties over everything that reads untrusted bytes: the frame decoder, both
//! header decoders, custom-header parsing, the lenient body reader and the message decoders
//! (stored records in PULL bodies, client batch bodies). About 1.3 million
//! random and mutated inputs in total; each must be rejected or decoded without panicking, and
//! nothing decoded may be larger than the bytes it came from (so a peer cannot make us
//! allocate more than it sent, and never more than one frame).

use bytes::BytesMut;
use proptest::prelude::*;
use proptest::test_runner::Config;

use protocol::body::{self, HeartbeatData, TopicRouteData};
use protocol::frame::{self, binary_header, json_header};
use protocol::header::*;
use protocol::{
    CustomHeader, ExtFields, LanguageCode, RemotingCommand, SerializeType, MAX_FRAME_LENGTH,
};

fn config(cases: u32) -> Config {
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

/// Bytes a decoded command holds that came from the input.
fn decoded_size(command: &RemotingCommand) -> usize {
    command.remark.as_ref().map_or(0, String::len)
        + command
            .ext_fields
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>()
        + command.body.len()
}

fn seed_commands() -> Vec<RemotingCommand> {
    let send = SendMessageRequestHeaderV2 {
        producer_group: "pg".into(),
        topic: "TopicTest".into(),
        default_topic: "TBW102".into(),
        default_topic_queue_nums: 4,
        queue_id: 3,
        sys_flag: 0,
        born_timestamp: 1_700_000_000_000,
        flag: 0,
        properties: Some("UNIQ_KEY\u{1}0A0B\u{2}WAIT\u{1}true\u{2}".into()),
        ..Default::default()
    };
    let pull = PullMessageResponseHeader {
        suggest_which_broker_id: 0,
        next_begin_offset: 10,
        min_offset: 0,
        max_offset: 10,
        ..Default::default()
    };
    vec![
        RemotingCommand::request(310, &send).with_body(&b"hello"[..]),
        RemotingCommand::request(
            105,
            &GetRouteInfoRequestHeader {
                topic: "T".into(),
                accept_standard_json_only: Some(true),
            },
        ),
        RemotingCommand::response(0, 9, Some("remark".into())).with_header(&pull),
        RemotingCommand::request(34, &()).with_body(&b"{\"clientID\":\"x\"}"[..]),
    ]
}

fn seed_frames() -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    for command in seed_commands() {
        for serialize_type in [SerializeType::Json, SerializeType::RocketMq] {
            let command = command.clone().with_serialize_type(serialize_type);
            frames.push(frame::encode_to_bytes(&command).unwrap().to_vec());
        }
    }
    frames
}

fn seed_json_headers() -> Vec<Vec<u8>> {
    let mut headers: Vec<Vec<u8>> = seed_commands().iter().map(json_header::encode).collect();
    headers.push(br#"{"code":11,"language":"CPP","version":333,"opaque":5,"flag":0,"extFields":{"queueId":1,"maxMsgNums":32,"sysFlag":2,"k":false,"Signature":""}}"#.to_vec());
    headers.push(
        br#"{"opaque":1,"code":106,"flag":0,"language":"GO","version":317,"remark":"\u00fc\n"}"#
            .to_vec(),
    );
    headers
}

fn seed_binary_headers() -> Vec<Vec<u8>> {
    seed_commands()
        .iter()
        .map(|command| binary_header::encode(command).unwrap())
        .collect()
}

fn seed_bodies() -> Vec<Vec<u8>> {
    vec![
        br#"{"clientID":"10.0.0.5@1","producerDataSet":[{"groupName":"pg"}],"consumerDataSet":[{"groupName":"cg","consumeType":1,"messageModel":"CLUSTERING","consumeFromWhere":4,"subscriptionDataSet":[{"topic":"T","subString":"a || b","tagsSet":["a","b"],"codeSet":[97,98],"subVersion":"17"}]}]}"#.to_vec(),
        br#"{"brokerDatas":[{"brokerAddrs":{0:"127.0.0.1:10911",1:'127.0.0.1:10921'},"brokerName":"b","cluster":"c"}],"filterServerTable":{},"queueDatas":[{"brokerName":"b","perm":6,"readQueueNums":4,"topicSysFlag":0,"writeQueueNums":4}],}"#.to_vec(),
        br#"{"offsetTable":{{"brokerName":"b","queueId":0,"topic":"t"}:{"minOffset":0,"maxOffset":3}},"topicPutTps":0.5}"#.to_vec(),
    ]
}

/// One edit of a seed: flip, insert, delete, truncate, or overwrite four bytes with a length
/// value chosen to hit the boundaries the decoders check.
#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Insert(usize, u8),
    Delete(usize),
    Truncate(usize),
    Word(usize, i32),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let interesting = prop_oneof![
        Just(0i32),
        Just(-1),
        Just(1),
        Just(4),
        Just(21),
        Just(i32::MAX),
        Just(i32::MIN),
        Just((MAX_FRAME_LENGTH - 4) as i32),
        Just((MAX_FRAME_LENGTH - 3) as i32),
        Just(0x0100_0021),
        Just(0x00FF_FFFF),
        0i32..512,
    ];
    prop_oneof![
        (any::<usize>(), 1u8..=255).prop_map(|(at, bits)| Mutation::Flip(at, bits)),
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Insert(at, byte)),
        any::<usize>().prop_map(Mutation::Delete),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), interesting).prop_map(|(at, word)| Mutation::Word(at, word)),
    ]
}

fn mutate(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for mutation in mutations {
        let len = bytes.len();
        match *mutation {
            Mutation::Flip(at, bits) if len > 0 => bytes[at % len] ^= bits,
            Mutation::Insert(at, byte) => bytes.insert(at % (len + 1), byte),
            Mutation::Delete(at) if len > 0 => {
                bytes.remove(at % len);
            }
            Mutation::Truncate(at) => bytes.truncate(at % (len + 1)),
            Mutation::Word(at, word) if len >= 4 => {
                let at = at % (len - 3);
                bytes[at..at + 4].copy_from_slice(&word.to_be_bytes());
            }
            _ => {}
        }
    }
    bytes
}

fn mutated(seeds: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    let count = seeds.len();
    (0..count, prop::collection::vec(mutation(), 1..6))
        .prop_map(move |(index, mutations)| mutate(seeds[index].clone(), &mutations))
}

/// Feeds `input` to the stream decoder, first whole and then split at `split`, checking the
/// bounds on everything it yields.
fn check_stream(input: &[u8], split: usize) {
    let mut whole = BytesMut::from(input);
    let mut yielded = 0usize;
    while let Ok(Some(command)) = frame::decode(&mut whole) {
        let size = decoded_size(&command);
        assert!(
            size <= input.len() + 32,
            "decoded {size} from {}",
            input.len()
        );
        assert!(size <= MAX_FRAME_LENGTH);
        yielded += 1;
        assert!(
            yielded <= input.len() / 8 + 1,
            "more frames than bytes allow"
        );
    }
    // Split delivery must decode the same first frame as whole delivery.
    let split = split % (input.len() + 1);
    let mut partial = BytesMut::from(&input[..split]);
    let first_whole = frame::decode(&mut BytesMut::from(input));
    let mut first_split = frame::decode(&mut partial);
    if matches!(first_split, Ok(None)) {
        partial.extend_from_slice(&input[split..]);
        first_split = frame::decode(&mut partial);
    }
    match (first_whole, first_split) {
        (Ok(a), Ok(b)) => assert_eq!(a, b),
        (Err(_), Err(_)) => {}
        (a, b) => panic!("whole {a:?} vs split {b:?}"),
    }
}

proptest! {
    #![proptest_config(config(200_000))]
    #[test]
    fn frame_decoder_random_bytes(input in prop::collection::vec(any::<u8>(), 0..96), split in any::<usize>()) {
        check_stream(&input, split);
    }
}

proptest! {
    #![proptest_config(config(250_000))]
    #[test]
    fn frame_decoder_mutated_frames(input in mutated(seed_frames()), split in any::<usize>()) {
        check_stream(&input, split);
    }
}

proptest! {
    #![proptest_config(config(200_000))]
    #[test]
    fn json_header_mutated(input in mutated(seed_json_headers())) {
        if let Ok(command) = json_header::decode(&input) {
            // Strings only shrink when unescaped and numbers keep their source text; the one
            // exception is a numeric remark, rendered in at most ~24 characters.
            prop_assert!(decoded_size(&command) <= input.len() + 32);
            // What we decode we can write back and read again identically...
            // ...except an unknown language, which is written as OTHER on purpose.
            let again = json_header::decode(&json_header::encode(&command)).unwrap();
            let mut expected = command;
            if matches!(expected.language, LanguageCode::Unknown(_)) {
                expected.language = LanguageCode::Other;
            }
            prop_assert_eq!(again, expected);
        }
    }
}

proptest! {
    #![proptest_config(config(200_000))]
    #[test]
    fn binary_header_mutated(input in mutated(seed_binary_headers())) {
        if let Ok(command) = binary_header::decode(&input) {
            prop_assert!(decoded_size(&command) <= input.len());
            let again = binary_header::decode(&binary_header::encode(&command).unwrap()).unwrap();
            prop_assert_eq!(again, command);
        }
    }
}

fn header_value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|v| v.to_string()),
        any::<i32>().prop_map(|v| format!(" {v} ")),
        Just("true".to_string()),
        Just("FALSE".to_string()),
        Just("upper".to_string()),
        Just(String::new()),
        Just("9223372036854775808".to_string()),
        Just("1e400".to_string()),
        Just("NaN".to_string()),
        ".{0,12}",
    ]
}

fn ext_fields() -> impl Strategy<Value = ExtFields> {
    let names: Vec<&'static str> = [
        SendMessageRequestHeader::FIELD_NAMES,
        SendMessageRequestHeaderV2::FIELD_NAMES,
        PullMessageRequestHeader::FIELD_NAMES,
        SearchOffsetRequestHeader::FIELD_NAMES,
        RegisterBrokerRequestHeader::FIELD_NAMES,
    ]
    .concat();
    let name = prop::sample::select(names);
    prop::collection::btree_map(
        name.prop_map(Into::into),
        header_value().prop_map(Into::into),
        0..24,
    )
}

fn round_trips<H: CustomHeader + PartialEq + std::fmt::Debug>(
    fields: &ExtFields,
) -> Result<(), TestCaseError> {
    if let Ok(header) = H::from_ext_fields(fields) {
        let again = H::from_ext_fields(&header.to_ext_field_map()).unwrap();
        prop_assert_eq!(again, header);
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(150_000))]
    #[test]
    fn custom_header_parsing(fields in ext_fields()) {
        round_trips::<SendMessageRequestHeader>(&fields)?;
        round_trips::<SendMessageRequestHeaderV2>(&fields)?;
        round_trips::<PullMessageRequestHeader>(&fields)?;
        round_trips::<SearchOffsetRequestHeader>(&fields)?;
        round_trips::<RegisterBrokerRequestHeader>(&fields)?;
        let _ = SendMessageRequestHeader::parse(310, &fields);
    }
}

proptest! {
    #![proptest_config(config(120_000))]
    #[test]
    fn lenient_bodies_mutated(input in mutated(seed_bodies())) {
        let _ = body::from_json::<HeartbeatData>(&input);
        let _ = body::from_json::<TopicRouteData>(&input);
        if let Ok(text) = std::str::from_utf8(&input) {
            if let Ok(normalized) = body::fastjson::normalize(text) {
                // Quoting bare keys and escaping object keys grows text by a bounded factor.
                prop_assert!(normalized.len() <= 4 * text.len() + 2);
                prop_assert!(serde_json::from_str::<serde_json::Value>(&normalized).is_ok());
            }
        }
    }
}

/// Stored records as a PULL body carries them, and a client batch body.
fn seed_message_bodies() -> Vec<Vec<u8>> {
    let fields = message::RecordFields {
        queue_id: 2,
        flag: 0,
        sys_flag: 0,
        born_timestamp: 1_700_000_000_000,
        born_host: ([10, 0, 0, 5], 40000).into(),
        store_host: ([127, 0, 0, 1], 10911).into(),
        reconsume_times: 0,
        prepared_transaction_offset: 0,
    };
    let v6 = message::RecordFields {
        store_host: "[::1]:10911".parse().unwrap(),
        ..fields
    };
    let mut pulled = Vec::new();
    for (index, fields) in [fields, v6].into_iter().enumerate() {
        let properties = format!("TAGS\u{1}TagA\u{2}UNIQ_KEY\u{1}ID{index}\u{2}");
        let record = message::RecordEncoder::new("TopicTest", b"body bytes", &properties, fields)
            .unwrap()
            .encode(index as i64, 4096 * index as i64, 1_700_000_000_001);
        pulled.extend_from_slice(&record);
    }
    let mut batch_messages = Vec::new();
    for index in 0..3 {
        let mut message = message::Message::new("TopicTest", format!("batch {index}"));
        message.set_tags("TagB");
        batch_messages.push(message);
    }
    vec![pulled, message::encode_batch(&batch_messages).unwrap()]
}

proptest! {
    #![proptest_config(config(200_000))]
    #[test]
    fn message_decoders_mutated(input in mutated(seed_message_bodies())) {
        // PULL bodies: every record that decodes lies inside the input.
        if let Ok(messages) = body::decode_pulled_messages(&input) {
            let total: usize = messages.iter().map(|m| m.total_size()).sum();
            prop_assert!(total <= input.len());
            for message in &messages {
                let _ = message.properties();
                let _ = message.topic();
                let _ = message.check_body_crc();
            }
        }
        // Batch bodies: decoded bodies share the input, so they cannot exceed it.
        let bytes = bytes::Bytes::from(input.clone());
        if let Ok(messages) = message::decode_batch(&bytes, "TopicTest", 0) {
            let total: usize = messages.iter().map(|m| m.body.len()).sum();
            prop_assert!(total <= input.len());
        }
    }
}
