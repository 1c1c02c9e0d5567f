//! The RocketCluster controller: one `reconcile` that applies what `resources` builds, removes
//! broker groups only when allowed, rolls outdated broker pods one at a time, and writes the
//! status; one `error_policy` that counts the failure and backs off.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{watcher, Controller};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::crd::{
    BrokerGroupStatus, RocketCluster, RocketClusterStatus, ALLOW_SCALE_IN_ANNOTATION,
    PAUSE_ANNOTATION,
};
use crate::metrics::Metrics;
use crate::resources::{
    self, COMPONENT_LABEL, CONFIG_HASH_ANNOTATION, GROUP_LABEL, INSTANCE_LABEL,
};
use crate::{Error, Result};

/// The field manager of every server-side apply, and the events' reporting controller.
pub const FIELD_MANAGER: &str = "rocketry-operator";
/// How often a converged cluster is looked at again even without a change.
const RESYNC: Duration = Duration::from_secs(300);
/// How often a cluster whose pods are starting or rolling is looked at again.
const SOON: Duration = Duration::from_secs(5);

pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Metrics,
    /// Consecutive failures per cluster, for the error backoff; cleared by a success.
    failures: Mutex<HashMap<ObjectRef<RocketCluster>, u32>>,
}

impl Context {
    pub fn new(client: Client, metrics: Metrics, instance: Option<String>) -> Self {
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: FIELD_MANAGER.to_string(),
                instance,
            },
        );
        Context {
            client,
            recorder,
            metrics,
            failures: Mutex::new(HashMap::new()),
        }
    }
}

/// Runs the controller over `namespace` (every namespace when `None`) until `shutdown`.
pub async fn run(
    context: Arc<Context>,
    namespace: Option<&str>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let client = context.client.clone();
    let owned = watcher::Config::default().labels("app.kubernetes.io/managed-by=rocketry-operator");
    Controller::new(
        scoped::<RocketCluster>(&client, namespace),
        watcher::Config::default(),
    )
    // A StatefulSet's status follows its pods, so watching the sets is enough to see a
    // rolled pod become ready again. The rest is watched so that drift (an edited
    // ConfigMap, a deleted Service or PDB) is put right at once, not at the next resync.
    .owns(scoped::<StatefulSet>(&client, namespace), owned.clone())
    .owns(scoped::<ConfigMap>(&client, namespace), owned.clone())
    .owns(scoped::<Service>(&client, namespace), owned.clone())
    .owns(scoped::<PodDisruptionBudget>(&client, namespace), owned)
    .graceful_shutdown_on(shutdown)
    .run(reconcile, error_policy, context)
    .for_each(|result| async move {
        if let Err(error) = result {
            tracing::debug!(error = %error, "controller event");
        }
    })
    .await;
}

/// An Api over one namespace, or over every namespace when `None`.
fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    <K as Resource>::DynamicType: Default,
{
    match namespace {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    }
}

fn kube_error<'a>(
    action: &'static str,
    kind: &'static str,
    name: &'a str,
) -> impl FnOnce(kube::Error) -> Error + 'a {
    move |source| Error::Kube {
        action,
        kind,
        name: name.to_string(),
        source,
    }
}

/// Server-side applies one object. An unchanged object is a no-op on the server: its
/// resourceVersion stays, so a pass over a converged cluster writes nothing.
async fn apply<K>(api: &Api<K>, object: &K, kind: &'static str) -> Result<K>
where
    K: Resource + Clone + Serialize + DeserializeOwned + std::fmt::Debug,
{
    let name = object.meta().name.clone().unwrap_or_default();
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(object),
    )
    .await
    .map_err(kube_error("apply", kind, &name))
}

async fn delete<K>(api: &Api<K>, name: &str, kind: &'static str) -> Result<()>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(source) => Err(kube_error("delete", kind, name)(source)),
    }
}

