//! The `RocketCluster` custom resource: its spec, defaults, schema validation and status.
//!
//! The schema is the first line of defence: ranges, enums and CEL rules make the apiserver
//! refuse a bad spec with a message at `kubectl apply` time. The controller checks again
//! (`validate`), because a CRD installed from an older release may lack a newer rule.

// Several printcolumn(...) entries repeat `type_ = ...`, which clippy mistakes for a duplicated attribute.
#![allow(clippy::duplicated_attributes)]

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Affinity, ResourceRequirements, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::broker_config;

/// Annotation that stops reconciling a cluster while it is set to `"true"`.
pub const PAUSE_ANNOTATION: &str = "rocketry.dev/paused";
/// Annotation that removes the broker groups above a lowered `brokerGroups` at once, without
/// waiting for their backlog to drain: whatever was not consumed is lost with them.
pub const FORCE_SCALE_IN_ANNOTATION: &str = "rocketry.dev/force-scale-in";

/// A RocketMQ-compatible cluster of Rocketry name servers and broker groups.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "rocketry.dev",
    version = "v1alpha1",
    kind = "RocketCluster",
    namespaced,
    shortname = "rc",
    // kubectl resolves `rc` to the built-in ReplicationController first; `rocket` is unambiguous.
    shortname = "rocket",
    category = "rocketry",
    status = "RocketClusterStatus",
    doc = "A Rocketry cluster: name servers and broker groups, each group a StatefulSet with its own volumes.",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Groups", type_ = "integer", json_path = ".spec.brokerGroups"),
    printcolumn(
        name = "Replicas",
        type_ = "integer",
        json_path = ".spec.replicasPerGroup",
        description = "brokers per group"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.readyBrokers",
        description = "ready brokers / desired brokers"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct RocketClusterSpec {
    /// The Rocketry image; every role (name server, broker) runs it with a different command.
    pub image: String,
    /// When the kubelet pulls the image.
    #[serde(default)]
    pub image_pull_policy: PullPolicy,
    /// The name servers.
    #[serde(default)]
    pub name_server: NameServerSpec,
    /// How many broker groups (RocketMQ's brokerName); each is its own StatefulSet.
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = 64))]
    pub broker_groups: i32,
    /// Brokers per group: 1 is a single master; 3, 5, 7 or 9 form a Raft group (RocketMQ's DLedger mode).
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = 9))]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self == 1 || self % 2 == 1",
        "message": "replicasPerGroup must be 1 (a single master) or an odd number from 3 to 9 (a Raft group needs a majority)"
    }]))]
    pub replicas_per_group: i32,
    /// Each broker's volume: it may grow (where its StorageClass allows expansion) and its
    /// reclaimPolicy may change; the class is fixed once the cluster exists.
    pub storage: StorageSpec,
    /// Acknowledge sends from the page cache (ASYNC) or after the bytes are on disk (SYNC).
    #[serde(default)]
    pub flush_disk_type: FlushDiskType,
    /// Broker settings written into broker.conf; only the keys Rocketry knows and the operator
    /// does not set itself are accepted (see docs/configuration.md).
    #[serde(default)]
    #[schemars(schema_with = "broker_config_schema")]
    pub broker_config: BTreeMap<String, String>,
    /// CPU and memory of each broker container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// The cluster DNS domain, used to build the brokers' and name servers' stable names.
    #[serde(default = "cluster_domain")]
    pub cluster_domain: String,
    /// Node labels every pod must match.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Tolerations of every pod.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Affinity of every pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// Annotations added to every pod.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pod_annotations: BTreeMap<String, String>,
    /// Priority class of every pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
    /// Prometheus scraping of the brokers.
    #[serde(default)]
    pub metrics: MetricsSpec,
    /// Authentication, authorization and TLS on the remoting ports (docs/security.md).
    #[serde(default)]
    pub security: SecuritySpec,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecuritySpec {
    /// RocketMQ's ACL: every request signed by a user of a `RocketUser` in the cluster's
    /// namespace, and held to that user's grants; name servers take admin changes from
    /// administrators only. The operator signs with credentials of its own, kept in the
    /// Secret `<cluster>-operator-credentials`.
    #[serde(default)]
    pub acl: AclSpec,
    /// TLS on the brokers' and name servers' remoting ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSpec>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AclSpec {
    #[serde(default)]
    pub enabled: bool,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TlsSpec {
    /// Permissive serves TLS and plaintext clients alike; Enforcing refuses plaintext.
    pub mode: TlsMode,
    /// A Secret in the cluster's namespace with `tls.crt`, `tls.key` and `ca.crt`, the layout
    /// cert-manager writes. The certificate must name the pods' DNS names (for a cluster
    /// `demo` in `ns`: `*.demo-namesrv.ns.svc.cluster.local` and
    /// `*.demo-broker-<g>.ns.svc.cluster.local`), as brokers and the operator check it against
    /// `ca.crt`. Renewed certificates are picked up without a restart.
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: String,
    /// Require client certificates signed by `ca.crt` (mutual TLS); brokers and the operator
    /// show the Secret's own certificate.
    #[serde(default)]
    pub client_auth: bool,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum TlsMode {
    Permissive,
    Enforcing,
}

impl TlsMode {
    /// The value of RocketMQ's `tls.server.mode` key.
    pub fn config_value(self) -> &'static str {
        match self {
            TlsMode::Permissive => "permissive",
            TlsMode::Enforcing => "enforcing",
        }
    }
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum PullPolicy {
    Always,
    #[default]
    IfNotPresent,
    Never,
}

impl PullPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            PullPolicy::Always => "Always",
            PullPolicy::IfNotPresent => "IfNotPresent",
            PullPolicy::Never => "Never",
        }
    }
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NameServerSpec {
    /// How many name servers; brokers register with every one of them.
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = 9))]
    pub replicas: i32,
    /// CPU and memory of each name server container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

