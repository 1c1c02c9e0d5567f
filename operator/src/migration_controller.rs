//! The RocketMigration controller: runs the mirror as a Deployment while the phase wants it,
//! compares parity windows as they close, and moves the phase one step at a time toward the
//! one asked for, each move an event. Cutover and rollback translate the groups' offsets
//! through the `migrate` crate. Everything a pass needs from the last is in the status, so a
//! restarted operator resumes any phase where it was.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, PodSpec, PodTemplateSpec, Secret, SecretVolumeSource, Volume,
    VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, ObjectMeta};
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};

use crate::controller::{
    apply, delete, kube_error, next_condition, patch_object_status, publish, Context,
};
use crate::migration::{
    matching_topics, next_step, record_windows, within, GroupStatus, OffsetStatus, Phase,
    RocketMigration, RocketMigrationStatus, Step, TopicMapping, WindowStatus,
};
use crate::resources::{
    name_server_addresses, restricted_container_security, restricted_pod_security,
};
use crate::{target, Error, Result};
use migrate::rfc3339;

/// How often a migration is looked at: the phase gates (the mirror up, parity windows due)
/// change with time, not with the object.
const RESYNC: Duration = Duration::from_secs(10);
/// Most parity windows one pass compares, so a long-idle migration catches up over passes.
const WINDOWS_PER_PASS: usize = 6;
/// How long a cutover waits for the mirror to copy up to a group's committed offsets.
const MIRROR_WAIT: Duration = Duration::from_secs(20);
/// Where a mirror container finds the source's Secret.
const KAFKA_SECRET_DIR: &str = "/etc/rocketry/kafka";
/// The first mirror container's metrics port; the next container takes the next port.
const METRICS_PORT: i32 = 5557;

pub async fn reconcile(migration: Arc<RocketMigration>, context: Arc<Context>) -> Result<Action> {
    context
        .pacer
        .run(migration.as_ref(), pass(&migration, &context))
        .await
}

pub fn error_policy(migration: Arc<RocketMigration>, error: &Error, _: Arc<Context>) -> Action {
    tracing::warn!(migration = %migration.name_any(), %error, "migration reconcile failed");
    Action::requeue(RESYNC)
}

/// Why a pass could not go on: (condition reason, message).
type Blocked = target::Unreachable;

/// The two ends, as the `migrate` crate takes them.
struct Ends {
    kafka: HashMap<String, String>,
    /// `topics`, or what `topicPattern` matches now.
    topics: Vec<TopicMapping>,
    namesrv: String,
    image: String,
}

/// One pass; returns when the next is due.
async fn pass(migration: &RocketMigration, context: &Context) -> Result<Duration> {
    let previous = migration.status.clone().unwrap_or_default();
    let mut status = previous.clone();
    status.observed_generation = migration.metadata.generation;
    let current = previous.phase.unwrap_or_default();
    status.phase = Some(current);
    let outcome = match ends(migration, context).await? {
        Ok(ends) => {
            status.topics = ends.topics.iter().map(|t| t.source.clone()).collect();
            advance(migration, context, &ends, current, &mut status).await?
        }
        Err(blocked) => Err(blocked),
    };
    write_status(migration, context, &previous, status, outcome).await?;
    Ok(RESYNC)
}

