//! Hostile clients, run against any broker so Rocketry's bounds can be quoted beside Apache
//! RocketMQ's on the same probe (docs/reliability.md, "Limits"):
//! - `pull-flood`: one client pipelines PULLs for ~256 KiB of stored messages each and
//!   never reads its socket; how much the broker grows, and whether a bystander is answered;
//! - `idle-connections`: many connections that go quiet; what each costs the broker.

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use bytes::BytesMut;
use protocol::header::{pull_sys_flag, PullMessageRequestHeader, SendMessageRequestHeader};
use protocol::{Client, RemotingCommand, RequestCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{Context, Scenario};
use crate::procstat;
use crate::report::Report;

const MIB: f64 = 1024.0 * 1024.0;

fn rss_kib(pids: &[u32]) -> Result<u64> {
    procstat::sample(pids)
        .map(|s| s.vmrss_kib)
        .context("the broker process is gone")
}

/// How long a new client waits for GET_MAX_OFFSET, or `None` past `bound`.
async fn bystander(broker: &str, topic: &str, bound: Duration) -> Option<Duration> {
    let started = Instant::now();
    let answered = tokio::time::timeout(bound, async {
        let client = Client::connect(broker).await?;
        client.get_max_offset(topic, 0).await
    })
    .await;
    matches!(answered, Ok(Ok(_))).then(|| started.elapsed())
}

pub struct PullFlood {
    pub namesrv: String,
    pub pulls: usize,
    pub seconds: f64,
}

impl Scenario for PullFlood {
    fn name(&self) -> &'static str {
        "pull-flood"
    }

    async fn run(&self, ctx: &Context) -> Result<Report> {
        if ctx.pids.is_empty() {
            bail!("pull-flood needs --pid");
        }
        let topic = "BenchPullFlood";
        let target = crate::load::prepare(&self.namesrv, topic, 1).await?;
        let producer = Client::connect(&target.broker_addr).await?;
        let body = vec![b'f'; 8 * 1024];
        for _ in 0..200 {
            let header = SendMessageRequestHeader {
                producer_group: "bench_flood_producer".into(),
                topic: topic.into(),
                default_topic: "TBW102".into(),
                default_topic_queue_nums: 1,
                queue_id: 0,
                born_timestamp: crate::load::now_us() as i64 / 1000,
                ..SendMessageRequestHeader::default()
            };
            producer.send_message(header, body.clone()).await?;
        }
        let header = PullMessageRequestHeader {
            consumer_group: "bench_flood_reader".into(),
            topic: topic.into(),
            queue_id: 0,
            queue_offset: 0,
            max_msg_nums: 32,
            sys_flag: pull_sys_flag::SUBSCRIPTION,
            subscription: Some("*".into()),
            sub_version: 0,
            ..Default::default()
        };
        let mut flood = BytesMut::new();
        for opaque in 0..self.pulls {
            let mut pull = RemotingCommand::request(RequestCode::PullMessage, &header);
            pull.opaque = opaque as i32;
            protocol::frame::encode(&pull, &mut flood)?;
        }

        let before = rss_kib(&ctx.pids)?;
        let stream = TcpStream::connect(&target.broker_addr).await?;
        let (_unread, mut requests) = stream.into_split();
        let writing = tokio::spawn(async move {
            // Blocks once the broker stops reading, or runs to the end if it never does.
            let _ = requests.write_all(&flood).await;
            requests
        });
        let started = Instant::now();
        let mut peak = before;
        let mut slowest: Option<Duration> = Some(Duration::ZERO);
        let mut survived = true;
        while started.elapsed() < Duration::from_secs_f64(self.seconds) {
            tokio::time::sleep(Duration::from_millis(500)).await;
            match rss_kib(&ctx.pids) {
                Ok(rss) => peak = peak.max(rss),
                Err(_) => {
                    survived = false;
                    break;
                }
            }
            let answered = bystander(&target.broker_addr, topic, Duration::from_secs(5)).await;
            slowest = slowest.zip(answered).map(|(a, b)| a.max(b));
        }
        writing.abort();
        let mut report = ctx.report(self.name());
        let m = &mut report.metrics;
        m.insert("flood_pulls".into(), self.pulls as f64);
        m.insert("flood_rss_before_mib".into(), before as f64 * 1024.0 / MIB);
        m.insert("flood_rss_peak_mib".into(), peak as f64 * 1024.0 / MIB);
        m.insert(
            "flood_rss_growth_mib".into(),
            (peak - before) as f64 * 1024.0 / MIB,
        );
        m.insert("flood_broker_survived".into(), survived as u8 as f64);
        m.insert(
            "flood_bystander_slowest_ms".into(),
            slowest.map_or(-1.0, |d| d.as_secs_f64() * 1000.0),
        );
        Ok(report)
    }
}

pub struct IdleConnections {
    pub namesrv: String,
    pub count: usize,
}

impl Scenario for IdleConnections {
    fn name(&self) -> &'static str {
        "idle-connections"
    }

    async fn run(&self, ctx: &Context) -> Result<Report> {
        if ctx.pids.is_empty() {
            bail!("idle-connections needs --pid");
        }
        let target = crate::load::prepare(&self.namesrv, "BenchIdle", 1).await?;
        // One connection first, so one-time costs are not charged to the measured ones.
        let warm = Client::connect(&target.broker_addr).await?;
        warm.get_max_offset("BenchIdle", 0).await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let before = rss_kib(&ctx.pids)?;
        let mut connections = Vec::with_capacity(self.count);
        let request = protocol::frame::encode_to_bytes(&RemotingCommand::request(
            RequestCode::GetMaxOffset,
            &protocol::header::GetMaxOffsetRequestHeader {
                topic: "BenchIdle".into(),
                queue_id: 0,
                ..Default::default()
            },
        ))?;
        for index in 0..self.count {
            let mut stream = TcpStream::connect(&target.broker_addr).await?;
            // Half speak once (a client between heartbeats), half never speak.
            if index % 2 == 0 {
                stream.write_all(&request).await?;
                let length = stream.read_u32().await? as usize;
                let mut frame = vec![0u8; length];
                stream.read_exact(&mut frame).await?;
            }
            connections.push(stream);
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let after = rss_kib(&ctx.pids)?;
        let mut report = ctx.report(self.name());
        let m = &mut report.metrics;
        m.insert("idle_connections".into(), self.count as f64);
        m.insert(
            "idle_connection_kib".into(),
            after.saturating_sub(before) as f64 / self.count as f64,
        );
        m.insert(
            "idle_connections_rss_before_mib".into(),
            before as f64 / 1024.0,
        );
        m.insert(
            "idle_connections_rss_after_mib".into(),
            after as f64 / 1024.0,
        );
        drop(connections);
        Ok(report)
    }
}
