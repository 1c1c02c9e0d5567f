//! The test ground's real node: the broker image built here (scripts/image) runs as a
//! StatefulSet pod with a claim, a client pod of the client image sends and reads 1,000
//! messages through the broker's stable DNS name, and the broker's replacement pod serves the
//! same messages from the same volume. Everything goes through the real kubelet, containerd,
//! CNI, CoreDNS and scheduler that `scripts/peers/kubernetes start` runs.

mod support;

use std::collections::BTreeMap;
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
        ports: [{{containerPort: 9876}}, {{containerPort: 10911}}, {{containerPort: 5557}}]
        # Ready once the broker registered (with its topics) in its name server: an open port
        # came earlier, and a replacement pod then had no route for the topic yet.
        readinessProbe:
          httpGet: {{path: /readyz, port: 5557}}
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

/// Starts a client pod running the Java harness (Features.java).
fn start_client(namespace: &str, image: &str, name: &str, args: &[String]) {
    start_java_client(namespace, image, name, args, "");
}

/// Starts a client pod whose JVM takes `java_options` (system properties such as the
/// client's `-Dtls.enable=true`).
fn start_java_client(
    namespace: &str,
    image: &str,
    name: &str,
    args: &[String],
    java_options: &str,
) {
    let args = serde_json::to_string(args).unwrap();
    let java_options = serde_json::to_string(java_options).unwrap();
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
    env: [{{name: JAVA_TOOL_OPTIONS, value: {java_options}}}]
    securityContext: {{allowPrivilegeEscalation: false, capabilities: {{drop: [ALL]}}}}
"#
    );
    apply(namespace, &manifest);
}