/// Runs the mirror (or removes it), compares what is due, and takes the next step.
async fn advance(
    migration: &RocketMigration,
    context: &Context,
    ends: &Ends,
    current: Phase,
    status: &mut RocketMigrationStatus,
) -> Result<std::result::Result<(), Blocked>> {
    let deployments: Api<Deployment> = Api::namespaced(
        context.client.clone(),
        &migration.namespace().unwrap_or_default(),
    );
    let mirror_name = mirror_name(migration);
    if current.mirrors() {
        apply(&deployments, &mirror(migration, ends), "deployment").await?;
    } else {
        delete(&deployments, &mirror_name, "deployment").await?;
    }
    if current.compares() {
        compare_due(migration, ends, status).await;
    }
    let spec = &migration.spec;
    let next = match next_step(current, spec.phase, spec.point_of_no_return) {
        Step::Stay => return Ok(Ok(())),
        Step::Refuse(reason) => return Ok(Err(("Refused", reason.to_string()))),
        Step::To(next) => next,
    };
    let why = match next {
        Phase::DualWrite | Phase::ShadowRead | Phase::Verified | Phase::Cutover
            if next > current =>
        {
            match gate(migration, ends, &deployments, next, status).await? {
                Ok(why) => why,
                Err(blocked) => return Ok(Err(blocked)),
            }
        }
        Phase::Done => {
            delete(&deployments, &mirror_name, "deployment").await?;
            "the mirror is removed".to_string()
        }
        Phase::RollBack => match roll_back(migration, ends, status).await {
            Ok(why) => {
                delete(&deployments, &mirror_name, "deployment").await?;
                why
            }
            Err(message) => return Ok(Err(("RollBackWaiting", message))),
        },
        _ => {
            // Back to a phase before ShadowRead: the parity streak starts again later.
            if next < Phase::ShadowRead {
                status.next_window_ms = None;
                status.clean_windows = 0;
            }
            "asked for".to_string()
        }
    };
    status.phase = Some(next);
    // A reason per phase: the event recorder folds events of one reason into a series.
    publish(
        context,
        migration,
        EventType::Normal,
        &format!("Phase{}", next.as_str()),
        format!("{} -> {}: {why}", current.as_str(), next.as_str()),
    )
    .await;
    Ok(Ok(()))
}

/// Whether the migration may move forward to `next`: why (for the event), or why not.
async fn gate(
    migration: &RocketMigration,
    ends: &Ends,
    deployments: &Api<Deployment>,
    next: Phase,
    status: &mut RocketMigrationStatus,
) -> Result<std::result::Result<String, Blocked>> {
    let policy = &migration.spec.parity;
    Ok(match next {
        Phase::DualWrite => {
            let name = mirror_name(migration);
            let available = deployments
                .get_opt(&name)
                .await
                .map_err(kube_error("get", "deployment", &name))?
                .and_then(|d| d.status?.available_replicas)
                .unwrap_or(0);
            if available > 0 {
                Ok("the mirror is running".to_string())
            } else {
                Err((
                    "MirrorStarting",
                    format!("waiting for the mirror Deployment {name} to be available"),
                ))
            }
        }
        Phase::ShadowRead => {
            let window = policy.window_seconds * 1000;
            let start = migrate::now_ms() / window * window;
            status.next_window_ms = Some(start);
            status.clean_windows = 0;
            Ok(format!(
                "parity compares windows of {} s from {}",
                policy.window_seconds,
                rfc3339(start)
            ))
        }
        Phase::Verified if status.clean_windows >= policy.clean_windows => Ok(format!(
            "{} parity windows clean in a row",
            status.clean_windows
        )),
        Phase::Verified => Err((
            "ParityPending",
            format!(
                "{} of {} parity windows clean in a row",
                status.clean_windows, policy.clean_windows
            ),
        )),
        Phase::Cutover if status.clean_windows < policy.clean_windows => Err((
            "ParityLost",
            format!(
                "parity no longer holds: {} of {} windows clean in a row",
                status.clean_windows, policy.clean_windows
            ),
        )),
        Phase::Cutover => match move_groups(migration, ends, status, Phase::Cutover).await {
            Ok(moved) => Ok(format!("{moved} consumer groups moved to Rocketry")),
            Err(message) => Err(("CutoverWaiting", message)),
        },
        _ => Ok(String::new()),
    })
}

/// Moves the groups back to Kafka if they had moved.
async fn roll_back(
    migration: &RocketMigration,
    ends: &Ends,
    status: &mut RocketMigrationStatus,
) -> std::result::Result<String, String> {
    if !status
        .groups
        .iter()
        .any(|group| group.direction == Phase::Cutover)
    {
        return Ok("no group had moved".to_string());
    }
    let moved = move_groups(migration, ends, status, Phase::RollBack).await?;
    Ok(format!("{moved} consumer groups moved back to Kafka"))
}

