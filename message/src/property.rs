//! Message properties: the names RocketMQ gives them and their `name\x01value\x02` text form.

use compact_str::CompactString;
/// Separates a property's name from its value (`MessageDecoder.NAME_VALUE_SEPARATOR`).
pub const NAME_VALUE_SEPARATOR: char = '\u{1}';
/// Ends each property (`MessageDecoder.PROPERTY_SEPARATOR`).
pub const PROPERTY_SEPARATOR: char = '\u{2}';
/// Separates several keys inside `KEYS` (`MessageConst.KEY_SEPARATOR`).
pub const KEY_SEPARATOR: char = ' ';

/// User keys, several separated by a single space.
pub const KEYS: &str = "KEYS";
/// The message tag.
pub const TAGS: &str = "TAGS";
/// `"true"` (the producer default) when the producer waits for the store.
pub const WAIT: &str = "WAIT";
/// Delay level, 1-based.
pub const DELAY: &str = "DELAY";
/// Original topic of a retry message.
pub const RETRY_TOPIC: &str = "RETRY_TOPIC";
/// Real destination topic of a scheduled or half message.
pub const REAL_TOPIC: &str = "REAL_TOPIC";
/// Real destination queue of a scheduled or half message.
pub const REAL_QID: &str = "REAL_QID";
/// `"true"` on transactional half messages.
pub const TRAN_MSG: &str = "TRAN_MSG";
/// Producer group (needed for transaction checks).
pub const PGROUP: &str = "PGROUP";
/// Set by the client from the pull response header.
pub const MIN_OFFSET: &str = "MIN_OFFSET";
/// Set by the client from the pull response header.
pub const MAX_OFFSET: &str = "MAX_OFFSET";
/// Client-generated unique message id.
pub const UNIQ_KEY: &str = "UNIQ_KEY";
/// First message id across retries.
pub const ORIGIN_MESSAGE_ID: &str = "ORIGIN_MESSAGE_ID";
/// Retry bookkeeping on a client-side resend.
pub const RECONSUME_TIME: &str = "RECONSUME_TIME";
/// Retry limit carried by the message.
pub const MAX_RECONSUME_TIMES: &str = "MAX_RECONSUME_TIMES";
/// Broker cluster name, set by the broker.
pub const CLUSTER: &str = "CLUSTER";
/// Trace region.
pub const MSG_REGION: &str = "MSG_REGION";
/// Trace switch.
pub const TRACE_ON: &str = "TRACE_ON";
/// Transaction id.
pub const TRANSACTION_ID: &str = "__transactionId__";
/// Queue offset of the prepared message of a transaction.
pub const TRAN_PREPARED_QUEUE_OFFSET: &str = "TRAN_PREPARED_QUEUE_OFFSET";
/// How many times the broker has checked a half message.
pub const TRANSACTION_CHECK_TIMES: &str = "TRANSACTION_CHECK_TIMES";
/// Seconds before the first transaction check.
pub const CHECK_IMMUNITY_TIME_IN_SECONDS: &str = "CHECK_IMMUNITY_TIME_IN_SECONDS";
/// Set by the client while consuming.
pub const CONSUME_START_TIME: &str = "CONSUME_START_TIME";
/// Request/reply correlation id.
pub const CORRELATION_ID: &str = "CORRELATION_ID";
/// Request/reply: the client to answer.
pub const REPLY_TO_CLIENT: &str = "REPLY_TO_CLIENT";
/// Request/reply time to live.
pub const TTL: &str = "TTL";
/// Request/reply message type (`reply`).
pub const MSG_TYPE: &str = "MSG_TYPE";
/// 5.x arbitrary delay in seconds.
pub const TIMER_DELAY_SEC: &str = "TIMER_DELAY_SEC";
/// 5.x arbitrary delay in milliseconds.
pub const TIMER_DELAY_MS: &str = "TIMER_DELAY_MS";
/// 5.x delivery time in milliseconds.
pub const TIMER_DELIVER_MS: &str = "TIMER_DELIVER_MS";
/// Original topic of a dead-lettered message.
pub const DLQ_ORIGIN_TOPIC: &str = "DLQ_ORIGIN_TOPIC";
/// Original message id of a dead-lettered message.
pub const DLQ_ORIGIN_MESSAGE_ID: &str = "DLQ_ORIGIN_MESSAGE_ID";
/// The key of an ordered (FIFO) message (`__SHARDINGKEY`, 5.x).
pub const SHARDING_KEY: &str = "__SHARDINGKEY";

