//! What the operator asks of a cluster's brokers and name servers, through the protocol
//! crate's client as any RocketMQ admin tool would: fence and unfence a group's writes at the
//! name servers (mqadmin wipeWritePerm / addWritePerm), read how many messages a broker has
//! stored and how many its consumer groups have not read, copy topics and subscription groups
//! to a new group, and hand a broker a new name-server list.
//!
//! Every call is bounded: a broker or name server that does not answer is reported as such,
//! and never holds up a reconcile for longer than [`CALL_TIMEOUT`].

use std::future::Future;
use std::time::Duration;

use futures::future::join_all;
use protocol::acl::Credentials;
use protocol::body::{SubscriptionGroupConfig, TopicConfig};
use protocol::client::ClientTls;
use protocol::header::CreateTopicRequestHeader;
use protocol::Client;

use crate::roll::Role;
use crate::{Error, Result};

/// Bound on one connect plus request; a pod being deleted or not yet serving answers neither.
pub(crate) const CALL_TIMEOUT: Duration = Duration::from_secs(4);

/// Consumer groups the broker or RocketMQ's tools create for themselves; their offsets say
/// nothing about whether an application has read a group's messages.
const SYSTEM_GROUP_PREFIXES: &[&str] = &["CID_RMQ_SYS_", "TOOLS_CONSUMER", "FILTERSRV_CONSUMER"];

/// How the operator reaches a cluster: signed with its own account when the cluster has an
/// ACL, over TLS when it serves TLS (see `credentials`).
#[derive(Clone, Debug, Default)]
pub struct Access {
    pub credentials: Option<Credentials>,
    pub tls: Option<ClientTls>,
}

/// Connects to `addr` and runs `call` with the connection, within [`CALL_TIMEOUT`].
async fn with_client<T, F, Fut>(
    action: &'static str,
    addr: &str,
    access: &Access,
    call: F,
) -> Result<T>
where
    F: FnOnce(Client) -> Fut,
    Fut: Future<Output = protocol::Result<T>>,
{
    with_client_within(action, addr, access, CALL_TIMEOUT, call).await
}

/// [`with_client`] bounded by `limit` instead, for a call that waits on purpose.
async fn with_client_within<T, F, Fut>(
    action: &'static str,
    addr: &str,
    access: &Access,
    limit: Duration,
    call: F,
) -> Result<T>
where
    F: FnOnce(Client) -> Fut,
    Fut: Future<Output = protocol::Result<T>>,
{
    let error = |reason: String| Error::Admin {
        action,
        addr: addr.to_string(),
        reason,
    };
    let attempt = async {
        let client = Client::connect_with_tls(addr, access.tls.as_ref()).await?;
        client.set_default_timeout(CALL_TIMEOUT);
        if let Some(credentials) = &access.credentials {
            client.set_credentials(credentials.clone());
        }
        call(client).await
    };
    match tokio::time::timeout(limit, attempt).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(source)) => Err(error(source.to_string())),
        Err(_) => Err(error(format!("no answer within {limit:?}"))),
    }
}

/// How a fence (or its undo) went at each name server.
#[derive(Debug, Default)]
pub struct FenceReport {
    /// Name servers that took it.
    pub reached: usize,
    /// Why each of the others did not.
    pub failures: Vec<String>,
}

/// WIPE_WRITE_PERM_OF_BROKER (`wipe`) or ADD_WRITE_PERM_OF_BROKER at every name server, all at
/// once. Producers stop sending to the group when they next refresh its routes (the Java
/// client does so every 30 s); consumers keep reading from it.
pub async fn set_write_perm(
    access: &Access,
    name_servers: &[String],
    broker_name: &str,
    wipe: bool,
) -> FenceReport {
    let action = if wipe {
        "wipe the write permission"
    } else {
        "give back the write permission"
    };
    let calls = name_servers.iter().map(|addr| {
        with_client(action, addr, access, |client| async move {
            if wipe {
                client.wipe_write_perm_of_broker(broker_name).await
            } else {
                client.add_write_perm_of_broker(broker_name).await
            }
        })
    });
    let mut report = FenceReport::default();
    for result in join_all(calls).await {
        match result {
            Ok(_) => report.reached += 1,
            Err(error) => report.failures.push(error.to_string()),
        }
    }
    report
}

