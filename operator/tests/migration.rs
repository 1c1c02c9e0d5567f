//! A RocketMigration driven through every phase to Done on the test ground (issue 19): a
//! private Apache Kafka 4.4.0 and a `rocketry standalone` listen on the node's bridge, so the
//! operator (in this process) and the mirror (a pod of the broker image on the real node)
//! both reach them. The mirror copies the history of a topic of three partitions while the
//! dual writer takes over its producing: the writer's copies wait for the mirror, then go in
//! themselves, and the mirror leaves the writer's records alone. Parity compares 10 s windows
//! across an operator restart; the cutover sets the Rocketry group's offsets from the Kafka
//! group's; Done removes the mirror. A second migration is cut over, its group reads on
//! Rocketry, and RollBack commits that position back in Kafka. Every transition is an event.

mod support;

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::Client;
use operator::migration::{Phase, RocketMigration};
use protocol::header::{QueryConsumerOffsetRequestHeader, UpdateConsumerOffsetRequestHeader};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use support::*;

/// The test ground's bridge: the host's address that pods reach (docs/testing.md).
const BRIDGE: &str = "10.244.0.1";
/// The private Kafka's port (its controller takes the next, SASL_SSL the one after).
const KAFKA_PORT: u16 = 19192;
const TOPIC: &str = "orders";
const PARTITIONS: i32 = 3;
const HISTORY: usize = 3000;
/// What the Kafka group `billing` committed, per partition, before the migration.
const COMMITTED: [i64; 3] = [400, 500, 600];
/// The second migration, which is rolled back: its topic, group and history.
const REFUNDS: &str = "refunds";
const AUDIT_COMMITTED: [i64; 3] = [10, 20, 30];
/// Where the group `audit` stands on Rocketry when it is rolled back.
const AUDIT_CONSUMED: [i64; 3] = [50, 60, 70];
const TOLERATIONS: &str =
    r#"[{"key":"rocketry.dev/real-node","operator":"Exists","effect":"NoSchedule"}]"#;

/// A private Kafka on the bridge, stopped (and its data removed) when dropped.
struct Kafka;

impl Kafka {
    fn script(verb: &str) -> Command {
        let mut command = Command::new(repo_root().join("scripts/peers/kafka"));
        command
            .arg(verb)
            .env("KAFKA_INSTANCE", "kafka-migration-test")
            .env("KAFKA_HOST", BRIDGE)
            .env("KAFKA_PORT", KAFKA_PORT.to_string())
            .env("KAFKA_HEAP", "384m");
        command
    }

    fn start() -> Kafka {
        let output = Kafka::script("start").output().unwrap();
        // Dropped on failure too, so a half-started instance is stopped.
        let kafka = Kafka;
        assert!(output.status.success(), "{}", printed(&output));
        kafka
    }

    fn tool(args: &[&str]) {
        let output = Kafka::script("tool").args(args).output().unwrap();
        assert!(output.status.success(), "{}", printed(&output));
    }
}

impl Drop for Kafka {
    fn drop(&mut self) {
        let _ = Kafka::script("stop").output();
    }
}

fn printed(output: &std::process::Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn bootstrap() -> String {
    format!("{BRIDGE}:{KAFKA_PORT}")
}

/// `rocketry standalone` on the bridge, SIGKILLed when dropped.
struct Standalone {
    child: Child,
    namesrv: String,
    _dir: tempfile::TempDir,
}

impl Standalone {
    fn start() -> Standalone {
        // `cargo test --workspace` builds it for the broker's own tests.
        let binary = std::env::var_os("CARGO_TARGET_DIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| repo_root().join("target"))
            .join("debug/rocketry");
        assert!(
            binary.exists(),
            "{} is missing: run cargo build -p broker (cargo test --workspace does)",
            binary.display()
        );
        let dir = tempfile::tempdir().unwrap();
        let namesrv_port = free_port();
        let broker_port = free_port();
        let config = dir.path().join("broker.conf");
        std::fs::write(
            &config,
            format!("bindAddress={BRIDGE}\nbrokerIP1={BRIDGE}\nflushDiskType=ASYNC_FLUSH\n"),
        )
        .unwrap();
        let child = Command::new(binary)
            .args(["standalone", "--config"])
            .arg(&config)
            .arg("--data-dir")
            .arg(dir.path().join("store"))
            .args(["--namesrv-port", &namesrv_port.to_string()])
            .args(["--broker-port", &broker_port.to_string()])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("rocketry.log")).unwrap())
            .spawn()
            .unwrap();
        Standalone {
            child,
            namesrv: format!("{BRIDGE}:{namesrv_port}"),
            _dir: dir,
        }
    }
}

