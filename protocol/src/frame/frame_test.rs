use bytes::{BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use super::*;
use crate::command::{ExtFields, LanguageCode, RemotingCommand, SerializeType};
use crate::error::Error;

fn hex(text: &str) -> Vec<u8> {
    let digits: String = text.chars().filter(|c| c.is_ascii_hexdigit()).collect();
    (0..digits.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).unwrap())
        .collect()
}

/// GET_ROUTEINFO_BY_TOPIC from the reference's worked example (§1.2).
fn route_request(serialize_type: SerializeType) -> RemotingCommand {
    let mut ext_fields = ExtFields::new();
    ext_fields.insert("topic".into(), "T".into());
    RemotingCommand {
        code: 105,
        language: LanguageCode::Java,
        version: 479,
        opaque: 7,
        flag: 0,
        remark: None,
        ext_fields,
        body: Bytes::new(),
        serialize_type,
    }
}

#[test]
fn worked_example_binary_byte_for_byte() {
    let mut expected =
        hex("00000025 01000021 0069 00 01DF 00000007 00000000 00000000 0000000C 0005");
    expected.extend_from_slice(b"topic");
    expected.extend_from_slice(&hex("00000001"));
    expected.extend_from_slice(b"T");
    let command = route_request(SerializeType::RocketMq);
    let encoded = encode_to_bytes(&command).unwrap();
    assert_eq!(&encoded[..], &expected[..]);
    assert_eq!(encoded.len(), 4 + 37);

    let mut buffer = BytesMut::from(&expected[..]);
    let decoded = decode(&mut buffer).unwrap().unwrap();
    assert!(buffer.is_empty());
    assert_eq!(decoded, command);
}

#[test]
fn worked_example_json_byte_for_byte() {
    let json = br#"{"code":105,"extFields":{"topic":"T"},"flag":0,"language":"JAVA","opaque":7,"serializeTypeCurrentRPC":"JSON","version":479}"#;
    let mut expected = hex("0000007F 0000007B");
    expected.extend_from_slice(json);
    let command = route_request(SerializeType::Json);
    let encoded = encode_to_bytes(&command).unwrap();
    assert_eq!(&encoded[..], &expected[..]);

    let mut buffer = BytesMut::from(&expected[..]);
    assert_eq!(decode(&mut buffer).unwrap().unwrap(), command);
}

fn sample_command(serialize_type: SerializeType) -> RemotingCommand {
    let mut command = route_request(serialize_type)
        .with_remark("über \"quoted\"\n")
        .with_ext_field("queueId", "3")
        .with_ext_field("empty-key-value", "v")
        .with_body(&b"hello body"[..]);
    command.flag = 3;
    command.opaque = -5;
    command.language = LanguageCode::NodeJs;
    command
}

#[test]
fn round_trips_both_encodings_with_body_and_remark() {
    for serialize_type in [SerializeType::Json, SerializeType::RocketMq] {
        let command = sample_command(serialize_type);
        let mut buffer = BytesMut::new();
        encode(&command, &mut buffer).unwrap();
        // Two frames back to back, the second one arriving byte by byte.
        let single = buffer.clone();
        let mut stream = BytesMut::new();
        stream.extend_from_slice(&single);
        assert_eq!(decode(&mut stream).unwrap().unwrap(), command);
        for (index, byte) in single.iter().enumerate() {
            stream.put_u8(*byte);
            let result = decode(&mut stream).unwrap();
            if index + 1 < single.len() {
                assert!(result.is_none());
            } else {
                assert_eq!(result.unwrap(), command);
            }
        }
    }
}

