//! PULL_MESSAGE / QUERY_MESSAGE / VIEW_MESSAGE_BY_ID bodies: stored records concatenated,
//! byte for byte as in the CommitLog. The layout has one owner, the `message` crate; this only
//! walks the concatenation.

use message::StoredMessage;

use crate::error::{Error, Result};

/// Splits a body into its records. Unlike Java's `decodesBatch`, which silently stops at the
/// first record it cannot read, a malformed record is an error: a Rocketry peer producing one
/// is a bug worth seeing.
pub fn decode_pulled_messages(body: &[u8]) -> Result<Vec<StoredMessage<'_>>> {
    let mut messages = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        let record = StoredMessage::parse(rest).map_err(Error::Message)?;
        rest = &rest[record.total_size()..];
        messages.push(record);
    }
    Ok(messages)
}
