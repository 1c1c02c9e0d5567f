//! Producers and consumers at once: throughput of both, send and end-to-end latency.

use anyhow::Result;

use super::{Context, Scenario};
use crate::load::{self, LoadConfig};
use crate::report::Report;

pub struct ProduceConsume {
    pub load: LoadConfig,
}

impl Scenario for ProduceConsume {
    fn name(&self) -> &'static str {
        "produce-consume"
    }

    async fn run(&self, ctx: &Context) -> Result<Report> {
        let mut report = ctx.report(self.name());
        let load = LoadConfig {
            consumers: self.load.consumers.max(1),
            ..self.load.clone()
        };
        let sampler = ctx.sampler();
        load::run(&load, &mut report).await?;
        report.broker = sampler.finish();
        Ok(report)
    }
}
