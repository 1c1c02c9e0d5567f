//! LOCK_BATCH_MQ (41) and UNLOCK_BATCH_MQ (42): orderly consumers' queue locks.

use std::time::Instant;

use protocol::body::{self, LockBatchRequestBody, LockBatchResponseBody};
use protocol::{RemotingCommand, RequestCode};

use super::{bad_header, success};
use crate::broker::Broker;

pub fn process(broker: &Broker, code: RequestCode, request: &RemotingCommand) -> RemotingCommand {
    let body: LockBatchRequestBody = match body::from_json(&request.body) {
        Ok(body) => body,
        Err(error) => return bad_header(request, error),
    };
    if code == RequestCode::LockBatchMq {
        let held = broker.locks.lock(
            &body.consumer_group,
            &body.client_id,
            &body.mq_set,
            Instant::now(),
        );
        success(request).with_body(body::to_json(&LockBatchResponseBody {
            lock_ok_mq_set: held,
        }))
    } else {
        broker
            .locks
            .unlock(&body.consumer_group, &body.client_id, &body.mq_set);
        success(request)
    }
}
