//! The bound on topic × consumer-group series. Topics are created by configuration, but a
//! consumer group is whatever name a client sends: without a cap, a client that invents
//! groups would grow every per-group metric, and Prometheus with it. Pairs are admitted
//! first come, first served until the cap, and stay until their topic or group is deleted;
//! a pair refused is counted (the broker exports the count as
//! `rocketry_metrics_series_dropped_total`).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use parking_lot::RwLock;

pub struct SeriesCap {
    limit: usize,
    /// Topic -> groups admitted on it: looked up by `&str` at both levels, so the check
    /// on the pull path allocates nothing.
    admitted: RwLock<HashMap<String, HashSet<String>>>,
    /// Pairs in `admitted`, changed only under its write lock; read without it so a client
    /// past the cap never takes the write lock.
    count: AtomicUsize,
    /// Refusals since start; the broker's collector reads it after its lag series, so a
    /// scrape includes its own refusals.
    dropped: AtomicU64,
}

impl SeriesCap {
    pub fn new(limit: usize) -> SeriesCap {
        SeriesCap {
            limit,
            admitted: RwLock::new(HashMap::new()),
            count: AtomicUsize::new(0),
            dropped: AtomicU64::new(0),
        }
    }

    /// Whether series for `topic` and `group` may be written: already admitted, or admitted
    /// now because the cap is not reached.
    pub fn admit(&self, topic: &str, group: &str) -> bool {
        if self
            .admitted
            .read()
            .get(topic)
            .is_some_and(|groups| groups.contains(group))
        {
            return true;
        }
        if self.count.load(Ordering::Relaxed) < self.limit {
            let mut admitted = self.admitted.write();
            if self.count.load(Ordering::Relaxed) < self.limit {
                if admitted
                    .entry(topic.to_string())
                    .or_default()
                    .insert(group.to_string())
                {
                    self.count.fetch_add(1, Ordering::Relaxed);
                }
                return true;
            }
        }
        self.dropped.fetch_add(1, Ordering::Relaxed);
        false
    }

    /// Forgets a deleted topic; returns the groups that had series on it.
    pub fn forget_topic(&self, topic: &str) -> Vec<String> {
        let mut admitted = self.admitted.write();
        let groups: Vec<String> = admitted
            .remove(topic)
            .map(|groups| groups.into_iter().collect())
            .unwrap_or_default();
        self.count.fetch_sub(groups.len(), Ordering::Relaxed);
        groups
    }

    /// Forgets a deleted group; returns the topics it had series on.
    pub fn forget_group(&self, group: &str) -> Vec<String> {
        let mut admitted = self.admitted.write();
        let topics: Vec<String> = admitted
            .iter_mut()
            .filter_map(|(topic, groups)| groups.remove(group).then(|| topic.clone()))
            .collect();
        admitted.retain(|_, groups| !groups.is_empty());
        self.count.fetch_sub(topics.len(), Ordering::Relaxed);
        topics
    }

    /// Pairs refused since start, each time one was refused.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_holds_and_deleting_frees_room() {
        let cap = SeriesCap::new(2);
        assert!(cap.admit("T", "g1"));
        assert!(cap.admit("T", "g2"));
        assert!(cap.admit("T", "g1"), "admitted pairs stay admitted");
        assert!(!cap.admit("T", "g3"));
        assert!(!cap.admit("U", "g1"));
        assert_eq!(cap.dropped(), 2);
        assert_eq!(cap.forget_group("g1"), vec!["T"]);
        assert!(cap.admit("U", "g1"));
        assert_eq!(cap.forget_topic("T"), vec!["g2"]);
        assert!(cap.admit("T", "g3"));
        assert_eq!(cap.dropped(), 2);
    }
}
