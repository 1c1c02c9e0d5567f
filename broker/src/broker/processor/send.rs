//! SEND_MESSAGE (10), SEND_MESSAGE_V2 (310) and SEND_BATCH_MESSAGE (320).

use message::{property, Message, Properties};
use protocol::body::perm;
use protocol::header::{CompactString, SendMessageRequestHeader, SendMessageResponseHeader};
use protocol::{RemotingCommand, RequestCode, ResponseCode};
use store::PutMessage;

use super::{bad_header, or_refuse, reply, subscription_group, writeable, Refusal};
use crate::broker::topic_config::{
    validate_topic_name, DLQ_GROUP_TOPIC_PREFIX, NOT_ALLOWED_SEND_TOPICS, RETRY_GROUP_TOPIC_PREFIX,
};
use crate::broker::{retry, schedule, timer, transaction, Broker};
use crate::server::Channel;

pub async fn process(
    broker: &Broker,
    request: &RemotingCommand,
    channel: &Channel,
) -> RemotingCommand {
    let answer = answer(broker, request, channel).await;
    // A refused send is the client's only news of it; say why here too, or a refusal that
    // a client reports vaguely (the C++ client's "No route info" after its retries) leaves
    // nothing to go on.
    if answer.code != ResponseCode::Success.as_i32() {
        tracing::warn!(
            code = answer.code,
            remark = answer.remark.as_deref().unwrap_or(""),
            client = %channel.peer_addr(),
            "send refused"
        );
    }
    answer
}

