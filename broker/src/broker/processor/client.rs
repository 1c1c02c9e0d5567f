//! HEART_BEAT (34), UNREGISTER_CLIENT (35) and GET_CONSUMER_LIST_BY_GROUP (38): who the
//! producers and consumers are, so that consumers can split a topic's queues between them.

use std::time::Instant;

use protocol::body::{
    self, perm, CheckClientRequestBody, ConsumerListByGroupResponseBody, HeartbeatData,
    MessageModel,
};
use protocol::header::{GetConsumerListByGroupRequestHeader, UnregisterClientRequestHeader};
use protocol::{RemotingCommand, RequestCode, ResponseCode};
use tracing::{info, warn};

use super::{bad_header, header, reply, success};
use crate::broker::client_manager::ClientInfo;
use crate::broker::topic_config::retry_topic;
use crate::broker::Broker;
use crate::filter;
use crate::server::Channel;

pub async fn process(
    broker: &Broker,
    code: RequestCode,
    request: &RemotingCommand,
    channel: &Channel,
) -> RemotingCommand {
    match code {
        RequestCode::HeartBeat => heartbeat(broker, request, channel).await,
        RequestCode::UnregisterClient => {
            let h: UnregisterClientRequestHeader = header!(request);
            if let Some(group) = &h.producer_group {
                broker.clients.unregister_producer(group, channel);
            }
            if let Some(group) = &h.consumer_group {
                if broker.clients.unregister_consumer(group, channel) {
                    info!(%group, client = %h.client_id, "consumer left");
                    broker.group_changed(group);
                }
            }
            success(request)
        }
        RequestCode::CheckClientConfig => check_client_config(broker, request),
        _ => {
            let h: GetConsumerListByGroupRequestHeader = header!(request);
            let ids = broker.clients.consumer_ids(&h.consumer_group);
            if ids.is_empty() {
                return reply(
                    request,
                    ResponseCode::SystemError,
                    format!("no consumer for this group, {}", h.consumer_group),
                );
            }
            success(request).with_body(body::to_json(&ConsumerListByGroupResponseBody {
                consumer_id_list: ids,
            }))
        }
    }
}

async fn heartbeat(
    broker: &Broker,
    request: &RemotingCommand,
    channel: &Channel,
) -> RemotingCommand {
    let data: HeartbeatData = match body::from_json(&request.body) {
        Ok(data) => data,
        Err(error) => return bad_header(request, error),
    };
    let client = ClientInfo {
        client_id: data.client_id.clone(),
        channel: channel.clone(),
        language: request.language,
        version: request.version,
        last_seen: Instant::now(),
    };
    for producer in &data.producer_data_set {
        broker
            .clients
            .register_producer(&producer.group_name, client.clone());
    }
    let mut created = false;
    for consumer in &data.consumer_data_set {
        let group = match broker.groups.find_or_create(&consumer.group_name) {
            Ok(group) => group,
            Err(error) => return reply(request, ResponseCode::SystemError, error.to_string()),
        };
        // Clustering consumers retry through %RETRY%<group>; make sure it has a route.
        if let (Some(group), MessageModel::Clustering) = (&group, consumer.message_model) {
            let retry = retry_topic(&consumer.group_name);
            if broker.topics.get(&retry).is_none() {
                let queues = group.retry_queue_nums.max(1);
                match broker
                    .topics
                    .ensure(&retry, queues, perm::READ | perm::WRITE)
                {
                    Ok(_) => created = true,
                    Err(error) => warn!(%error, topic = %retry, "cannot create retry topic"),
                }
            }
        }
        if broker.clients.register_consumer(consumer, client.clone()) {
            info!(group = %consumer.group_name, client = %data.client_id, "consumer joined");
            broker.group_changed(&consumer.group_name);
        }
    }
    if created {
        broker.topics_created().await;
    }
    success(request)
}

/// A consumer with a SQL92 subscription asks at start whether the broker can serve it.
fn check_client_config(broker: &Broker, request: &RemotingCommand) -> RemotingCommand {
    let body: CheckClientRequestBody = match body::from_json(&request.body) {
        Ok(body) => body,
        Err(error) => return bad_header(request, error),
    };
    let subscription = &body.subscription_data;
    if !filter::is_sql(subscription) {
        return success(request);
    }
    if !broker.config.enable_property_filter {
        return reply(
            request,
            ResponseCode::SystemError,
            "The broker does not support consumer to filter message by SQL92",
        );
    }
    match filter::Sql92::compile(&subscription.sub_string) {
        Ok(_) => success(request),
        Err(error) => reply(
            request,
            ResponseCode::SubscriptionParseFailed,
            format!(
                "Parameter value {} is invalid: {error}",
                subscription.sub_string
            ),
        ),
    }
}
