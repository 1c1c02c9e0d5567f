//! `rocketry admin broker ...`: requests about one broker, addressed by `host:port`, as
//! mqadmin's `brokerConsumeStats -b`, `getBrokerConfig -b` and `updateBrokerConfig -b`.

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
    }
}
