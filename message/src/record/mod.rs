//! The stored-message record: what the CommitLog holds and a pull response carries verbatim.
//!
//! Field order (`MessageExtEncoder` / `MessageDecoder`): TOTALSIZE, MAGICCODE, BODYCRC, QUEUEID,
//! FLAG, QUEUEOFFSET, PHYSICALOFFSET, SYSFLAG, BORNTIMESTAMP, BORNHOST, STORETIMESTAMP,
//! STOREHOSTADDRESS, RECONSUMETIMES, PREPARED TRANSACTION OFFSET, BODY, TOPIC, PROPERTIES.
//! All integers are big-endian.

mod decode;
mod encode;

pub use decode::{RecordHead, StoredMessage, MIN_RECORD_LEN};
pub use encode::{RecordEncoder, RecordFields, StoredRecordMut};

/// V1 magic: 1-byte topic length. The only version every client can decode.
pub const MAGIC_V1: u32 = 0xDAA3_20A7;
/// V2 magic: 2-byte topic length, used only when the topic is longer than 127 bytes.
pub const MAGIC_V2: u32 = 0xDAA3_20AB;
/// Magic of the blank marker that claims the rest of a CommitLog segment (-875286124).
pub const BLANK_MAGIC: u32 = 0xCBD4_3194;
/// The blank marker writes only TOTALSIZE and MAGICCODE (`END_FILE_MIN_BLANK_LENGTH`).
pub const BLANK_MIN_LEN: usize = 8;
/// Longest topic a V1 record can hold (`autoMessageVersionOnTopicLen`).
pub const MAX_V1_TOPIC_LEN: usize = 127;
/// Properties length is an i16 on disk and on the wire.
pub const MAX_PROPERTIES_LEN: usize = i16::MAX as usize;

/// Offset of TOTALSIZE.
pub const TOTAL_SIZE_POSITION: usize = 0;
/// Offset of MAGICCODE.
pub const MAGIC_POSITION: usize = 4;
/// Offset of BODYCRC.
pub const BODY_CRC_POSITION: usize = 8;
/// Offset of QUEUEID.
pub const QUEUE_ID_POSITION: usize = 12;
/// Offset of FLAG.
pub const FLAG_POSITION: usize = 16;
/// Offset of QUEUEOFFSET.
pub const QUEUE_OFFSET_POSITION: usize = 20;
/// Offset of PHYSICALOFFSET.
pub const PHYSICAL_OFFSET_POSITION: usize = 28;
/// Offset of SYSFLAG.
pub const SYSFLAG_POSITION: usize = 36;
/// Offset of BORNTIMESTAMP.
pub const BORN_TIMESTAMP_POSITION: usize = 40;
/// Offset of BORNHOST.
pub const BORN_HOST_POSITION: usize = 48;

/// Length of a host field: 4-byte IPv4 or 16-byte IPv6 address, then an i32 port.
pub fn host_len(ipv6: bool) -> usize {
    if ipv6 {
        20
    } else {
        8
    }
}

/// Offset of STORETIMESTAMP, which moves with the born host's address family.
pub fn store_timestamp_position(sysflag: i32) -> usize {
    BORN_HOST_POSITION + host_len(sysflag & crate::sysflag::BORNHOST_V6 != 0)
}

/// `crc32 & 0x7FFFFFFF`, the form RocketMQ stores (`UtilAll.crc32`).
pub fn body_crc(body: &[u8]) -> u32 {
    crc32fast::hash(body) & 0x7FFF_FFFF
}

/// The blank end-of-segment marker: TOTALSIZE = the space it claims, then [`BLANK_MAGIC`].
pub fn blank_marker(claimed: u32) -> [u8; BLANK_MIN_LEN] {
    let mut marker = [0u8; BLANK_MIN_LEN];
    marker[..4].copy_from_slice(&claimed.to_be_bytes());
    marker[4..].copy_from_slice(&BLANK_MAGIC.to_be_bytes());
    marker
}

#[cfg(test)]
mod tests;
