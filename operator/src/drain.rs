//! Removing a broker group without losing what it holds: its writes are fenced at the name
//! servers, and it is removed only once producers have had time to leave it, nothing arrives
//! any more, and its consumer groups have read everything. [`next`] decides from what the
//! controller saw this pass; the group's status carries the rest from pass to pass.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use crate::crd::DrainStatus;
use crate::roll::{elapsed, FENCE_MAX};

/// What one pass saw of a draining group.
#[derive(Debug, Clone, Copy, Default)]
pub struct Seen {
    /// At least one name server took the fence this pass.
    pub fenced: bool,
    /// Unconsumed messages over the group's consumer groups, when the broker answered.
    pub backlog: Option<i64>,
    /// The broker's count of stored messages, when it answered.
    pub put_total: Option<i64>,
}

/// The group's drain status after this pass, and whether it may now be removed.
pub fn next(previous: Option<&DrainStatus>, seen: Seen, now: Timestamp) -> (DrainStatus, bool) {
    // The clock starts with the first fence a name server took.
    let since = previous
        .and_then(|previous| previous.since.clone())
        .or_else(|| seen.fenced.then_some(Time(now)));
    let still = seen.put_total.is_some() && previous.and_then(|p| p.put_total) == seen.put_total;
    let removable = seen.fenced
        && since
            .as_ref()
            .is_some_and(|since| elapsed(since, now) >= FENCE_MAX)
        && seen.backlog == Some(0)
        && still;
    (
        DrainStatus {
            since,
            backlog: seen.backlog,
            put_total: seen.put_total,
        },
        removable,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + seconds).unwrap()
    }

    fn seen(backlog: Option<i64>, put_total: Option<i64>) -> Seen {
        Seen {
            fenced: true,
            backlog,
            put_total,
        }
    }

    #[test]
    fn a_group_is_removed_only_after_the_fence_bound_with_no_backlog_and_no_sends() {
        let (status, remove) = next(None, seen(Some(0), Some(5)), at(0));
        assert!(!remove, "removed on the first look");
        // No backlog, nothing arriving, but producers may not have refreshed their routes yet.
        let (status, remove) = next(Some(&status), seen(Some(0), Some(5)), at(20));
        assert!(!remove);
        // A message arrived: the count moved, so not yet.
        let (status, remove) = next(Some(&status), seen(Some(1), Some(6)), at(41));
        assert!(!remove);
        let (status, remove) = next(Some(&status), seen(Some(0), Some(6)), at(45));
        assert!(remove);
        assert_eq!(status.backlog, Some(0));
        assert_eq!(status.since, Some(Time(at(0))));
    }

    #[test]
    fn an_unknown_backlog_or_an_untaken_fence_never_removes() {
        let (status, _) = next(None, seen(Some(0), Some(1)), at(0));
        let (status, remove) = next(Some(&status), seen(None, Some(1)), at(100));
        assert!(!remove);
        let unfenced = Seen {
            fenced: false,
            ..seen(Some(0), Some(1))
        };
        let (_, remove) = next(Some(&status), unfenced, at(200));
        assert!(!remove);
        // Never fenced at all: the clock has not started.
        let (status, remove) = next(None, unfenced, at(0));
        assert!(!remove);
        assert_eq!(status.since, None);
        let (status, remove) = next(Some(&status), seen(Some(0), Some(1)), at(500));
        assert!(!remove, "the clock started before the first fence");
        assert_eq!(status.since, Some(Time(at(500))));
    }
}
