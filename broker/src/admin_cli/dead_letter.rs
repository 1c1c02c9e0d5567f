//! `rocketry admin message resend-dlq --group G`: sends a group's dead letters back to the
//! topics they came from, so they are consumed again once the cause is fixed. Progress is
//! kept as the consumer offset of a dedicated group on the DLQ topic, so each dead letter
//! is resent once even if the command is run again.

use anyhow::{Context, Result};
use message::{property, Message};
use protocol::client::PullStatus;
use protocol::header::{
    pull_sys_flag, PullMessageRequestHeader, QueryConsumerOffsetRequestHeader,
    SendMessageRequestHeader, UpdateConsumerOffsetRequestHeader,
};
use protocol::Client;

use super::table::Table;
use super::{connect, route_masters};

/// The group whose offsets on `%DLQ%<group>` record what was resent.
const RESEND_GROUP: &str = "rocketry_dlq_resend";

/// The properties the dead-letter path added; the resent message goes without them.
const DEAD_LETTER_PROPERTIES: [&str; 5] = [
    property::DLQ_ORIGIN_TOPIC,
    property::DLQ_ORIGIN_MESSAGE_ID,
    property::DELAY,
    property::REAL_TOPIC,
    property::REAL_QID,
];

pub async fn resend(namesrv: &Client, group: &str) -> Result<Table> {
    let dlq = format!("%DLQ%{group}");
    let route = namesrv
        .get_route_info(&dlq)
        .await
        .with_context(|| format!("no dead-letter queue for group {group}"))?;
    let mut table = Table::new(["dead letter", "resent to", "new message id"]);
    for (_, addr) in route_masters(&route) {
        let broker = connect(&addr).await?;
        let queues = route
            .queue_datas
            .iter()
            .find(|q| {
                route
                    .broker_datas
                    .iter()
                    .any(|b| b.broker_name == q.broker_name)
            })
            .map_or(1, |q| q.read_queue_nums.max(1));
        for queue_id in 0..queues {
            resend_queue(namesrv, &broker, &dlq, queue_id, &mut table).await?;
        }
    }
    Ok(table)
}

async fn resend_queue(
    namesrv: &Client,
    broker: &Client,
    dlq: &str,
    queue_id: i32,
    table: &mut Table,
) -> Result<()> {
    let mut offset = broker
        .query_consumer_offset(&QueryConsumerOffsetRequestHeader {
            consumer_group: RESEND_GROUP.into(),
            topic: dlq.into(),
            queue_id,
            set_zero_if_not_found: Some(true),
            ..Default::default()
        })
        .await?
        .unwrap_or(0);
    loop {
        let pulled = broker
            .pull_message(&PullMessageRequestHeader {
                consumer_group: RESEND_GROUP.into(),
                topic: dlq.into(),
                queue_id,
                queue_offset: offset,
                max_msg_nums: 32,
                sys_flag: pull_sys_flag::SUBSCRIPTION,
                subscription: Some("*".into()),
                ..Default::default()
            })
            .await?;
        match pulled.status {
            PullStatus::Found => {}
            PullStatus::OffsetIllegal => {
                offset = pulled.header.next_begin_offset;
                continue;
            }
            _ => return Ok(()),
        }
        for record in pulled.messages()? {
            let dead_id = message::offset_message_id(record.store_host(), record.physical_offset());
            let mut properties = record.properties()?;
            let origin = properties
                .get(property::DLQ_ORIGIN_TOPIC)
                .or_else(|| properties.get(property::RETRY_TOPIC))
                .map(str::to_string)
                .with_context(|| {
                    format!("dead letter {dead_id} does not say where it came from")
                })?;
            for name in DEAD_LETTER_PROPERTIES {
                properties.remove(name);
            }
            let message = Message {
                topic: origin.as_str().into(),
                flag: record.flag(),
                properties,
                body: bytes::Bytes::copy_from_slice(record.body()),
            };
            let new_id = send(namesrv, &message, record.sys_flag()).await?;
            table.row([dead_id, origin, new_id]);
        }
        offset = pulled.header.next_begin_offset;
        broker
            .update_consumer_offset(&UpdateConsumerOffsetRequestHeader {
                consumer_group: RESEND_GROUP.into(),
                topic: dlq.into(),
                queue_id,
                commit_offset: offset,
                ..Default::default()
            })
            .await?;
    }
}

/// Sends to a writable master of the topic's route; returns the offset message id.
async fn send(namesrv: &Client, message: &Message, sys_flag: i32) -> Result<String> {
    let route = namesrv.get_route_info(&message.topic).await?;
    let (_, addr) = route_masters(&route)
        .into_iter()
        .next()
        .with_context(|| format!("topic {} has no master", message.topic))?;
    let header = SendMessageRequestHeader {
        producer_group: RESEND_GROUP.into(),
        topic: message.topic.clone(),
        default_topic: "TBW102".into(),
        default_topic_queue_nums: 4,
        queue_id: -1,
        sys_flag,
        born_timestamp: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0),
        flag: message.flag,
        properties: Some(message.properties.encode()),
        ..Default::default()
    };
    let result = connect(&addr)
        .await?
        .send_message(header, message.body.clone())
        .await?;
    Ok(result.header.msg_id)
}