/// Waits for a client pod to finish and returns its RESULT.
fn client_result(namespace: &str, name: &str, limit: Duration) -> serde_json::Value {
    let pod = format!("pod/{name}");
    poll(
        limit,
        || format!("client pod {name} not done after {limit:?}"),
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

/// A client pod run to completion; returns its RESULT.
fn client_pod(namespace: &str, image: &str, name: &str, args: &[String]) -> serde_json::Value {
    start_client(namespace, image, name, args);
    client_result(namespace, name, Duration::from_secs(240))
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

/// The client's own requests (route lookups, heartbeats) may take 10 s in every pod that must
/// not fail, not the client's default 3 s. A new pod's JVM starts cold on two cores shared
/// with the other real-node test, and in three fresh-clone CI runs the first two route
/// lookups of a new producer pod timed out: opening the name server's channel took 0.9 to
/// 2.9 s, and the answer did not come in what was left of 3 s. In a fourth, a consumer's start
/// failed with "send request failed": the client closes a channel when a request on it times
/// out, and the start's lookup shares the channel with the client's scheduled one.
const COLD_API_TIMEOUT: &str = "apiTimeoutMs=10000";

/// Client settings of producers that must send every message: each send may take 10 s too,
/// as a route lookup is bounded by the API timeout, not the send's. Producers whose failures
/// are counted rather than refused keep the send's default.
const COLD_CLIENT_TIMEOUTS: [&str; 2] = ["sendTimeoutMs=10000", COLD_API_TIMEOUT];

/// A producer's arguments with [`COLD_CLIENT_TIMEOUTS`] added.
fn with_cold_timeouts(mut args: Vec<String>) -> Vec<String> {
    args.extend(COLD_CLIENT_TIMEOUTS.map(String::from));
    args
}

/// A producer pod sends `count` messages of `run` to `topic`, with [`COLD_CLIENT_TIMEOUTS`].
fn produce(
    namespace: &str,
    image: &str,
    pod: &str,
    namesrv: &str,
    topic: &str,
    run: &str,
    count: u64,
) {
    let sent = client_pod(
        namespace,
        image,
        pod,
        &with_cold_timeouts(vec![
            "dev.rocketry.harness.Features".into(),
            "produce".into(),
            format!("namesrv={namesrv}"),
            format!("topic={topic}"),
            format!("count={count}"),
            format!("run={run}"),
        ]),
    );
    assert_eq!(sent["sent"], count, "{sent}");
}

/// A consumer pod of group `pod` reads `topic` until it has every message of `run` with index
/// below `verify` (but those in `skip`), or goes idle for 40 s (generous for a loaded node:
/// only a run with `skip` waits it out when it passes), with [`COLD_API_TIMEOUT`]; returns its
/// RESULT with `missing`.
fn consume_all(
    namespace: &str,
    image: &str,
    pod: &str,
    namesrv: &str,
    (topic, run): (&str, &str),
    verify: u64,
    skip: &str,
) -> serde_json::Value {
    client_pod(
        namespace,
        image,
        pod,
        &[
            "dev.rocketry.harness.Features".into(),
            "consume".into(),
            format!("namesrv={namesrv}"),
            format!("topic={topic}"),
            format!("group={pod}"),
            format!("run={run}"),
            "out=/tmp/deliveries".into(),
            format!("expect={verify}"),
            format!("verify={verify}"),
            format!("skip={skip}"),
            "idleMs=40000".into(),
            "timeoutMs=180000".into(),
            COLD_API_TIMEOUT.into(),
        ],
    )
}

fn consume(namespace: &str, image: &str, pod: &str, namesrv: &str, run: &str) -> serde_json::Value {
    consume_all(namespace, image, pod, namesrv, ("smoke", run), 1000, "")
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
    produce(
        &namespace,
        &client_image,
        "producer",
        &namesrv,
        "smoke",
        &run,
        1000,
    );
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

/// The items `kubectl get <args> -o json` lists.
fn items(args: &[&str]) -> Vec<serde_json::Value> {
    let mut command = vec!["get"];
    command.extend_from_slice(args);
    command.extend(["-o", "json"]);
    let list: serde_json::Value = serde_json::from_str(&kubectl(&command)).unwrap();
    list["items"].as_array().unwrap().clone()
}

/// A broker pod of the cluster as `kubectl get pods -o json` shows it.
struct BrokerPod {
    name: String,
    uid: String,
    up: bool,
}

fn broker_pods(namespace: &str) -> Vec<BrokerPod> {
    items(&[
        "pods",
        "-n",
        namespace,
        "-l",
        "app.kubernetes.io/component=broker",
    ])
    .iter()
    .map(|pod| {
        let ready = pod["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True");
        BrokerPod {
            name: pod["metadata"]["name"].as_str().unwrap().to_string(),
            uid: pod["metadata"]["uid"].as_str().unwrap().to_string(),
            up: ready && pod["metadata"]["deletionTimestamp"].is_null(),
        }
    })
    .collect()
}

fn wait_phase(namespace: &str, phase: &str, limit: Duration) {
    poll(
        limit,
        || {
            format!(
                "cluster not {phase} after {limit:?}:\n{}\n{}",
                kubectl(&["get", "rocketcluster,pods,events", "-n", namespace]),
                kubectl(&[
                    "logs",
                    "-n",
                    "rocketry-system",
                    "deployment/rocketry",
                    "--tail=40"
                ])
            )
        },
        || (field(namespace, "rocketcluster/demo", "{.status.phase}") == phase).then_some(()),
    );
}

/// The namespace's events of one reason.
fn events(namespace: &str, reason: &str) -> String {
    kubectl(&[
        "get",
        "events",
        "-n",
        namespace,
        "--field-selector",
        &format!("reason={reason}"),
    ])
}

/// How many events of one reason the namespace had: the events API folds repeats of a
/// reason on one object into a series, which `kubectl get events` prints as one line.
fn event_count(namespace: &str, reason: &str) -> u64 {
    items(&[
        "events",
        "-n",
        namespace,
        "--field-selector",
        &format!("reason={reason}"),
    ])
    .iter()
    .map(|event| {
        event["series"]["count"]
            .as_u64()
            .or(event["count"].as_u64())
            .unwrap_or(1)
    })
    .sum()
}

/// The cluster as YAML, for a failure message.
fn cluster_yaml(namespace: &str) -> String {
    kubectl(&[
        "get",
        "rocketcluster",
        "demo",
        "-n",
        namespace,
        "-o",
        "yaml",
    ])
}

fn patch_cluster(namespace: &str, spec: serde_json::Value) {
    kubectl(&[
        "patch",
        "rocketcluster",
        "demo",
        "-n",
        namespace,
        "--type",
        "merge",
        "-p",
        &serde_json::json!({ "spec": spec }).to_string(),
    ]);
}

/// SIGKILL to a pod's first container through the container runtime, as a crash.
fn kill_container(namespace: &str, pod: &str) {
    let id = field(
        namespace,
        &format!("pod/{pod}"),
        "{.status.containerStatuses[0].containerID}",
    );
    let id = id
        .strip_prefix("containerd://")
        .expect("a containerd container");
    peer(&["ctr", "-n", "k8s.io", "task", "kill", "-s", "SIGKILL", id]);
}

fn lease_holder() -> String {
    field(
        "rocketry-system",
        "lease/rocketry",
        "{.spec.holderIdentity}",
    )
}

/// The Secret `secure-tls` in cert-manager's layout (`tls.crt`, `tls.key`, `ca.crt`): a CA
/// made with the openssl command line, and a certificate it signed for the secured cluster's
/// pods' DNS names.
fn tls_secret(namespace: &str) {
    let dir = tempfile::tempdir().unwrap();
    let names = format!(
        "subjectAltName=DNS:*.secure-namesrv.{namespace}.svc.cluster.local,DNS:*.secure-broker-0.{namespace}.svc.cluster.local\nextendedKeyUsage=serverAuth,clientAuth\n"
    );
    std::fs::write(dir.path().join("ext"), names).unwrap();
    let script = "openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 2 -subj /CN=e2e-ca \
        && openssl req -newkey rsa:2048 -nodes -keyout tls.key -out tls.csr -subj /CN=secure \
        && openssl x509 -req -in tls.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out tls.crt -days 2 -extfile ext";
    let made = std::process::Command::new("sh")
        .args(["-c", script])
        .current_dir(dir.path())
        .output()
        .expect("openssl is installed");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let file = |name: &str| format!("--from-file={name}={}", dir.path().join(name).display());
    kubectl(&[
        "create",
        "secret",
        "generic",
        "secure-tls",
        "-n",
        namespace,
        &file("tls.crt"),
        &file("tls.key"),
        &file("ca.crt"),
    ]);
}

/// An ACL-enabled cluster of one broker that speaks TLS only, and one RocketUser with a
/// generated secret that may send to `orders`.
fn secure_cluster_manifest(image: &str) -> String {
    format!(
        r#"
apiVersion: rocketry.dev/v1alpha1
kind: RocketUser
metadata: {{name: orders-app}}
spec:
  cluster: secure
  topicPerms: {{orders: PUB}}
---
apiVersion: rocketry.dev/v1alpha1
kind: RocketCluster
metadata: {{name: secure}}
spec:
  image: {image}
  imagePullPolicy: Never
  storage: {{size: 1Gi}}
  # Each refused send below is tried three times; answer every refusal at once.
  brokerConfig: {{aclFreeAuthenticationFailures: "100000"}}
  security:
    acl: {{enabled: true}}
    tls: {{mode: Enforcing, secretName: secure-tls}}
  tolerations: {TOLERATIONS}
"#
    )
}

/// A producer pod signing as `access_key`, over TLS; returns its RESULT.
fn signed_produce(
    namespace: &str,
    image: &str,
    pod: &str,
    namesrv: &str,
    (access_key, secret_key): (&str, &str),
    count: u64,
) -> serde_json::Value {
    let args = with_cold_timeouts(vec![
        "dev.rocketry.harness.Features".into(),
        "produce".into(),
        format!("namesrv={namesrv}"),
        "topic=orders".into(),
        format!("count={count}"),
        format!("run={pod}"),
        format!("accessKey={access_key}"),
        format!("secretKey={secret_key}"),
    ]);
    // The client's test mode (its default) takes any server certificate.
    start_java_client(namespace, image, pod, &args, "-Dtls.enable=true");
    client_result(namespace, pod, Duration::from_secs(240))
}

/// The secured cluster, over TLS: a producer with the secret the operator generated for its
/// RocketUser sends; one with an unknown user is refused with NO_PERMISSION; and the
/// operator, signing with its own credentials and checking the pods' certificates, fences
/// the broker's writes at the name server for a roll.
fn secure_cluster_admits_its_users_only(namespace: &str, client_image: &str) {
    poll(
        Duration::from_secs(300),
        || {
            format!(
                "the secured cluster is not Running:\n{}",
                kubectl(&[
                    "get",
                    "rocketcluster,rocketuser,pods,events",
                    "-n",
                    namespace
                ])
            )
        },
        || (field(namespace, "rocketcluster/secure", "{.status.phase}") == "Running").then_some(()),
    );
    let name_servers = field(
        namespace,
        "rocketcluster/secure",
        "{.status.nameServerAddresses}",
    );
    let secret = |key: &str| {
        let encoded = field(namespace, "secret/orders-app", &format!("{{.data.{key}}}"));
        let decoded = std::process::Command::new("base64")
            .arg("-d")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                use std::io::Write;
                child.stdin.take().unwrap().write_all(encoded.as_bytes())?;
                child.wait_with_output()
            })
            .unwrap();
        String::from_utf8(decoded.stdout).unwrap()
    };
    let (access_key, secret_key) = (secret("accessKey"), secret("secretKey"));
    assert_eq!(access_key, "orders-app");
    assert_eq!(
        field(
            namespace,
            "rocketuser/orders-app",
            "{.status.conditions[0].reason}"
        ),
        "InAcl"
    );
    let sent = signed_produce(
        namespace,
        client_image,
        "known-user",
        &name_servers,
        (&access_key, &secret_key),
        100,
    );
    assert_eq!(sent["sent"], 100, "{sent}");
    let refused = signed_produce(
        namespace,
        client_image,
        "unknown-user",
        &name_servers,
        ("intruder-app", &secret_key),
        2,
    );
    assert_eq!(refused["sent"], 0, "{refused}");
    let error = refused["firstError"].as_str().unwrap_or_default();
    assert!(
        error.contains("CODE: 16"),
        "wanted NO_PERMISSION: {refused}"
    );

    // A roll fences the broker's writes first: only an administrator's signature is taken.
    kubectl(&[
        "patch",
        "rocketcluster",
        "secure",
        "-n",
        namespace,
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"brokerConfig":{"fileReservedTime":"47"}}}"#,
    ]);
    let fenced = poll(
        Duration::from_secs(120),
        || {
            format!(
                "no FencingBroker event:\n{}",
                kubectl(&["get", "events", "-n", namespace])
            )
        },
        || Some(events(namespace, "FencingBroker")).filter(|e| e.contains("FencingBroker")),
    );
    println!("secured cluster roll: {fenced}");
    assert!(
        fenced.contains("fenced the writes of secure-broker-0 at 1 of 1 name servers"),
        "the operator's signed fence was refused: {fenced}"
    );
}

