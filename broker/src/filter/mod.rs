//! Which messages a subscription receives: by tag (hash in the consume queue, then the
//! exact tag string on the stored message) or by a SQL92 expression over its properties.

pub mod sql92;

use std::collections::BTreeSet;

use message::{property, StoredMessage};
use protocol::body::SubscriptionData;
use store::MessageFilter;

pub use sql92::{ParseError, Sql92};

/// The SQL92 expression type name clients send.
pub const SQL92: &str = "SQL92";

#[derive(Debug, Clone)]
pub enum SubscriptionFilter {
    /// `*`: every message.
    All,
    /// A set of tags, with the hash codes the consume queue keeps.
    Tags {
        codes: BTreeSet<i32>,
        tags: BTreeSet<String>,
    },
    Sql(Sql92),
}

impl SubscriptionFilter {
    /// Compiles a subscription; SQL92 ones only when `sql_enabled` (enablePropertyFilter).
    pub fn compile(subscription: &SubscriptionData) -> Result<SubscriptionFilter, ParseError> {
        if is_sql(subscription) {
            return Sql92::compile(&subscription.sub_string).map(SubscriptionFilter::Sql);
        }
        if subscription.subscribes_all() {
            return Ok(SubscriptionFilter::All);
        }
        let mut tags = subscription.tags_set.clone();
        if tags.is_empty() {
            tags = SubscriptionData::parse_tags(&subscription.sub_string);
        }
        let codes = tags.iter().map(|t| message::java_string_hash(t)).collect();
        Ok(SubscriptionFilter::Tags { codes, tags })
    }

    /// The tag codes a held pull should wake for; `None` wakes it for any message.
    pub fn wake_codes(&self) -> Option<BTreeSet<i32>> {
        match self {
            SubscriptionFilter::Tags { codes, .. } => Some(codes.clone()),
            _ => None,
        }
    }

    pub fn is_all(&self) -> bool {
        matches!(self, SubscriptionFilter::All)
    }
}

pub fn is_sql(subscription: &SubscriptionData) -> bool {
    subscription
        .expression_type
        .as_deref()
        .is_some_and(|kind| kind.eq_ignore_ascii_case(SQL92))
}

impl MessageFilter for SubscriptionFilter {
    fn matches_tags_code(&self, tags_code: i64) -> bool {
        match self {
            SubscriptionFilter::Tags { codes, .. } => codes.contains(&(tags_code as i32)),
            _ => true,
        }
    }

    fn matches_message(&self, record: &[u8]) -> bool {
        if self.is_all() {
            return true;
        }
        let Ok(properties) = StoredMessage::parse(record).and_then(|m| m.properties()) else {
            return false;
        };
        match self {
            SubscriptionFilter::All => true,
            // Hash codes collide; the tag itself decides (RocketMQ leaves this to the
            // client, which then drops the message after it crossed the network).
            SubscriptionFilter::Tags { tags, .. } => properties
                .get(property::TAGS)
                .is_some_and(|tag| tags.contains(tag)),
            SubscriptionFilter::Sql(expression) => expression.matches(|name| properties.get(name)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use message::{Message, RecordEncoder, RecordFields};

    fn record(tags: &str, properties: &[(&str, &str)]) -> Vec<u8> {
        let mut message = Message::new("T", "b");
        message.set_tags(tags);
        for (k, v) in properties {
            message.properties.insert(*k, *v);
        }
        let text = message.properties.encode();
        let fields = RecordFields {
            queue_id: 0,
            flag: 0,
            sys_flag: 0,
            born_timestamp: 0,
            born_host: ([127, 0, 0, 1], 1).into(),
            store_host: ([127, 0, 0, 1], 2).into(),
            reconsume_times: 0,
            prepared_transaction_offset: 0,
        };
        RecordEncoder::new("T", b"b", &text, fields)
            .unwrap()
            .encode(0, 0, 0)
    }

    fn subscription(expression: &str, kind: Option<&str>) -> SubscriptionData {
        SubscriptionData {
            topic: "T".into(),
            sub_string: expression.into(),
            tags_set: if kind.is_none() {
                SubscriptionData::parse_tags(expression)
            } else {
                BTreeSet::new()
            },
            expression_type: kind.map(str::to_string),
            ..SubscriptionData::default()
        }
    }

    #[test]
    fn tags_match_by_hash_then_by_string() {
        let filter = SubscriptionFilter::compile(&subscription("TagA || TagC", None)).unwrap();
        assert!(filter.matches_tags_code(message::tags_code(Some("TagA"))));
        assert!(!filter.matches_tags_code(message::tags_code(Some("TagB"))));
        assert!(filter.matches_message(&record("TagC", &[])));
        assert!(!filter.matches_message(&record("TagB", &[])));
        // "Aa" and "BB" share a Java hash code: only the string tells them apart.
        let colliding = SubscriptionFilter::compile(&subscription("Aa", None)).unwrap();
        assert!(colliding.matches_tags_code(message::tags_code(Some("BB"))));
        assert!(!colliding.matches_message(&record("BB", &[])));
    }

    #[test]
    fn sql_filters_on_properties() {
        let filter =
            SubscriptionFilter::compile(&subscription("a BETWEEN 3 AND 5", Some("SQL92"))).unwrap();
        assert!(filter.wake_codes().is_none());
        assert!(filter.matches_message(&record("x", &[("a", "4")])));
        assert!(!filter.matches_message(&record("x", &[("a", "6")])));
        assert!(!filter.matches_message(&record("x", &[])));
        assert!(SubscriptionFilter::compile(&subscription("a LIKE 'x'", Some("SQL92"))).is_err());
    }

    #[test]
    fn star_takes_everything() {
        let filter = SubscriptionFilter::compile(&subscription("*", None)).unwrap();
        assert!(filter.is_all());
        assert!(filter.matches_message(b"not even a record"));
    }
}
