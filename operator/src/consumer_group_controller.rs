//! The RocketConsumerGroup controller: puts the group's settings on every broker, reads its
//! lag and consumers every few seconds, and sets its workload's replicas through the scale
//! subresource as `consumer_group::decide` says, unless an HPA (KEDA's included) owns them.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Client, ResourceExt};
use protocol::body::SubscriptionGroupConfig;

use crate::admin;
use crate::consumer_group::{
    self, ConsumeFrom, ConsumerScaling, Load, Reason, RocketConsumerGroup, Sample,
};
use crate::controller::{kube_error, patch_ready_status, publish, Context};
use crate::target::{self, Brokers};
use crate::topic::AUTOSCALING_ANNOTATION;
use crate::{Error, Result};

/// How often the lag is read: "every few seconds", as a scaler should.
const POLL: Duration = Duration::from_secs(10);

pub async fn reconcile(group: Arc<RocketConsumerGroup>, context: Arc<Context>) -> Result<Action> {
    context
        .pacer
        .run(group.as_ref(), pass(&group, &context))
        .await
}

/// One pass: settings, lag, and the replicas.
async fn pass(group: &RocketConsumerGroup, context: &Context) -> Result<Duration> {
    let namespace = group.namespace().unwrap_or_else(|| "default".to_string());
    let name = group_name(group);
    let mut status = serde_json::json!({
        "group": name,
        "observedGeneration": group.metadata.generation,
    });
    let brokers = match target::resolve(&context.client, &namespace, &group.spec.target).await? {
        Ok(brokers) => brokers,
        Err((reason, message)) => {
            return finish(group, context, status, false, reason, message).await
        }
    };
    if let Err(message) = put_settings(&brokers, group, &name).await {
        return finish(group, context, status, false, "BrokerUnreachable", message).await;
    }
    let (mut load, oldest) = match measure(&brokers, group, &name).await {
        Ok(measured) => measured,
        Err(message) => {
            return finish(group, context, status, false, "BrokerUnreachable", message).await
        }
    };
    let now = Timestamp::now();
    let previous = group.status.clone().unwrap_or_default();
    load.consume_rate = consumer_group::consume_rate(&load, &previous, now);
    status["lag"] = load.lag.into();
    status["lagSeconds"] = oldest
        .filter(|_| load.lag > 0)
        .map(|ms| ((now.as_millisecond() - ms) / 1000).max(0))
        .unwrap_or(0)
        .into();
    status["consumeRate"] = load.consume_rate.into();
    status["consumersOnline"] = load.online.into();
    status["queues"] = load.queues.into();
    status["sample"] = serde_json::to_value(Sample {
        lag: load.lag,
        committed: Some(load.committed),
        at: Time(now),
    })
    .unwrap_or_default();
    if let Some(scaling) = &group.spec.scaling {
        scale(group, context, &namespace, scaling, load, now, &mut status).await?;
    }
    finish(
        group,
        context,
        status,
        true,
        "Configured",
        format!(
            "the group's settings are on every broker of {} groups",
            brokers.groups.len()
        ),
    )
    .await
}

pub fn error_policy(group: Arc<RocketConsumerGroup>, error: &Error, _: Arc<Context>) -> Action {
    tracing::warn!(group = %group.name_any(), %error, "consumer group reconcile failed");
    Action::requeue(POLL)
}

fn group_name(group: &RocketConsumerGroup) -> String {
    group
        .spec
        .group_name
        .clone()
        .unwrap_or_else(|| group.name_any())
}

/// The group's retry, start and enable settings on every member, where they differ.
async fn put_settings(
    brokers: &Brokers,
    group: &RocketConsumerGroup,
    name: &str,
) -> std::result::Result<(), String> {
    let mut failures = Vec::new();
    for (_, addr) in brokers.addresses() {
        let result = async {
            let existing = admin::subscription_group(&brokers.access, addr, name).await?;
            let mut wanted = existing
                .clone()
                .unwrap_or_else(|| SubscriptionGroupConfig::named(name));
            wanted.retry_max_times = group.spec.max_reconsume_times;
            wanted.consume_enable = group.spec.consume_enabled;
            wanted.consume_from_min_enable = group.spec.consume_from == ConsumeFrom::Earliest;
            if existing.as_ref() != Some(&wanted) {
                admin::put_subscription_group(&brokers.access, addr, &wanted).await?;
            }
            Ok::<_, Error>(())
        };
        if let Err(error) = result.await {
            failures.push(error.to_string());
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("; "))
    }
}