/// Starts a pod that sends to topic `steady` every 20 ms until stopped, then changes the
/// brokers' config, and waits until each of the cluster's `brokers` pods has been replaced, the
/// cluster is Running and no roll is recorded, never seeing two brokers down at once. Returns
/// the producer's run.
fn roll_under_a_steady_producer(
    namespace: &str,
    client_image: &str,
    name_servers: &str,
    brokers: usize,
) -> String {
    let steady = format!("steady{}", std::process::id());
    start_client(
        namespace,
        client_image,
        "steady",
        &with_cold_timeouts(vec![
            "dev.rocketry.harness.Features".into(),
            "produce".into(),
            format!("namesrv={name_servers}"),
            "topic=steady".into(),
            "count=1000000".into(),
            format!("run={steady}"),
            "intervalMs=20".into(),
            "untilFile=/tmp/stop".into(),
        ]),
    );
    wait_ready(namespace, "steady");
    std::thread::sleep(Duration::from_secs(10));
    let before = broker_pods(namespace);
    assert_eq!(before.len(), brokers);
    let started = Instant::now();
    patch_cluster(
        namespace,
        serde_json::json!({"brokerConfig": {"fileReservedTime": "47"}}),
    );
    let mut most_down = 0;
    poll(
        Duration::from_secs(480),
        || {
            format!(
                "the brokers were not rolled within 480 s:\n{}",
                cluster_yaml(namespace)
            )
        },
        || {
            let pods = broker_pods(namespace);
            let down = brokers - pods.iter().filter(|pod| pod.up).count();
            most_down = most_down.max(down);
            assert!(down <= 1, "{down} brokers down at once");
            let replaced = pods.len() == brokers
                && pods
                    .iter()
                    .all(|pod| pod.up && before.iter().all(|old| old.uid != pod.uid));
            let status = field(
                namespace,
                "rocketcluster/demo",
                "{.status.phase} {.status.roll}",
            );
            (replaced && status.trim_end() == "Running").then_some(())
        },
    );
    println!(
        "rolled {brokers} brokers in {:?}; at most {most_down} down at once",
        started.elapsed()
    );
    assert_eq!(
        most_down, 1,
        "no broker was seen down: the roll was not observed"
    );
    steady
}

/// Stops the steady producer and returns its RESULT.
fn stop_steady_producer(namespace: &str) -> serde_json::Value {
    kubectl(&[
        "exec",
        "-n",
        namespace,
        "steady",
        "--",
        "touch",
        "/tmp/stop",
    ]);
    client_result(namespace, "steady", Duration::from_secs(120))
}

