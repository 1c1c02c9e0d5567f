//! A consumer catching up on a backlog from its first message: the consume rate when the data
//! comes from disk (after [`crate::page_cache::evict`] on a stopped broker) rather than from
//! the page cache. The report says how much of the data folder was cached when reading began,
//! so a warm read cannot pass for a cold one.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;

use super::{Context, Scenario};
use crate::load;
use crate::page_cache;
use crate::report::Report;

const MIB: f64 = 1024.0 * 1024.0;

pub struct ColdRead {
    pub namesrv: String,
    pub topic: String,
    pub queues: i32,
    pub consumers: usize,
    /// Messages the backlog holds.
    pub expect: u64,
    pub timeout: Duration,
    /// The broker's data folder, to report how much of it was cached at the start.
    pub data_dir: Option<PathBuf>,
}

impl Scenario for ColdRead {
    fn name(&self) -> &'static str {
        "cold-read"
    }

    async fn run(&self, ctx: &Context) -> Result<Report> {
        let mut report = ctx.report(self.name());
        if let Some(dir) = &self.data_dir {
            let at_start = page_cache::residency(dir)?;
            report
                .metrics
                .insert("data_mib".into(), at_start.total as f64 / MIB);
            report
                .metrics
                .insert("cached_at_start_mib".into(), at_start.cached as f64 / MIB);
        }
        let sampler = ctx.sampler();
        let read = load::read_backlog(
            &self.namesrv,
            &self.topic,
            self.queues,
            self.consumers,
            self.expect,
            self.timeout,
        )
        .await?;
        report.broker = sampler.finish();
        let elapsed = read.elapsed.as_secs_f64();
        report.elapsed_s = elapsed;
        report.consumed = read.consumed;
        report.errors = read.errors;
        if read.consumed < self.expect {
            report.errors.insert(
                format!("read fewer than expected within {:?}", self.timeout),
                self.expect - read.consumed,
            );
        }
        if elapsed > 0.0 {
            report.consume_msgs_per_s = read.consumed as f64 / elapsed;
            report.metrics.insert(
                "consume_mib_per_s".into(),
                read.bytes as f64 / MIB / elapsed,
            );
        }
        Ok(report)
    }
}
