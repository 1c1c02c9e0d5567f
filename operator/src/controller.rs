//! The RocketCluster controller: one `reconcile` that applies what `resources` builds, drains
//! and removes surplus broker groups, grows volumes, takes the roll of outdated brokers one
//! step (see `roll`), seeds new groups with the cluster's topics, hands brokers the name-server
//! list, and writes the status; one `error_policy` that counts the failure and backs off.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::join_all;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::storage::v1::StorageClass;
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

use crate::admin::Access;
use crate::consumer_group::RocketConsumerGroup;
use crate::crd::{
    BrokerGroupStatus, DrainStatus, RocketCluster, RocketClusterStatus, RollStatus, RollStep,
    FORCE_SCALE_IN_ANNOTATION, PAUSE_ANNOTATION,
};
use crate::metrics::Metrics;
use crate::migration::RocketMigration;
use crate::pacer::Pacer;
use crate::resources::{
    self, COMPONENT_LABEL, CONFIG_HASH_ANNOTATION, GROUP_LABEL, INSTANCE_LABEL,
};
use crate::topic::RocketTopic;
use crate::user::RocketUser;
use crate::{
    admin, consumer_group_controller, credentials, drain, migration_controller, roll, storage,
    topic_controller,
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
    /// Paces the passes of topics and consumer groups (see `pacer`).
    pub pacer: Pacer,
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
            pacer: Pacer::default(),
            failures: Mutex::new(HashMap::new()),
        }
    }
}

/// Runs the controllers (clusters, topics, consumer groups) over `namespace` (every namespace
/// when `None`) until `shutdown`.
pub async fn run(
    context: Arc<Context>,
    namespace: Option<&str>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let shutdown = shutdown.shared();
    futures::join!(
        run_clusters(context.clone(), namespace, shutdown.clone()),
        run_topics(context.clone(), namespace, shutdown.clone()),
        run_consumer_groups(context.clone(), namespace, shutdown.clone()),
        run_migrations(context, namespace, shutdown),
    );
}

async fn run_clusters(
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
    .owns(
        scoped::<PodDisruptionBudget>(&client, namespace),
        owned.clone(),
    )
    // The ACL Secret and the operator's credentials: an edited or deleted one is written again.
    .owns(scoped::<Secret>(&client, namespace), owned)
    // A user added, changed or removed rewrites its cluster's ACL file at once.
    .watches(
        scoped::<RocketUser>(&client, namespace),
        watcher::Config::default(),
        |user| {
            let namespace = user.namespace()?;
            Some(ObjectRef::<RocketCluster>::new(&user.spec.cluster).within(&namespace))
        },
    )
    .graceful_shutdown_on(shutdown)
    .run(reconcile, error_policy, context)
    .for_each(log_result)
    .await;
}

/// Topics poll their brokers (see `topic_controller`), so the controller watches only them.
async fn run_topics(
    context: Arc<Context>,
    namespace: Option<&str>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let client = context.client.clone();
    Controller::new(
        scoped::<RocketTopic>(&client, namespace),
        watcher::Config::default(),
    )
    .graceful_shutdown_on(shutdown)
    .run(
        topic_controller::reconcile,
        topic_controller::error_policy,
        context,
    )
    .for_each(log_result)
    .await;
}

async fn run_consumer_groups(
    context: Arc<Context>,
    namespace: Option<&str>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let client = context.client.clone();
    Controller::new(
        scoped::<RocketConsumerGroup>(&client, namespace),
        watcher::Config::default(),
    )
    .graceful_shutdown_on(shutdown)
    .run(
        consumer_group_controller::reconcile,
        consumer_group_controller::error_policy,
        context,
    )
    .for_each(log_result)
    .await;
}

