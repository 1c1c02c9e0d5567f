//! Rolling brokers onto a new config or template: one broker of the whole cluster at a time,
//! and never one that still takes writes.
//!
//! A roll is a small state machine kept in the cluster's status, so that a restarted or new
//! leader resumes it: nothing rolling; `Fencing` (the broker's group has lost its write
//! permission at the name servers and producers are moving away); `Restarting` (its pod was
//! deleted and the StatefulSet makes a new one); then the fence is lifted and the next broker
//! may go. [`next`] decides; the controller does the I/O each decision names.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use crate::crd::{RollStatus, RollStep};

/// The longest a fence is held before the pod is restarted anyway: the Java client refreshes
/// routes every 30 s (`pollNameServerInterval`), so by then every producer has seen it.
pub const FENCE_MAX: Duration = Duration::from_secs(40);
/// How long the broker's count of stored messages must stand still before producers are taken
/// to have left it, so an idle broker is restarted without waiting out [`FENCE_MAX`].
pub const QUIET: Duration = Duration::from_secs(8);

/// One broker pod as the controller sees it.
#[derive(Debug, Clone)]
pub struct Member {
    pub name: String,
    pub uid: String,
    /// Its group's brokerName.
    pub broker_name: String,
    pub ready: bool,
    pub terminating: bool,
    /// Runs an older config or template than its StatefulSet wants.
    pub outdated: bool,
    /// False for a group being drained for removal: it is not worth a restart.
    pub rollable: bool,
}

/// What to do next.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    /// Nothing is outdated.
    Idle,
    /// Something is outdated, but a broker is missing, starting or stopping: wait, so that
    /// never two brokers of the cluster are down at once.
    WaitForBrokers,
    /// This outdated broker is down already (Pending, crash-looping): delete it now, unfenced.
    /// It serves nothing, so its restart takes nothing away, and only its restart can bring the
    /// fix (a toleration, a config) that lets it come up.
    Replace(String),
    /// Fence this broker's group and record the roll.
    Fence(RollStatus),
    /// Keep the roll as it now stands (and the fence up while `Fencing`).
    Hold(RollStatus),
    /// Delete the pod; the roll is now `Restarting`.
    Restart(RollStatus),
    /// The replacement is ready, or the pod no longer needs a restart: lift the fence of this
    /// brokerName; the roll is over.
    Unfence(String),
}

/// Decides the next step from the roll in progress (if any), every broker pod of the cluster
/// (in the order they should roll), how many pods the cluster should have, and, while
/// fencing, the broker's count of stored messages (`None` when it cannot be asked).
pub fn next(
    roll: Option<&RollStatus>,
    members: &[Member],
    expected: usize,
    put_total: Option<i64>,
    now: Timestamp,
) -> Next {
    let Some(roll) = roll else {
        return start(members, expected, now);
    };
    let member = members.iter().find(|member| member.name == roll.pod);
    match roll.step {
        RollStep::Fencing => match member {
            // Replaced while fenced (a crash, someone's delete): as good as restarted.
            Some(member) if member.uid != roll.uid => Next::Hold(RollStatus {
                step: RollStep::Restarting,
                since: Time(now),
                ..roll.clone()
            }),
            Some(member) if member.outdated => fencing(roll, put_total, now),
            // The spec went back, or the pod is gone: nothing to restart.
            _ => Next::Unfence(roll.broker_name.clone()),
        },
        RollStep::Restarting => match member {
            Some(member) if member.uid != roll.uid && member.ready && !member.terminating => {
                Next::Unfence(roll.broker_name.clone())
            }
            _ => Next::Hold(roll.clone()),
        },
    }
}

