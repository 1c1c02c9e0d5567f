use bytes::Bytes;
use compact_str::CompactString;

use crate::property::{self, Properties};

/// A message as a RocketMQ client sends it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    /// Destination topic; most fit a `CompactString`'s 24 inline bytes, so a batch's
    /// messages do not each allocate a copy of it.
    pub topic: CompactString,
    /// User flag, carried untouched.
    pub flag: i32,
    /// Properties in the order they were set.
    pub properties: Properties,
    /// Body bytes, compressed when the sender's sysflag says so.
    pub body: Bytes,
}

impl Message {
    /// A message with no flag and no properties.
    pub fn new(topic: impl Into<CompactString>, body: impl Into<Bytes>) -> Self {
        Message {
            topic: topic.into(),
            flag: 0,
            properties: Properties::new(),
            body: body.into(),
        }
    }

    /// The `TAGS` property.
    pub fn tags(&self) -> Option<&str> {
        self.properties.get(property::TAGS)
    }

    /// Sets the `TAGS` property.
    pub fn set_tags(&mut self, tags: impl Into<CompactString>) {
        self.properties.insert(property::TAGS, tags);
    }

    /// The non-empty tokens of `KEYS`, split on a single space as RocketMQ's index does.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.properties
            .get(property::KEYS)
            .unwrap_or("")
            .split(property::KEY_SEPARATOR)
            .filter(|key| !key.is_empty())
    }

    /// Sets `KEYS` from several keys joined by a space.
    pub fn set_keys<'a>(&mut self, keys: impl IntoIterator<Item = &'a str>) {
        let joined: Vec<&str> = keys.into_iter().collect();
        self.properties.insert(property::KEYS, joined.join(" "));
    }

    /// The client-generated unique id (`UNIQ_KEY`).
    pub fn unique_key(&self) -> Option<&str> {
        self.properties.get(property::UNIQ_KEY)
    }

    /// True unless `WAIT` is `"false"`: the producer waits for the store by default.
    pub fn wait_store_ok(&self) -> bool {
        self.properties.get(property::WAIT) != Some("false")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_split_on_single_spaces() {
        let mut message = Message::new("T", "b");
        message.properties.insert(property::KEYS, " a  b c ");
        assert_eq!(message.keys().collect::<Vec<_>>(), vec!["a", "b", "c"]);
        message.set_keys(["x", "y"]);
        assert_eq!(message.properties.get(property::KEYS), Some("x y"));
        assert!(message.wait_store_ok());
        message.properties.insert(property::WAIT, "false");
        assert!(!message.wait_store_ok());
        message.set_tags("TagA");
        assert_eq!(message.tags(), Some("TagA"));
    }
}