/// The group's load over its topics and every broker group (read from each group's first
/// member that answers), and the store time of the oldest message it consumed last on a
/// lagging queue.
async fn measure(
    brokers: &Brokers,
    group: &RocketConsumerGroup,
    name: &str,
) -> std::result::Result<(Load, Option<i64>), String> {
    let mut load = Load::default();
    let mut oldest: Option<i64> = None;
    for topic in &group.spec.topics {
        let mut topic_queues = 0;
        for (broker_group, members) in &brokers.groups {
            let mut last_error = None;
            let mut found = None;
            for addr in members {
                match admin::group_load(&brokers.access, addr, name, topic).await {
                    Ok(measured) => {
                        found = Some(measured);
                        break;
                    }
                    Err(error) => last_error = Some(error.to_string()),
                }
            }
            let Some(measured) = found else {
                return Err(format!(
                    "{broker_group}: {}",
                    last_error.unwrap_or_else(|| "no member".to_string())
                ));
            };
            load.lag += measured.lag;
            load.consume_rate += measured.consume_tps;
            load.committed += measured.committed;
            load.online = load.online.max(measured.online as i32);
            topic_queues += measured.queues;
            if let Some(at) = measured.oldest_consumed_ms {
                oldest = Some(oldest.map_or(at, |before| before.min(at)));
            }
        }
        load.queues = load.queues.max(topic_queues);
    }
    Ok((load, oldest))
}

/// Decides the replicas and sets them, unless something else owns them.
async fn scale(
    group: &RocketConsumerGroup,
    context: &Context,
    namespace: &str,
    scaling: &ConsumerScaling,
    load: Load,
    now: Timestamp,
    status: &mut serde_json::Value,
) -> Result<()> {
    let previous = group.status.clone().unwrap_or_default();
    let target = &scaling.target;
    let Some(api) = scale_api(
        &context.client,
        namespace,
        &target.api_version,
        &target.kind,
    )
    .await
    else {
        status["reason"] = serde_json::Value::Null;
        tracing::warn!(group = %group.name_any(), kind = %target.kind, "the scale target's kind is not served");
        return Ok(());
    };
    let replicas = match api.get_scale(&target.name).await {
        Ok(scale) => scale.spec.and_then(|spec| spec.replicas).unwrap_or(0),
        Err(kube::Error::Api(status)) if status.code == 404 => {
            tracing::debug!(group = %group.name_any(), target = %target.name, "no scale target yet");
            return Ok(());
        }
        Err(source) => {
            return Err(kube_error("get scale of", "scale target", &target.name)(
                source,
            ))
        }
    };
    let mut decision = consumer_group::decide(scaling, replicas, load, &previous, now);
    let paused = group
        .annotations()
        .get(AUTOSCALING_ANNOTATION)
        .map(String::as_str)
        == Some("paused");
    let owner = hpa_owning(&context.client, namespace, target).await?;
    let note = if let Some(hpa) = &owner {
        decision.reason = Reason::OwnedByHpa;
        format!("HorizontalPodAutoscaler {hpa} scales {} {}; the operator reports {} wanted replicas and leaves them to it", target.kind, target.name, decision.wanted)
    } else if paused {
        decision.reason = Reason::Paused;
        format!(
            "{AUTOSCALING_ANNOTATION}: paused; {} replicas wanted",
            decision.wanted
        )
    } else {
        format!(
            "{} -> {} replicas: lag {}, {:.0} msg/s consumed by {} consumers, {} queues, {} wanted",
            replicas,
            decision.replicas,
            load.lag,
            load.consume_rate,
            load.online,
            load.queues,
            decision.wanted
        )
    };
    let acts = owner.is_none() && !paused && decision.replicas != replicas;
    if acts {
        api.patch_scale(
            &target.name,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({ "spec": { "replicas": decision.replicas } })),
        )
        .await
        .map_err(kube_error("patch scale of", "scale target", &target.name))?;
        status["lastScaleTime"] = serde_json::to_value(Time(now)).unwrap_or_default();
    }
    // An event and a count for every change made, and for every refusal when it begins.
    let refusal = matches!(
        decision.reason,
        Reason::QueueLimited | Reason::AtMaxReplicas | Reason::OwnedByHpa
    );
    if acts || (refusal && previous.reason != Some(decision.reason)) {
        context
            .metrics
            .scaling_decision("consumers", decision.reason.as_str());
        let note = if decision.reason == Reason::QueueLimited {
            format!("{note}: a clustering group gives each queue to one consumer, so more replicas than queues would sit idle; the topic needs more queues")
        } else {
            note
        };
        let kind = if refusal {
            EventType::Warning
        } else {
            EventType::Normal
        };
        publish(context, group, kind, decision.reason.as_str(), note).await;
    }
    status["replicas"] = (if acts { decision.replicas } else { replicas }).into();
    status["wantedReplicas"] = decision.wanted.into();
    status["recommendedReplicas"] = decision.recommended.into();
    status["reason"] = serde_json::to_value(decision.reason).unwrap_or_default();
    status["perReplicaRate"] = serde_json::to_value(decision.per_replica_rate).unwrap_or_default();
    status["belowSince"] = serde_json::to_value(&decision.below_since).unwrap_or_default();
    Ok(())
}

