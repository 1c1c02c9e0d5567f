//! `bench copied`: how fast a copier (the Rocketry mirror, or Kafka's MirrorMaker 2) fills a
//! topic. It samples the topic's record count every 100 ms, Kafka's through its partitions'
//! high watermarks and Rocketry's through its queues' max offsets, until the count reaches
//! the target, and reads the copier's CPU from `/proc` over the same span.

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use serde::Serialize;

use crate::procstat;

/// Where the copy lands.
pub enum Side {
    Kafka { bootstrap_servers: String },
    Rocketry { namesrv: String },
}

/// What one copy measured.
#[derive(Debug, Serialize)]
pub struct Copied {
    pub records: u64,
    /// From the start of sampling to the first record seen (the copier's start-up).
    pub first_record_seconds: f64,
    /// From the first record seen to the last.
    pub copy_seconds: f64,
    /// Records a second over `copy_seconds`.
    pub records_per_second: f64,
    /// CPU seconds the copier's processes used from the first record to the last.
    pub copier_cpu_seconds: Option<f64>,
}

/// Samples `topic` on `side` until it holds `records`, or fails after `timeout`.
pub async fn copied(
    side: &Side,
    topic: &str,
    records: u64,
    copier_pids: &[u32],
    timeout: Duration,
) -> Result<Copied> {
    let mut count = Counter::new(side, topic).await?;
    let started = Instant::now();
    let mut first: Option<(Instant, u64, Option<procstat::Sample>)> = None;
    loop {
        if started.elapsed() > timeout {
            bail!("{topic} did not reach {records} records within {timeout:?}");
        }
        // A fresh topic answers "not leader" for a moment; a failed sample is skipped (the
        // timeout still bounds the wait).
        let now = match count.records().await {
            Ok(now) => now,
            Err(error) => {
                eprintln!("sampling {topic}: {error:#}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if now > 0 && first.is_none() {
            first = Some((Instant::now(), now, procstat::sample(copier_pids)));
        }
        if now >= records {
            let (first_at, first_count, first_cpu) = first.expect("set above");
            let copy_seconds = first_at.elapsed().as_secs_f64();
            let cpu = match (first_cpu, procstat::sample(copier_pids)) {
                (Some(a), Some(b)) if !copier_pids.is_empty() => {
                    Some((b.cpu_ticks - a.cpu_ticks) as f64 / procstat::clock_ticks_per_second())
                }
                _ => None,
            };
            return Ok(Copied {
                records: now,
                first_record_seconds: (first_at - started).as_secs_f64(),
                copy_seconds,
                records_per_second: (now - first_count) as f64 / copy_seconds.max(1e-9),
                copier_cpu_seconds: cpu,
            });
        }
        if !copier_pids.is_empty() && procstat::sample(copier_pids).is_none() {
            bail!("the copier exited with {topic} at {now} of {records} records");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

enum Counter {
    Kafka(BaseConsumer, String, usize),
    Rocketry(protocol::Client, String, i32),
}

impl Counter {
    async fn new(side: &Side, topic: &str) -> Result<Counter> {
        match side {
            Side::Kafka { bootstrap_servers } => {
                let consumer: BaseConsumer = ClientConfig::new()
                    .set("bootstrap.servers", bootstrap_servers)
                    .create()?;
                Ok(Counter::Kafka(consumer, topic.to_owned(), 0))
            }
            Side::Rocketry { namesrv } => {
                let namesrv = protocol::Client::connect(namesrv.as_str())
                    .await
                    .with_context(|| format!("connecting to {namesrv}"))?;
                let (_, broker) = crate::load::find_broker(&namesrv).await?;
                let client = protocol::Client::connect(broker.as_str()).await?;
                Ok(Counter::Rocketry(client, topic.to_owned(), 0))
            }
        }
    }

    /// Records the topic holds now; 0 while it does not exist yet.
    async fn records(&mut self) -> Result<u64> {
        match self {
            Counter::Kafka(consumer, topic, partitions) => {
                if *partitions == 0 {
                    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(5))?;
                    *partitions = metadata
                        .topics()
                        .first()
                        .map_or(0, |t| t.partitions().len());
                    if *partitions == 0 {
                        return Ok(0);
                    }
                }
                let mut total = 0;
                for partition in 0..*partitions as i32 {
                    let (_, high) =
                        consumer.fetch_watermarks(topic, partition, Duration::from_secs(5))?;
                    total += high.max(0) as u64;
                }
                Ok(total)
            }
            Counter::Rocketry(client, topic, queues) => {
                if *queues == 0 {
                    match client
                        .get_all_topic_config()
                        .await?
                        .topic_config_table
                        .get(topic.as_str())
                    {
                        Some(config) => *queues = config.write_queue_nums,
                        None => return Ok(0),
                    }
                }
                let mut total = 0;
                for queue in 0..*queues {
                    total += client.get_max_offset(topic, queue).await?.max(0) as u64;
                }
                Ok(total)
            }
        }
    }
}
