//! The operator against a real kube-apiserver, etcd and kube-controller-manager (the Kubernetes
//! peer): CRDs from `crds/`, a controller running in the test, pods marked ready by the test.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use operator::leader::LeaseLock;
use operator::{RocketCluster, RocketUser};
use support::*;

/// How long a reconcile's effect may take to show: a deadline, not a measure, and one that
/// costs nothing when the effect comes. CI runs these tests on 2 cores beside two brokers'
/// JVMs, Kafka and a node.
const WAIT: Duration = Duration::from_secs(180);

fn cluster(name: &str, spec: serde_json::Value) -> RocketCluster {
    let mut spec_with_image =
        serde_json::json!({"image": "rocketry:test", "storage": {"size": "1Gi"}});
    spec_with_image
        .as_object_mut()
        .unwrap()
        .extend(spec.as_object().unwrap().clone());
    RocketCluster::new(name, serde_json::from_value(spec_with_image).unwrap())
}

async fn patch_spec(api: &Api<RocketCluster>, name: &str, spec: serde_json::Value) {
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({ "spec": spec })),
    )
    .await
    .unwrap();
}

fn broker_selector(cluster: &str) -> String {
    format!("app.kubernetes.io/instance={cluster},app.kubernetes.io/component=broker")
}

async fn condition(
    api: &Api<RocketCluster>,
    name: &str,
    type_: &str,
) -> Option<(String, String, String)> {
    let cluster = api.get(name).await.ok()?;
    let condition = cluster
        .status?
        .conditions
        .into_iter()
        .find(|c| c.type_ == type_)?;
    Some((condition.status, condition.reason, condition.message))
}

/// Waits for a condition with the given status and reason, returning its message.
async fn wait_condition(
    api: &Api<RocketCluster>,
    name: &str,
    type_: &str,
    status: &str,
    reason: &str,
) -> String {
    wait_for(
        WAIT,
        &format!("{type_}={status} ({reason}) on {name}"),
        || async {
            let (s, r, message) = condition(api, name, type_).await?;
            (s == status && r == reason).then_some(message)
        },
    )
    .await
}

/// Marks pods ready until the group sets report every replica ready.
async fn wait_all_ready(client: &Client, namespace: &str, cluster: &str, brokers: usize) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let clusters: Api<RocketCluster> = Api::namespaced(client.clone(), namespace);
    let name_servers =
        format!("app.kubernetes.io/instance={cluster},app.kubernetes.io/component=namesrv");
    wait_for(WAIT, "every pod ready and the cluster Running", || async {
        mark_all_ready(&pods, &name_servers).await;
        let count = mark_all_ready(&pods, &broker_selector(cluster)).await;
        let status = clusters.get(cluster).await.ok()?.status?;
        (count == brokers && status.phase.as_deref() == Some("Running")).then_some(())
    })
    .await;
}

/// resourceVersions of everything the cluster owns, and of the cluster itself.
async fn versions(client: &Client, namespace: &str, cluster: &str) -> BTreeMap<String, String> {
    let selector = format!("app.kubernetes.io/instance={cluster}");
    let params = ListParams::default().labels(&selector);
    let mut versions = BTreeMap::new();
    macro_rules! collect {
        ($kind:ty, $label:expr) => {
            for object in Api::<$kind>::namespaced(client.clone(), namespace)
                .list(&params)
                .await
                .unwrap()
            {
                versions.insert(
                    format!("{}/{}", $label, object.name_any()),
                    object.resource_version().unwrap(),
                );
            }
        };
    }
    collect!(StatefulSet, "statefulset");
    collect!(Service, "service");
    collect!(ConfigMap, "configmap");
    collect!(PodDisruptionBudget, "pdb");
    let clusters: Api<RocketCluster> = Api::namespaced(client.clone(), namespace);
    versions.insert(
        "rocketcluster".into(),
        clusters
            .get(cluster)
            .await
            .unwrap()
            .resource_version()
            .unwrap(),
    );
    versions
}

