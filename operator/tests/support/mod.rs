//! Reaches the Kubernetes peer that `scripts/peers/kubernetes start` runs (a real etcd,
//! kube-apiserver and kube-controller-manager, no scheduler or kubelet) and gives each test a
//! namespace of its own, the CRDs, and an in-process controller.

#![allow(dead_code)] // each test binary uses a different part of this module

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config, ResourceExt};
use operator::metrics::Metrics;
use operator::Context;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs a verb of the Kubernetes peer script (helm, kubectl, kubernetes-validate) and returns
/// stdout, failing the test with its output when it fails.
pub fn peer(args: &[&str]) -> String {
    let output = std::process::Command::new(repo_root().join("scripts/peers/kubernetes"))
        .args(args)
        .current_dir(repo_root())
        .output()
        .expect("runs scripts/peers/kubernetes");
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        output.status.success(),
        "{args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// The admin kubeconfig of the Kubernetes peer, if `scripts/test` started it.
///
/// Tests that need the peer print `SKIPPED: <reason>` and return when it is absent, so a plain
/// `cargo test` still says what it did not run.
pub fn kubeconfig() -> Option<PathBuf> {
    match std::env::var("ROCKETRY_PEER_KUBECONFIG") {
        Ok(path) if !path.is_empty() => Some(PathBuf::from(path)),
        _ => {
            println!("SKIPPED: ROCKETRY_PEER_KUBECONFIG is not set (run scripts/test, which starts the Kubernetes peer)");
            None
        }
    }
}

pub async fn config(path: &PathBuf) -> Config {
    let kubeconfig = Kubeconfig::read_from(path).expect("readable kubeconfig");
    Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("valid kubeconfig")
}

pub async fn admin_client(path: &PathBuf) -> Client {
    Client::try_from(config(path).await).expect("client")
}

/// Polls `check` until it returns `Some`, failing with `what` after `timeout`.
pub async fn wait_for<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Applies every CRD under `crds/` and waits until the apiserver serves them.
pub async fn install_crds(client: &Client) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for entry in std::fs::read_dir(repo_root().join("crds")).expect("crds/ exists") {
        let path = entry.unwrap().path();
        let crd: CustomResourceDefinition =
            serde_norway::from_str(&std::fs::read_to_string(&path).unwrap()).expect("a CRD");
        let name = crd.name_any();
        api.patch(
            &name,
            &PatchParams::apply("rocketry-tests").force(),
            &Patch::Apply(&crd),
        )
        .await
        .expect("CRD applies");
        wait_for(Duration::from_secs(30), "the CRD to be established", || {
            let api = api.clone();
            let name = name.clone();
            async move {
                let crd = api.get(&name).await.ok()?;
                let established = crd
                    .status?
                    .conditions?
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True");
                established.then_some(())
            }
        })
        .await;
    }
}

/// A fresh namespace named after the test; deleted again by `TestNamespace::delete`.
pub struct TestNamespace {
    pub name: String,
    client: Client,
}

impl TestNamespace {
    pub async fn create(client: &Client, prefix: &str) -> Self {
        let name = format!("{prefix}-{}", std::process::id() % 100_000);
        let api: Api<Namespace> = Api::all(client.clone());
        // The apiserver's PodSecurity admission refuses any pod of the cluster that is not
        // "restricted", so every test here also checks the pods the operator makes.
        let namespace: Namespace = serde_json::from_value(serde_json::json!({"metadata": {
            "name": name,
            "labels": {"pod-security.kubernetes.io/enforce": "restricted"},
        }}))
        .unwrap();
        if api.get_opt(&name).await.unwrap().is_some() {
            api.delete(&name, &DeleteParams::default()).await.unwrap();
            wait_for(Duration::from_secs(60), "an old namespace to go", || {
                let api = api.clone();
                let name = name.clone();
                async move { api.get_opt(&name).await.unwrap().is_none().then_some(()) }
            })
            .await;
        }
        api.create(&PostParams::default(), &namespace)
            .await
            .expect("namespace");
        TestNamespace {
            name,
            client: client.clone(),
        }
    }

    pub async fn delete(self) {
        let api: Api<Namespace> = Api::all(self.client.clone());
        let _ = api.delete(&self.name, &DeleteParams::default()).await;
    }
}

/// A controller running in this process over one namespace, as the operator binary runs it.
pub struct RunningController {
    pub metrics: Metrics,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl RunningController {
    pub fn start(client: &Client, namespace: &str) -> Self {
        // The operator's warnings (a failed reconcile and why) go to the test's output, which
        // a failing test prints.
        let _ = tracing_subscriber::fmt()
            .with_env_filter("operator=warn")
            .with_test_writer()
            .try_init();
        let metrics = Metrics::default();
        let context = Arc::new(Context::new(
            client.clone(),
            metrics.clone(),
            Some("test".to_string()),
        ));
        let (stop, stopped) = oneshot::channel::<()>();
        let namespace = namespace.to_string();
        let task = tokio::spawn(async move {
            operator::run(context, Some(&namespace), async move {
                let _ = stopped.await;
            })
            .await;
        });
        RunningController {
            metrics,
            stop,
            task,
        }
    }

    /// Fails the test if any reconcile failed, with the failure counts by kind (the
    /// warnings saying why are in the test's output above).
    pub fn assert_no_failed_reconciles(&self, context: &str) {
        assert_eq!(
            self.metrics.failures(),
            0,
            "{context}: a reconcile failed (its warnings are above):\n{}",
            self.metrics.render()
        );
    }

    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(20), self.task).await;
    }
}

pub use operator::controller::pod_ready;

/// Marks a pod Ready (or not) the way a kubelet would, since no kubelet runs here.
pub async fn set_pod_ready(pods: &Api<Pod>, name: &str, ready: bool) {
    let status = if ready { "True" } else { "False" };
    let patch = serde_json::json!({"status": {
        "phase": "Running",
        "conditions": [
            {"type": "Ready", "status": status},
            {"type": "ContainersReady", "status": status},
            {"type": "PodScheduled", "status": "True"}
        ]
    }});
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap_or_else(|error| panic!("marking {name} ready: {error}"));
}

/// Marks every pod matching `selector` ready; returns how many there were.
pub async fn mark_all_ready(pods: &Api<Pod>, selector: &str) -> usize {
    let list = pods
        .list(&ListParams::default().labels(selector))
        .await
        .unwrap();
    for pod in &list.items {
        if !pod_ready(pod) && pod.metadata.deletion_timestamp.is_none() {
            set_pod_ready(pods, &pod.name_any(), true).await;
        }
    }
    list.items.len()
}
