//! The crate's single error type. It describes bytes and connections, never broker state:
//! callers convert at their own edge.

use std::time::Duration;

/// Result alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A TLS setting that cannot be used (an unreadable certificate, a bad server name).
    #[error("TLS: {0}")]
    Tls(String),

    /// The length prefix announces more than the remoting frame limit; the peer must be
    /// disconnected because the stream can no longer be resynchronised.
    #[error("frame of {length} bytes (with its length prefix) exceeds the {max} byte limit")]
    FrameTooLarge { length: u64, max: usize },

    /// The length prefix is negative or too small to hold the header-length word.
    #[error("frame length {length} is too short")]
    FrameTooShort { length: i64 },

    #[error("header length {header_length} does not fit in the {available} bytes of the frame")]
    HeaderLengthOutOfRange {
        header_length: usize,
        available: usize,
    },

    #[error("unknown header serialize type {0}")]
    UnknownSerializeType(u8),

    #[error("malformed JSON header")]
    JsonHeader(#[source] serde_json::Error),

    #[error("binary header ends inside field {field}")]
    BinaryHeaderTruncated { field: &'static str },

    /// A declared string or table length is negative or larger than the header itself
    /// (RocketMQSerializable rejects the same).
    #[error(
        "binary header field {field} declares length {length}, header has {header_length} bytes"
    )]
    BinaryHeaderLength {
        field: &'static str,
        length: i64,
        header_length: usize,
    },

    #[error("header field {field} is not valid UTF-8")]
    InvalidUtf8 { field: &'static str },

    /// A value that cannot be represented in the chosen encoding (for example a POP request
    /// code above 32767 in the i16 `code` slot of the binary header).
    #[error("value {value} of {field} does not fit its wire slot")]
    FieldOverflow { field: &'static str, value: i64 },

    #[error("required header field {field} is missing")]
    MissingField { field: &'static str },

    #[error("header field {field} has the invalid value {value:?}")]
    InvalidField { field: &'static str, value: String },

    #[error("malformed JSON body")]
    Body(#[source] serde_json::Error),

    #[error("malformed lenient JSON at byte {offset}: {reason}")]
    LenientJson { offset: usize, reason: &'static str },

    /// A pulled, queried or viewed body that does not hold well-formed stored records.
    #[error("malformed message record in body")]
    Message(#[source] message::Error),

    #[error("I/O error")]
    Io(#[from] std::io::Error),

    #[error("request {opaque} got no response within {timeout:?}")]
    Timeout { opaque: i32, timeout: Duration },

    #[error("connection closed")]
    ConnectionClosed,

    /// The peer answered with a response code the typed helper does not treat as success.
    #[error("remote answered code {code}: {remark:?}")]
    Remote { code: i32, remark: Option<String> },
}
