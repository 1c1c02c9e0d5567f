//! The broker doing nothing: its memory (VmRSS, RssAnon) and CPU over a few seconds.

use std::time::Duration;

use anyhow::{bail, Result};

use super::{Context, Scenario};
use crate::report::Report;

pub struct Idle {
    pub seconds: f64,
}

impl Scenario for Idle {
    fn name(&self) -> &'static str {
        "idle"
    }

    async fn run(&self, ctx: &Context) -> Result<Report> {
        if ctx.pids.is_empty() {
            bail!("idle needs --pid");
        }
        let mut report = ctx.report(self.name());
        let sampler = ctx.sampler();
        tokio::time::sleep(Duration::from_secs_f64(self.seconds)).await;
        let usage = sampler.finish();
        if let Some(u) = &usage {
            report
                .metrics
                .insert("idle_vmrss_mib".into(), u.vmrss_end_kib as f64 / 1024.0);
            report
                .metrics
                .insert("idle_rssanon_mib".into(), u.rssanon_end_kib as f64 / 1024.0);
            report
                .metrics
                .insert("idle_cpu_percent".into(), u.cpu_percent);
        }
        report.broker = usage;
        Ok(report)
    }
}