#[tokio::test]
async fn cluster_lifecycle_on_a_real_apiserver() {
    let Some(path) = kubeconfig() else { return };
    let client = admin_client(&path).await;
    install_crds(&client).await;
    let namespace = TestNamespace::create(&client, "lifecycle").await;
    let ns = namespace.name.clone();
    let mut controller = RunningController::start(&client, &ns);
    let clusters: Api<RocketCluster> = Api::namespaced(client.clone(), &ns);
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let budgets: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), &ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);

    let demo = cluster(
        "demo",
        serde_json::json!({
            "nameServer": {"replicas": 2},
            "brokerGroups": 2,
            "replicasPerGroup": 1,
            "storage": {"size": "2Gi", "storageClassName": "standard"},
            "brokerConfig": {"maxMessageSize": "1048576"}
        }),
    );
    let created = clusters
        .create(&PostParams::default(), &demo)
        .await
        .unwrap();
    let uid = created.uid().unwrap();

    // Everything exists with what the spec says, owned by the cluster.
    let group0 = wait_for(WAIT, "group 0's StatefulSet", || async {
        sets.get_opt("demo-broker-1").await.unwrap()?;
        sets.get_opt("demo-broker-0").await.unwrap()
    })
    .await;
    assert_eq!(group0.spec.replicas, Some(1));
    assert_eq!(
        group0
            .spec
            .update_strategy
            .as_ref()
            .unwrap()
            .type_
            .as_deref(),
        Some("OnDelete")
    );
    let claim = &group0.spec.volume_claim_templates.as_ref().unwrap()[0];
    let claim_spec = claim.spec.as_ref().unwrap();
    assert_eq!(
        claim_spec
            .resources
            .as_ref()
            .unwrap()
            .requests
            .as_ref()
            .unwrap()["storage"]
            .0,
        "2Gi"
    );
    assert_eq!(claim_spec.storage_class_name.as_deref(), Some("standard"));
    let name_server = sets.get("demo-namesrv").await.unwrap();
    assert_eq!(name_server.spec.replicas, Some(2));
    for name in [
        "demo-namesrv",
        "demo-namesrv-client",
        "demo-broker-0",
        "demo-broker-1",
    ] {
        let service = services.get(name).await.unwrap();
        assert_eq!(service.owner_references()[0].uid, uid, "{name} owner");
    }
    assert_eq!(
        services
            .get("demo-broker-0")
            .await
            .unwrap()
            .spec
            .unwrap()
            .cluster_ip
            .as_deref(),
        Some("None")
    );
    let config = config_maps.get("demo-broker-1-config").await.unwrap();
    assert_eq!(config.owner_references()[0].uid, uid);
    let conf = &config.data.unwrap()["demo-broker-1-0.conf"];
    for line in [
        "brokerClusterName=demo",
        "brokerName=demo-broker-1",
        "brokerId=0",
        &format!("brokerIP1=demo-broker-1-0.demo-broker-1.{ns}.svc.cluster.local"),
        &format!("namesrvAddr=demo-namesrv-0.demo-namesrv.{ns}.svc.cluster.local:9876;demo-namesrv-1.demo-namesrv.{ns}.svc.cluster.local:9876"),
        "listenPort=10911",
        "flushDiskType=ASYNC_FLUSH",
        "maxMessageSize=1048576",
    ] {
        assert!(conf.lines().any(|l| l == line), "{line} missing from\n{conf}");
    }
    let budget = budgets.get("demo-broker-0").await.unwrap();
    assert_eq!(budget.owner_references()[0].uid, uid);
    assert!(group0.owner_references()[0].controller == Some(true));

    // Status follows the pods, which only the test can make ready here.
    wait_condition(&clusters, "demo", "Ready", "False", "BrokersNotReady").await;
    wait_all_ready(&client, &ns, "demo", 2).await;
    let message = wait_condition(&clusters, "demo", "Ready", "True", "AllBrokersReady").await;
    println!("Ready: {message}");
    let status = clusters.get("demo").await.unwrap().status.unwrap();
    assert_eq!(status.ready_brokers.as_deref(), Some("2/2"));
    assert_eq!(status.broker_groups.len(), 2);
    assert!(status
        .conditions
        .iter()
        .all(|c| c.observed_generation == Some(1)));
    assert!(status
        .name_server_addresses
        .unwrap()
        .contains("demo-namesrv-1.demo-namesrv"));
    // A broker that stops being ready turns the cluster not Ready again.
    set_pod_ready(&pods, "demo-broker-0-0", false).await;
    wait_condition(&clusters, "demo", "Ready", "False", "BrokersNotReady").await;

    // Growing: 2 -> 3 groups, then 1 -> 3 brokers per group (a Raft group).
    patch_spec(&clusters, "demo", serde_json::json!({"brokerGroups": 3})).await;
    wait_for(WAIT, "group 2", || async {
        sets.get_opt("demo-broker-2").await.unwrap()
    })
    .await;
    wait_all_ready(&client, &ns, "demo", 3).await;
    patch_spec(
        &clusters,
        "demo",
        serde_json::json!({"replicasPerGroup": 3}),
    )
    .await;
    wait_for(WAIT, "3 replicas per group", || async {
        let set = sets.get("demo-broker-2").await.ok()?;
        (set.spec.replicas == Some(3)).then_some(())
    })
    .await;
    let raft = config_maps
        .get("demo-broker-0-config")
        .await
        .unwrap()
        .data
        .unwrap();
    assert_eq!(raft.len(), 3);
    assert!(raft["demo-broker-0-2.conf"].contains("dLegerSelfId=n2"));
    wait_all_ready(&client, &ns, "demo", 9).await;

    // A broker config change rolls one broker of the whole cluster at a time. No name server
    // runs here, so each fence is refused and the roll goes on unfenced, saying so in an event.
    let before: BTreeMap<String, String> = pods
        .list(&ListParams::default().labels(&broker_selector("demo")))
        .await
        .unwrap()
        .into_iter()
        .map(|pod| (pod.name_any(), pod.uid().unwrap()))
        .collect();
    assert_eq!(before.len(), 9);
    let template_hash = |set: StatefulSet| -> Option<String> {
        set.spec
            .template
            .metadata?
            .annotations?
            .get("rocketry.dev/config-hash")
            .cloned()
    };
    let mut old_hashes = BTreeMap::new();
    for group in 0..3 {
        let set = sets.get(&format!("demo-broker-{group}")).await.unwrap();
        old_hashes.insert(format!("demo-broker-{group}-"), template_hash(set).unwrap());
    }
    patch_spec(
        &clusters,
        "demo",
        serde_json::json!({"brokerConfig": {"maxMessageSize": "2097152"}}),
    )
    .await;
    // Each group has its own files, so its own hash; wait until every set carries the new one.
    let new_hashes: BTreeMap<String, String> = wait_for(WAIT, "the new config hashes", || async {
        let mut hashes = BTreeMap::new();
        for group in 0..3 {
            let name = format!("demo-broker-{group}");
            let config = config_maps
                .get(&format!("{name}-config"))
                .await
                .ok()?
                .data?;
            if !config[&format!("{name}-0.conf")].contains("maxMessageSize=2097152") {
                return None;
            }
            // The ConfigMap is applied just before its set: wait for the set's new hash too.
            let hash = template_hash(sets.get(&name).await.ok()?)?;
            if old_hashes[&format!("{name}-")] == hash {
                return None;
            }
            hashes.insert(format!("{name}-"), hash);
        }
        Some(hashes)
    })
    .await;
    let start = std::time::Instant::now();
    let most_unavailable = std::cell::Cell::new(0);
    wait_for(Duration::from_secs(180), "every broker rolled", || async {
        let list = pods
            .list(&ListParams::default().labels(&broker_selector("demo")))
            .await
            .ok()?
            .items;
        let up = list
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none() && pod_ready(p))
            .count();
        let unavailable = 9 - up;
        most_unavailable.set(most_unavailable.get().max(unavailable));
        assert!(
            unavailable <= 1,
            "{unavailable} brokers of the cluster down at once"
        );
        mark_all_ready(&pods, &broker_selector("demo")).await;
        let done = list.len() == 9
            && list.iter().all(|pod| {
                pod_ready(pod)
                    && new_hashes.iter().any(|(prefix, hash)| {
                        pod.name_any().starts_with(prefix)
                            && pod.annotations().get("rocketry.dev/config-hash") == Some(hash)
                    })
            });
        done.then_some(())
    })
    .await;
    println!("rolled 9 brokers in {:?}", start.elapsed());
    assert_eq!(most_unavailable.get(), 1, "the roll was never observed");
    let after = pods
        .list(&ListParams::default().labels(&broker_selector("demo")))
        .await
        .unwrap();
    for pod in &after {
        assert_ne!(
            Some(&pod.uid().unwrap()),
            before.get(&pod.name_any()),
            "{} was not replaced",
            pod.name_any()
        );
    }
    wait_all_ready(&client, &ns, "demo", 9).await;

    // A restarted operator finds nothing to change and writes nothing.
    controller.stop().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let converged = versions(&client, &ns, "demo").await;
    controller = RunningController::start(&client, &ns);
    wait_for(
        WAIT,
        "the restarted controller's first reconcile",
        || async { (controller.metrics.reconciles() >= 1).then_some(()) },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    controller.assert_no_failed_reconciles("the cluster's lifecycle");
    assert_eq!(
        converged,
        versions(&client, &ns, "demo").await,
        "a pass over a converged cluster wrote something"
    );
    println!(
        "restart wrote nothing: {} resourceVersions unchanged",
        converged.len()
    );

    // Deleting the cluster lets the garbage collector remove what it owned; the volumes stay
    // (reclaimPolicy Retain, the default).
    let claims_before = claims
        .list(&ListParams::default().labels(&broker_selector("demo")))
        .await
        .unwrap()
        .items
        .len();
    assert_eq!(claims_before, 9, "one claim per broker");
    clusters
        .delete("demo", &DeleteParams::default())
        .await
        .unwrap();
    wait_for(WAIT, "owned objects garbage-collected", || async {
        let params = ListParams::default().labels("app.kubernetes.io/instance=demo");
        let left = sets.list(&params).await.ok()?.items.len()
            + services.list(&params).await.ok()?.items.len()
            + config_maps.list(&params).await.ok()?.items.len()
            + budgets.list(&params).await.ok()?.items.len()
            + pods.list(&params).await.ok()?.items.len();
        (left == 0).then_some(())
    })
    .await;
    let kept = claims
        .list(&ListParams::default().labels(&broker_selector("demo")))
        .await
        .unwrap();
    assert_eq!(kept.items.len(), 9, "Retain keeps every claim");
    assert!(kept
        .items
        .iter()
        .all(|claim| claim.metadata.deletion_timestamp.is_none()));

    // With reclaimPolicy Delete the claims go with the cluster.
    let scratch = cluster(
        "scratch",
        serde_json::json!({"storage": {"size": "1Gi", "reclaimPolicy": "Delete"}}),
    );
    clusters
        .create(&PostParams::default(), &scratch)
        .await
        .unwrap();
    wait_for(WAIT, "scratch's claim owned by its StatefulSet", || async {
        let list = claims
            .list(&ListParams::default().labels(&broker_selector("scratch")))
            .await
            .ok()?;
        let claim = list.items.first()?;
        (!claim.owner_references().is_empty()).then_some(())
    })
    .await;
    clusters
        .delete("scratch", &DeleteParams::default())
        .await
        .unwrap();
    wait_for(WAIT, "scratch's claims deleted", || async {
        let list = claims
            .list(&ListParams::default().labels(&broker_selector("scratch")))
            .await
            .ok()?;
        list.items.is_empty().then_some(())
    })
    .await;

    controller.stop().await;
    namespace.delete().await;
}

