//! Held pulls (RocketMQ's PullRequestHoldService): a PULL that finds nothing new waits
//! here, keyed by topic and queue, until a message arrives past its offset or its hold time
//! runs out. The store calls [`PullHolds::arrived`] as it dispatches each message.

use std::collections::{BTreeSet, HashMap};

use parking_lot::Mutex;
use tokio::sync::oneshot;

struct Waiter {
    /// The queue offset the pull wants; a message at or past it wakes the pull.
    offset: i64,
    /// Tag hash codes the pull accepts; `None` accepts every message.
    tag_codes: Option<BTreeSet<i32>>,
    wake: oneshot::Sender<()>,
}

/// Held pulls by topic, then queue id: keyed by topic first so that each arrival (one per
/// message dispatched) finds its queue by `&str`, without allocating a key.
type Waiting = HashMap<String, HashMap<i32, Vec<Waiter>>>;

#[derive(Default)]
pub struct PullHolds {
    waiting: Mutex<Waiting>,
}

/// Resolves when the held pull should run again (a message arrived, or the broker stops).
pub type Wakeup = oneshot::Receiver<()>;

impl PullHolds {
    /// Parks a pull for `offset` of `topic`/`queue_id`.
    pub fn hold(
        &self,
        topic: &str,
        queue_id: i32,
        offset: i64,
        tag_codes: Option<BTreeSet<i32>>,
    ) -> Wakeup {
        let (wake, wakeup) = oneshot::channel();
        let mut waiting = self.waiting.lock();
        let queues = match waiting.get_mut(topic) {
            Some(queues) => queues,
            None => waiting.entry(topic.to_string()).or_default(),
        };
        queues.entry(queue_id).or_default().push(Waiter {
            offset,
            tag_codes,
            wake,
        });
        wakeup
    }

    /// A message with `tags_code` is now readable in the queue, which ends at `max_offset`.
    pub fn arrived(&self, topic: &str, queue_id: i32, max_offset: i64, tags_code: i64) {
        let mut waiting = self.waiting.lock();
        let Some(queues) = waiting.get_mut(topic) else {
            return;
        };
        let Some(waiters) = queues.get_mut(&queue_id) else {
            return;
        };
        let mut index = 0;
        while index < waiters.len() {
            let waiter = &waiters[index];
            // A pull whose reader went away (its task ended) is dropped as well.
            let ready = waiter.wake.is_closed()
                || (max_offset > waiter.offset
                    && waiter
                        .tag_codes
                        .as_ref()
                        .is_none_or(|codes| codes.contains(&(tags_code as i32))));
            if ready {
                let _ = waiters.swap_remove(index).wake.send(());
            } else {
                index += 1;
            }
        }
        if waiters.is_empty() {
            queues.remove(&queue_id);
            if queues.is_empty() {
                waiting.remove(topic);
            }
        }
    }

    /// Wakes every held pull, for a stopping broker to answer them at once.
    pub fn wake_all(&self) {
        for (_, queues) in self.waiting.lock().drain() {
            for waiter in queues.into_values().flatten() {
                let _ = waiter.wake.send(());
            }
        }
    }

    /// Forgets pulls whose waiting task has ended (timed out), so the map does not grow.
    pub fn prune(&self) {
        self.waiting.lock().retain(|_, queues| {
            queues.retain(|_, waiters| {
                waiters.retain(|waiter| !waiter.wake.is_closed());
                !waiters.is_empty()
            });
            !queues.is_empty()
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_message_past_the_offset_wakes_the_pull() {
        let holds = PullHolds::default();
        let mut early = holds.hold("T", 0, 5, None);
        let late = holds.hold("T", 0, 6, None);
        holds.arrived("T", 0, 5, 0);
        assert!(early.try_recv().is_err(), "offset 5 is not readable yet");
        holds.arrived("T", 0, 6, 0);
        assert!(early.await.is_ok());
        drop(late);
        holds.prune();
        assert!(holds.waiting.lock().is_empty());
    }

    #[tokio::test]
    async fn a_tag_the_pull_does_not_want_leaves_it_waiting() {
        let holds = PullHolds::default();
        let mut tagged = holds.hold("T", 1, 0, Some(BTreeSet::from([42])));
        holds.arrived("T", 1, 1, 7);
        assert!(tagged.try_recv().is_err());
        holds.arrived("T", 1, 2, 42);
        assert!(tagged.await.is_ok());
    }

    #[tokio::test]
    async fn an_arrival_wakes_only_its_own_queue_and_the_last_pull_leaves_no_entry() {
        let holds = PullHolds::default();
        let first = holds.hold("T", 0, 0, None);
        let mut second = holds.hold("T", 1, 0, None);
        holds.arrived("T", 0, 1, 0);
        assert!(first.await.is_ok());
        assert!(second.try_recv().is_err(), "queue 1 has nothing new");
        assert_eq!(holds.waiting.lock()["T"].len(), 1);
        holds.arrived("T", 1, 1, 0);
        assert!(second.await.is_ok());
        assert!(holds.waiting.lock().is_empty());
    }

    #[tokio::test]
    async fn stopping_wakes_everyone() {
        let holds = PullHolds::default();
        let a = holds.hold("T", 0, 0, None);
        let b = holds.hold("U", 3, 9, None);
        holds.wake_all();
        assert!(a.await.is_ok() && b.await.is_ok());
    }
}