/// A replica's runtime figures (`rocketry admin broker status`), asked from inside its pod.
fn replica_status(namespace: &str, pod: &str) -> BTreeMap<String, String> {
    let group = pod.rsplit_once('-').unwrap().0;
    let addr = format!("{pod}.{group}.{namespace}.svc.cluster.local:10911");
    let out = kubectl(&[
        "exec", "-n", namespace, pod, "--", "rocketry", "admin", "--output", "json", "broker",
        "status", "-b", &addr,
    ]);
    let rows: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    rows.iter()
        .map(|row| {
            let text = |key: &str| row[key].as_str().unwrap().to_string();
            (text("key"), text("value"))
        })
        .collect()
}

/// Issue 16 on the real node. A group grows from one broker that holds messages into three
/// replicas (`replicasPerGroup` 1 to 3): the broker is rolled, takes its store over as the
/// group's first replica, the new replicas are sent it, and every message sent before is
/// consumed from the group. Then the leader-aware roll: the group is rolled onto a new config
/// while a producer sends all along. The operator restarts the two followers first, hands the
/// leadership over, and restarts the old leader once the sends it passes on stand still: no
/// send fails, and Raft's term moves on by one, the transfer's election, and no more.
fn a_replicated_group_rolls_with_no_election_and_no_failed_send(
    broker_image: &str,
    client_image: &str,
) {
    let namespace = format!("raft-{}", std::process::id() % 100_000);
    restricted_namespace(&namespace);
    apply(
        &namespace,
        &format!(
            r#"
apiVersion: rocketry.dev/v1alpha1
kind: RocketCluster
metadata: {{name: demo}}
spec:
  image: {broker_image}
  imagePullPolicy: Never
  nameServer: {{replicas: 1}}
  brokerGroups: 1
  replicasPerGroup: 1
  storage: {{size: 1Gi}}
  tolerations: {TOLERATIONS}
"#
        ),
    );
    wait_phase(&namespace, "Running", Duration::from_secs(300));
    let name_servers = field(
        &namespace,
        "rocketcluster/demo",
        "{.status.nameServerAddresses}",
    );
    let grown = format!("grown{}", std::process::id());
    produce(
        &namespace,
        client_image,
        "before-growing",
        &name_servers,
        "grown",
        &grown,
        500,
    );
    let started = Instant::now();
    patch_cluster(&namespace, serde_json::json!({"replicasPerGroup": 3}));
    let leader_pod = || {
        field(
            &namespace,
            "rocketcluster/demo",
            "{.status.brokerGroups[0].leader}",
        )
    };
    let first_leader = poll(
        Duration::from_secs(300),
        || {
            format!(
                "the group did not grow to 3 replicas:\n{}",
                cluster_yaml(&namespace)
            )
        },
        || {
            let pods = broker_pods(&namespace);
            let grown = pods.len() == 3 && pods.iter().all(|pod| pod.up);
            let phase = field(&namespace, "rocketcluster/demo", "{.status.phase}");
            let leader = leader_pod();
            (grown && phase == "Running" && !leader.is_empty()).then_some(leader)
        },
    );
    println!(
        "grew from 1 broker to 3 replicas in {:?}; {first_leader} leads",
        started.elapsed()
    );
    assert_eq!(
        first_leader, "demo-broker-0-0",
        "the broker that ran alone leads"
    );
    let got = consume_all(
        &namespace,
        client_image,
        "grown-reader",
        &name_servers,
        ("grown", &grown),
        500,
        "",
    );
    assert_eq!(got["missing"], 0, "messages lost growing the group: {got}");
    println!("the 500 messages sent to the broker alone, consumed from the group: {got}");
    let restarts_before = event_count(&namespace, "RollingPod");
    let fences_before = event_count(&namespace, "FencingBroker");

    let before = replica_status(&namespace, &first_leader);
    assert_eq!(before["replicaRole"], "leader", "{before:?}");
    let term_before: u64 = before["raftTerm"].parse().unwrap();
    println!("replicated group Running, {first_leader} leads in term {term_before}");

    let steady = roll_under_a_steady_producer(&namespace, client_image, &name_servers, 3);
    println!(
        "roll events:\n{}{}",
        events(&namespace, "RollingPod"),
        events(&namespace, "HandingOverLeadership")
    );
    assert_eq!(
        event_count(&namespace, "HandingOverLeadership"),
        1,
        "one transfer, of the leader"
    );
    assert_eq!(
        event_count(&namespace, "RollingPod") - restarts_before,
        3,
        "one restart of each replica"
    );
    assert_eq!(
        event_count(&namespace, "FencingBroker"),
        fences_before,
        "a replicated group was fenced"
    );

    let sent = stop_steady_producer(&namespace);
    println!(
        "steady producer through the replicated roll: {} acknowledged, {} failed after the client's retries",
        sent["sent"], sent["failed"]
    );
    assert_eq!(sent["failed"], 0, "sends failed in the roll: {sent}");
    let got = consume_all(
        &namespace,
        client_image,
        "steady-reader",
        &name_servers,
        ("steady", &steady),
        sent["attempted"].as_u64().unwrap(),
        "",
    );
    assert_eq!(
        got["missing"], 0,
        "acknowledged sends lost in the roll: {got}"
    );

    let leader = leader_pod();
    let after = replica_status(&namespace, &leader);
    let term_after: u64 = after["raftTerm"].parse().unwrap();
    println!("{leader} leads in term {term_after} (was {first_leader} in term {term_before})");
    assert_ne!(leader, first_leader, "the leadership was not handed over");
    assert_eq!(
        term_after,
        term_before + 1,
        "the roll cost elections besides its one transfer"
    );
    kubectl(&["delete", "namespace", &namespace, "--wait=false"]);
}

