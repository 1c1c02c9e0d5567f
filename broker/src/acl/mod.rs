//! Authentication and authorization of requests, RocketMQ's ACL as its clients speak it:
//! each request carries `AccessKey` and an HMAC `Signature` (protocol::acl), the user comes
//! from `plain_acl.yml`, and what the request reaches must be granted to that user.
//!
//! Deny by default: with the ACL on, a request without a valid signature of a known user is
//! refused, and so is one that needs a permission the user was not given. The file is read
//! again when it changes, so users and permissions change without a restart.

mod accounts;
mod address;
mod backoff;
mod needs;
mod perm;
mod policies;
mod replay;
mod users;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use protocol::{acl as signing, RemotingCommand, RequestCode, ResponseCode};
use tracing::{error, info, warn};

use crate::config::{BrokerConfig, NamesrvConfig};
use crate::error::{Error, Result};
use crate::file_stamp::{self, FileStamp};
use crate::server::Channel;
use accounts::{Account, Accounts};
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
    backoff: backoff::Backoff,
    /// User changes, one at a time.
    editing: Mutex<()>,
}

/// Why a request is refused: its NO_PERMISSION remark, and whether the sender was not
/// authenticated at all (which slows the sender down) rather than lacking a grant.
#[derive(Debug)]
pub struct Denial {
    pub remark: String,
    pub unauthenticated: bool,
}

impl Denial {
    fn unauthenticated(remark: String) -> Denial {
        Denial {
            remark,
            unauthenticated: true,
        }
    }

    fn unauthorized(remark: String) -> Denial {
        Denial {
            remark,
            unauthenticated: false,
        }
    }
}

fn not_admin(access_key: &str, code: RequestCode) -> Denial {
    Denial::unauthorized(format!(
        "User:{access_key} is not an administrator; {} needs one.",
        code.name()
    ))
}

struct Loaded {
    accounts: Arc<Accounts>,
    /// The file as it was when it was read.
    stamp: FileStamp,
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

/// The ACL's users, in the broker's state folder unless `aclFile` names another file.
pub const ACL_FILE: &str = "plain_acl.yml";

/// The NO_PERMISSION answer to `request` when `check` denies it, after the wait a failed
/// authentication earns; `None` when it may be served.
pub async fn refusal(
    acl: &Acl,
    request: &RemotingCommand,
    channel: &Channel,
    check: fn(&Acl, &RemotingCommand, IpAddr) -> Result<(), Denial>,
) -> Option<RemotingCommand> {
    let peer = channel.peer_addr().ip();
    let denial = check(acl, request, peer).err()?;
    if denial.unauthenticated {
        let wait = acl.failed_authentication(peer);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
    Some(RemotingCommand::response_to(
        request,
        ResponseCode::NoPermission,
        Some(denial.remark),
    ))
}

impl Acl {
    /// The broker's ACL as its config asks for it, if any; `state_dir` holds the default
    /// users file.
    pub fn for_broker(config: &BrokerConfig, state_dir: &Path) -> Result<Option<Arc<Acl>>> {
        let Some(checks) = config.acl_checks() else {
            return Ok(None);
        };
        let path = match config.acl_file.as_str() {
            "" => state_dir.join(ACL_FILE),
            path => PathBuf::from(path),
        };
        let replay = (config.acl_replay_window_seconds > 0)
            .then(|| Duration::from_secs(config.acl_replay_window_seconds));
        let trace_topic = config.msg_trace_topic_name.clone();
        let free = config.acl_free_authentication_failures;
        Acl::open(checks, path, trace_topic, replay, free).map(|acl| Some(Arc::new(acl)))
    }

    /// A stand-alone name server's ACL, with `aclEnable` in its own config: only its changes
    /// are checked, so the file's grants do not matter, only who is an administrator.
    pub fn for_namesrv(config: &NamesrvConfig) -> Result<Option<Arc<Acl>>> {
        if !config.acl_enable {
            return Ok(None);
        }
        if config.acl_file.is_empty() {
            return Err(Error::AclFile {
                path: PathBuf::new(),
                reason: "a name server with aclEnable needs aclFile".into(),
            });
        }
        let path = PathBuf::from(&config.acl_file);
        let checks = Checks::AuthenticationAndAuthorization;
        let free = config.acl_free_authentication_failures;
        Acl::open(checks, path, String::new(), None, free).map(|acl| Some(Arc::new(acl)))
    }

    /// Reads the accounts at start: a missing or invalid file stops the broker, since
    /// running with no users would refuse every client and running without the ACL would
    /// let every client in.
    pub fn open(
        checks: Checks,
        path: PathBuf,
        trace_topic: String,
        replay_window: Option<Duration>,
        free_failures: u32,
    ) -> Result<Acl> {
        let stamp = file_stamp::of(&path);
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
            backoff: backoff::Backoff::new(free_failures),
            editing: Mutex::new(()),
        })
    }