/// Every name above: brokers and clients give them meaning, so a user property must not
/// take one (Apache's client refuses them in `putUserProperty`).
pub const SYSTEM: &[&str] = &[
    KEYS,
    TAGS,
    WAIT,
    DELAY,
    RETRY_TOPIC,
    REAL_TOPIC,
    REAL_QID,
    TRAN_MSG,
    PGROUP,
    MIN_OFFSET,
    MAX_OFFSET,
    UNIQ_KEY,
    ORIGIN_MESSAGE_ID,
    RECONSUME_TIME,
    MAX_RECONSUME_TIMES,
    CLUSTER,
    MSG_REGION,
    TRACE_ON,
    TRANSACTION_ID,
    TRAN_PREPARED_QUEUE_OFFSET,
    TRANSACTION_CHECK_TIMES,
    CHECK_IMMUNITY_TIME_IN_SECONDS,
    CONSUME_START_TIME,
    CORRELATION_ID,
    REPLY_TO_CLIENT,
    TTL,
    MSG_TYPE,
    TIMER_DELAY_SEC,
    TIMER_DELAY_MS,
    TIMER_DELIVER_MS,
    DLQ_ORIGIN_TOPIC,
    DLQ_ORIGIN_MESSAGE_ID,
    SHARDING_KEY,
];

/// A message's properties in the order they were set.
///
/// A `Vec` rather than a map: messages carry a handful of properties, a linear scan beats hashing
/// at that size, and keeping insertion order makes a decoded message re-encode to the same bytes.
/// Names and most values fit a `CompactString`'s 24 inline bytes, so a property costs no
/// allocation of its own: the send path sets four on every message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Properties(Vec<(CompactString, CompactString)>);

impl Properties {
    /// No properties.
    pub fn new() -> Self {
        Self::default()
    }

    /// The value of `name`, if set.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// Sets `name`, replacing an earlier value in place so the order stays stable.
    pub fn insert(&mut self, name: impl Into<CompactString>, value: impl Into<CompactString>) {
        let name = name.into();
        let value = value.into();
        match self.0.iter_mut().find(|(key, _)| *key == name) {
            Some(slot) => slot.1 = value,
            None => self.0.push((name, value)),
        }
    }

    /// Removes `name`, returning its value.
    pub fn remove(&mut self, name: &str) -> Option<String> {
        let index = self.0.iter().position(|(key, _)| key == name)?;
        Some(self.0.remove(index).1.into_string())
    }

    /// Name and value pairs in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Number of properties.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are no properties.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The wire and stored text: `name\x01value\x02` repeated, with Java's trailing `\x02`.
    pub fn encode(&self) -> String {
        let mut text = String::with_capacity(self.encoded_len());
        self.encode_into(&mut text);
        text
    }

    /// Appends [`Properties::encode`]'s text to `text`: the store encodes a whole batch's
    /// properties into one buffer rather than one `String` per message.
    pub fn encode_into(&self, text: &mut String) {
        for (name, value) in &self.0 {
            text.push_str(name);
            text.push(NAME_VALUE_SEPARATOR);
            text.push_str(value);
            text.push(PROPERTY_SEPARATOR);
        }
    }

    /// Length in bytes of [`Properties::encode`]'s output.
    pub fn encoded_len(&self) -> usize {
        self.0.iter().map(|(k, v)| k.len() + v.len() + 2).sum()
    }

    /// Parses the text form as Java's `string2messageProperties` does: empty segments are
    /// skipped, each is split at its first `\x01`, and a pair is kept only when both sides are
    /// non-empty (Java silently drops a property with an empty value).
    pub fn decode(text: &str) -> Self {
        Self::decode_with_room(text, 0)
    }

