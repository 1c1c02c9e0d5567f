//! The Prometheus endpoint shared by the broker and the name server: Apache RocketMQ 5.x's
//! metric names, types, units and labels (`cluster`, `node_type`, `node_id`), so dashboards
//! and alerts written for Apache work unchanged. Every metric is listed in
//! docs/observability.md.
//!
//! What changes on every request (counters, histograms) is recorded into lock-free
//! prometheus counters; what can be read from state the broker keeps anyway (lag, store
//! positions, connections) is computed when Prometheus scrapes, by a collector.

mod exporter;
mod family;
mod rpc_latency;
mod series_cap;

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

pub use exporter::router;
pub use family::Family;
pub use rpc_latency::RpcLatency;
pub use series_cap::SeriesCap;

/// `metricsExporterType`, Apache's key. Apache also knows OTLP_GRPC and LOG; Rocketry
/// serves Prometheus only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExporterType {
    Disable,
    Prom,
}

impl FromStr for ExporterType {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.to_ascii_uppercase().as_str() {
            "DISABLE" => Ok(ExporterType::Disable),
            "PROM" => Ok(ExporterType::Prom),
            _ => Err("expected DISABLE or PROM (Rocketry exports Prometheus only)".to_string()),
        }
    }
}

impl fmt::Display for ExporterType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ExporterType::Disable => "DISABLE",
            ExporterType::Prom => "PROM",
        })
    }
}

/// Who the series come from: Apache's `cluster`, `node_type` and `node_id` labels, put on
/// every series. A standalone process serves a broker's and a name server's series on one
/// endpoint, told apart by `node_type`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    cluster: String,
    node_type: &'static str,
    node_id: String,
}

impl Node {
    /// A broker: `node_id` is its brokerName, as Apache labels it.
    pub fn broker(cluster: &str, broker_name: &str) -> Node {
        Node {
            cluster: cluster.to_string(),
            node_type: "broker",
            node_id: broker_name.to_string(),
        }
    }

    /// A name server, known by its address. A name server serves every cluster; a
    /// standalone one is labelled with its broker's cluster.
    pub fn nameserver(cluster: &str, addr: &str) -> Node {
        Node {
            cluster: cluster.to_string(),
            node_type: "nameserver",
            node_id: addr.to_string(),
        }
    }

    /// The labels as prometheus `Opts` const labels.
    pub fn const_labels(&self) -> HashMap<String, String> {
        HashMap::from([
            ("cluster".to_string(), self.cluster.clone()),
            ("node_type".to_string(), self.node_type.to_string()),
            ("node_id".to_string(), self.node_id.clone()),
        ])
    }

    fn labels(&self) -> [(&'static str, &str); 3] {
        [
            ("cluster", &self.cluster),
            ("node_type", self.node_type),
            ("node_id", &self.node_id),
        ]
    }
}

/// Builds a metric from its options, which are ours and known to be valid.
pub fn valid<M>(metric: prometheus::Result<M>) -> M {
    metric.expect("metric options are static and valid")
}
