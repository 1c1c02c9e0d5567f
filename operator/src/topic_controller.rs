//! The RocketTopic controller: serves the topic on every member of every broker group, moves
//! its queue counts by `topic::next` (a shrink one recorded step at a time), measures the lag
//! of the groups that consume it, and lets `topic::autoscale` choose the queue count when the
//! topic has a policy.
//!
//! Deleting a RocketTopic leaves the topic and its messages on the brokers: removing stored
//! messages is for `mqadmin deleteTopic`, on purpose.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::ResourceExt;
use protocol::body::{TopicConfig, TopicFilterType};

use crate::admin;
use crate::consumer_group::{Reason, RocketConsumerGroup};
use crate::controller::{kube_error, patch_object_status, patch_ready_status, publish, Context};
use crate::target::{self, Brokers};
use crate::topic::{self, Demand, Next, RocketTopic, Shrink, ShrinkStep, AUTOSCALING_ANNOTATION};
use crate::{Error, Result};

/// How often a topic is looked at again: its lag drives autoscaling, and a member that
/// restarted empty gets the topic back within this.
const RESYNC: Duration = Duration::from_secs(15);

pub async fn reconcile(topic: Arc<RocketTopic>, context: Arc<Context>) -> Result<Action> {
    context
        .pacer
        .run(topic.as_ref(), pass(&topic, &context))
        .await
}

