use std::str::Utf8Error;

/// Why bytes could not be read as, or written to, a RocketMQ message layout.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum Error {
    /// The input ended before a field that the layout requires.
    #[error("truncated {what}: need {needed} bytes, have {available}")]
    Truncated {
        what: &'static str,
        needed: usize,
        available: usize,
    },
    /// The record's magic code is neither V1, V2 nor the blank marker.
    #[error("unknown magic code {0:#010x}")]
    BadMagic(u32),
    /// A length field disagrees with the bytes around it.
    #[error("inconsistent {what}: declared {declared}, actual {actual}")]
    LengthMismatch {
        what: &'static str,
        declared: i64,
        actual: i64,
    },
    /// A field is too long for the width of its length prefix.
    #[error("{what} is {len} bytes, the limit is {max}")]
    TooLong {
        what: &'static str,
        len: usize,
        max: usize,
    },
    /// Text that must be UTF-8 is not.
    #[error("{what} is not UTF-8")]
    NotUtf8 {
        what: &'static str,
        #[source]
        source: Utf8Error,
    },
    /// A message id string is malformed.
    #[error("malformed message id {0:?}")]
    BadMessageId(String),
    /// The body's CRC does not match the one stored in the record.
    #[error("body CRC mismatch: stored {stored:#x}, computed {computed:#x}")]
    CrcMismatch { stored: u32, computed: u32 },
}

/// Result with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

pub(crate) fn need(what: &'static str, needed: usize, available: usize) -> Result<()> {
    if available < needed {
        Err(Error::Truncated {
            what,
            needed,
            available,
        })
    } else {
        Ok(())
    }
}
