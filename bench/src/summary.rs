//! Turns a folder of JSON reports from several rounds into the markdown table of
//! `docs/benchmarks.md`: the median of each figure per broker, and Rocketry's ratio to each
//! peer.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context as _, Result};

use crate::report::Report;

/// The brokers, in column order: (label, column title).
pub const LABELS: [(&str, &str); 3] = [
    ("rocketry", "Rocketry"),
    ("rocketmq", "Apache RocketMQ 5.5.0"),
    ("rocketmq-rust", "Rust port 1.0.0"),
];

/// A figure of a report: its name, value, and whether more is better.
pub struct Figure {
    pub name: &'static str,
    pub value: f64,
    pub higher_is_better: bool,
}

fn fig(name: &'static str, value: f64, higher_is_better: bool) -> Figure {
    Figure {
        name,
        value,
        higher_is_better,
    }
}

/// The figures a report contributes to the table.
pub fn figures(r: &Report) -> Vec<Figure> {
    let mut out = Vec::new();
    let m = |k: &str| r.metrics.get(k).copied();
    match (r.client.as_str(), r.scenario.as_str()) {
        ("rocketmq-benchmark", _) => {
            if let Some(v) = m("send_tps") {
                out.push(fig("send TPS (Java Producer)", v, true));
            }
            if let Some(v) = m("average_rt_ms") {
                out.push(fig("average RT ms (Java Producer)", v, false));
            }
            if let Some(v) = m("max_rt_ms") {
                out.push(fig("max RT ms (Java Producer)", v, false));
            }
            if let Some(v) = m("send_failed") {
                out.push(fig("send failed (Java Producer)", v, false));
            }
            if let Some(v) = m("consume_tps") {
                out.push(fig("consume TPS (Java Consumer)", v, true));
            }
            if let Some(v) = m("avg_b2c_rt_ms") {
                out.push(fig("average born-to-consume ms (Java Consumer)", v, false));
            }
        }
        (_, "produce" | "produce-consume") => {
            out.push(fig("send msg/s", r.send_msgs_per_s, true));
            out.push(fig("send MiB/s", r.send_mib_per_s, true));
            if let Some(p) = &r.send_latency {
                out.push(fig("send p50 ms", p.p50_us / 1000.0, false));
                out.push(fig("send p99 ms", p.p99_us / 1000.0, false));
                out.push(fig("send p99.9 ms", p.p999_us / 1000.0, false));
                out.push(fig("send max ms", p.max_us / 1000.0, false));
            }
            if r.scenario == "produce-consume" {
                out.push(fig("consume msg/s", r.consume_msgs_per_s, true));
                if let Some(p) = &r.e2e_latency {
                    out.push(fig("end-to-end p50 ms", p.p50_us / 1000.0, false));
                    out.push(fig("end-to-end p99 ms", p.p99_us / 1000.0, false));
                    out.push(fig("end-to-end p99.9 ms", p.p999_us / 1000.0, false));
                }
            }
            out.push(fig("errors", r.send_errors as f64, false));
            if let Some(v) = m("client_cpu_percent") {
                out.push(fig("bench (client) CPU %", v, false));
            }
            broker_usage(&mut out, r);
        }
        (_, "cold-read") => {
            out.push(fig("consume msg/s", r.consume_msgs_per_s, true));
            if let Some(v) = m("consume_mib_per_s") {
                out.push(fig("consume MiB/s", v, true));
            }
            if let Some(v) = m("cached_at_start_mib") {
                out.push(fig("MiB of data cached at the start", v, false));
            }
            broker_usage(&mut out, r);
        }
        (_, "idle") => {
            if let Some(v) = m("idle_vmrss_mib") {
                out.push(fig("idle VmRSS MiB", v, false));
            }
            if let Some(v) = m("idle_rssanon_mib") {
                out.push(fig("idle RssAnon MiB", v, false));
            }
        }
        (_, "first-send") => {
            if let Some(v) = m("first_send_ms") {
                out.push(fig("ms to first accepted message", v / 1.0, false));
            }
        }
        (_, "disk") => {
            if let Some(v) = m("seq_write_mib_per_s") {
                out.push(fig("sequential write MiB/s", v, true));
            }
            if let Some(v) = m("fdatasync_per_s") {
                out.push(fig("4 KiB write + fdatasync /s", v, true));
            }
        }
        _ => {}
    }
    out
}

/// The broker's CPU and peak memory while the load ran, when it was watched.
fn broker_usage(out: &mut Vec<Figure>, r: &Report) {
    if let Some(b) = &r.broker {
        out.push(fig("broker CPU %", b.cpu_percent, false));
        out.push(fig(
            "peak VmRSS MiB",
            b.vmrss_peak_kib as f64 / 1024.0,
            false,
        ));
        out.push(fig(
            "peak RssAnon MiB",
            b.rssanon_peak_kib as f64 / 1024.0,
            false,
        ));
    }
}

pub fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    let n = values.len();
    Some(if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    })
}

/// Every `*.json` report under `dir`, oldest first.
pub fn load_reports(dir: &Path) -> Result<Vec<Report>> {
    let mut reports = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "json") {
            let text = std::fs::read_to_string(&path)?;
            let report: Report = serde_json::from_str(&text)
                .with_context(|| format!("parsing {}", path.display()))?;
            reports.push(report);
        }
    }
    reports.sort_by_key(|r| r.started_unix_ms);
    Ok(reports)
}

