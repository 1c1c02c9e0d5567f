//! Producers and consumers known from their heartbeats: which clients are in which group,
//! over which connection, with which subscriptions. Consumers rebalance on the client side
//! from GET_CONSUMER_LIST_BY_GROUP, so membership changes are pushed to every member with
//! NOTIFY_CONSUMER_IDS_CHANGED.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use protocol::body::{ConsumeFromWhere, ConsumeType, ConsumerData, MessageModel, SubscriptionData};
use protocol::header::NotifyConsumerIdsChangedRequestHeader;
use protocol::{LanguageCode, RemotingCommand, RequestCode};

use crate::filter::SubscriptionFilter;
use crate::server::Channel;

/// One client connection in a group.
#[derive(Debug, Clone)]
pub struct ClientInfo {
    pub client_id: String,
    pub channel: Channel,
    pub language: LanguageCode,
    pub version: i32,
    pub last_seen: Instant,
}

/// What the members of one consumer group declared in their last heartbeats.
#[derive(Debug, Clone)]
pub struct ConsumerGroup {
    pub consume_type: ConsumeType,
    pub message_model: MessageModel,
    pub consume_from_where: ConsumeFromWhere,
    pub subscriptions: BTreeMap<String, Arc<Subscribed>>,
    /// By channel id.
    pub clients: HashMap<u64, ClientInfo>,
}

/// A subscription a group registered, with its filter compiled once when it is registered
/// rather than on every pull (a push consumer's pulls carry none of their own).
#[derive(Debug)]
pub struct Subscribed {
    pub data: SubscriptionData,
    /// The compile error, for the pulls it refuses.
    pub filter: Result<Arc<SubscriptionFilter>, String>,
}

impl Subscribed {
    fn new(data: &SubscriptionData) -> Self {
        Subscribed {
            filter: SubscriptionFilter::compile(data)
                .map(Arc::new)
                .map_err(|error| error.to_string()),
            data: data.clone(),
        }
    }
}

/// Why a group has no registered subscription to a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unsubscribed {
    /// No member of the group is connected.
    NoGroup,
    /// The group's members do not subscribe to the topic.
    NoTopic,
}

#[derive(Default)]
pub struct ClientManager {
    producers: Mutex<HashMap<String, HashMap<u64, ClientInfo>>>,
    consumers: Mutex<HashMap<String, ConsumerGroup>>,
}

impl ClientManager {
    pub fn register_producer(&self, group: &str, client: ClientInfo) {
        self.producers
            .lock()
            .entry(group.to_string())
            .or_default()
            .insert(client.channel.id(), client);
    }

    /// Records a consumer's heartbeat; true when the group gained a member.
    pub fn register_consumer(&self, data: &ConsumerData, client: ClientInfo) -> bool {
        let mut consumers = self.consumers.lock();
        let group = consumers
            .entry(data.group_name.clone())
            .or_insert_with(|| ConsumerGroup {
                consume_type: data.consume_type,
                message_model: data.message_model,
                consume_from_where: data.consume_from_where,
                subscriptions: BTreeMap::new(),
                clients: HashMap::new(),
            });
        group.consume_type = data.consume_type;
        group.message_model = data.message_model;
        group.consume_from_where = data.consume_from_where;
        // The group's subscriptions are what its members last declared; a newer
        // subVersion replaces an older one, as in RocketMQ's ConsumerGroupInfo.
        // Every heartbeat repeats them, so an unchanged one keeps its compiled filter.
        for subscription in &data.subscription_data_set {
            match group.subscriptions.get(&subscription.topic) {
                Some(known) if known.data.sub_version > subscription.sub_version => {}
                Some(known) if known.data == *subscription => {}
                _ => {
                    group.subscriptions.insert(
                        subscription.topic.clone(),
                        Arc::new(Subscribed::new(subscription)),
                    );
                }
            }
        }
        let joined = !group.clients.contains_key(&client.channel.id());
        group.clients.insert(client.channel.id(), client);
        joined
    }

    /// Removes one client from a group; true when it was a member.
    pub fn unregister_consumer(&self, group: &str, channel: &Channel) -> bool {
        let mut consumers = self.consumers.lock();
        let Some(info) = consumers.get_mut(group) else {
            return false;
        };
        let removed = info.clients.remove(&channel.id()).is_some();
        if info.clients.is_empty() {
            consumers.remove(group);
        }
        removed
    }

