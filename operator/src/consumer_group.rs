//! The `RocketConsumerGroup` custom resource and the rule that sizes its consumers from the
//! live lag: enough replicas to take the incoming rate and drain the backlog within the SLO,
//! never more than the queues a clustering group can hand out, up at once and down only after
//! a cooldown.

// Several printcolumn(...) entries repeat `type_ = ...`, which clippy mistakes for a duplicated attribute.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::target::{ClusterRef, ONE_TARGET_MESSAGE, ONE_TARGET_RULE};

/// A consumer group of a cluster: its settings on every broker and, optionally, the workload
/// whose replicas follow its lag.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "rocketry.dev",
    version = "v1alpha1",
    kind = "RocketConsumerGroup",
    namespaced,
    shortname = "rgroup",
    category = "rocketry",
    status = "RocketConsumerGroupStatus",
    doc = "A consumer group: its retry and dead-letter settings on every broker, its live lag, and the workload whose replicas follow it.",
    printcolumn(name = "Group", type_ = "string", json_path = ".status.group"),
    printcolumn(name = "Lag", type_ = "integer", json_path = ".status.lag"),
    printcolumn(
        name = "Latency",
        type_ = "integer",
        json_path = ".status.lagSeconds",
        description = "age in seconds of the oldest unconsumed message (at most)"
    ),
    printcolumn(
        name = "Online",
        type_ = "integer",
        json_path = ".status.consumersOnline"
    ),
    printcolumn(name = "Replicas", type_ = "integer", json_path = ".status.replicas"),
    printcolumn(
        name = "Wanted",
        type_ = "integer",
        json_path = ".status.wantedReplicas"
    ),
    printcolumn(name = "Reason", type_ = "string", json_path = ".status.reason"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": ONE_TARGET_RULE, "message": ONE_TARGET_MESSAGE},
    {"rule": "has(self.groupName) == has(oldSelf.groupName) && (!has(self.groupName) || self.groupName == oldSelf.groupName)",
     "message": "groupName cannot change; make a new RocketConsumerGroup"},
    {"rule": "!has(self.scaling) || self.scaling.minReplicas <= self.scaling.maxReplicas",
     "message": "scaling.minReplicas must not exceed scaling.maxReplicas"}
]))]
pub struct RocketConsumerGroupSpec {
    #[serde(flatten)]
    pub target: ClusterRef,
    /// The group's name in RocketMQ; the object's name when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255), regex(pattern = r"^[%|a-zA-Z0-9_-]+$"))]
    pub group_name: Option<String>,
    /// The topics the group consumes, whose lag is measured.
    #[schemars(length(min = 1, max = 64))]
    pub topics: Vec<String>,
    /// How often a failed message is retried before it goes to the group's dead-letter
    /// topic (`%DLQ%<group>`): RocketMQ's retryMaxTimes, 16 by default.
    #[serde(default = "sixteen")]
    #[schemars(range(min = 0, max = 64))]
    pub max_reconsume_times: i32,
    /// Where a new consumer of the group starts when the group has no offset on a queue.
    #[serde(default)]
    pub consume_from: ConsumeFrom,
    /// Whether the group may consume at all (false stops its pulls at the brokers).
    #[serde(default = "yes")]
    pub consume_enabled: bool,
    /// The workload whose replicas follow the lag; no scaling when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scaling: Option<ConsumerScaling>,
}

fn sixteen() -> i32 {
    16
}

fn yes() -> bool {
    true
}

/// RocketMQ's consumeFromMinEnable: whether a queue the group has no offset on is read from
/// its first message or from its end.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ConsumeFrom {
    #[default]
    Earliest,
    Latest,
}

/// How the group's consumers are sized.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerScaling {
    /// A Deployment, StatefulSet or any object with a scale subresource, in this namespace.
    pub target: ScaleTarget,
    #[serde(default = "one")]
    #[schemars(range(min = 0, max = 1000))]
    pub min_replicas: i32,
    #[schemars(range(min = 1, max = 1000))]
    pub max_replicas: i32,
    /// The SLO: a backlog should be consumed within this many seconds.
    #[serde(default = "sixty")]
    #[schemars(range(min = 1, max = 86400))]
    pub drain_within_seconds: i64,
    /// Messages per second one replica consumes; measured from the brokers' consume rate
    /// while the group lags when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.001))]
    pub per_replica_rate: Option<f64>,
    /// How long fewer replicas must keep sufficing before the workload is scaled down.
    #[serde(default = "three_hundred")]
    #[schemars(range(min = 0, max = 86400))]
    pub cooldown_seconds: i64,
}

