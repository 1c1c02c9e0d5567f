//! PULL_MESSAGE (11) and LITE_PULL_MESSAGE (361), with long polling: a pull that finds
//! nothing new is held until a message arrives in its queue or its suspend time runs out.

use std::sync::Arc;
use std::time::Duration;

use protocol::body::{perm, SubscriptionData, SubscriptionGroupConfig, MASTER_ID};
use protocol::header::{pull_sys_flag, PullMessageRequestHeader, PullMessageResponseHeader};
use protocol::{RemotingCommand, ResponseCode};
use store::{GetMessageResult, GetMessageStatus, MessageFilter};

use super::{header, or_refuse, reply, subscription_group, Refusal};
use crate::broker::client_manager::Unsubscribed;
use crate::broker::{page_cache, Broker};
use crate::filter::{self, SubscriptionFilter};
use crate::server::Answer;

/// RocketMQ's transfer limits for messages still in memory
/// (`maxTransferBytesOnMessageInMemory`, `maxTransferCountOnMessageInMemory`).
const MAX_TRANSFER_BYTES: usize = 256 * 1024;
const MAX_TRANSFER_COUNT: usize = 32;

/// The Java client waits 30 s for a suspended pull (`CONSUMER_TIMEOUT_MILLIS_WHEN_SUSPEND`),
/// so a hold must end before that whatever suspend time the request asks for.
const MAX_HOLD: Duration = Duration::from_secs(28);

pub async fn process(broker: &Broker, request: &RemotingCommand) -> Answer {
    let header: PullMessageRequestHeader = header!(request);
    if !perm::is_readable(broker.permission() as i32) {
        return Answer::from(reply(
            request,
            ResponseCode::NoPermission,
            format!(
                "the broker[{}] pulling message is forbidden",
                broker.config.broker_ip1
            ),
        ));
    }
    let group = or_refuse!(request, subscription_group(broker, &header.consumer_group));
    if !group.consume_enable {
        return Answer::from(reply(
            request,
            ResponseCode::NoPermission,
            format!(
                "subscription group no permission, {}",
                header.consumer_group
            ),
        ));
    }
    let Some(topic) = broker.topics.get(&header.topic) else {
        return Answer::from(reply(
            request,
            ResponseCode::TopicNotExist,
            format!("topic[{}] not exist, apply first please!", header.topic),
        ));
    };
    if !perm::is_readable(topic.perm) {
        return Answer::from(reply(
            request,
            ResponseCode::NoPermission,
            format!("the topic[{}] pulling message is forbidden", header.topic),
        ));
    }
    if header.queue_id < 0 || header.queue_id >= topic.read_queue_nums {
        return Answer::from(reply(
            request,
            ResponseCode::InvalidParameter,
            format!(
                "queueId[{}] is illegal, topic:[{}] topicConfig.readQueueNums:[{}] consumer:[{}]",
                header.queue_id, header.topic, topic.read_queue_nums, header.consumer_group
            ),
        ));
    }
    let filter = or_refuse!(request, filter_of(broker, &header));
    let follower = !broker.writes_here();
    if follower && !broker.config.slave_read_enable {
        return slave_read_disabled(broker, request, &header);
    }

    let suspend = pull_sys_flag::has_suspend(header.sys_flag);
    // The leader's offsets are the group's (followers copy them): a follower keeps none that
    // a pull commits, as RocketMQ's slave does not.
    if pull_sys_flag::has_commit_offset(header.sys_flag) && !follower {
        broker.offsets.commit(
            &header.topic,
            &header.consumer_group,
            header.queue_id,
            header.commit_offset,
        );
    }
    let mut result = read(broker, &header, &filter);
    if suspend && nothing_yet(result.status, header.queue_offset) && !broker.is_stopping() {
        let hold = if broker.config.long_polling_enable {
            Duration::from_millis(header.suspend_timeout_millis.max(0) as u64)
        } else {
            Duration::from_millis(broker.config.short_polling_time_mills)
        }
        .min(MAX_HOLD);
        let wakeup = broker.pulls.hold(
            &header.topic,
            header.queue_id,
            header.queue_offset,
            filter.wake_codes(),
        );
        // A message may have landed between the read and the hold: look once more
        // before sleeping, so it is not left waiting for the whole hold.
        if broker.store.max_offset(&header.topic, header.queue_id) <= header.queue_offset {
            let _held = broker.metrics.pull_held();
            let _ = tokio::time::timeout(hold, wakeup).await;
        }
        result = read(broker, &header, &filter);
    }
    if !result.messages.is_empty() {
        broker.offsets.pulled(
            &header.topic,
            &header.consumer_group,
            header.queue_id,
            result.next_begin_offset,
        );
    }
    broker
        .stats
        .record_get(&header.topic, &header.consumer_group, result.messages.len());
    broker.metrics.record_out(
        &header.topic,
        &header.consumer_group,
        result.messages.len(),
        result.buffer_total_size(),
    );
    let in_memory = page_cache::holds(
        result.behind,
        broker.config.access_message_in_memory_max_ratio,
    );
    let next_from = next_pull_from(broker.config.slave_read_enable, in_memory, &group);
    answer(request, header.queue_offset, result, next_from)
}

