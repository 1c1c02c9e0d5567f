//! Builds every object a `RocketCluster` owns from the cluster alone, so that a reconcile is a
//! pure function of the spec plus a server-side apply, and a pass over an unchanged cluster
//! writes nothing.
//!
//! Names, for a cluster `demo`:
//! - `demo-namesrv`: the name server StatefulSet and its headless Service (stable pod names);
//!   `demo-namesrv-client`: a ClusterIP Service for clients;
//!   `demo-namesrv-config`: their ConfigMap, `namesrv.conf`;
//! - `demo-broker-<g>`: group g's StatefulSet, headless Service and PodDisruptionBudget;
//!   `demo-broker-<g>-config`: its ConfigMap, one `<pod>.conf` per broker;
//! - `demo-acl` and `demo-operator-credentials` (with `spec.security.acl`): Secrets, written
//!   by `credentials`.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{
    StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec,
    StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EnvVar, EnvVarSource,
    HTTPGetAction, ObjectFieldSelector, PersistentVolumeClaim, PersistentVolumeClaimSpec,
    PodSecurityContext, PodSpec, PodTemplateSpec, Probe, SeccompProfile, SecretVolumeSource,
    SecurityContext, Service, ServicePort, ServiceSpec, Volume, VolumeMount,
    VolumeResourceRequirements,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};

use crate::broker_config::{
    self, BrokerIdentity, BROKER_PORT, METRICS_PORT, NAME_SERVER_METRICS_PORT, NAME_SERVER_PORT,
    RAFT_PORT, STORE_PATH,
};
use crate::crd::{ReclaimPolicy, RocketCluster};
use crate::security::{self, ACL_DIR, TLS_DIR};

pub const CONFIG_HASH_ANNOTATION: &str = "rocketry.dev/config-hash";
pub const GROUP_LABEL: &str = "rocketry.dev/broker-group";
pub const INSTANCE_LABEL: &str = "app.kubernetes.io/instance";
pub const COMPONENT_LABEL: &str = "app.kubernetes.io/component";
const CONFIG_DIR: &str = "/etc/rocketry";
/// The image's non-root user (see the Dockerfile); fsGroup makes the volume writable by it.
const RUN_AS_USER: i64 = 10001;
/// How long the kubelet waits after SIGTERM before SIGKILL. A broker's clean stop drains
/// in-flight requests for up to 20 s, then flushes, checkpoints and unregisters from each name
/// server (up to 3 s each); a SIGKILL in the middle costs a recovery at the next start.
const BROKER_GRACE: Duration = Duration::from_secs(60);
/// A name server only drains its requests (up to 20 s).
const NAME_SERVER_GRACE: Duration = Duration::from_secs(30);

/// How often readiness (and the startup probe) ask.
const PROBE_PERIOD: Duration = Duration::from_secs(5);
/// The longest a broker may take before its `/livez` first answers: 60 probes 5 s apart.
/// Its endpoint starts before the store recovers, so this bounds the process's own start,
/// not recovery; generous, because a broker killed at start restarts into the same wait.
const BROKER_STARTUP: Duration = Duration::from_secs(300);
/// A name server has no store: it answers within seconds.
const NAME_SERVER_STARTUP: Duration = Duration::from_secs(60);

/// The name servers' objects.
pub struct NameServer {
    pub stateful_set: StatefulSet,
    pub headless: Service,
    pub client: Service,
    pub config_map: ConfigMap,
}

/// Everything one broker group is made of.
pub struct BrokerGroup {
    pub index: i32,
    pub stateful_set: StatefulSet,
    pub service: Service,
    pub config_map: ConfigMap,
    pub disruption_budget: PodDisruptionBudget,
    pub config_hash: String,
}

pub fn name_server_name(cluster: &RocketCluster) -> String {
    format!("{}-namesrv", cluster.name_any())
}

pub fn broker_group_name(cluster: &RocketCluster, index: i32) -> String {
    format!("{}-broker-{index}", cluster.name_any())
}

fn namespace(cluster: &RocketCluster) -> String {
    cluster.namespace().unwrap_or_else(|| "default".to_string())
}

