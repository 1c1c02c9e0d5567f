//! `bench`: a load generator for Rocketry and any RocketMQ-compatible broker, over the
//! `protocol` crate's async client.
//!
//! Every scenario lives in its own file under [`scenario`] behind the [`scenario::Scenario`]
//! trait and returns a [`report::Report`]: throughput, send and end-to-end latency
//! percentiles (HdrHistogram), errors, the broker's CPU and memory read from `/proc`, and a
//! description of the machine. Reports print for people and save as JSON; `bench summarize`
//! turns a folder of them into the markdown table of `docs/benchmarks.md`.

pub mod copied;
pub mod cpp;
pub mod java;
pub mod load;
pub mod machine;
pub mod page_cache;
pub mod procstat;
pub mod report;
pub mod scenario;
pub mod summary;

pub use load::LoadConfig;
pub use report::{Percentiles, Report};
pub use scenario::{Context, Scenario};