impl Drop for Standalone {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind((BRIDGE, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Records `first..end` of `topic`, record `i` to partition `i % 3`, with a key and a header.
fn produce(producer: &BaseProducer, topic: &str, first: usize, end: usize) {
    for i in first..end {
        let key = format!("key-{i}");
        let value = format!("order-{i}-{}", "v".repeat(64));
        let index = i.to_string();
        let headers = OwnedHeaders::new().insert(Header {
            key: "index",
            value: Some(&index),
        });
        let record = BaseRecord::to(topic)
            .partition(i as i32 % PARTITIONS)
            .key(&key)
            .payload(&value)
            .headers(headers);
        producer.send(record).map_err(|(e, _)| e).unwrap();
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(60)).unwrap();
}

fn producer() -> BaseProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("acks", "all")
        .set("linger.ms", "5")
        .create()
        .unwrap()
}

fn kafka_group(group: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("group.id", group)
        .create()
        .unwrap()
}

/// Kafka `group` commits `offsets` on `topic` without ever joining: a stopped consumer group,
/// which is what a cutover moves.
fn commit(group: &str, topic: &str, offsets: &[i64]) {
    let mut list = TopicPartitionList::new();
    for (partition, offset) in offsets.iter().enumerate() {
        list.add_partition_offset(topic, partition as i32, Offset::Offset(*offset))
            .unwrap();
    }
    kafka_group(group).commit(&list, CommitMode::Sync).unwrap();
}

/// What Kafka `group` has committed on `topic`, per partition.
fn committed(group: &str, topic: &str) -> Vec<i64> {
    let mut list = TopicPartitionList::new();
    for partition in 0..PARTITIONS {
        list.add_partition(topic, partition);
    }
    let committed = kafka_group(group)
        .committed_offsets(list, Duration::from_secs(10))
        .unwrap();
    (0..PARTITIONS)
        .map(
            |p| match committed.find_partition(topic, p).unwrap().offset() {
                Offset::Offset(offset) => offset,
                other => panic!("partition {p} of {group}: {other:?}"),
            },
        )
        .collect()
}

/// Messages in each queue of the Rocketry topic (none for a topic not yet routed).
async fn copied(namesrv: &str, topic: &str) -> Vec<i64> {
    let Ok(client) = protocol::Client::connect(namesrv).await else {
        return vec![];
    };
    let Ok(route) = client.get_route_info(topic).await else {
        return vec![];
    };
    let Some(addr) = route
        .broker_datas
        .first()
        .and_then(|b| b.broker_addrs.get(&0).cloned())
    else {
        return vec![];
    };
    let broker = protocol::Client::connect(addr.as_str()).await.unwrap();
    let mut counts = Vec::new();
    for queue in 0..PARTITIONS {
        counts.push(broker.get_max_offset(topic, queue).await.unwrap_or(0));
    }
    counts
}

/// The broker that serves `topic`.
async fn broker_of(namesrv: &str, topic: &str) -> protocol::Client {
    let client = protocol::Client::connect(namesrv).await.unwrap();
    let route = client.get_route_info(topic).await.unwrap();
    let addr = route.broker_datas[0].broker_addrs[&0].clone();
    protocol::Client::connect(addr.as_str()).await.unwrap()
}

async fn rocketry_offsets(namesrv: &str, topic: &str, group: &str) -> Vec<Option<i64>> {
    let broker = broker_of(namesrv, topic).await;
    let mut offsets = Vec::new();
    for queue_id in 0..PARTITIONS {
        let header = QueryConsumerOffsetRequestHeader {
            consumer_group: group.to_string(),
            topic: topic.to_string(),
            queue_id,
            ..Default::default()
        };
        offsets.push(broker.query_consumer_offset(&header).await.unwrap());
    }
    offsets
}

/// Rocketry `group` commits `offsets` on `topic`, as its consumers would.
async fn rocketry_commit(namesrv: &str, topic: &str, group: &str, offsets: &[i64]) {
    let broker = broker_of(namesrv, topic).await;
    for (queue_id, offset) in offsets.iter().enumerate() {
        let header = UpdateConsumerOffsetRequestHeader {
            consumer_group: group.to_string(),
            topic: topic.to_string(),
            queue_id: queue_id as i32,
            commit_offset: *offset,
            broker_name: None,
        };
        broker.update_consumer_offset(&header).await.unwrap();
    }
}

/// A migration of `topic` (its name too) and of Kafka `group`, asked to reach `phase`.
fn migration_manifest(
    topic: &str,
    group: &str,
    phase: Phase,
    namesrv: &str,
    image: &str,
) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "rocketry.dev/v1alpha1",
        "kind": "RocketMigration",
        "metadata": {"name": topic},
        "spec": {
            "source": {"bootstrapServers": bootstrap()},
            "target": {"nameServers": namesrv},
            "topics": [{"source": topic}],
            "groups": [{"kafka": group}],
            "parity": {"windowSeconds": 10, "settleSeconds": 5, "cleanWindows": 2},
            "phase": phase.as_str(),
            "mirror": {
                "image": image,
                "imagePullPolicy": "Never",
                "tolerations": serde_json::from_str::<serde_json::Value>(TOLERATIONS).unwrap(),
            },
        }
    })
}

