//! The `RocketMigration` custom resource: a move from Kafka to Rocketry, one phase at a time,
//! and the rules of its phases (which step comes next, when a rollback is still allowed, when
//! parity has held long enough). The controller (`migration_controller`) does the work; the
//! state a restarted operator resumes from is all in the status.

// Several printcolumn(...) entries repeat `type_ = ...`, which clippy mistakes for a duplicated attribute.
#![allow(clippy::duplicated_attributes)]

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ResourceRequirements, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::crd::PullPolicy;
use crate::target::ClusterRef;

/// A migration of Kafka topics (and the consumer groups that read them) to Rocketry.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "rocketry.dev",
    version = "v1alpha1",
    kind = "RocketMigration",
    namespaced,
    shortname = "rmig",
    category = "rocketry",
    status = "RocketMigrationStatus",
    doc = "A move from Kafka to Rocketry: a mirror, parity windows, and the cutover (or rollback) of consumer groups, one phase at a time.",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Wanted", type_ = "string", json_path = ".spec.phase"),
    printcolumn(
        name = "Clean",
        type_ = "integer",
        json_path = ".status.cleanWindows",
        description = "parity windows clean in a row"
    ),
    printcolumn(
        name = "Parity",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"ParityVerified\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "has(self.target.cluster) != has(self.target.nameServers)",
     "message": "target: set exactly one of cluster (a RocketCluster) and nameServers"},
    {"rule": "has(self.target.cluster) || has(self.mirror.image)",
     "message": "mirror.image is needed with nameServers (with cluster, the cluster's image is the default)"},
    {"rule": "(has(self.topics) && size(self.topics) > 0) != has(self.topicPattern)",
     "message": "set exactly one of topics and topicPattern"},
    {"rule": "!has(self.topics) || self.topics.all(a, self.topics.exists_one(b, b.source == a.source))",
     "message": "each source topic may appear once"},
    {"rule": "self.source == oldSelf.source && self.target == oldSelf.target && has(self.topics) == has(oldSelf.topics) && (!has(self.topics) || self.topics == oldSelf.topics) && has(self.topicPattern) == has(oldSelf.topicPattern) && (!has(self.topicPattern) || self.topicPattern == oldSelf.topicPattern)",
     "message": "source, target, topics and topicPattern cannot change once a migration exists; make a new RocketMigration"},
    {"rule": "self.pointOfNoReturn == 'Cutover' || self.pointOfNoReturn == 'Done'",
     "message": "pointOfNoReturn is Cutover or Done"},
    {"rule": "oldSelf.phase != 'Done' || self.phase == 'Done'",
     "message": "a migration asked to be Done stays so"},
    {"rule": "oldSelf.phase != 'RollBack' || self.phase == 'RollBack'",
     "message": "a rolled back migration stays rolled back; make a new RocketMigration"}
]))]
pub struct RocketMigrationSpec {
    pub source: KafkaSource,
    /// Where the topics go.
    pub target: ClusterRef,
    /// The Kafka topics to move. Partition N of a topic goes to queue N of its Rocketry
    /// topic, which the mirror creates with one queue per partition. (No key-hash mapping:
    /// the mirror's exact resume, parity and cutover need each queue to hold one partition in
    /// Kafka's order; docs/migration.md.)
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub topics: Vec<TopicMapping>,
    /// Instead of `topics`: a regular expression (Rust's `regex` syntax, matched against the
    /// whole name) over the Kafka topics. Each match keeps its name in Rocketry, with `.` made
    /// `_` (Rocketry's names have no dots); topics created later join at the next pass.
    /// Kafka's internal topics (`__...`) never match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub topic_pattern: Option<String>,
    /// The Kafka consumer groups that move at cutover (and back at rollback).
    #[serde(default)]
    #[schemars(length(max = 64))]
    pub groups: Vec<GroupMapping>,
    #[serde(default)]
    pub parity: ParityPolicy,
    /// The phase wanted. The operator moves toward it one phase at a time, each when its
    /// condition holds (Verified needs parity, Cutover moves the groups).
    #[serde(default)]
    pub phase: Phase,
    /// The last phase from which `RollBack` is allowed: `Cutover` (consumers may still go
    /// back to Kafka after moving) or `Done` (never: Done ends the migration).
    #[serde(default = "done")]
    pub point_of_no_return: Phase,
    #[serde(default)]
    pub mirror: MirrorSpec,
}

fn done() -> Phase {
    Phase::Done
}

/// The Kafka cluster that is left.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KafkaSource {
    /// `host:port,host:port`.
    #[schemars(length(min = 1, max = 1024))]
    pub bootstrap_servers: String,
    /// More librdkafka settings that are not secret (`security.protocol`, `sasl.mechanism`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub config: BTreeMap<String, String>,
    /// A Secret of this namespace whose every key is a librdkafka setting (`sasl.username`,
    /// `sasl.password`, `ssl.ca.pem`): the mirror mounts it, the operator reads it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