fn one() -> i32 {
    1
}

fn sixty() -> i64 {
    60
}

fn three_hundred() -> i64 {
    300
}

/// An object with a scale subresource, as an HPA's scaleTargetRef names it.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScaleTarget {
    #[serde(default = "apps_v1")]
    pub api_version: String,
    #[serde(default = "deployment")]
    pub kind: String,
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

fn apps_v1() -> String {
    "apps/v1".to_string()
}

fn deployment() -> String {
    "Deployment".to_string()
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RocketConsumerGroupStatus {
    /// The group's name in RocketMQ.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Messages not consumed, over its topics and every broker group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag: Option<i64>,
    /// At most this old is the oldest unconsumed message (0 without lag).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_seconds: Option<i64>,
    /// Messages consumed per second over the group's topics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consume_rate: Option<f64>,
    /// Clients of the group connected to the brokers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumers_online: Option<i32>,
    /// Readable queues per topic, at most (what a clustering group can hand out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queues: Option<i32>,
    /// The scale target's replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// What the lag asks for, before the queue count bounds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wanted_replicas: Option<i32>,
    /// What the lag asks for within min, max and the queue count: what the operator scales to
    /// (after the cooldown when down), and what KEDA's external scaler answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recommended_replicas: Option<i32>,
    /// Why the replicas are what they are (see [`Reason`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
    /// Messages per second one replica consumes, declared or last measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_replica_rate: Option<f64>,
    /// The lag and when it was read, for the next pass's rate of change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample: Option<Sample>,
    /// Since when fewer replicas than there are have sufficed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub below_since: Option<Time>,
    /// When the operator last changed the replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scale_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready: the group's settings are on every broker.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Sample {
    pub lag: i64,
    /// The group's committed offsets, summed over its topics' queues.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub committed: Option<i64>,
    pub at: Time,
}

/// Why a group's replicas are what they are: each is also an event reason and the label of
/// `rocketry_operator_scaling_decisions_total`.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum Reason {
    /// Scaled up: the lag and incoming rate need more consumers.
    ScaledUp,
    /// Scaled down: fewer consumers have sufficed for the whole cooldown.
    ScaledDown,
    /// The replicas suffice.
    Steady,
    /// Fewer would suffice, but not yet for the whole cooldown.
    CoolingDown,
    /// More would be wanted, but a clustering group gives each queue to one consumer: more
    /// replicas than queues would sit idle. The topic needs more queues.
    QueueLimited,
    /// More would be wanted, but maxReplicas bounds it.
    AtMaxReplicas,
    /// The workload's consumers are not all online yet (starting or rebalancing): no new
    /// decision until they are.
    Rebalancing,
    /// An HPA (or KEDA's, which is one) scales the same workload; the operator only reports.
    OwnedByHpa,
    /// The `rocketry.dev/autoscaling: paused` annotation freezes decisions.
    Paused,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::ScaledUp => "ScaledUp",
            Reason::ScaledDown => "ScaledDown",
            Reason::Steady => "Steady",
            Reason::CoolingDown => "CoolingDown",
            Reason::QueueLimited => "QueueLimited",
            Reason::AtMaxReplicas => "AtMaxReplicas",
            Reason::Rebalancing => "Rebalancing",
            Reason::OwnedByHpa => "OwnedByHpa",
            Reason::Paused => "Paused",
        }
    }
}

/// What one pass measured of the group.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Load {
    pub lag: i64,
    /// Messages consumed per second (see [`consume_rate`]).
    pub consume_rate: f64,
    /// The group's committed offsets, summed over its topics' queues.
    pub committed: i64,
    pub online: i32,
    /// Readable queues the group can be given, per topic at most.
    pub queues: i32,
}

/// Messages per second the group consumed since the last pass, from how far its committed
/// offsets moved: what any broker reports, where a broker's own consume rate may be missing
/// (Rocketry's GET_CONSUME_STATS reports 0). The broker's rate stands in on a first pass.
pub fn consume_rate(
    load: &Load,
    previous: &RocketConsumerGroupStatus,
    now: k8s_openapi::jiff::Timestamp,
) -> f64 {
    previous
        .sample
        .as_ref()
        .and_then(|sample| {
            let seconds = now.duration_since(sample.at.0).as_secs_f64();
            let before = sample.committed?;
            (seconds > 0.0).then(|| (load.committed - before).max(0) as f64 / seconds)
        })
        .unwrap_or(load.consume_rate)
}

