//! Paces the passes of controllers that poll their brokers (topics, consumer groups). Each
//! pass writes a status that changes with the lag, and a status write is a watch event that
//! would start the next pass at once: the pacer holds such a pass until the object's own
//! requeue is due. A spec change (a new generation) is never held.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};

use crate::Result;

#[derive(Default)]
pub struct Pacer {
    /// Per object: the generation of its last pass and when the next one is due.
    due: Mutex<HashMap<String, (Option<i64>, Instant)>>,
}

impl Pacer {
    /// A controller's reconcile of `object`: runs `pass` (which says when the next is due)
    /// unless the object's requeue is not due yet; forgets a deleted object.
    pub async fn run<K>(
        &self,
        object: &K,
        pass: impl Future<Output = Result<Duration>>,
    ) -> Result<Action>
    where
        K: Resource<DynamicType = ()>,
    {
        let key = format!(
            "{}/{}/{}",
            K::kind(&()),
            object.namespace().unwrap_or_default(),
            object.name_any()
        );
        let generation = object.meta().generation;
        if object.meta().deletion_timestamp.is_some() {
            self.forget(&key);
            return Ok(Action::await_change());
        }
        if let Some(wait) = self.hold(&key, generation) {
            return Ok(Action::requeue(wait));
        }
        let after = pass.await?;
        self.ran(&key, generation, after);
        Ok(Action::requeue(after))
    }

    /// How long a pass of `key` at `generation` must wait yet; `None` to run it now.
    pub fn hold(&self, key: &str, generation: Option<i64>) -> Option<Duration> {
        let due = self.due.lock().expect("pacer poisoned");
        let (last, at) = due.get(key)?;
        let left = at.checked_duration_since(Instant::now())?;
        (*last == generation && !left.is_zero()).then_some(left)
    }

    /// Records a pass of `key` at `generation` whose next one is due `after` from now.
    pub fn ran(&self, key: &str, generation: Option<i64>, after: Duration) {
        self.due
            .lock()
            .expect("pacer poisoned")
            .insert(key.to_string(), (generation, Instant::now() + after));
    }

    /// Forgets `key` (its object is gone).
    pub fn forget(&self, key: &str) {
        self.due.lock().expect("pacer poisoned").remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_echo_waits_for_the_requeue_and_a_new_generation_does_not() {
        let pacer = Pacer::default();
        assert_eq!(pacer.hold("topic/a", Some(1)), None, "a first pass runs");
        pacer.ran("topic/a", Some(1), Duration::from_secs(10));
        let left = pacer.hold("topic/a", Some(1)).expect("held");
        assert!(left <= Duration::from_secs(10) && left > Duration::from_secs(9));
        assert_eq!(
            pacer.hold("topic/a", Some(2)),
            None,
            "a spec change runs now"
        );
        assert_eq!(
            pacer.hold("topic/b", Some(1)),
            None,
            "objects are paced apart"
        );
        pacer.ran("topic/a", Some(1), Duration::ZERO);
        assert_eq!(pacer.hold("topic/a", Some(1)), None, "a due pass runs");
        pacer.forget("topic/a");
        assert_eq!(pacer.hold("topic/a", Some(1)), None);
    }
}
