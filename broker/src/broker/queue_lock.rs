//! Broker-side queue locks for orderly consumers (RocketMQ's RebalanceLockManager): an
//! orderly push consumer consumes a queue only while it holds that queue's lock here, so
//! two members of a group never work on one queue at once. A lock not renewed for 60 s
//! is free for the taking.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use protocol::body::MessageQueue;

/// `rocketmq.broker.rebalance.lockMaxLiveTime`'s default.
pub const LOCK_MAX_LIVE: Duration = Duration::from_secs(60);

struct Holder {
    client_id: String,
    renewed: Instant,
}

#[derive(Default)]
pub struct QueueLocks {
    groups: Mutex<HashMap<String, HashMap<MessageQueue, Holder>>>,
}

impl QueueLocks {
    /// Locks (or renews) what it can of `queues` for `client_id`; returns the queues the
    /// client now holds among them.
    pub fn lock(
        &self,
        group: &str,
        client_id: &str,
        queues: &BTreeSet<MessageQueue>,
        now: Instant,
    ) -> BTreeSet<MessageQueue> {
        let mut groups = self.groups.lock();
        let table = groups.entry(group.to_string()).or_default();
        let mut held = BTreeSet::new();
        for queue in queues {
            let holder = table.entry(queue.clone()).or_insert_with(|| Holder {
                client_id: client_id.to_string(),
                renewed: now,
            });
            let expired = now.duration_since(holder.renewed) > LOCK_MAX_LIVE;
            if holder.client_id == client_id || expired {
                holder.client_id = client_id.to_string();
                holder.renewed = now;
                held.insert(queue.clone());
            }
        }
        held
    }

    /// Releases the queues `client_id` holds among `queues`.
    pub fn unlock(&self, group: &str, client_id: &str, queues: &BTreeSet<MessageQueue>) {
        let mut groups = self.groups.lock();
        if let Some(table) = groups.get_mut(group) {
            for queue in queues {
                if table.get(queue).is_some_and(|h| h.client_id == client_id) {
                    table.remove(queue);
                }
            }
            if table.is_empty() {
                groups.remove(group);
            }
        }
    }

    /// True when no lock of the group is live: it is not consuming orderly right now.
    pub fn all_expired(&self, group: &str, now: Instant) -> bool {
        self.groups.lock().get(group).is_none_or(|table| {
            table
                .values()
                .all(|holder| now.duration_since(holder.renewed) > LOCK_MAX_LIVE)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queues(ids: &[i32]) -> BTreeSet<MessageQueue> {
        ids.iter()
            .map(|id| MessageQueue {
                topic: "T".into(),
                broker_name: "b".into(),
                queue_id: *id,
            })
            .collect()
    }

    #[test]
    fn one_holder_per_queue_until_it_lets_go_or_expires() {
        let locks = QueueLocks::default();
        let start = Instant::now();
        assert_eq!(
            locks.lock("g", "c1", &queues(&[0, 1]), start),
            queues(&[0, 1])
        );
        assert_eq!(locks.lock("g", "c2", &queues(&[1, 2]), start), queues(&[2]));
        assert_eq!(
            locks.lock("g", "c1", &queues(&[0, 1]), start),
            queues(&[0, 1])
        );
        assert!(!locks.all_expired("g", start));
        locks.unlock("g", "c1", &queues(&[1]));
        assert_eq!(locks.lock("g", "c2", &queues(&[1]), start), queues(&[1]));
        // c2 unlocking a queue it does not hold changes nothing.
        locks.unlock("g", "c2", &queues(&[0]));
        assert!(locks.lock("g", "c2", &queues(&[0]), start).is_empty());
        let later = start + LOCK_MAX_LIVE + Duration::from_secs(1);
        assert!(locks.all_expired("g", later));
        assert_eq!(locks.lock("g", "c2", &queues(&[0]), later), queues(&[0]));
        assert!(locks.all_expired("other", start));
    }
}