/// What one pass found about the cluster, from which the status is written.
#[derive(Default)]
struct Observed {
    name_servers_ready: i32,
    groups: Vec<BrokerGroupStatus>,
    /// (condition reason, message) when the spec cannot be applied as it is.
    degraded: Option<(&'static str, String)>,
    rolling: Option<String>,
}

pub async fn reconcile(cluster: Arc<RocketCluster>, context: Arc<Context>) -> Result<Action> {
    let timer = context.metrics.reconcile_started();
    let action = reconcile_cluster(&cluster, &context).await?;
    timer.succeeded();
    context
        .failures
        .lock()
        .expect("failure map poisoned")
        .remove(&ObjectRef::from_obj(cluster.as_ref()));
    Ok(action)
}

pub fn error_policy(cluster: Arc<RocketCluster>, error: &Error, context: Arc<Context>) -> Action {
    context.metrics.reconcile_failed(error);
    let failures = {
        let mut failures = context.failures.lock().expect("failure map poisoned");
        let count = failures
            .entry(ObjectRef::from_obj(cluster.as_ref()))
            .or_insert(0);
        *count = count.saturating_add(1);
        *count
    };
    // 1 s, 2 s, 4 s ... capped at 5 minutes: a broken apiserver or RBAC rule is not hammered.
    let delay = Duration::from_secs(1u64 << failures.min(9).saturating_sub(1))
        .min(Duration::from_secs(300));
    tracing::warn!(cluster = %cluster.name_any(), error = %error, source = ?std::error::Error::source(error), ?delay, "reconcile failed");
    Action::requeue(delay)
}

async fn reconcile_cluster(cluster: &RocketCluster, context: &Context) -> Result<Action> {
    if cluster.metadata.deletion_timestamp.is_some() {
        // Owner references hand everything to the garbage collector.
        return Ok(Action::await_change());
    }
    let client = context.client.clone();
    let namespace = cluster.namespace().unwrap_or_else(|| "default".to_string());
    if cluster.is_paused() {
        write_status(cluster, context, Observed::default(), true).await?;
        return Ok(Action::await_change());
    }
    if let Err(message) = cluster.spec.validate() {
        let observed = Observed {
            degraded: Some(("InvalidSpec", message)),
            ..Observed::default()
        };
        write_status(cluster, context, observed, false).await?;
        return Ok(Action::await_change());
    }
    let mut observed = Observed::default();

    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), &namespace);
    let services: Api<Service> = Api::namespaced(client.clone(), &namespace);
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
    let budgets: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), &namespace);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);

    let (name_server_set, headless, client_service) = resources::name_server(cluster);
    apply(&services, &headless, "service").await?;
    apply(&services, &client_service, "service").await?;
    let name_server_set = apply(&sets, &name_server_set, "statefulset").await?;
    observed.name_servers_ready = name_server_set
        .status
        .as_ref()
        .and_then(|status| status.ready_replicas)
        .unwrap_or(0);

    // The broker groups that exist, found by label, decide what growing or shrinking means.
    let selector = format!(
        "{INSTANCE_LABEL}={},{COMPONENT_LABEL}=broker",
        cluster.name_any()
    );
    let existing: BTreeMap<i32, StatefulSet> = sets
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(kube_error("list", "statefulset", &selector))?
        .items
        .into_iter()
        .filter(|set| {
            set.owner_references()
                .iter()
                .any(|owner| Some(&owner.uid) == cluster.metadata.uid.as_ref())
        })
        .filter_map(|set| Some((set.labels().get(GROUP_LABEL)?.parse().ok()?, set)))
        .collect();
    let desired = cluster.spec.broker_groups;
    let surplus: Vec<i32> = existing
        .keys()
        .copied()
        .filter(|index| *index >= desired)
        .collect();
    let mut groups_to_run = desired;
    if !surplus.is_empty() {
        if cluster.allows_scale_in() {
            for index in &surplus {
                let name = resources::broker_group_name(cluster, *index);
                delete(&sets, &name, "statefulset").await?;
                delete(&services, &name, "service").await?;
                delete(&budgets, &name, "poddisruptionbudget").await?;
                delete(&config_maps, &format!("{name}-config"), "configmap").await?;
                publish(context, cluster, EventType::Normal, "BrokerGroupRemoved", format!("removed broker group {name} (scale-in allowed by {ALLOW_SCALE_IN_ANNOTATION})")).await;
            }
        } else {
            // Removing a group drops its queues and, with Retain, strands its data: refuse until
            // the user says so explicitly, and keep running the groups that exist.
            groups_to_run = existing.keys().max().map_or(desired, |max| max + 1);
            observed.degraded = Some((
                "ScaleInRefused",
                format!(
                    "brokerGroups went from {} to {desired}; removing broker groups deletes their queues, so it is refused. \
                     Set the annotation {ALLOW_SCALE_IN_ANNOTATION}=\"true\" to remove groups {surplus:?}",
                    groups_to_run
                ),
            ));
        }
    }

    for index in 0..groups_to_run {
        let group = resources::broker_group(cluster, index);
        let name = resources::broker_group_name(cluster, index);
        apply(&config_maps, &group.config_map, "configmap").await?;
        apply(&services, &group.service, "service").await?;
        apply(&budgets, &group.disruption_budget, "poddisruptionbudget").await?;
        let set = apply(&sets, &group.stateful_set, "statefulset").await?;
        if !existing.contains_key(&index) {
            publish(
                context,
                cluster,
                EventType::Normal,
                "BrokerGroupCreated",
                format!("created broker group {name}"),
            )
            .await;
        }
        let status = roll_group(
            cluster,
            context,
            &pods,
            &set,
            &group.config_hash,
            &name,
            index,
        )
        .await?;
        if let Some(pod) = status.1 {
            observed.rolling = Some(pod);
        }
        observed.groups.push(status.0);
    }

    let converged = write_status(cluster, context, observed, false).await?;
    Ok(Action::requeue(if converged { RESYNC } else { SOON }))
}

