//! `rocketry migrate`: moving from Kafka (the `migrate` crate does the work).

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, UNIX_EPOCH};

use anyhow::Context;
use broker::health::Readiness;
use broker::http::Endpoint;
use broker::metrics::ExporterType;
use clap::{Args, Subcommand};

#[derive(Subcommand)]
pub enum MigrateCommand {
    /// Copy a Kafka topic into a Rocketry topic (partition p to queue p) and keep copying.
    /// Key goes to KEYS, headers to user properties, and the source partition, offset and
    /// timestamp to KAFKA_* properties. Restarts resume from what Rocketry already holds,
    /// so a killed mirror skips nothing, and repeats nothing unless the broker held a write
    /// past the 3 s request timeout (docs/migration.md, "Restarts").
    Mirror {
        #[command(flatten)]
        endpoints: EndpointArgs,
        /// Most records in one Rocketry batch.
        #[arg(long, default_value_t = 256)]
        batch: usize,
        /// Serve /metrics (copied records and lag per partition), /livez and /readyz here,
        /// `host:port`.
        #[arg(long)]
        metrics_addr: Option<String>,
    },
    /// Compare a Kafka topic with its Rocketry copy, window by window: record counts and a
    /// digest over offsets, keys and values, per partition. Prints one line per window and
    /// partition; exits 1 when any differs.
    Parity {
        #[command(flatten)]
        endpoints: EndpointArgs,
        /// Start of the first window: RFC 3339 (`2026-12-01T00:00:00Z`) or milliseconds
        /// since the epoch.
        #[arg(long)]
        from: String,
        /// End of the last window (exclusive), as --from; default now.
        #[arg(long)]
        to: Option<String>,
        /// Window length (`1h`, `1day`, `30s`).
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        window: Duration,
    },
    /// Move a stopped Kafka consumer group to Rocketry: each partition's committed offset
    /// becomes the Rocketry group's offset on the partition's queue, found exactly through the
    /// source offsets the mirror's copies carry, once the mirror has copied that far.
    /// Refused while either group has live consumers.
    Cutover(GroupArgs),
    /// Move a stopped Rocketry consumer group back to Kafka: the reverse translation, committed
    /// to the Kafka group. Refused while either group has live consumers.
    Rollback(GroupArgs),
}

#[derive(Args)]
pub struct GroupArgs {
    #[command(flatten)]
    endpoints: EndpointArgs,
    /// The Kafka consumer group.
    #[arg(long)]
    consumer_group: String,
    /// The Rocketry consumer group; default: the Kafka group's name.
    #[arg(long)]
    rocketry_group: Option<String>,
    /// How long a cutover waits for the mirror to copy up to the group's position.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    mirror_wait: Duration,
}

impl GroupArgs {
    fn group_move(self) -> anyhow::Result<migrate::GroupMove> {
        Ok(migrate::GroupMove {
            endpoints: self.endpoints.endpoints()?,
            rocketry_group: self
                .rocketry_group
                .unwrap_or_else(|| self.consumer_group.clone()),
            kafka_group: self.consumer_group,
            mirror_wait: self.mirror_wait,
        })
    }
}

/// The two ends of a migration, as every `migrate` command names them.
#[derive(Args)]
pub struct EndpointArgs {
    /// Kafka bootstrap servers, `host:port,host:port`.
    #[arg(long, env = "KAFKA_BOOTSTRAP_SERVERS")]
    bootstrap_servers: String,
    /// The Kafka topic.
    #[arg(long)]
    source_topic: String,
    /// Rocketry name servers, `host:port;host:port`.
    #[arg(long, short = 'n', env = "NAMESRV_ADDR")]
    namesrv: String,
    /// The Rocketry topic; the mirror creates it with one queue per partition when missing.
    /// Default: the source topic's name.
    #[arg(long)]
    target_topic: Option<String>,
    /// The Kafka consumer group the migration commits its positions under, so Kafka's tools
    /// show its lag (nothing resumes from these).
    #[arg(long, default_value = "rocketry-mirror")]
    group: String,
    /// More librdkafka settings, `name=value`; repeatable.
    #[arg(long = "kafka-config", value_name = "NAME=VALUE")]
    kafka_config: Vec<String>,
    /// A folder whose every file is a librdkafka setting: the file's name, its content (a
    /// mounted Secret, so passwords stay off the command line). Files starting with `.` are
    /// skipped (a Secret volume's own links).
    #[arg(long, value_name = "DIR")]
    kafka_config_dir: Option<PathBuf>,
}