/// One pass; returns when the next is due.
async fn pass(topic: &RocketTopic, context: &Context) -> Result<Duration> {
    let namespace = topic.namespace().unwrap_or_else(|| "default".to_string());
    let name = topic_name(topic);
    let previous = topic.status.clone().unwrap_or_default();
    let mut status = serde_json::json!({
        "topic": name,
        "observedGeneration": topic.metadata.generation,
    });
    let brokers = match target::resolve(&context.client, &namespace, &topic.spec.target).await? {
        Ok(brokers) => brokers,
        Err((reason, message)) => {
            return finish(topic, context, status, false, reason, message, RESYNC).await;
        }
    };
    let mut served = match read_served(&brokers, &name).await {
        Ok(served) => served,
        Err(message) => {
            return finish(
                topic,
                context,
                status,
                false,
                "BrokerUnreachable",
                message,
                RESYNC,
            )
            .await;
        }
    };
    let now = Timestamp::now();
    let largest = served
        .values()
        .flatten()
        .map(|c| c.read_queue_nums)
        .max()
        .unwrap_or(0);

    // What the groups that consume the topic left unread decides autoscaling.
    let demand = match measure(&brokers, &name).await {
        Ok((demand, lag)) => {
            status["lag"] = lag.into();
            Some(demand)
        }
        Err(error) => {
            tracing::debug!(topic = %name, %error, "could not measure the topic's lag");
            None
        }
    };
    let mut wanted = topic.spec.queues;
    if let Some(policy) = &topic.spec.autoscaling {
        wanted = previous.wanted_queues.unwrap_or(topic.spec.queues);
        let paused = topic
            .annotations()
            .get(AUTOSCALING_ANNOTATION)
            .map(String::as_str)
            == Some("paused");
        let since = previous
            .last_scale_time
            .as_ref()
            .map(|at| now.duration_since(at.0).unsigned_abs());
        let mut demand = demand;
        if let Some(demand) = demand.as_mut() {
            demand.queue_limited = queue_limited(context, &namespace, topic, &name).await?;
        }
        if let (Some(demand), false) = (demand, paused) {
            if let Some((queues, reason)) = topic::autoscale(policy, wanted, demand, since) {
                context.metrics.scaling_decision("queues", reason);
                publish(
                    context,
                    topic,
                    EventType::Normal,
                    reason,
                    format!(
                        "queues {wanted} -> {queues}: lag per queue {:.0} (target {}), {} consumers online{}",
                        demand.lag_per_queue,
                        policy.lag_per_queue,
                        demand.consumers,
                        match demand.queue_limited {
                            Some(true) => ", a consumer group held at the queue count",
                            _ => "",
                        }
                    ),
                )
                .await;
                if topic.spec.ordered && queues > wanted {
                    publish(
                        context,
                        topic,
                        EventType::Warning,
                        "ReorderingGrow",
                        "the topic is ordered: keys move to other queues while the old ones may still hold earlier messages of the same key (allowReorder)".to_string(),
                    )
                    .await;
                }
                wanted = queues;
                status["lastScaleTime"] = serde_json::to_value(Time(now)).unwrap_or_default();
            }
        }
    }
    status["wantedQueues"] = wanted.into();

    let step = topic::next(&topic.spec, wanted, largest, previous.shrink.as_ref(), now);
    let unreachable = |message: String| (false, "BrokerUnreachable", message, SOON);
    let (ready, reason, message, requeue) = match step {
        Next::Refused(reason, message) => {
            if !has_reason(topic, reason) {
                publish(context, topic, EventType::Warning, reason, message.clone()).await;
                context.metrics.scaling_decision("queues", reason);
            }
            (false, reason, message, RESYNC)
        }
        Next::Serve {
            read,
            write,
            shrink,
        } => {
            if shrink.is_some() && shrink != previous.shrink {
                // On record before the brokers change, so a restart knows a shrink is under way.
                patch_object_status(
                    &context.client,
                    topic,
                    "rockettopic",
                    serde_json::json!({ "shrink": shrink }),
                )
                .await?;
            }
            match (
                serve(&brokers, topic, &name, read, write, &mut served).await,
                shrink,
            ) {
                (Err(message), _) => unreachable(message),
                (Ok(()), Some(mut shrink)) => {
                    shrink.step = ShrinkStep::Draining;
                    shrink.writes_lowered_at = Some(Time(now));
                    publish(context, topic, EventType::Normal, "WritesLowered", format!(
                        "write queues {} -> {} on every broker group; the read queues stay at {} until the leaving queues are read to their end",
                        shrink.from, shrink.to, shrink.from)).await;
                    status["shrink"] = serde_json::to_value(&shrink).unwrap_or_default();
                    let message = format!(
                        "writes lowered to {}; waiting for producers to see it",
                        shrink.to
                    );
                    (false, "Shrinking", message, SOON)
                }
                (Ok(()), None) => {
                    if previous.shrink.is_some() {
                        status["shrink"] = serde_json::Value::Null;
                    }
                    if largest != read {
                        let what = if largest == 0 {
                            "TopicCreated"
                        } else {
                            "QueuesGrown"
                        };
                        let note = format!("{largest} -> {read} queues on every broker group");
                        publish(context, topic, EventType::Normal, what, note).await;
                    }
                    let message = format!("{read} read and write queues on every broker group");
                    (true, "Served", message, RESYNC)
                }
            }
        }
        Next::Wait { shrink, left } => {
            // A member that restarted may have lost the lowered writes: lower them again.
            match serve(&brokers, topic, &name, shrink.from, shrink.to, &mut served).await {
                Err(message) => unreachable(message),
                Ok(()) => {
                    let message = format!(
                        "writes lowered to {}; producers have {}s left to see it",
                        shrink.to,
                        left.as_secs()
                    );
                    (
                        false,
                        "Shrinking",
                        message,
                        left.max(Duration::from_secs(1)),
                    )
                }
            }
        }
        Next::Drain { mut shrink } => match drain(&brokers, topic, &name, &shrink, &mut served)
            .await
        {
            Err(message) => unreachable(message),
            Ok(Drained::Done) => {
                status["shrink"] = serde_json::Value::Null;
                publish(context, topic, EventType::Normal, "QueuesShrunk", format!(
                    "read queues {} -> {}: every group had read the leaving queues to their end", shrink.from, shrink.to)).await;
                let message = format!("{} read and write queues on every broker group", shrink.to);
                (true, "Served", message, RESYNC)
            }
            Ok(Drained::LateWrites) => {
                shrink.writes_lowered_at = Some(Time(now));
                status["shrink"] = serde_json::to_value(&shrink).unwrap_or_default();
                let message = format!(
                    "a producer wrote to queues {}..{} after they were drained; they are readable again and drain anew",
                    shrink.to, shrink.from
                );
                publish(
                    context,
                    topic,
                    EventType::Warning,
                    "LateWrites",
                    message.clone(),
                )
                .await;
                (false, "Draining", message, SOON)
            }
            Ok(Drained::Unread(messages, groups)) => {
                shrink.unread = Some(messages);
                status["shrink"] = serde_json::to_value(&shrink).unwrap_or_default();
                let message = if groups.is_empty() {
                    format!("queues {}..{} hold {messages} messages and no group consumes the topic; they stay readable", shrink.to, shrink.from)
                } else {
                    format!(
                        "{messages} messages in queues {}..{} are not yet read by {}",
                        shrink.to,
                        shrink.from,
                        groups.into_iter().collect::<Vec<_>>().join(", ")
                    )
                };
                (false, "Draining", message, SOON)
            }
        },
    };
    status["served"] = served_text(&served).into();
    finish(topic, context, status, ready, reason, message, requeue).await
}

