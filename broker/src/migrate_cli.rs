//! `rocketry migrate`: moving from Kafka (the `migrate` crate does the work).

use std::collections::HashMap;

use anyhow::Context;
use clap::{Args, Subcommand};

#[derive(Subcommand)]
pub enum MigrateCommand {
    /// Copy a Kafka topic into a Rocketry topic (partition p to queue p) and keep copying.
    /// Key goes to KEYS, headers to user properties, and the source partition, offset and
    /// timestamp to KAFKA_* properties. Restarts resume from what Rocketry already holds,
    /// so a killed mirror neither skips nor repeats a record (docs/migration.md).
    Mirror(MirrorArgs),
}

#[derive(Args)]
pub struct MirrorArgs {
    /// Kafka bootstrap servers, `host:port,host:port`.
    #[arg(long, env = "KAFKA_BOOTSTRAP_SERVERS")]
    bootstrap_servers: String,
    /// The Kafka topic to copy.
    #[arg(long)]
    source_topic: String,
    /// Rocketry name servers, `host:port;host:port`.
    #[arg(long, short = 'n', env = "NAMESRV_ADDR")]
    namesrv: String,
    /// The Rocketry topic to write; created with one queue per partition when missing.
    /// Default: the source topic's name.
    #[arg(long)]
    target_topic: Option<String>,
    /// The Kafka consumer group the mirror commits its positions under, so Kafka's tools
    /// show its lag (the mirror itself resumes from Rocketry, never from these).
    #[arg(long, default_value = "rocketry-mirror")]
    group: String,
    /// More librdkafka settings, `name=value` (security.protocol, sasl.*, ...); repeatable.
    #[arg(long = "kafka-config", value_name = "NAME=VALUE")]
    kafka_config: Vec<String>,
    /// Most records in one Rocketry batch.
    #[arg(long, default_value_t = 256)]
    batch: usize,
}

pub async fn run(command: MigrateCommand) -> anyhow::Result<()> {
    match command {
        MigrateCommand::Mirror(args) => {
            let mut kafka = HashMap::from([(
                "bootstrap.servers".to_string(),
                args.bootstrap_servers.clone(),
            )]);
            for setting in &args.kafka_config {
                let (name, value) = setting
                    .split_once('=')
                    .with_context(|| format!("--kafka-config {setting:?} is not NAME=VALUE"))?;
                kafka.insert(name.to_string(), value.to_string());
            }
            anyhow::ensure!(args.batch > 0, "--batch must be at least 1");
            let target_topic = args
                .target_topic
                .unwrap_or_else(|| args.source_topic.clone());
            migrate::mirror(migrate::MirrorConfig {
                kafka,
                group: args.group,
                source_topic: args.source_topic,
                namesrv: args.namesrv,
                target_topic,
                batch: args.batch,
                batch_bytes: 1 << 20,
            })
            .await?;
            Ok(())
        }
    }
}
