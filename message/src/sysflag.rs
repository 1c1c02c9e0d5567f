//! Message sysflag bits (`MessageSysFlag.java`).

/// The body is compressed.
pub const COMPRESSED: i32 = 0x1;
/// The topic uses multiple tags.
pub const MULTI_TAGS: i32 = 0x2;
/// Mask of the transaction type bits.
pub const TRANSACTION_TYPE_MASK: i32 = 0xC;
/// Not a transactional message.
pub const TRANSACTION_NOT_TYPE: i32 = 0x0;
/// Half (prepared) message.
pub const TRANSACTION_PREPARED: i32 = 0x4;
/// Committed transactional message.
pub const TRANSACTION_COMMIT: i32 = 0x8;
/// Rolled-back transactional message.
pub const TRANSACTION_ROLLBACK: i32 = 0xC;
/// The born host is IPv6 (20 bytes instead of 8).
pub const BORNHOST_V6: i32 = 0x10;
/// The store host is IPv6 (20 bytes instead of 8).
pub const STOREHOSTADDRESS_V6: i32 = 0x20;
/// 5.x: the message needs unwrapping.
pub const NEED_UNWRAP: i32 = 0x40;
/// 5.x inner batch.
pub const INNER_BATCH: i32 = 0x80;

/// The transaction type bits of `sysflag`.
pub fn transaction_type(sysflag: i32) -> i32 {
    sysflag & TRANSACTION_TYPE_MASK
}