/// How a drain pass ended.
enum Drained {
    /// The reads are lowered: nothing was left to read.
    Done,
    /// (messages, groups): what is still unread in the leaving queues, and by whom.
    Unread(i64, BTreeSet<String>),
    /// A message reached a leaving queue after the count; the reads stay.
    LateWrites,
}

/// The last step of a shrink: counts what is unread in the leaving queues and, once nothing
/// is, lowers the read queues.
async fn drain(
    brokers: &Brokers,
    topic: &RocketTopic,
    name: &str,
    shrink: &Shrink,
    served: &mut BTreeMap<String, Option<TopicConfig>>,
) -> std::result::Result<Drained, String> {
    // A member that restarted may have lost the lowered writes: lower them again first.
    serve(brokers, topic, name, shrink.from, shrink.to, served).await?;
    let leaving = shrink.to..shrink.from;
    let before = max_offsets(brokers, name, leaving.clone()).await?;
    let (messages, groups) = unread(brokers, name, shrink.to).await?;
    if messages > 0 {
        return Ok(Drained::Unread(messages, groups));
    }
    serve(brokers, topic, name, shrink.to, shrink.to, served).await?;
    // Brokers (Apache RocketMQ's too) take a send to any queue below the read count, so a
    // producer whose routes are older than the grace may have written to a leaving queue
    // between the count and the lowered reads. Such a message would be stranded: the
    // leaving queues are made readable again and drained anew.
    if max_offsets(brokers, name, leaving).await? != before {
        serve(brokers, topic, name, shrink.from, shrink.to, served).await?;
        return Ok(Drained::LateWrites);
    }
    Ok(Drained::Done)
}

/// The max offset of each of `queues` on every member, in a fixed order.
async fn max_offsets(
    brokers: &Brokers,
    topic: &str,
    queues: std::ops::Range<i32>,
) -> std::result::Result<Vec<i64>, String> {
    let mut offsets = Vec::new();
    for (group, addr) in brokers.addresses() {
        let found = admin::max_offsets(&brokers.access, addr, topic, queues.clone())
            .await
            .map_err(|error| format!("{group}: {error}"))?;
        offsets.extend(found);
    }
    Ok(offsets)
}

/// How soon a topic in the middle of a change is looked at again.
const SOON: Duration = Duration::from_secs(5);

pub fn error_policy(topic: Arc<RocketTopic>, error: &Error, _: Arc<Context>) -> Action {
    tracing::warn!(topic = %topic.name_any(), %error, "topic reconcile failed");
    Action::requeue(Duration::from_secs(10))
}

fn topic_name(topic: &RocketTopic) -> String {
    topic
        .spec
        .topic_name
        .clone()
        .unwrap_or_else(|| topic.name_any())
}

fn has_reason(topic: &RocketTopic, reason: &str) -> bool {
    topic
        .status
        .as_ref()
        .and_then(|status| status.conditions.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|condition| condition.reason == reason)
}

/// Each member's config of the topic (`None` where it has none); an error names the members
/// that did not answer.
async fn read_served(
    brokers: &Brokers,
    topic: &str,
) -> std::result::Result<BTreeMap<String, Option<TopicConfig>>, String> {
    let calls = brokers.addresses().map(|(_, addr)| async move {
        (
            addr.to_string(),
            admin::topic_config(&brokers.access, addr, topic).await,
        )
    });
    let mut served = BTreeMap::new();
    let mut failures = Vec::new();
    for (addr, result) in futures::future::join_all(calls).await {
        match result {
            Ok(config) => {
                served.insert(addr, config);
            }
            Err(error) => failures.push(error.to_string()),
        }
    }
    if failures.is_empty() {
        Ok(served)
    } else {
        Err(failures.join("; "))
    }
}

/// Puts `read`/`write` queues on every member whose config differs.
async fn serve(
    brokers: &Brokers,
    topic: &RocketTopic,
    name: &str,
    read: i32,
    write: i32,
    served: &mut BTreeMap<String, Option<TopicConfig>>,
) -> std::result::Result<(), String> {
    let perm = topic.spec.permission.bits();
    let mut failures = Vec::new();
    for (addr, config) in served.iter_mut() {
        let mut wanted = config.clone().unwrap_or_else(|| TopicConfig {
            topic_name: name.to_string(),
            topic_filter_type: TopicFilterType::SingleTag,
            ..TopicConfig::default()
        });
        wanted.read_queue_nums = read;
        wanted.write_queue_nums = write;
        wanted.perm = perm;
        wanted.order = topic.spec.ordered;
        if config.as_ref() == Some(&wanted) {
            continue;
        }
        match admin::put_topic(&brokers.access, addr, &wanted).await {
            Ok(()) => *config = Some(wanted),
            Err(error) => failures.push(error.to_string()),
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("; "))
    }
}

