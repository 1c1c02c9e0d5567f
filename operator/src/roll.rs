//! Rolling brokers onto a new config or template: one broker of the whole cluster at a time,
//! and never one that still takes writes.
//!
//! A roll is a small state machine kept in the cluster's status, so that a restarted or new
//! leader resumes it: nothing rolling; `Fencing` (the broker's group has lost its write
//! permission at the name servers and producers are moving away); `Restarting` (its pod was
//! deleted and the StatefulSet makes a new one); then the fence is lifted and the next broker
//! may go. [`next`] decides; the controller does the I/O each decision names.
//!
//! A replicated group (`replicasPerGroup` > 1) keeps taking writes while one replica is down,
//! so it is never fenced. Its followers go first, each straight to `Restarting`. Its leader
//! goes last: `HandingOver` moves its leadership to a follower, which is an election without
//! the timeout, and then waits until the sends it passes on to the new leader stand still
//! (producers look their routes up every 30 s) before it restarts. So no roll costs an
//! election timeout, and the group never has fewer than all but one replica up, or a
//! follower that has not caught up.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use crate::crd::{RollStatus, RollStep};

/// How long a fence, or an old leader's passing on of sends, is waited out before the pod is
/// restarted anyway: the Java client refreshes routes every 30 s (`pollNameServerInterval`),
/// so by then every producer has seen the change.
pub const FENCE_MAX: Duration = Duration::from_secs(40);
/// How long the broker's count of sends (stored, or passed on) must stand still before
/// producers are taken to have left it, so an idle broker is restarted without waiting out
/// [`FENCE_MAX`].
pub const QUIET: Duration = Duration::from_secs(8);
/// How long a leader's handover is tried before the leader is restarted anyway, at the cost of
/// one election: a group whose transfers keep failing (no follower can take over) must not
/// hold the roll, and the config it brings, for ever.
pub const HAND_OVER_MAX: Duration = Duration::from_secs(120);

/// A broker's part in its group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The only broker of its group: it takes the group's writes until fenced.
    Alone,
    Leader,
    Follower,
    /// A replica that did not say: restarted as a follower, after the followers that did.
    Unknown,
}

/// One broker pod as the controller sees it.
#[derive(Debug, Clone)]
pub struct Member {
    pub name: String,
    pub uid: String,
    /// Its group's brokerName.
    pub broker_name: String,
    pub ready: bool,
    /// Its containers run (past their startup probe): not Pending, not in a crash loop.
    pub started: bool,
    pub terminating: bool,
    /// Runs an older config or template than its StatefulSet wants.
    pub outdated: bool,
    /// False for a group being drained for removal: it is not worth a restart.
    pub rollable: bool,
    pub role: Role,
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
    /// Record the roll and move this leader's leadership to a follower (again, if it still
    /// leads).
    HandOver(RollStatus),
    /// Keep the roll as it now stands (and the fence up while `Fencing`).
    Hold(RollStatus),
    /// Delete the pod; the roll is now `Restarting`.
    Restart(RollStatus),
    /// The replacement is ready, or the pod no longer needs a restart: lift the fence of this
    /// brokerName; the roll is over.
    Unfence(String),
    /// The same for a replica of a replicated group, which had no fence.
    Done,
}

