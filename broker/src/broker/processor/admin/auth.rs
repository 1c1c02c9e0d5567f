//! AUTH_CREATE_USER (3001) through AUTH_LIST_ACL (3010): ACL 2.0's user and grant requests,
//! kept in the ACL's users file (see `acl::users` and `acl::policies`).

use protocol::body;
use protocol::body::admin::{AclInfo, UserInfo};
use protocol::header::{
    AclRequestHeader, DeleteAclRequestHeader, ListAclsRequestHeader, ListUsersRequestHeader,
    UserRequestHeader,
};
use protocol::{RemotingCommand, RequestCode, ResponseCode};
use serde::Serialize;

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
            let name = named.username;
            let user = acl.users(Some(&name)).and_then(|users| {
                let user = users.into_iter().find(|u| u.username == name);
                user.ok_or_else(|| format!("user {name} does not exist"))
            });
            json(request, user)
        }
        RequestCode::AuthListUser => {
            let filter: ListUsersRequestHeader = header!(request);
            json(
                request,
                acl.users(filter.filter.as_deref().filter(|f| !f.is_empty())),
            )
        }
        RequestCode::AuthCreateAcl | RequestCode::AuthUpdateAcl => {
            let subject: AclRequestHeader = header!(request);
            let mut grants: AclInfo = match body::from_json(&request.body) {
                Ok(grants) => grants,
                Err(error) => return reply(request, ResponseCode::SystemError, error.to_string()),
            };
            if grants.subject.is_empty() {
                grants.subject = subject.subject;
            }
            done(acl.put_acl(&grants))
        }
        RequestCode::AuthDeleteAcl => {
            let h: DeleteAclRequestHeader = header!(request);
            done(acl.delete_acl(&h.subject, h.resource.as_deref().filter(|r| !r.is_empty())))
        }
        RequestCode::AuthGetAcl => {
            let named: AclRequestHeader = header!(request);
            let subject = named.subject;
            let grants = acl.acls(&subject, "").and_then(|all| {
                let grants = all.into_iter().find(|a| a.subject == subject);
                grants.ok_or_else(|| format!("{subject} has no grants"))
            });
            json(request, grants)
        }
        _ => {
            let h: ListAclsRequestHeader = header!(request);
            let subject = h.subject_filter.unwrap_or_default();
            json(
                request,
                acl.acls(&subject, &h.resource_filter.unwrap_or_default()),
            )
        }
    }
}

/// The answer carrying `found` as its JSON body, or SYSTEM_ERROR saying why there is none.
fn json<T: Serialize>(request: &RemotingCommand, found: Result<T, String>) -> RemotingCommand {
    match found {
        Ok(value) => success(request).with_body(body::to_json(&value)),
        Err(reason) => reply(request, ResponseCode::SystemError, reason),
    }
}
