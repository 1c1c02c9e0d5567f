//! The Helm chart: lint, render, validate every rendered manifest against the Kubernetes
//! schemas, install into the Kubernetes peer, and run the controller under the chart's own
//! ServiceAccount (a TokenRequest token) to show its RBAC is enough, and no more.

mod support;

use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Pod, Secret, ServiceAccount};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::Client;
use operator::leader::LeaseLock;
use operator::{RocketCluster, RocketUser};
use support::*;

const RELEASE_NAMESPACE: &str = "rocketry-system";

async fn service_account_client(admin: &Client, path: &std::path::PathBuf, name: &str) -> Client {
    let accounts: Api<ServiceAccount> = Api::namespaced(admin.clone(), RELEASE_NAMESPACE);
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            audiences: None,
            expiration_seconds: Some(3600),
            ..TokenRequestSpec::default()
        }),
        ..TokenRequest::default()
    };
    let token = accounts
        .create_token_request(name, &PostParams::default(), &request)
        .await
        .expect("TokenRequest for the chart's ServiceAccount")
        .status
        .expect("a token")
        .token;
    let mut config = config(path).await;
    // Only the token: the admin's client certificate must not come along.
    config.auth_info = serde_json::from_value(serde_json::json!({ "token": token })).unwrap();
    Client::try_from(config).unwrap()
}

fn is_forbidden(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 403)
}