async fn answer(broker: &Broker, request: &RemotingCommand, channel: &Channel) -> RemotingCommand {
    let header = match SendMessageRequestHeader::parse(request.code, &request.ext_fields) {
        Ok(header) => header,
        Err(error) => return bad_header(request, error),
    };
    if broker.is_stopping() {
        return reply(
            request,
            ResponseCode::ServiceNotAvailable,
            "the broker is shutting down",
        );
    }
    or_refuse!(request, writeable(broker));
    let half = message::sysflag::transaction_type(header.sys_flag)
        == message::sysflag::TRANSACTION_PREPARED;
    if half && broker.config.reject_transaction_message {
        return reply(
            request,
            ResponseCode::NoPermission,
            format!(
                "the broker[{}] sending transaction message is forbidden",
                broker.config.broker_ip1
            ),
        );
    }
    if let Err(reason) = validate_topic_name(&header.topic) {
        return reply(request, ResponseCode::InvalidParameter, reason);
    }
    if NOT_ALLOWED_SEND_TOPICS.contains(&header.topic.as_str()) {
        return reply(
            request,
            ResponseCode::NoPermission,
            format!("Sending message to topic[{}] is forbidden.", header.topic),
        );
    }
    let topic = match find_or_create_topic(broker, &header).await {
        Ok(Some(topic)) => topic,
        Ok(None) => {
            return reply(
                request,
                ResponseCode::TopicNotExist,
                format!("topic[{}] not exist, apply first please!", header.topic),
            )
        }
        Err(error) => return reply(request, ResponseCode::SystemError, error.to_string()),
    };
    let queue_count = topic.write_queue_nums.max(topic.read_queue_nums);
    let queue_id = if header.queue_id < 0 {
        // "Broker picks": any writable queue, spread by the producer's timestamp.
        (header
            .born_timestamp
            .rem_euclid(topic.write_queue_nums.max(1) as i64)) as i32
    } else {
        header.queue_id
    };
    if queue_id >= queue_count {
        return reply(
            request,
            ResponseCode::InvalidParameter,
            format!(
                "request queueId[{queue_id}] is illegal, {:?} Producer: {}",
                topic.topic_name,
                channel.peer_addr()
            ),
        );
    }
    let batch = request.code == RequestCode::SendBatchMessage.as_i32();
    if batch && header.topic.starts_with(RETRY_GROUP_TOPIC_PREFIX) {
        return reply(
            request,
            ResponseCode::MessageIllegal,
            format!(
                "batch request does not support retry group {}",
                header.topic
            ),
        );
    }
    let messages = match messages_of(broker, request, &header, batch) {
        Ok(messages) => messages,
        Err(error) => return reply(request, ResponseCode::MessageIllegal, error.to_string()),
    };
    // Only an empty batch body decodes to no messages; what follows, down to the answer's
    // first queue offset, needs at least one.
    if messages.is_empty() {
        return reply(
            request,
            ResponseCode::MessageIllegal,
            "the batch holds no messages",
        );
    }
    let mut puts: Vec<PutMessage> = messages
        .into_iter()
        .map(|message| PutMessage {
            sys_flag: header.sys_flag,
            born_timestamp: header.born_timestamp,
            reconsume_times: header.reconsume_times.unwrap_or(0),
            ..PutMessage::new(message, queue_id, channel.peer_addr(), broker.store_host)
        })
        .collect();
    if let Some(group) = retry::retry_group(&header.topic) {
        or_refuse!(
            request,
            retry_or_dead_letter(broker, group, &header, &mut puts[0])
        );
    }
    let now = crate::broker::clock::now_millis();
    for put in &mut puts {
        if half {
            // Delayed, if at all, once committed.
            transaction::prepare(put);
            continue;
        }
        match timer::arm(put, now, broker.config.timer_max_delay_sec) {
            // Apache's WHEEL_TIMER_NOT_ENABLE.
            Ok(true) if !broker.config.timer_wheel_enable => {
                return reply(
                    request,
                    ResponseCode::SystemError,
                    "accurate timer message is not enabled, timerWheelEnable is false",
                )
            }
            Ok(true) => continue,
            Ok(false) => {}
            Err(reason) => return reply(request, ResponseCode::MessageIllegal, reason),
        }
        schedule::defer(put, &broker.delay_levels);
    }
    // A single message's id goes back as its transaction id; a batch answers without one.
    let transaction_id = match &puts[..] {
        [single] if !batch => single.message.unique_key().map(str::to_owned),
        _ => None,
    };
    let appended = match broker.append(&puts) {
        Ok(appended) => appended,
        Err(error) => return store_failure(request, error),
    };
    if half {
        for appended in &appended.messages {
            broker.transactions.half_appended(appended.queue_offset);
        }
    }
    broker.stats.record_put(appended.messages.len());
    broker.metrics.record_in(&puts, &appended.messages);
    let mut code = ResponseCode::Success;
    let mut remark = None;
    if let Err(error) = appended.durable.await {
        (code, remark) = match error {
            store::Error::FlushTimeout { .. } => (ResponseCode::FlushDiskTimeout, None),
            other => (ResponseCode::SystemError, Some(other.to_string())),
        };
        if code == ResponseCode::SystemError {
            return RemotingCommand::response_to(request, code, remark);
        }
    }
    // A batch's ids, comma-joined, as Java's MessageBatch answer.
    let mut msg_id = String::with_capacity(appended.messages.len() * 33);
    for (index, stored) in appended.messages.iter().enumerate() {
        if index > 0 {
            msg_id.push(',');
        }
        message::push_offset_message_id(
            &mut msg_id,
            broker.store_host,
            stored.physical_offset as i64,
        );
    }
    let first = &appended.messages[0];
    let response_header = SendMessageResponseHeader {
        msg_id,
        queue_id,
        queue_offset: first.queue_offset,
        transaction_id,
        msg_region: Some(broker.config.region_id.as_str().into()),
        trace_on: Some(CompactString::const_new(trace_on(broker))),
        ..SendMessageResponseHeader::default()
    };
    RemotingCommand::response_to(request, code, remark).with_header(&response_header)
}

/// The topic as configured, created from its template first when the client asked for that.
async fn find_or_create_topic(
    broker: &Broker,
    header: &SendMessageRequestHeader,
) -> crate::error::Result<Option<protocol::body::TopicConfig>> {
    if let Some(topic) = broker.topics.get(&header.topic) {
        return Ok(Some(topic));
    }
    let created = if header.topic.starts_with(RETRY_GROUP_TOPIC_PREFIX)
        || header.topic.starts_with(DLQ_GROUP_TOPIC_PREFIX)
    {
        // RocketMQ's fallback for retry and dead-letter topics: one queue.
        Some(
            broker
                .topics
                .ensure(&header.topic, 1, perm::READ | perm::WRITE)?,
        )
    } else {
        broker.topics.create_from_template(
            &header.topic,
            &header.default_topic,
            header.default_topic_queue_nums,
            0,
        )?
    };
    if created.is_some() {
        broker.topics_created().await;
    }
    Ok(created)
}