/// A Kafka topic and the Rocketry topic it becomes.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TopicMapping {
    #[schemars(length(min = 1, max = 249), regex(pattern = r"^[a-zA-Z0-9._-]+$"))]
    pub source: String,
    /// The Rocketry topic; the source's name when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 127), regex(pattern = r"^[%|a-zA-Z0-9_-]+$"))]
    pub target: Option<String>,
}

impl TopicMapping {
    pub fn target(&self) -> &str {
        self.target.as_deref().unwrap_or(&self.source)
    }
}

/// The topics of `names` that `pattern` matches whole, sorted, each mapped to its Rocketry
/// name; an error names a pattern that does not compile.
pub fn matching_topics<'a>(
    pattern: &str,
    names: impl IntoIterator<Item = &'a str>,
) -> Result<Vec<TopicMapping>, regex::Error> {
    let whole = regex::Regex::new(&format!("^(?:{pattern})$"))?;
    let mut topics: Vec<TopicMapping> = names
        .into_iter()
        .filter(|name| !name.starts_with("__") && whole.is_match(name))
        .map(|name| TopicMapping {
            source: name.to_string(),
            target: name.contains('.').then(|| name.replace('.', "_")),
        })
        .collect();
    topics.sort_by(|a, b| a.source.cmp(&b.source));
    Ok(topics)
}

/// A Kafka consumer group and the Rocketry consumer group that takes over from it.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GroupMapping {
    #[schemars(length(min = 1, max = 255))]
    pub kafka: String,
    /// The Rocketry group; the Kafka group's name when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    pub rocketry: Option<String>,
}

impl GroupMapping {
    pub fn rocketry(&self) -> &str {
        self.rocketry.as_deref().unwrap_or(&self.kafka)
    }
}

/// How the two sides are compared: the seed's daily count comparison, automated.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ParityPolicy {
    /// Window length, by record timestamp (3600: hourly; 86400: daily).
    #[serde(default = "hour")]
    #[schemars(range(min = 1, max = 604800))]
    pub window_seconds: i64,
    /// How long after a window ends it is compared, so the mirror has copied it.
    #[serde(default = "minute")]
    #[schemars(range(min = 0, max = 86400))]
    pub settle_seconds: i64,
    /// Records a window's counts may differ by and still pass; 0 also asks for equal
    /// digests of keys and bodies.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub tolerance: u64,
    /// Clean windows in a row before `ParityVerified`.
    #[serde(default = "three")]
    #[schemars(range(min = 1, max = 1000))]
    pub clean_windows: i32,
}

fn hour() -> i64 {
    3600
}

fn minute() -> i64 {
    60
}

fn three() -> i32 {
    3
}

impl Default for ParityPolicy {
    fn default() -> Self {
        ParityPolicy {
            window_seconds: hour(),
            settle_seconds: minute(),
            tolerance: 0,
            clean_windows: three(),
        }
    }
}

/// The mirror's Deployment: one pod, a `rocketry migrate mirror` container per topic.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MirrorSpec {
    /// The Rocketry image; the operator's own default when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default)]
    pub image_pull_policy: PullPolicy,
    /// Resources of each mirror container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
}

/// The phases of a migration, in order; `RollBack` leaves the order.
#[derive(
    Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, JsonSchema,
)]
pub enum Phase {
    /// The mirror copies Kafka into Rocketry.
    #[default]
    Mirror,
    /// Producers write both sides (the `migrate` crate's dual writer); the mirror copies
    /// what the producers that have not switched still write to Kafka alone.
    DualWrite,
    /// Consumers read both sides; parity compares the windows as they close.
    ShadowRead,
    /// Parity held for `cleanWindows` windows in a row.
    Verified,
    /// The consumer groups were moved to Rocketry, their offsets translated.
    Cutover,
    /// The mirror is gone; the migration is over.
    Done,
    /// The groups were moved back to Kafka (if they had moved) and the mirror is gone.
    RollBack,
}

impl Phase {
    pub const FORWARD: [Phase; 6] = [
        Phase::Mirror,
        Phase::DualWrite,
        Phase::ShadowRead,
        Phase::Verified,
        Phase::Cutover,
        Phase::Done,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Mirror => "Mirror",
            Phase::DualWrite => "DualWrite",
            Phase::ShadowRead => "ShadowRead",
            Phase::Verified => "Verified",
            Phase::Cutover => "Cutover",
            Phase::Done => "Done",
            Phase::RollBack => "RollBack",
        }
    }

    /// Whether the mirror runs in this phase.
    pub fn mirrors(self) -> bool {
        self < Phase::Done
    }

    /// Whether parity windows are compared in this phase.
    pub fn compares(self) -> bool {
        matches!(self, Phase::ShadowRead | Phase::Verified)
    }
}