impl Default for NameServerSpec {
    fn default() -> Self {
        NameServerSpec {
            replicas: 1,
            resources: None,
        }
    }
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "has(self.storageClassName) == has(oldSelf.storageClassName) && (!has(self.storageClassName) || self.storageClassName == oldSelf.storageClassName)",
    "message": "storage.storageClassName cannot change once the cluster exists (a bound volume keeps its class)"
}, {
    "rule": "quantity(self.size).compareTo(quantity(oldSelf.size)) >= 0",
    "message": "storage.size can only grow (a volume cannot shrink)"
}]))]
pub struct StorageSpec {
    /// Size of each broker's volume, a positive Kubernetes quantity such as 10Gi.
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$"))]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "quantity(self).isGreaterThan(quantity('0'))",
        "message": "storage.size must be a positive quantity such as 10Gi"
    }]))]
    pub size: String,
    /// Storage class of the volumes; the cluster's default class when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
    /// What happens to the volumes when the cluster is deleted.
    #[serde(default)]
    pub reclaim_policy: ReclaimPolicy,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ReclaimPolicy {
    #[default]
    Retain,
    Delete,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[allow(clippy::upper_case_acronyms)] // spelled as in RocketMQ's flushDiskType
pub enum FlushDiskType {
    #[default]
    ASYNC,
    SYNC,
}

impl FlushDiskType {
    /// The value of RocketMQ's `flushDiskType` key.
    pub fn config_value(self) -> &'static str {
        match self {
            FlushDiskType::ASYNC => "ASYNC_FLUSH",
            FlushDiskType::SYNC => "SYNC_FLUSH",
        }
    }
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricsSpec {
    /// Annotate broker and name server pods with `prometheus.io/scrape`, `port` and `path` for
    /// annotation-based scraping (leave off with the chart's PodMonitor, or each series is
    /// scraped twice).
    #[serde(default)]
    pub enabled: bool,
    /// Not acted on: install the chart with `monitoring.podMonitor.enabled` instead, whose
    /// PodMonitor scrapes every cluster's brokers and name servers. Kept so that manifests
    /// setting it still apply.
    #[serde(default)]
    pub service_monitor: bool,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RocketClusterStatus {
    /// Pending, Progressing, Running, Degraded or Paused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, Progressing and Degraded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Ready brokers over desired brokers, for `kubectl get rc`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_brokers: Option<String>,
    /// One entry per broker group.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub broker_groups: Vec<BrokerGroupStatus>,
    /// The name server addresses clients and brokers use (`;`-separated host:port).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_server_addresses: Option<String>,
    /// The one broker being restarted by a roll, if any. Kept here so that a restarted or new
    /// leader resumes the roll where it stood, and never fences two brokers at once.
    /// Serialized as null when absent, so a merge patch clears it.
    #[serde(default)]
    pub roll: Option<RollStatus>,
}

/// A broker restart in progress. A group of one broker has its writes fenced at the name
/// servers first, then the pod is deleted, and the fence is lifted once its replacement is
/// ready. A replicated group's follower is restarted at once; its leader hands its leadership
/// over first.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RollStatus {
    /// The broker pod being restarted.
    pub pod: String,
    /// Its group (brokerName), whose write permission is wiped at the name servers.
    pub broker_name: String,
    /// The uid of the pod being replaced, to tell its replacement apart.
    pub uid: String,
    pub step: RollStep,
    /// When the step began.
    pub since: Time,
    /// The count of sends still reaching the broker when last asked (messages stored while
    /// fencing, sends passed on to the new leader while handing over), and since when it has
    /// not moved: producers have left once it stays still.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub put_total: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub put_total_since: Option<Time>,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum RollStep {
    /// Writes are fenced; waiting for producers to move their sends elsewhere.
    Fencing,
    /// A replicated group's leader hands its leadership to a follower, then waits for
    /// producers to find the new leader (it passes their sends on meanwhile).
    HandingOver,
    /// The pod was deleted; waiting for its replacement to be ready.
    Restarting,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BrokerGroupStatus {
    /// The group's brokerName.
    pub name: String,
    pub replicas: i32,
    pub ready_replicas: i32,
    /// Pods that still run an older config or template and wait to be rolled.
    #[serde(default)]
    pub outdated_replicas: i32,
    /// The pod that leads a replicated group, as the replicas say; absent for a group of one
    /// broker, or while none leads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
    /// Whether the group has been given the cluster's topics and subscription groups (a group
    /// added by scale-out gets them copied from an existing group once it is ready).
    #[serde(default)]
    pub seeded: bool,
    /// Set while the group is being removed: its writes are fenced and the operator waits for
    /// its consumers to read what is left.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub draining: Option<DrainStatus>,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DrainStatus {
    /// When a name server first took the fence of the group's writes; absent until one has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Time>,
    /// Messages its consumer groups have not consumed yet; absent while unknown (the broker
    /// cannot be asked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backlog: Option<i64>,
    /// The broker's count of stored messages when last asked: it must stand still between
    /// two looks before the group is removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub put_total: Option<i64>,
}

fn one() -> i32 {
    1
}

fn cluster_domain() -> String {
    "cluster.local".to_string()
}

/// A string map whose keys must be overridable broker keys. The rule is generated from the
/// same list the controller checks, so the apiserver and the operator never disagree.
fn broker_config_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let keys: Vec<String> = broker_config::overridable_keys()
        .map(|key| format!("'{key}'"))
        .collect();
    schemars::json_schema!({
        "type": "object",
        "additionalProperties": {"type": "string"},
        "maxProperties": 64,
        "x-kubernetes-validations": [{
            "rule": format!("self.all(key, key in [{}])", keys.join(", ")),
            "message": format!(
                "brokerConfig has a key Rocketry does not know or that the operator sets itself; allowed keys: {}",
                broker_config::overridable_keys().collect::<Vec<_>>().join(", ")
            ),
        }],
    })
}

impl RocketCluster {
    pub fn is_paused(&self) -> bool {
        self.annotation(PAUSE_ANNOTATION) == Some("true")
    }

    pub fn forces_scale_in(&self) -> bool {
        self.annotation(FORCE_SCALE_IN_ANNOTATION) == Some("true")
    }

    fn annotation(&self, key: &str) -> Option<&str> {
        self.metadata
            .annotations
            .as_ref()
            .and_then(|annotations| annotations.get(key))
            .map(String::as_str)
    }
}

impl RocketClusterSpec {
    /// The checks the schema also makes, for a CRD that predates one of them; each error
    /// reads like the schema's message.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=64).contains(&self.broker_groups) {
            return Err(format!(
                "brokerGroups must be 1 to 64, not {}",
                self.broker_groups
            ));
        }
        let replicas = self.replicas_per_group;
        if !(1..=9).contains(&replicas) || (replicas != 1 && replicas % 2 == 0) {
            return Err(format!(
                "replicasPerGroup must be 1 (a single master) or an odd number from 3 to 9 (a Raft group needs a majority), not {replicas}"
            ));
        }
        broker_config::check_overrides(&self.broker_config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::CustomResourceExt;

    fn spec() -> RocketClusterSpec {
        serde_json::from_value(serde_json::json!({
            "image": "rocketry:test",
            "storage": {"size": "1Gi"}
        }))
        .unwrap()
    }

    #[test]
    fn defaults_fill_an_almost_empty_spec() {
        let spec = spec();
        assert_eq!(spec.broker_groups, 1);
        assert_eq!(spec.replicas_per_group, 1);
        assert_eq!(spec.name_server.replicas, 1);
        assert_eq!(spec.flush_disk_type, FlushDiskType::ASYNC);
        assert_eq!(spec.storage.reclaim_policy, ReclaimPolicy::Retain);
        assert_eq!(spec.cluster_domain, "cluster.local");
        assert!(spec.validate().is_ok());
    }

    #[test]
    fn even_raft_groups_and_unknown_keys_are_refused() {
        let mut even = spec();
        even.replicas_per_group = 4;
        assert!(even.validate().unwrap_err().contains("odd number"));
        let mut unknown = spec();
        unknown.broker_config.insert("noSuchKey".into(), "1".into());
        assert!(unknown.validate().unwrap_err().contains("noSuchKey"));
    }

    #[test]
    fn crd_carries_the_schema_rules_and_printer_columns() {
        let crd = serde_json::to_string(&RocketCluster::crd()).unwrap();
        for needle in [
            "self == 1 || self % 2 == 1",
            "quantity(self).isGreaterThan",
            "quantity(self.size).compareTo(quantity(oldSelf.size)) >= 0",
            "self.all(key, key in [",
            "\"ASYNC\"",
            "\"shortNames\":[\"rc\",\"rocket\"]",
            ".status.readyBrokers",
        ] {
            assert!(crd.contains(needle), "CRD lacks {needle}");
        }
    }
}
