//! AUTH_CREATE_USER (3001) through AUTH_LIST_USER (3005): ACL 2.0's user requests, kept in
//! the ACL's users file (see `acl::users`).

use protocol::body::{self, admin::UserInfo};
use protocol::header::{ListUsersRequestHeader, UserRequestHeader};
use protocol::{RemotingCommand, RequestCode, ResponseCode};

use crate::broker::processor::{header, reply, success};
use crate::broker::Broker;

pub fn process(broker: &Broker, code: RequestCode, request: &RemotingCommand) -> RemotingCommand {
    let Some(acl) = &broker.acl else {
        return reply(
            request,
            ResponseCode::SystemError,
            "the ACL is off on this broker (aclEnable); users live in its aclFile",
        );
    };
    let done = |result: Result<(), String>| match result {
        Ok(()) => success(request),
        Err(reason) => reply(request, ResponseCode::SystemError, reason),
    };
    match code {
        RequestCode::AuthCreateUser | RequestCode::AuthUpdateUser => {
            let named: UserRequestHeader = header!(request);
            let mut user: UserInfo = match body::from_json(&request.body) {
                Ok(user) => user,
                Err(error) => return reply(request, ResponseCode::SystemError, error.to_string()),
            };
            if user.username.is_empty() {
                user.username = named.username;
            }
            done(acl.put_user(&user, code == RequestCode::AuthUpdateUser))
        }
        RequestCode::AuthDeleteUser => {
            let named: UserRequestHeader = header!(request);
            done(acl.delete_user(&named.username))
        }
        RequestCode::AuthGetUser => {
            let named: UserRequestHeader = header!(request);
            match acl.users(Some(&named.username)) {
                Ok(users) => match users.into_iter().find(|u| u.username == named.username) {
                    Some(user) => success(request).with_body(body::to_json(&user)),
                    None => reply(
                        request,
                        ResponseCode::SystemError,
                        format!("user {} does not exist", named.username),
                    ),
                },
                Err(reason) => reply(request, ResponseCode::SystemError, reason),
            }
        }
        _ => {
            let filter: ListUsersRequestHeader = header!(request);
            match acl.users(filter.filter.as_deref().filter(|f| !f.is_empty())) {
                Ok(users) => success(request).with_body(body::to_json(&users)),
                Err(reason) => reply(request, ResponseCode::SystemError, reason),
            }
        }
    }
}