#[tokio::test]
async fn invalid_specs_are_refused_with_a_readable_message() {
    let Some(path) = kubeconfig() else { return };
    let client = admin_client(&path).await;
    install_crds(&client).await;
    let namespace = TestNamespace::create(&client, "invalid").await;
    let clusters: Api<RocketCluster> = Api::namespaced(client.clone(), &namespace.name);
    // Raw JSON, so that values the Rust types could not even hold reach the apiserver.
    let cases = [
        (
            "even",
            serde_json::json!({"replicasPerGroup": 4}),
            "odd number",
        ),
        (
            "negative",
            serde_json::json!({"storage": {"size": "-1Gi"}}),
            "storage.size",
        ),
        (
            "flush",
            serde_json::json!({"flushDiskType": "SOMETIMES"}),
            "supported values",
        ),
        (
            "unknown",
            serde_json::json!({"brokerConfig": {"noSuchKey": "1"}}),
            "brokerConfig has a key Rocketry does not know",
        ),
        (
            "managed",
            serde_json::json!({"brokerConfig": {"brokerIP1": "1.2.3.4"}}),
            "brokerConfig has a key",
        ),
        (
            "groups",
            serde_json::json!({"brokerGroups": 0}),
            "brokerGroups",
        ),
    ];
    for (name, spec, expected) in cases {
        let mut full = serde_json::json!({"image": "rocketry:test", "storage": {"size": "1Gi"}});
        full.as_object_mut()
            .unwrap()
            .extend(spec.as_object().unwrap().clone());
        let object = serde_json::json!({
            "apiVersion": "rocketry.dev/v1alpha1", "kind": "RocketCluster",
            "metadata": {"name": name}, "spec": full
        });
        let dynamic: Api<kube::api::DynamicObject> = Api::namespaced_with(
            client.clone(),
            &namespace.name,
            &kube::api::ApiResource::erase::<RocketCluster>(&()),
        );
        let error = dynamic
            .create(
                &PostParams::default(),
                &serde_json::from_value(object).unwrap(),
            )
            .await
            .expect_err(&format!("{name} should be refused"));
        let message = error.to_string();
        println!("{name}: {message}");
        assert!(
            message.contains(expected),
            "{name}: expected '{expected}' in: {message}"
        );
    }
    // Once the cluster exists its volumes may grow and change reclaimPolicy, nothing else.
    clusters
        .create(
            &PostParams::default(),
            &cluster("fixed", serde_json::json!({})),
        )
        .await
        .unwrap();
    let storage_patch = |storage: serde_json::Value| {
        let clusters = clusters.clone();
        async move {
            clusters
                .patch(
                    "fixed",
                    &PatchParams::default(),
                    &Patch::Merge(serde_json::json!({"spec": {"storage": storage}})),
                )
                .await
        }
    };
    storage_patch(serde_json::json!({"size": "5Gi", "reclaimPolicy": "Delete"}))
        .await
        .expect("growing and a new reclaimPolicy are accepted");
    for (refused, expected) in [
        (
            serde_json::json!({"size": "2Gi"}),
            "storage.size can only grow",
        ),
        (
            serde_json::json!({"storageClassName": "other"}),
            "storage.storageClassName cannot change",
        ),
    ] {
        let error = storage_patch(refused.clone())
            .await
            .expect_err(&format!("{refused} should be refused"));
        println!("{refused}: {error}");
        assert!(error.to_string().contains(expected), "{error}");
    }
    namespace.delete().await;
}