/// Whether a pod reports the Ready condition true.
pub fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|status| status.conditions.as_ref())
        .is_some_and(|conditions| {
            conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        })
}

/// Counts the group's ready and outdated pods and, when every pod is present and ready,
/// deletes the highest outdated one, so the StatefulSet recreates it from the new template.
/// Returns the group's status and the pod it deleted, if any.
async fn roll_group(
    cluster: &RocketCluster,
    context: &Context,
    pods: &Api<Pod>,
    set: &StatefulSet,
    config_hash: &str,
    name: &str,
    index: i32,
) -> Result<(BrokerGroupStatus, Option<String>)> {
    let selector = format!(
        "{INSTANCE_LABEL}={},{COMPONENT_LABEL}=broker,{GROUP_LABEL}={index}",
        cluster.name_any()
    );
    let mut members = pods
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(kube_error("list", "pod", &selector))?
        .items;
    members.sort_by_key(|pod| std::cmp::Reverse(ordinal(&pod.name_any())));
    // The revision check catches template changes other than the config (an image bump); it is
    // trusted only once the StatefulSet controller has seen the current spec.
    let update_revision = set.status.as_ref().and_then(|status| {
        (status.observed_generation == set.metadata.generation)
            .then(|| status.update_revision.clone())
            .flatten()
    });
    let outdated = |pod: &Pod| {
        let hash = pod
            .annotations()
            .get(CONFIG_HASH_ANNOTATION)
            .map(String::as_str);
        let revision = pod.labels().get("controller-revision-hash");
        hash != Some(config_hash)
            || update_revision
                .as_ref()
                .is_some_and(|update| revision != Some(update))
    };
    let replicas = cluster.spec.replicas_per_group;
    let live: Vec<&Pod> = members
        .iter()
        .filter(|pod| pod.metadata.deletion_timestamp.is_none())
        .collect();
    let ready = live.iter().filter(|pod| pod_ready(pod)).count() as i32;
    let stale: Vec<&&Pod> = live.iter().filter(|pod| outdated(pod)).collect();
    let status = BrokerGroupStatus {
        name: name.to_string(),
        replicas,
        ready_replicas: ready,
        outdated_replicas: stale.len() as i32,
    };
    let settled = live.len() == members.len() && live.len() as i32 == replicas && ready == replicas;
    let Some(victim) = stale.first().filter(|_| settled) else {
        return Ok((status, None));
    };
    let pod_name = victim.name_any();
    delete(pods, &pod_name, "pod").await?;
    publish(
        context,
        cluster,
        EventType::Normal,
        "RollingPod",
        format!("deleted {pod_name} to apply the new broker config or template ({} of group {name} outdated)", stale.len()),
    )
    .await;
    Ok((status, Some(pod_name)))
}