/// The broker's `msgPutTotalTodayNow`: messages it has stored since midnight. It only moves
/// while someone sends, so producers have left a fenced broker once it stands still.
pub async fn put_total(access: &Access, broker: &str) -> Result<i64> {
    RuntimeInfo::read(access, broker)
        .await?
        .figure("msgPutTotalTodayNow")
}

/// A replica's part in its replicated group, as its runtime info tells it (Rocketry's own
/// keys, docs/replication.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Standing {
    /// `Leader` or `Follower`; `Alone` for a broker that runs without replication (a group
    /// growing from one broker into replicas, before that broker restarts as the first).
    pub role: Role,
    /// The end of its CommitLog: a follower as far as its leader has caught up.
    pub max_offset: i64,
    /// Sends it passed on to the leader since it started: the count stands still once
    /// producers have found the new leader.
    pub passed_on: i64,
}

pub async fn standing(access: &Access, broker: &str) -> Result<Standing> {
    let info = RuntimeInfo::read(access, broker).await?;
    let max_offset = info.figure("commitLogMaxOffset")?;
    if !info.table.contains_key("replicaRole") {
        return Ok(Standing {
            role: Role::Alone,
            max_offset,
            passed_on: 0,
        });
    }
    Ok(Standing {
        role: match info.text("replicaRole")? {
            "leader" => Role::Leader,
            _ => Role::Follower,
        },
        max_offset,
        passed_on: info.figure("sendsPassedOnToLeader")?,
    })
}

/// Hands the leadership of `leader`'s group to the follower furthest along
/// (ROCKETRY_TRANSFER_LEADER); answers with the new leader (`nX`) once it leads.
pub async fn transfer_leader(access: &Access, leader: &str) -> Result<String> {
    with_client_within(
        "transfer the leadership",
        leader,
        access,
        TRANSFER_TIMEOUT,
        |client| async move { client.transfer_leader(None).await },
    )
    .await
}

/// Longer than the broker gives the new leader's election.
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(20);

/// GET_BROKER_RUNTIME_INFO's table, with the broker it came from for errors.
struct RuntimeInfo {
    broker: String,
    table: std::collections::BTreeMap<String, String>,
}

impl RuntimeInfo {
    async fn read(access: &Access, broker: &str) -> Result<RuntimeInfo> {
        let table = with_client(
            "read the runtime info",
            broker,
            access,
            |client| async move { client.get_broker_runtime_info().await },
        )
        .await?
        .table;
        Ok(RuntimeInfo {
            broker: broker.to_string(),
            table,
        })
    }

    fn text(&self, key: &str) -> Result<&str> {
        self.table
            .get(key)
            .map(|value| value.trim())
            .ok_or_else(|| Error::Admin {
                action: "read the runtime info",
                addr: self.broker.clone(),
                reason: format!("the answer has no {key}"),
            })
    }

    fn figure(&self, key: &str) -> Result<i64> {
        self.text(key)?.parse().map_err(|_| Error::Admin {
            action: "read the runtime info",
            addr: self.broker.clone(),
            reason: format!("{key} is not a number"),
        })
    }
}

/// Messages on `broker` that its consumer groups have not consumed: over every group with
/// offsets there (GET_BROKER_CONSUME_STATS), the broker's max offset minus the group's
/// committed offset, queue by queue.
pub async fn backlog(access: &Access, broker: &str) -> Result<i64> {
    let stats = with_client(
        "read the consume stats",
        broker,
        access,
        |client| async move { client.get_broker_consume_stats(false).await },
    )
    .await?;
    Ok(stats
        .consume_stats_list
        .iter()
        .flat_map(|groups| groups.iter())
        .filter(|(group, _)| !is_system_group(group))
        .flat_map(|(_, per_topic)| per_topic.iter())
        .flat_map(|stats| stats.offset_table.values())
        .map(|offsets| (offsets.broker_offset - offsets.consumer_offset.max(0)).max(0))
        .sum())
}