/// A one-group cluster, a topic of 8 queues that may grow to 16 and shrink back, and a
/// Deployment of Java push consumers (2.5 msg/s each) that a RocketConsumerGroup sizes. Each
/// consumer writes what it received to a volume they share, so the checker at the end sees the
/// deliveries of pods long gone.
fn autoscaling_manifest(broker_image: &str) -> String {
    format!(
        r#"
apiVersion: rocketry.dev/v1alpha1
kind: RocketCluster
metadata: {{name: scale}}
spec:
  image: {broker_image}
  imagePullPolicy: Never
  nameServer: {{replicas: 1}}
  storage: {{size: 1Gi}}
  tolerations: {TOLERATIONS}
---
apiVersion: rocketry.dev/v1alpha1
kind: RocketTopic
metadata: {{name: work}}
spec:
  cluster: scale
  queues: 8
  autoscaling: {{minQueues: 8, maxQueues: 16, lagPerQueue: 20, shrink: true,
    growCooldownSeconds: 30, shrinkCooldownSeconds: 60}}
---
apiVersion: rocketry.dev/v1alpha1
kind: RocketConsumerGroup
metadata: {{name: workers}}
spec:
  cluster: scale
  topics: [work]
  scaling: {{target: {{name: workers}}, minReplicas: 1, maxReplicas: 12, perReplicaRate: 2.5,
    drainWithinSeconds: 30, cooldownSeconds: 30}}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {{name: deliveries}}
spec:
  accessModes: [ReadWriteOnce]
  resources: {{requests: {{storage: 1Gi}}}}
"#
    )
}

fn workers_manifest(client_image: &str, name_servers: &str, run: &str) -> String {
    format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: workers}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: workers}}}}
  template:
    metadata: {{labels: {{app: workers}}}}
    spec:
      tolerations: {TOLERATIONS}
      terminationGracePeriodSeconds: 10
      securityContext: {{runAsNonRoot: true, runAsUser: 10001, seccompProfile: {{type: RuntimeDefault}}}}
      containers:
      - name: consumer
        image: {client_image}
        imagePullPolicy: Never
        args: [dev.rocketry.harness.Features, consume, "namesrv={name_servers}",
          topic=work, group=workers, "out=/deliveries/$(POD_NAME)", run={run}, sleepMs=400,
          timeoutMs=3600000]
        env:
        - {{name: POD_NAME, valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}}}
        - {{name: JAVA_TOOL_OPTIONS, value: "-XX:+UseSerialGC -XX:TieredStopAtLevel=1"}}
        securityContext: {{allowPrivilegeEscalation: false, capabilities: {{drop: [ALL]}}}}
        volumeMounts: [{{name: deliveries, mountPath: /deliveries}}]
      volumes:
      - {{name: deliveries, persistentVolumeClaim: {{claimName: deliveries}}}}
"#
    )
}

fn replicas(namespace: &str) -> i64 {
    field(namespace, "deployment/workers", "{.spec.replicas}")
        .parse()
        .unwrap_or(0)
}

/// The topic's and the group's status, for a failure message.
fn autoscaling_state(namespace: &str) -> String {
    format!(
        "{}\n{}\n{}",
        kubectl(&[
            "get",
            "rockettopic,rocketconsumergroup,deployment,pods",
            "-n",
            namespace
        ]),
        kubectl(&[
            "get",
            "rockettopic/work",
            "rocketconsumergroup/workers",
            "-n",
            namespace,
            "-o",
            "yaml"
        ]),
        kubectl(&[
            "get",
            "events",
            "-n",
            namespace,
            "--sort-by=.metadata.creationTimestamp"
        ]),
    )
}