/// The stable DNS name of pod `ordinal` of a StatefulSet whose headless Service has its name.
fn pod_host(cluster: &RocketCluster, set: &str, ordinal: i32) -> String {
    pod_dns_name(cluster, set, &format!("{set}-{ordinal}"))
}

fn pod_dns_name(cluster: &RocketCluster, set: &str, pod: &str) -> String {
    format!(
        "{pod}.{set}.{}.svc.{}",
        namespace(cluster),
        cluster.spec.cluster_domain
    )
}

/// `namesrvAddr` for brokers and clients: every name server by its DNS name, `;`-separated.
pub fn name_server_addresses(cluster: &RocketCluster) -> String {
    name_server_list(cluster).join(";")
}

/// Every name server's host:port, by its DNS name.
pub fn name_server_list(cluster: &RocketCluster) -> Vec<String> {
    let set = name_server_name(cluster);
    (0..cluster.spec.name_server.replicas)
        .map(|ordinal| format!("{}:{NAME_SERVER_PORT}", pod_host(cluster, &set, ordinal)))
        .collect()
}

/// Where the operator reaches broker pod `pod` of group `broker_name` (its StatefulSet and
/// headless Service share the name).
pub fn broker_address(cluster: &RocketCluster, broker_name: &str, pod: &str) -> String {
    format!("{}:{BROKER_PORT}", pod_dns_name(cluster, broker_name, pod))
}

pub fn labels(cluster: &RocketCluster, component: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_string(), "rocketry".to_string()),
        (INSTANCE_LABEL.to_string(), cluster.name_any()),
        (COMPONENT_LABEL.to_string(), component.to_string()),
        (
            "app.kubernetes.io/managed-by".to_string(),
            "rocketry-operator".to_string(),
        ),
    ])
}

fn selector_labels(
    cluster: &RocketCluster,
    component: &str,
    group: Option<i32>,
) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([
        (INSTANCE_LABEL.to_string(), cluster.name_any()),
        (COMPONENT_LABEL.to_string(), component.to_string()),
    ]);
    if let Some(group) = group {
        labels.insert(GROUP_LABEL.to_string(), group.to_string());
    }
    labels
}

fn owner(cluster: &RocketCluster) -> OwnerReference {
    cluster
        .controller_owner_ref(&())
        .expect("a RocketCluster read from the apiserver has a name and uid")
}

pub(crate) fn metadata(
    cluster: &RocketCluster,
    name: String,
    labels: BTreeMap<String, String>,
) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(namespace(cluster)),
        labels: Some(labels),
        owner_references: Some(vec![owner(cluster)]),
        ..ObjectMeta::default()
    }
}

fn port(name: &str, number: i32) -> ServicePort {
    ServicePort {
        name: Some(name.to_string()),
        port: number,
        target_port: Some(IntOrString::String(name.to_string())),
        ..ServicePort::default()
    }
}

fn container_port(name: &str, number: i32) -> ContainerPort {
    ContainerPort {
        name: Some(name.to_string()),
        container_port: number,
        ..ContainerPort::default()
    }
}

