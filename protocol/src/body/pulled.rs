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

#[cfg(test)]
mod tests {
    use message::{RecordEncoder, RecordFields};

    use super::*;

    #[test]
    fn walks_concatenated_records_and_rejects_garbage() {
        let fields = RecordFields {
            queue_id: 1,
            flag: 0,
            sys_flag: 0,
            born_timestamp: 1,
            born_host: "127.0.0.1:5000".parse().unwrap(),
            store_host: "127.0.0.1:10911".parse().unwrap(),
            reconsume_times: 0,
            prepared_transaction_offset: 0,
        };
        let mut body = Vec::new();
        for (index, payload) in [&b"first"[..], b"second"].iter().enumerate() {
            let encoder = RecordEncoder::new("T", payload, "TAGS\u{1}a\u{2}", fields).unwrap();
            body.extend(encoder.encode(index as i64, body.len() as i64, 2));
        }
        let messages = decode_pulled_messages(&body).unwrap();
        assert_eq!(messages.len(), 2);
        assert_eq!(messages[1].body(), b"second");
        assert_eq!(messages[1].queue_offset(), 1);
        assert_eq!(messages[0].topic().unwrap(), "T");

        body.extend_from_slice(&[0, 0, 0, 9]);
        assert!(matches!(
            decode_pulled_messages(&body),
            Err(Error::Message(_))
        ));
        assert!(decode_pulled_messages(&[]).unwrap().is_empty());
    }
}
