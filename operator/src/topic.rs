//! The `RocketTopic` custom resource and the rules that move a topic's queue counts: a grow
//! takes effect at once; a shrink lowers the write queues, waits for producers to see it and
//! for every group to read the leaving queues to their end, and only then lowers the read
//! queues, so no message is left in a queue nobody reads. Each step is in the status, so an
//! operator that restarts halfway resumes where it was.

// Several printcolumn(...) entries repeat `type_ = ...`, which clippy mistakes for a duplicated attribute.
#![allow(clippy::duplicated_attributes)]

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::target::{ClusterRef, ONE_TARGET_MESSAGE, ONE_TARGET_RULE};

/// Annotation that freezes the autoscaling decisions of a topic or consumer group while it is
/// `paused`; what is measured is still written to the status.
pub const AUTOSCALING_ANNOTATION: &str = "rocketry.dev/autoscaling";

/// A topic of a RocketCluster (or of any RocketMQ cluster's name servers), served on every
/// broker group with the same queue counts.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "rocketry.dev",
    version = "v1alpha1",
    kind = "RocketTopic",
    namespaced,
    shortname = "rtopic",
    category = "rocketry",
    status = "RocketTopicStatus",
    doc = "A topic on every broker group of a cluster: its queue counts, permission and order, and how its queues follow the backlog.",
    printcolumn(name = "Topic", type_ = "string", json_path = ".status.topic"),
    printcolumn(
        name = "Queues",
        type_ = "string",
        json_path = ".status.served",
        description = "read/write queues served per broker group"
    ),
    printcolumn(
        name = "Lag",
        type_ = "integer",
        json_path = ".status.lag",
        description = "messages not consumed by the group furthest behind"
    ),
    printcolumn(name = "Step", type_ = "string", json_path = ".status.shrink.step"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": ONE_TARGET_RULE, "message": ONE_TARGET_MESSAGE},
    {"rule": "has(self.topicName) == has(oldSelf.topicName) && (!has(self.topicName) || self.topicName == oldSelf.topicName)",
     "message": "topicName cannot change; make a new RocketTopic"},
    {"rule": "self.ordered == oldSelf.ordered",
     "message": "ordered cannot change: it decides how keys map to queues"},
    {"rule": "!has(self.autoscaling) || (self.autoscaling.minQueues <= self.autoscaling.maxQueues)",
     "message": "autoscaling.minQueues must not exceed autoscaling.maxQueues"},
    {"rule": "!self.ordered || !has(self.autoscaling) || !self.autoscaling.shrink",
     "message": "an ordered topic is never shrunk: its keys would move to other queues while the old ones still hold messages"},
    {"rule": "!self.ordered || !has(self.autoscaling) || self.allowReorder",
     "message": "autoscaling an ordered topic grows it, which moves keys to other queues; set allowReorder to accept that"}
]))]
pub struct RocketTopicSpec {
    #[serde(flatten)]
    pub target: ClusterRef,
    /// The topic's name in RocketMQ; the object's name when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 127), regex(pattern = r"^[%|a-zA-Z0-9_-]+$"))]
    pub topic_name: Option<String>,
    /// Read and write queues on each broker group; with `autoscaling`, where it starts.
    #[serde(default = "eight")]
    #[schemars(range(min = 1, max = 1024))]
    pub queues: i32,
    #[serde(default)]
    pub permission: Permission,
    /// Messages of one key go to one queue, in order (RocketMQ's orderly topics). Such a
    /// topic is never shrunk, and grows only with `allowReorder`.
    #[serde(default)]
    pub ordered: bool,
    /// Lets an ordered topic grow, accepting that keys move to other queues while the old
    /// ones may still hold their earlier messages.
    #[serde(default)]
    pub allow_reorder: bool,
    /// How long producers may keep sending to the leaving queues of a shrink after their
    /// write queues are gone, before the operator looks at what is left in them: RocketMQ's
    /// clients refresh routes every 30 s (pollNameServerInterval), plus a margin for a send
    /// in flight. Clients that poll less often need more.
    #[serde(default = "forty_five")]
    #[schemars(range(min = 0, max = 3600))]
    pub shrink_grace_seconds: i64,
    /// Queue counts that follow the backlog; `queues` stays fixed when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<QueueAutoscaling>,
}

fn eight() -> i32 {
    8
}

fn forty_five() -> i64 {
    45
}

/// What clients may do with the topic (RocketMQ's perm bits).
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum Permission {
    #[default]
    ReadWrite,
    ReadOnly,
    WriteOnly,
}

