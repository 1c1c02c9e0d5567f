//! Reads what `bench/python/cpp_producer.py` (the official C++ client, through its Python
//! wheel) prints into a [`Report`], so a third client, one no one here wrote, lands in the
//! same table as `bench`: its `RESULT {json}` line holds what was acknowledged in the
//! measured window and the percentiles of each send's latency.

use std::collections::BTreeMap;

use anyhow::{Context as _, Result};
use serde::Deserialize;

use crate::report::{Percentiles, Report};

const MIB: f64 = 1024.0 * 1024.0;

#[derive(Deserialize)]
struct Summary {
    sent: u64,
    errors: BTreeMap<String, u64>,
    elapsed_s: f64,
    size: u64,
    latency_us: Option<Percentiles>,
}

/// Fills `report` from the script's output.
pub fn import(output: &str, report: &mut Report) -> Result<()> {
    let line = output
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("RESULT "))
        .context("no RESULT line")?;
    let summary: Summary = serde_json::from_str(line).context("reading the RESULT line")?;
    report.client = "rocketmq-client-cpp".into();
    report.elapsed_s = summary.elapsed_s;
    report.sent = summary.sent;
    report.send_errors = summary.errors.values().sum();
    report.errors = summary.errors;
    if summary.elapsed_s > 0.0 {
        report.send_msgs_per_s = summary.sent as f64 / summary.elapsed_s;
        report.send_mib_per_s = (summary.sent * summary.size) as f64 / MIB / summary.elapsed_s;
    }
    report.send_latency = summary.latency_us;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_result_line() {
        let out = "client log noise\n\
            RESULT {\"sent\": 8000, \"errors\": {\"MQClientException\": 3}, \"elapsed_s\": 8.0, \
            \"size\": 1024, \"threads\": 16, \"latency_us\": {\"count\": 8000, \"mean_us\": 1900.5, \
            \"p50_us\": 1500, \"p99_us\": 9000, \"p999_us\": 15000, \"max_us\": 40000}}\n";
        let mut r = Report::new("produce", Default::default());
        import(out, &mut r).unwrap();
        assert_eq!(r.client, "rocketmq-client-cpp");
        assert_eq!(r.sent, 8000);
        assert_eq!(r.send_errors, 3);
        assert_eq!(r.send_msgs_per_s, 1000.0);
        assert_eq!(r.send_mib_per_s, 1000.0 / 1024.0);
        assert_eq!(r.send_latency.unwrap().p99_us, 9000.0);
    }

    #[test]
    fn output_without_a_result_is_an_error() {
        let mut r = Report::default();
        assert!(import("the client could not reach its name server\n", &mut r).is_err());
    }
}