fn start(members: &[Member], expected: usize, now: Timestamp) -> Next {
    let outdated = members
        .iter()
        .filter(|member| member.outdated && member.rollable);
    if let Some(down) = outdated
        .clone()
        .find(|member| !member.ready && !member.terminating)
    {
        return Next::Replace(down.name.clone());
    }
    let Some(victim) = outdated.clone().next() else {
        return Next::Idle;
    };
    let all_up = members.len() == expected
        && members
            .iter()
            .all(|member| member.ready && !member.terminating);
    if !all_up {
        return Next::WaitForBrokers;
    }
    Next::Fence(RollStatus {
        pod: victim.name.clone(),
        broker_name: victim.broker_name.clone(),
        uid: victim.uid.clone(),
        step: RollStep::Fencing,
        since: Time(now),
        put_total: None,
        put_total_since: None,
    })
}

fn fencing(roll: &RollStatus, put_total: Option<i64>, now: Timestamp) -> Next {
    let restart = || {
        Next::Restart(RollStatus {
            step: RollStep::Restarting,
            since: Time(now),
            put_total: None,
            put_total_since: None,
            ..roll.clone()
        })
    };
    // A broker that cannot be asked is not being written to through this operator's eyes
    // either; waiting longer would only keep it fenced.
    let Some(put_total) = put_total else {
        return restart();
    };
    if elapsed(&roll.since, now) >= FENCE_MAX {
        return restart();
    }
    match (&roll.put_total, &roll.put_total_since) {
        (Some(before), Some(since)) if *before == put_total => {
            if elapsed(since, now) >= QUIET {
                restart()
            } else {
                Next::Hold(roll.clone())
            }
        }
        _ => Next::Hold(RollStatus {
            put_total: Some(put_total),
            put_total_since: Some(Time(now)),
            ..roll.clone()
        }),
    }
}

