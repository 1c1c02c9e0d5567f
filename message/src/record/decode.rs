use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use bytes::Bytes;

use super::*;
use crate::error::{need, Error, Result};
use crate::property::Properties;
use crate::sysflag;
use crate::Message;

/// What the bytes at a CommitLog position are, read from TOTALSIZE and MAGICCODE only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordHead {
    /// A message record of `size` bytes.
    Message { size: usize },
    /// A blank marker claiming `size` bytes: the rest of the segment.
    Blank { size: usize },
    /// Zeroed space: nothing was ever written here.
    End,
}

impl RecordHead {
    /// Reads the head at the front of `buf`; fewer than 8 bytes of zeros count as [`Self::End`].
    pub fn peek(buf: &[u8]) -> Result<Self> {
        if buf.len() < BLANK_MIN_LEN {
            return if buf.iter().all(|b| *b == 0) {
                Ok(RecordHead::End)
            } else {
                Err(Error::Truncated {
                    what: "record head",
                    needed: BLANK_MIN_LEN,
                    available: buf.len(),
                })
            };
        }
        let size = read_i32(buf, TOTAL_SIZE_POSITION);
        let magic = read_u32(buf, MAGIC_POSITION);
        match (size, magic) {
            (0, 0) => Ok(RecordHead::End),
            (size, BLANK_MAGIC) if size >= BLANK_MIN_LEN as i32 => Ok(RecordHead::Blank {
                size: size as usize,
            }),
            (size, MAGIC_V1 | MAGIC_V2) if size >= MIN_RECORD_LEN as i32 => {
                Ok(RecordHead::Message {
                    size: size as usize,
                })
            }
            (size, MAGIC_V1 | MAGIC_V2 | BLANK_MAGIC) => Err(Error::LengthMismatch {
                what: "TOTALSIZE",
                declared: size as i64,
                actual: buf.len() as i64,
            }),
            (_, magic) => Err(Error::BadMagic(magic)),
        }
    }
}

/// Smallest possible record: IPv4 hosts, empty body, topic and properties.
pub const MIN_RECORD_LEN: usize = 4 + 4 + 4 + 4 + 4 + 8 + 8 + 4 + 8 + 8 + 8 + 8 + 4 + 8 + 4 + 1 + 2;

/// A zero-copy view of one stored record, checked so every accessor is in bounds.
#[derive(Debug, Clone, Copy)]
pub struct StoredMessage<'a> {
    record: &'a [u8],
    born_host_len: usize,
    store_host_len: usize,
    body_start: usize,
    body_len: usize,
    topic_start: usize,
    topic_len: usize,
    properties_start: usize,
    properties_len: usize,
}

impl<'a> StoredMessage<'a> {
    /// Parses the record at the front of `buf` (which may hold more after it). Every length is
    /// checked against TOTALSIZE, and the fields must end exactly where TOTALSIZE says, because
    /// clients walk concatenated records field by field rather than by TOTALSIZE.
    pub fn parse(buf: &'a [u8]) -> Result<Self> {
        need("record head", 8, buf.len())?;
        let declared = read_i32(buf, TOTAL_SIZE_POSITION);
        let magic = read_u32(buf, MAGIC_POSITION);
        if magic != MAGIC_V1 && magic != MAGIC_V2 {
            return Err(Error::BadMagic(magic));
        }
        if declared < MIN_RECORD_LEN as i32 {
            return Err(Error::LengthMismatch {
                what: "TOTALSIZE",
                declared: declared as i64,
                actual: MIN_RECORD_LEN as i64,
            });
        }
        let total = declared as usize;
        need("record", total, buf.len())?;
        let record = &buf[..total];
        let sys_flag = read_i32(record, SYSFLAG_POSITION);
        let born_host_len = host_len(sys_flag & sysflag::BORNHOST_V6 != 0);
        let store_host_len = host_len(sys_flag & sysflag::STOREHOSTADDRESS_V6 != 0);
        let body_len_position = BORN_HOST_POSITION + born_host_len + 8 + store_host_len + 4 + 8;
        need("record body length", body_len_position + 4, total)?;
        let body_len = read_i32(record, body_len_position);
        if body_len < 0 {
            return Err(Error::LengthMismatch {
                what: "body length",
                declared: body_len as i64,
                actual: 0,
            });
        }
        let body_start = body_len_position + 4;
        let body_len = body_len as usize;
        let topic_len_position = body_start
            .checked_add(body_len)
            .filter(|end| *end <= total)
            .ok_or(Error::LengthMismatch {
                what: "body length",
                declared: body_len as i64,
                actual: (total - body_start) as i64,
            })?;
        let (topic_len, topic_len_size) = if magic == MAGIC_V2 {
            need("topic length", topic_len_position + 2, total)?;
            (read_u16(record, topic_len_position) as usize, 2)
        } else {
            need("topic length", topic_len_position + 1, total)?;
            (record[topic_len_position] as usize, 1)
        };
        let topic_start = topic_len_position + topic_len_size;
        let properties_len_position = topic_start + topic_len;
        need("topic", properties_len_position + 2, total)?;
        let properties_len = read_u16(record, properties_len_position) as usize;
        let properties_start = properties_len_position + 2;
        let end = properties_start + properties_len;
        if end != total {
            return Err(Error::LengthMismatch {
                what: "TOTALSIZE",
                declared: total as i64,
                actual: end as i64,
            });
        }
        Ok(StoredMessage {
            record,
            born_host_len,
            store_host_len,
            body_start,
            body_len,
            topic_start,
            topic_len,
            properties_start,
            properties_len,
        })
    }

