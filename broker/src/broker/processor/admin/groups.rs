//! Consumer-group settings: UPDATE_AND_CREATE_SUBSCRIPTIONGROUP 200,
//! GET_ALL_SUBSCRIPTIONGROUP_CONFIG 201, DELETE_SUBSCRIPTIONGROUP 207 and
//! GET_SUBSCRIPTIONGROUP_CONFIG 352.

use protocol::body::admin::SubscriptionGroupWrapper;
use protocol::body::{self, DataVersion, SubscriptionGroupConfig};
use protocol::header::{
    DeleteSubscriptionGroupRequestHeader, GetAllSubscriptionGroupResponseHeader,
    GetSubscriptionGroupConfigRequestHeader,
};
use protocol::{RemotingCommand, ResponseCode};
use tracing::info;

use crate::broker::clock::now_millis;
use crate::broker::processor::{bad_header, header, reply, success};
use crate::broker::Broker;

pub fn create(broker: &Broker, request: &RemotingCommand) -> RemotingCommand {
    let config: SubscriptionGroupConfig = match body::from_json(&request.body) {
        Ok(config) => config,
        Err(error) => return bad_header(request, error),
    };
    if config.group_name.trim().is_empty() {
        return reply(
            request,
            ResponseCode::InvalidParameter,
            "groupName is blank",
        );
    }
    let name = config.group_name.clone();
    match broker.groups.upsert(config) {
        Ok(()) => {
            info!(group = %name, "subscription group created or updated");
            success(request)
        }
        Err(error) => reply(request, ResponseCode::SystemError, error.to_string()),
    }
}

/// Every group in one page: the 5.x client pages only when `totalGroupNum` says there is more.
pub fn all(broker: &Broker, request: &RemotingCommand) -> RemotingCommand {
    let wrapper = SubscriptionGroupWrapper {
        subscription_group_table: broker.groups.all(),
        data_version: DataVersion {
            timestamp: now_millis(),
            ..DataVersion::default()
        },
        ..SubscriptionGroupWrapper::default()
    };
    let total = wrapper.subscription_group_table.len() as i32;
    success(request)
        .with_header(&GetAllSubscriptionGroupResponseHeader {
            total_group_num: Some(total),
        })
        .with_body(body::to_json(&wrapper))
}

pub fn delete(broker: &Broker, request: &RemotingCommand) -> RemotingCommand {
    let h: DeleteSubscriptionGroupRequestHeader = header!(request);
    if let Err(error) = broker.groups.delete(&h.group_name) {
        return reply(request, ResponseCode::SystemError, error.to_string());
    }
    if h.clean_offset == Some(true) {
        broker.offsets.remove_group(&h.group_name);
    }
    // Kept offsets still have lag, which the next scrape reports again from them.
    broker.metrics.forget_group(&h.group_name);
    info!(group = %h.group_name, clean_offset = h.clean_offset == Some(true), "subscription group deleted");
    success(request)
}

pub fn one(broker: &Broker, request: &RemotingCommand) -> RemotingCommand {
    let h: GetSubscriptionGroupConfigRequestHeader = header!(request);
    match broker.groups.get(&h.group) {
        Some(config) => success(request).with_body(body::to_json(&config)),
        None => reply(
            request,
            ResponseCode::SubscriptionGroupNotExist,
            format!("The Group {} Not Exist", h.group),
        ),
    }
}