/// Where the consumer's next pull of this queue goes (`suggestWhichBrokerId`), by RocketMQ's
/// rule: with `slaveReadEnable`, a consumer reading further behind than the page cache holds
/// goes to the group's `whichBrokerWhenConsumeSlowly` (a follower), and one that has caught
/// up to its `brokerId` (the master); without it, always the master.
fn next_pull_from(
    slave_read_enable: bool,
    in_memory: bool,
    group: &SubscriptionGroupConfig,
) -> i64 {
    match (slave_read_enable, in_memory) {
        (false, _) => MASTER_ID,
        (true, true) => group.broker_id,
        (true, false) => group.which_broker_when_consume_slowly,
    }
}

/// A follower without `slaveReadEnable` serves no reads: PULL_RETRY_IMMEDIATELY, naming
/// the master, as RocketMQ's slave answers. The consumer keeps its offset (a client that
/// found no master in its routes came here, and pulls again once it does).
fn slave_read_disabled(
    broker: &Broker,
    request: &RemotingCommand,
    header: &PullMessageRequestHeader,
) -> Answer {
    let answer = PullMessageResponseHeader {
        suggest_which_broker_id: MASTER_ID,
        next_begin_offset: header.queue_offset,
        min_offset: broker.store.min_offset(&header.topic, header.queue_id),
        max_offset: broker.store.max_offset(&header.topic, header.queue_id),
        ..PullMessageResponseHeader::default()
    };
    Answer::from(
        reply(
            request,
            ResponseCode::PullRetryImmediately,
            "this broker is a follower and slaveReadEnable is off",
        )
        .with_header(&answer),
    )
}

/// Whether the pull found nothing only because nothing is written at its offset yet, so a
/// suspended pull waits for the next message: RocketMQ holds every PULL_NOT_FOUND. A queue
/// never written counts too; `%RETRY%<group>` usually is one (the store has no consume
/// queue for it before its first message), and answering it at once sends every idle push
/// consumer into a re-pull loop. OFFSET_FOUND_NULL is PULL_NOT_FOUND as well, but its next
/// offset is past the hole, so the client's re-pull makes progress and holding it would
/// only delay the messages behind the hole.
fn nothing_yet(status: GetMessageStatus, requested_offset: i64) -> bool {
    use GetMessageStatus::*;
    match status {
        OffsetOverflowOne => true,
        NoMessageInQueue | NoMatchedLogicQueue => requested_offset == 0,
        _ => false,
    }
}