    /// The record's bytes, exactly TOTALSIZE long.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.record
    }

    /// TOTALSIZE.
    pub fn total_size(&self) -> usize {
        self.record.len()
    }

    /// MAGICCODE.
    pub fn magic(&self) -> u32 {
        read_u32(self.record, MAGIC_POSITION)
    }

    /// BODYCRC as stored.
    pub fn body_crc(&self) -> u32 {
        read_u32(self.record, BODY_CRC_POSITION)
    }

    /// QUEUEID.
    pub fn queue_id(&self) -> i32 {
        read_i32(self.record, QUEUE_ID_POSITION)
    }

    /// FLAG.
    pub fn flag(&self) -> i32 {
        read_i32(self.record, FLAG_POSITION)
    }

    /// QUEUEOFFSET: the index in the consume queue.
    pub fn queue_offset(&self) -> i64 {
        read_i64(self.record, QUEUE_OFFSET_POSITION)
    }

    /// PHYSICALOFFSET: the record's own CommitLog offset.
    pub fn physical_offset(&self) -> i64 {
        read_i64(self.record, PHYSICAL_OFFSET_POSITION)
    }

    /// SYSFLAG.
    pub fn sys_flag(&self) -> i32 {
        read_i32(self.record, SYSFLAG_POSITION)
    }

    /// BORNTIMESTAMP.
    pub fn born_timestamp(&self) -> i64 {
        read_i64(self.record, BORN_TIMESTAMP_POSITION)
    }

    /// BORNHOST.
    pub fn born_host(&self) -> SocketAddr {
        read_host(&self.record[BORN_HOST_POSITION..][..self.born_host_len])
    }

    /// STORETIMESTAMP.
    pub fn store_timestamp(&self) -> i64 {
        read_i64(self.record, BORN_HOST_POSITION + self.born_host_len)
    }

    /// STOREHOSTADDRESS.
    pub fn store_host(&self) -> SocketAddr {
        let position = BORN_HOST_POSITION + self.born_host_len + 8;
        read_host(&self.record[position..][..self.store_host_len])
    }

    /// RECONSUMETIMES.
    pub fn reconsume_times(&self) -> i32 {
        read_i32(self.record, self.after_store_host())
    }

    /// PREPARED TRANSACTION OFFSET.
    pub fn prepared_transaction_offset(&self) -> i64 {
        read_i64(self.record, self.after_store_host() + 4)
    }

    /// BODY, as stored (compressed when sysflag bit 0 is set).
    pub fn body(&self) -> &'a [u8] {
        &self.record[self.body_start..][..self.body_len]
    }

    /// TOPIC bytes.
    pub fn topic_bytes(&self) -> &'a [u8] {
        &self.record[self.topic_start..][..self.topic_len]
    }

    /// TOPIC as text.
    pub fn topic(&self) -> Result<&'a str> {
        std::str::from_utf8(self.topic_bytes()).map_err(|source| Error::NotUtf8 {
            what: "topic",
            source,
        })
    }

    /// PROPERTIES text bytes.
    pub fn properties_bytes(&self) -> &'a [u8] {
        &self.record[self.properties_start..][..self.properties_len]
    }

    /// PROPERTIES, parsed.
    pub fn properties(&self) -> Result<Properties> {
        self.properties_text().map(Properties::decode)
    }

    /// PROPERTIES in their text form, for [`Properties::find_in`].
    pub fn properties_text(&self) -> Result<&'a str> {
        std::str::from_utf8(self.properties_bytes()).map_err(|source| Error::NotUtf8 {
            what: "properties",
            source,
        })
    }

    /// Recomputes the body CRC and compares it with BODYCRC (recovery uses this to find torn
    /// writes).
    pub fn check_body_crc(&self) -> Result<()> {
        let computed = body_crc(self.body());
        let stored = self.body_crc();
        if computed == stored {
            Ok(())
        } else {
            Err(Error::CrcMismatch { stored, computed })
        }
    }

    /// The client-visible message (topic, flag, properties, body copied out).
    pub fn to_message(&self) -> Result<Message> {
        Ok(Message {
            topic: self.topic()?.into(),
            flag: self.flag(),
            properties: self.properties()?,
            body: Bytes::copy_from_slice(self.body()),
        })
    }

    fn after_store_host(&self) -> usize {
        BORN_HOST_POSITION + self.born_host_len + 8 + self.store_host_len
    }
}

fn read_host(bytes: &[u8]) -> SocketAddr {
    let (ip, port): (IpAddr, _) = if bytes.len() == 20 {
        let octets: [u8; 16] = bytes[..16].try_into().unwrap();
        (Ipv6Addr::from(octets).into(), read_i32(bytes, 16))
    } else {
        let octets: [u8; 4] = bytes[..4].try_into().unwrap();
        (Ipv4Addr::from(octets).into(), read_i32(bytes, 4))
    };
    SocketAddr::new(ip, port as u16)
}

fn read_u16(buf: &[u8], at: usize) -> u16 {
    u16::from_be_bytes(buf[at..at + 2].try_into().unwrap())
}

fn read_u32(buf: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(buf[at..at + 4].try_into().unwrap())
}

fn read_i32(buf: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(buf[at..at + 4].try_into().unwrap())
}

fn read_i64(buf: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(buf[at..at + 8].try_into().unwrap())
}
