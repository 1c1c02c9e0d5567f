//! `rocketmq_rpc_latency`: how long each remoting request took to answer, by request and
//! response code, as Apache's `RemotingMetricsManager` records it.

use std::collections::HashMap;
use std::time::Duration;

use parking_lot::RwLock;
use prometheus::{Histogram, HistogramOpts, HistogramVec, Registry};
use protocol::{RequestCode, ResponseCode};

use super::{valid, Node};

/// Apache's `rpcCostTimeBuckets` (RemotingMetricsManager), in milliseconds.
const BUCKETS_MS: [f64; 9] = [1.0, 3.0, 5.0, 7.0, 10.0, 100.0, 1000.0, 2000.0, 3000.0];

pub struct RpcLatency {
    histograms: HistogramVec,
    /// The histogram of each (request, response) code pair seen so far, so the request
    /// path neither lowercases names nor hashes label strings.
    by_codes: RwLock<HashMap<(i32, i32), Histogram>>,
}

/// Apache labels codes with the lowercased Java constant name (`send_message_v2`). A code
/// Rocketry does not know is labelled `unknown` rather than by number, so a client sending
/// invented codes cannot grow the series.
fn code_label(name: Option<&'static str>) -> String {
    name.map_or_else(|| "unknown".to_string(), str::to_ascii_lowercase)
}

impl RpcLatency {
    pub fn new(node: &Node) -> RpcLatency {
        let histograms = valid(HistogramVec::new(
            HistogramOpts::new(
                "rocketmq_rpc_latency",
                "Time to answer a remoting request, in milliseconds.",
            )
            .const_labels(node.const_labels())
            .buckets(BUCKETS_MS.to_vec()),
            &["protocol_type", "request_code", "response_code"],
        ));
        RpcLatency {
            histograms,
            by_codes: RwLock::new(HashMap::new()),
        }
    }

    pub fn register(&self, registry: &Registry) -> prometheus::Result<()> {
        registry.register(Box::new(self.histograms.clone()))
    }

    pub fn observe(&self, request_code: i32, response_code: i32, took: Duration) {
        let millis = took.as_secs_f64() * 1000.0;
        let request = RequestCode::from_i32(request_code);
        let response = ResponseCode::from_i32(response_code);
        // Unknown codes share one key, as they share one label.
        let key = (
            request.map_or(i32::MIN, RequestCode::as_i32),
            response.map_or(i32::MIN, ResponseCode::as_i32),
        );
        if let Some(histogram) = self.by_codes.read().get(&key) {
            histogram.observe(millis);
            return;
        }
        let histogram = self.histograms.with_label_values(&[
            "remoting",
            &code_label(request.map(RequestCode::name)),
            &code_label(response.map(ResponseCode::name)),
        ]);
        histogram.observe(millis);
        self.by_codes.write().insert(key, histogram);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_labelled_by_apaches_lowercased_code_names() {
        let registry = Registry::new();
        let latency = RpcLatency::new(&Node::broker("C", "b"));
        latency.register(&registry).unwrap();
        latency.observe(
            RequestCode::SendMessageV2.as_i32(),
            0,
            Duration::from_millis(2),
        );
        latency.observe(RequestCode::SendMessageV2.as_i32(), 0, Duration::ZERO);
        latency.observe(99_999, 0, Duration::ZERO);
        latency.observe(88_888, 0, Duration::ZERO);
        let families = registry.gather();
        let series = families[0].get_metric();
        let labelled = |code: &str| {
            series
                .iter()
                .find(|m| {
                    m.get_label()
                        .iter()
                        .any(|l| l.name() == "request_code" && l.value() == code)
                })
                .map(|m| m.get_histogram().get_sample_count())
        };
        assert_eq!(labelled("send_message_v2"), Some(2));
        assert_eq!(labelled("unknown"), Some(2));
        assert_eq!(series.len(), 2);
    }
}