/// Moves every group that has not yet made this move (`Cutover` or `RollBack`), recording
/// each in the status as it completes, so a pass that fails halfway resumes with the rest.
async fn move_groups(
    migration: &RocketMigration,
    ends: &Ends,
    status: &mut RocketMigrationStatus,
    direction: Phase,
) -> std::result::Result<usize, String> {
    for group in &migration.spec.groups {
        let done = status
            .groups
            .iter()
            .any(|g| g.kafka == group.kafka && g.direction == direction);
        if done {
            continue;
        }
        let mut offsets = Vec::new();
        for topic in &ends.topics {
            let group_move = migrate::GroupMove {
                endpoints: endpoints(migration, ends, &topic.source, topic.target()),
                kafka_group: group.kafka.clone(),
                rocketry_group: group.rocketry().to_string(),
                mirror_wait: MIRROR_WAIT,
            };
            let moved = match direction {
                Phase::RollBack => migrate::rollback(&group_move).await,
                _ => migrate::cutover(&group_move).await,
            }
            .map_err(|error| format!("group {} on topic {}: {error}", group.kafka, topic.source))?;
            offsets.extend(moved.into_iter().map(|t| OffsetStatus {
                topic: topic.source.clone(),
                partition: t.partition,
                kafka_offset: t.kafka_offset,
                queue_offset: t.queue_offset,
            }));
        }
        status.groups.retain(|g| g.kafka != group.kafka);
        status.groups.push(GroupStatus {
            kafka: group.kafka.clone(),
            rocketry: group.rocketry().to_string(),
            direction,
            offsets,
        });
    }
    Ok(migration.spec.groups.len())
}

/// Compares the parity windows that have closed and settled, oldest first.
async fn compare_due(migration: &RocketMigration, ends: &Ends, status: &mut RocketMigrationStatus) {
    let policy = &migration.spec.parity;
    let window = policy.window_seconds * 1000;
    let now = migrate::now_ms();
    for _ in 0..WINDOWS_PER_PASS {
        let Some(start) = status.next_window_ms else {
            return;
        };
        if start + window + policy.settle_seconds * 1000 > now {
            return;
        }
        let mut compared = Vec::new();
        for topic in &ends.topics {
            let config = migrate::ParityConfig {
                endpoints: endpoints(migration, ends, &topic.source, topic.target()),
                from_ms: start,
                to_ms: start + window,
                window: Duration::from_millis(window as u64),
            };
            match migrate::parity(&config).await {
                Ok(report) => compared.push(window_status(
                    &topic.source,
                    start,
                    window,
                    policy.tolerance,
                    &report,
                )),
                Err(error) => {
                    // Try the same window again next pass: an unreachable side says nothing
                    // about parity.
                    status.last_parity = Some(format!(
                        "window from {} of {}: could not compare: {error}",
                        rfc3339(start),
                        topic.source
                    ));
                    return;
                }
            }
        }
        let clean = compared.iter().filter(|w| w.clean).count();
        status.last_parity = Some(format!(
            "window [{}, {}): {clean} of {} topics clean{}",
            rfc3339(start),
            rfc3339(start + window),
            compared.len(),
            compared
                .iter()
                .flat_map(|w| w.mismatches.iter())
                .map(|m| format!("; {m}"))
                .collect::<String>()
        ));
        status.clean_windows = record_windows(&mut status.windows, status.clean_windows, compared);
        status.next_window_ms = Some(start + window);
    }
}

/// One topic's window, from the report of its partitions.
fn window_status(
    topic: &str,
    start: i64,
    window: i64,
    tolerance: u64,
    report: &migrate::ParityReport,
) -> WindowStatus {
    let mismatches: Vec<String> = report
        .windows
        .iter()
        .filter(|w| {
            !within(
                tolerance,
                (w.kafka.records, w.kafka.digest),
                (w.rocketry.records, w.rocketry.digest),
            )
        })
        .map(|w| format!("topic {topic} {w}"))
        .collect();
    WindowStatus {
        topic: topic.to_string(),
        start_ms: start,
        end_ms: start + window,
        kafka_records: report.windows.iter().map(|w| w.kafka.records).sum(),
        rocketry_records: report.windows.iter().map(|w| w.rocketry.records).sum(),
        clean: mismatches.is_empty(),
        mismatches,
    }
}

fn endpoints(
    migration: &RocketMigration,
    ends: &Ends,
    source: &str,
    target: &str,
) -> migrate::Endpoints {
    migrate::Endpoints {
        kafka: ends.kafka.clone(),
        group: format!("rocketry-migration-{}", migration.name_any()),
        source_topic: source.to_string(),
        namesrv: ends.namesrv.clone(),
        target_topic: target.to_string(),
    }
}

