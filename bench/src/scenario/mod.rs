//! One file per scenario, each behind [`Scenario`].

use std::future::Future;
use std::time::Duration;

use anyhow::Result;

use crate::machine::Machine;
use crate::procstat::Sampler;
use crate::report::Report;

mod cold_read;
mod disk;
mod first_send;
mod hostile;
mod idle;
mod produce;
mod produce_consume;

pub use cold_read::ColdRead;
pub use disk::Disk;
pub use first_send::FirstSend;
pub use hostile::{IdleConnections, PullFlood};
pub use idle::Idle;
pub use produce::Produce;
pub use produce_consume::ProduceConsume;

/// What every scenario gets besides its own settings.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// Broker processes to watch in `/proc` (summed).
    pub pids: Vec<u32>,
    /// Which broker this is, for the report.
    pub label: Option<String>,
    /// Name of the case within a comparison, for the report.
    pub case: Option<String>,
}

impl Context {
    /// A report for `scenario` with the machine, label and case filled in.
    pub fn report(&self, scenario: &str) -> Report {
        let mut report = Report::new(scenario, Machine::describe());
        report.label = self.label.clone();
        report.case = self.case.clone();
        report
    }

    /// Samples the watched pids (every 250 ms) until the returned sampler is finished.
    pub fn sampler(&self) -> Sampler {
        Sampler::start(self.pids.clone(), Duration::from_millis(250))
    }
}

/// A measurement that produces one [`Report`].
pub trait Scenario {
    /// The name reports carry (`produce`, `idle`, ...).
    fn name(&self) -> &'static str;

    fn run(&self, ctx: &Context) -> impl Future<Output = Result<Report>> + Send;
}
