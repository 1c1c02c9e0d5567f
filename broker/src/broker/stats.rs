//! Message counters for GET_BROKER_RUNTIME_INFO and GET_CONSUME_STATS: messages stored and
//! messages handed to consumers since start, per-day marks, and rates over the last minute,
//! for the broker and for each consumer group on each topic (RocketMQ's `GROUP_GET_NUMS`,
//! which `consumeTps` reports). The send and pull paths call [`BrokerStats::record_put`] and
//! [`BrokerStats::record_get`]; each is an atomic add plus, at most once a second, a sample
//! under a lock of its own counter.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use parking_lot::{Mutex, RwLock};

/// Rates are averaged over this many seconds, as RocketMQ's minute figures (`putTps`'s
/// last one, and `consumeTps`); one window keeps it simple.
const WINDOW_SECONDS: u64 = 60;

/// A running total and its rate over the last minute.
struct Rate {
    created: Instant,
    total: AtomicI64,
    /// Whole seconds since `created` of the last sample, so most calls skip the lock.
    last_sample_second: AtomicU64,
    /// (when, the total then), oldest first, spanning at most the window.
    samples: Mutex<VecDeque<(Instant, i64)>>,
}

impl Rate {
    fn new(now: Instant) -> Rate {
        Rate {
            created: now,
            total: AtomicI64::new(0),
            last_sample_second: AtomicU64::new(u64::MAX),
            samples: Mutex::new(VecDeque::new()),
        }
    }

    /// Samples before adding, so that the first burst after a quiet spell shows in the rate
    /// at once rather than a second later.
    fn add(&self, count: usize, now: Instant) {
        self.sample(now);
        self.total.fetch_add(count as i64, Ordering::Relaxed);
    }

    fn total(&self) -> i64 {
        self.total.load(Ordering::Relaxed)
    }

    fn sample(&self, now: Instant) {
        let second = now.duration_since(self.created).as_secs();
        let last = self.last_sample_second.load(Ordering::Relaxed);
        if last == second
            || self
                .last_sample_second
                .compare_exchange(last, second, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let mut samples = self.samples.lock();
        samples.push_back((now, self.total()));
        while samples
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at).as_secs() > WINDOW_SECONDS)
        {
            samples.pop_front();
        }
    }

    /// Per second since the oldest sample of the window (at least one second, so that a
    /// burst just begun does not read as a huge rate).
    fn per_second(&self, now: Instant) -> f64 {
        self.sample(now);
        let total = self.total();
        match self.samples.lock().front() {
            Some((at, then)) => {
                (total - then) as f64 / now.duration_since(*at).as_secs_f64().max(1.0)
            }
            None => 0.0,
        }
    }
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

/// Messages pulled, by topic and then consumer group.
type GroupGets = HashMap<String, HashMap<String, Arc<Rate>>>;

pub struct BrokerStats {
    put: Rate,
    get: Rate,
    /// Read-mostly: a pair is written once, when its group first pulls from the topic.
    group_gets: RwLock<GroupGets>,
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
        let now = Instant::now();
        BrokerStats {
            put: Rate::new(now),
            get: Rate::new(now),
            group_gets: RwLock::new(HashMap::new()),
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
        self.put.add(count, Instant::now());
    }

    /// `count` messages of `topic` returned by a pull of `group`.
    pub fn record_get(&self, topic: &str, group: &str, count: usize) {
        let now = Instant::now();
        self.get.add(count, now);
        if count == 0 {
            return;
        }
        let rate = self.group_rate(topic, group).unwrap_or_else(|| {
            self.group_gets
                .write()
                .entry(topic.to_owned())
                .or_default()
                .entry(group.to_owned())
                .or_insert_with(|| Arc::new(Rate::new(now)))
                .clone()
        });
        rate.add(count, now);
    }

    /// Messages of `topic` pulled by `group` per second over the last minute: RocketMQ's
    /// `consumeTps` for that pair.
    pub fn group_get_tps(&self, topic: &str, group: &str) -> f64 {
        self.group_rate(topic, group)
            .map_or(0.0, |rate| rate.per_second(Instant::now()))
    }

    fn group_rate(&self, topic: &str, group: &str) -> Option<Arc<Rate>> {
        let groups = self.group_gets.read();
        groups.get(topic)?.get(group).cloned()
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
        let now = Instant::now();
        let (put_tps, get_tps) = (self.put.per_second(now), self.get.per_second(now));
        let (put, get) = (self.put.total(), self.get.total());
        let days = self.day_marks(put, get);
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
    use std::time::Duration;

    use super::*;

    #[test]
    fn totals_count_every_message() {
        let stats = BrokerStats::default();
        stats.record_put(3);
        stats.record_put(1);
        stats.record_get("T", "g", 2);
        let snapshot = stats.snapshot();
        assert_eq!(snapshot.put_total, 4);
        assert_eq!(snapshot.get_total, 2);
        assert_eq!(snapshot.put_total_today_morning, 0);
    }

    #[test]
    fn a_rate_covers_the_last_minute_and_shows_a_burst_at_once() {
        let start = Instant::now();
        let at = |seconds: f64| start + Duration::from_secs_f64(seconds);
        let rate = Rate::new(start);
        assert_eq!(rate.per_second(start), 0.0);
        rate.add(50, at(0.0));
        // Within its first second a burst reads as per second, not per elapsed fraction.
        assert_eq!(rate.per_second(at(0.5)), 50.0);
        for second in 1..=10 {
            rate.add(10, at(second as f64));
        }
        // 150 since the sample at 0 s.
        assert_eq!(rate.per_second(at(10.0)), 15.0);
        // A minute on, the window starts at the sample taken at 5 s (total 90): the adds
        // at 6..10 s (50) and at 65 s (60) over 60 s. Later, with nothing new, 0.
        rate.add(60, at(65.0));
        assert_eq!(rate.per_second(at(65.0)), 2.0);
        assert_eq!(rate.per_second(at(200.0)), 0.0);
    }

    #[test]
    fn each_group_has_its_own_rate_on_each_topic() {
        let stats = BrokerStats::default();
        stats.record_get("T", "a", 30);
        stats.record_get("T", "b", 6);
        stats.record_get("U", "a", 0);
        // Read right after the pulls: at most one second's worth, and never nothing.
        let (a, b) = (stats.group_get_tps("T", "a"), stats.group_get_tps("T", "b"));
        assert!(a > 0.0 && a <= 30.0, "{a}");
        assert!(b > 0.0 && b <= 6.0, "{b}");
        assert_eq!(stats.group_get_tps("U", "a"), 0.0);
        assert_eq!(stats.group_get_tps("V", "a"), 0.0);
        assert_eq!(stats.snapshot().get_total, 36);
    }
}