#[tokio::test]
async fn scale_in_drains_unless_forced_and_pause_stops_reconciling() {
    let Some(path) = kubeconfig() else { return };
    let client = admin_client(&path).await;
    install_crds(&client).await;
    let namespace = TestNamespace::create(&client, "scalein").await;
    let ns = namespace.name.clone();
    let controller = RunningController::start(&client, &ns);
    let clusters: Api<RocketCluster> = Api::namespaced(client.clone(), &ns);
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    clusters
        .create(
            &PostParams::default(),
            &cluster("shrink", serde_json::json!({"brokerGroups": 3})),
        )
        .await
        .unwrap();
    wait_all_ready(&client, &ns, "shrink", 3).await;

    patch_spec(&clusters, "shrink", serde_json::json!({"brokerGroups": 2})).await;
    // No broker answers here, so its backlog stays unknown and the group is kept, draining.
    let message = wait_condition(
        &clusters,
        "shrink",
        "Progressing",
        "True",
        "DrainingBrokerGroups",
    )
    .await;
    println!("DrainingBrokerGroups: {message}");
    assert!(message.contains("shrink-broker-2 (backlog unknown)"));
    assert!(message.contains("rocketry.dev/force-scale-in"));
    let status = clusters.get("shrink").await.unwrap().status.unwrap();
    assert_eq!(status.phase.as_deref(), Some("Draining"));
    let draining = status
        .broker_groups
        .iter()
        .find(|group| group.name == "shrink-broker-2")
        .and_then(|group| group.draining.clone())
        .expect("group 2 shows its drain");
    assert_eq!(draining.backlog, None);
    assert_eq!(draining.since, None, "no name server took the fence");
    assert!(
        sets.get_opt("shrink-broker-2").await.unwrap().is_some(),
        "a group was removed without being drained"
    );

    let annotate = |key: &str, value: Option<&str>| serde_json::json!({"metadata": {"annotations": {key: value}}});
    clusters
        .patch(
            "shrink",
            &PatchParams::default(),
            &Patch::Merge(annotate("rocketry.dev/force-scale-in", Some("true"))),
        )
        .await
        .unwrap();
    wait_for(WAIT, "group 2 removed", || async {
        sets.get_opt("shrink-broker-2")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    wait_condition(&clusters, "shrink", "Degraded", "False", "AsExpected").await;

    // Paused: a spec change is not applied, and a condition says why.
    clusters
        .patch(
            "shrink",
            &PatchParams::default(),
            &Patch::Merge(annotate("rocketry.dev/paused", Some("true"))),
        )
        .await
        .unwrap();
    let message = wait_condition(&clusters, "shrink", "Progressing", "False", "Paused").await;
    assert!(message.contains("rocketry.dev/paused"));
    patch_spec(&clusters, "shrink", serde_json::json!({"brokerGroups": 3})).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        sets.get_opt("shrink-broker-2").await.unwrap().is_none(),
        "a paused cluster was reconciled"
    );
    clusters
        .patch(
            "shrink",
            &PatchParams::default(),
            &Patch::Merge(annotate("rocketry.dev/paused", None)),
        )
        .await
        .unwrap();
    wait_for(WAIT, "group 2 back after resuming", || async {
        sets.get_opt("shrink-broker-2").await.unwrap()
    })
    .await;

    controller.stop().await;
    namespace.delete().await;
}

#[tokio::test]
async fn only_one_replica_holds_the_leader_lease() {
    let Some(path) = kubeconfig() else { return };
    let client = admin_client(&path).await;
    let namespace = TestNamespace::create(&client, "lease").await;
    let duration = Duration::from_secs(3);
    let first = LeaseLock::new(
        client.clone(),
        &namespace.name,
        "rocketry-operator",
        "first",
        duration,
    );
    let second = LeaseLock::new(
        client.clone(),
        &namespace.name,
        "rocketry-operator",
        "second",
        duration,
    );
    assert!(first.try_acquire_or_renew().await.unwrap());
    assert!(
        !second.try_acquire_or_renew().await.unwrap(),
        "two holders at once"
    );
    assert!(
        first.try_acquire_or_renew().await.unwrap(),
        "the holder renews"
    );
    // The holder stops renewing: the lease expires and the standby takes it over.
    tokio::time::sleep(duration + Duration::from_secs(1)).await;
    assert!(second.try_acquire_or_renew().await.unwrap());
    assert!(!first.try_acquire_or_renew().await.unwrap());
    let lease = Api::<Lease>::namespaced(client.clone(), &namespace.name)
        .get("rocketry-operator")
        .await
        .unwrap();
    let spec = lease.spec.unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some("second"));
    assert_eq!(spec.lease_transitions, Some(1));
    // A holder that stops cleanly releases the lease: the standby takes it at once, well
    // within the lease's duration.
    first.release().await.unwrap();
    assert!(
        second.try_acquire_or_renew().await.unwrap(),
        "a non-holder released it"
    );
    second.release().await.unwrap();
    assert!(first.try_acquire_or_renew().await.unwrap());
    namespace.delete().await;
}