fn cell(v: Option<f64>) -> String {
    match v {
        None => "–".into(),
        Some(v) if v.abs() >= 100.0 => format!("{v:.0}"),
        Some(v) if v.abs() >= 10.0 => format!("{v:.1}"),
        Some(v) => format!("{v:.2}"),
    }
}

/// The markdown table. `missing` gives, per label, why it has no figures.
pub fn table(reports: &[Report], missing: &BTreeMap<String, String>) -> String {
    // (case, figure) -> label -> values, in order of first appearance.
    let mut order: Vec<(String, &'static str, bool)> = Vec::new();
    let mut values: BTreeMap<(String, &'static str), BTreeMap<String, Vec<f64>>> = BTreeMap::new();
    let mut rounds: BTreeMap<String, usize> = BTreeMap::new();
    for r in reports {
        let case = r.case.clone().unwrap_or_else(|| r.scenario.clone());
        let label = r.label.clone().unwrap_or_else(|| "machine".into());
        *rounds.entry(format!("{case}/{label}")).or_default() += 1;
        for f in figures(r) {
            let key = (case.clone(), f.name);
            if !values.contains_key(&key) {
                order.push((case.clone(), f.name, f.higher_is_better));
            }
            values
                .entry(key)
                .or_default()
                .entry(label.clone())
                .or_default()
                .push(f.value);
        }
    }
    let mut out = String::new();
    let _ = write!(out, "| case | figure | better |");
    for (_, title) in LABELS {
        let _ = write!(out, " {title} |");
    }
    let _ = writeln!(
        out,
        " Rocketry ÷ RocketMQ | Rocketry ÷ Rust port | runs (R/A/P) |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|");
    for (case, name, higher) in order {
        let per_label = &values[&(case.clone(), name)];
        let medians: Vec<Option<f64>> = LABELS
            .iter()
            .map(|(l, _)| per_label.get(*l).and_then(|v| median(&mut v.clone())))
            .collect();
        if per_label.contains_key("machine") {
            let v = median(&mut per_label["machine"].clone());
            let _ = writeln!(
                out,
                "| {case} | {name} | {} | {} (machine) | | | | | {} |",
                if higher { "higher" } else { "lower" },
                cell(v),
                per_label["machine"].len()
            );
            continue;
        }
        let _ = write!(
            out,
            "| {case} | {name} | {} |",
            if higher { "higher" } else { "lower" }
        );
        for (i, (label, _)) in LABELS.iter().enumerate() {
            match (medians[i], missing.get(*label)) {
                (None, Some(_)) => {
                    let _ = write!(out, " not measured |");
                }
                (v, _) => {
                    let _ = write!(out, " {} |", cell(v));
                }
            }
        }
        for peer in [1, 2] {
            let ratio = match (medians[0], medians[peer]) {
                (Some(a), Some(b)) if b != 0.0 => format!("{:.2}x", a / b),
                _ => "–".into(),
            };
            let _ = write!(out, " {ratio} |");
        }
        let runs: Vec<String> = LABELS
            .iter()
            .map(|(l, _)| {
                per_label
                    .get(*l)
                    .map(|v| v.len().to_string())
                    .unwrap_or_else(|| "0".into())
            })
            .collect();
        let _ = writeln!(out, " {} |", runs.join("/"));
    }
    for (label, reason) in missing {
        let _ = writeln!(out, "\n{label}: not measured: {reason}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_ratios() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&mut [4.0, 1.0]), Some(2.5));
        assert_eq!(median(&mut []), None);
        let mut reports = Vec::new();
        for (label, rate) in [("rocketry", 30.0), ("rocketmq", 10.0), ("rocketry", 20.0)] {
            let mut r = Report::new("produce", Default::default());
            r.label = Some(label.into());
            r.case = Some("1k".into());
            r.send_msgs_per_s = rate;
            reports.push(r);
        }
        let mut missing = BTreeMap::new();
        missing.insert("rocketmq-rust".to_string(), "build failed".to_string());
        let t = table(&reports, &missing);
        assert!(
            t.contains(
                "| 1k | send msg/s | higher | 25.0 | 10.0 | not measured | 2.50x | – | 2/1/0 |"
            ),
            "{t}"
        );
        assert!(t.contains("rocketmq-rust: not measured: build failed"));
    }

    #[test]
    fn a_cold_read_gives_its_rates_and_what_was_cached() {
        let mut r = Report::new("cold-read", Default::default());
        r.label = Some("rocketry".into());
        r.case = Some("cold".into());
        r.consume_msgs_per_s = 1200.0;
        r.metrics.insert("consume_mib_per_s".into(), 18.5);
        r.metrics.insert("cached_at_start_mib".into(), 3.0);
        let t = table(&[r], &BTreeMap::new());
        for row in [
            "| cold | consume msg/s | higher | 1200 | – | – | – | – | 1/0/0 |",
            "| cold | consume MiB/s | higher | 18.5 | – | – | – | – | 1/0/0 |",
            "| cold | MiB of data cached at the start | lower | 3.00 | – | – | – | – | 1/0/0 |",
        ] {
            assert!(t.contains(row), "{row} in\n{t}");
        }
    }
}