/// An Api over objects of `kind` that serves their scale subresource; `None` when the
/// apiserver does not know the kind.
async fn scale_api(
    client: &Client,
    namespace: &str,
    api_version: &str,
    kind: &str,
) -> Option<Api<DynamicObject>> {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let gvk = GroupVersionKind::gvk(group, version, kind);
    let (resource, _) = kube::discovery::pinned_kind(client, &gvk).await.ok()?;
    Some(Api::namespaced_with(client.clone(), namespace, &resource))
}

/// The HPA that scales the same workload, if any. KEDA's ScaledObjects work through an HPA
/// of their own, so this finds those too.
async fn hpa_owning(
    client: &Client,
    namespace: &str,
    target: &consumer_group::ScaleTarget,
) -> Result<Option<String>> {
    let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), namespace);
    let list = hpas.list(&ListParams::default()).await.map_err(kube_error(
        "list",
        "horizontalpodautoscaler",
        namespace,
    ))?;
    Ok(list
        .items
        .into_iter()
        .find(|hpa| {
            let reference = &hpa.spec.scale_target_ref;
            reference.kind == target.kind
                && reference.name == target.name
                && api_group(reference.api_version.as_deref().unwrap_or_default())
                    == api_group(&target.api_version)
        })
        .map(|hpa| hpa.name_any()))
}

fn api_group(api_version: &str) -> &str {
    api_version.split_once('/').map_or("", |(group, _)| group)
}

/// Writes the status with the Ready condition; the next pass is due after [`POLL`].
async fn finish(
    group: &RocketConsumerGroup,
    context: &Context,
    status: serde_json::Value,
    ready: bool,
    reason: &str,
    message: String,
) -> Result<Duration> {
    let previous = group.status.as_ref().map(|s| s.conditions.as_slice());
    patch_ready_status(
        &context.client,
        group,
        "rocketconsumergroup",
        previous.unwrap_or_default(),
        status,
        ready,
        reason,
        message,
    )
    .await?;
    Ok(POLL)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_hpa_is_matched_by_api_group_not_version() {
        assert_eq!(api_group("apps/v1"), "apps");
        assert_eq!(api_group("v1"), "");
        assert_eq!(api_group("apps/v1beta2"), api_group("apps/v1"));
    }
}
