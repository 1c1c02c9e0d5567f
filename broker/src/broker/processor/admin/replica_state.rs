//! The state a slave copies from its master: every committed consumer offset
//! (GET_ALL_CONSUMER_OFFSET) and each delay level's progress (GET_ALL_DELAY_OFFSET). A
//! replicated group's followers copy their leader's with these, beside its topics and groups.

use protocol::body;
use protocol::body::admin::{ConsumerOffsetWrapper, DelayOffsetWrapper};
use protocol::RemotingCommand;

use crate::broker::processor::success;
use crate::broker::Broker;

pub fn consumer_offsets(broker: &Broker, request: &RemotingCommand) -> RemotingCommand {
    let offsets = ConsumerOffsetWrapper {
        offset_table: broker.offsets.table(),
    };
    success(request).with_body(body::to_json(&offsets))
}

pub fn delay_offsets(broker: &Broker, request: &RemotingCommand) -> RemotingCommand {
    let offsets = DelayOffsetWrapper {
        offset_table: broker.schedule.table(),
    };
    success(request).with_body(body::to_json(&offsets))
}