    /// Once a second: reads the file again if it changed since it was last read (a file
    /// that no longer parses is logged and the accounts read before stay in force), and
    /// forgets expired nonces.
    pub fn tick(&self) {
        if let Some(replay) = &self.replay {
            replay.prune();
        }
        self.backoff.prune(Instant::now());
        self.reload_if_changed();
    }

    fn reload_if_changed(&self) {
        let now = file_stamp::of(&self.path);
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
            .is_some_and(|key| self.knows_key(key))
    }

    fn knows_key(&self, access_key: &str) -> bool {
        self.loaded.read().accounts.get(access_key).is_some()
    }

    /// `Ok` when `request`, from `peer`, may be served; else why not. A remark names the
    /// user and what is missing, never a secret.
    pub fn check(&self, request: &RemotingCommand, peer: IpAddr) -> Result<(), Denial> {
        let (account, access_key) = self.authenticate(request, peer)?;
        if self.checks == Checks::Authentication || account.admin {
            return Ok(());
        }
        let Some(code) = RequestCode::from_i32(request.code) else {
            return Ok(()); // answered REQUEST_CODE_NOT_SUPPORTED, with nothing served
        };
        let needs = needs::of(code, request);
        if needs.admin {
            return Err(not_admin(access_key, code));
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
                return Err(Denial::unauthorized(format!(
                    "User:{access_key} has no {wanted} permission on {kind}:{name}."
                )));
            }
        }
        Ok(())
    }

    /// For the name server's changes (KV config, its settings, write permissions): `Ok`
    /// only for an administrator's signed request.
    pub fn check_admin(&self, request: &RemotingCommand, peer: IpAddr) -> Result<(), Denial> {
        let (account, access_key) = self.authenticate(request, peer)?;
        if account.admin {
            return Ok(());
        }
        let code = RequestCode::from_i32(request.code).expect("the name server checks known codes");
        Err(not_admin(access_key, code))
    }

    /// The account, and its access key, whose valid signature `request` carries.
    fn authenticate<'r>(
        &self,
        request: &'r RemotingCommand,
        peer: IpAddr,
    ) -> Result<(Arc<Account>, &'r str), Denial> {
        let Some(access_key) = request.ext_fields.get(signing::ACCESS_KEY) else {
            return Err(Denial::unauthenticated(
                "no AccessKey: this server takes only signed requests (ACL)".into(),
            ));
        };
        let Some(account) = self.loaded.read().accounts.get(access_key).cloned() else {
            return Err(Denial::unauthenticated(format!(
                "User:{access_key} is not found."
            )));
        };
        if account.disabled {
            return Err(Denial::unauthenticated(format!(
                "User:{access_key} is disabled."
            )));
        }
        if let Some(addresses) = &account.addresses {
            if !addresses.matches(peer) {
                return Err(Denial::unauthenticated(format!(
                    "User:{access_key} may not connect from {peer}."
                )));
            }
        }
        if !signing::verify(request, &account.secret) {
            return Err(Denial::unauthenticated(format!(
                "check signature failed for User:{access_key}."
            )));
        }
        if let Some(replay) = &self.replay {
            replay
                .check(access_key, request)
                .map_err(Denial::unauthenticated)?;
        }
        Ok((account, access_key.as_str()))
    }

    /// How long to wait before answering a failed authentication from `peer` (see
    /// [`backoff`]).
    pub fn failed_authentication(&self, peer: IpAddr) -> Duration {
        self.backoff.failed(peer, Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::acl::Credentials;

    #[test]
    fn a_name_server_with_acl_enable_needs_a_file_and_then_takes_admins_only() {
        let mut config = NamesrvConfig {
            acl_enable: true,
            ..NamesrvConfig::default()
        };
        let error = Acl::for_namesrv(&config).err().expect("no aclFile");
        assert!(error.to_string().contains("aclFile"), "{error}");

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plain_acl.yml");
        std::fs::write(
            &file,
            "accounts:\n  - {accessKey: ops, secretKey: s1, admin: true}\n  - {accessKey: app, secretKey: s2}\n",
        )
        .unwrap();
        config.acl_file = file.display().to_string();
        let acl = Acl::for_namesrv(&config).unwrap().expect("enabled");
        let signed = |user: &str, secret: &str| {
            let mut request = RemotingCommand::request(RequestCode::PutKvConfig, &());
            protocol::acl::sign(
                &mut request,
                &Credentials {
                    access_key: user.into(),
                    secret_key: secret.into(),
                },
            );
            request
        };
        let local = "127.0.0.1".parse().unwrap();
        assert!(acl.check_admin(&signed("ops", "s1"), local).is_ok());
        let user = acl.check_admin(&signed("app", "s2"), local).unwrap_err();
        assert!(!user.unauthenticated && user.remark.contains("not an administrator"));
        let wrong = acl.check_admin(&signed("ops", "nope"), local).unwrap_err();
        assert!(wrong.unauthenticated);
    }
}
