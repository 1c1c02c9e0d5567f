//! Reads what Apache RocketMQ's own benchmark tools print
//! (`org.apache.rocketmq.example.benchmark.Producer` and `Consumer`) into a [`Report`], so the
//! second, independent client lands in the same table as `bench`.
//!
//! Their statistic lines are `Key: value | Key: value ...`, e.g.
//! `Current Time: ... | Send TPS: 10523 | Max RT(ms): 210 | Average RT(ms): 3.0 | ...` every
//! few seconds and, with `-q`, one `[Complete] Send Total: ... | Send TPS: ...` at the end.
//! Each numeric key becomes a metric: the mean over the periodic lines after the first `skip`
//! (warm-up), and `complete_<key>` from the final line.

use std::collections::BTreeMap;

use crate::report::Report;

/// `Send TPS` -> `send_tps`, `Average RT(ms)` -> `average_rt_ms`.
fn metric_name(key: &str) -> String {
    let mut out = String::new();
    for c in key.trim().chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('_') {
            out.push('_');
        }
    }
    out.trim_matches('_').to_owned()
}

fn fields(line: &str) -> Vec<(String, f64)> {
    line.split('|')
        .filter_map(|part| {
            let (key, value) = part.rsplit_once(':')?;
            let value: f64 = value.trim().parse().ok()?;
            let name = metric_name(key.trim_start_matches("[Complete]"));
            (!name.starts_with("current")).then_some((name, value))
        })
        .collect()
}

/// Fills `report.metrics` from the tool's output.
pub fn import(output: &str, skip: usize, report: &mut Report) {
    report.client = "rocketmq-benchmark".into();
    let mut sums: BTreeMap<String, (f64, u32)> = BTreeMap::new();
    let periodic: Vec<&str> = output
        .lines()
        .filter(|l| l.contains("TPS") && !l.contains("[Complete]"))
        .collect();
    // Too few lines to skip the warm-up: use them all rather than nothing.
    let skip = if periodic.len() > skip { skip } else { 0 };
    for line in &periodic[skip..] {
        for (key, value) in fields(line) {
            let e = sums.entry(key).or_default();
            e.0 += value;
            e.1 += 1;
        }
    }
    for (key, (sum, n)) in sums {
        report.metrics.insert(key, sum / n as f64);
    }
    if let Some(line) = output.lines().rev().find(|l| l.contains("[Complete]")) {
        for (key, value) in fields(line) {
            report.metrics.insert(format!("complete_{key}"), value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_producer_lines() {
        let out = "noise\n\
            Current Time: 2026-11-26 02:00:01,003 | Send TPS: 100 | Max RT(ms): 50 | Average RT(ms): 9.0 | Send Failed: 0 | Response Failed: 0\n\
            Current Time: 2 | Send TPS: 1000 | Max RT(ms): 20 | Average RT(ms): 3.0 | Send Failed: 0 | Response Failed: 0\n\
            Current Time: 3 | Send TPS: 2000 | Max RT(ms): 10 | Average RT(ms): 2.0 | Send Failed: 0 | Response Failed: 0\n\
            [Complete] Send Total: 3100 | Send TPS: 1033 | Max RT(ms): 50 | Average RT(ms): 4.5 | Send Failed: 0\n";
        let mut r = Report::default();
        import(out, 1, &mut r);
        assert_eq!(r.metrics["send_tps"], 1500.0);
        assert_eq!(r.metrics["average_rt_ms"], 2.5);
        assert_eq!(r.metrics["complete_send_total"], 3100.0);
        assert_eq!(r.metrics["complete_send_tps"], 1033.0);
        assert_eq!(r.client, "rocketmq-benchmark");
    }
}
