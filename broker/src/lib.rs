//! Rocketry's broker and name server: RocketMQ's remoting protocol over the `store` crate.
//!
//! Binaries and tests start them through [`run`], which takes bound listeners and a
//! shutdown future, so a test can run the real server on port 0.

pub mod acl;
pub mod broker;
pub mod config;
mod config_file;
mod config_update;
pub mod error;
mod file_stamp;
pub mod filter;
pub mod health;
pub mod http;
pub mod import;
pub mod metrics;
pub mod namesrv;
mod properties;
pub mod replication;
pub mod run;
pub mod server;
mod store_settings;

pub use error::{Error, Result};
