use std::net::{IpAddr, SocketAddr};

use bytes::BufMut;

use super::*;
use crate::error::{need, Error, Result};
use crate::sysflag;

/// Everything about a record except its topic, body and properties and the three values the
/// store assigns under its append lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordFields {
    /// Queue the message goes to.
    pub queue_id: i32,
    /// User flag.
    pub flag: i32,
    /// Sysflag as sent; the IPv6 host bits are set from the addresses.
    pub sys_flag: i32,
    /// Producer's timestamp, ms.
    pub born_timestamp: i64,
    /// Producer's address as the broker saw it.
    pub born_host: SocketAddr,
    /// The broker's client-reachable address: clients derive the offset msgId from it.
    pub store_host: SocketAddr,
    /// Times this message has been redelivered.
    pub reconsume_times: i32,
    /// CommitLog offset of the half message, for a transaction commit.
    pub prepared_transaction_offset: i64,
}

/// A validated record waiting for its queue offset, physical offset and store timestamp.
///
/// Built (and its body CRC computed) outside the store's append lock, so the locked part is only
/// a copy into the mapped segment: [`RecordEncoder::encode_into`].
#[derive(Debug, Clone)]
pub struct RecordEncoder<'a> {
    topic: &'a [u8],
    body: &'a [u8],
    properties: &'a [u8],
    fields: RecordFields,
    body_crc: u32,
    len: usize,
}

impl<'a> RecordEncoder<'a> {
    /// Checks the lengths and computes the body CRC. `properties` is the encoded text
    /// ([`crate::Properties::encode`]).
    pub fn new(
        topic: &'a str,
        body: &'a [u8],
        properties: &'a str,
        fields: RecordFields,
    ) -> Result<Self> {
        if topic.len() > i16::MAX as usize {
            return Err(Error::TooLong {
                what: "topic",
                len: topic.len(),
                max: i16::MAX as usize,
            });
        }
        if properties.len() > MAX_PROPERTIES_LEN {
            return Err(Error::TooLong {
                what: "properties",
                len: properties.len(),
                max: MAX_PROPERTIES_LEN,
            });
        }
        let mut fields = fields;
        fields.sys_flag &= !(sysflag::BORNHOST_V6 | sysflag::STOREHOSTADDRESS_V6);
        if fields.born_host.is_ipv6() {
            fields.sys_flag |= sysflag::BORNHOST_V6;
        }
        if fields.store_host.is_ipv6() {
            fields.sys_flag |= sysflag::STOREHOSTADDRESS_V6;
        }
        let topic_len_size = if topic.len() > MAX_V1_TOPIC_LEN { 2 } else { 1 };
        let len = 4
            + 4
            + 4
            + 4
            + 4
            + 8
            + 8
            + 4
            + 8
            + host_len(fields.born_host.is_ipv6())
            + 8
            + host_len(fields.store_host.is_ipv6())
            + 4
            + 8
            + 4
            + body.len()
            + topic_len_size
            + topic.len()
            + 2
            + properties.len();
        if len > i32::MAX as usize {
            return Err(Error::TooLong {
                what: "record",
                len,
                max: i32::MAX as usize,
            });
        }
        Ok(RecordEncoder {
            topic: topic.as_bytes(),
            body,
            properties: properties.as_bytes(),
            fields,
            body_crc: body_crc(body),
            len,
        })
    }

    /// Bytes the record occupies, TOTALSIZE included.
    pub fn encoded_len(&self) -> usize {
        self.len
    }

    /// The sysflag that will be written, with the IPv6 bits set.
    pub fn sys_flag(&self) -> i32 {
        self.fields.sys_flag
    }

    /// The fields this record was built with (sysflag with its IPv6 bits set).
    pub fn fields(&self) -> &RecordFields {
        &self.fields
    }

    /// The body CRC that will be written.
    pub fn body_crc(&self) -> u32 {
        self.body_crc
    }

