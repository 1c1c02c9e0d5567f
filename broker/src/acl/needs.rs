//! What a request reaches, read from its fields: the topics and groups it publishes to or
//! subscribes from, and whether only an administrator may send it. RocketMQ's ACL 1.0
//! validator (`PlainAccessValidator.parse`) is the model; docs/security.md has the table.

use protocol::body::{self, HeartbeatData, LockBatchRequestBody};
use protocol::{RemotingCommand, RequestCode};

use super::perm::Access;
use crate::broker::{DLQ_GROUP_TOPIC_PREFIX, RETRY_GROUP_TOPIC_PREFIX};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resource {
    Topic(String),
    Group(String),
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Needs {
    /// Changes to the broker, its topics, groups or offsets: administrators only.
    pub admin: bool,
    pub resources: Vec<(Resource, Access)>,
}

/// The codes only an administrator may send: everything that creates, changes or deletes
/// broker state on behalf of someone else. Apache's ACL 1.0 lists the first five.
const ADMIN_CODES: &[RequestCode] = &[
    RequestCode::UpdateAndCreateTopic,
    RequestCode::UpdateBrokerConfig,
    RequestCode::DeleteTopicInBroker,
    RequestCode::UpdateAndCreateSubscriptiongroup,
    RequestCode::DeleteSubscriptiongroup,
    RequestCode::InvokeBrokerToResetOffset,
    RequestCode::CloneGroupOffset,
    RequestCode::DeleteExpiredCommitlog,
    RequestCode::CleanExpiredConsumequeue,
    RequestCode::RocketryTransferLeader,
    // Users and their grants are an administrator's business, reading them included.
    RequestCode::AuthCreateUser,
    RequestCode::AuthUpdateUser,
    RequestCode::AuthDeleteUser,
    RequestCode::AuthGetUser,
    RequestCode::AuthListUser,
    RequestCode::AuthCreateAcl,
    RequestCode::AuthUpdateAcl,
    RequestCode::AuthDeleteAcl,
    RequestCode::AuthGetAcl,
    RequestCode::AuthListAcl,
];

/// A topic as a resource: a group's retry or dead-letter topic is that group's, so it
/// needs the group's subscription, as in RocketMQ.
fn topic(name: &str, access: Access) -> (Resource, Access) {
    let group = name
        .strip_prefix(RETRY_GROUP_TOPIC_PREFIX)
        .or_else(|| name.strip_prefix(DLQ_GROUP_TOPIC_PREFIX));
    match group {
        Some(group) => (Resource::Group(group.to_string()), Access::Sub),
        None => (Resource::Topic(name.to_string()), access),
    }
}

fn group(name: &str) -> (Resource, Access) {
    (Resource::Group(name.to_string()), Access::Sub)
}

/// What `request` (of `code`) needs. A field it lacks adds nothing: its processor refuses
/// such a request anyway.
pub fn of(code: RequestCode, request: &RemotingCommand) -> Needs {
    use RequestCode::*;
    let field = |name: &str| request.ext_fields.get(name).map(|value| value.as_str());
    let mut needs = Needs {
        admin: ADMIN_CODES.contains(&code),
        resources: Vec::new(),
    };
    let resources = &mut needs.resources;
    match code {
        SendMessage => resources.extend(field("topic").map(|t| topic(t, Access::Pub))),
        SendMessageV2 | SendBatchMessage => {
            resources.extend(field("b").map(|t| topic(t, Access::Pub)))
        }
        PullMessage | LitePullMessage | QueryConsumerOffset | UpdateConsumerOffset => {
            resources.extend(field("topic").map(|t| topic(t, Access::Sub)));
            resources.extend(field("consumerGroup").map(group));
        }
        QueryMessage
        | GetMaxOffset
        | GetMinOffset
        | SearchOffsetByTimestamp
        | GetEarliestMsgStoretime => {
            resources.extend(field("topic").map(|t| topic(t, Access::Sub)))
        }
        ConsumerSendMsgBack => resources.extend(field("group").map(group)),
        GetConsumerListByGroup | UnregisterClient => {
            resources.extend(field("consumerGroup").map(group))
        }
        HeartBeat => {
            if let Ok(data) = body::from_json::<HeartbeatData>(&request.body) {
                for consumer in &data.consumer_data_set {
                    resources.push(group(&consumer.group_name));
                    for subscription in &consumer.subscription_data_set {
                        resources.push(topic(&subscription.topic, Access::Sub));
                    }
                }
            }
        }
        LockBatchMq | UnlockBatchMq => {
            if let Ok(body) = body::from_json::<LockBatchRequestBody>(&request.body) {
                resources.push(group(&body.consumer_group));
                for queue in &body.mq_set {
                    resources.push(topic(&queue.topic, Access::Sub));
                }
            }
        }
        _ => {}
    }
    needs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(code: RequestCode, fields: &[(&str, &str)]) -> RemotingCommand {
        fields
            .iter()
            .fold(RemotingCommand::request(code, &()), |command, (k, v)| {
                command.with_ext_field(*k, *v)
            })
    }

    #[test]
    fn sends_need_pub_and_sends_to_a_retry_topic_need_the_group() {
        let send = of(
            RequestCode::SendMessageV2,
            &request(RequestCode::SendMessageV2, &[("b", "orders")]),
        );
        assert_eq!(
            send.resources,
            vec![(Resource::Topic("orders".into()), Access::Pub)]
        );
        assert!(!send.admin);
        let retry = of(
            RequestCode::SendMessage,
            &request(RequestCode::SendMessage, &[("topic", "%RETRY%billing")]),
        );
        assert_eq!(
            retry.resources,
            vec![(Resource::Group("billing".into()), Access::Sub)]
        );
    }

    #[test]
    fn pulls_need_the_topic_and_the_group() {
        let pull = request(
            RequestCode::PullMessage,
            &[("topic", "orders"), ("consumerGroup", "billing")],
        );
        assert_eq!(
            of(RequestCode::PullMessage, &pull).resources,
            vec![
                (Resource::Topic("orders".into()), Access::Sub),
                (Resource::Group("billing".into()), Access::Sub)
            ]
        );
    }

    #[test]
    fn heartbeats_need_every_group_and_subscribed_topic() {
        let body = br#"{"clientID":"c","producerDataSet":[{"groupName":"p"}],
            "consumerDataSet":[{"groupName":"billing","consumeType":"CONSUME_PASSIVELY",
            "messageModel":"CLUSTERING","consumeFromWhere":"CONSUME_FROM_LAST_OFFSET",
            "subscriptionDataSet":[{"topic":"orders","subString":"*"},
            {"topic":"%RETRY%billing","subString":"*"}],"unitMode":false}]}"#;
        let heartbeat = RemotingCommand::request(RequestCode::HeartBeat, &()).with_body(&body[..]);
        assert_eq!(
            of(RequestCode::HeartBeat, &heartbeat).resources,
            vec![
                (Resource::Group("billing".into()), Access::Sub),
                (Resource::Topic("orders".into()), Access::Sub),
                (Resource::Group("billing".into()), Access::Sub)
            ]
        );
    }

    #[test]
    fn changes_to_the_broker_are_for_administrators() {
        for code in ADMIN_CODES {
            assert!(of(*code, &request(*code, &[])).admin, "{code:?}");
        }
        assert!(
            !of(
                RequestCode::GetAllTopicConfig,
                &request(RequestCode::GetAllTopicConfig, &[])
            )
            .admin
        );
    }
}
