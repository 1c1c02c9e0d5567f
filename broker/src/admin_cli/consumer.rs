//! `rocketry admin consumer ...`: what a consumer group is doing, from the brokers that
//! serve it: progress per queue, lag per topic, online clients.

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use clap::Subcommand;
use protocol::{Client, ResponseCode};
use serde_json::{json, Value};

use super::table::Table;
use super::{connect, group_masters, millis, route_masters, Answer};

#[derive(Subcommand)]
pub enum ConsumerCommand {
    /// Broker offset, consumer offset and lag per queue.
    Progress {
        #[arg(short, long)]
        group: String,
    },
    /// Messages the group has not committed, per topic: the figures the metrics endpoint
    /// exports as rocketmq_consumer_lag_messages, ready_messages and inflight_messages,
    /// summed over the brokers.
    Lag {
        #[arg(short, long)]
        group: String,
        /// Only this topic (its route finds the brokers); default every topic the group
        /// has offsets on.
        #[arg(short, long)]
        topic: Option<String>,
    },
    /// The group's online clients and subscriptions.
    Connections {
        #[arg(short, long)]
        group: String,
    },
}

pub async fn run(namesrv: &Client, command: ConsumerCommand) -> Result<Answer> {
    match command {
        ConsumerCommand::Progress { group } => {
            let mut table = Table::new([
                "topic",
                "broker",
                "queue",
                "broker offset",
                "consumer offset",
                "lag",
                "last consumed",
            ]);
            for (_, addr) in group_masters(namesrv, &group).await? {
                let stats = connect(&addr)
                    .await?
                    .get_consume_stats(&group, None)
                    .await?;
                for (queue, offsets) in stats.offset_table {
                    table.row([
                        queue.topic,
                        queue.broker_name,
                        queue.queue_id.to_string(),
                        offsets.broker_offset.to_string(),
                        offsets.consumer_offset.to_string(),
                        (offsets.broker_offset - offsets.consumer_offset).to_string(),
                        millis(offsets.last_timestamp),
                    ]);
                }
            }
            Ok(Answer::rows(table))
        }
        ConsumerCommand::Lag { group, topic } => {
            consumer_lag(namesrv, &group, topic.as_deref()).await
        }
        ConsumerCommand::Connections { group } => {
            let mut table = Table::new(["client id", "address", "language", "version"]);
            let mut found = false;
            for (_, addr) in group_masters(namesrv, &group).await? {
                match connect(&addr).await?.get_consumer_connections(&group).await {
                    Ok(connections) => {
                        found = true;
                        for c in connections.connection_set {
                            table.row([
                                c.client_id,
                                c.client_addr,
                                c.language,
                                c.version.to_string(),
                            ]);
                        }
                    }
                    Err(protocol::Error::Remote { code, .. })
                        if code == ResponseCode::ConsumerNotOnline.as_i32() => {}
                    Err(error) => return Err(error.into()),
                }
            }
            if !found {
                bail!("no consumer of group {group} is online");
            }
            Ok(Answer::rows(table))
        }
    }
}

/// Per topic: lag (max − committed), ready (max − pulled) and inflight (pulled −
/// committed), from each broker's GET_CONSUME_STATS, as the broker's lag gauges are.
async fn consumer_lag(namesrv: &Client, group: &str, topic: Option<&str>) -> Result<Answer> {
    let masters = match topic {
        Some(topic) => route_masters(&namesrv.get_route_info(topic).await?),
        None => group_masters(namesrv, group).await?,
    };
    let mut per_topic: BTreeMap<String, [i64; 3]> = BTreeMap::new();
    for (_, addr) in masters {
        let stats = connect(&addr)
            .await?
            .get_consume_stats(group, topic)
            .await?;
        for (queue, offsets) in stats.offset_table {
            let sums = per_topic.entry(queue.topic).or_default();
            sums[0] += offsets.broker_offset - offsets.consumer_offset;
            sums[1] += offsets.broker_offset - offsets.pull_offset;
            sums[2] += offsets.pull_offset - offsets.consumer_offset;
        }
    }
    let mut table = Table::new(["topic", "consumer group", "lag", "ready", "inflight"]);
    let mut rows = Vec::new();
    for (topic, [lag, ready, inflight]) in per_topic {
        table.row([
            topic.clone(),
            group.to_string(),
            lag.to_string(),
            ready.to_string(),
            inflight.to_string(),
        ]);
        rows.push(json!({
            "topic": topic,
            "consumer_group": group,
            "lag_messages": lag,
            "ready_messages": ready,
            "inflight_messages": inflight,
        }));
    }
    Ok(Answer {
        table,
        json: Value::Array(rows),
    })
}
