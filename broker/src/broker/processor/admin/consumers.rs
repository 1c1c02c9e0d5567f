//! What consumers are doing: GET_CONSUME_STATS 208 (lag per queue),
//! GET_BROKER_CONSUME_STATS 317 (the same for every group at once), QUERY_TOPIC_CONSUME_BY_WHO 300, GET_CONSUMER_CONNECTION_LIST 203,
//! GET_PRODUCER_CONNECTION_LIST 204, and INVOKE_BROKER_TO_RESET_OFFSET 222, which moves a
//! group's offsets to a point in time and tells its online clients (RESET_CONSUMER_CLIENT_OFFSET 220),
//! and CLONE_GROUP_OFFSET 314, which copies one group's offsets to another.

use std::collections::{BTreeMap, BTreeSet};

use protocol::body::admin::{
    self, ConsumeStats, ConsumeStatsList, ConsumerConnection, GroupList, ProducerConnection,
    ResetOffsetBody,
};
use protocol::body::{self, MessageQueue};
use protocol::header::{
    CloneGroupOffsetRequestHeader, GetConsumeStatsInBrokerHeader, GetConsumeStatsRequestHeader,
    GetConsumerConnectionListRequestHeader, GetProducerConnectionListRequestHeader,
    ResetOffsetRequestHeader, TopicRequestHeader,
};
use protocol::{RemotingCommand, RequestCode, ResponseCode};
use tracing::info;

use crate::broker::client_manager::ClientInfo;
use crate::broker::consume_progress::{offsets_of, queue, subscribed_topics, topic_progress};
use crate::broker::processor::{header, reply, success};
use crate::broker::Broker;

pub fn consume_stats(broker: &Broker, request: &RemotingCommand) -> RemotingCommand {
    let h: GetConsumeStatsRequestHeader = header!(request);
    let group = &h.consumer_group;
    let mut topics: BTreeSet<String> = BTreeSet::new();
    if let Some(topic) = h.topic.as_deref().filter(|t| !t.trim().is_empty()) {
        topics.insert(topic.to_string());
    }
    if let Some(list) = &h.topic_list {
        topics.extend(
            list.split(';')
                .filter(|t| !t.trim().is_empty())
                .map(str::to_string),
        );
    }
    if topics.is_empty() {
        topics.extend(broker.offsets.topics_of_group(group));
    }
    // A group online with subscriptions reports only the topics it subscribes to.
    let subscribed = subscribed_topics(broker, group);
    let mut stats = ConsumeStats::default();
    for topic in topics {
        if let Some(progress) = topic_progress(broker, group, &topic, subscribed.as_ref()) {
            stats.offset_table.extend(progress.offset_table);
            stats.consume_tps += progress.consume_tps;
        }
    }
    success(request).with_body(admin::encode(&stats))
}

/// Every subscription group, each with one `ConsumeStats` per topic it has offsets on (a
/// group without any still gets its empty list), over each topic's write queues, as Java's
/// `fetchAllConsumeStatsInBroker`; `isOrder` keeps ordered topics only.
pub fn broker_consume_stats(broker: &Broker, request: &RemotingCommand) -> RemotingCommand {
    let h: GetConsumeStatsInBrokerHeader = header!(request);
    let mut answer = ConsumeStatsList {
        broker_addr: Some(broker.config.advertised_addr()),
        ..ConsumeStatsList::default()
    };
    for group in broker.groups.all().into_keys() {
        let subscribed = subscribed_topics(broker, &group);
        let mut per_topic = Vec::new();
        for topic in broker.offsets.topics_of_group(&group) {
            let Some(config) = broker.topics.get(&topic) else {
                continue;
            };
            if (h.is_order && !config.order)
                || subscribed.as_ref().is_some_and(|s| !s.contains(&topic))
            {
                continue;
            }
            let mut stats = ConsumeStats {
                consume_tps: broker.stats.group_get_tps(&topic, &group),
                ..ConsumeStats::default()
            };
            for queue_id in 0..config.write_queue_nums {
                stats.offset_table.insert(
                    queue(broker, &topic, queue_id),
                    offsets_of(broker, &group, &topic, queue_id),
                );
            }
            answer.total_diff += stats.total_diff();
            answer.total_inflight_diff += stats
                .offset_table
                .values()
                .map(|w| w.pull_offset - w.consumer_offset)
                .sum::<i64>();
            per_topic.push(stats);
        }
        answer
            .consume_stats_list
            .push(BTreeMap::from([(group, per_topic)]));
    }
    success(request).with_body(admin::encode(&answer))
}

/// Groups with a live subscription to the topic or a committed offset on it.
pub fn consumed_by(broker: &Broker, request: &RemotingCommand) -> RemotingCommand {
    let h: TopicRequestHeader = header!(request);
    let mut groups: BTreeSet<String> = broker
        .offsets
        .groups_of_topic(&h.topic)
        .into_iter()
        .collect();
    for group in broker.clients.consumer_group_names() {
        if broker.clients.subscribed(&group, &h.topic).is_ok() {
            groups.insert(group);
        }
    }
    success(request).with_body(body::to_json(&GroupList {
        group_list: groups.into_iter().collect(),
    }))
}

fn connection(client: &ClientInfo) -> admin::Connection {
    admin::Connection {
        client_id: client.client_id.clone(),
        client_addr: client.channel.peer_addr().to_string(),
        language: client.language.name().to_string(),
        version: client.version,
    }
}