/// The messages of a send: the body itself, or each entry of a batch body. The broker adds
/// CLUSTER, MSG_REGION, TRACE_ON and, when the producer sent none, a UNIQ_KEY of its own.
fn messages_of(
    broker: &Broker,
    request: &RemotingCommand,
    header: &SendMessageRequestHeader,
    batch: bool,
) -> message::Result<Vec<Message>> {
    // Decoded with room for the four properties set below, so that none regrows the list.
    const STAMPED: usize = 4;
    let mut messages = if batch {
        message::decode_batch(&request.body, &header.topic, STAMPED)?
    } else {
        let text = header.properties.as_deref().unwrap_or("");
        vec![Message {
            topic: header.topic.clone(),
            flag: header.flag,
            properties: Properties::decode_with_room(text, STAMPED),
            body: request.body.clone(),
        }]
    };
    for message in &mut messages {
        if message.unique_key().is_none() {
            message
                .properties
                .insert(property::UNIQ_KEY, broker.unique_ids.next_id());
        }
        message.properties.insert(
            property::CLUSTER,
            broker.config.broker_cluster_name.as_str(),
        );
        // As Apache stamps them: a traced consumer reads its trace region from the message
        // (without one the Java client's trace dispatcher drops its records) and skips
        // tracing when the broker's `traceOn` is false.
        message
            .properties
            .insert(property::MSG_REGION, broker.config.region_id.as_str());
        message
            .properties
            .insert(property::TRACE_ON, trace_on(broker));
    }
    Ok(messages)
}

/// The broker's `traceOn` as the TRACE_ON property and answer field spell it.
fn trace_on(broker: &Broker) -> &'static str {
    if broker.config.trace_on {
        "true"
    } else {
        "false"
    }
}

/// The answer for an append the store refused; nothing was stored.
fn store_failure(request: &RemotingCommand, error: store::Error) -> RemotingCommand {
    let code = match &error {
        store::Error::MessageTooLarge { .. } | store::Error::IllegalMessage(_) => {
            ResponseCode::MessageIllegal
        }
        store::Error::IllegalTopic(_) => ResponseCode::InvalidParameter,
        store::Error::NotAvailable(_)
        | store::Error::DiskFull { .. }
        | store::Error::WritesFenced(_) => ResponseCode::ServiceNotAvailable,
        _ => ResponseCode::SystemError,
    };
    let remark = match &error {
        store::Error::DiskFull { .. } => {
            "service not available now. It may be caused by the disk being full".to_string()
        }
        store::Error::WritesFenced(reason) => format!(
            "service not available now: this broker refuses writes after a disk flush \
             failed ({reason}); messages already acknowledged are kept and can be consumed; \
             restart the broker once the disk is healthy"
        ),
        other => other.with_sources(),
    };
    reply(request, code, remark)
}

/// A consumer (or its client after a failed send-back) sends a message to
/// `%RETRY%<group>` itself: past the group's attempts, or while the group consumes orderly
/// (it holds live queue locks), the message goes to the dead-letter queue instead
/// (`handleRetryAndDLQ`; note the strict `>` where send-back uses `>=`).
fn retry_or_dead_letter(
    broker: &Broker,
    group: &str,
    header: &SendMessageRequestHeader,
    put: &mut PutMessage,
) -> Result<(), Refusal> {
    let config = subscription_group(broker, group)?;
    let max = retry::max_reconsume_times(header.max_reconsume_times, &config);
    let orderly = !broker.locks.all_expired(group, std::time::Instant::now());
    if put.reconsume_times > max || orderly {
        put.queue_id = retry::to_dead_letter(broker, group, &mut put.message)
            .map_err(|error| Refusal(ResponseCode::SystemError, error.to_string()))?;
    }
    Ok(())
}
