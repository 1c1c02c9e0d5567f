//! CONSUMER_SEND_MSG_BACK (36): a push consumer's listener failed on a message; store a
//! copy for a later retry, or in the dead-letter queue once the attempts are spent.

use message::property;
use protocol::body::perm;
use protocol::header::ConsumerSendMsgBackRequestHeader;
use protocol::{RemotingCommand, ResponseCode};
use store::PutMessage;

use super::{header, or_refuse, reply, subscription_group, success, writeable};
use crate::broker::retry::{self, max_reconsume_times};
use crate::broker::schedule;
use crate::broker::topic_config::retry_topic;
use crate::broker::Broker;

pub async fn process(broker: &Broker, request: &RemotingCommand) -> RemotingCommand {
    let h: ConsumerSendMsgBackRequestHeader = header!(request);
    let group = or_refuse!(request, subscription_group(broker, &h.group));
    or_refuse!(request, writeable(broker));
    // A group without retry queues drops failed messages, as RocketMQ does.
    if group.retry_queue_nums <= 0 {
        return success(request);
    }
    let retry = retry_topic(&h.group);
    if broker.topics.get(&retry).is_none() {
        if let Err(error) =
            broker
                .topics
                .ensure(&retry, group.retry_queue_nums, perm::READ | perm::WRITE)
        {
            return reply(request, ResponseCode::SystemError, error.to_string());
        }
        broker.topics_changed.notify_one();
    }
    let stored = u64::try_from(h.offset)
        .ok()
        .and_then(|offset| broker.store.message_at(offset));
    let Some(bytes) = stored else {
        return reply(
            request,
            ResponseCode::SystemError,
            format!("look message by offset failed, {}", h.offset),
        );
    };
    let parsed = message::StoredMessage::parse(&bytes).and_then(|stored| {
        stored.to_message().map(|message| {
            (
                message,
                stored.reconsume_times(),
                stored.sys_flag(),
                stored.born_timestamp(),
                stored.born_host(),
            )
        })
    });
    let (mut message, reconsume_times, sys_flag, born_timestamp, born_host) = match parsed {
        Ok(parts) => parts,
        Err(error) => return reply(request, ResponseCode::SystemError, error.to_string()),
    };
    if message.properties.get(property::RETRY_TOPIC).is_none() {
        let origin = h
            .origin_topic
            .clone()
            .unwrap_or_else(|| message.topic.to_string());
        message.properties.insert(property::RETRY_TOPIC, origin);
    }
    if message
        .properties
        .get(property::ORIGIN_MESSAGE_ID)
        .is_none()
    {
        let origin = h
            .origin_msg_id
            .clone()
            .or_else(|| message.unique_key().map(str::to_string));
        if let Some(origin) = origin {
            message
                .properties
                .insert(property::ORIGIN_MESSAGE_ID, origin);
        }
    }
    let max = max_reconsume_times(h.max_reconsume_times, &group);
    let queue_id = if reconsume_times >= max || h.delay_level < 0 {
        match retry::to_dead_letter(broker, &h.group, &mut message) {
            Ok(queue_id) => queue_id,
            Err(error) => return reply(request, ResponseCode::SystemError, error.to_string()),
        }
    } else {
        let level = if h.delay_level == 0 {
            3 + reconsume_times
        } else {
            h.delay_level
        };
        message.topic = retry.as_str().into();
        message
            .properties
            .insert(property::DELAY, level.to_string());
        (born_timestamp.rem_euclid(group.retry_queue_nums as i64)) as i32
    };
    message.properties.insert(property::WAIT, "false");
    let mut put = PutMessage {
        sys_flag,
        born_timestamp,
        reconsume_times: reconsume_times + 1,
        ..PutMessage::new(message, queue_id, born_host, broker.store_host)
    };
    schedule::defer(&mut put, &broker.delay_levels);
    match broker.append(std::slice::from_ref(&put)) {
        Ok(appended) => {
            let _ = appended.durable.await;
            success(request)
        }
        Err(error) => reply(request, ResponseCode::SystemError, error.to_string()),
    }
}