pub fn elapsed(since: &Time, now: Timestamp) -> Duration {
    now.duration_since(since.0)
        .try_into()
        .unwrap_or(Duration::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str, outdated: bool) -> Member {
        Member {
            name: name.to_string(),
            uid: format!("{name}-uid"),
            broker_name: name.rsplit_once('-').unwrap().0.to_string(),
            ready: true,
            terminating: false,
            outdated,
            rollable: true,
        }
    }

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + seconds).unwrap()
    }

    fn fenced(members: &[Member]) -> RollStatus {
        match next(None, members, members.len(), None, at(0)) {
            Next::Fence(roll) => roll,
            other => panic!("expected a fence, got {other:?}"),
        }
    }

    #[test]
    fn nothing_outdated_is_idle_and_a_missing_broker_holds_the_roll() {
        let members = [
            member("demo-broker-0-0", false),
            member("demo-broker-1-0", false),
        ];
        assert_eq!(next(None, &members, 2, None, at(0)), Next::Idle);
        let mut members = [
            member("demo-broker-0-0", true),
            member("demo-broker-1-0", false),
        ];
        assert_eq!(next(None, &members, 3, None, at(0)), Next::WaitForBrokers);
        members[1].ready = false;
        assert_eq!(next(None, &members, 2, None, at(0)), Next::WaitForBrokers);
        members[1].ready = true;
        members[1].terminating = true;
        assert_eq!(next(None, &members, 2, None, at(0)), Next::WaitForBrokers);
    }

    #[test]
    fn an_outdated_broker_that_is_down_is_replaced_at_once_without_a_fence() {
        // Pending on a spec it cannot run with: waiting for it to be Ready would wait forever.
        let mut members = [
            member("demo-broker-0-0", true),
            member("demo-broker-1-0", true),
        ];
        members[1].ready = false;
        assert_eq!(
            next(None, &members, 2, None, at(0)),
            Next::Replace("demo-broker-1-0".into())
        );
        // Already on its way out: nothing more to do but wait.
        members[1].terminating = true;
        assert_eq!(next(None, &members, 2, None, at(0)), Next::WaitForBrokers);
    }

    #[test]
    fn the_first_outdated_rollable_broker_is_fenced_first() {
        let mut members = [
            member("demo-broker-0-0", true),
            member("demo-broker-1-0", true),
        ];
        members[0].rollable = false;
        let roll = fenced(&members);
        assert_eq!(roll.pod, "demo-broker-1-0");
        assert_eq!(roll.broker_name, "demo-broker-1");
        assert_eq!(roll.step, RollStep::Fencing);
    }

    #[test]
    fn a_fenced_broker_is_restarted_once_its_puts_stand_still() {
        let members = [member("demo-broker-0-0", true)];
        let roll = fenced(&members);
        // Sends still arrive: the count moves, so the wait goes on.
        let Next::Hold(roll) = next(Some(&roll), &members, 1, Some(10), at(1)) else {
            panic!()
        };
        let Next::Hold(roll) = next(Some(&roll), &members, 1, Some(25), at(3)) else {
            panic!()
        };
        assert_eq!(roll.put_total, Some(25));
        let Next::Hold(roll) = next(Some(&roll), &members, 1, Some(25), at(10)) else {
            panic!("restarted before the count stood still long enough")
        };
        match next(Some(&roll), &members, 1, Some(25), at(12)) {
            Next::Restart(restart) => {
                assert_eq!(restart.step, RollStep::Restarting);
                assert_eq!(restart.uid, "demo-broker-0-0-uid");
            }
            other => panic!("expected a restart, got {other:?}"),
        }
    }

    #[test]
    fn a_busy_or_unreachable_broker_is_restarted_after_the_bound() {
        let members = [member("demo-broker-0-0", true)];
        let roll = fenced(&members);
        let mut puts = 0;
        let mut state = roll;
        for second in 1..40 {
            puts += 100;
            match next(Some(&state), &members, 1, Some(puts), at(second)) {
                Next::Hold(held) => state = held,
                other => panic!("gave up at {second} s: {other:?}"),
            }
        }
        assert!(matches!(
            next(Some(&state), &members, 1, Some(puts + 100), at(40)),
            Next::Restart(_)
        ));
        assert!(matches!(
            next(Some(&fenced(&members)), &members, 1, None, at(1)),
            Next::Restart(_)
        ));
    }

    #[test]
    fn the_fence_lifts_only_when_the_replacement_is_ready() {
        let mut members = [
            member("demo-broker-0-0", true),
            member("demo-broker-1-0", true),
        ];
        let roll = fenced(&members);
        let Next::Restart(restarting) = next(Some(&roll), &members, 2, None, at(1)) else {
            panic!()
        };
        // The old pod is still terminating: hold.
        members[0].terminating = true;
        assert_eq!(
            next(Some(&restarting), &members, 2, None, at(2)),
            Next::Hold(restarting.clone())
        );
        // Its replacement exists but is not ready yet: hold; the other broker is not touched.
        members[0] = Member {
            uid: "new".into(),
            ready: false,
            outdated: false,
            ..member("demo-broker-0-0", false)
        };
        assert_eq!(
            next(Some(&restarting), &members, 2, None, at(3)),
            Next::Hold(restarting.clone())
        );
        members[0].ready = true;
        assert_eq!(
            next(Some(&restarting), &members, 2, None, at(4)),
            Next::Unfence("demo-broker-0".into())
        );
    }

    #[test]
    fn a_roll_whose_pod_needs_no_restart_any_more_is_unfenced() {
        let members = [member("demo-broker-0-0", true)];
        let roll = fenced(&members);
        let current = [member("demo-broker-0-0", false)];
        assert_eq!(
            next(Some(&roll), &current, 1, Some(1), at(1)),
            Next::Unfence("demo-broker-0".into())
        );
        // A pod replaced by someone else while fenced counts as restarted.
        let replaced = [Member {
            uid: "other".into(),
            ..member("demo-broker-0-0", false)
        }];
        match next(Some(&roll), &replaced, 1, Some(1), at(1)) {
            Next::Hold(held) => assert_eq!(held.step, RollStep::Restarting),
            other => panic!("{other:?}"),
        }
    }
}
