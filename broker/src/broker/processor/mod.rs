//! One file per group of request codes: each parses its request, applies it, and answers
//! with the code a RocketMQ client expects.

pub mod admin;
pub mod client;
pub mod end_transaction;
pub mod lock;
pub mod offset;
pub mod pull;
pub mod send;
pub mod send_back;

#[cfg(test)]
mod send_test;

use protocol::body::{perm, SubscriptionGroupConfig};
use protocol::{RemotingCommand, ResponseCode};

use crate::broker::Broker;

/// An answer with a code and a remark, nothing else.
pub(crate) fn reply(
    request: &RemotingCommand,
    code: ResponseCode,
    remark: impl Into<String>,
) -> RemotingCommand {
    RemotingCommand::response_to(request, code, Some(remark.into()))
}

pub(crate) fn success(request: &RemotingCommand) -> RemotingCommand {
    RemotingCommand::response_to(request, ResponseCode::Success, None)
}

/// The answer to a request whose header does not parse: Java fails the decode with an
/// exception, which its dispatcher turns into SYSTEM_ERROR with the exception's text.
pub(crate) fn bad_header(request: &RemotingCommand, error: protocol::Error) -> RemotingCommand {
    reply(request, ResponseCode::SystemError, error.to_string())
}

/// Why a request is refused: the code and remark of its answer.
#[derive(Debug)]
pub(crate) struct Refusal(pub ResponseCode, pub String);

impl Refusal {
    pub(crate) fn answer(self, request: &RemotingCommand) -> RemotingCommand {
        reply(request, self.0, self.1)
    }
}

/// A consumer group's settings, created with defaults on first use when the broker allows.
pub(crate) fn subscription_group(
    broker: &Broker,
    group: &str,
) -> Result<SubscriptionGroupConfig, Refusal> {
    match broker.groups.find_or_create(group) {
        Ok(Some(config)) => Ok(config),
        Ok(None) => Err(Refusal(
            ResponseCode::SubscriptionGroupNotExist,
            format!("subscription group [{group}] does not exist"),
        )),
        Err(error) => Err(Refusal(ResponseCode::SystemError, error.to_string())),
    }
}

/// Refuses writes on a broker whose `brokerPermission` forbids them.
pub(crate) fn writeable(broker: &Broker) -> Result<(), Refusal> {
    if perm::is_writeable(broker.permission() as i32) {
        Ok(())
    } else {
        Err(Refusal(
            ResponseCode::NoPermission,
            format!(
                "the broker[{}] sending message is forbidden",
                broker.config.broker_ip1
            ),
        ))
    }
}

/// Unwraps a `Result<_, Refusal>` or returns its answer from the enclosing function (a
/// command, or anything made from one, such as a pull's answer).
macro_rules! or_refuse {
    ($request:expr, $result:expr) => {
        match $result {
            Ok(value) => value,
            Err(refusal) => return ::core::convert::From::from(refusal.answer($request)),
        }
    };
}
pub(crate) use or_refuse;

/// Parses the request's custom header or returns the error answer from the enclosing function
/// (a command, or anything made from one).
macro_rules! header {
    ($request:expr) => {
        match $request.decode_header() {
            Ok(header) => header,
            Err(error) => {
                return ::core::convert::From::from($crate::broker::processor::bad_header(
                    $request, error,
                ))
            }
        }
    };
}
pub(crate) use header;