/// A headless Service that gives each pod of a StatefulSet a DNS name. Not-ready pods are
/// published too: a broker must resolve the name servers (and its Raft peers) while starting.
fn headless_service(
    cluster: &RocketCluster,
    name: String,
    component: &str,
    group: Option<i32>,
    ports: Vec<ServicePort>,
) -> Service {
    let mut labels = labels(cluster, component);
    if let Some(group) = group {
        labels.insert(GROUP_LABEL.to_string(), group.to_string());
    }
    Service {
        metadata: metadata(cluster, name, labels),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".to_string()),
            publish_not_ready_addresses: Some(true),
            selector: Some(selector_labels(cluster, component, group)),
            ports: Some(ports),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// The pod fields every role shares: scheduling extras, and a security context that passes
/// Pod Security "restricted" (non-root, RuntimeDefault seccomp; the containers drop every
/// capability and never escalate).
fn pod_spec(
    cluster: &RocketCluster,
    containers: Vec<Container>,
    volumes: Vec<Volume>,
    grace: Duration,
) -> PodSpec {
    let spec = &cluster.spec;
    PodSpec {
        containers,
        termination_grace_period_seconds: Some(grace.as_secs() as i64),
        volumes: (!volumes.is_empty()).then_some(volumes),
        node_selector: (!spec.node_selector.is_empty()).then(|| spec.node_selector.clone()),
        tolerations: (!spec.tolerations.is_empty()).then(|| spec.tolerations.clone()),
        affinity: spec.affinity.clone(),
        priority_class_name: spec.priority_class_name.clone(),
        security_context: Some(restricted_pod_security()),
        ..PodSpec::default()
    }
}

/// A pod security context that passes Pod Security "restricted": the image's non-root user,
/// RuntimeDefault seccomp.
pub(crate) fn restricted_pod_security() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(RUN_AS_USER),
        run_as_group: Some(RUN_AS_USER),
        fs_group: Some(RUN_AS_USER),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".to_string(),
            ..SeccompProfile::default()
        }),
        ..PodSecurityContext::default()
    }
}

/// A container security context for "restricted": no capabilities, no escalation, a
/// read-only root.
pub(crate) fn restricted_container_security() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_string()]),
            ..Capabilities::default()
        }),
        ..SecurityContext::default()
    }
}

fn container(cluster: &RocketCluster, name: &str, args: Vec<String>) -> Container {
    Container {
        name: name.to_string(),
        image: Some(cluster.spec.image.clone()),
        image_pull_policy: Some(cluster.spec.image_pull_policy.as_str().to_string()),
        args: Some(args),
        security_context: Some(restricted_container_security()),
        ..Container::default()
    }
}

/// `GET path` on the container's `metrics` port, where the broker and the name server serve
/// `/livez` and `/readyz` whatever `metricsExporterType` says. No `host`: Pod Security
/// "baseline" (and so "restricted") refuses probes aimed elsewhere than the pod.
fn http_probe(path: &str, period: Duration, failure_threshold: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_string()),
            port: IntOrString::String("metrics".to_string()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period.as_secs() as i32),
        failure_threshold: Some(failure_threshold),
        ..Probe::default()
    }
}

/// The probes of a broker or name server container. Readiness is `/readyz` (a broker: store
/// recovered and registered with a name server), which the roll waits on. Liveness is
/// `/livez`, 3 misses 10 s apart. `/livez` answers from before the store opens, so a long
/// recovery does not count against it; the startupProbe allows `startup` for the first
/// answer, so a start slowed by a loaded node or a cold disk is not killed by the liveness
/// probe's 30 s before the process ever answered.
fn set_probes(container: &mut Container, startup: Duration) {
    container.readiness_probe = Some(http_probe("/readyz", PROBE_PERIOD, 3));
    container.liveness_probe = Some(http_probe("/livez", Duration::from_secs(10), 3));
    container.startup_probe = Some(http_probe(
        "/livez",
        PROBE_PERIOD,
        (startup.as_secs() / PROBE_PERIOD.as_secs()) as i32,
    ));
}

fn pod_annotations(
    cluster: &RocketCluster,
    extra: &[(&str, String)],
) -> Option<BTreeMap<String, String>> {
    let mut annotations = cluster.spec.pod_annotations.clone();
    for (key, value) in extra {
        annotations.insert(key.to_string(), value.clone());
    }
    (!annotations.is_empty()).then_some(annotations)
}

/// The `prometheus.io/*` annotations that annotation-based scrape configs follow to `port`,
/// when the cluster asks for them.
fn scrape_annotations(cluster: &RocketCluster, port: i32) -> Vec<(&'static str, String)> {
    if !cluster.spec.metrics.enabled {
        return Vec::new();
    }
    vec![
        ("prometheus.io/scrape", "true".to_string()),
        ("prometheus.io/port", port.to_string()),
        ("prometheus.io/path", "/metrics".to_string()),
    ]
}