fn ordinal(pod_name: &str) -> i32 {
    pod_name
        .rsplit('-')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

async fn publish(
    context: &Context,
    cluster: &RocketCluster,
    type_: EventType,
    reason: &str,
    note: String,
) {
    let event = Event {
        type_,
        reason: reason.to_string(),
        note: Some(note),
        action: "Reconcile".to_string(),
        secondary: None,
    };
    // An event is a courtesy: failing to write one must not fail the reconcile.
    if let Err(error) = context
        .recorder
        .publish(&event, &cluster.object_ref(&()))
        .await
    {
        tracing::warn!(error = %error, reason, "could not publish event");
    }
}

fn condition(
    cluster: &RocketCluster,
    type_: &str,
    status: bool,
    reason: &str,
    message: String,
) -> Condition {
    let previous = cluster
        .status
        .as_ref()
        .and_then(|status| status.conditions.iter().find(|c| c.type_ == type_));
    let status = if status { "True" } else { "False" }.to_string();
    // The transition time moves only when the status flips, as the API conventions ask.
    let last_transition_time = match previous {
        Some(previous) if previous.status == status => previous.last_transition_time.clone(),
        _ => Time(Timestamp::now()),
    };
    Condition {
        type_: type_.to_string(),
        status,
        reason: reason.to_string(),
        message,
        observed_generation: cluster.metadata.generation,
        last_transition_time,
    }
}

/// Writes the status when it differs from what is stored; returns whether the cluster is
/// converged (ready, nothing to roll, nothing refused).
async fn write_status(
    cluster: &RocketCluster,
    context: &Context,
    observed: Observed,
    paused: bool,
) -> Result<bool> {
    let spec = &cluster.spec;
    let desired_brokers = spec.broker_groups * spec.replicas_per_group;
    let ready_brokers: i32 = observed
        .groups
        .iter()
        .map(|group| group.ready_replicas)
        .sum();
    let outdated: i32 = observed
        .groups
        .iter()
        .map(|group| group.outdated_replicas)
        .sum();
    let groups_complete = observed.groups.len() as i32 >= spec.broker_groups;
    let all_ready = groups_complete
        && ready_brokers >= desired_brokers
        && observed.name_servers_ready >= spec.name_server.replicas;
    let (phase, conditions) = if paused {
        (
            "Paused",
            vec![
                condition(cluster, "Ready", false, "Paused", "reconciling is paused".to_string()),
                condition(
                    cluster,
                    "Progressing",
                    false,
                    "Paused",
                    format!("reconciling is paused by the annotation {PAUSE_ANNOTATION}=\"true\"; remove it to resume"),
                ),
                condition(cluster, "Degraded", false, "Paused", "reconciling is paused".to_string()),
            ],
        )
    } else {
        let ready = if all_ready {
            condition(
                cluster,
                "Ready",
                true,
                "AllBrokersReady",
                format!(
                    "{ready_brokers}/{desired_brokers} brokers and {} name servers ready",
                    observed.name_servers_ready
                ),
            )
        } else {
            condition(
                cluster,
                "Ready",
                false,
                "BrokersNotReady",
                format!(
                    "{ready_brokers}/{desired_brokers} brokers and {}/{} name servers ready",
                    observed.name_servers_ready, spec.name_server.replicas
                ),
            )
        };
        let progressing = match (&observed.rolling, outdated, all_ready) {
            (Some(pod), _, _) => condition(cluster, "Progressing", true, "RollingPods", format!("restarted {pod}; {outdated} broker(s) run an outdated config")),
            (None, 1.., _) => condition(cluster, "Progressing", true, "RollingPods", format!("{outdated} broker(s) run an outdated config; waiting for every broker of the group to be ready before the next")),
            (None, _, false) => condition(cluster, "Progressing", true, "WaitingForPods", "waiting for pods to become ready".to_string()),
            (None, _, true) => condition(cluster, "Progressing", false, "Reconciled", "every object matches the spec".to_string()),
        };
        let degraded = match &observed.degraded {
            Some((reason, message)) => {
                condition(cluster, "Degraded", true, reason, message.clone())
            }
            None => condition(
                cluster,
                "Degraded",
                false,
                "AsExpected",
                "the spec is applied".to_string(),
            ),
        };
        let phase = if observed.degraded.is_some() {
            "Degraded"
        } else if all_ready && outdated == 0 {
            "Running"
        } else if ready_brokers == 0 {
            "Pending"
        } else {
            "Progressing"
        };
        (phase, vec![ready, progressing, degraded])
    };
    let converged = phase == "Running";
    let status = RocketClusterStatus {
        phase: Some(phase.to_string()),
        observed_generation: cluster.metadata.generation,
        conditions,
        ready_brokers: (!paused).then(|| format!("{ready_brokers}/{desired_brokers}")),
        broker_groups: observed.groups,
        name_server_addresses: Some(resources::name_server_addresses(cluster)),
    };
    let previous = cluster.status.clone().unwrap_or_default();
    if previous == status {
        return Ok(converged);
    }
    announce_transitions(cluster, context, &previous, &status).await;
    let name = cluster.name_any();
    let api: Api<RocketCluster> = Api::namespaced(
        context.client.clone(),
        &cluster.namespace().unwrap_or_default(),
    );
    api.patch_status(
        &name,
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({ "status": status })),
    )
    .await
    .map_err(kube_error("patch status of", "rocketcluster", &name))?;
    Ok(converged)
}

/// An event for each condition whose reason changed to one a person should hear about.
async fn announce_transitions(
    cluster: &RocketCluster,
    context: &Context,
    previous: &RocketClusterStatus,
    next: &RocketClusterStatus,
) {
    for condition in &next.conditions {
        let before = previous
            .conditions
            .iter()
            .find(|c| c.type_ == condition.type_);
        if before.is_some_and(|b| b.reason == condition.reason && b.status == condition.status) {
            continue;
        }
        let type_ = match (
            condition.type_.as_str(),
            condition.status.as_str(),
            condition.reason.as_str(),
        ) {
            ("Degraded", "True", _) => EventType::Warning,
            ("Progressing", "False", "Paused") => EventType::Normal,
            ("Ready", "True", _) => EventType::Normal,
            _ => continue,
        };
        publish(
            context,
            cluster,
            type_,
            &condition.reason,
            condition.message.clone(),
        )
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinals_come_from_the_pod_name() {
        assert_eq!(ordinal("demo-broker-1-2"), 2);
        assert_eq!(ordinal("demo-broker-10-11"), 11);
    }
}
