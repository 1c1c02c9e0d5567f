//! What a scenario reports: serde types saved as JSON, and a human-readable print.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::load::LoadConfig;
use crate::machine::Machine;
use crate::procstat::BrokerUsage;

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Percentiles {
    pub count: u64,
    pub mean_us: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
}

impl Percentiles {
    /// `None` for an empty histogram.
    pub fn from_histogram(h: &Histogram<u64>) -> Option<Percentiles> {
        if h.is_empty() {
            return None;
        }
        Some(Percentiles {
            count: h.len(),
            mean_us: h.mean(),
            p50_us: h.value_at_quantile(0.50) as f64,
            p99_us: h.value_at_quantile(0.99) as f64,
            p999_us: h.value_at_quantile(0.999) as f64,
            max_us: h.max() as f64,
        })
    }
}

/// One run of one scenario against one broker.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Report {
    /// The scenario's name (`produce`, `produce-consume`, `idle`, `first-send`, `disk`, ...).
    pub scenario: String,
    /// Which broker it ran against (`rocketry`, `rocketmq`, `rocketmq-rust`), when told.
    pub label: Option<String>,
    /// Which load generator: `bench`, or `rocketmq-benchmark` for Apache's Java Producer.
    pub client: String,
    /// Free-form name of the case within a comparison (e.g. `1k-async-16p`).
    pub case: Option<String>,
    pub machine: Machine,
    pub started_unix_ms: u64,
    pub config: Option<LoadConfig>,
    /// Length of the measured window (after warm-up).
    pub elapsed_s: f64,
    /// Messages acknowledged in the window (a batch counts as its messages).
    pub sent: u64,
    pub send_errors: u64,
    /// Errors by kind, for every phase (warm-up included).
    pub errors: BTreeMap<String, u64>,
    pub consumed: u64,
    pub send_msgs_per_s: f64,
    pub send_mib_per_s: f64,
    pub consume_msgs_per_s: f64,
    /// Per request: one message, or one batch.
    pub send_latency: Option<Percentiles>,
    /// From the timestamp the producer put in the body to the consumer decoding it.
    pub e2e_latency: Option<Percentiles>,
    pub broker: Option<BrokerUsage>,
    /// Single figures of the scenarios that are not load (`first_send_ms`,
    /// `seq_write_mib_per_s`, ...).
    pub metrics: BTreeMap<String, f64>,
}

pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn fmt_us(us: f64) -> String {
    if us >= 1_000_000.0 {
        format!("{:.2} s", us / 1_000_000.0)
    } else if us >= 1000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{us:.0} µs")
    }
}

fn fmt_percentiles(name: &str, p: &Percentiles) -> String {
    format!(
        "{name:<14} p50 {}  p99 {}  p99.9 {}  max {}  (mean {}, n={})\n",
        fmt_us(p.p50_us),
        fmt_us(p.p99_us),
        fmt_us(p.p999_us),
        fmt_us(p.max_us),
        fmt_us(p.mean_us),
        p.count
    )
}

impl Report {
    pub fn new(scenario: &str, machine: Machine) -> Report {
        Report {
            scenario: scenario.to_owned(),
            client: "bench".to_owned(),
            machine,
            started_unix_ms: unix_ms(),
            ..Report::default()
        }
    }

    /// The report as people read it.
    pub fn human(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "== {}{}{} ({}) ==",
            self.scenario,
            self.case
                .as_deref()
                .map(|c| format!(" [{c}]"))
                .unwrap_or_default(),
            self.label
                .as_deref()
                .map(|l| format!(" against {l}"))
                .unwrap_or_default(),
            self.client
        );
        if let Some(c) = &self.config {
            let _ = writeln!(
                out,
                "load           {} producers x {} in flight, {} B x batch {}, {} consumers, {} queues{}",
                c.producers,
                c.inflight,
                c.size,
                c.batch,
                c.consumers,
                c.queues,
                c.rate
                    .map(|rate| format!(", paced at {rate} msg/s"))
                    .unwrap_or_default()
            );
        }
        if self.elapsed_s > 0.0 {
            // A read of a backlog sends nothing.
            if self.config.is_some() || self.sent > 0 {
                let _ = writeln!(
                    out,
                    "throughput     {:.0} msg/s  {:.1} MiB/s  ({} sent in {:.1} s, {} errors)",
                    self.send_msgs_per_s,
                    self.send_mib_per_s,
                    self.sent,
                    self.elapsed_s,
                    self.send_errors
                );
            }
            if self.consumed > 0 || self.config.as_ref().is_some_and(|c| c.consumers > 0) {
                let _ = writeln!(
                    out,
                    "consumed       {:.0} msg/s  ({} messages)",
                    self.consume_msgs_per_s, self.consumed
                );
            }
        }
        if let Some(p) = &self.send_latency {
            out.push_str(&fmt_percentiles("send latency", p));
        }
        if let Some(p) = &self.e2e_latency {
            out.push_str(&fmt_percentiles("end-to-end", p));
        }
        for (kind, n) in &self.errors {
            let _ = writeln!(out, "error          {n} x {kind}");
        }
        if let Some(b) = &self.broker {
            let _ = writeln!(
                out,
                "broker {:?}  CPU {:.0}%  VmRSS {:.1} -> {:.1} MiB (peak {:.1})  RssAnon {:.1} -> {:.1} MiB (peak {:.1})",
                b.pids,
                b.cpu_percent,
                b.vmrss_start_kib as f64 / 1024.0,
                b.vmrss_end_kib as f64 / 1024.0,
                b.vmrss_peak_kib as f64 / 1024.0,
                b.rssanon_start_kib as f64 / 1024.0,
                b.rssanon_end_kib as f64 / 1024.0,
                b.rssanon_peak_kib as f64 / 1024.0,
            );
        }
        for (name, value) in &self.metrics {
            let _ = writeln!(out, "{name:<22} {value:.2}");
        }
        let m = &self.machine;
        let _ = writeln!(
            out,
            "machine        {} cores, {} MiB, {}, {} (load {:.2} at start)",
            m.cores, m.mem_total_mib, m.cpu_model, m.kernel, m.load_avg_1m
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_histogram() {
        let mut h = Histogram::<u64>::new(3).unwrap();
        assert!(Percentiles::from_histogram(&h).is_none());
        for v in 1..=1000u64 {
            h.record(v).unwrap();
        }
        let p = Percentiles::from_histogram(&h).unwrap();
        assert_eq!(p.count, 1000);
        assert!((p.p50_us - 500.0).abs() <= 1.0);
        assert!((p.p99_us - 990.0).abs() <= 1.0);
        assert_eq!(p.max_us, 1000.0);
        let mut r = Report::new("produce", Machine::default());
        r.send_latency = Some(p);
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<Report>(&json).unwrap(), r);
        assert!(r.human().contains("p99.9"));
    }
}