/// What the operator does next, from where the migration is and what is wanted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Nothing: the migration is where it was asked to be.
    Stay,
    /// Move to this phase.
    To(Phase),
    /// The phase wanted cannot be reached from here; the reason.
    Refuse(&'static str),
}

/// The next step from `current` toward `wanted`. Forward moves go one phase at a time; the
/// phases before Cutover change nothing that cannot be undone, so going back among them is a
/// plain move, but from Cutover on only Done or a rollback (before the point of no return).
pub fn next_step(current: Phase, wanted: Phase, point_of_no_return: Phase) -> Step {
    use Phase::*;
    match (current, wanted) {
        (c, w) if c == w => Step::Stay,
        (RollBack, _) => Step::Refuse("the migration was rolled back; it stays so"),
        (Done, _) => Step::Refuse("the migration is done; it cannot go back"),
        (c, RollBack) if c >= point_of_no_return => {
            Step::Refuse("the migration is past its point of no return")
        }
        (_, RollBack) => Step::To(RollBack),
        (c, w) if w > c => {
            let index = Phase::FORWARD.iter().position(|p| *p == c).unwrap_or(0);
            Step::To(Phase::FORWARD[index + 1])
        }
        (Cutover, _) => Step::Refuse(
            "the groups were cut over; set RollBack to move them back to Kafka, or Done",
        ),
        (_, w) => Step::To(w),
    }
}

/// The Kafka and Rocketry counts of one window of one topic.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WindowStatus {
    pub topic: String,
    /// Start and end (exclusive) of the window, milliseconds since the epoch.
    pub start_ms: i64,
    pub end_ms: i64,
    pub kafka_records: u64,
    pub rocketry_records: u64,
    pub clean: bool,
    /// What differs, partition by partition.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mismatches: Vec<String>,
}

/// Where one partition of a group stood on each side when it moved.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OffsetStatus {
    pub topic: String,
    pub partition: i32,
    pub kafka_offset: i64,
    pub queue_offset: i64,
}

/// A group's move: which way, and its offsets on both sides.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GroupStatus {
    pub kafka: String,
    pub rocketry: String,
    /// `Cutover` (Kafka → Rocketry) or `RollBack` (Rocketry → Kafka).
    pub direction: Phase,
    pub offsets: Vec<OffsetStatus>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RocketMigrationStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The Kafka topics moved: `topics`, or what `topicPattern` matched at the last pass.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topics: Vec<String>,
    /// The start of the next parity window to compare, milliseconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_window_ms: Option<i64>,
    /// Windows clean in a row, up to the last compared.
    #[serde(default)]
    pub clean_windows: i32,
    /// The last windows compared (at most [`KEPT_WINDOWS`] per topic), newest last.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub windows: Vec<WindowStatus>,
    /// The last comparison, in a line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_parity: Option<String>,
    /// The groups moved, by their last move.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<GroupStatus>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// Windows kept in the status per topic.
pub const KEPT_WINDOWS: usize = 24;

/// Adds the windows just compared, keeps the last [`KEPT_WINDOWS`] per topic, and returns the
/// new clean streak: a window counts when every topic was clean in it; any mismatch resets.
pub fn record_windows(
    kept: &mut Vec<WindowStatus>,
    streak: i32,
    compared: Vec<WindowStatus>,
) -> i32 {
    let mut by_start: BTreeMap<i64, bool> = BTreeMap::new();
    for window in &compared {
        *by_start.entry(window.start_ms).or_insert(true) &= window.clean;
    }
    let streak = by_start
        .values()
        .fold(streak, |streak, clean| if *clean { streak + 1 } else { 0 });
    kept.extend(compared);
    let mut per_topic: BTreeMap<String, usize> = BTreeMap::new();
    for window in kept.iter().rev() {
        *per_topic.entry(window.topic.clone()).or_default() += 1;
    }
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    kept.retain(|window| {
        let count = seen.entry(window.topic.clone()).or_default();
        *count += 1;
        per_topic[&window.topic] - *count < KEPT_WINDOWS
    });
    streak
}

/// Whether a window's two sides agree within `tolerance` records (0: equal counts and digests).
pub fn within(tolerance: u64, kafka: (u64, u64), rocketry: (u64, u64)) -> bool {
    if tolerance == 0 {
        kafka == rocketry
    } else {
        kafka.0.abs_diff(rocketry.0) <= tolerance
    }
}

#[cfg(test)]
#[path = "migration_test.rs"]
mod tests;