/// Decides the next step from the roll in progress (if any), every broker pod of the cluster
/// (in the order they should roll), how many pods the cluster should have, and the count of
/// sends that still reach the rolling broker (`None` when it cannot be asked): while fencing,
/// the messages it stored; while handing over, the sends it passed on to the new leader.
pub fn next(
    roll: Option<&RollStatus>,
    members: &[Member],
    expected: usize,
    sends: Option<i64>,
    now: Timestamp,
) -> Next {
    let Some(roll) = roll else {
        return start(members, expected, now);
    };
    let member = members.iter().find(|member| member.name == roll.pod);
    // Replaced or on its way out while fenced or handing over (a crash, someone's delete, a
    // restart this roll asked for already): as good as restarted.
    let replaced = || {
        Next::Hold(RollStatus {
            step: RollStep::Restarting,
            since: Time(now),
            ..roll.clone()
        })
    };
    match roll.step {
        RollStep::Fencing => match member {
            Some(member) if member.uid != roll.uid || member.terminating => replaced(),
            Some(member) if member.outdated => quiet(roll, sends, now),
            // The spec went back, or the pod is gone: nothing to restart.
            _ => Next::Unfence(roll.broker_name.clone()),
        },
        RollStep::HandingOver => match member {
            Some(member) if member.uid != roll.uid || member.terminating => replaced(),
            Some(member) if member.outdated && member.role == Role::Leader => {
                // Given up on only while the rest of the group is up and caught up: the
                // restart then costs an election, not the quorum.
                let others_up = members
                    .iter()
                    .filter(|other| {
                        other.broker_name == member.broker_name && other.name != member.name
                    })
                    .all(|other| other.ready && !other.terminating);
                if elapsed(&roll.since, now) >= HAND_OVER_MAX && others_up {
                    restarting(roll, now)
                } else {
                    Next::HandOver(roll.clone())
                }
            }
            // Handed over: the wait for the sends it passes on counts from the first pass
            // that sees it follow, however long the transfer took.
            Some(member) if member.outdated && roll.put_total.is_none() => quiet(
                &RollStatus {
                    since: Time(now),
                    ..roll.clone()
                },
                sends,
                now,
            ),
            Some(member) if member.outdated => quiet(roll, sends, now),
            _ => Next::Done,
        },
        RollStep::Restarting => match member {
            Some(member) if member.uid != roll.uid && member.ready && !member.terminating => {
                match member.role {
                    Role::Alone => Next::Unfence(roll.broker_name.clone()),
                    _ => Next::Done,
                }
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
    // Followers before the replicas that did not say, leaders last.
    let Some(victim) = [Role::Alone, Role::Follower, Role::Unknown, Role::Leader]
        .iter()
        .find_map(|role| outdated.clone().find(|member| member.role == *role))
    else {
        return Next::Idle;
    };
    // A group growing from one broker into replicas: its new replicas cannot elect a leader
    // until that broker restarts as their first, so they are not waited for once they run.
    // One still Pending or crash-looping is: the broker restarted without it would have no
    // quorum.
    let joining = |member: &Member| {
        !member.ready
            && member.started
            && !member.terminating
            && !member.outdated
            && members.iter().any(|alone| {
                alone.broker_name == member.broker_name
                    && alone.role == Role::Alone
                    && alone.outdated
            })
    };
    let all_up = members.len() == expected
        && members
            .iter()
            .all(|member| (member.ready && !member.terminating) || joining(member));
    if !all_up {
        return Next::WaitForBrokers;
    }
    let roll = |step| RollStatus {
        pod: victim.name.clone(),
        broker_name: victim.broker_name.clone(),
        uid: victim.uid.clone(),
        step,
        since: Time(now),
        put_total: None,
        put_total_since: None,
    };
    match victim.role {
        Role::Alone => Next::Fence(roll(RollStep::Fencing)),
        Role::Leader => Next::HandOver(roll(RollStep::HandingOver)),
        // A follower takes no sends (its leader does, and keeps a quorum without it).
        Role::Follower | Role::Unknown => Next::Restart(roll(RollStep::Restarting)),
    }
}

/// Holds the roll until the count of sends reaching the broker has stood still for [`QUIET`],
/// or [`FENCE_MAX`] has passed since the step began; then restarts the broker.
fn quiet(roll: &RollStatus, put_total: Option<i64>, now: Timestamp) -> Next {
    let restart = || restarting(roll, now);
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

/// Restart the broker of `roll` now.
fn restarting(roll: &RollStatus, now: Timestamp) -> Next {
    Next::Restart(RollStatus {
        step: RollStep::Restarting,
        since: Time(now),
        put_total: None,
        put_total_since: None,
        ..roll.clone()
    })
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
            started: true,
            terminating: false,
            outdated,
            rollable: true,
            role: Role::Alone,
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

    fn replica(name: &str, role: Role) -> Member {
        Member {
            role,
            ..member(name, true)
        }
    }

    #[test]
    fn a_replicated_group_restarts_its_followers_unfenced_and_its_leader_last() {
        let mut members = [
            replica("demo-broker-0-2", Role::Follower),
            replica("demo-broker-0-1", Role::Leader),
            replica("demo-broker-0-0", Role::Unknown),
        ];
        // A follower first, with no fence: the leader keeps the group's quorum and its writes.
        let Next::Restart(restarting) = next(None, &members, 3, None, at(0)) else {
            panic!("expected a follower's restart")
        };
        assert_eq!(restarting.pod, "demo-broker-0-2");
        assert_eq!(restarting.step, RollStep::Restarting);
        // Back and caught up: over, with no fence to lift.
        members[0] = Member {
            uid: "new".into(),
            ..replica("demo-broker-0-2", Role::Follower)
        };
        members[0].outdated = false;
        assert_eq!(
            next(Some(&restarting), &members, 3, None, at(20)),
            Next::Done
        );
        // Then the replica that did not say where it stands, then the leader.
        let Next::Restart(restarting) = next(None, &members, 3, None, at(21)) else {
            panic!()
        };
        assert_eq!(restarting.pod, "demo-broker-0-0");
        members[2].outdated = false;
        match next(None, &members, 3, None, at(40)) {
            Next::HandOver(roll) => {
                assert_eq!(roll.pod, "demo-broker-0-1");
                assert_eq!(roll.step, RollStep::HandingOver);
            }
            other => panic!("expected the leader to hand over, got {other:?}"),
        }
    }

    /// replicasPerGroup 1 -> 3: the broker still runs alone; its two new replicas run but
    /// cannot elect a leader before it restarts as their first, so they are not Ready.
    fn growing() -> [Member; 3] {
        let mut members = [
            replica("demo-broker-0-0", Role::Alone),
            replica("demo-broker-0-1", Role::Unknown),
            replica("demo-broker-0-2", Role::Unknown),
        ];
        for joining in &mut members[1..] {
            joining.outdated = false;
            joining.ready = false;
        }
        members
    }

    #[test]
    fn a_broker_growing_into_replicas_rolls_without_waiting_for_the_replicas_it_starts() {
        let mut members = growing();
        let roll = fenced(&members);
        assert_eq!(roll.pod, "demo-broker-0-0");
        // Back as the group's leader: over.
        let Next::Restart(restarting) = next(Some(&roll), &members, 3, None, at(1)) else {
            panic!("a broker that cannot be asked is restarted")
        };
        members[0] = Member {
            uid: "new".into(),
            outdated: false,
            ..replica("demo-broker-0-0", Role::Leader)
        };
        assert_eq!(
            next(Some(&restarting), &members, 3, None, at(30)),
            Next::Done
        );
        // A replica that is not Ready beside one that is not growing is waited for.
        members[0].role = Role::Follower;
        members[0].outdated = true;
        assert_eq!(next(None, &members, 3, None, at(31)), Next::WaitForBrokers);
    }

    #[test]
    fn a_late_transfer_still_waits_for_the_sends_it_passes_on() {
        let members = [replica("demo-broker-0-1", Role::Follower)];
        let handing_over = RollStatus {
            pod: "demo-broker-0-1".into(),
            broker_name: "demo-broker-0".into(),
            uid: "demo-broker-0-1-uid".into(),
            step: RollStep::HandingOver,
            since: Time(at(0)),
            put_total: None,
            put_total_since: None,
        };
        // The transfer took 100 s; producers still reach the old leader.
        let Next::Hold(held) = next(Some(&handing_over), &members, 1, Some(5), at(100)) else {
            panic!("restarted at once after a late transfer")
        };
        let Next::Hold(_) = next(Some(&held), &members, 1, Some(9), at(101)) else {
            panic!("restarted while producers still reached it")
        };
    }

    #[test]
    fn a_broker_growing_into_replicas_waits_for_a_new_replica_that_does_not_run() {
        let mut members = growing();
        // Pending (no volume, no node): restarting the broker now would leave it alone in a
        // group of three.
        members[2].started = false;
        assert_eq!(next(None, &members, 3, None, at(0)), Next::WaitForBrokers);
    }

    #[test]
    fn a_follower_behind_its_leader_holds_the_roll() {
        // The controller counts a replica that has not caught up as not ready.
        let mut members = [
            replica("demo-broker-0-1", Role::Leader),
            replica("demo-broker-0-0", Role::Follower),
        ];
        members[1].outdated = false;
        members[1].ready = false;
        assert_eq!(next(None, &members, 2, None, at(0)), Next::WaitForBrokers);
    }

    #[test]
    fn an_old_leader_restarts_once_the_sends_it_passes_on_stand_still() {
        let mut members = [replica("demo-broker-0-1", Role::Leader)];
        let Next::HandOver(roll) = next(None, &members, 1, None, at(0)) else {
            panic!()
        };
        // The transfer did not take: it is asked again, for as long as HAND_OVER_MAX; then
        // the leader is restarted all the same.
        assert_eq!(
            next(Some(&roll), &members, 1, Some(0), at(2)),
            Next::HandOver(roll.clone())
        );
        assert_eq!(
            next(Some(&roll), &members, 1, Some(0), at(119)),
            Next::HandOver(roll.clone())
        );
        match next(Some(&roll), &members, 1, Some(0), at(120)) {
            Next::Restart(restart) => assert_eq!(restart.pod, "demo-broker-0-1"),
            other => panic!("a leader that never handed over was kept: {other:?}"),
        }
        // Not while another replica of its group is down: that would cost the quorum.
        let mut with_one_down = vec![
            members[0].clone(),
            replica("demo-broker-0-0", Role::Follower),
        ];
        with_one_down[1].ready = false;
        assert_eq!(
            next(Some(&roll), &with_one_down, 2, Some(0), at(130)),
            Next::HandOver(roll.clone())
        );
        members[0].role = Role::Follower;
        let Next::Hold(held) = next(Some(&roll), &members, 1, Some(30), at(3)) else {
            panic!()
        };
        let Next::Hold(held) = next(Some(&held), &members, 1, Some(31), at(5)) else {
            panic!()
        };
        let Next::Hold(held) = next(Some(&held), &members, 1, Some(31), at(12)) else {
            panic!("restarted while producers still reached it")
        };
        match next(Some(&held), &members, 1, Some(31), at(13)) {
            Next::Restart(restart) => assert_eq!(restart.step, RollStep::Restarting),
            other => panic!("expected a restart, got {other:?}"),
        }
        // Producers that never leave it do not hold the roll past the bound.
        let mut passed_on = 0;
        let mut state = roll;
        for second in 1..40 {
            passed_on += 10;
            match next(Some(&state), &members, 1, Some(passed_on), at(second)) {
                Next::Hold(held) => state = held,
                other => panic!("gave up at {second} s: {other:?}"),
            }
        }
        // (Counted from the first pass that saw it follow, at 1 s.)
        assert!(matches!(
            next(Some(&state), &members, 1, Some(passed_on + 10), at(41)),
            Next::Restart(_)
        ));
        // Deleted already (as a pass that read the step before its restart would see it):
        // nothing to restart again.
        let mut deleting = members.clone();
        deleting[0].terminating = true;
        assert!(matches!(
            next(Some(&state), &deleting, 1, Some(passed_on), at(41)),
            Next::Hold(RollStatus {
                step: RollStep::Restarting,
                ..
            })
        ));
        // Its replacement ready: over, unfenced.
        let restarted = [Member {
            uid: "new".into(),
            outdated: false,
            ..replica("demo-broker-0-1", Role::Follower)
        }];
        let restarting = RollStatus {
            step: RollStep::Restarting,
            ..state
        };
        assert_eq!(
            next(Some(&restarting), &restarted, 1, None, at(60)),
            Next::Done
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