/// Issue 15's scenario on the real node: producers outpace the consumers; the replicas rise
/// to the queue count and stop there; the topic doubles its queues; the replicas rise further
/// and the backlog is consumed; then the replicas come back to one and the topic shrinks back
/// by its recorded steps, across a crash of the operator's leader in the middle, and a checker
/// finds every message produced among the consumers' deliveries.
fn consumers_and_queues_follow_the_backlog(broker_image: &str, client_image: &str) {
    let namespace = format!("scale-{}", std::process::id() % 100_000);
    restricted_namespace(&namespace);
    let run = format!("scale{}", std::process::id());
    apply(&namespace, &autoscaling_manifest(broker_image));
    let state = || autoscaling_state(&namespace);
    let topic = |path: &str| field(&namespace, "rockettopic/work", path);
    let group = |path: &str| field(&namespace, "rocketconsumergroup/workers", path);
    poll(Duration::from_secs(300), state, || {
        (topic("{.status.served}") == "8/8").then_some(())
    });
    let name_servers = field(
        &namespace,
        "rocketcluster/scale",
        "{.status.nameServerAddresses}",
    );
    apply(
        &namespace,
        &workers_manifest(client_image, &name_servers, &run),
    );
    let count = 5_000u64;
    start_client(
        &namespace,
        client_image,
        "producer",
        &with_cold_timeouts(vec![
            "dev.rocketry.harness.Features".into(),
            "produce".into(),
            format!("namesrv={name_servers}"),
            "topic=work".into(),
            format!("count={count}"),
            format!("run={run}"),
            "intervalMs=40".into(),
        ]),
    );

    // Up to the queue count, and not past it while the topic has 8 queues: the group's status
    // holds its replicas and the queues it measured in one write.
    let group_status = || -> (i64, i64) {
        let both = group("{.status.replicas} {.status.queues}");
        let mut parts = both.split(' ').map(|n| n.parse().unwrap_or(0));
        (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
    };
    poll(Duration::from_secs(400), state, || {
        let (replicas, queues) = group_status();
        assert!(
            replicas <= 8 || queues > 8,
            "{replicas} replicas with {queues} queues\n{}",
            state()
        );
        (topic("{.status.served}") == "16/16").then_some(())
    });
    let limited = events(&namespace, "QueueLimited");
    assert!(limited.contains("would sit idle"), "{limited}\n{}", state());
    let grew = events(&namespace, "LagPerQueueOverTarget");
    assert!(
        grew.contains("queues 8 -> 16") && grew.contains("held at the queue count"),
        "{grew}\n{}",
        state()
    );
    // Past 8 once the topic has 16 queues, never past maxReplicas.
    let grown = poll(Duration::from_secs(300), state, || {
        Some(replicas(&namespace)).filter(|n| *n > 8)
    });
    assert!(grown <= 12, "{grown} replicas\n{}", state());
    let sent = client_result(&namespace, "producer", Duration::from_secs(600));
    assert_eq!(sent["sent"], count, "{sent}");
    poll(Duration::from_secs(300), state, || {
        (group("{.status.lag}") == "0").then_some(())
    });
    println!("backlog consumed with {} replicas", replicas(&namespace));

    // Back to one replica after the cooldown; then the topic shrinks 16 -> 8 by its steps.
    poll(Duration::from_secs(300), state, || {
        (replicas(&namespace) == 1).then_some(())
    });
    // Read together: the shrink may move on between two reads.
    let served = poll(Duration::from_secs(400), state, || {
        let status = topic("{.status.shrink.step} {.status.served}");
        let (step, served) = status.split_once(' ').unwrap_or((&status, ""));
        (step == "Draining").then(|| served.to_string())
    });
    assert_eq!(
        served,
        "16/8",
        "writes are lowered first, reads stay\n{}",
        state()
    );
    // The operator's leader dies between the steps; its successor resumes at the recorded one.
    let crashed = lease_holder();
    kill_container("rocketry-system", crashed.split('_').next().unwrap());
    let lowered_at = topic("{.status.shrink.writesLoweredAt}");
    poll(
        Duration::from_secs(60),
        || format!("the lease still names {crashed}"),
        || Some(lease_holder()).filter(|holder| !holder.is_empty() && *holder != crashed),
    );
    poll(Duration::from_secs(300), state, || {
        // One read of the three fields: read one by one, the shrink may finish in between.
        let status =
            topic("{.status.served} {.status.shrink.step} {.status.shrink.writesLoweredAt}");
        let mut fields = status.split(' ');
        let (served, step, lowered) = (
            fields.next().unwrap_or(""),
            fields.next().unwrap_or(""),
            fields.next().unwrap_or(""),
        );
        if step == "Draining" {
            assert_eq!(served, "16/8", "reads lowered while draining\n{}", state());
            assert_eq!(lowered, lowered_at);
        }
        (served == "8/8" && step.is_empty()).then_some(())
    });
    let shrunk = events(&namespace, "QueuesShrunk");
    assert!(shrunk.contains("16 -> 8"), "{shrunk}\n{}", state());

    // Every message produced was consumed, those of queues 8-15 (gone now) too.
    let checked = client_pod_with_deliveries(&namespace, client_image, count);
    assert_eq!(checked["missing"], 0, "{checked}");
    let queues: Vec<i64> = serde_json::from_value(checked["queues"].clone()).unwrap();
    assert_eq!(queues, (0..16).collect::<Vec<_>>(), "{checked}");
    println!("autoscaling: {checked}");
    kubectl(&["delete", "namespace", &namespace, "--wait=false"]);
}

/// A checker pod with the consumers' shared volume runs `Features check` over their files.
fn client_pod_with_deliveries(namespace: &str, image: &str, count: u64) -> serde_json::Value {
    let manifest = format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: checker}}
spec:
  restartPolicy: Never
  tolerations: {TOLERATIONS}
  securityContext: {{runAsNonRoot: true, runAsUser: 10001, seccompProfile: {{type: RuntimeDefault}}}}
  containers:
  - name: client
    image: {image}
    imagePullPolicy: Never
    args: [dev.rocketry.harness.Features, check, dir=/deliveries, verify={count}]
    securityContext: {{allowPrivilegeEscalation: false, capabilities: {{drop: [ALL]}}}}
    volumeMounts: [{{name: deliveries, mountPath: /deliveries, readOnly: true}}]
  volumes:
  - {{name: deliveries, persistentVolumeClaim: {{claimName: deliveries}}}}
"#
    );
    apply(namespace, &manifest);
    client_result(namespace, "checker", Duration::from_secs(240))
}