#[tokio::test]
async fn chart_lints_renders_valid_manifests_installs_and_its_rbac_suffices() {
    let Some(path) = kubeconfig() else { return };
    let started = std::time::Instant::now();
    // helm built from the module proxy lacks the Makefile's version stamps, so its default
    // Kubernetes version is v1.20; name the peer's version for offline rendering.
    peer(&[
        "helm",
        "lint",
        "--strict",
        "--kube-version",
        "v1.37.2",
        "charts/rocketry",
    ]);
    let rendered = peer(&[
        "helm",
        "template",
        "rocketry",
        "charts/rocketry",
        "--namespace",
        RELEASE_NAMESPACE,
        "--include-crds",
        "--kube-version",
        "v1.37.2",
    ]);
    for kind in [
        "kind: Deployment",
        "kind: ServiceAccount",
        "kind: ClusterRole",
        "kind: Role",
        "kind: CustomResourceDefinition",
    ] {
        assert!(rendered.contains(kind), "rendered chart lacks {kind}");
    }
    let with_monitor = peer(&[
        "helm",
        "template",
        "rocketry",
        "charts/rocketry",
        "--set",
        "serviceMonitor.enabled=true",
        "--kube-version",
        "v1.37.2",
    ]);
    assert!(with_monitor.contains("kind: ServiceMonitor"));
    let file = std::env::temp_dir().join(format!("rocketry-chart-{}.yaml", std::process::id()));
    std::fs::write(&file, &rendered).unwrap();
    let validated = peer(&[
        "kubernetes-validate",
        "--strict",
        "-k",
        "1.37.0",
        file.to_str().unwrap(),
    ]);
    std::fs::remove_file(&file).ok();
    println!("kubernetes-validate:\n{validated}");
    assert!(!validated.contains("ERROR"), "{validated}");

    let admin = admin_client(&path).await;
    let _ = std::process::Command::new(repo_root().join("scripts/peers/kubernetes"))
        .args([
            "helm",
            "uninstall",
            "rocketry",
            "--namespace",
            RELEASE_NAMESPACE,
        ])
        .output();
    peer(&[
        "helm",
        "install",
        "rocketry",
        "charts/rocketry",
        "--namespace",
        RELEASE_NAMESPACE,
        "--create-namespace",
    ]);
    let deployment: Deployment = Api::namespaced(admin.clone(), RELEASE_NAMESPACE)
        .get("rocketry")
        .await
        .unwrap();
    assert_eq!(
        deployment
            .spec
            .template
            .spec
            .unwrap()
            .service_account_name
            .as_deref(),
        Some("rocketry")
    );
    install_crds(&admin).await;

    // The controller, as the chart's ServiceAccount, reconciles a cluster without a denial.
    let operator_client = service_account_client(&admin, &path, "rocketry").await;
    let lease = LeaseLock::new(
        operator_client.clone(),
        RELEASE_NAMESPACE,
        "rocketry",
        "test",
        Duration::from_secs(15),
    );
    assert!(lease
        .try_acquire_or_renew()
        .await
        .expect("the Role allows the Lease"));
    let namespace = TestNamespace::create(&admin, "helm").await;
    let controller = RunningController::start(&operator_client, &namespace.name);
    let clusters: Api<RocketCluster> = Api::namespaced(admin.clone(), &namespace.name);
    let cluster: RocketCluster = serde_json::from_value(serde_json::json!({
        "apiVersion": "rocketry.dev/v1alpha1", "kind": "RocketCluster",
        "metadata": {"name": "rbac"},
        "spec": {"image": "rocketry:test", "brokerGroups": 2, "storage": {"size": "1Gi"},
                 "security": {"acl": {"enabled": true}}}
    }))
    .unwrap();
    // With the ACL on, the operator also reads users, generates their Secrets, writes the
    // ACL Secret and its own credentials, and writes the users' status.
    let users: Api<RocketUser> = Api::namespaced(admin.clone(), &namespace.name);
    let user: RocketUser = serde_json::from_value(serde_json::json!({
        "apiVersion": "rocketry.dev/v1alpha1", "kind": "RocketUser",
        "metadata": {"name": "rbac-app"},
        "spec": {"cluster": "rbac", "topicPerms": {"orders": "PUB"}}
    }))
    .unwrap();
    users.create(&PostParams::default(), &user).await.unwrap();
    clusters
        .create(&PostParams::default(), &cluster)
        .await
        .unwrap();
    let sets: Api<StatefulSet> = Api::namespaced(admin.clone(), &namespace.name);
    wait_for(
        Duration::from_secs(60),
        "the operator's StatefulSets",
        || async { sets.get_opt("rbac-broker-1").await.unwrap() },
    )
    .await;
    let pods: Api<Pod> = Api::namespaced(admin.clone(), &namespace.name);
    wait_for(
        Duration::from_secs(60),
        "the cluster Running under the chart's RBAC",
        || async {
            mark_all_ready(&pods, "app.kubernetes.io/instance=rbac").await;
            let status = clusters.get("rbac").await.ok()?.status?;
            (status.phase.as_deref() == Some("Running")).then_some(())
        },
    )
    .await;
    controller.assert_no_failed_reconciles("under the chart's RBAC");
    println!(
        "reconciled under the ServiceAccount: {}",
        controller
            .metrics
            .render()
            .lines()
            .filter(|l| l.starts_with("rocketry_operator_reconciles_total"))
            .collect::<Vec<_>>()
            .join("; ")
    );

    let ready = users
        .get("rbac-app")
        .await
        .unwrap()
        .status
        .unwrap_or_default()
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status);
    assert_eq!(
        ready.as_deref(),
        Some("True"),
        "the user's status was not written"
    );

    // Its events were written too (a denied event would only be logged, not fail a reconcile).
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(admin.clone(), &namespace.name);
    let written = events.list(&ListParams::default()).await.unwrap().items;
    assert!(
        written
            .iter()
            .any(|event| event.reporting_controller.as_deref() == Some("rocketry-operator")),
        "no event from the operator"
    );

    // Verbs it does not need are denied.
    let secrets: Api<Secret> = Api::namespaced(operator_client.clone(), &namespace.name);
    let denied = secrets
        .delete("rbac-app", &DeleteParams::default())
        .await
        .expect_err("deleting a secret must be denied");
    assert!(is_forbidden(&denied), "{denied}");
    let as_operator: Api<RocketCluster> = Api::namespaced(operator_client.clone(), &namespace.name);
    let denied = as_operator
        .delete("rbac", &DeleteParams::default())
        .await
        .expect_err("deleting a cluster must be denied");
    assert!(is_forbidden(&denied), "{denied}");
    println!("denied as expected: {denied}");

    controller.stop().await;
    clusters
        .delete("rbac", &DeleteParams::default())
        .await
        .unwrap();
    peer(&[
        "helm",
        "uninstall",
        "rocketry",
        "--namespace",
        RELEASE_NAMESPACE,
    ]);
    namespace.delete().await;
    println!("chart test took {:?}", started.elapsed());
}
