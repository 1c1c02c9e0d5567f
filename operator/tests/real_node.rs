//! The test ground's real node: the broker image built here (scripts/image) runs as a
//! StatefulSet pod with a claim, a client pod of the client image sends and reads 1,000
//! messages through the broker's stable DNS name, and the broker's replacement pod serves the
//! same messages from the same volume. Everything goes through the real kubelet, containerd,
//! CNI, CoreDNS and scheduler that `scripts/peers/kubernetes start` runs.

mod support;

use std::time::{Duration, Instant};

use support::*;

const TIMEOUT: &str = "240s";
/// What a pod needs to run on the test ground's node (its taint). JSON, which is YAML too.
const TOLERATIONS: &str =
    r#"[{"key":"rocketry.dev/real-node","operator":"Exists","effect":"NoSchedule"}]"#;

fn kubectl(args: &[&str]) -> String {
    let mut all = vec!["kubectl"];
    all.extend_from_slice(args);
    peer(&all)
}

/// One field of an object, by kubectl's jsonpath; empty when the object does not exist.
fn field(namespace: &str, object: &str, path: &str) -> String {
    kubectl(&[
        "get",
        object,
        "-n",
        namespace,
        "-o",
        &format!("jsonpath={path}"),
        "--ignore-not-found",
    ])
}

/// Polls `check` every second until it answers, failing with `failure()` after `limit`.
fn poll<T>(
    limit: Duration,
    failure: impl Fn() -> String,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(start.elapsed() < limit, "{}", failure());
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// A fresh namespace that enforces Pod Security "restricted", as every pod here must pass it.
fn restricted_namespace(name: &str) {
    kubectl(&["delete", "namespace", name, "--ignore-not-found", "--wait"]);
    apply(
        "default",
        &format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n  labels: {{pod-security.kubernetes.io/enforce: restricted}}\n"
        ),
    );
}

fn images() -> (String, String) {
    let output = std::process::Command::new(repo_root().join("scripts/image"))
        .arg("names")
        .output()
        .expect("runs scripts/image");
    let names = String::from_utf8(output.stdout).unwrap();
    let mut names = names.split_whitespace().map(str::to_string);
    (names.next().unwrap(), names.next().unwrap())
}

fn broker_manifest(namespace: &str, image: &str) -> String {
    let host = format!("bk-0.bk.{namespace}.svc.cluster.local");
    format!(
        r#"
apiVersion: v1
kind: ConfigMap
metadata: {{name: bk}}
data:
  broker.conf: |
    bindAddress=0.0.0.0
    brokerIP1={host}
---
apiVersion: v1
kind: Service
metadata: {{name: bk}}
spec:
  clusterIP: None
  selector: {{app: bk}}
  ports: [{{name: namesrv, port: 9876}}, {{name: broker, port: 10911}}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {{name: bk}}
spec:
  serviceName: bk
  replicas: 1
  selector: {{matchLabels: {{app: bk}}}}
  template:
    metadata: {{labels: {{app: bk}}}}
    spec:
      tolerations: {TOLERATIONS}
      securityContext:
        runAsNonRoot: true
        runAsUser: 10001
        runAsGroup: 10001
        seccompProfile: {{type: RuntimeDefault}}
      containers:
      - name: broker
        image: {image}
        imagePullPolicy: Never
        args: [standalone, --config, /etc/rocketry/broker.conf, --data-dir, /var/lib/rocketry/store]
        ports: [{{containerPort: 9876}}, {{containerPort: 10911}}]
        readinessProbe:
          tcpSocket: {{port: 10911}}
          periodSeconds: 2
        securityContext:
          readOnlyRootFilesystem: true
          allowPrivilegeEscalation: false
          capabilities: {{drop: [ALL]}}
        volumeMounts:
        - {{name: data, mountPath: /var/lib/rocketry/store}}
        - {{name: config, mountPath: /etc/rocketry}}
      volumes:
      - name: config
        configMap: {{name: bk}}
  volumeClaimTemplates:
  - metadata: {{name: data}}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {{requests: {{storage: 1Gi}}}}
"#
    )
}

/// A client pod running the Java harness (Features.java) to completion; returns its RESULT.
fn client_pod(namespace: &str, image: &str, name: &str, args: &[String]) -> serde_json::Value {
    let args = serde_json::to_string(args).unwrap();
    let manifest = format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  restartPolicy: Never
  tolerations: {TOLERATIONS}
  securityContext: {{runAsNonRoot: true, runAsUser: 10001, seccompProfile: {{type: RuntimeDefault}}}}
  containers:
  - name: client
    image: {image}
    imagePullPolicy: Never
    args: {args}
    securityContext: {{allowPrivilegeEscalation: false, capabilities: {{drop: [ALL]}}}}
"#
    );
    apply(namespace, &manifest);
    let pod = format!("pod/{name}");
    poll(
        Duration::from_secs(240),
        || format!("client pod {name} not done after 240 s"),
        || match field(namespace, &pod, "{.status.phase}").as_str() {
            "Succeeded" => Some(()),
            "Failed" => panic!(
                "client pod {name} failed:\n{}",
                kubectl(&["logs", name, "-n", namespace])
            ),
            _ => None,
        },
    );
    let logs = kubectl(&["logs", name, "-n", namespace]);
    let line = logs
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("RESULT "))
        .unwrap_or_else(|| panic!("no RESULT from {name}:\n{logs}"));
    println!("{name}: {line}");
    serde_json::from_str(line).unwrap()
}

