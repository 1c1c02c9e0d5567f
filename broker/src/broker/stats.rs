//! Message counters for GET_BROKER_RUNTIME_INFO: messages stored and messages handed to
//! consumers since start, per-day marks, and rates over the last minute. The send and pull
//! paths call [`BrokerStats::record_put`] and [`BrokerStats::record_get`]; both are an
//! atomic add plus, at most once a second, a sample under a lock.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

/// Rates are averaged over this many seconds, as RocketMQ's `putTps` first figure (10 s)
/// and its minute figure; one window keeps it simple.
const WINDOW_SECONDS: u64 = 60;

#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Instant,
    put: i64,
    get: i64,
}

#[derive(Debug, Default, Clone, Copy)]
struct DayMarks {
    /// Days since the epoch (UTC) of `today_*`.
    day: i64,
    today_put: i64,
    today_get: i64,
    yesterday_put: i64,
    yesterday_get: i64,
}

pub struct BrokerStats {
    started: Instant,
    put_total: AtomicI64,
    get_total: AtomicI64,
    /// Whole seconds since start of the last sample, so most calls skip the lock.
    last_sample_second: AtomicU64,
    samples: Mutex<VecDeque<Sample>>,
    days: Mutex<DayMarks>,
}

/// What GET_BROKER_RUNTIME_INFO reports.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StatsSnapshot {
    pub put_total: i64,
    pub get_total: i64,
    pub put_total_today_morning: i64,
    pub get_total_today_morning: i64,
    pub put_total_yesterday_morning: i64,
    pub get_total_yesterday_morning: i64,
    pub put_tps: f64,
    pub get_tps: f64,
}

fn utc_day() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64 / 86_400)
        .unwrap_or(0)
}

impl Default for BrokerStats {
    fn default() -> Self {
        BrokerStats {
            started: Instant::now(),
            put_total: AtomicI64::new(0),
            get_total: AtomicI64::new(0),
            last_sample_second: AtomicU64::new(u64::MAX),
            samples: Mutex::new(VecDeque::new()),
            days: Mutex::new(DayMarks {
                day: utc_day(),
                ..DayMarks::default()
            }),
        }
    }
}

impl BrokerStats {
    /// `count` messages stored (a batch counts each message).
    pub fn record_put(&self, count: usize) {
        self.put_total.fetch_add(count as i64, Ordering::Relaxed);
        self.sample();
    }

    /// `count` messages returned by a pull.
    pub fn record_get(&self, count: usize) {
        self.get_total.fetch_add(count as i64, Ordering::Relaxed);
        self.sample();
    }

    fn sample(&self) {
        let second = self.started.elapsed().as_secs();
        let last = self.last_sample_second.load(Ordering::Relaxed);
        if last == second
            || self
                .last_sample_second
                .compare_exchange(last, second, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let now = Sample {
            at: Instant::now(),
            put: self.put_total.load(Ordering::Relaxed),
            get: self.get_total.load(Ordering::Relaxed),
        };
        let mut samples = self.samples.lock();
        samples.push_back(now);
        while samples
            .front()
            .is_some_and(|s| now.at.duration_since(s.at).as_secs() > WINDOW_SECONDS)
        {
            samples.pop_front();
        }
    }

    /// Day marks move lazily: the first look after UTC midnight turns today's mark into
    /// yesterday's and takes the current totals as today's.
    fn day_marks(&self, put: i64, get: i64) -> DayMarks {
        let mut days = self.days.lock();
        let today = utc_day();
        if today != days.day {
            let (yesterday_put, yesterday_get) = if today == days.day + 1 {
                (days.today_put, days.today_get)
            } else {
                (put, get)
            };
            *days = DayMarks {
                day: today,
                today_put: put,
                today_get: get,
                yesterday_put,
                yesterday_get,
            };
        }
        *days
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        self.sample();
        let put = self.put_total.load(Ordering::Relaxed);
        let get = self.get_total.load(Ordering::Relaxed);
        let days = self.day_marks(put, get);
        let (put_tps, get_tps) = {
            let samples = self.samples.lock();
            match samples.front() {
                Some(oldest) => {
                    let seconds = oldest.at.elapsed().as_secs_f64().max(1.0);
                    (
                        (put - oldest.put) as f64 / seconds,
                        (get - oldest.get) as f64 / seconds,
                    )
                }
                None => (0.0, 0.0),
            }
        };
        StatsSnapshot {
            put_total: put,
            get_total: get,
            put_total_today_morning: days.today_put,
            get_total_today_morning: days.today_get,
            put_total_yesterday_morning: days.yesterday_put,
            get_total_yesterday_morning: days.yesterday_get,
            put_tps,
            get_tps,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_count_every_message() {
        let stats = BrokerStats::default();
        stats.record_put(3);
        stats.record_put(1);
        stats.record_get(2);
        let snapshot = stats.snapshot();
        assert_eq!(snapshot.put_total, 4);
        assert_eq!(snapshot.get_total, 2);
        assert_eq!(snapshot.put_total_today_morning, 0);
        assert!(snapshot.put_tps >= 0.0);
    }
}
