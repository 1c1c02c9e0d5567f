//! What reads return.

use bytes::Bytes;

/// Outcome of a pull read, as RocketMQ's `GetMessageStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GetMessageStatus {
    /// At least one message.
    Found,
    /// Entries were scanned but none passed the filter.
    NoMatchedMessage,
    /// Entries were scanned but their CommitLog bytes were already deleted.
    MessageWasRemoving,
    /// The queue exists but has never held a message.
    NoMessageInQueue,
    /// No such (topic, queue).
    NoMatchedLogicQueue,
    /// The offset is below the queue's min offset.
    OffsetTooSmall,
    /// The offset equals the max offset: nothing new yet.
    OffsetOverflowOne,
    /// The offset is beyond the max offset.
    OffsetOverflowBadly,
    /// The consume queue entry is missing (a hole).
    OffsetFoundNull,
}

/// Messages read from one queue.
#[derive(Debug, Clone)]
pub struct GetMessageResult {
    /// What happened.
    pub status: GetMessageStatus,
    /// Each stored record, byte for byte (a zero-copy view of the mapped CommitLog).
    pub messages: Vec<Bytes>,
    /// Queue offset of each message in `messages`.
    pub queue_offsets: Vec<i64>,
    /// Where the consumer should continue.
    pub next_begin_offset: i64,
    /// The queue's min offset.
    pub min_offset: i64,
    /// The queue's max offset (next to be written).
    pub max_offset: i64,
    /// How many CommitLog bytes lie past the last entry this read examined (0 when it
    /// examined none): RocketMQ's measure of whether a reader is still served from the page
    /// cache (`accessMessageInMemoryMaxRatio`), which decides where a lagging consumer
    /// is sent.
    pub behind: u64,
}

impl GetMessageResult {
    /// Total bytes of the messages.
    pub fn buffer_total_size(&self) -> usize {
        self.messages.iter().map(Bytes::len).sum()
    }
}

/// Messages found through the key index.
#[derive(Debug, Clone, Default)]
pub struct QueryMessageResult {
    /// Stored records whose key hash matched (callers re-check the key: hashes collide).
    pub messages: Vec<Bytes>,
    /// Newest indexed store timestamp (`indexLastUpdateTimestamp`).
    pub index_last_update_timestamp: i64,
    /// Newest indexed CommitLog offset (`indexLastUpdatePhyoffset`).
    pub index_last_update_physical_offset: u64,
}

/// A message reaching its consume queue: the broker's long polling listens for these.
#[derive(Debug, Clone)]
pub struct ArrivedMessage<'a> {
    /// Topic.
    pub topic: &'a str,
    /// Queue id.
    pub queue_id: i32,
    /// The queue's max offset after this message.
    pub max_offset: i64,
    /// Tag hash of the message.
    pub tags_code: i64,
    /// Store timestamp.
    pub store_timestamp: i64,
}

/// Which messages a read returns, as RocketMQ's `MessageFilter`: a cheap test on the
/// consume-queue entry first, then an exact one on the stored record.
pub trait MessageFilter {
    /// Tests the tag hash code kept in the consume queue.
    fn matches_tags_code(&self, tags_code: i64) -> bool;

    /// Tests the whole stored record (exact tags, SQL92 over properties); only called for
    /// entries that passed [`MessageFilter::matches_tags_code`].
    fn matches_message(&self, _record: &[u8]) -> bool {
        true
    }
}

/// A filter on the tag hash alone, as a closure.
impl<F: Fn(i64) -> bool> MessageFilter for F {
    fn matches_tags_code(&self, tags_code: i64) -> bool {
        self(tags_code)
    }
}