/// The Kafka settings (the Secret's too), the name servers and the mirror's image.
async fn ends(
    migration: &RocketMigration,
    context: &Context,
) -> Result<std::result::Result<Ends, Blocked>> {
    let namespace = migration.namespace().unwrap_or_default();
    let spec = &migration.spec;
    let mut kafka = HashMap::from([(
        "bootstrap.servers".to_string(),
        spec.source.bootstrap_servers.clone(),
    )]);
    kafka.extend(spec.source.config.clone());
    if let Some(name) = &spec.source.secret {
        let secrets: Api<Secret> = Api::namespaced(context.client.clone(), &namespace);
        let Some(secret) = secrets
            .get_opt(name)
            .await
            .map_err(kube_error("get", "secret", name))?
        else {
            return Ok(Err((
                "SecretNotFound",
                format!("the source's Secret {name} does not exist in {namespace}"),
            )));
        };
        for (key, value) in secret.data.unwrap_or_default() {
            kafka.insert(key, String::from_utf8_lossy(&value.0).into_owned());
        }
    }
    let (namesrv, cluster_image) = match (&spec.target.cluster, &spec.target.name_servers) {
        (Some(name), _) => {
            let cluster = match target::cluster(&context.client, &namespace, name).await? {
                Ok(cluster) => cluster,
                Err(unreachable) => return Ok(Err(unreachable)),
            };
            (name_server_addresses(&cluster), Some(cluster.spec.image))
        }
        (None, Some(name_servers)) => (name_servers.clone(), None),
        (None, None) => return Ok(Err(("NoTarget", "the target names no cluster".to_string()))),
    };
    let topics = match &spec.topic_pattern {
        None => spec.topics.clone(),
        Some(pattern) => {
            let names = match migrate::topic_names(&kafka) {
                Ok(names) => names,
                Err(error) => return Ok(Err(("SourceUnreachable", error.to_string()))),
            };
            match matching_topics(pattern, names.iter().map(String::as_str)) {
                Ok(topics) if topics.is_empty() => {
                    return Ok(Err((
                        "NoTopics",
                        format!("no Kafka topic matches {pattern:?}"),
                    )))
                }
                Ok(topics) => topics,
                Err(error) => return Ok(Err(("BadTopicPattern", error.to_string()))),
            }
        }
    };
    let image = spec
        .mirror
        .image
        .clone()
        .or(cluster_image)
        .unwrap_or_default();
    Ok(Ok(Ends {
        kafka,
        topics,
        namesrv,
        image,
    }))
}

fn mirror_name(migration: &RocketMigration) -> String {
    format!("{}-mirror", migration.name_any())
}

