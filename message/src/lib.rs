//! RocketMQ messages and their stored byte layout.
//!
//! This crate is the one owner of the record format that the CommitLog stores and that a pull
//! response carries byte for byte, so the store and the protocol never keep two copies of it.

mod batch;
mod error;
mod java_hash;
mod message;
mod message_id;
pub mod property;
pub mod record;
pub mod sysflag;

pub use batch::{decode_batch, encode_batch};
pub use error::{Error, Result};
pub use java_hash::{java_string_hash, java_string_hash_of, tags_code};
pub use message::Message;
pub use message_id::{
    decode_offset_message_id, offset_message_id, push_offset_message_id, UniqueIdGenerator,
};
pub use property::Properties;
pub use record::{RecordEncoder, RecordFields, RecordHead, StoredMessage, StoredRecordMut};