impl Permission {
    /// RocketMQ's PERM_READ (4) and PERM_WRITE (2).
    pub fn bits(self) -> i32 {
        match self {
            Permission::ReadWrite => 6,
            Permission::ReadOnly => 4,
            Permission::WriteOnly => 2,
        }
    }
}

/// How the queue count follows the backlog: it doubles when the groups' consumers already
/// take one queue each and the lag per queue stays over `lagPerQueue`, and halves (when
/// `shrink` allows) once the lag is low and the consumers fit in half the queues.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct QueueAutoscaling {
    #[schemars(range(min = 1, max = 1024))]
    pub min_queues: i32,
    #[schemars(range(min = 1, max = 1024))]
    pub max_queues: i32,
    /// The backlog one queue may hold (per group) before the topic needs more queues.
    #[serde(default = "thousand")]
    #[schemars(range(min = 1))]
    pub lag_per_queue: i64,
    /// Whether the queue count may come down again.
    #[serde(default)]
    pub shrink: bool,
    /// Least time between two grows: the consumers need it to rebalance onto new queues.
    #[serde(default = "thirty")]
    #[schemars(range(min = 0, max = 86400))]
    pub grow_cooldown_seconds: i64,
    /// Least time after any change before a shrink starts.
    #[serde(default = "three_hundred")]
    #[schemars(range(min = 0, max = 86400))]
    pub shrink_cooldown_seconds: i64,
}

fn thousand() -> i64 {
    1000
}

fn thirty() -> i64 {
    30
}

fn three_hundred() -> i64 {
    300
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RocketTopicStatus {
    /// The topic's name in RocketMQ.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// The queue count the operator is moving the topic to (`queues`, or what autoscaling chose).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wanted_queues: Option<i32>,
    /// Read/write queues served, group by group (`8/8` when they agree everywhere).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub served: Option<String>,
    /// Messages the group furthest behind has not consumed, over every broker group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag: Option<i64>,
    /// A shrink under way; it is written before each step is taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shrink: Option<Shrink>,
    /// When autoscaling last changed the queue count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scale_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready: every broker group serves the wanted queues.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// A shrink from `from` read queues to `to`.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Shrink {
    pub from: i32,
    pub to: i32,
    pub step: ShrinkStep,
    /// When every broker group served `to` write queues.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub writes_lowered_at: Option<Time>,
    /// Messages still unread in the leaving queues at the last look.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unread: Option<i64>,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ShrinkStep {
    /// Lowering writeQueueNums on every broker group.
    LoweringWrites,
    /// Waiting for producers to refresh their routes, then for every group to read the
    /// leaving queues to their end.
    Draining,
}

/// What to do next with the topic's queue counts.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    /// Make every broker group serve `read` and `write` queues, with `shrink` recorded first.
    Serve {
        read: i32,
        write: i32,
        shrink: Option<Shrink>,
    },
    /// Writes are lowered; wait this long for producers to notice before looking at the
    /// leaving queues.
    Wait { shrink: Shrink, left: Duration },
    /// Count what is unread in queues `to..from`; lower the reads once nothing is.
    Drain { shrink: Shrink },
    /// The change is refused: (condition reason, message); the topic stays as it is.
    Refused(&'static str, String),
}

/// The next step from `served` read queues (0 when the topic does not exist yet) towards
/// `wanted`, given the shrink under way.
pub fn next(
    spec: &RocketTopicSpec,
    wanted: i32,
    served: i32,
    shrink: Option<&Shrink>,
    now: Timestamp,
) -> Next {
    let serve = |queues: i32| Next::Serve {
        read: queues,
        write: queues,
        shrink: None,
    };
    let Some(shrink) = shrink else {
        if served == 0 || wanted == served {
            return serve(wanted);
        }
        if wanted > served {
            if spec.ordered && !spec.allow_reorder {
                return Next::Refused(
                    "GrowRefused",
                    format!("the topic is ordered: growing it from {served} to {wanted} queues moves keys to other queues; set allowReorder to accept that"),
                );
            }
            return serve(wanted);
        }
        if spec.ordered {
            return Next::Refused(
                "ShrinkRefused",
                format!("the topic is ordered and is never shrunk ({served} queues stay; {wanted} were asked)"),
            );
        }
        return lower_writes(served, wanted);
    };
    if wanted >= shrink.from {
        // Called off: the leaving queues stay and take writes again.
        return serve(wanted);
    }
    if wanted != shrink.to {
        return lower_writes(shrink.from, wanted);
    }
    match (&shrink.step, &shrink.writes_lowered_at) {
        (ShrinkStep::Draining, Some(lowered)) => {
            let waited = now.duration_since(lowered.0);
            let grace = SignedDuration::from_secs(spec.shrink_grace_seconds.max(0));
            if waited < grace {
                let left = (grace - waited).unsigned_abs();
                Next::Wait {
                    shrink: shrink.clone(),
                    left,
                }
            } else {
                Next::Drain {
                    shrink: shrink.clone(),
                }
            }
        }
        _ => lower_writes(shrink.from, shrink.to),
    }
}

fn lower_writes(from: i32, to: i32) -> Next {
    Next::Serve {
        read: from,
        write: to,
        shrink: Some(Shrink {
            from,
            to,
            step: ShrinkStep::LoweringWrites,
            writes_lowered_at: None,
            unread: None,
        }),
    }
}

/// What the topic controller measured of the groups that consume the topic.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Demand {
    /// The largest lag per readable queue over the groups.
    pub lag_per_queue: f64,
    /// The most consumers any group has online.
    pub consumers: i32,
    /// Whether a RocketConsumerGroup that scales consumers of the topic is held at the queue
    /// count while its SLO asks for more (`QueueLimited`); `None` when no group scales any.
    pub queue_limited: Option<bool>,
}

