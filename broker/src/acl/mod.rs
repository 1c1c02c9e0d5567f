//! Authentication and authorization of requests, RocketMQ's ACL as its clients speak it:
//! each request carries `AccessKey` and an HMAC `Signature` (protocol::acl), the user comes
//! from `plain_acl.yml`, and what the request reaches must be granted to that user.
//!
//! Deny by default: with the ACL on, a request without a valid signature of a known user is
//! refused, and so is one that needs a permission the user was not given. The file is read
//! again when it changes, so users and permissions change without a restart.

mod accounts;
mod address;
mod needs;
mod perm;
mod replay;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::RwLock;
use protocol::{acl as signing, RemotingCommand, RequestCode};
use tracing::{error, info, warn};

use crate::error::{Error, Result};
use accounts::Accounts;
use needs::Resource;
use perm::Access;

/// Which checks run; both follow from the config keys (docs/security.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checks {
    /// A known user with a valid signature; what the request reaches is not checked.
    Authentication,
    /// That, and every topic, group and admin request checked against the user's grants.
    AuthenticationAndAuthorization,
}

pub struct Acl {
    checks: Checks,
    path: PathBuf,
    /// Traced clients write their trace records here whatever their grants, as in RocketMQ.
    trace_topic: String,
    loaded: RwLock<Loaded>,
    /// Present when `aclReplayWindowSeconds` is above 0.
    replay: Option<replay::ReplayGuard>,
}

struct Loaded {
    accounts: Arc<Accounts>,
    /// The file's modification time and length when it was read.
    stamp: Option<(SystemTime, u64)>,
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let metadata = std::fs::metadata(path).ok()?;
    Some((metadata.modified().ok()?, metadata.len()))
}

fn read(path: &Path) -> Result<Accounts> {
    let invalid = |reason: String| Error::AclFile {
        path: path.to_path_buf(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| invalid(e.to_string()))?;
    let (accounts, warnings) = Accounts::parse(&text).map_err(invalid)?;
    for warning in warnings {
        warn!(path = %path.display(), "{warning}");
    }
    Ok(accounts)
}

impl Acl {
    /// Reads the accounts at start: a missing or invalid file stops the broker, since
    /// running with no users would refuse every client and running without the ACL would
    /// let every client in.
    pub fn open(
        checks: Checks,
        path: PathBuf,
        trace_topic: String,
        replay_window: Option<Duration>,
    ) -> Result<Acl> {
        let stamp = stamp(&path);
        let accounts = read(&path)?;
        info!(path = %path.display(), users = accounts.len(), ?checks, "ACL on");
        Ok(Acl {
            checks,
            path,
            trace_topic,
            loaded: RwLock::new(Loaded {
                accounts: Arc::new(accounts),
                stamp,
            }),
            replay: replay_window.map(replay::ReplayGuard::new),
        })
    }

    /// Once a second: reads the file again if it changed since it was last read (a file
    /// that no longer parses is logged and the accounts read before stay in force), and
    /// forgets expired nonces.
    pub fn tick(&self) {
        if let Some(replay) = &self.replay {
            replay.prune();
        }
        self.reload_if_changed();
    }

    fn reload_if_changed(&self) {
        let now = stamp(&self.path);
        if now == self.loaded.read().stamp {
            return;
        }
        match read(&self.path) {
            Ok(accounts) => {
                info!(path = %self.path.display(), users = accounts.len(), "ACL file read again");
                *self.loaded.write() = Loaded {
                    accounts: Arc::new(accounts),
                    stamp: now,
                };
            }
            Err(failure) => {
                error!(error = %failure, "keeping the ACL read before");
                // Not again until the file changes once more.
                self.loaded.write().stamp = now;
            }
        }
    }

    /// Whether a request's header names a known user: all that can be judged before its
    /// body, which the signature covers, has arrived.
    pub fn knows(&self, header: &RemotingCommand) -> bool {
        header
            .ext_fields
            .get(signing::ACCESS_KEY)
            .is_some_and(|key| self.loaded.read().accounts.get(key).is_some())
    }

    /// `Ok` when `request`, from `peer`, may be served; else the remark of its NO_PERMISSION
    /// answer. A remark names the user and what is missing, never a secret.
    pub fn check(&self, request: &RemotingCommand, peer: IpAddr) -> Result<(), String> {
        let Some(access_key) = request.ext_fields.get(signing::ACCESS_KEY) else {
            return Err("no AccessKey: this broker takes only signed requests (ACL)".into());
        };
        let accounts = self.loaded.read().accounts.clone();
        let Some(account) = accounts.get(access_key) else {
            return Err(format!("User:{access_key} is not found."));
        };
        if let Some(addresses) = &account.addresses {
            if !addresses.matches(peer) {
                return Err(format!("User:{access_key} may not connect from {peer}."));
            }
        }
        if !signing::verify(request, &account.secret) {
            return Err(format!("check signature failed for User:{access_key}."));
        }
        if let Some(replay) = &self.replay {
            replay.check(access_key, request)?;
        }
        if self.checks == Checks::Authentication || account.admin {
            return Ok(());
        }
        let Some(code) = RequestCode::from_i32(request.code) else {
            return Ok(()); // answered REQUEST_CODE_NOT_SUPPORTED, with nothing served
        };
        let needs = needs::of(code, request);
        if needs.admin {
            return Err(format!(
                "User:{access_key} is not an administrator; {} needs one.",
                code.name()
            ));
        }
        for (resource, access) in &needs.resources {
            let (kind, name, perm) = match resource {
                Resource::Topic(name) => {
                    if *access == Access::Pub && *name == self.trace_topic {
                        continue;
                    }
                    ("Topic", name, account.topics.of(name))
                }
                Resource::Group(name) => ("Group", name, account.groups.of(name)),
            };
            if !perm.allows(*access) {
                let wanted = match access {
                    Access::Pub => "Pub",
                    Access::Sub => "Sub",
                };
                return Err(format!(
                    "User:{access_key} has no {wanted} permission on {kind}:{name}."
                ));
            }
        }
        Ok(())
    }
}
