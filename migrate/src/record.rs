//! How a Kafka record becomes a Rocketry message, the one mapping the mirror (and, later, the
//! dual-write library) share:
//!
//! - the value is the body; a tombstone (no value) is an empty body with [`TOMBSTONE`] set;
//! - the key goes to `KEYS`, so `queryMsgByKey` finds it;
//! - headers become user properties of the same name;
//! - the source topic, partition, offset and timestamp are kept in the `KAFKA_*` properties,
//!   which is what lets the mirror resume exactly where its last acknowledged write ended.
//!
//! Properties are text split by two control characters, while Kafka keys and header values are
//! bytes. A value that is not UTF-8, or holds a separator, is written in Base64 and its name
//! listed in [`BASE64`], so nothing is changed silently and the original bytes can be rebuilt.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use bytes::Bytes;
use message::property::{self, NAME_VALUE_SEPARATOR, PROPERTY_SEPARATOR};
use message::{Message, Properties};
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::Message as _;

use crate::{Error, Result};

/// The Kafka topic a message was copied from.
pub const SOURCE_TOPIC: &str = "KAFKA_TOPIC";
/// The Kafka partition a message was copied from.
pub const SOURCE_PARTITION: &str = "KAFKA_PARTITION";
/// The Kafka offset a message was copied from: the mirror's resume point.
pub const SOURCE_OFFSET: &str = "KAFKA_OFFSET";
/// The Kafka record's timestamp (milliseconds since the epoch), when it had one.
pub const SOURCE_TIMESTAMP: &str = "KAFKA_TIMESTAMP";
/// Set to `true` on the copy of a record with no value.
pub const TOMBSTONE: &str = "KAFKA_TOMBSTONE";
/// Comma-separated names of the properties (`KEYS` included) whose values are Base64.
pub const BASE64: &str = "KAFKA_BASE64";
/// Prefix of a header whose name is taken by RocketMQ or by the names above.
pub const HEADER_PREFIX: &str = "KAFKA_HEADER_";

/// The Kafka header the dual writer puts on each record it writes. The mirror leaves such a
/// record alone, since the writer copies it itself; the header is never copied.
pub const DUAL_WRITTEN: &str = "rocketry-dual-written";

const OWN: &[&str] = &[
    SOURCE_TOPIC,
    SOURCE_PARTITION,
    SOURCE_OFFSET,
    SOURCE_TIMESTAMP,
    TOMBSTONE,
    BASE64,
];

/// A Kafka record, borrowed from whichever client read it.
#[derive(Debug, Clone, Copy)]
pub struct SourceRecord<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub timestamp: Option<i64>,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub headers: &'a [(&'a str, Option<&'a [u8]>)],
}

/// Whether the dual writer wrote `record` (and so copies it itself).
pub(crate) fn is_dual_written(record: &BorrowedMessage<'_>) -> bool {
    record
        .headers()
        .is_some_and(|headers| headers.iter().any(|h| h.key == DUAL_WRITTEN))
}

/// The Rocketry message for a record one of our Kafka consumers read.
pub(crate) fn from_kafka(record: &BorrowedMessage<'_>, topic: &str) -> Result<message::Message> {
    let headers: Vec<(&str, Option<&[u8]>)> = record
        .headers()
        .map(|headers| headers.iter().map(|h| (h.key, h.value)).collect())
        .unwrap_or_default();
    to_message(
        &SourceRecord {
            topic: record.topic(),
            partition: record.partition(),
            offset: record.offset(),
            timestamp: record.timestamp().to_millis(),
            key: record.key(),
            value: record.payload(),
            headers: &headers,
        },
        topic,
    )
}

/// Where a mirrored message came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourcePosition {
    pub partition: i32,
    pub offset: i64,
}

/// The Rocketry message for `record`, bound for `topic`.
pub fn to_message(record: &SourceRecord<'_>, topic: &str) -> Result<Message> {
    let body = record.value.map(Bytes::copy_from_slice).unwrap_or_default();
    let mut message = Message::new(topic, body);
    let properties = &mut message.properties;
    let mut encoded: Vec<String> = Vec::new();
    if let Some(key) = record.key {
        put(properties, &mut encoded, property::KEYS.into(), key);
    }
    for (n, (name, value)) in record.headers.iter().enumerate() {
        if name.is_empty() || name.contains([NAME_VALUE_SEPARATOR, PROPERTY_SEPARATOR]) {
            return Err(Error::Mapping {
                partition: record.partition,
                offset: record.offset,
                reason: format!("header {n} has a name no property can carry: {name:?}"),
            });
        }
        let mut name = if property::SYSTEM.contains(name) || OWN.contains(name) {
            format!("{HEADER_PREFIX}{name}")
        } else {
            (*name).to_owned()
        };
        // Kafka allows a header name more than once; properties do not.
        if properties.get(&name).is_some() {
            name = format!("{name}#{n}");
        }
        put(properties, &mut encoded, name, value.unwrap_or_default());
    }
    properties.insert(SOURCE_TOPIC, record.topic);
    properties.insert(SOURCE_PARTITION, record.partition.to_string());
    properties.insert(SOURCE_OFFSET, record.offset.to_string());
    if let Some(timestamp) = record.timestamp {
        properties.insert(SOURCE_TIMESTAMP, timestamp.to_string());
    }
    if record.value.is_none() {
        properties.insert(TOMBSTONE, "true");
    }
    if !encoded.is_empty() {
        properties.insert(BASE64, encoded.join(","));
    }
    Ok(message)
}

fn put(properties: &mut Properties, encoded: &mut Vec<String>, name: String, value: &[u8]) {
    match std::str::from_utf8(value) {
        Ok(text) if !text.contains([NAME_VALUE_SEPARATOR, PROPERTY_SEPARATOR]) => {
            properties.insert(name, text)
        }
        _ => {
            properties.insert(name.clone(), B64.encode(value));
            encoded.push(name);
        }
    }
}

/// The source position a mirrored message's encoded properties carry, if it has one.
pub fn source_position(properties: &str) -> Option<SourcePosition> {
    Some(SourcePosition {
        partition: Properties::find_in(properties, SOURCE_PARTITION)?
            .parse()
            .ok()?,
        offset: Properties::find_in(properties, SOURCE_OFFSET)?
            .parse()
            .ok()?,
    })
}

/// The bytes the Kafka record had for property `name` of a mirrored message (its key when
/// `name` is `KEYS`), undoing the Base64 of [`to_message`]; empty when it is not set.
pub fn original_bytes(properties: &str, name: &str) -> Vec<u8> {
    let Some(value) = Properties::find_in(properties, name) else {
        return Vec::new();
    };
    let encoded = Properties::find_in(properties, BASE64)
        .is_some_and(|names| names.split(',').any(|n| n == name));
    match encoded {
        true => B64
            .decode(value)
            .unwrap_or_else(|_| value.as_bytes().to_vec()),
        false => value.as_bytes().to_vec(),
    }
}

#[cfg(test)]
#[path = "record_test.rs"]
mod record_test;