/// The decision of one pass.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// What the lag asks for, within min and max.
    pub wanted: i32,
    /// `wanted` within the queue count too.
    pub recommended: i32,
    /// The replicas to set.
    pub replicas: i32,
    pub reason: Reason,
    /// The per-replica rate the decision used, when known.
    pub per_replica_rate: Option<f64>,
    /// Since when fewer have sufficed (kept across passes for the cooldown).
    pub below_since: Option<Time>,
}

/// Sizes the group's consumers from `replicas` now, what was measured, and the last pass's
/// status.
pub fn decide(
    policy: &ConsumerScaling,
    replicas: i32,
    load: Load,
    previous: &RocketConsumerGroupStatus,
    now: k8s_openapi::jiff::Timestamp,
) -> Decision {
    // A replica's rate is measured only while the group lags: otherwise it consumes what
    // arrives, not what it could.
    let measured = (load.lag > 0 && load.online > 0 && load.consume_rate > 0.0)
        .then(|| load.consume_rate / f64::from(load.online));
    let per_replica_rate = policy
        .per_replica_rate
        .or(measured)
        .or(previous.per_replica_rate);
    // Incoming = consumed + the backlog's growth since the last look.
    let growth = previous.sample.as_ref().and_then(|sample| {
        let seconds = now.duration_since(sample.at.0).as_secs_f64();
        (seconds > 0.0).then(|| (load.lag - sample.lag) as f64 / seconds)
    });
    let incoming = (load.consume_rate + growth.unwrap_or(0.0)).max(0.0);
    let need = incoming + load.lag as f64 / policy.drain_within_seconds as f64;
    let raw = match per_replica_rate {
        Some(rate) if rate > 0.0 => (need / rate).ceil() as i32,
        // Nothing measured yet: double while there is a backlog.
        _ if load.lag > 0 => (replicas.max(1)) * 2,
        _ => replicas,
    };
    let wanted = raw.clamp(policy.min_replicas, policy.max_replicas);
    // A clustering group gives each queue to one consumer: replicas past the queue count
    // would sit idle.
    let ceiling = if load.queues > 0 {
        wanted.min(load.queues.max(policy.min_replicas))
    } else {
        wanted
    };
    let mut decision = Decision {
        wanted,
        recommended: ceiling,
        replicas,
        reason: Reason::Steady,
        per_replica_rate,
        below_since: None,
    };
    if ceiling != replicas && load.online < replicas {
        // New consumers are still joining, or the group is rebalancing: what is measured now
        // says nothing of what the replicas can do.
        decision.reason = Reason::Rebalancing;
    } else if ceiling > replicas {
        decision.replicas = ceiling;
        decision.reason = Reason::ScaledUp;
    } else if ceiling < replicas {
        let since = previous.below_since.clone().unwrap_or(Time(now));
        if now.duration_since(since.0).as_secs_f64() >= policy.cooldown_seconds as f64 {
            decision.replicas = ceiling;
            decision.reason = Reason::ScaledDown;
        } else {
            decision.reason = Reason::CoolingDown;
            decision.below_since = Some(since);
        }
    } else if wanted > ceiling {
        decision.reason = Reason::QueueLimited;
    } else if raw > policy.max_replicas {
        decision.reason = Reason::AtMaxReplicas;
    }
    decision
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;
    use kube::CustomResourceExt;

    fn policy() -> ConsumerScaling {
        ConsumerScaling {
            target: ScaleTarget {
                api_version: apps_v1(),
                kind: deployment(),
                name: "consumers".into(),
            },
            min_replicas: 1,
            max_replicas: 20,
            drain_within_seconds: 60,
            per_replica_rate: Some(100.0),
            cooldown_seconds: 120,
        }
    }

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + seconds).unwrap()
    }

    fn load(lag: i64, rate: f64, online: i32, queues: i32) -> Load {
        Load {
            lag,
            consume_rate: rate,
            committed: 0,
            online,
            queues,
        }
    }

    #[test]
    fn replicas_follow_the_incoming_rate_and_the_backlog() {
        let previous = RocketConsumerGroupStatus {
            sample: Some(Sample {
                lag: 0,
                committed: None,
                at: Time(at(0)),
            }),
            ..Default::default()
        };
        // 100/s consumed, the lag grew 6000 in 10 s (600/s more arrive), 6000 to drain in
        // 60 s (100/s): 800/s at 100/s a replica.
        let decision = decide(&policy(), 1, load(6000, 100.0, 1, 16), &previous, at(10));
        assert_eq!(decision.wanted, 8);
        assert_eq!((decision.replicas, decision.reason), (8, Reason::ScaledUp));
    }

    #[test]
    fn replicas_stop_at_the_queue_count_and_say_so() {
        let decision = decide(
            &policy(),
            1,
            load(60_000, 100.0, 1, 8),
            &RocketConsumerGroupStatus::default(),
            at(0),
        );
        assert_eq!((decision.wanted, decision.replicas), (11, 8));
        assert_eq!(decision.reason, Reason::ScaledUp);
        let at_queues = decide(
            &policy(),
            8,
            load(60_000, 800.0, 8, 8),
            &RocketConsumerGroupStatus::default(),
            at(0),
        );
        assert_eq!(at_queues.replicas, 8);
        assert_eq!(at_queues.reason, Reason::QueueLimited);
        // The topic grew: the replicas follow.
        let grown = decide(
            &policy(),
            8,
            load(60_000, 800.0, 8, 16),
            &RocketConsumerGroupStatus::default(),
            at(0),
        );
        assert_eq!((grown.replicas, grown.reason), (16, Reason::ScaledUp));
    }

    #[test]
    fn no_decision_while_consumers_are_still_joining() {
        let decision = decide(
            &policy(),
            8,
            load(600_000, 300.0, 3, 16),
            &RocketConsumerGroupStatus::default(),
            at(0),
        );
        assert_eq!(
            (decision.replicas, decision.reason),
            (8, Reason::Rebalancing)
        );
    }

    #[test]
    fn scale_down_waits_out_the_cooldown() {
        let idle = load(0, 0.0, 8, 16);
        let first = decide(
            &policy(),
            8,
            idle,
            &RocketConsumerGroupStatus::default(),
            at(0),
        );
        assert_eq!((first.replicas, first.reason), (8, Reason::CoolingDown));
        let previous = RocketConsumerGroupStatus {
            below_since: first.below_since.clone(),
            ..Default::default()
        };
        let early = decide(&policy(), 8, idle, &previous, at(60));
        assert_eq!(early.reason, Reason::CoolingDown);
        let late = decide(&policy(), 8, idle, &previous, at(121));
        assert_eq!((late.replicas, late.reason), (1, Reason::ScaledDown));
    }

    #[test]
    fn an_unmeasured_group_doubles_while_it_lags() {
        let unmeasured = ConsumerScaling {
            per_replica_rate: None,
            ..policy()
        };
        let decision = decide(
            &unmeasured,
            2,
            load(500, 0.0, 2, 16),
            &RocketConsumerGroupStatus::default(),
            at(0),
        );
        assert_eq!((decision.replicas, decision.reason), (4, Reason::ScaledUp));
        // Once it consumes while lagging, its rate is measured: 150/s over 3 replicas.
        let measured = decide(
            &unmeasured,
            3,
            load(3000, 150.0, 3, 16),
            &RocketConsumerGroupStatus::default(),
            at(0),
        );
        assert_eq!(measured.per_replica_rate, Some(50.0));
        assert_eq!(measured.wanted, 4);
    }

    #[test]
    fn the_consume_rate_comes_from_committed_offsets_when_there_is_a_sample() {
        let previous = RocketConsumerGroupStatus {
            sample: Some(Sample {
                lag: 100,
                committed: Some(1000),
                at: Time(at(0)),
            }),
            ..Default::default()
        };
        let now = Load {
            committed: 1250,
            consume_rate: 0.0,
            ..Load::default()
        };
        assert_eq!(consume_rate(&now, &previous, at(10)), 25.0);
        // A first pass has only the broker's own figure.
        let first = Load {
            consume_rate: 7.0,
            ..now
        };
        assert_eq!(
            consume_rate(&first, &RocketConsumerGroupStatus::default(), at(10)),
            7.0
        );
        // Offsets reset backwards are no negative rate.
        let reset = Load {
            committed: 10,
            ..now
        };
        assert_eq!(consume_rate(&reset, &previous, at(10)), 0.0);
    }

    #[test]
    fn crd_has_the_rules_and_columns() {
        let crd = serde_json::to_string(&RocketConsumerGroup::crd()).unwrap();
        for needle in [
            ONE_TARGET_MESSAGE,
            "groupName cannot change",
            "scaling.minReplicas must not exceed",
            ".status.lagSeconds",
            "QueueLimited",
        ] {
            assert!(crd.contains(needle), "CRD lacks {needle}");
        }
    }
}
