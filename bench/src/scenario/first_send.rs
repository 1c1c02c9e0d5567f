//! Time from a moment the caller names (the broker's launch) to the first message the broker
//! accepts: start-up time, or recovery time after a crash.
//!
//! It polls every 20 ms: the name server for a master broker, then the broker for creating the
//! topic, then one 1 KiB send; the figure is when that send is acknowledged.

use std::time::Duration;

use anyhow::{bail, Result};

use super::{Context, Scenario};
use crate::load::{find_broker, now_us};
use crate::report::{unix_ms, Report};
use protocol::header::{CreateTopicRequestHeader, SendMessageRequestHeader};
use protocol::Client;

pub struct FirstSend {
    pub namesrv: String,
    pub topic: String,
    /// The moment to measure from, in milliseconds since the Unix epoch.
    pub since_unix_ms: u64,
    pub timeout: Duration,
}

impl FirstSend {
    async fn try_once(&self) -> Result<()> {
        let namesrv = Client::connect(&self.namesrv).await?;
        namesrv.set_default_timeout(Duration::from_millis(500));
        let (broker_name, addr) = find_broker(&namesrv).await?;
        let broker = Client::connect(&addr).await?;
        broker.set_default_timeout(Duration::from_millis(2000));
        broker
            .create_topic(&CreateTopicRequestHeader::read_write(self.topic.clone(), 4))
            .await?;
        let header = SendMessageRequestHeader {
            producer_group: "bench_producer".into(),
            topic: self.topic.as_str().into(),
            default_topic: "TBW102".into(),
            default_topic_queue_nums: 4,
            queue_id: 0,
            born_timestamp: (now_us() / 1000) as i64,
            broker_name: Some(broker_name.into()),
            ..Default::default()
        };
        broker.send_message(header, vec![b'x'; 1024]).await?;
        Ok(())
    }
}

impl Scenario for FirstSend {
    fn name(&self) -> &'static str {
        "first-send"
    }

    async fn run(&self, ctx: &Context) -> Result<Report> {
        let mut report = ctx.report(self.name());
        let deadline = std::time::Instant::now() + self.timeout;
        let mut attempts = 0u64;
        loop {
            attempts += 1;
            match tokio::time::timeout(Duration::from_secs(3), self.try_once()).await {
                Ok(Ok(())) => break,
                Ok(Err(_)) | Err(_) => {
                    if std::time::Instant::now() > deadline {
                        bail!("no message accepted within {:?}", self.timeout);
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
        let ms = unix_ms().saturating_sub(self.since_unix_ms);
        report.metrics.insert("first_send_ms".into(), ms as f64);
        report.metrics.insert("attempts".into(), attempts as f64);
        if let Some(s) = crate::procstat::sample(&ctx.pids).filter(|_| !ctx.pids.is_empty()) {
            report
                .metrics
                .insert("vmrss_at_ready_mib".into(), s.vmrss_kib as f64 / 1024.0);
        }
        Ok(report)
    }
}