fn is_system_group(group: &str) -> bool {
    SYSTEM_GROUP_PREFIXES
        .iter()
        .any(|prefix| group.starts_with(prefix))
}

/// What a copy to a new group made.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Copied {
    pub topics: usize,
    pub groups: usize,
}

/// Creates on `target` every topic and subscription group `source` has and `target` lacks.
/// Topics a broker makes for itself (its own brokerName topic) are left out; what `target`
/// already has is left as it is.
pub async fn copy_topics(
    access: &Access,
    source: &str,
    source_name: &str,
    target: &str,
) -> Result<Copied> {
    let (topics, groups) = with_client("read the topics", source, access, |client| async move {
        Ok((
            client.get_all_topic_config().await?,
            client.get_all_subscription_groups().await?,
        ))
    })
    .await?;
    with_client("copy the topics", target, access, |client| async move {
        let have = client.get_all_topic_config().await?.topic_config_table;
        let have_groups = client
            .get_all_subscription_groups()
            .await?
            .subscription_group_table;
        let mut copied = Copied::default();
        for (name, config) in &topics.topic_config_table {
            if name == source_name || have.contains_key(name) {
                continue;
            }
            client.create_topic(&create_topic_header(config)).await?;
            copied.topics += 1;
        }
        for (name, config) in &groups.subscription_group_table {
            if is_system_group(name) || have_groups.contains_key(name) {
                continue;
            }
            client.create_subscription_group(config).await?;
            copied.groups += 1;
        }
        Ok(copied)
    })
    .await
}

fn create_topic_header(config: &TopicConfig) -> CreateTopicRequestHeader {
    let attributes = (!config.attributes.is_empty()).then(|| {
        config
            .attributes
            .iter()
            .map(|(key, value)| format!("+{key}={value}"))
            .collect::<Vec<_>>()
            .join(",")
    });
    CreateTopicRequestHeader {
        topic: config.topic_name.clone(),
        default_topic: "TBW102".to_string(),
        read_queue_nums: config.read_queue_nums,
        write_queue_nums: config.write_queue_nums,
        perm: config.perm,
        topic_filter_type: config.topic_filter_type.name().to_string(),
        topic_sys_flag: Some(config.topic_sys_flag),
        order: config.order,
        attributes,
        force: None,
    }
}

/// `topic`'s config on `broker`; `None` when the broker does not have it.
pub async fn topic_config(
    access: &Access,
    broker: &str,
    topic: &str,
) -> Result<Option<TopicConfig>> {
    let mut all = with_client("read the topics", broker, access, |client| async move {
        client.get_all_topic_config().await
    })
    .await?;
    Ok(all.topic_config_table.remove(topic))
}

/// UPDATE_AND_CREATE_TOPIC with `config`, as `mqadmin updateTopic -b` does.
pub async fn put_topic(access: &Access, broker: &str, config: &TopicConfig) -> Result<()> {
    let header = create_topic_header(config);
    with_client("update the topic", broker, access, |client| async move {
        client.create_topic(&header).await
    })
    .await
}

/// `group`'s subscription group config on `broker`; `None` when the broker has none.
pub async fn subscription_group(
    access: &Access,
    broker: &str,
    group: &str,
) -> Result<Option<SubscriptionGroupConfig>> {
    let mut all = with_client("read the groups", broker, access, |client| async move {
        client.get_all_subscription_groups().await
    })
    .await?;
    Ok(all.subscription_group_table.remove(group))
}

/// UPDATE_AND_CREATE_SUBSCRIPTIONGROUP with `config`.
pub async fn put_subscription_group(
    access: &Access,
    broker: &str,
    config: &SubscriptionGroupConfig,
) -> Result<()> {
    with_client("update the group", broker, access, |client| async move {
        client.create_subscription_group(config).await
    })
    .await
}