#[test]
fn json_reader_accepts_cpp_numbers_and_missing_ext_fields() {
    // What the C++ client sends: numbers in extFields, the type byte left at zero.
    let header = br#"{"code":310,"language":"CPP","version":333,"opaque":1,"flag":0,"remark":null,"extFields":{"a":"pg","d":4,"e":-1,"k":false,"f":1.0,"Signature":"","unknown":{"x":1}},"futureKey":[1,2]}"#;
    let command = json_header::decode(header).unwrap();
    assert_eq!(command.code, 310);
    assert_eq!(command.language, LanguageCode::Cpp);
    assert_eq!(command.remark, None);
    assert_eq!(command.ext_fields["d"], "4");
    assert_eq!(command.ext_fields["e"], "-1");
    assert_eq!(command.ext_fields["k"], "false");
    assert_eq!(command.ext_fields["f"], "1.0");
    assert_eq!(command.ext_fields["Signature"], "");
    assert_eq!(command.ext_fields["unknown"], r#"{"x":1}"#);

    let bare =
        json_header::decode(br#"{"opaque":"9","code":106,"flag":0,"version":317,"language":"GO"}"#)
            .unwrap();
    assert!(bare.ext_fields.is_empty());
    assert_eq!(bare.opaque, 9);
    assert_eq!(bare.language, LanguageCode::Go);

    let ordinal_language =
        json_header::decode(br#"{"code":1,"language":12,"extFields":null}"#).unwrap();
    assert_eq!(ordinal_language.language, LanguageCode::Rust);
    let unknown = json_header::decode(br#"{"code":1,"language":"KOTLIN"}"#).unwrap();
    assert_eq!(unknown.language, LanguageCode::Unknown(u8::MAX));
}

#[test]
fn json_writer_quotes_every_ext_value_and_omits_empty_parts() {
    let command = RemotingCommand::response(0, 3, None).with_ext_field("queueOffset", "12");
    let header = json_header::encode(&command);
    assert_eq!(
        std::str::from_utf8(&header).unwrap(),
        r#"{"code":0,"extFields":{"queueOffset":"12"},"flag":1,"language":"JAVA","opaque":3,"serializeTypeCurrentRPC":"JSON","version":479}"#
    );
    let empty = json_header::encode(&RemotingCommand::response(0, 3, None));
    assert!(!std::str::from_utf8(&empty).unwrap().contains("extFields"));
}

#[test]
fn binary_zero_length_strings_decode_as_absent_and_last_duplicate_wins() {
    let mut header = Vec::new();
    header.extend_from_slice(&hex("000A 01 0141 00000001 00000000 00000000"));
    let mut table = Vec::new();
    for (key, value) in [
        ("k", "first"),
        ("k", "second"),
        ("gone", "x"),
        ("gone", ""),
        ("", "orphan"),
    ] {
        table.put_i16(key.len() as i16);
        table.put_slice(key.as_bytes());
        table.put_i32(value.len() as i32);
        table.put_slice(value.as_bytes());
    }
    header.put_i32(table.len() as i32);
    header.extend_from_slice(&table);
    let command = binary_header::decode(&header).unwrap();
    assert_eq!(command.remark, None);
    assert_eq!(command.ext_fields.len(), 1);
    assert_eq!(command.ext_fields["k"], "second");
}

#[test]
fn binary_rejects_lengths_beyond_the_header() {
    let mut header = hex("000A 01 0141 00000001 00000000 7FFFFFFF");
    assert!(matches!(
        binary_header::decode(&header),
        Err(Error::BinaryHeaderLength {
            field: "remark",
            ..
        })
    ));
    header = hex("000A 01 0141 00000001 00000000 FFFFFFFF");
    assert!(matches!(
        binary_header::decode(&header),
        Err(Error::BinaryHeaderLength { .. })
    ));
    header = hex("000A 01 0141 00000001 00000000 00000000 00000007 0005 6B6B6B6B6B");
    assert!(matches!(
        binary_header::decode(&header),
        Err(Error::BinaryHeaderTruncated { .. })
    ));
}

#[test]
fn binary_refuses_codes_beyond_i16() {
    let mut command = route_request(SerializeType::RocketMq);
    command.code = 200050;
    assert!(matches!(
        encode_to_bytes(&command),
        Err(Error::FieldOverflow { field: "code", .. })
    ));
    command.serialize_type = SerializeType::Json;
    let encoded = encode_to_bytes(&command).unwrap();
    let mut buffer = BytesMut::from(&encoded[..]);
    assert_eq!(decode(&mut buffer).unwrap().unwrap().code, 200050);
}

#[test]
fn frame_limit_counts_the_length_prefix() {
    // Exactly at the limit: accepted (waits for the bytes).
    let mut at_limit = BytesMut::new();
    at_limit.put_u32((MAX_FRAME_LENGTH - 4) as u32);
    assert!(decode(&mut at_limit).unwrap().is_none());
    // One byte over: refused before the bytes arrive.
    let mut over = BytesMut::new();
    over.put_u32((MAX_FRAME_LENGTH - 3) as u32);
    assert!(matches!(
        decode(&mut over),
        Err(Error::FrameTooLarge { .. })
    ));

    let mut negative = BytesMut::from(&hex("FFFFFFFF")[..]);
    assert!(matches!(
        decode(&mut negative),
        Err(Error::FrameTooShort { .. })
    ));

    let big = route_request(SerializeType::Json).with_body(vec![0u8; MAX_FRAME_LENGTH]);
    assert!(matches!(
        encode_to_bytes(&big),
        Err(Error::FrameTooLarge { .. })
    ));
}

#[test]
fn frame_errors_are_typed() {
    let mut bad_type = BytesMut::from(&hex("00000006 02000002 7B7D")[..]);
    assert!(matches!(
        decode(&mut bad_type),
        Err(Error::UnknownSerializeType(2))
    ));
    let mut bad_header_length = BytesMut::from(&hex("00000006 00000009 7B7D")[..]);
    assert!(matches!(
        decode(&mut bad_header_length),
        Err(Error::HeaderLengthOutOfRange { .. })
    ));
    let mut bad_json = BytesMut::from(&hex("00000006 00000002 7B7B")[..]);
    assert!(matches!(decode(&mut bad_json), Err(Error::JsonHeader(_))));
}

#[test]
fn codec_writes_responses_as_json() {
    let mut response = RemotingCommand::response(0, 1, None).with_ext_field("offset", "5");
    response.serialize_type = SerializeType::RocketMq;
    let mut buffer = BytesMut::new();
    RemotingCodec.encode(&response, &mut buffer).unwrap();
    assert_eq!(buffer[4], 0, "type byte must be JSON");
    let decoded = RemotingCodec.decode(&mut buffer).unwrap().unwrap();
    assert_eq!(decoded.ext_fields["offset"], "5");
    assert_eq!(decoded.serialize_type, SerializeType::Json);

    // Requests keep their chosen encoding.
    let request = route_request(SerializeType::RocketMq);
    RemotingCodec.encode(request.clone(), &mut buffer).unwrap();
    assert_eq!(buffer[4], 1);
    assert_eq!(RemotingCodec.decode(&mut buffer).unwrap().unwrap(), request);
}

#[test]
fn a_head_with_trailing_parts_frames_them_as_one_body() {
    let mut command = sample_command(SerializeType::Json);
    command.mark_response();
    let parts: [&[u8]; 2] = [b"first record", b"second"];
    let mut wire = BytesMut::new();
    RemotingCodec::encode_head(&command, parts.iter().map(|p| p.len()).sum(), &mut wire).unwrap();
    wire.put_slice(&command.body);
    for part in parts {
        wire.put_slice(part);
    }
    let decoded = RemotingCodec.decode(&mut wire).unwrap().unwrap();
    assert!(wire.is_empty(), "the length word covers every part");
    let mut body = command.body.to_vec();
    body.extend_from_slice(b"first recordsecond");
    assert_eq!(decoded.body, body);
    assert_eq!(decoded.opaque, command.opaque);
}
