//! One file per group of request codes: each parses its request, applies it, and answers
//! with the code a RocketMQ client expects.

pub mod admin;
pub mod client;
pub mod lock;
pub mod offset;
pub mod pull;
pub mod send;
pub mod send_back;

use protocol::{RemotingCommand, ResponseCode};

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

/// Parses the request's custom header or returns the error answer from the enclosing function.
macro_rules! header {
    ($request:expr) => {
        match $request.decode_header() {
            Ok(header) => header,
            Err(error) => return $crate::broker::processor::bad_header($request, error),
        }
    };
}
pub(crate) use header;