pub fn consumer_connections(broker: &Broker, request: &RemotingCommand) -> RemotingCommand {
    let h: GetConsumerConnectionListRequestHeader = header!(request);
    let Some(group) = broker.clients.consumer_group(&h.consumer_group) else {
        return reply(
            request,
            ResponseCode::ConsumerNotOnline,
            format!("the consumer group[{}] not online", h.consumer_group),
        );
    };
    let answer = ConsumerConnection {
        connection_set: group.clients.values().map(connection).collect(),
        subscription_table: group
            .subscriptions
            .iter()
            .map(|(topic, subscribed)| (topic.clone(), subscribed.data.clone()))
            .collect(),
        consume_type: group.consume_type,
        message_model: group.message_model,
        consume_from_where: group.consume_from_where,
    };
    success(request).with_body(body::to_json(&answer))
}

pub fn producer_connections(broker: &Broker, request: &RemotingCommand) -> RemotingCommand {
    let h: GetProducerConnectionListRequestHeader = header!(request);
    let clients = broker.clients.producer_group(&h.producer_group);
    if clients.is_empty() {
        return reply(
            request,
            ResponseCode::SystemError,
            format!("the producer group[{}] not exist", h.producer_group),
        );
    }
    success(request).with_body(body::to_json(&ProducerConnection {
        connection_set: clients.iter().map(connection).collect(),
    }))
}

/// Java's `Broker2Client.resetOffset`: for each write queue, the first offset stored at or
/// after `timestamp` (-1: the max offset); without `isForce` an offset only moves back. The
/// group must have an offset on every queue and be online; the new offsets are committed
/// here too and pushed to every client of the group, which rewinds at once.
pub fn reset_offset(broker: &Broker, request: &RemotingCommand) -> RemotingCommand {
    let h: ResetOffsetRequestHeader = header!(request);
    let Some(topic) = broker.topics.get(&h.topic) else {
        return reply(
            request,
            ResponseCode::SystemError,
            format!(
                "[reset-offset] reset offset failed, no topic in this broker. topic={}",
                h.topic
            ),
        );
    };
    let store = &broker.store;
    let mut offsets: BTreeMap<MessageQueue, i64> = BTreeMap::new();
    let one_queue = h.queue_id.filter(|id| *id >= 0).zip(h.offset);
    for queue_id in 0..topic.write_queue_nums {
        if let Some((only, offset)) = one_queue {
            if queue_id == only {
                offsets.insert(queue(broker, &h.topic, queue_id), offset.max(0));
            }
            continue;
        }
        let Some(consumer_offset) = broker.offsets.query(&h.topic, &h.group, queue_id) else {
            return reply(
                request,
                ResponseCode::SystemError,
                format!("THe consumer group <{}> not exist", h.group),
            );
        };
        let by_time = if h.timestamp == -1 {
            store.max_offset(&h.topic, queue_id)
        } else {
            store.offset_by_timestamp(&h.topic, queue_id, h.timestamp)
        }
        .max(0);
        let offset = if h.is_force || by_time < consumer_offset {
            by_time
        } else {
            consumer_offset
        };
        offsets.insert(queue(broker, &h.topic, queue_id), offset);
    }
    let clients: Vec<ClientInfo> = broker
        .clients
        .consumer_group(&h.group)
        .map(|g| g.clients.into_values().collect())
        .unwrap_or_default();
    if clients.is_empty() && one_queue.is_none() {
        return reply(
            request,
            ResponseCode::ConsumerNotOnline,
            format!(
                "Consumer not online, so can not reset offset, Group: {} Topic: {} Timestamp: {}",
                h.group, h.topic, h.timestamp
            ),
        );
    }
    for (queue, offset) in &offsets {
        broker
            .offsets
            .commit(&queue.topic, &h.group, queue.queue_id, *offset);
    }
    let body = admin::encode(&ResetOffsetBody {
        offset_table: offsets,
    });
    for client in &clients {
        let mut notice = RemotingCommand::request(
            RequestCode::ResetConsumerClientOffset,
            &ResetOffsetRequestHeader {
                topic: h.topic.clone(),
                group: h.group.clone(),
                timestamp: h.timestamp,
                is_force: h.is_force,
                queue_id: None,
                offset: None,
            },
        )
        .with_body(body.clone());
        notice.mark_oneway();
        client.channel.send_request(notice);
    }
    info!(group = %h.group, topic = %h.topic, timestamp = h.timestamp, clients = clients.len(), "consumer offsets reset");
    success(request).with_body(body)
}

/// CLONE_GROUP_OFFSET, as Apache's `cloneGroupOffset`: the destination group takes the
/// source group's offsets on the topic (or on every topic the source has offsets on),
/// skipping topics this broker does not have and, unless `offline`, topics an online source
/// group does not subscribe to.
pub fn clone_group_offset(broker: &Broker, request: &RemotingCommand) -> RemotingCommand {
    let h: CloneGroupOffsetRequestHeader = header!(request);
    let topics = match h.topic.as_deref().filter(|t| !t.trim().is_empty()) {
        Some(topic) => vec![topic.to_string()],
        None => broker.offsets.topics_of_group(&h.src_group),
    };
    let online = broker.clients.consumer_group(&h.src_group);
    for topic in topics {
        if broker.topics.get(&topic).is_none() {
            continue;
        }
        let unsubscribed = online
            .as_ref()
            .is_some_and(|group| !group.subscriptions.contains_key(&topic));
        if !h.offline.unwrap_or(false) && unsubscribed {
            continue;
        }
        broker
            .offsets
            .clone_offsets(&topic, &h.src_group, &h.dest_group);
        info!(src = %h.src_group, dest = %h.dest_group, %topic, "group offsets cloned");
    }
    success(request)
}