/// What is left to read in a topic's queues from `first_queue` on, on one broker.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Unread {
    /// Messages some group has not consumed; with no group at all, every message held there.
    pub messages: i64,
    /// The groups that consume the topic here (online or with offsets).
    pub groups: Vec<String>,
}

/// The groups that consume `topic` on `broker`, online or with offsets
/// (QUERY_TOPIC_CONSUME_BY_WHO), but the tools' own.
pub async fn consuming_groups(access: &Access, broker: &str, topic: &str) -> Result<Vec<String>> {
    with_client(
        "read who consumes the topic",
        broker,
        access,
        |client| async move {
            Ok(application_groups(
                client.query_topic_consume_by_who(topic).await?,
            ))
        },
    )
    .await
}

fn application_groups(groups: protocol::body::admin::GroupList) -> Vec<String> {
    groups
        .group_list
        .into_iter()
        .filter(|group| !is_system_group(group))
        .collect()
}

/// Messages of `topic` on `broker`, in queues `first_queue` and above, that not every group
/// has consumed: over the groups that consume the topic (QUERY_TOPIC_CONSUME_BY_WHO), the
/// queue's max offset minus the group's committed offset (GET_CONSUME_STATS, which covers
/// every readable queue, the leaving ones too). When no group consumes the topic, a message
/// held there would be stranded for any group that comes later, so each counts.
pub async fn unread_from(
    access: &Access,
    broker: &str,
    topic: &str,
    first_queue: i32,
) -> Result<Unread> {
    with_client(
        "read the leaving queues",
        broker,
        access,
        |client| async move {
            let groups = application_groups(client.query_topic_consume_by_who(topic).await?);
            let mut unread = Unread {
                messages: 0,
                groups: groups.clone(),
            };
            if groups.is_empty() {
                let stats = client.get_topic_stats(topic).await?;
                unread.messages = stats
                    .offset_table
                    .iter()
                    .filter(|(queue, _)| queue.queue_id >= first_queue)
                    .map(|(_, offsets)| (offsets.max_offset - offsets.min_offset).max(0))
                    .sum();
                return Ok(unread);
            }
            for group in &groups {
                let stats = client.get_consume_stats(group, Some(topic)).await?;
                unread.messages += stats
                    .offset_table
                    .iter()
                    .filter(|(queue, _)| queue.topic == topic && queue.queue_id >= first_queue)
                    .map(|(_, offsets)| {
                        (offsets.broker_offset - offsets.consumer_offset.max(0)).max(0)
                    })
                    .sum::<i64>();
            }
            Ok(unread)
        },
    )
    .await
}

/// GET_MAX_OFFSET of each of `queues` of `topic` on `broker`: the next offset each will write.
pub async fn max_offsets(
    access: &Access,
    broker: &str,
    topic: &str,
    queues: std::ops::Range<i32>,
) -> Result<Vec<i64>> {
    with_client(
        "read the max offsets",
        broker,
        access,
        |client| async move {
            let mut offsets = Vec::new();
            for queue in queues {
                offsets.push(client.get_max_offset(topic, queue).await?);
            }
            Ok(offsets)
        },
    )
    .await
}

/// A consumer group's load on one topic on one broker.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct GroupLoad {
    /// Messages not yet consumed.
    pub lag: i64,
    /// Messages consumed per second lately, as the broker counts them (Apache's brokers do;
    /// Rocketry's report 0).
    pub consume_tps: f64,
    /// The group's committed offsets, summed over the topic's queues here.
    pub committed: i64,
    /// Store time (ms since the epoch) of the oldest message the group has consumed last on
    /// a queue that still lags: the lag's age is at most now minus this.
    pub oldest_consumed_ms: Option<i64>,
    /// Readable queues of the topic here.
    pub queues: i32,
    /// Consumers of the group connected to this broker.
    pub online: usize,
}

