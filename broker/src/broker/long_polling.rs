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

#[derive(Default)]
pub struct PullHolds {
    waiting: Mutex<HashMap<(String, i32), Vec<Waiter>>>,
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
        self.waiting
            .lock()
            .entry((topic.to_string(), queue_id))
            .or_default()
            .push(Waiter {
                offset,
                tag_codes,
                wake,
            });
        wakeup
    }

    /// A message with `tags_code` is now readable in the queue, which ends at `max_offset`.
    pub fn arrived(&self, topic: &str, queue_id: i32, max_offset: i64, tags_code: i64) {
        let mut waiting = self.waiting.lock();
        let key = (topic.to_string(), queue_id);
        let Some(waiters) = waiting.get_mut(&key) else {
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
            waiting.remove(&key);
        }
    }

    /// Wakes every held pull, for a stopping broker to answer them at once.
    pub fn wake_all(&self) {
        for (_, waiters) in self.waiting.lock().drain() {
            for waiter in waiters {
                let _ = waiter.wake.send(());
            }
        }
    }

    /// Forgets pulls whose waiting task has ended (timed out), so the map does not grow.
    pub fn prune(&self) {
        self.waiting.lock().retain(|_, waiters| {
            waiters.retain(|waiter| !waiter.wake.is_closed());
            !waiters.is_empty()
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
    async fn stopping_wakes_everyone() {
        let holds = PullHolds::default();
        let a = holds.hold("T", 0, 0, None);
        let b = holds.hold("U", 3, 9, None);
        holds.wake_all();
        assert!(a.await.is_ok() && b.await.is_ok());
    }
}