/// The Secrets `spec.security` needs mounted, read-only, for the keys `security` writes.
fn security_volumes(cluster: &RocketCluster) -> (Vec<Volume>, Vec<VolumeMount>) {
    let security = &cluster.spec.security;
    let mut secrets = Vec::new();
    if security.acl.enabled {
        secrets.push(("acl", security::acl_secret_name(cluster), ACL_DIR));
    }
    if let Some(tls) = &security.tls {
        secrets.push(("tls", tls.secret_name.clone(), TLS_DIR));
    }
    secrets
        .into_iter()
        .map(|(name, secret, dir)| {
            let volume = Volume {
                name: name.to_string(),
                secret: Some(SecretVolumeSource {
                    secret_name: Some(secret),
                    // Readable by the pod's fsGroup (the broker's user), by no one else.
                    default_mode: Some(0o440),
                    ..SecretVolumeSource::default()
                }),
                ..Volume::default()
            };
            let mount = VolumeMount {
                name: name.to_string(),
                mount_path: dir.to_string(),
                read_only: Some(true),
                ..VolumeMount::default()
            };
            (volume, mount)
        })
        .unzip()
}

fn config_volume(config_map: &str) -> (Volume, VolumeMount) {
    let volume = Volume {
        name: "config".to_string(),
        config_map: Some(ConfigMapVolumeSource {
            name: config_map.to_string(),
            ..ConfigMapVolumeSource::default()
        }),
        ..Volume::default()
    };
    let mount = VolumeMount {
        name: "config".to_string(),
        mount_path: CONFIG_DIR.to_string(),
        read_only: Some(true),
        ..VolumeMount::default()
    };
    (volume, mount)
}