/// `8/8` when every member serves the same counts, else each distinct `read/write` by count.
fn served_text(served: &BTreeMap<String, Option<TopicConfig>>) -> String {
    let counts: BTreeSet<String> = served
        .values()
        .map(|config| match config {
            Some(config) => format!("{}/{}", config.read_queue_nums, config.write_queue_nums),
            None => "none".to_string(),
        })
        .collect();
    counts.into_iter().collect::<Vec<_>>().join(", ")
}

/// Unread messages in queues `first_queue` and above over every broker group, and the groups
/// that consume the topic.
async fn unread(
    brokers: &Brokers,
    topic: &str,
    first_queue: i32,
) -> std::result::Result<(i64, BTreeSet<String>), String> {
    let mut messages = 0;
    let mut groups = BTreeSet::new();
    for (group, members) in &brokers.groups {
        // Every member: a follower that takes over must not find what its leader's count missed.
        for addr in members {
            let found = admin::unread_from(&brokers.access, addr, topic, first_queue)
                .await
                .map_err(|error| format!("{group}: {error}"))?;
            messages += found.messages;
            groups.extend(found.groups);
        }
    }
    Ok((messages, groups))
}

/// The demand of the groups that consume `topic`, and the lag of the one furthest behind.
async fn measure(brokers: &Brokers, topic: &str) -> std::result::Result<(Demand, i64), String> {
    // Per consumer group: (lag, readable queues, most consumers seen online).
    let mut per_group: BTreeMap<String, (i64, i32, i32)> = BTreeMap::new();
    for (broker_group, members) in &brokers.groups {
        let Some(addr) = members.first() else {
            continue;
        };
        let groups = admin::consuming_groups(&brokers.access, addr, topic)
            .await
            .map_err(|error| format!("{broker_group}: {error}"))?;
        for group in groups {
            let load = admin::group_load(&brokers.access, addr, &group, topic)
                .await
                .map_err(|error| format!("{broker_group}: {error}"))?;
            let entry = per_group.entry(group).or_default();
            entry.0 += load.lag;
            entry.1 += load.queues;
            entry.2 = entry.2.max(load.online as i32);
        }
    }
    let mut demand = Demand::default();
    let mut lag = 0;
    for (group_lag, queues, online) in per_group.values() {
        lag = lag.max(*group_lag);
        if *queues > 0 {
            demand.lag_per_queue = demand.lag_per_queue.max(*group_lag as f64 / *queues as f64);
        }
        demand.consumers = demand.consumers.max(*online);
    }
    Ok((demand, lag))
}

/// Whether a RocketConsumerGroup that scales consumers of `name` on the same brokers is held
/// at the queue count (`QueueLimited`); `None` when no group scales consumers of it.
async fn queue_limited(
    context: &Context,
    namespace: &str,
    topic: &RocketTopic,
    name: &str,
) -> Result<Option<bool>> {
    let groups: Api<RocketConsumerGroup> = Api::namespaced(context.client.clone(), namespace);
    let scaling: Vec<RocketConsumerGroup> = groups
        .list(&ListParams::default())
        .await
        .map_err(kube_error("list", "rocketconsumergroup", namespace))?
        .items
        .into_iter()
        .filter(|group| {
            group.spec.target == topic.spec.target
                && group.spec.scaling.is_some()
                && group.spec.topics.iter().any(|t| t == name)
        })
        .collect();
    if scaling.is_empty() {
        return Ok(None);
    }
    Ok(Some(scaling.iter().any(|group| {
        group.status.as_ref().and_then(|status| status.reason) == Some(Reason::QueueLimited)
    })))
}

/// Writes the status with the Ready condition and returns when to look again.
async fn finish(
    topic: &RocketTopic,
    context: &Context,
    status: serde_json::Value,
    ready: bool,
    reason: &str,
    message: String,
    requeue: Duration,
) -> Result<Duration> {
    let previous = topic.status.as_ref().map(|s| s.conditions.as_slice());
    patch_ready_status(
        &context.client,
        topic,
        "rockettopic",
        previous.unwrap_or_default(),
        status,
        ready,
        reason,
        message,
    )
    .await?;
    Ok(requeue)
}
