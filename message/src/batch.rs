//! The body of SEND_BATCH_MESSAGE (320): messages without topics, each as
//! TOTALSIZE i32, MAGICCODE i32 (0), BODYCRC i32 (0), FLAG i32, BODY (i32 length + bytes),
//! PROPERTIES (i16 length + text) (`MessageDecoder.encodeMessages`).

use bytes::{BufMut, Bytes};

use crate::error::{need, Error, Result};
use crate::property::Properties;
use crate::Message;

const FIXED_LEN: usize = 4 + 4 + 4 + 4 + 4 + 2;

/// Encodes messages as a batch body; their topics are not written (the header carries it).
pub fn encode_batch(messages: &[Message]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    for message in messages {
        let properties = message.properties.encode();
        if properties.len() > i16::MAX as usize {
            return Err(Error::TooLong {
                what: "properties",
                len: properties.len(),
                max: i16::MAX as usize,
            });
        }
        let total = FIXED_LEN + message.body.len() + properties.len();
        out.put_i32(total as i32);
        out.put_i32(0);
        out.put_i32(0);
        out.put_i32(message.flag);
        out.put_i32(message.body.len() as i32);
        out.put_slice(&message.body);
        out.put_i16(properties.len() as i16);
        out.put_slice(properties.as_bytes());
    }
    Ok(out)
}

/// Decodes a batch body into messages of `topic`. Bodies share `body`'s buffer, no copy;
/// each message's properties have room for `room` more ([`Properties::decode_with_room`]).
pub fn decode_batch(body: &Bytes, topic: &str, room: usize) -> Result<Vec<Message>> {
    let mut messages = Vec::new();
    let mut at = 0usize;
    while at < body.len() {
        let rest = &body[at..];
        need("batch entry", FIXED_LEN, rest.len())?;
        let total = i32::from_be_bytes(rest[..4].try_into().unwrap());
        if total < FIXED_LEN as i32 || total as usize > rest.len() {
            return Err(Error::LengthMismatch {
                what: "batch TOTALSIZE",
                declared: total as i64,
                actual: rest.len() as i64,
            });
        }
        let entry = &rest[..total as usize];
        let flag = i32::from_be_bytes(entry[12..16].try_into().unwrap());
        let body_len = i32::from_be_bytes(entry[16..20].try_into().unwrap());
        let body_end = usize::try_from(body_len)
            .ok()
            .and_then(|len| 20usize.checked_add(len))
            .filter(|end| end + 2 <= entry.len())
            .ok_or(Error::LengthMismatch {
                what: "batch body length",
                declared: body_len as i64,
                actual: entry.len() as i64 - FIXED_LEN as i64,
            })?;
        let properties_len =
            u16::from_be_bytes(entry[body_end..body_end + 2].try_into().unwrap()) as usize;
        if body_end + 2 + properties_len != entry.len() {
            return Err(Error::LengthMismatch {
                what: "batch TOTALSIZE",
                declared: total as i64,
                actual: (body_end + 2 + properties_len) as i64,
            });
        }
        let text =
            std::str::from_utf8(&entry[body_end + 2..]).map_err(|source| Error::NotUtf8 {
                what: "batch properties",
                source,
            })?;
        messages.push(Message {
            topic: topic.into(),
            flag,
            properties: Properties::decode_with_room(text, room),
            body: body.slice(at + 20..at + body_end),
        });
        at += entry.len();
    }
    Ok(messages)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn round_trip() {
        let mut first = Message::new("T", "one");
        first.flag = 5;
        first.properties.insert("UNIQ_KEY", "A");
        let mut second = Message::new("T", Bytes::new());
        second.set_tags("x");
        let encoded = encode_batch(&[first.clone(), second.clone()]).unwrap();
        assert_eq!(&encoded[..4], &((FIXED_LEN + 3 + 11) as i32).to_be_bytes());
        let decoded = decode_batch(&Bytes::from(encoded), "T", 0).unwrap();
        assert_eq!(decoded, vec![first, second]);
    }

    #[test]
    fn rejects_truncation() {
        let encoded = encode_batch(&[Message::new("T", "abc")]).unwrap();
        for cut in 1..encoded.len() {
            assert!(decode_batch(&Bytes::copy_from_slice(&encoded[..cut]), "T", 0).is_err());
        }
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode_batch(&Bytes::from(bytes), "T", 0);
        }
    }
}