/// Migrations poll both ends (see `migration_controller`); their mirror Deployments are
/// watched so that a deleted or edited one is put back at once.
async fn run_migrations(
    context: Arc<Context>,
    namespace: Option<&str>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let client = context.client.clone();
    let owned = watcher::Config::default().labels("app.kubernetes.io/component=mirror");
    Controller::new(
        scoped::<RocketMigration>(&client, namespace),
        watcher::Config::default(),
    )
    .owns(scoped::<Deployment>(&client, namespace), owned)
    .graceful_shutdown_on(shutdown)
    .run(
        migration_controller::reconcile,
        migration_controller::error_policy,
        context,
    )
    .for_each(log_result)
    .await;
}

async fn log_result<T: std::fmt::Debug, E: std::fmt::Display>(result: Result<T, E>) {
    if let Err(error) = result {
        tracing::debug!(error = %error, "controller event");
    }
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

pub(crate) fn kube_error<'a>(
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
pub(crate) async fn apply<K>(api: &Api<K>, object: &K, kind: &'static str) -> Result<K>
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

pub(crate) async fn delete<K>(api: &Api<K>, name: &str, kind: &'static str) -> Result<()>
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
    roll: Option<RollStatus>,
}

impl Observed {
    /// Some group still lacks the cluster's topics.
    fn unseeded(&self) -> bool {
        self.groups.iter().any(|group| !group.seeded)
    }
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

/// The Apis of one namespace that a pass uses.
struct Apis {
    sets: Api<StatefulSet>,
    services: Api<Service>,
    config_maps: Api<ConfigMap>,
    budgets: Api<PodDisruptionBudget>,
    pods: Api<Pod>,
    claims: Api<PersistentVolumeClaim>,
    classes: Api<StorageClass>,
}

impl Apis {
    fn new(client: &Client, namespace: &str) -> Apis {
        Apis {
            sets: Api::namespaced(client.clone(), namespace),
            services: Api::namespaced(client.clone(), namespace),
            config_maps: Api::namespaced(client.clone(), namespace),
            budgets: Api::namespaced(client.clone(), namespace),
            pods: Api::namespaced(client.clone(), namespace),
            claims: Api::namespaced(client.clone(), namespace),
            classes: Api::all(client.clone()),
        }
    }

    /// Deletes a broker group's objects; its volumes stay (claims are kept on scale-down).
    async fn remove_group(&self, name: &str) -> Result<()> {
        delete(&self.sets, name, "statefulset").await?;
        delete(&self.services, name, "service").await?;
        delete(&self.budgets, name, "poddisruptionbudget").await?;
        delete(&self.config_maps, &format!("{name}-config"), "configmap").await
    }
}

async fn reconcile_cluster(cluster: &RocketCluster, context: &Context) -> Result<Action> {
    if cluster.metadata.deletion_timestamp.is_some() {
        // Owner references hand everything to the garbage collector.
        return Ok(Action::await_change());
    }
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
    let previous = cluster.status.clone().unwrap_or_default();
    let now = Timestamp::now();
    let mut observed = Observed::default();
    let apis = Apis::new(&context.client, &namespace);
    let name_servers = resources::name_server_list(cluster);

    // The ACL's Secret exists before any pod that mounts it.
    let security = credentials::prepare(cluster, &context.client, &namespace).await?;
    if let Some(degraded) = security.degraded.clone() {
        observed.degraded = Some(degraded);
    }

    let name_server = resources::name_server(cluster);
    apply(&apis.config_maps, &name_server.config_map, "configmap").await?;
    apply(&apis.services, &name_server.headless, "service").await?;
    apply(&apis.services, &name_server.client, "service").await?;
    let name_server_set = apply(&apis.sets, &name_server.stateful_set, "statefulset").await?;
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
    let existing: BTreeMap<i32, StatefulSet> = apis
        .sets
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
    let mut draining: BTreeMap<i32, DrainStatus> = BTreeMap::new();
    for index in existing.keys().copied().filter(|index| *index >= desired) {
        if let Some(status) = drain_group(
            cluster,
            context,
            &security.access,
            &apis,
            &previous,
            &name_servers,
            index,
            now,
        )
        .await?
        {
            draining.insert(index, status);
        }
    }

    let mut groups: Vec<(resources::BrokerGroup, StatefulSet)> = Vec::new();
    for index in (0..desired).chain(draining.keys().copied()) {
        let mut group = resources::broker_group(cluster, index);
        let name = resources::broker_group_name(cluster, index);
        // A StatefulSet's claim template cannot change: an existing group keeps the one it
        // was made with, and a larger size reaches its claims directly (see `storage`).
        if let Some(set) = existing.get(&index) {
            group.stateful_set.spec.volume_claim_templates =
                set.spec.volume_claim_templates.clone();
        }
        apply(&apis.config_maps, &group.config_map, "configmap").await?;
        apply(&apis.services, &group.service, "service").await?;
        apply(
            &apis.budgets,
            &group.disruption_budget,
            "poddisruptionbudget",
        )
        .await?;
        let set = apply(&apis.sets, &group.stateful_set, "statefulset").await?;
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
        let claims = format!("{selector},{GROUP_LABEL}={index}");
        if let Some(refused) = storage::grow_claims(
            &apis.claims,
            &apis.classes,
            &claims,
            &cluster.spec.storage.size,
        )
        .await?
        {
            observed.degraded = Some(("VolumeExpansionUnsupported", refused));
        }
        groups.push((group, set));
    }

    // Every broker pod of the cluster, in the order they roll: by group, highest ordinal first.
    let mut members = Vec::new();
    let mut standings = BTreeMap::new();
    for (group, set) in &groups {
        let name = resources::broker_group_name(cluster, group.index);
        let (mut status, mut group_members) = group_members(
            cluster,
            &apis.pods,
            set,
            group,
            &name,
            draining.contains_key(&group.index),
        )
        .await?;
        if cluster.spec.replicas_per_group > 1 {
            let group_standings =
                replica_standings(cluster, &security.access, &mut group_members, &mut status).await;
            standings.extend(group_standings);
        }
        status.draining = draining.get(&group.index).cloned();
        status.seeded = previous
            .broker_groups
            .iter()
            .any(|before| before.name == name && before.seeded);
        members.extend(group_members);
        observed.groups.push(status);
    }
    let expected = groups.len() * cluster.spec.replicas_per_group as usize;
    // The roll as last recorded, read afresh: a pass that a pod's change triggers can run before
    // the watch has brought the previous pass's status patch, and a roll resumed from a stale
    // step would repeat it (a second restart) or skip one (an old leader restarted before the
    // sends it passes on stand still).
    let cluster_name = cluster.name_any();
    let recorded = Api::<RocketCluster>::namespaced(context.client.clone(), &namespace)
        .get(&cluster_name)
        .await
        .map_err(kube_error(
            "read the status of",
            "rocketcluster",
            &cluster_name,
        ))?
        .status
        .and_then(|status| status.roll);
    observed.roll = step_roll(
        cluster,
        context,
        &security.access,
        &apis.pods,
        recorded.as_ref(),
        &members,
        &standings,
        expected,
        &name_servers,
        now,
    )
    .await?;
    seed_groups(cluster, context, &security.access, &mut observed.groups).await;
    // Only a list whose every name server is up: a broker told of one that is still starting
    // tries it and then waits a whole registration period before trying again.
    if observed.name_servers_ready >= cluster.spec.name_server.replicas {
        hand_out_name_servers(cluster, &security.access, &members).await;
    }

    let busy = observed.roll.is_some() || observed.unseeded() || !draining.is_empty();
    let converged = write_status(cluster, context, observed, false).await?;
    Ok(Action::requeue(if converged && !busy {
        RESYNC
    } else {
        SOON
    }))
}

/// One pass of removing surplus group `index`: removes it at once when forced, or fences it,
/// measures what is left and removes it once drained. Returns its drain status while it stays.
#[allow(clippy::too_many_arguments)]
async fn drain_group(
    cluster: &RocketCluster,
    context: &Context,
    access: &Access,
    apis: &Apis,
    previous: &RocketClusterStatus,
    name_servers: &[String],
    index: i32,
    now: Timestamp,
) -> Result<Option<DrainStatus>> {
    let name = resources::broker_group_name(cluster, index);
    let before = previous
        .broker_groups
        .iter()
        .find(|group| group.name == name)
        .and_then(|group| group.draining.as_ref());
    if cluster.forces_scale_in() {
        apis.remove_group(&name).await?;
        let left = match before.and_then(|drain| drain.backlog) {
            Some(0) => "no unconsumed messages were left".to_string(),
            Some(count) => format!("{count} unconsumed messages are lost with it unless its volumes are recovered"),
            None => "its backlog was never measured; whatever its consumers had not read is lost with it unless its volumes are recovered".to_string(),
        };
        publish(context, cluster, EventType::Warning, "BrokerGroupForceRemoved", format!("removed broker group {name} without draining ({FORCE_SCALE_IN_ANNOTATION}): {left}")).await;
        return Ok(None);
    }
    // Fenced on every pass: a broker's registration with a changed topic table gives the
    // write permission back, as in RocketMQ.
    let fence = admin::set_write_perm(access, name_servers, &name, true).await;
    let broker = resources::broker_address(cluster, &name, &format!("{name}-0"));
    let (backlog, put_total) = futures::join!(
        admin::backlog(access, &broker),
        admin::put_total(access, &broker)
    );
    if let Err(error) = &backlog {
        tracing::info!(group = %name, %error, "backlog of a draining group unknown");
    }
    let seen = drain::Seen {
        fenced: fence.reached > 0,
        backlog: backlog.ok(),
        put_total: put_total.ok(),
    };
    let (status, removable) = drain::next(before, seen, now);
    if before.is_none() {
        publish(context, cluster, EventType::Normal, "DrainingBrokerGroup", format!("brokerGroups is {}: fenced the writes of {name} ({} of {} name servers) and wait for its consumers to read what it holds", cluster.spec.broker_groups, fence.reached, name_servers.len())).await;
    }
    if !removable {
        return Ok(Some(status));
    }
    apis.remove_group(&name).await?;
    publish(
        context,
        cluster,
        EventType::Normal,
        "BrokerGroupRemoved",
        format!("removed broker group {name}: drained, no unconsumed messages left"),
    )
    .await;
    Ok(None)
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

/// Whether every container of the pod runs and has passed its startup probe: a pod that is
/// Pending or whose container waits out a crash loop has not.
pub fn pod_started(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|status| status.container_statuses.as_ref())
        .is_some_and(|containers| {
            !containers.is_empty()
                && containers
                    .iter()
                    .all(|container| container.started == Some(true))
        })
}

/// The group's pods as roll members, highest ordinal first, and its status.
async fn group_members(
    cluster: &RocketCluster,
    pods: &Api<Pod>,
    set: &StatefulSet,
    group: &resources::BrokerGroup,
    name: &str,
    draining: bool,
) -> Result<(BrokerGroupStatus, Vec<roll::Member>)> {
    let selector = format!(
        "{INSTANCE_LABEL}={},{COMPONENT_LABEL}=broker,{GROUP_LABEL}={}",
        cluster.name_any(),
        group.index
    );
    let mut pods = pods
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(kube_error("list", "pod", &selector))?
        .items;
    pods.sort_by_key(|pod| std::cmp::Reverse(ordinal(&pod.name_any())));
    // The revision check catches template changes other than the config (an image bump); it is
    // trusted only once the StatefulSet controller has seen the current spec.
    let update_revision = set.status.as_ref().and_then(|status| {
        (status.observed_generation == set.metadata.generation)
            .then(|| status.update_revision.clone())
            .flatten()
    });
    let members: Vec<roll::Member> = pods
        .iter()
        .map(|pod| {
            let hash = pod.annotations().get(CONFIG_HASH_ANNOTATION);
            let revision = pod.labels().get("controller-revision-hash");
            roll::Member {
                name: pod.name_any(),
                uid: pod.uid().unwrap_or_default(),
                broker_name: name.to_string(),
                ready: pod_ready(pod),
                started: pod_started(pod),
                terminating: pod.metadata.deletion_timestamp.is_some(),
                outdated: hash != Some(&group.config_hash)
                    || update_revision
                        .as_ref()
                        .is_some_and(|update| revision != Some(update)),
                rollable: !draining,
                // A replicated group's roles are asked of its replicas: replica_standings.
                role: if cluster.spec.replicas_per_group > 1 {
                    roll::Role::Unknown
                } else {
                    roll::Role::Alone
                },
            }
        })
        .collect();
    let live = members.iter().filter(|member| !member.terminating);
    let status = BrokerGroupStatus {
        name: name.to_string(),
        replicas: cluster.spec.replicas_per_group,
        ready_replicas: live.clone().filter(|member| member.ready).count() as i32,
        outdated_replicas: live.filter(|member| member.outdated).count() as i32,
        ..BrokerGroupStatus::default()
    };
    Ok((status, members))
}

/// How far behind its leader's CommitLog a follower may end and still count as caught up:
/// one that is further behind holds the roll, since restarting another replica would leave
/// the group's quorum waiting on it.
const CAUGHT_UP_WITHIN: i64 = 16 << 20;

/// Asks a replicated group's Ready replicas where they stand; sets each member's role, the
/// group's leader, and keeps a follower that has not caught up with its leader from counting
/// as ready for a roll. Returns the standings by pod.
async fn replica_standings(
    cluster: &RocketCluster,
    access: &Access,
    members: &mut [roll::Member],
    status: &mut BrokerGroupStatus,
) -> BTreeMap<String, admin::Standing> {
    let asked = members.iter().filter(|member| member.ready).map(|member| {
        let broker = resources::broker_address(cluster, &member.broker_name, &member.name);
        let pod = member.name.clone();
        async move {
            let standing = admin::standing(access, &broker).await;
            if let Err(error) = &standing {
                tracing::info!(%pod, %error, "cannot ask a replica where it stands");
            }
            (pod, standing.ok())
        }
    });
    let standings: BTreeMap<String, admin::Standing> = join_all(asked)
        .await
        .into_iter()
        .filter_map(|(pod, standing)| Some((pod, standing?)))
        .collect();
    let leads = |standing: &admin::Standing| standing.role == roll::Role::Leader;
    let leader = standings.iter().find(|(_, standing)| leads(standing));
    status.leader = leader.map(|(pod, _)| pod.clone());
    let leader_end = leader.map(|(_, standing)| standing.max_offset);
    for member in members.iter_mut() {
        let Some(standing) = standings.get(&member.name) else {
            continue;
        };
        member.role = standing.role;
        if standing.role == roll::Role::Alone {
            // Not a replica yet: it serves as it always did until its roll.
            continue;
        }
        // No leader, or far behind it: the group is not whole enough for a roll.
        member.ready &= leader_end
            .is_some_and(|end| leads(standing) || standing.max_offset >= end - CAUGHT_UP_WITHIN);
    }
    standings
}

/// Takes the roll one step (see `roll`) and does what the step names; returns the roll as it
/// now stands.
#[allow(clippy::too_many_arguments)]
async fn step_roll(
    cluster: &RocketCluster,
    context: &Context,
    access: &Access,
    pods: &Api<Pod>,
    current: Option<&RollStatus>,
    members: &[roll::Member],
    standings: &BTreeMap<String, admin::Standing>,
    expected: usize,
    name_servers: &[String],
    now: Timestamp,
) -> Result<Option<RollStatus>> {
    let sends = match current {
        Some(roll) if roll.step == RollStep::Fencing => {
            let broker = resources::broker_address(cluster, &roll.broker_name, &roll.pod);
            admin::put_total(access, &broker).await.ok()
        }
        Some(roll) if roll.step == RollStep::HandingOver => {
            standings.get(&roll.pod).map(|standing| standing.passed_on)
        }
        _ => None,
    };
    match roll::next(current, members, expected, sends, now) {
        roll::Next::Idle | roll::Next::WaitForBrokers | roll::Next::Done => Ok(None),
        roll::Next::Replace(pod) => {
            delete(pods, &pod, "pod").await?;
            publish(context, cluster, EventType::Normal, "ReplacingDownPod", format!("deleted {pod}, which is outdated and not Ready, so that it comes back with the new config or template")).await;
            Ok(None)
        }
        roll::Next::Fence(roll) => {
            // Recorded before the fence goes up: whoever leads next knows to lift it.
            patch_roll(cluster, context, Some(&roll)).await?;
            let fence = admin::set_write_perm(access, name_servers, &roll.broker_name, true).await;
            let (type_, note) = if fence.reached > 0 {
                (
                    EventType::Normal,
                    format!(
                        "fenced the writes of {} at {} of {} name servers before restarting {}",
                        roll.broker_name,
                        fence.reached,
                        name_servers.len(),
                        roll.pod
                    ),
                )
            } else {
                (EventType::Warning, format!("no name server took the fence of {} ({}); {} is restarted unfenced, and sends to it fail until clients retry elsewhere", roll.broker_name, fence.failures.join("; "), roll.pod))
            };
            publish(context, cluster, type_, "FencingBroker", note).await;
            Ok(Some(roll))
        }
        roll::Next::HandOver(roll) => {
            // Recorded first: whoever leads next knows this leader is on its way out.
            patch_roll(cluster, context, Some(&roll)).await?;
            let broker = resources::broker_address(cluster, &roll.broker_name, &roll.pod);
            match admin::transfer_leader(access, &broker).await {
                Ok(to) => publish(context, cluster, EventType::Normal, "HandingOverLeadership", format!("moved the leadership of {} from {} to {to} before restarting it; it passes sends on until producers find {to}", roll.broker_name, roll.pod)).await,
                Err(error) => publish(context, cluster, EventType::Warning, "LeadershipTransferFailed", format!("{} still leads {}: {error}; trying again, for {} s at most before it is restarted all the same", roll.pod, roll.broker_name, roll::HAND_OVER_MAX.as_secs())).await,
            }
            Ok(Some(roll))
        }
        roll::Next::Hold(roll) => {
            if roll.step == RollStep::Fencing {
                admin::set_write_perm(access, name_servers, &roll.broker_name, true).await;
            }
            Ok(Some(roll))
        }
        roll::Next::Restart(roll) => {
            // Recorded first when nothing was: a follower goes straight to its restart.
            if current.is_none() {
                patch_roll(cluster, context, Some(&roll)).await?;
            }
            delete(pods, &roll.pod, "pod").await?;
            let still_leads = standings
                .get(&roll.pod)
                .is_some_and(|standing| standing.role == roll::Role::Leader);
            let after = match current {
                Some(before) if before.step == RollStep::HandingOver && still_leads => format!(
                    "still leading {} after {} s of failed transfers: its group elects a new leader",
                    roll.broker_name,
                    roll::elapsed(&before.since, now).as_secs()
                ),
                Some(before) => format!(
                    "{} s after {}",
                    roll::elapsed(&before.since, now).as_secs(),
                    match before.step {
                        RollStep::HandingOver => "handing its leadership over",
                        _ => "fencing its writes",
                    }
                ),
                None => format!("a follower of {}", roll.broker_name),
            };
            publish(
                context,
                cluster,
                if still_leads {
                    EventType::Warning
                } else {
                    EventType::Normal
                },
                "RollingPod",
                format!(
                    "deleted {} to apply the new broker config or template, {after}",
                    roll.pod
                ),
            )
            .await;
            Ok(Some(roll))
        }
        roll::Next::Unfence(broker_name) => {
            let fence = admin::set_write_perm(access, name_servers, &broker_name, false).await;
            if !fence.failures.is_empty() {
                // A broker that registers again (as the new pod did) gets its permission back
                // from every name server anyway.
                tracing::info!(broker = %broker_name, failures = ?fence.failures, "some name servers did not take the unfence");
            }
            Ok(None)
        }
    }
}

/// Writes only `status.roll`, so that the roll is on record before its fence goes up.
async fn patch_roll(
    cluster: &RocketCluster,
    context: &Context,
    roll: Option<&RollStatus>,
) -> Result<()> {
    patch_status(cluster, context, serde_json::json!({ "roll": roll })).await
}

/// A merge patch of the cluster's status subresource.
async fn patch_status(
    cluster: &RocketCluster,
    context: &Context,
    status: serde_json::Value,
) -> Result<()> {
    patch_object_status(&context.client, cluster, "rocketcluster", status).await
}

/// A merge patch of a namespaced object's status subresource.
pub(crate) async fn patch_object_status<K>(
    client: &Client,
    object: &K,
    kind: &'static str,
    status: serde_json::Value,
) -> Result<()>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let name = object.name_any();
    let api: Api<K> = Api::namespaced(client.clone(), &object.namespace().unwrap_or_default());
    api.patch_status(
        &name,
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({ "status": status })),
    )
    .await
    .map_err(kube_error("patch status of", kind, &name))?;
    Ok(())
}

/// Merge-patches `status`, with its `Ready` condition made from `previous` conditions, into
/// a namespaced object's status subresource.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn patch_ready_status<K>(
    client: &Client,
    object: &K,
    kind: &'static str,
    previous: &[Condition],
    mut status: serde_json::Value,
    ready: bool,
    reason: &str,
    message: String,
) -> Result<()>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let generation = object.meta().generation;
    let condition = next_condition(previous, generation, "Ready", ready, reason, message);
    status["conditions"] = serde_json::to_value([condition]).unwrap_or_default();
    patch_object_status(client, object, kind, status).await
}