fn apply(namespace: &str, manifest: &str) {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), manifest).unwrap();
    kubectl(&[
        "apply",
        "-n",
        namespace,
        "-f",
        file.path().to_str().unwrap(),
    ]);
}

fn wait_ready(namespace: &str, pod: &str) {
    kubectl(&[
        "wait",
        "-n",
        namespace,
        "--for=condition=Ready",
        &format!("pod/{pod}"),
        &format!("--timeout={TIMEOUT}"),
    ]);
}

/// A producer pod sends 1,000 messages of `run` to topic `smoke`.
fn produce(namespace: &str, image: &str, namesrv: &str, run: &str) {
    let sent = client_pod(
        namespace,
        image,
        "producer",
        &[
            "dev.rocketry.harness.Features".into(),
            "produce".into(),
            format!("namesrv={namesrv}"),
            "topic=smoke".into(),
            "count=1000".into(),
            format!("run={run}"),
        ],
    );
    assert_eq!(sent["sent"], 1000, "{sent}");
}

fn consume(namespace: &str, image: &str, pod: &str, namesrv: &str, run: &str) -> serde_json::Value {
    client_pod(
        namespace,
        image,
        pod,
        &[
            "dev.rocketry.harness.Features".into(),
            "consume".into(),
            format!("namesrv={namesrv}"),
            "topic=smoke".into(),
            format!("group={pod}"),
            format!("run={run}"),
            "out=/tmp/deliveries".into(),
            "expect=1000".into(),
            "timeoutMs=90000".into(),
        ],
    )
}

