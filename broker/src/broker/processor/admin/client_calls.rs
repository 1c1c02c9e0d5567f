//! Requests the broker passes on to one live client over that client's own connection,
//! relaying the client's answer as it is: GET_CONSUMER_RUNNING_INFO 307 (mqadmin
//! `consumerStatus`, `consumerProgress -s`), as Apache's `callConsumer` does.

use std::time::Duration;

use protocol::header::GetConsumerRunningInfoRequestHeader;
use protocol::{RemotingCommand, ResponseCode};

use crate::broker::processor::{header, reply};
use crate::broker::Broker;

/// How long a client has to answer: Apache's `Broker2Client.callClient` waits as long.
const CLIENT_ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn consumer_running_info(broker: &Broker, request: &RemotingCommand) -> RemotingCommand {
    let h: GetConsumerRunningInfoRequestHeader = header!(request);
    let client = broker
        .clients
        .consumer_group(&h.consumer_group)
        .and_then(|group| {
            group
                .clients
                .into_values()
                .find(|client| client.client_id == h.client_id)
        });
    let Some(client) = client else {
        return reply(
            request,
            ResponseCode::SystemError,
            format!(
                "The Consumer <{}> <{}> not online",
                h.consumer_group, h.client_id
            ),
        );
    };
    // The same header fields and body, under a fresh opaque of the broker's own.
    let mut call = request.clone();
    call.flag = 0;
    call.remark = None;
    match client.channel.call(call, CLIENT_ANSWER_TIMEOUT).await {
        Some(answer) => answer,
        None => reply(
            request,
            ResponseCode::ConsumeMsgTimeout,
            format!(
                "consumer <{}> <{}> Timeout: no answer within {} s",
                h.consumer_group,
                h.client_id,
                CLIENT_ANSWER_TIMEOUT.as_secs()
            ),
        ),
    }
}
