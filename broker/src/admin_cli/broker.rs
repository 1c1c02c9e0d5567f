//! `rocketry admin broker ...`: requests about one broker, addressed by `host:port`, as
//! mqadmin's `brokerConsumeStats -b`, `brokerStatus -b`, `getBrokerConfig -b` and
//! `updateBrokerConfig -b`, and a replicated group's leadership transfer.

use anyhow::Result;
use clap::Subcommand;

use super::table::Table;
use super::{connect, millis, properties_table, Answer};

#[derive(Subcommand)]
pub enum BrokerCommand {
    /// Every consumer group's offsets and lag on every queue of this broker.
    ConsumeStats {
        /// The broker's address, `host:port`.
        #[arg(short = 'b', long)]
        broker_addr: String,
        /// Only ordered topics.
        #[arg(long)]
        order: bool,
    },
    /// The broker's runtime figures, as mqadmin's `brokerStatus` prints them, with
    /// Rocketry's own keys (a replica's role, Raft term and sends passed on to the leader).
    Status {
        #[arg(short = 'b', long)]
        broker_addr: String,
    },
    /// The broker's settings.
    Config {
        #[arg(short = 'b', long)]
        broker_addr: String,
    },
    /// Change one setting until the broker restarts (only the keys docs/configuration.md
    /// lists as changeable at run time), for example `brokerPermission` 4 to make the broker
    /// read-only.
    UpdateConfig {
        #[arg(short = 'b', long)]
        broker_addr: String,
        #[arg(short, long)]
        key: String,
        #[arg(short, long)]
        value: String,
    },
    /// Hand a replicated group's leadership to another replica, sent to the leader (the
    /// group's master in `cluster list`); answers once the new leader leads, which then
    /// registers as master. Before maintenance of the leader's host, so that it costs no
    /// election timeout.
    TransferLeader {
        /// The leader's address, `host:port`.
        #[arg(short = 'b', long)]
        broker_addr: String,
        /// The replica to lead, as `dLegerPeers` names it (`n1`); by default the follower
        /// whose log is furthest along.
        #[arg(long)]
        to: Option<String>,
    },
}

pub async fn run(command: BrokerCommand) -> Result<Answer> {
    match command {
        BrokerCommand::ConsumeStats { broker_addr, order } => {
            let stats = connect(&broker_addr)
                .await?
                .get_broker_consume_stats(order)
                .await?;
            let mut table = Table::new([
                "topic",
                "group",
                "broker",
                "queue",
                "broker offset",
                "consumer offset",
                "lag",
                "last consumed",
            ]);
            for groups in stats.consume_stats_list {
                for (group, per_topic) in groups {
                    for topic_stats in per_topic {
                        for (queue, offsets) in topic_stats.offset_table {
                            table.row([
                                queue.topic,
                                group.clone(),
                                queue.broker_name,
                                queue.queue_id.to_string(),
                                offsets.broker_offset.to_string(),
                                offsets.consumer_offset.to_string(),
                                (offsets.broker_offset - offsets.consumer_offset).to_string(),
                                millis(offsets.last_timestamp),
                            ]);
                        }
                    }
                }
            }
            Ok(Answer::rows(table))
        }
        BrokerCommand::Status { broker_addr } => {
            let runtime = connect(&broker_addr)
                .await?
                .get_broker_runtime_info()
                .await?;
            let mut table = Table::new(["key", "value"]);
            for (key, value) in runtime.table {
                table.row([key, value]);
            }
            Ok(Answer::rows(table))
        }
        BrokerCommand::Config { broker_addr } => {
            let text = connect(&broker_addr).await?.get_broker_config().await?;
            Ok(Answer::rows(properties_table(&text)))
        }
        BrokerCommand::UpdateConfig {
            broker_addr,
            key,
            value,
        } => {
            connect(&broker_addr)
                .await?
                .update_broker_config(&[(&key, &value)])
                .await?;
            Ok(Answer::done(format!("{key}={value} on {broker_addr}")))
        }
        BrokerCommand::TransferLeader { broker_addr, to } => {
            let leader = connect(&broker_addr)
                .await?
                .transfer_leader(to.as_deref())
                .await?;
            Ok(Answer::done(format!("{leader} leads the group")))
        }
    }
}