/// Gives each group that lacks them the cluster's topics and subscription groups, copied from a
/// group that has them, once all its brokers are ready. A new cluster has none to copy: its
/// first ready groups are seeded as they are.
async fn seed_groups(
    cluster: &RocketCluster,
    context: &Context,
    access: &Access,
    groups: &mut [BrokerGroupStatus],
) {
    let ready = |group: &BrokerGroupStatus| {
        group.ready_replicas == group.replicas && group.draining.is_none()
    };
    let Some(source) = groups
        .iter()
        .find(|group| group.seeded && ready(group))
        .map(|group| group.name.clone())
    else {
        if !groups.iter().any(|group| group.seeded) {
            for group in groups.iter_mut().filter(|group| ready(group)) {
                group.seeded = true;
            }
        }
        return;
    };
    let from = resources::broker_address(cluster, &source, &format!("{source}-0"));
    for group in groups
        .iter_mut()
        .filter(|group| !group.seeded && ready(group))
    {
        let mut copied = admin::Copied::default();
        let mut failed = None;
        for ordinal in 0..group.replicas {
            let to = resources::broker_address(
                cluster,
                &group.name,
                &format!("{}-{ordinal}", group.name),
            );
            match admin::copy_topics(access, &from, &source, &to).await {
                Ok(made) => {
                    copied.topics += made.topics;
                    copied.groups += made.groups;
                }
                Err(error) => failed = Some(error),
            }
        }
        if let Some(error) = failed {
            tracing::warn!(group = %group.name, %error, "could not copy the cluster's topics yet");
            continue;
        }
        group.seeded = true;
        publish(
            context,
            cluster,
            EventType::Normal,
            "TopicsCopied",
            format!(
                "copied {} topics and {} subscription groups from {source} to {}",
                copied.topics, copied.groups, group.name
            ),
        )
        .await;
    }
}