/// The chart installs the operator (two replicas, leader election, its ServiceAccount token) in
/// a Pod Security "restricted" namespace, and the example RocketCluster, applied to the real
/// apiserver, runs in another restricted namespace. Then, on that one cluster, what a platform
/// team does to it: 10,000 messages round trip; (beside it, an ACL-enabled cluster on TLS that
/// takes a RocketUser's sends and refuses an unknown user's); a config roll under a steady producer with
/// never more than one broker down and every acknowledged message consumed; a broker killed by
/// SIGKILL that recovers everything; groups 2→3 with the new group given the existing topics;
/// 3→2 under a backlog that drains before the group goes; the leader operator killed, then
/// deleted, and the other replica taking over. Then a group of three replicas rolled with
/// no election but its leader's transfer, and the autoscaling of issue 15.
#[test]
fn the_charts_operator_runs_the_example_cluster_through_rolls_crashes_and_scaling() {
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
        "--set",
        "replicaCount=2",
        "--set-json",
        &format!("tolerations={TOLERATIONS}"),
        "--wait",
        "--timeout",
        TIMEOUT,
    ]);

    let namespace = format!("e2e-{}", std::process::id() % 100_000);
    restricted_namespace(&namespace);
    // The example as shipped passes the apiserver's schema and CEL rules; the one run here adds
    // only the toleration of the test ground's node.
    let example = std::fs::read_to_string(repo_root().join("examples/rocketcluster.yaml")).unwrap();
    kubectl(&[
        "apply",
        "--dry-run=server",
        "-n",
        &namespace,
        "-f",
        repo_root()
            .join("examples/rocketcluster.yaml")
            .to_str()
            .unwrap(),
    ]);
    apply(
        &namespace,
        &format!("{}\n  tolerations: {TOLERATIONS}\n", example.trim_end()),
    );
    // An ACL-enabled cluster beside it, checked once the demo's first round trip is done.
    let secured = format!("secure-{}", std::process::id() % 100_000);
    restricted_namespace(&secured);
    tls_secret(&secured);
    apply(&secured, &secure_cluster_manifest(&broker_image));
    wait_phase(&namespace, "Running", Duration::from_secs(300));
    let name_servers = field(
        &namespace,
        "rocketcluster/demo",
        "{.status.nameServerAddresses}",
    );
    let first_name_server = name_servers.split(';').next().unwrap().to_string();
    println!("Running; name servers {name_servers}");
    let round = format!("round{}", std::process::id());
    produce(
        &namespace,
        &client_image,
        "producer",
        &name_servers,
        "orders",
        &round,
        10_000,
    );
    let got = consume_all(
        &namespace,
        &client_image,
        "reader",
        &name_servers,
        ("orders", &round),
        10_000,
        "",
    );
    assert_eq!(got["missing"], 0, "{got}");
    secure_cluster_admits_its_users_only(&secured, &client_image);
    kubectl(&["delete", "namespace", &secured, "--wait=false"]);

    // A config roll while a producer sends all along.
    let steady = roll_under_a_steady_producer(&namespace, &client_image, &name_servers, 2);
    println!("roll events:\n{}", events(&namespace, "FencingBroker"));
    let sent = stop_steady_producer(&namespace);
    let skip: Vec<String> = sent["failedIndexes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|index| index.to_string())
        .collect();
    println!(
        "steady producer: {} acknowledged, {} failed after the client's retries",
        sent["sent"], sent["failed"]
    );
    let attempted = sent["attempted"].as_u64().unwrap();
    let got = consume_all(
        &namespace,
        &client_image,
        "steady-reader",
        &name_servers,
        ("steady", &steady),
        attempted,
        &skip.join(","),
    );
    assert_eq!(
        got["missing"], 0,
        "acknowledged sends were lost in the roll: {got}"
    );

    // A broker killed by SIGKILL is restarted by the kubelet and recovers from its volume.
    let restarts = || {
        field(
            &namespace,
            "pod/demo-broker-0-0",
            "{.status.containerStatuses[0].restartCount}",
        )
    };
    let restarts_before = restarts();
    kill_container(&namespace, "demo-broker-0-0");
    poll(
        Duration::from_secs(180),
        || "demo-broker-0-0 not restarted and ready within 180 s".to_string(),
        || {
            let up = broker_pods(&namespace)
                .iter()
                .any(|pod| pod.name == "demo-broker-0-0" && pod.up);
            (restarts() != restarts_before && up).then_some(())
        },
    );
    println!(
        "demo-broker-0-0 restarted after SIGKILL (restarts {restarts_before} -> {})",
        restarts()
    );
    let got = consume_all(
        &namespace,
        &client_image,
        "after-crash",
        &name_servers,
        ("orders", &round),
        10_000,
        "",
    );
    assert_eq!(got["missing"], 0, "messages lost in the crash: {got}");

    // Groups 2 -> 3: the new group gets the existing topics, so their routes list it.
    patch_cluster(&namespace, serde_json::json!({"brokerGroups": 3}));
    poll(
        Duration::from_secs(300),
        || {
            format!(
                "group 3 not seeded and Running:\n{}",
                cluster_yaml(&namespace)
            )
        },
        || {
            let seeded = field(
                &namespace,
                "rocketcluster/demo",
                "{.status.brokerGroups[*].seeded}",
            );
            let running = field(&namespace, "rocketcluster/demo", "{.status.phase}") == "Running";
            (seeded == "true true true" && running).then_some(())
        },
    );
    // The brokers a name server routes `topic` to; none while it does not know the topic.
    let route = |name_server: &str, topic: &str| -> Vec<String> {
        let output = std::process::Command::new(repo_root().join("scripts/peers/kubernetes"))
            .args(["kubectl", "exec", "-n", &namespace, "demo-broker-0-0", "--"])
            .args(["rocketry", "admin", "-n", name_server, "--output", "json"])
            .args(["topic", "route", "--topic", topic])
            .output()
            .unwrap();
        if !output.status.success() {
            return Vec::new();
        }
        let out = String::from_utf8(output.stdout).unwrap();
        let route: serde_json::Value = serde_json::from_str(&out).unwrap();
        let mut brokers: Vec<String> = route["queueDatas"]
            .as_array()
            .unwrap()
            .iter()
            .map(|queues| queues["brokerName"].as_str().unwrap().to_string())
            .collect();
        brokers.sort();
        brokers.dedup();
        brokers
    };
    let brokers = poll(
        Duration::from_secs(60),
        || {
            format!(
                "the route of orders lists {:?}",
                route(&first_name_server, "orders")
            )
        },
        || Some(route(&first_name_server, "orders")).filter(|brokers| brokers.len() == 3),
    );
    println!("route of orders after 2->3: {brokers:?}");

    // 3 -> 2 under a backlog: the group is fenced and kept until its consumers have read it.
    let backlog_run = format!("backlog{}", std::process::id());
    produce(
        &namespace,
        &client_image,
        "backlog-warmup",
        &name_servers,
        "backlog",
        &format!("{backlog_run}w"),
        300,
    );
    let warm = consume_all(
        &namespace,
        &client_image,
        "drainer",
        &name_servers,
        ("backlog", &format!("{backlog_run}w")),
        300,
        "",
    );
    assert_eq!(warm["missing"], 0, "{warm}");
    kubectl(&["delete", "pod", "drainer", "-n", &namespace, "--wait"]);
    produce(
        &namespace,
        &client_image,
        "backlog-producer",
        &name_servers,
        "backlog",
        &backlog_run,
        3000,
    );
    patch_cluster(&namespace, serde_json::json!({"brokerGroups": 2}));
    let left = poll(
        Duration::from_secs(120),
        || format!("no Draining status:\n{}", cluster_yaml(&namespace)),
        || {
            let phase = field(&namespace, "rocketcluster/demo", "{.status.phase}");
            let backlog = field(
                &namespace,
                "rocketcluster/demo",
                "{.status.brokerGroups[2].draining.backlog}",
            );
            (phase == "Draining" && backlog.parse::<i64>().is_ok_and(|left| left > 0))
                .then_some(backlog)
        },
    );
    println!("Draining demo-broker-2 with {left} messages left");
    assert!(!field(&namespace, "statefulset/demo-broker-2", "{.metadata.name}").is_empty());
    let drained = consume_all(
        &namespace,
        &client_image,
        "drainer",
        &name_servers,
        ("backlog", &backlog_run),
        3000,
        "",
    );
    assert_eq!(drained["missing"], 0, "{drained}");
    poll(
        Duration::from_secs(180),
        || {
            format!(
                "demo-broker-2 not removed after draining:\n{}",
                cluster_yaml(&namespace)
            )
        },
        || {
            let gone =
                field(&namespace, "statefulset/demo-broker-2", "{.metadata.name}").is_empty();
            let running = field(&namespace, "rocketcluster/demo", "{.status.phase}") == "Running";
            (gone && running).then_some(())
        },
    );
    println!("{}", events(&namespace, "BrokerGroupRemoved"));

    // A third name server reaches the running brokers without restarting them.
    // The two groups' brokers: the removed group's pod may still be on its way out.
    let serving = || -> Vec<String> {
        broker_pods(&namespace)
            .into_iter()
            .filter(|pod| !pod.name.starts_with("demo-broker-2-"))
            .map(|pod| pod.uid)
            .collect()
    };
    let uids = serving();
    patch_cluster(
        &namespace,
        serde_json::json!({"nameServer": {"replicas": 3}}),
    );
    let third = first_name_server.replacen("demo-namesrv-0", "demo-namesrv-2", 1);
    let started = Instant::now();
    poll(
        Duration::from_secs(180),
        || "the brokers did not register with the third name server within 180 s".to_string(),
        || {
            let ready = field(
                &namespace,
                "statefulset/demo-namesrv",
                "{.status.readyReplicas}",
            ) == "3";
            (ready && route(&third, "orders").len() == 2).then_some(())
        },
    );
    println!(
        "both brokers registered with {third} after {:?}",
        started.elapsed()
    );
    assert_eq!(uids, serving(), "a name-server change restarted brokers");

    // Volumes grow where their StorageClass allows it. The test ground's `local` class does not,
    // and the cluster says so; once the class allows expansion, each claim is asked for the size.
    patch_cluster(&namespace, serde_json::json!({"storage": {"size": "21Gi"}}));
    let degraded = r#"{.status.conditions[?(@.type=="Degraded")].reason}"#;
    poll(
        Duration::from_secs(60),
        || "no VolumeExpansionUnsupported within 60 s".to_string(),
        || {
            (field(&namespace, "rocketcluster/demo", degraded) == "VolumeExpansionUnsupported")
                .then_some(())
        },
    );
    let expandable = |allow: bool| {
        kubectl(&[
            "patch",
            "storageclass",
            "local",
            "-p",
            &serde_json::json!({ "allowVolumeExpansion": allow }).to_string(),
        ])
    };
    expandable(true);
    let sizes = poll(
        Duration::from_secs(60),
        || "the claims were not grown within 60 s".to_string(),
        || {
            let sizes: Vec<String> = ["store-demo-broker-0-0", "store-demo-broker-1-0"]
                .iter()
                .map(|claim| {
                    field(
                        &namespace,
                        &format!("pvc/{claim}"),
                        "{.spec.resources.requests.storage}",
                    )
                })
                .collect();
            let cleared = field(&namespace, "rocketcluster/demo", degraded) == "AsExpected";
            (sizes.iter().all(|size| size == "21Gi") && cleared).then_some(sizes)
        },
    );
    expandable(false);
    println!("claims asked for {sizes:?} once the class allowed expansion");

    // Two operator replicas: the leader's container killed, then the new leader's pod deleted.
    let crashed = lease_holder();
    let pod = crashed.split('_').next().unwrap().to_string();
    let killed = Instant::now();
    kill_container("rocketry-system", &pod);
    let after_crash = poll(
        Duration::from_secs(40),
        || format!("the lease still names {crashed} 40 s after its process was killed"),
        || Some(lease_holder()).filter(|holder| !holder.is_empty() && *holder != crashed),
    );
    println!(
        "leader {crashed} killed; {after_crash} holds the lease after {:?}",
        killed.elapsed()
    );
    let pod = after_crash.split('_').next().unwrap().to_string();
    let deleted = Instant::now();
    kubectl(&[
        "delete",
        "pod",
        &pod,
        "-n",
        "rocketry-system",
        "--wait=false",
    ]);
    let after_delete = poll(
        Duration::from_secs(30),
        || format!("the lease still names {after_crash} 30 s after its pod was deleted"),
        || Some(lease_holder()).filter(|holder| !holder.is_empty() && *holder != after_crash),
    );
    let handover = deleted.elapsed();
    println!("leader pod {pod} deleted; {after_delete} holds the lease after {handover:?}");
    assert!(
        handover < Duration::from_secs(10),
        "SIGTERM did not hand the lease over at once ({handover:?}; the lease lasts 15 s)"
    );

    kubectl(&["delete", "namespace", &namespace, "--wait=false"]);
    a_replicated_group_rolls_with_no_election_and_no_failed_send(&broker_image, &client_image);
    // Last, so that its dozen consumer JVMs weigh on no phase above.
    consumers_and_queues_follow_the_backlog(&broker_image, &client_image);
    peer(&[
        "helm",
        "uninstall",
        "rocketry",
        "--namespace",
        "rocketry-system",
    ]);
}
