//! ROCKETRY_TRANSFER_LEADER (10000, Rocketry's own): hands a replicated group's leadership
//! to another replica on demand, before maintenance of the leader's host and in the
//! operator's rolls, so that neither waits for an election timeout.

use protocol::header::{TransferLeaderRequestHeader, TransferLeaderResponseHeader};
use protocol::{RemotingCommand, ResponseCode};

use crate::broker::processor::{header, reply, success};
use crate::broker::Broker;
use crate::config::replica_number;

pub async fn transfer(broker: &Broker, request: &RemotingCommand) -> RemotingCommand {
    let header: TransferLeaderRequestHeader = header!(request);
    let Some(member) = &broker.replica else {
        return reply(
            request,
            ResponseCode::SystemError,
            "this broker is not a replica of a replicated group (enableDLegerCommitLog is off)",
        );
    };
    let to = match header.to.as_deref() {
        None => None,
        Some(name) => match replica_number(name) {
            Some(number) => Some(number),
            None => {
                return reply(
                    request,
                    ResponseCode::InvalidParameter,
                    format!("{name} is not a replica's name, nX as dLegerPeers names them"),
                )
            }
        },
    };
    match member.transfer_leader(to).await {
        Ok(leader) => success(request).with_header(&TransferLeaderResponseHeader {
            leader: format!("n{leader}"),
        }),
        Err(error) => reply(request, ResponseCode::SystemError, error.to_string()),
    }
}