/// Hands every ready broker the current name-server list, where it differs from the one it
/// uses: scaling the name servers restarts no broker. Called once every name server is Ready.
async fn hand_out_name_servers(cluster: &RocketCluster, access: &Access, members: &[roll::Member]) {
    let wanted = resources::name_server_addresses(cluster);
    let calls = members
        .iter()
        .filter(|member| member.ready && !member.terminating)
        .map(|member| {
            let broker = resources::broker_address(cluster, &member.broker_name, &member.name);
            let wanted = wanted.clone();
            async move {
                (
                    admin::set_name_servers(access, &broker, &wanted).await,
                    member,
                )
            }
        });
    for (result, member) in futures::future::join_all(calls).await {
        match result {
            Ok(true) => {
                tracing::info!(broker = %member.name, name_servers = %wanted, "handed a broker the new name-server list")
            }
            Ok(false) => {}
            Err(error) => {
                tracing::debug!(broker = %member.name, %error, "could not check the broker's name-server list")
            }
        }
    }
}

fn ordinal(pod_name: &str) -> i32 {
    pod_name
        .rsplit('-')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Publishes an event about `object`.
pub(crate) async fn publish<K>(
    context: &Context,
    object: &K,
    type_: EventType,
    reason: &str,
    note: String,
) where
    K: Resource<DynamicType = ()>,
{
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
        .publish(&event, &object.object_ref(&()))
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
        .map(|status| status.conditions.as_slice())
        .unwrap_or_default();
    next_condition(
        previous,
        cluster.metadata.generation,
        type_,
        status,
        reason,
        message,
    )
}

/// A condition of an object whose conditions were `previous`: the transition time moves
/// only when the status flips, as the API conventions ask.
pub(crate) fn next_condition(
    previous: &[Condition],
    generation: Option<i64>,
    type_: &str,
    status: bool,
    reason: &str,
    message: String,
) -> Condition {
    let before = previous.iter().find(|c| c.type_ == type_);
    let status = if status { "True" } else { "False" }.to_string();
    let last_transition_time = match before {
        Some(before) if before.status == status => before.last_transition_time.clone(),
        _ => Time(Timestamp::now()),
    };
    Condition {
        type_: type_.to_string(),
        status,
        reason: reason.to_string(),
        message,
        observed_generation: generation,
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
        .filter(|group| group.draining.is_none())
        .map(|group| group.ready_replicas)
        .sum();
    let outdated: i32 = observed
        .groups
        .iter()
        .map(|group| group.outdated_replicas)
        .sum();
    let groups_complete = observed.groups.len() as i32 >= spec.broker_groups;
    // A group being drained is on its way out: it counts neither for nor against readiness.
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
        let draining: Vec<String> = observed
            .groups
            .iter()
            .filter_map(|group| {
                let drain = group.draining.as_ref()?;
                Some(match drain.backlog {
                    Some(backlog) => format!("{} ({backlog} messages left)", group.name),
                    None => format!("{} (backlog unknown)", group.name),
                })
            })
            .collect();
        let progressing = if let Some(roll) = &observed.roll {
            let step = match roll.step {
                RollStep::Fencing => "writes fenced, waiting for producers to move",
                RollStep::HandingOver => {
                    "leadership handed over, waiting for producers to find the new leader"
                }
                RollStep::Restarting => "restarting",
            };
            condition(
                cluster,
                "Progressing",
                true,
                "RollingPods",
                format!(
                    "{}: {step}; {outdated} broker(s) run an outdated config",
                    roll.pod
                ),
            )
        } else if !draining.is_empty() {
            condition(cluster, "Progressing", true, "DrainingBrokerGroups", format!("removing {}: writes fenced, waiting for consumers to read what is left (annotate {FORCE_SCALE_IN_ANNOTATION}=\"true\" to remove at once and lose it)", draining.join(", ")))
        } else if outdated > 0 {
            condition(cluster, "Progressing", true, "RollingPods", format!("{outdated} broker(s) run an outdated config; waiting for every broker of the cluster to be ready before the next"))
        } else if !all_ready {
            condition(
                cluster,
                "Progressing",
                true,
                "WaitingForPods",
                "waiting for pods to become ready".to_string(),
            )
        } else if observed.unseeded() {
            condition(
                cluster,
                "Progressing",
                true,
                "CopyingTopics",
                "a new broker group waits for the cluster's topics".to_string(),
            )
        } else {
            condition(
                cluster,
                "Progressing",
                false,
                "Reconciled",
                "every object matches the spec".to_string(),
            )
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
        } else if !draining.is_empty() {
            "Draining"
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
        roll: observed.roll,
    };
    let previous = cluster.status.clone().unwrap_or_default();
    if previous == status {
        return Ok(converged);
    }
    announce_transitions(cluster, context, &previous, &status).await;
    patch_status(cluster, context, serde_json::json!(status)).await?;
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
