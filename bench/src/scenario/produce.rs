//! Producers only: throughput and send latency.

use anyhow::Result;

use super::{Context, Scenario};
use crate::load::{self, LoadConfig};
use crate::report::Report;

pub struct Produce {
    pub load: LoadConfig,
}

impl Scenario for Produce {
    fn name(&self) -> &'static str {
        "produce"
    }

    async fn run(&self, ctx: &Context) -> Result<Report> {
        let mut report = ctx.report(self.name());
        let load = LoadConfig {
            consumers: 0,
            ..self.load.clone()
        };
        let sampler = ctx.sampler();
        load::run(&load, &mut report).await?;
        report.broker = sampler.finish();
        Ok(report)
    }
}
