//! The admin and query requests mqadmin and the operator send to a broker, one file per
//! subject: topics, consumer groups, consumers (progress, connections, offset resets),
//! broker state, and messages by id or key.

mod auth;
mod broker_info;
mod client_calls;
mod consumers;
mod groups;
mod leadership;
mod messages;
mod replica_state;
mod topics;

#[cfg(test)]
mod broker_info_test;
#[cfg(test)]
mod compatibility_test;
#[cfg(test)]
mod consumers_test;

use protocol::{RemotingCommand, RequestCode};

pub use client_calls::consumer_running_info;
pub use leadership::transfer as transfer_leader;

use super::reply;
use crate::broker::Broker;

pub fn process(broker: &Broker, code: RequestCode, request: &RemotingCommand) -> RemotingCommand {
    use RequestCode::*;
    match code {
        UpdateAndCreateTopic => topics::create(broker, request),
        DeleteTopicInBroker => topics::delete(broker, request),
        GetAllTopicConfig => topics::all(broker, request),
        GetTopicConfig => topics::one(broker, request),
        GetTopicStatsInfo => topics::stats(broker, request),
        UpdateAndCreateSubscriptiongroup => groups::create(broker, request),
        GetAllSubscriptiongroupConfig => groups::all(broker, request),
        GetAllConsumerOffset => replica_state::consumer_offsets(broker, request),
        GetAllDelayOffset => replica_state::delay_offsets(broker, request),
        DeleteSubscriptiongroup => groups::delete(broker, request),
        GetSubscriptiongroupConfig => groups::one(broker, request),
        GetConsumeStats => consumers::consume_stats(broker, request),
        GetBrokerConsumeStats => consumers::broker_consume_stats(broker, request),
        QueryTopicConsumeByWho => consumers::consumed_by(broker, request),
        GetConsumerConnectionList => consumers::consumer_connections(broker, request),
        GetProducerConnectionList => consumers::producer_connections(broker, request),
        InvokeBrokerToResetOffset => consumers::reset_offset(broker, request),
        CloneGroupOffset => consumers::clone_group_offset(broker, request),
        GetBrokerRuntimeInfo => broker_info::runtime_info(broker, request),
        GetBrokerConfig => broker_info::config(broker, request),
        UpdateBrokerConfig => broker_info::update_config(broker, request),
        DeleteExpiredCommitlog => broker_info::delete_expired_commit_log(broker, request),
        CleanExpiredConsumequeue => broker_info::clean_expired_consume_queues(broker, request),
        ViewMessageById => messages::view_by_id(broker, request),
        QueryMessage => messages::query(broker, request),
        AuthCreateUser | AuthUpdateUser | AuthDeleteUser | AuthGetUser | AuthListUser
        | AuthCreateAcl | AuthUpdateAcl | AuthDeleteAcl | AuthGetAcl | AuthListAcl => {
            auth::process(broker, code, request)
        }
        other => reply(
            request,
            protocol::ResponseCode::RequestCodeNotSupported,
            format!(" request type {} not supported", other.as_i32()),
        ),
    }
}