fn read(
    broker: &Broker,
    header: &PullMessageRequestHeader,
    filter: &SubscriptionFilter,
) -> GetMessageResult {
    let max_count = (header.max_msg_nums.max(1) as usize).min(MAX_TRANSFER_COUNT);
    let filter = (!filter.is_all()).then_some(filter as &dyn MessageFilter);
    broker.store.get_message(
        &header.topic,
        header.queue_id,
        header.queue_offset,
        max_count,
        MAX_TRANSFER_BYTES,
        filter,
    )
}

/// The filter this pull applies: the subscription in the request when it carries one, else
/// the one the group registered by heartbeat (a Java push consumer sends none), compiled when
/// it was registered.
fn filter_of(
    broker: &Broker,
    header: &PullMessageRequestHeader,
) -> Result<Arc<SubscriptionFilter>, Refusal> {
    if pull_sys_flag::has_subscription(header.sys_flag) {
        let sub_string = header.subscription.clone().unwrap_or_default();
        let carried = SubscriptionData {
            topic: header.topic.clone(),
            tags_set: SubscriptionData::parse_tags(&sub_string),
            sub_string,
            sub_version: header.sub_version,
            expression_type: header.expression_type.clone(),
            ..SubscriptionData::default()
        };
        let compiled = SubscriptionFilter::compile(&carried)
            .map(Arc::new)
            .map_err(|error| error.to_string());
        return usable(broker, &carried, compiled);
    }
    let registered = broker
        .clients
        .subscribed(&header.consumer_group, &header.topic)
        .map_err(|missing| {
            let what = match missing {
                Unsubscribed::NoGroup => format!(
                    "the consumer's group info not exist, group: {}",
                    header.consumer_group
                ),
                Unsubscribed::NoTopic => format!(
                    "the consumer's subscription not exist, group: {}, topic: {}",
                    header.consumer_group, header.topic
                ),
            };
            Refusal(ResponseCode::SubscriptionNotExist, what)
        })?;
    let subscription = &registered.data;
    // A pull may carry a newer subVersion than the last heartbeat: the Java client bumps it
    // on every rebalance and skips a heartbeat when another is in flight, leaving the broker
    // a version behind until the next one (30 s). RocketMQ refuses such pulls until then.
    // A registered `*` can be served safely, since no newer expression can want a message
    // it would skip (the client re-filters by tag itself); retry topics are always `*`.
    let safe_to_serve = !filter::is_sql(subscription) && subscription.subscribes_all();
    if subscription.sub_version < header.sub_version && !safe_to_serve {
        return Err(Refusal(
            ResponseCode::SubscriptionNotLatest,
            format!(
                "the consumer's subscription not latest, group: {}, topic: {}",
                header.consumer_group, header.topic
            ),
        ));
    }
    usable(broker, subscription, registered.filter.clone())
}

/// A compiled subscription, refusing SQL92 unless the broker enables property filters.
fn usable(
    broker: &Broker,
    subscription: &SubscriptionData,
    compiled: Result<Arc<SubscriptionFilter>, String>,
) -> Result<Arc<SubscriptionFilter>, Refusal> {
    if filter::is_sql(subscription) && !broker.config.enable_property_filter {
        return Err(Refusal(
            ResponseCode::SystemError,
            "The broker does not support consumer to filter message by SQL92".into(),
        ));
    }
    compiled.map_err(|error| {
        Refusal(
            ResponseCode::SubscriptionParseFailed,
            format!(
                "parse the consumer's subscription[{}] failed: {error}",
                subscription.sub_string
            ),
        )
    })
}