/// The name servers: their StatefulSet, headless Service, client Service and ConfigMap.
pub fn name_server(cluster: &RocketCluster) -> NameServer {
    let name = name_server_name(cluster);
    let component = "namesrv";
    let mut lines = vec![
        "# Written by the Rocketry operator from the RocketCluster; edits here are overwritten."
            .to_string(),
    ];
    lines.extend(
        security::server_keys(cluster)
            .into_iter()
            .map(|(key, value)| format!("{key}={value}")),
    );
    lines.push(String::new());
    let files = BTreeMap::from([("namesrv.conf".to_string(), lines.join("\n"))]);
    let config_hash = broker_config::hash(&files);
    let config_map = ConfigMap {
        metadata: metadata(
            cluster,
            format!("{name}-config"),
            labels(cluster, component),
        ),
        data: Some(files),
        ..ConfigMap::default()
    };
    let mut main = container(
        cluster,
        "namesrv",
        vec![
            "namesrv".to_string(),
            "-c".to_string(),
            format!("{CONFIG_DIR}/namesrv.conf"),
        ],
    );
    main.ports = Some(vec![
        container_port("namesrv", NAME_SERVER_PORT),
        container_port("metrics", NAME_SERVER_METRICS_PORT),
    ]);
    set_probes(&mut main, NAME_SERVER_STARTUP);
    main.resources = cluster.spec.name_server.resources.clone();
    let (config, config_mount) = config_volume(&format!("{name}-config"));
    let (mut volumes, mut mounts) = security_volumes(cluster);
    volumes.insert(0, config);
    mounts.insert(0, config_mount);
    main.volume_mounts = Some(mounts);
    let mut extra_annotations = vec![(CONFIG_HASH_ANNOTATION, config_hash)];
    extra_annotations.extend(scrape_annotations(cluster, NAME_SERVER_METRICS_PORT));
    let stateful_set = StatefulSet {
        metadata: metadata(cluster, name.clone(), labels(cluster, component)),
        spec: StatefulSetSpec {
            replicas: Some(cluster.spec.name_server.replicas),
            service_name: Some(name.clone()),
            pod_management_policy: Some("Parallel".to_string()),
            selector: LabelSelector {
                match_labels: Some(selector_labels(cluster, component, None)),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(cluster, component)),
                    annotations: pod_annotations(cluster, &extra_annotations),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod_spec(cluster, vec![main], volumes, NAME_SERVER_GRACE)),
            },
            ..StatefulSetSpec::default()
        },
        ..StatefulSet::default()
    };
    let headless = headless_service(
        cluster,
        name.clone(),
        component,
        None,
        vec![port("namesrv", NAME_SERVER_PORT)],
    );
    let client = Service {
        metadata: metadata(
            cluster,
            format!("{name}-client"),
            labels(cluster, component),
        ),
        spec: Some(ServiceSpec {
            selector: Some(selector_labels(cluster, component, None)),
            ports: Some(vec![port("namesrv", NAME_SERVER_PORT)]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    };
    NameServer {
        stateful_set,
        headless,
        client,
        config_map,
    }
}

/// Group `index`: its StatefulSet (with volume claims and OnDelete updates, the operator rolls
/// the pods), headless Service, ConfigMap and PodDisruptionBudget.
pub fn broker_group(cluster: &RocketCluster, index: i32) -> BrokerGroup {
    let spec = &cluster.spec;
    let name = broker_group_name(cluster, index);
    let component = "broker";
    let mut group_labels = labels(cluster, component);
    group_labels.insert(GROUP_LABEL.to_string(), index.to_string());
    let raft = spec.replicas_per_group > 1;

    let name_servers = name_server_addresses(cluster);
    let security_keys = security::broker_keys(cluster);
    let raft_peers: Vec<String> = if raft {
        (0..spec.replicas_per_group)
            .map(|ordinal| format!("{}:{RAFT_PORT}", pod_host(cluster, &name, ordinal)))
            .collect()
    } else {
        Vec::new()
    };
    let files: BTreeMap<String, String> = (0..spec.replicas_per_group)
        .map(|ordinal| {
            let host = pod_host(cluster, &name, ordinal);
            let identity = BrokerIdentity {
                cluster_name: &cluster.name_any(),
                broker_name: &name,
                ordinal,
                advertised_host: &host,
                name_server_addresses: &name_servers,
                flush_disk_type: spec.flush_disk_type.config_value(),
                raft_peers: &raft_peers,
                security: &security_keys,
            };
            (
                format!("{name}-{ordinal}.conf"),
                broker_config::render(&identity, &spec.broker_config),
            )
        })
        .collect();
    let config_hash = broker_config::hash(&files);
    let config_map = ConfigMap {
        metadata: metadata(cluster, format!("{name}-config"), group_labels.clone()),
        data: Some(files),
        ..ConfigMap::default()
    };

    let mut ports = vec![
        container_port("broker", BROKER_PORT),
        container_port("metrics", METRICS_PORT),
    ];
    let mut service_ports = vec![port("broker", BROKER_PORT)];
    if raft {
        ports.push(container_port("raft", RAFT_PORT));
        service_ports.push(port("raft", RAFT_PORT));
    }
    let mut main = container(
        cluster,
        "broker",
        // The kubelet expands $(POD_NAME), so each pod reads its own file from the group's ConfigMap.
        vec![
            "broker".to_string(),
            "-c".to_string(),
            format!("{CONFIG_DIR}/$(POD_NAME).conf"),
        ],
    );
    main.env = Some(vec![EnvVar {
        name: "POD_NAME".to_string(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: "metadata.name".to_string(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }]);
    main.ports = Some(ports);
    set_probes(&mut main, BROKER_STARTUP);
    main.resources = spec.resources.clone();
    let (config, config_mount) = config_volume(&format!("{name}-config"));
    let (mut volumes, mut mounts) = security_volumes(cluster);
    volumes.insert(0, config);
    mounts.splice(
        0..0,
        [
            VolumeMount {
                name: "store".to_string(),
                mount_path: STORE_PATH.to_string(),
                ..VolumeMount::default()
            },
            config_mount,
        ],
    );
    main.volume_mounts = Some(mounts);
    let mut extra_annotations = vec![(CONFIG_HASH_ANNOTATION, config_hash.clone())];
    extra_annotations.extend(scrape_annotations(cluster, METRICS_PORT));
    let retention = match spec.storage.reclaim_policy {
        ReclaimPolicy::Retain => "Retain",
        ReclaimPolicy::Delete => "Delete",
    };
    let claim = PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some("store".to_string()),
            labels: Some(group_labels.clone()),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".to_string()]),
            storage_class_name: spec.storage.storage_class_name.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_string(),
                    Quantity(spec.storage.size.clone()),
                )])),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        ..PersistentVolumeClaim::default()
    };
    let stateful_set = StatefulSet {
        metadata: metadata(cluster, name.clone(), group_labels.clone()),
        spec: StatefulSetSpec {
            replicas: Some(spec.replicas_per_group),
            service_name: Some(name.clone()),
            // Raft members must all start to elect a leader; ordered start would wait forever
            // for pod 0 to be ready without a quorum.
            pod_management_policy: Some("Parallel".to_string()),
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("OnDelete".to_string()),
                ..StatefulSetUpdateStrategy::default()
            }),
            // The StatefulSet controller owns each claim when this says Delete, so deleting
            // the cluster (and, through garbage collection, the set) deletes the volumes too.
            persistent_volume_claim_retention_policy: Some(
                StatefulSetPersistentVolumeClaimRetentionPolicy {
                    when_deleted: Some(retention.to_string()),
                    when_scaled: Some("Retain".to_string()),
                },
            ),
            selector: LabelSelector {
                match_labels: Some(selector_labels(cluster, component, Some(index))),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(group_labels.clone()),
                    annotations: pod_annotations(cluster, &extra_annotations),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod_spec(cluster, vec![main], volumes, BROKER_GRACE)),
            },
            volume_claim_templates: Some(vec![claim]),
            ..StatefulSetSpec::default()
        },
        ..StatefulSet::default()
    };
    let service = headless_service(cluster, name.clone(), component, Some(index), service_ports);
    let disruption_budget = PodDisruptionBudget {
        metadata: metadata(cluster, name, group_labels),
        spec: Some(PodDisruptionBudgetSpec {
            // One broker of a group at a time: a Raft group keeps its majority, a single
            // master may still be drained (otherwise its node could never be).
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(selector_labels(cluster, component, Some(index))),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    };
    BrokerGroup {
        index,
        stateful_set,
        service,
        config_map,
        disruption_budget,
        config_hash,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::RocketClusterSpec;

    fn cluster(replicas_per_group: i32) -> RocketCluster {
        let spec: RocketClusterSpec = serde_json::from_value(serde_json::json!({
            "image": "rocketry:test",
            "nameServer": {"replicas": 2},
            "brokerGroups": 2,
            "replicasPerGroup": replicas_per_group,
            "storage": {"size": "5Gi", "storageClassName": "fast", "reclaimPolicy": "Delete"},
            "flushDiskType": "SYNC",
            "brokerConfig": {"maxMessageSize": "1024"}
        }))
        .unwrap();
        let mut cluster = RocketCluster::new("demo", spec);
        cluster.metadata.namespace = Some("ns".to_string());
        cluster.metadata.uid = Some("uid-1".to_string());
        cluster
    }

    #[test]
    fn brokers_get_dns_names_of_every_name_server() {
        let cluster = cluster(1);
        assert_eq!(
            name_server_addresses(&cluster),
            "demo-namesrv-0.demo-namesrv.ns.svc.cluster.local:9876;demo-namesrv-1.demo-namesrv.ns.svc.cluster.local:9876"
        );
        let group = broker_group(&cluster, 1);
        let conf = &group.config_map.data.as_ref().unwrap()["demo-broker-1-0.conf"];
        assert!(conf.contains("brokerIP1=demo-broker-1-0.demo-broker-1.ns.svc.cluster.local\n"));
        assert!(conf.contains("brokerName=demo-broker-1\n"));
        assert!(conf.contains("flushDiskType=SYNC_FLUSH\n"));
        assert!(conf.contains("maxMessageSize=1024\n"));
        assert!(!conf.contains("dLeger"));
    }

    #[test]
    fn group_set_has_claims_on_delete_updates_and_the_config_hash() {
        let cluster = cluster(3);
        let group = broker_group(&cluster, 0);
        let spec = &group.stateful_set.spec;
        assert_eq!(spec.replicas, Some(3));
        assert_eq!(
            spec.update_strategy.as_ref().unwrap().type_.as_deref(),
            Some("OnDelete")
        );
        let claim = &spec.volume_claim_templates.as_ref().unwrap()[0];
        let claim_spec = claim.spec.as_ref().unwrap();
        assert_eq!(claim_spec.storage_class_name.as_deref(), Some("fast"));
        assert_eq!(
            claim_spec
                .resources
                .as_ref()
                .unwrap()
                .requests
                .as_ref()
                .unwrap()["storage"]
                .0,
            "5Gi"
        );
        assert_eq!(
            spec.persistent_volume_claim_retention_policy
                .as_ref()
                .unwrap()
                .when_deleted
                .as_deref(),
            Some("Delete")
        );
        let annotations = spec
            .template
            .metadata
            .as_ref()
            .unwrap()
            .annotations
            .as_ref()
            .unwrap();
        assert_eq!(annotations[CONFIG_HASH_ANNOTATION], group.config_hash);
        assert_eq!(group.config_map.data.as_ref().unwrap().len(), 3);
        let owner = &group
            .stateful_set
            .metadata
            .owner_references
            .as_ref()
            .unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.controller),
            ("RocketCluster", Some(true))
        );
    }

    // The annotations named the remoting port 10911, so every annotation-based scrape
    // of a broker failed (issue 14).
    #[test]
    fn metrics_annotations_name_the_metrics_port() {
        let mut cluster = cluster(1);
        cluster.spec.metrics.enabled = true;
        let group = broker_group(&cluster, 0);
        let template = &group.stateful_set.spec.template;
        let annotations = template
            .metadata
            .as_ref()
            .unwrap()
            .annotations
            .as_ref()
            .unwrap();
        assert_eq!(annotations["prometheus.io/port"], "5557");
        assert_eq!(annotations["prometheus.io/path"], "/metrics");
        let container = &template.spec.as_ref().unwrap().containers[0];
        let ports = container.ports.as_ref().unwrap();
        assert!(ports
            .iter()
            .any(|p| p.name.as_deref() == Some("metrics") && p.container_port == 5557));
    }

    // Readiness was a TCP check of the remoting port, which the broker binds before it
    // recovers its store and registers, so a recovering broker read Ready and the roll
    // trusted it (issue 13).
    #[test]
    fn brokers_and_name_servers_are_probed_over_http_on_the_metrics_port() {
        let cluster = cluster(1);
        let name_servers = name_server(&cluster).stateful_set;
        let brokers = broker_group(&cluster, 0).stateful_set;
        for (role, set, startup_seconds) in
            [("namesrv", name_servers, 60), ("broker", brokers, 300)]
        {
            let container = set.spec.template.spec.unwrap().containers.remove(0);
            let probed = |probe: Option<Probe>| {
                let probe = probe.unwrap_or_else(|| panic!("{role}: a probe is missing"));
                let get = probe.http_get.clone().unwrap();
                assert_eq!(get.port, IntOrString::String("metrics".into()), "{role}");
                assert!(probe.tcp_socket.is_none(), "{role}");
                (get.path.unwrap(), probe)
            };
            let (path, _) = probed(container.readiness_probe);
            assert_eq!(path, "/readyz", "{role}");
            let (path, _) = probed(container.liveness_probe);
            assert_eq!(path, "/livez", "{role}");
            let (path, startup) = probed(container.startup_probe);
            assert_eq!(path, "/livez", "{role}");
            assert_eq!(
                startup.failure_threshold.unwrap() * startup.period_seconds.unwrap(),
                startup_seconds,
                "{role}"
            );
            assert!(container
                .ports
                .unwrap()
                .iter()
                .any(|port| port.name.as_deref() == Some("metrics")));
        }
    }

    /// Pod Security "restricted": every pod of every role. The operator's tests against the
    /// real apiserver also run in namespaces that enforce it.
    #[test]
    fn every_pod_passes_pod_security_restricted() {
        let cluster = cluster(1);
        let name_servers = name_server(&cluster).stateful_set;
        let brokers = broker_group(&cluster, 0).stateful_set;
        for (role, set, grace) in [("namesrv", name_servers, 30), ("broker", brokers, 60)] {
            let pod = set.spec.template.spec.unwrap();
            let context = pod.security_context.unwrap();
            assert_eq!(context.run_as_non_root, Some(true), "{role}");
            assert_eq!(
                context.seccomp_profile.unwrap().type_,
                "RuntimeDefault",
                "{role}"
            );
            assert_eq!(pod.termination_grace_period_seconds, Some(grace), "{role}");
            for container in pod.containers {
                let context = container.security_context.unwrap();
                assert_eq!(context.allow_privilege_escalation, Some(false), "{role}");
                assert_eq!(
                    context.capabilities.unwrap().drop,
                    Some(vec!["ALL".to_string()]),
                    "{role}"
                );
                assert!(context.privileged.is_none(), "{role}");
                // Baseline refuses probes with a host of their own.
                for probe in [
                    &container.readiness_probe,
                    &container.liveness_probe,
                    &container.startup_probe,
                ] {
                    let get = probe.as_ref().and_then(|probe| probe.http_get.as_ref());
                    assert!(get.is_none_or(|get| get.host.is_none()), "{role}");
                }
            }
            assert!(pod
                .volumes
                .unwrap_or_default()
                .iter()
                .all(|v| v.host_path.is_none()));
        }
    }

    // Name servers serve /metrics too (5558), but only broker pods were annotated, so an
    // annotation-based scrape never saw them.
    #[test]
    fn metrics_annotations_name_the_name_servers_metrics_port_too() {
        let mut cluster = cluster(1);
        let annotations = |cluster: &RocketCluster| {
            let stateful_set = name_server(cluster).stateful_set;
            stateful_set.spec.template.metadata.unwrap().annotations
        };
        assert!(!annotations(&cluster)
            .unwrap()
            .contains_key("prometheus.io/scrape"));
        cluster.spec.metrics.enabled = true;
        let annotations = annotations(&cluster).unwrap();
        assert_eq!(annotations["prometheus.io/scrape"], "true");
        assert_eq!(annotations["prometheus.io/port"], "5558");
        assert_eq!(annotations["prometheus.io/path"], "/metrics");
    }

    // The chart's PodMonitor finds pods by the labels and port name given here; renaming one
    // would silently stop every scrape of every cluster.
    #[test]
    fn the_charts_pod_monitor_selects_the_pods_and_port_made_here() {
        let pod_monitor = include_str!("../../charts/rocketry/templates/podmonitor.yaml");
        let components = pod_monitor
            .lines()
            .find_map(|line| line.trim().strip_prefix("values: "))
            .expect("the PodMonitor selects components");
        let cluster = cluster(1);
        let name_servers = name_server(&cluster).stateful_set;
        for set in [name_servers, broker_group(&cluster, 0).stateful_set] {
            let pod = set.spec.template;
            let labels = pod.metadata.unwrap().labels.unwrap();
            for key in ["app.kubernetes.io/name", "app.kubernetes.io/managed-by"] {
                assert!(pod_monitor.contains(&format!("{key}: {}\n", labels[key])));
            }
            assert!(
                components.contains(&labels[COMPONENT_LABEL]),
                "{components}"
            );
            let ports = pod.spec.unwrap().containers[0].ports.clone().unwrap();
            assert!(ports.iter().any(|p| p.name.as_deref() == Some("metrics")));
            assert!(pod_monitor.contains("- port: metrics\n"));
        }
    }

    #[test]
    fn a_config_change_changes_the_hash_and_nothing_else_does() {
        let mut cluster = cluster(1);
        let before = broker_group(&cluster, 0).config_hash;
        cluster
            .spec
            .pod_annotations
            .insert("team".into(), "a".into());
        assert_eq!(before, broker_group(&cluster, 0).config_hash);
        cluster.spec.name_server.replicas = 3;
        assert_eq!(
            before,
            broker_group(&cluster, 0).config_hash,
            "more name servers would restart every broker"
        );
        cluster
            .spec
            .broker_config
            .insert("maxMessageSize".into(), "2048".into());
        assert_ne!(before, broker_group(&cluster, 0).config_hash);
    }
}
