//! The broker's CPU and memory, read from `/proc/<pid>/stat` and `/proc/<pid>/status` while a
//! scenario runs. Several pids are summed (Apache RocketMQ's name server and broker are two
//! processes; `rocketry standalone` is one).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// One reading of every pid, summed.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sample {
    /// utime + stime, in clock ticks.
    pub cpu_ticks: u64,
    pub vmrss_kib: u64,
    pub rssanon_kib: u64,
}

fn status_kib(status: &str, key: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Reads every pid once; `None` when one of them is gone.
pub fn sample(pids: &[u32]) -> Option<Sample> {
    let mut total = Sample::default();
    for pid in pids {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The command name is in parentheses and may hold spaces; fields count from after it.
        let after = &stat[stat.rfind(')')? + 2..];
        let fields: Vec<&str> = after.split_whitespace().collect();
        // Fields 14 and 15 of stat (utime, stime) are 11 and 12 after the name.
        let utime: u64 = fields.get(11)?.parse().ok()?;
        let stime: u64 = fields.get(12)?.parse().ok()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        total.cpu_ticks += utime + stime;
        total.vmrss_kib += status_kib(&status, "VmRSS:");
        total.rssanon_kib += status_kib(&status, "RssAnon:");
    }
    Some(total)
}

pub fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

/// What the broker used over a scenario's measured window.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct BrokerUsage {
    pub pids: Vec<u32>,
    /// Average CPU over the window; 100 is one core busy.
    pub cpu_percent: f64,
    pub vmrss_start_kib: u64,
    pub vmrss_end_kib: u64,
    pub vmrss_peak_kib: u64,
    pub rssanon_start_kib: u64,
    pub rssanon_end_kib: u64,
    pub rssanon_peak_kib: u64,
}

/// Samples the pids every `interval` on a thread of its own until [`Sampler::finish`].
pub struct Sampler {
    pids: Vec<u32>,
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Vec<(Instant, Sample)>>,
}

impl Sampler {
    pub fn start(pids: Vec<u32>, interval: Duration) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let watched = pids.clone();
        let thread = std::thread::spawn(move || {
            let mut samples = Vec::new();
            loop {
                if let Some(s) = sample(&watched) {
                    samples.push((Instant::now(), s));
                }
                if flag.load(Ordering::Relaxed) {
                    break;
                }
                std::thread::sleep(interval);
            }
            samples
        });
        Sampler { pids, stop, thread }
    }

    /// Stops sampling and summarises. `None` when no pid was given or none could be read.
    pub fn finish(self) -> Option<BrokerUsage> {
        self.stop.store(true, Ordering::Relaxed);
        let samples = self.thread.join().unwrap_or_default();
        if self.pids.is_empty() {
            return None;
        }
        let (first_at, first) = *samples.first()?;
        let (last_at, last) = *samples.last()?;
        let secs = last_at.duration_since(first_at).as_secs_f64();
        let cpu_percent = if secs > 0.0 {
            (last.cpu_ticks.saturating_sub(first.cpu_ticks)) as f64
                / clock_ticks_per_second()
                / secs
                * 100.0
        } else {
            0.0
        };
        Some(BrokerUsage {
            pids: self.pids,
            cpu_percent,
            vmrss_start_kib: first.vmrss_kib,
            vmrss_end_kib: last.vmrss_kib,
            vmrss_peak_kib: samples.iter().map(|(_, s)| s.vmrss_kib).max().unwrap_or(0),
            rssanon_start_kib: first.rssanon_kib,
            rssanon_end_kib: last.rssanon_kib,
            rssanon_peak_kib: samples
                .iter()
                .map(|(_, s)| s.rssanon_kib)
                .max()
                .unwrap_or(0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        let s = sample(&[me]).expect("own /proc entry");
        assert!(s.vmrss_kib > 0);
        let sampler = Sampler::start(vec![me], Duration::from_millis(10));
        std::thread::sleep(Duration::from_millis(50));
        let usage = sampler.finish().unwrap();
        assert!(usage.vmrss_peak_kib >= usage.vmrss_start_kib.min(usage.vmrss_end_kib));
        assert!(sample(&[u32::MAX]).is_none());
    }
}