/// Maps the store's answer to RocketMQ's pull response (`composeResponseHeader`).
fn answer(
    request: &RemotingCommand,
    requested_offset: i64,
    result: GetMessageResult,
    next_from: i64,
) -> Answer {
    use GetMessageStatus::*;
    let code = match result.status {
        Found => ResponseCode::Success,
        NoMatchedMessage | MessageWasRemoving => ResponseCode::PullRetryImmediately,
        NoMessageInQueue | NoMatchedLogicQueue => {
            if requested_offset == 0 {
                ResponseCode::PullNotFound
            } else {
                ResponseCode::PullOffsetMoved
            }
        }
        OffsetOverflowOne | OffsetFoundNull => ResponseCode::PullNotFound,
        OffsetOverflowBadly | OffsetTooSmall => ResponseCode::PullOffsetMoved,
    };
    let header = PullMessageResponseHeader {
        suggest_which_broker_id: next_from,
        next_begin_offset: result.next_begin_offset,
        min_offset: result.min_offset,
        max_offset: result.max_offset,
        ..PullMessageResponseHeader::default()
    };
    Answer {
        command: RemotingCommand::response_to(request, code, Some(format!("{:?}", result.status)))
            .with_header(&header),
        records: result.messages,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::RequestCode;

    /// The records leave as the store returned them (views of its mapped segments), not
    /// copied into the body: the writer sends them from there.
    #[test]
    fn a_found_pull_answers_with_the_stored_records_themselves() {
        let stored = vec![
            bytes::Bytes::from_static(b"first stored record"),
            bytes::Bytes::from_static(b"second"),
        ];
        let result = GetMessageResult {
            status: GetMessageStatus::Found,
            messages: stored.clone(),
            queue_offsets: vec![0, 1],
            next_begin_offset: 2,
            min_offset: 0,
            max_offset: 2,
            behind: 0,
        };
        let request = RemotingCommand::request(RequestCode::PullMessage, &());
        let answer = answer(&request, 0, result, MASTER_ID);
        assert_eq!(answer.command.code, ResponseCode::Success.as_i32());
        assert!(answer.command.body.is_empty());
        let places = |records: &[bytes::Bytes]| -> Vec<_> {
            records.iter().map(|r| (r.as_ptr(), r.len())).collect()
        };
        assert_eq!(places(&answer.records), places(&stored));
        let header: PullMessageResponseHeader = answer.command.decode_header().unwrap();
        assert_eq!(header.next_begin_offset, 2);
    }

    #[test]
    fn a_pull_waits_exactly_when_rocketmq_answers_pull_not_found_for_lack_of_messages() {
        use GetMessageStatus::*;
        let statuses = [
            Found,
            NoMatchedMessage,
            MessageWasRemoving,
            NoMessageInQueue,
            NoMatchedLogicQueue,
            OffsetTooSmall,
            OffsetOverflowOne,
            OffsetOverflowBadly,
            OffsetFoundNull,
        ];
        for status in statuses {
            for offset in [0, 7] {
                let result = GetMessageResult {
                    status,
                    messages: Vec::new(),
                    queue_offsets: Vec::new(),
                    next_begin_offset: offset,
                    min_offset: 0,
                    max_offset: offset,
                    behind: 0,
                };
                let code = answer(
                    &RemotingCommand::request(RequestCode::PullMessage, &()),
                    offset,
                    result,
                    MASTER_ID,
                )
                .command
                .code;
                let not_found = code == ResponseCode::PullNotFound.as_i32();
                assert_eq!(
                    nothing_yet(status, offset),
                    not_found && status != OffsetFoundNull,
                    "{status:?} at offset {offset}"
                );
            }
        }
    }

    #[test]
    fn a_lagging_consumer_is_sent_to_the_group_s_slow_consumer_broker_only_with_slave_reads() {
        let mut group = SubscriptionGroupConfig::named("g");
        group.which_broker_when_consume_slowly = 2;
        assert_eq!(next_pull_from(false, false, &group), MASTER_ID);
        assert_eq!(next_pull_from(false, true, &group), MASTER_ID);
        assert_eq!(next_pull_from(true, false, &group), 2);
        assert_eq!(next_pull_from(true, true, &group), MASTER_ID);
        group.broker_id = 3;
        assert_eq!(next_pull_from(true, true, &group), 3);
    }
}