    /// Writes the record into the front of `buf`, returning its length.
    ///
    /// TOTALSIZE and the magic code go last, in program order (a compiler fence keeps them
    /// there): a process killed while it writes a record into a mapped CommitLog segment
    /// leaves zeroes where they go, which reads as the log's end, never a record whose
    /// body (and so its CRC) is whole but whose topic or properties are not.
    pub fn encode_into(
        &self,
        buf: &mut [u8],
        queue_offset: i64,
        physical_offset: i64,
        store_timestamp: i64,
    ) -> Result<usize> {
        need("record buffer", self.len, buf.len())?;
        let (mut head, rest) = buf[..self.len].split_at_mut(8);
        self.encode_after_head(rest, queue_offset, physical_offset, store_timestamp);
        std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
        head.put_i32(self.len as i32);
        head.put_u32(if self.long_topic() {
            MAGIC_V2
        } else {
            MAGIC_V1
        });
        Ok(self.len)
    }

    /// A topic too long for V1's one-byte length: the record is V2.
    fn long_topic(&self) -> bool {
        self.topic.len() > MAX_V1_TOPIC_LEN
    }

    /// Everything after TOTALSIZE and the magic code.
    pub(super) fn encode_after_head(
        &self,
        mut out: &mut [u8],
        queue_offset: i64,
        physical_offset: i64,
        store_timestamp: i64,
    ) {
        out.put_u32(self.body_crc);
        out.put_i32(self.fields.queue_id);
        out.put_i32(self.fields.flag);
        out.put_i64(queue_offset);
        out.put_i64(physical_offset);
        out.put_i32(self.fields.sys_flag);
        out.put_i64(self.fields.born_timestamp);
        put_host(&mut out, self.fields.born_host);
        out.put_i64(store_timestamp);
        put_host(&mut out, self.fields.store_host);
        out.put_i32(self.fields.reconsume_times);
        out.put_i64(self.fields.prepared_transaction_offset);
        out.put_i32(self.body.len() as i32);
        out.put_slice(self.body);
        if self.long_topic() {
            out.put_i16(self.topic.len() as i16);
        } else {
            out.put_u8(self.topic.len() as u8);
        }
        out.put_slice(self.topic);
        out.put_i16(self.properties.len() as i16);
        out.put_slice(self.properties);
        debug_assert!(out.is_empty());
    }

    /// The record as a new vector.
    pub fn encode(&self, queue_offset: i64, physical_offset: i64, store_timestamp: i64) -> Vec<u8> {
        let mut buf = vec![0u8; self.len];
        // The buffer has exactly the needed length, so this cannot fail.
        let _ = self.encode_into(&mut buf, queue_offset, physical_offset, store_timestamp);
        buf
    }
}

fn put_host(out: &mut &mut [u8], host: SocketAddr) {
    match host.ip() {
        IpAddr::V4(ip) => out.put_slice(&ip.octets()),
        IpAddr::V6(ip) => out.put_slice(&ip.octets()),
    }
    out.put_i32(host.port() as i32);
}

/// A mutable view of an encoded record, to set the fields only known under the append lock.
#[derive(Debug)]
pub struct StoredRecordMut<'a> {
    buf: &'a mut [u8],
    store_timestamp_position: usize,
}

impl<'a> StoredRecordMut<'a> {
    /// Wraps an encoded record; fails if `buf` is too short to hold those fields.
    pub fn new(buf: &'a mut [u8]) -> Result<Self> {
        need("record header", SYSFLAG_POSITION + 4, buf.len())?;
        let sys_flag = i32::from_be_bytes(buf[SYSFLAG_POSITION..][..4].try_into().unwrap());
        let store_timestamp_position = store_timestamp_position(sys_flag);
        need("record header", store_timestamp_position + 8, buf.len())?;
        Ok(StoredRecordMut {
            buf,
            store_timestamp_position,
        })
    }

    /// Sets QUEUEOFFSET.
    pub fn set_queue_offset(&mut self, value: i64) {
        self.buf[QUEUE_OFFSET_POSITION..][..8].copy_from_slice(&value.to_be_bytes());
    }

    /// Sets PHYSICALOFFSET.
    pub fn set_physical_offset(&mut self, value: i64) {
        self.buf[PHYSICAL_OFFSET_POSITION..][..8].copy_from_slice(&value.to_be_bytes());
    }

    /// Sets STORETIMESTAMP.
    pub fn set_store_timestamp(&mut self, value: i64) {
        self.buf[self.store_timestamp_position..][..8].copy_from_slice(&value.to_be_bytes());
    }
}