/// The mirror: one pod with a `rocketry migrate mirror` container per topic. Recreate, never
/// a rolling update: the mirror resumes from what Rocketry holds, which holds only while it is
/// the one writer of its queues, so an old and a new pod must never copy at once.
fn mirror(migration: &RocketMigration, ends: &Ends) -> Deployment {
    let spec = &migration.spec;
    let name = mirror_name(migration);
    let labels = std::collections::BTreeMap::from([
        ("app.kubernetes.io/name".to_string(), "rocketry".to_string()),
        (
            "app.kubernetes.io/instance".to_string(),
            migration.name_any(),
        ),
        (
            "app.kubernetes.io/component".to_string(),
            "mirror".to_string(),
        ),
        (
            "app.kubernetes.io/managed-by".to_string(),
            "rocketry-operator".to_string(),
        ),
    ]);
    let containers = ends
        .topics
        .iter()
        .enumerate()
        .map(|(index, topic)| {
            let port = METRICS_PORT + index as i32;
            let mut args = vec![
                "migrate".to_string(),
                "mirror".to_string(),
                "--bootstrap-servers".to_string(),
                spec.source.bootstrap_servers.clone(),
                "--source-topic".to_string(),
                topic.source.clone(),
                "--target-topic".to_string(),
                topic.target().to_string(),
                "--namesrv".to_string(),
                ends.namesrv.clone(),
                "--group".to_string(),
                format!("rocketry-mirror-{}", migration.name_any()),
                "--metrics-addr".to_string(),
                format!("0.0.0.0:{port}"),
            ];
            for (key, value) in &spec.source.config {
                args.push("--kafka-config".to_string());
                args.push(format!("{key}={value}"));
            }
            if spec.source.secret.is_some() {
                args.push("--kafka-config-dir".to_string());
                args.push(KAFKA_SECRET_DIR.to_string());
            }
            Container {
                name: format!("mirror-{index}"),
                image: Some(ends.image.clone()),
                image_pull_policy: Some(spec.mirror.image_pull_policy.as_str().to_string()),
                args: Some(args),
                ports: Some(vec![ContainerPort {
                    name: Some(format!("metrics-{index}")),
                    container_port: port,
                    ..ContainerPort::default()
                }]),
                resources: spec.mirror.resources.clone(),
                volume_mounts: spec.source.secret.as_ref().map(|_| {
                    vec![VolumeMount {
                        name: "kafka".to_string(),
                        mount_path: KAFKA_SECRET_DIR.to_string(),
                        read_only: Some(true),
                        ..VolumeMount::default()
                    }]
                }),
                security_context: Some(restricted_container_security()),
                ..Container::default()
            }
        })
        .collect();
    let volumes = spec.source.secret.as_ref().map(|secret| {
        vec![Volume {
            name: "kafka".to_string(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret.clone()),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        }]
    });
    Deployment {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: migration.namespace(),
            labels: Some(labels.clone()),
            owner_references: migration.controller_owner_ref(&()).map(|o| vec![o]),
            ..ObjectMeta::default()
        },
        spec: DeploymentSpec {
            replicas: Some(1),
            selector: LabelSelector {
                match_labels: Some(labels.clone()),
                ..LabelSelector::default()
            },
            strategy: Some(DeploymentStrategy {
                type_: Some("Recreate".to_string()),
                ..DeploymentStrategy::default()
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers,
                    volumes,
                    tolerations: (!spec.mirror.tolerations.is_empty())
                        .then(|| spec.mirror.tolerations.clone()),
                    security_context: Some(restricted_pod_security()),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        },
        ..Deployment::default()
    }
}

/// Writes the status with its conditions: `Ready` (at the phase wanted, or moving toward it
/// with nothing blocking) and `ParityVerified`. A newly blocked pass is a warning event.
async fn write_status(
    migration: &RocketMigration,
    context: &Context,
    previous: &RocketMigrationStatus,
    mut status: RocketMigrationStatus,
    outcome: std::result::Result<(), Blocked>,
) -> Result<()> {
    let generation = migration.metadata.generation;
    let at_wanted = status.phase == Some(migration.spec.phase);
    let (ready, reason, message) = match &outcome {
        Ok(()) if at_wanted => (
            true,
            "AtPhase",
            "the migration is at the phase wanted".to_string(),
        ),
        Ok(()) => (
            false,
            "Moving",
            format!("moving toward {}", migration.spec.phase.as_str()),
        ),
        Err((reason, message)) => (false, *reason, message.clone()),
    };
    if let Err((reason, message)) = &outcome {
        let before = previous.conditions.iter().find(|c| c.type_ == "Ready");
        if before.is_none_or(|c| c.reason != *reason || c.message != *message) {
            publish(
                context,
                migration,
                EventType::Warning,
                reason,
                message.clone(),
            )
            .await;
        }
    }
    let needed = migration.spec.parity.clean_windows;
    let verified = status.clean_windows >= needed;
    let conditions: Vec<Condition> = vec![
        next_condition(
            &previous.conditions,
            generation,
            "Ready",
            ready,
            reason,
            message,
        ),
        next_condition(
            &previous.conditions,
            generation,
            "ParityVerified",
            verified,
            if verified { "Clean" } else { "NotYet" },
            format!(
                "{} of {needed} windows clean in a row",
                status.clean_windows
            ),
        ),
    ];
    status.conditions = conditions;
    let mut value = serde_json::to_value(&status).map_err(|source| Error::Serialize {
        kind: "rocketmigration",
        name: migration.name_any(),
        source,
    })?;
    // A merge patch keeps what it does not mention: cleared fields are written as null.
    for key in ["nextWindowMs", "lastParity"] {
        value
            .as_object_mut()
            .map(|o| o.entry(key).or_insert(serde_json::Value::Null));
    }
    patch_object_status(&context.client, migration, "rocketmigration", value).await
}