#[test]
fn the_broker_image_runs_on_the_real_node_and_keeps_its_messages_across_pods() {
    if kubeconfig().is_none() {
        return;
    }
    let (broker_image, client_image) = images();
    let namespace = format!("smoke-{}", std::process::id() % 100_000);
    restricted_namespace(&namespace);

    apply(&namespace, &broker_manifest(&namespace, &broker_image));
    wait_ready(&namespace, "bk-0");

    // The pod runs as the image's user, on a read-only root, and `kubectl exec` reaches it.
    assert_eq!(
        kubectl(&["exec", "-n", &namespace, "bk-0", "--", "id", "-u"]).trim(),
        "10001"
    );
    let read_only = std::process::Command::new(repo_root().join("scripts/peers/kubernetes"))
        .args(["kubectl", "exec", "-n", &namespace, "bk-0", "--"])
        .args(["touch", "/var/lib/rocketry/written"])
        .output()
        .unwrap();
    assert!(
        !read_only.status.success()
            && String::from_utf8_lossy(&read_only.stderr).contains("Read-only file system"),
        "the root file system is writable: {read_only:?}"
    );
    assert!(kubectl(&["logs", "-n", &namespace, "bk-0"]).contains("Rocketry standalone is ready"));

    let namesrv = format!("bk-0.bk.{namespace}.svc.cluster.local:9876");
    let run = format!("smoke{}", std::process::id());
    produce(&namespace, &client_image, &namesrv, &run);
    let first = consume(&namespace, &client_image, "consumer-1", &namesrv, &run);
    assert_eq!(first["unique"], 1000, "{first}");

    // The replacement pod mounts the same claim and serves the same messages.
    let uid_before = field(&namespace, "pod/bk-0", "{.metadata.uid}");
    kubectl(&["delete", "pod", "bk-0", "-n", &namespace, "--wait"]);
    poll(
        Duration::from_secs(120),
        || "no replacement for bk-0".to_string(),
        || {
            let uid = field(&namespace, "pod/bk-0", "{.metadata.uid}");
            (!uid.is_empty() && uid != uid_before).then_some(())
        },
    );
    wait_ready(&namespace, "bk-0");
    let status = kubectl(&[
        "exec", "-n", &namespace, "bk-0", "--", "rocketry", "admin", "--output", "json", "topic",
        "status", "--topic", "smoke",
    ]);
    let queues: Vec<serde_json::Value> = serde_json::from_str(&status).unwrap();
    let stored: u64 = queues
        .iter()
        .map(|q| q["max_offset"].as_str().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(stored, 1000, "topic status after the restart: {status}");
    let second = consume(&namespace, &client_image, "consumer-2", &namesrv, &run);
    assert_eq!(second["unique"], 1000, "{second}");

    kubectl(&["delete", "namespace", &namespace, "--wait=false"]);
}

/// The chart's operator runs as a pod on the node (its ServiceAccount token, in-cluster
/// config through the `kubernetes` Service, leader election), and a RocketCluster it makes in
/// a namespace that enforces Pod Security "restricted" reaches Running and carries messages.
#[test]
fn the_charts_operator_runs_a_cluster_in_a_restricted_namespace() {
    if kubeconfig().is_none() {
        return;
    }
    let (broker_image, client_image) = images();
    restricted_namespace("rocketry-system");
    peer(&[
        "helm",
        "upgrade",
        "--install",
        "rocketry",
        "charts/rocketry",
        "--namespace",
        "rocketry-system",
        "--set",
        "image.pullPolicy=Never",
        "--set-json",
        &format!("tolerations={TOLERATIONS}"),
        "--wait",
        "--timeout",
        TIMEOUT,
    ]);

    let namespace = format!("e2e-{}", std::process::id() % 100_000);
    restricted_namespace(&namespace);
    apply(
        &namespace,
        &format!(
            r#"
apiVersion: rocketry.dev/v1alpha1
kind: RocketCluster
metadata: {{name: e2e}}
spec:
  image: {broker_image}
  imagePullPolicy: Never
  nameServer: {{replicas: 1}}
  brokerGroups: 1
  replicasPerGroup: 1
  storage: {{size: 1Gi, reclaimPolicy: Delete}}
  tolerations: {TOLERATIONS}
"#
        ),
    );
    poll(
        Duration::from_secs(300),
        || {
            format!(
                "cluster not Running after 300 s:\n{}\n{}",
                kubectl(&["get", "rocketcluster,pods,events", "-n", &namespace]),
                kubectl(&[
                    "logs",
                    "-n",
                    "rocketry-system",
                    "deployment/rocketry",
                    "--tail=40"
                ])
            )
        },
        || (field(&namespace, "rocketcluster/e2e", "{.status.phase}") == "Running").then_some(()),
    );
    let namesrv = field(
        &namespace,
        "rocketcluster/e2e",
        "{.status.nameServerAddresses}",
    );
    println!("Running; name servers {namesrv}");
    let run = format!("e2e{}", std::process::id());
    produce(&namespace, &client_image, &namesrv, &run);
    let got = consume(&namespace, &client_image, "consumer", &namesrv, &run);
    assert_eq!(got["unique"], 1000, "{got}");

    kubectl(&["delete", "namespace", &namespace, "--wait=false"]);
    peer(&[
        "helm",
        "uninstall",
        "rocketry",
        "--namespace",
        "rocketry-system",
    ]);
}