fn secret_text(secret: &Secret, key: &str) -> String {
    let bytes = &secret.data.as_ref().expect("data")[key].0;
    String::from_utf8(bytes.clone()).unwrap()
}

/// The cluster's ACL file as the operator wrote it: accessKey → (secretKey, admin).
async fn acl_accounts(
    secrets: &Api<Secret>,
    name: &str,
) -> Option<BTreeMap<String, (String, bool)>> {
    let secret = secrets.get_opt(name).await.unwrap()?;
    let file: serde_json::Value =
        serde_norway::from_str(&secret_text(&secret, "plain_acl.yml")).unwrap();
    Some(
        file["accounts"]
            .as_array()?
            .iter()
            .map(|account| {
                (
                    account["accessKey"].as_str().unwrap().to_string(),
                    (
                        account["secretKey"].as_str().unwrap().to_string(),
                        account["admin"].as_bool().unwrap(),
                    ),
                )
            })
            .collect(),
    )
}

async fn user_ready(users: &Api<RocketUser>, name: &str) -> Option<(String, String)> {
    let ready = users
        .get(name)
        .await
        .ok()?
        .status?
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Ready")?;
    Some((ready.status, ready.reason))
}

/// `spec.security` against the real apiserver: RocketUsers become the ACL Secret (a generated
/// secret, a secret from the user's own Secret, none for a user whose Secret is missing), the
/// operator's own credentials are made once and kept, the pods mount what their config names,
/// a deleted user leaves the file at once, and a missing or broken TLS Secret degrades the
/// cluster with the reason.
#[tokio::test]
async fn users_and_tls_of_a_secured_cluster_on_a_real_apiserver() {
    let Some(path) = kubeconfig() else { return };
    let client = admin_client(&path).await;
    install_crds(&client).await;
    let namespace = TestNamespace::create(&client, "security").await;
    let ns = namespace.name.clone();
    let controller = RunningController::start(&client, &ns);
    let clusters: Api<RocketCluster> = Api::namespaced(client.clone(), &ns);
    let users: Api<RocketUser> = Api::namespaced(client.clone(), &ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let user = |name: &str, spec: serde_json::Value| -> RocketUser {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "rocketry.dev/v1alpha1", "kind": "RocketUser",
            "metadata": {"name": name}, "spec": spec
        }))
        .unwrap()
    };
    let own: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "own-secret"}, "stringData": {"password": "own-secret-key"}
    }))
    .unwrap();
    secrets.create(&PostParams::default(), &own).await.unwrap();
    for made in [
        user(
            "app-orders",
            serde_json::json!({"cluster": "secure", "topicPerms": {"orders": "PUB|SUB"}}),
        ),
        user(
            "app-own",
            serde_json::json!({"cluster": "secure", "admin": true,
            "secretKeyRef": {"name": "own-secret", "key": "password"}}),
        ),
        user(
            "app-missing",
            serde_json::json!({"cluster": "secure",
            "secretKeyRef": {"name": "no-such-secret"}}),
        ),
        // Would stand in for the operator's own administrator account.
        user(
            "rocketry-operator",
            serde_json::json!({"cluster": "secure", "admin": true}),
        ),
    ] {
        users.create(&PostParams::default(), &made).await.unwrap();
    }
    clusters
        .create(
            &PostParams::default(),
            &cluster(
                "secure",
                serde_json::json!({"security": {
                    "acl": {"enabled": true},
                    "tls": {"mode": "Enforcing", "secretName": "secure-tls"}
                }}),
            ),
        )
        .await
        .unwrap();

    let accounts = wait_for(WAIT, "the ACL Secret with both users", || async {
        let accounts = acl_accounts(&secrets, "secure-acl").await?;
        (accounts.len() == 3).then_some(accounts)
    })
    .await;
    let operator = secrets.get("secure-operator-credentials").await.unwrap();
    assert_eq!(secret_text(&operator, "accessKey"), "rocketry-operator");
    let operator_secret = secret_text(&operator, "secretKey");
    assert_eq!(
        accounts["rocketry-operator"],
        (operator_secret.clone(), true)
    );
    let generated = secrets.get("app-orders").await.unwrap();
    assert_eq!(secret_text(&generated, "accessKey"), "app-orders");
    assert_eq!(secret_text(&generated, "secretKey").len(), 64);
    assert_eq!(
        accounts["app-orders"],
        (secret_text(&generated, "secretKey"), false)
    );
    assert_eq!(accounts["app-own"], ("own-secret-key".to_string(), true));
    assert!(!accounts.contains_key("app-missing"));
    wait_for(WAIT, "each user's Ready condition", || async {
        let states = (
            user_ready(&users, "app-orders").await?,
            user_ready(&users, "app-missing").await?,
            user_ready(&users, "rocketry-operator").await?,
        );
        (states
            == (
                ("True".to_string(), "InAcl".to_string()),
                ("False".to_string(), "SecretMissing".to_string()),
                ("False".to_string(), "ReservedName".to_string()),
            ))
            .then_some(())
    })
    .await;
    let status = users.get("app-orders").await.unwrap().status.unwrap();
    assert_eq!(status.secret_name.as_deref(), Some("app-orders"));

    // The brokers and name servers mount the two Secrets their config names.
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let broker_conf = config_maps.get("secure-broker-0-config").await.unwrap();
    let broker_conf = &broker_conf.data.unwrap()["secure-broker-0-0.conf"];
    for line in [
        "aclEnable=true",
        "aclFile=/etc/rocketry-acl/plain_acl.yml",
        "tls.server.mode=enforcing",
        "tls.enable=true",
    ] {
        assert!(
            broker_conf.lines().any(|l| l == line),
            "{line} not in\n{broker_conf}"
        );
    }
    let namesrv_conf = config_maps.get("secure-namesrv-config").await.unwrap();
    assert!(namesrv_conf.data.unwrap()["namesrv.conf"].contains("aclEnable=true"));
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    for set in ["secure-broker-0", "secure-namesrv"] {
        // The ConfigMaps are applied before the StatefulSets: wait for the set too.
        let found = wait_for(WAIT, "the StatefulSet", || async {
            sets.get_opt(set).await.ok().flatten()
        })
        .await;
        let pod = found.spec.template.spec.unwrap();
        let mounted: Vec<(String, String)> = pod
            .volumes
            .unwrap()
            .into_iter()
            .filter_map(|v| Some((v.name, v.secret?.secret_name?)))
            .collect();
        assert_eq!(
            mounted,
            [
                ("acl".to_string(), "secure-acl".to_string()),
                ("tls".to_string(), "secure-tls".to_string())
            ],
            "{set}"
        );
    }

    // The TLS Secret: missing, then not a certificate.
    let message = wait_condition(&clusters, "secure", "Degraded", "True", "TlsSecretMissing").await;
    assert!(message.contains("secure-tls"), "{message}");
    let broken: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "secure-tls"},
        "stringData": {"tls.crt": "not a certificate", "tls.key": "x", "ca.crt": "not one either"}
    }))
    .unwrap();
    secrets
        .create(&PostParams::default(), &broken)
        .await
        .unwrap();
    patch_spec(
        &clusters,
        "secure",
        serde_json::json!({"podAnnotations": {"touch": "1"}}),
    )
    .await;
    let message = wait_condition(&clusters, "secure", "Degraded", "True", "TlsSecretInvalid").await;
    assert!(message.contains("secure-tls"), "{message}");

    // A deleted user leaves the file at once (the watch on RocketUsers), its generated Secret
    // is collected with it, and the operator's own secret never changes.
    users
        .delete("app-orders", &DeleteParams::default())
        .await
        .unwrap();
    wait_for(WAIT, "app-orders gone from the ACL", || async {
        let accounts = acl_accounts(&secrets, "secure-acl").await?;
        (!accounts.contains_key("app-orders")).then_some(())
    })
    .await;
    wait_for(WAIT, "app-orders's Secret collected", || async {
        secrets
            .get_opt("app-orders")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    let operator = secrets.get("secure-operator-credentials").await.unwrap();
    assert_eq!(secret_text(&operator, "secretKey"), operator_secret);
    controller.assert_no_failed_reconciles("the secured cluster");

    controller.stop().await;
    namespace.delete().await;
}