    pub fn unregister_producer(&self, group: &str, channel: &Channel) {
        let mut producers = self.producers.lock();
        if let Some(clients) = producers.get_mut(group) {
            clients.remove(&channel.id());
            if clients.is_empty() {
                producers.remove(group);
            }
        }
    }

    /// Forgets a closed connection; returns the consumer groups it left.
    pub fn channel_closed(&self, channel: &Channel) -> Vec<String> {
        self.remove_where(|client| client.channel == *channel)
    }

    /// Forgets clients silent for longer than `timeout`; returns the consumer groups changed.
    pub fn expire(&self, now: Instant, timeout: Duration) -> Vec<String> {
        self.remove_where(|client| now.duration_since(client.last_seen) > timeout)
    }

    fn remove_where(&self, gone: impl Fn(&ClientInfo) -> bool) -> Vec<String> {
        self.producers.lock().retain(|_, clients| {
            clients.retain(|_, client| !gone(client));
            !clients.is_empty()
        });
        let mut changed = Vec::new();
        self.consumers.lock().retain(|name, group| {
            let before = group.clients.len();
            group.clients.retain(|_, client| !gone(client));
            if group.clients.len() != before {
                changed.push(name.clone());
            }
            !group.clients.is_empty()
        });
        changed
    }

    /// The language of each producer connection (once per group it produces for).
    pub fn producer_languages(&self) -> Vec<LanguageCode> {
        let producers = self.producers.lock();
        producers
            .values()
            .flat_map(HashMap::values)
            .map(|client| client.language)
            .collect()
    }

    /// Each consumer connection: its group, language and the group's consume type.
    pub fn consumer_connections(&self) -> Vec<(String, LanguageCode, ConsumeType)> {
        let consumers = self.consumers.lock();
        consumers
            .iter()
            .flat_map(|(name, group)| {
                group
                    .clients
                    .values()
                    .map(|client| (name.clone(), client.language, group.consume_type))
            })
            .collect()
    }

    /// Client ids of the group's live members, sorted as clients sort them.
    pub fn consumer_ids(&self, group: &str) -> Vec<String> {
        let consumers = self.consumers.lock();
        let mut ids: Vec<String> = consumers
            .get(group)
            .map(|info| info.clients.values().map(|c| c.client_id.clone()).collect())
            .unwrap_or_default();
        ids.sort();
        ids.dedup();
        ids
    }

    pub fn consumer_group(&self, group: &str) -> Option<ConsumerGroup> {
        self.consumers.lock().get(group).cloned()
    }

    /// What `group` registered for `topic`: the pull path's lookup, so it takes only a
    /// reference count under the lock, not a copy of the group.
    pub fn subscribed(&self, group: &str, topic: &str) -> Result<Arc<Subscribed>, Unsubscribed> {
        self.consumers
            .lock()
            .get(group)
            .ok_or(Unsubscribed::NoGroup)?
            .subscriptions
            .get(topic)
            .cloned()
            .ok_or(Unsubscribed::NoTopic)
    }

    pub fn consumer_group_names(&self) -> Vec<String> {
        self.consumers.lock().keys().cloned().collect()
    }

    pub fn producer_group(&self, group: &str) -> Vec<ClientInfo> {
        self.producers
            .lock()
            .get(group)
            .map(|clients| clients.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Tells every member of `group` to rebalance now (oneway, as RocketMQ's Broker2Client).
    pub fn notify_ids_changed(&self, group: &str) {
        let channels: Vec<Channel> = self
            .consumers
            .lock()
            .get(group)
            .map(|info| info.clients.values().map(|c| c.channel.clone()).collect())
            .unwrap_or_default();
        for channel in channels {
            let mut notice = RemotingCommand::request(
                RequestCode::NotifyConsumerIdsChanged,
                &NotifyConsumerIdsChangedRequestHeader {
                    consumer_group: group.to_string(),
                },
            );
            notice.mark_oneway();
            channel.send_request(notice);
        }
    }
}

#[cfg(test)]
#[path = "client_manager_test.rs"]
mod tests;