/// `group`'s lag, rate and consumers on `topic` at `broker` (GET_CONSUME_STATS and
/// GET_CONSUMER_CONNECTION_LIST, as `mqadmin consumerProgress` and `consumerConnection`).
pub async fn group_load(
    access: &Access,
    broker: &str,
    group: &str,
    topic: &str,
) -> Result<GroupLoad> {
    with_client(
        "read the group's progress",
        broker,
        access,
        |client| async move {
            let online = match client.get_consumer_connections(group).await {
                Ok(connections) => connections.connection_set.len(),
                // CONSUMER_NOT_ONLINE: no client of the group is connected.
                Err(protocol::Error::Remote { code: 206, .. }) => 0,
                Err(error) => return Err(error),
            };
            let stats = match client.get_consume_stats(group, Some(topic)).await {
                Ok(stats) => stats,
                // A group that has never consumed the topic here has no stats yet.
                Err(protocol::Error::Remote { .. }) => Default::default(),
                Err(error) => return Err(error),
            };
            let mut load = GroupLoad {
                online,
                consume_tps: stats.consume_tps,
                ..GroupLoad::default()
            };
            for (queue, offsets) in &stats.offset_table {
                if queue.topic != topic {
                    continue;
                }
                load.queues += 1;
                let lag = (offsets.broker_offset - offsets.consumer_offset.max(0)).max(0);
                load.lag += lag;
                if lag > 0 && offsets.last_timestamp > 0 {
                    load.oldest_consumed_ms = Some(
                        load.oldest_consumed_ms
                            .map_or(offsets.last_timestamp, |t| t.min(offsets.last_timestamp)),
                    );
                }
            }
            Ok(load)
        },
    )
    .await
}

/// The broker's current `namesrvAddr`, and UPDATE_BROKER_CONFIG to `wanted` when it differs,
/// as `mqadmin updateBrokerConfig -k namesrvAddr` does: the broker registers with the new
/// name servers and leaves the old ones without a restart.
pub async fn set_name_servers(access: &Access, broker: &str, wanted: &str) -> Result<bool> {
    with_client(
        "set the name servers",
        broker,
        access,
        |client| async move {
            let config = client.get_broker_config().await?;
            let current = config
                .lines()
                .find_map(|line| line.strip_prefix("namesrvAddr="))
                .map(str::trim);
            if current == Some(wanted) {
                return Ok(false);
            }
            client
                .update_broker_config(&[("namesrvAddr", wanted)])
                .await?;
            Ok(true)
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::body::TopicFilterType;

    #[test]
    fn tool_groups_do_not_count_as_backlog() {
        assert!(is_system_group("TOOLS_CONSUMER"));
        assert!(is_system_group("CID_RMQ_SYS_TRANS"));
        assert!(!is_system_group("orders-consumer"));
    }

    #[test]
    fn a_copied_topic_keeps_its_queues_permission_order_and_attributes() {
        let config = TopicConfig {
            topic_name: "orders".into(),
            read_queue_nums: 8,
            write_queue_nums: 8,
            perm: 6,
            topic_filter_type: TopicFilterType::SingleTag,
            topic_sys_flag: 0,
            order: true,
            attributes: [("message.type".to_string(), "FIFO".to_string())].into(),
        };
        let header = create_topic_header(&config);
        assert_eq!(header.topic, "orders");
        assert_eq!((header.read_queue_nums, header.write_queue_nums), (8, 8));
        assert_eq!(header.perm, 6);
        assert!(header.order);
        assert_eq!(header.topic_filter_type, "SINGLE_TAG");
        assert_eq!(header.attributes.as_deref(), Some("+message.type=FIFO"));
    }

    #[tokio::test]
    async fn an_address_nobody_answers_is_an_error_not_a_hang() {
        // A port nothing listens on refuses at once; the error names what was attempted.
        let error = put_total(&Access::default(), "127.0.0.1:1")
            .await
            .unwrap_err();
        assert!(error.to_string().contains("127.0.0.1:1"), "{error}");
    }
}
