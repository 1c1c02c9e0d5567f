//! The broker crate's one error type. Request-level failures are not errors here: they are
//! answered with a RocketMQ response code. These are failures to start, load or persist.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read config file {path}")]
    ConfigFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("config key {key} has the invalid value {value:?}: {reason}")]
    ConfigValue {
        key: String,
        value: String,
        reason: String,
    },

    /// The ACL's users file, missing or not as docs/security.md describes it.
    #[error("ACL file {path}: {reason}")]
    AclFile { path: PathBuf, reason: String },

    #[error("TLS: {reason}")]
    Tls { reason: String },

    #[error("state file {path} is damaged: {reason}")]
    StateFile { path: PathBuf, reason: String },

    /// An Apache RocketMQ store that `rocketry admin import` cannot read: missing, or a state
    /// file that does not parse (the reason says where).
    #[error("cannot import {path}: {reason}")]
    ImportSource { path: PathBuf, reason: String },

    #[error(
        "{path} already holds broker state ({found}); import into a new data dir, or pass \
         --force to add the imported topics, groups and offsets to it"
    )]
    ImportTargetInUse { path: PathBuf, found: String },

    #[error("I/O error on {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("cannot listen on {addr}")]
    Listen {
        addr: String,
        #[source]
        source: std::io::Error,
    },

    #[error("store")]
    Store(#[from] store::Error),

    /// Raft could not start or stop (docs/replication.md).
    #[error("replication: {0}")]
    Replication(String),
}