/// The queue count autoscaling wants from `current`, with the reason, or `None` to keep it.
pub fn autoscale(
    policy: &QueueAutoscaling,
    current: i32,
    demand: Demand,
    since_last_change: Option<Duration>,
) -> Option<(i32, &'static str)> {
    let cooled = |seconds: i64| {
        since_last_change.is_none_or(|since| since.as_secs() >= seconds.max(0) as u64)
    };
    let bounded = current.clamp(policy.min_queues, policy.max_queues);
    if bounded != current {
        return Some((bounded, "OutOfBounds"));
    }
    let target = policy.lag_per_queue as f64;
    // More queues help only once every queue has its own consumer; before that, more
    // consumers do (the consumer groups' scaling). Where groups scale their consumers, their
    // SLO must also be breached at the queue count.
    if demand.lag_per_queue > target
        && demand.consumers >= current
        && demand.queue_limited != Some(false)
        && current < policy.max_queues
        && cooled(policy.grow_cooldown_seconds)
    {
        return Some((
            (current * 2).min(policy.max_queues),
            "LagPerQueueOverTarget",
        ));
    }
    let half = (current / 2).max(policy.min_queues);
    // Hysteresis: a quarter of the target, so a shrink does not put the lag straight back
    // over it.
    if policy.shrink
        && half < current
        && demand.lag_per_queue < target / 4.0
        && demand.consumers <= half
        && cooled(policy.shrink_cooldown_seconds)
    {
        return Some((half, "LagLowAndFewConsumers"));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::CustomResourceExt;

    fn spec(ordered: bool, allow_reorder: bool) -> RocketTopicSpec {
        RocketTopicSpec {
            target: ClusterRef {
                cluster: Some("demo".into()),
                ..ClusterRef::default()
            },
            topic_name: None,
            queues: 8,
            permission: Permission::ReadWrite,
            ordered,
            allow_reorder,
            shrink_grace_seconds: 45,
            autoscaling: None,
        }
    }

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + seconds).unwrap()
    }

    #[test]
    fn a_new_or_growing_topic_is_served_at_once() {
        let plain = spec(false, false);
        let both = |n| Next::Serve {
            read: n,
            write: n,
            shrink: None,
        };
        assert_eq!(next(&plain, 8, 0, None, at(0)), both(8));
        assert_eq!(next(&plain, 16, 8, None, at(0)), both(16));
        assert_eq!(next(&plain, 8, 8, None, at(0)), both(8));
    }

    #[test]
    fn a_shrink_lowers_writes_then_waits_then_drains_and_resumes_from_its_status() {
        let plain = spec(false, false);
        let Next::Serve {
            read: 16,
            write: 8,
            shrink: Some(mut shrink),
        } = next(&plain, 8, 16, None, at(0))
        else {
            panic!("a shrink starts by lowering the writes only");
        };
        assert_eq!(shrink.step, ShrinkStep::LoweringWrites);
        // Restarted before the writes were confirmed lowered: lower them again, reads stay.
        assert!(matches!(
            next(&plain, 8, 16, Some(&shrink), at(1)),
            Next::Serve {
                read: 16,
                write: 8,
                ..
            }
        ));
        shrink.step = ShrinkStep::Draining;
        shrink.writes_lowered_at = Some(Time(at(10)));
        let Next::Wait { left, .. } = next(&plain, 8, 16, Some(&shrink), at(20)) else {
            panic!("producers get the route refresh grace");
        };
        assert_eq!(left, Duration::from_secs(35));
        assert!(matches!(
            next(&plain, 8, 16, Some(&shrink), at(10 + 45)),
            Next::Drain { .. }
        ));
    }

    #[test]
    fn a_shrink_called_off_or_changed_keeps_every_queue_readable() {
        let plain = spec(false, false);
        let shrink = Shrink {
            from: 16,
            to: 8,
            step: ShrinkStep::Draining,
            writes_lowered_at: Some(Time(at(0))),
            unread: Some(5),
        };
        assert_eq!(
            next(&plain, 16, 16, Some(&shrink), at(100)),
            Next::Serve {
                read: 16,
                write: 16,
                shrink: None
            }
        );
        // A deeper shrink restarts the wait: producers must see the lower write count too.
        let Next::Serve {
            read: 16,
            write: 4,
            shrink: Some(deeper),
        } = next(&plain, 4, 16, Some(&shrink), at(100))
        else {
            panic!("a new target lowers the writes again");
        };
        assert_eq!((deeper.from, deeper.to), (16, 4));
        assert_eq!(deeper.writes_lowered_at, None);
    }

    #[test]
    fn an_ordered_topic_never_shrinks_and_grows_only_when_allowed() {
        assert!(matches!(
            next(&spec(true, true), 4, 8, None, at(0)),
            Next::Refused("ShrinkRefused", _)
        ));
        assert!(matches!(
            next(&spec(true, false), 16, 8, None, at(0)),
            Next::Refused("GrowRefused", _)
        ));
        assert!(matches!(
            next(&spec(true, true), 16, 8, None, at(0)),
            Next::Serve {
                read: 16,
                write: 16,
                ..
            }
        ));
    }

    fn policy() -> QueueAutoscaling {
        QueueAutoscaling {
            min_queues: 8,
            max_queues: 32,
            lag_per_queue: 1000,
            shrink: true,
            grow_cooldown_seconds: 30,
            shrink_cooldown_seconds: 300,
        }
    }

    #[test]
    fn queues_double_only_when_every_queue_has_a_consumer_and_still_lags() {
        let busy = Demand {
            lag_per_queue: 5000.0,
            consumers: 8,
            queue_limited: None,
        };
        assert_eq!(
            autoscale(&policy(), 8, busy, None),
            Some((16, "LagPerQueueOverTarget"))
        );
        let fewer_consumers = Demand {
            consumers: 5,
            ..busy
        };
        assert_eq!(autoscale(&policy(), 8, fewer_consumers, None), None);
        assert_eq!(
            autoscale(&policy(), 16, busy, Some(Duration::from_secs(10))),
            None,
            "consumers get the grow cooldown to rebalance"
        );
        assert_eq!(
            autoscale(
                &policy(),
                32,
                Demand {
                    consumers: 32,
                    ..busy
                },
                None
            ),
            None
        );
    }

    #[test]
    fn queues_halve_after_the_cooldown_once_lag_and_consumers_are_low() {
        let calm = Demand {
            lag_per_queue: 10.0,
            consumers: 2,
            queue_limited: Some(false),
        };
        let long = Some(Duration::from_secs(301));
        assert_eq!(
            autoscale(&policy(), 16, calm, long),
            Some((8, "LagLowAndFewConsumers"))
        );
        assert_eq!(autoscale(&policy(), 8, calm, long), None, "min holds");
        assert_eq!(
            autoscale(&policy(), 16, calm, Some(Duration::from_secs(60))),
            None
        );
        let no_shrink = QueueAutoscaling {
            shrink: false,
            ..policy()
        };
        assert_eq!(autoscale(&no_shrink, 16, calm, long), None);
        assert_eq!(
            autoscale(
                &policy(),
                16,
                Demand {
                    lag_per_queue: 400.0,
                    ..calm
                },
                long
            ),
            None,
            "a lag over a quarter of the target keeps the queues"
        );
    }

    #[test]
    fn crd_has_the_rules_and_columns() {
        let crd = serde_json::to_string(&RocketTopic::crd()).unwrap();
        for needle in [
            ONE_TARGET_MESSAGE,
            "an ordered topic is never shrunk",
            "topicName cannot change",
            ".status.served",
            ".status.lag",
        ] {
            assert!(crd.contains(needle), "CRD lacks {needle}");
        }
    }
}