async fn status_of(
    api: &Api<RocketMigration>,
    name: &str,
) -> operator::migration::RocketMigrationStatus {
    api.get(name).await.unwrap().status.unwrap_or_default()
}

async fn wait_phase(api: &Api<RocketMigration>, name: &str, phase: Phase, limit: Duration) {
    wait_for(
        limit,
        &format!("{name} at phase {}", phase.as_str()),
        || async { (status_of(api, name).await.phase == Some(phase)).then_some(()) },
    )
    .await;
}

async fn set_phase(
    api: &Api<RocketMigration>,
    name: &str,
    phase: Phase,
) -> Result<RocketMigration, kube::Error> {
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"phase": phase.as_str()}})),
    )
    .await
}

async fn mirror_removed(deployments: &Api<Deployment>, name: &str) {
    wait_for(
        Duration::from_secs(30),
        "the mirror to be removed",
        || async {
            let mirror = deployments.get_opt(&format!("{name}-mirror")).await;
            mirror.unwrap().is_none().then_some(())
        },
    )
    .await;
}

/// The notes of migration `name`'s events whose reason starts with `reason`, oldest first.
async fn events(client: &Client, namespace: &str, name: &str, reason: &str) -> Vec<String> {
    let api: Api<Event> = Api::namespaced(client.clone(), namespace);
    let mut events: Vec<Event> = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref().is_some_and(|r| r.starts_with(reason)))
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .collect();
    events.sort_by_key(|e| e.metadata.creation_timestamp.clone().map(|t| t.0));
    events.into_iter().filter_map(|e| e.note).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_migration_goes_through_every_phase_to_done_and_another_rolls_its_group_back() {
    let Some(path) = kubeconfig() else { return };
    let installed = Command::new(repo_root().join("scripts/peers/kafka"))
        .arg("installed")
        .status()
        .unwrap();
    if !installed.success() {
        println!("SKIPPED: the Kafka peer is not installed (scripts/peers/kafka install)");
        return;
    }
    let _kafka = Kafka::start();
    let broker = Standalone::start();
    for topic in [TOPIC, REFUNDS] {
        Kafka::tool(&[
            "org.apache.kafka.tools.TopicCommand",
            "--bootstrap-server",
            &bootstrap(),
            "--create",
            "--topic",
            topic,
            "--partitions",
            &PARTITIONS.to_string(),
        ]);
    }
    produce(&producer(), TOPIC, 0, HISTORY);
    produce(&producer(), REFUNDS, 0, 300);
    commit("billing", TOPIC, &COMMITTED);
    commit("audit", REFUNDS, &AUDIT_COMMITTED);

    let client = admin_client(&path).await;
    install_crds(&client).await;
    let namespace = TestNamespace::create(&client, "migration").await;
    let api: Api<RocketMigration> = Api::namespaced(client.clone(), &namespace.name);
    let image = std::process::Command::new(repo_root().join("scripts/image"))
        .arg("names")
        .output()
        .unwrap();
    let image = String::from_utf8(image.stdout).unwrap();
    let image = image.split_whitespace().next().unwrap().to_string();

    // The apiserver refuses a target that names both a cluster and name servers.
    let manifest = |topic, group, phase| {
        let manifest = migration_manifest(topic, group, phase, &broker.namesrv, &image);
        serde_json::from_value::<RocketMigration>(manifest).unwrap()
    };
    let mut both = migration_manifest(TOPIC, "billing", Phase::Mirror, &broker.namesrv, &image);
    both["spec"]["target"]["cluster"] = "main".into();
    let refused = api
        .create(
            &PostParams::default(),
            &serde_json::from_value(both).unwrap(),
        )
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("set exactly one of cluster"),
        "{refused}"
    );

    let mut controller = RunningController::start(&client, &namespace.name);
    let orders = manifest(TOPIC, "billing", Phase::Mirror);
    api.create(&PostParams::default(), &orders).await.unwrap();
    // The second migration is asked for Cutover at once, to be rolled back from there. It
    // names its topics by a pattern, which must not come with a list too.
    let mut refunds = manifest(REFUNDS, "audit", Phase::Cutover);
    refunds.spec.topic_pattern = Some("refund.*".to_string());
    let refused = api
        .create(&PostParams::default(), &refunds)
        .await
        .unwrap_err();
    assert!(
        refused
            .to_string()
            .contains("set exactly one of topics and topicPattern"),
        "{refused}"
    );
    refunds.spec.topics.clear();
    api.create(&PostParams::default(), &refunds).await.unwrap();

    // Dual write: the producer switches to the dual writer at once, before the mirror's pod
    // has copied anything, so its first copies wait in the spool for the mirror.
    let spool = tempfile::tempdir().unwrap();
    let writer = migrate::DualWriter::open(migrate::DualWriteConfig::new(
        &bootstrap(),
        TOPIC,
        &broker.namesrv,
        TOPIC,
        spool.path().to_path_buf(),
    ))
    .await
    .unwrap();
    let writing = Arc::new(AtomicBool::new(true));
    let dual_writes = {
        let writing = writing.clone();
        tokio::spawn(async move {
            let mut outcomes = std::collections::BTreeMap::<&str, u64>::new();
            let mut next = HISTORY;
            while writing.load(Ordering::Relaxed) {
                for i in next..next + 10 {
                    let record = migrate::Record {
                        key: Some(format!("key-{i}").into_bytes()),
                        value: Some(format!("order-{i}-{}", "v".repeat(64)).into_bytes()),
                        headers: vec![("index".to_string(), Some(i.to_string().into_bytes()))],
                        partition: Some(i as i32 % PARTITIONS),
                        timestamp: None,
                    };
                    let outcome = match writer.send(record).await.unwrap() {
                        migrate::Sent::Both { .. } => "both",
                        migrate::Sent::Kafka { .. } => "kafka, copy spooled",
                        migrate::Sent::Spooled => "spooled",
                    };
                    *outcomes.entry(outcome).or_default() += 1;
                }
                next += 10;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            wait_for(Duration::from_secs(60), "the spool to drain", || async {
                (writer.spooled().await == 0).then_some(())
            })
            .await;
            (next - HISTORY, outcomes)
        })
    };

    // Mirror: the Deployment's pod runs on the node and copies the history.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &namespace.name);
    wait_for(
        Duration::from_secs(180),
        "the mirror to copy the history",
        || {
            let namesrv = broker.namesrv.clone();
            async move {
                let counts = copied(&namesrv, TOPIC).await;
                let each = (HISTORY / PARTITIONS as usize) as i64;
                (counts.len() == PARTITIONS as usize && counts.iter().all(|c| *c >= each))
                    .then_some(())
            }
        },
    )
    .await;
    let mirror = deployments.get("orders-mirror").await.unwrap();
    assert_eq!(
        mirror.spec.strategy.and_then(|s| s.type_).as_deref(),
        Some("Recreate")
    );

    // Verified needs two clean windows in a row while records keep coming.
    set_phase(&api, TOPIC, Phase::Verified).await.unwrap();
    wait_phase(&api, TOPIC, Phase::ShadowRead, Duration::from_secs(60)).await;
    wait_for(Duration::from_secs(60), "a first parity window", || async {
        (!status_of(&api, TOPIC).await.windows.is_empty()).then_some(())
    })
    .await;
    // The operator restarts mid-comparison and resumes from its status.
    controller.stop().await;
    let compared_before = status_of(&api, TOPIC).await.next_window_ms;
    controller = RunningController::start(&client, &namespace.name);
    wait_phase(&api, TOPIC, Phase::Verified, Duration::from_secs(120)).await;
    writing.store(false, Ordering::Relaxed);
    let (dual_written, outcomes) = dual_writes.await.unwrap();
    println!("dual writes: {dual_written}, by outcome {outcomes:?}");
    // Every record is in its queue once: the mirror's history and the writer's own copies.
    let probe = producer();
    let mut in_kafka = Vec::new();
    for partition in 0..PARTITIONS {
        let (low, high) = probe
            .client()
            .fetch_watermarks(TOPIC, partition, Duration::from_secs(10))
            .unwrap();
        assert_eq!(low, 0);
        in_kafka.push(high);
    }
    assert_eq!(
        in_kafka.iter().sum::<i64>(),
        (HISTORY + dual_written) as i64
    );
    assert_eq!(copied(&broker.namesrv, TOPIC).await, in_kafka);
    let verified = status_of(&api, TOPIC).await;
    println!("parity: {:?}", verified.last_parity);
    assert!(verified.next_window_ms > compared_before);
    assert!(verified.clean_windows >= 2, "{verified:?}");
    let recent = &verified.windows[verified.windows.len() - 2..];
    for window in recent {
        assert!(window.clean, "{window:?}");
        assert!(
            window.kafka_records > 0,
            "an empty window proves nothing: {window:?}"
        );
        assert_eq!(window.kafka_records, window.rocketry_records);
    }
    let parity = verified
        .conditions
        .iter()
        .find(|c| c.type_ == "ParityVerified")
        .unwrap();
    assert_eq!(parity.status, "True");

    // Cutover and Done: the group's Rocketry offsets are its Kafka ones (the mirror copied
    // each partition from its start, so queue offset = Kafka offset), the mirror goes.
    set_phase(&api, TOPIC, Phase::Done).await.unwrap();
    wait_phase(&api, TOPIC, Phase::Done, Duration::from_secs(120)).await;
    let done = status_of(&api, TOPIC).await;
    let billing = &done.groups[0];
    assert_eq!(billing.direction, Phase::Cutover);
    let mut moved: Vec<(i32, i64, i64)> = billing
        .offsets
        .iter()
        .map(|o| (o.partition, o.kafka_offset, o.queue_offset))
        .collect();
    moved.sort();
    let expected: Vec<(i32, i64, i64)> = COMMITTED
        .iter()
        .enumerate()
        .map(|(p, o)| (p as i32, *o, *o))
        .collect();
    assert_eq!(moved, expected);
    let offsets = rocketry_offsets(&broker.namesrv, TOPIC, "billing").await;
    assert_eq!(
        offsets,
        COMMITTED.iter().map(|o| Some(*o)).collect::<Vec<_>>()
    );
    mirror_removed(&deployments, TOPIC).await;

    // The rolled back one: cut over, its group reads on Rocketry, then RollBack puts the
    // group's Rocketry position back into Kafka, and the mirror goes.
    wait_phase(&api, REFUNDS, Phase::Cutover, Duration::from_secs(120)).await;
    assert_eq!(
        rocketry_offsets(&broker.namesrv, REFUNDS, "audit").await,
        AUDIT_COMMITTED.iter().map(|o| Some(*o)).collect::<Vec<_>>()
    );
    rocketry_commit(&broker.namesrv, REFUNDS, "audit", &AUDIT_CONSUMED).await;
    set_phase(&api, REFUNDS, Phase::RollBack).await.unwrap();
    wait_phase(&api, REFUNDS, Phase::RollBack, Duration::from_secs(60)).await;
    assert_eq!(committed("audit", REFUNDS), AUDIT_CONSUMED);
    let rolled_back = status_of(&api, REFUNDS).await;
    assert_eq!(rolled_back.topics, [REFUNDS]);
    assert_eq!(rolled_back.groups[0].direction, Phase::RollBack);
    mirror_removed(&deployments, REFUNDS).await;
    // Rolled back stays rolled back, and Done stays done: the apiserver refuses either move.
    let refused = set_phase(&api, REFUNDS, Phase::Mirror).await.unwrap_err();
    assert!(
        refused.to_string().contains("stays rolled back"),
        "{refused}"
    );
    let refused = set_phase(&api, TOPIC, Phase::RollBack).await.unwrap_err();
    assert!(refused.to_string().contains("stays so"), "{refused}");
    let steps = events(&client, &namespace.name, REFUNDS, "Phase").await;
    assert!(
        steps
            .iter()
            .any(|note| note
                .starts_with("Cutover -> RollBack: 1 consumer groups moved back to Kafka")),
        "{steps:#?}"
    );

    let transitions = events(&client, &namespace.name, TOPIC, "Phase").await;
    println!("{transitions:#?}");
    let order = [
        "Mirror -> DualWrite",
        "DualWrite -> ShadowRead",
        "ShadowRead -> Verified",
        "Verified -> Cutover",
        "Cutover -> Done",
    ];
    let found: Vec<&str> = order
        .iter()
        .copied()
        .filter(|step| transitions.iter().any(|note| note.starts_with(step)))
        .collect();
    assert_eq!(found, order, "{transitions:#?}");

    controller.stop().await;
    namespace.delete().await;
}