impl EndpointArgs {
    fn endpoints(self) -> anyhow::Result<migrate::Endpoints> {
        let mut kafka = HashMap::from([("bootstrap.servers".to_string(), self.bootstrap_servers)]);
        for setting in &self.kafka_config {
            let (name, value) = setting
                .split_once('=')
                .with_context(|| format!("--kafka-config {setting:?} is not NAME=VALUE"))?;
            kafka.insert(name.to_string(), value.to_string());
        }
        if let Some(dir) = &self.kafka_config_dir {
            for entry in
                std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?
            {
                let path = entry?.path();
                let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                    continue;
                };
                if name.starts_with('.') || !path.is_file() {
                    continue;
                }
                let value = std::fs::read_to_string(&path)
                    .with_context(|| format!("reading {}", path.display()))?;
                kafka.insert(name.to_string(), value);
            }
        }
        Ok(migrate::Endpoints {
            kafka,
            group: self.group,
            target_topic: self
                .target_topic
                .unwrap_or_else(|| self.source_topic.clone()),
            source_topic: self.source_topic,
            namesrv: self.namesrv,
        })
    }
}

/// Milliseconds since the epoch of `text`: RFC 3339, or a number of milliseconds.
fn time_ms(text: &str) -> anyhow::Result<i64> {
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(ms);
    }
    let at = humantime::parse_rfc3339_weak(text)
        .with_context(|| format!("{text:?} is neither RFC 3339 nor milliseconds"))?;
    Ok(at.duration_since(UNIX_EPOCH)?.as_millis() as i64)
}

pub async fn run(command: MigrateCommand) -> anyhow::Result<()> {
    match command {
        MigrateCommand::Mirror {
            endpoints,
            batch,
            metrics_addr,
        } => {
            anyhow::ensure!(batch > 0, "--batch must be at least 1");
            let registry = prometheus::Registry::new();
            let _endpoint = match metrics_addr {
                Some(addr) => Some(
                    Endpoint::start(
                        &addr,
                        ExporterType::Prom,
                        registry.clone(),
                        Readiness::Listening,
                    )
                    .await?,
                ),
                None => None,
            };
            migrate::mirror(migrate::MirrorConfig {
                endpoints: endpoints.endpoints()?,
                registry,
                batch,
                batch_bytes: 1 << 20,
            })
            .await?;
            Ok(())
        }
        MigrateCommand::Parity {
            endpoints,
            from,
            to,
            window,
        } => {
            let report = migrate::parity(&migrate::ParityConfig {
                endpoints: endpoints.endpoints()?,
                from_ms: time_ms(&from)?,
                to_ms: to.as_deref().map_or(Ok(migrate::now_ms()), time_ms)?,
                window,
            })
            .await?;
            for window in &report.windows {
                println!("{window}");
            }
            let mismatched = report.mismatches().count();
            println!(
                "parity: {} of {} windows clean",
                report.windows.len() - mismatched,
                report.windows.len()
            );
            anyhow::ensure!(mismatched == 0, "{mismatched} windows differ");
            Ok(())
        }
        MigrateCommand::Cutover(group) => {
            let group = group.group_move()?;
            print_moves("cutover", &migrate::cutover(&group).await?, &group);
            Ok(())
        }
        MigrateCommand::Rollback(group) => {
            let group = group.group_move()?;
            print_moves("rollback", &migrate::rollback(&group).await?, &group);
            Ok(())
        }
    }
}

fn print_moves(what: &str, moves: &[migrate::Translation], group: &migrate::GroupMove) {
    for translation in moves {
        println!("{translation}");
    }
    println!(
        "{what}: Kafka group {} and Rocketry group {} agree on {} partitions",
        group.kafka_group,
        group.rocketry_group,
        moves.len()
    );
}