    /// [`Properties::decode`], with room for `room` more properties before the list grows:
    /// the broker stamps four on every message it receives, and a regrowth is an allocation
    /// per message.
    pub fn decode_with_room(text: &str, room: usize) -> Self {
        // Every pair kept holds a name separator, so their count bounds the pairs. Past a
        // message's usual handful the list grows as it fills: a hostile text of 32 KiB of
        // separators, which keeps no pair, must not size a list of thousands.
        const PRESIZED_AT_MOST: usize = 16;
        let pairs_at_most = text
            .bytes()
            .filter(|&b| b == NAME_VALUE_SEPARATOR as u8)
            .count()
            .min(PRESIZED_AT_MOST);
        let mut properties = Properties(Vec::with_capacity(pairs_at_most + room));
        for (name, value) in pairs(text) {
            properties.insert(name, value);
        }
        properties
    }

    /// The value of `name` in the text form, as [`Properties::decode`] then
    /// [`Properties::get`] would find it (the last of repeated names wins), without building
    /// the map: dispatch reads three properties of every stored message this way.
    pub fn find_in<'t>(text: &'t str, name: &str) -> Option<&'t str> {
        pairs(text)
            .filter(|(key, _)| *key == name)
            .last()
            .map(|(_, value)| value)
    }
}

/// The pairs of the text form that Java keeps, in order.
fn pairs(text: &str) -> impl Iterator<Item = (&str, &str)> {
    text.split(PROPERTY_SEPARATOR).filter_map(|segment| {
        segment
            .split_once(NAME_VALUE_SEPARATOR)
            .filter(|(name, value)| !name.is_empty() && !value.is_empty())
    })
}

impl<K: Into<CompactString>, V: Into<CompactString>> FromIterator<(K, V)> for Properties {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut properties = Properties::new();
        for (k, v) in iter {
            properties.insert(k, v);
        }
        properties
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_with_trailing_separator() {
        let properties: Properties = [(TAGS, "a"), (KEYS, "k1 k2")].into_iter().collect();
        assert_eq!(properties.encode(), "TAGS\u{1}a\u{2}KEYS\u{1}k1 k2\u{2}");
        assert_eq!(properties.encoded_len(), properties.encode().len());
        assert_eq!(Properties::decode(&properties.encode()), properties);
        let mut text = String::from("prefix");
        properties.encode_into(&mut text);
        assert_eq!(text, format!("prefix{}", properties.encode()));
    }

    #[test]
    fn decoding_with_room_leaves_it() {
        let text = "A\u{1}1\u{2}B\u{1}2\u{2}";
        let mut properties = Properties::decode_with_room(text, 4);
        assert_eq!(properties, Properties::decode(text));
        let capacity = properties.0.capacity();
        assert!(capacity >= 6, "{capacity}");
        for name in ["C", "D", "E", "F"] {
            properties.insert(name, "v");
        }
        assert_eq!(properties.0.capacity(), capacity);

        let separators = "\u{1}".repeat(i16::MAX as usize);
        let hostile = Properties::decode_with_room(&separators, 4);
        assert!(hostile.is_empty());
        assert!(hostile.0.capacity() <= 16 + 4, "{}", hostile.0.capacity());
    }

    #[test]
    fn decode_follows_java_rules() {
        let text =
            "\u{2}A\u{1}1\u{2}B\u{1}\u{2}\u{1}x\u{2}C\u{1}a\u{1}b\u{2}noseparator\u{2}D\u{1}4";
        let properties = Properties::decode(text);
        let pairs: Vec<_> = properties.iter().collect();
        assert_eq!(pairs, vec![("A", "1"), ("C", "a\u{1}b"), ("D", "4")]);
        for name in ["A", "B", "C", "D", "noseparator", ""] {
            assert_eq!(
                Properties::find_in(text, name),
                properties.get(name),
                "{name}"
            );
        }
        let repeated = "A\u{1}1\u{2}B\u{1}2\u{2}A\u{1}3\u{2}";
        assert_eq!(Properties::find_in(repeated, "A"), Some("3"));
        assert_eq!(Properties::decode(repeated).get("A"), Some("3"));
    }

    #[test]
    fn insert_replaces_in_place() {
        let mut properties = Properties::new();
        properties.insert("A", "1");
        properties.insert("B", "2");
        properties.insert("A", "3");
        assert_eq!(
            properties.iter().collect::<Vec<_>>(),
            vec![("A", "3"), ("B", "2")]
        );
        assert_eq!(properties.remove("A").as_deref(), Some("3"));
        assert_eq!(properties.get("A"), None);
    }
}
