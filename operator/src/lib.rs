//! The Rocketry operator: the `RocketCluster` CRD, its controller, the builders of the objects
//! a cluster owns, leader election, and the operator's metrics and health endpoints.
//!
//! Reconciling builds every object from the cluster alone (`resources`) and applies it with
//! server-side apply; no state is kept between passes but what is in the cluster.

pub mod admin;
pub mod broker_config;
pub mod consumer_group;
pub mod consumer_group_controller;
pub mod controller;
pub mod crd;
pub mod credentials;
pub mod drain;
pub mod external_scaler;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod migration;
pub mod migration_controller;
pub mod pacer;
pub mod resources;
pub mod roll;
pub mod security;
pub mod storage;
pub mod target;
pub mod topic;
pub mod topic_controller;
pub mod user;

pub use consumer_group::RocketConsumerGroup;
pub use controller::{run, Context};
pub use crd::{RocketCluster, RocketClusterSpec, RocketClusterStatus};
pub use migration::RocketMigration;
pub use topic::RocketTopic;
pub use user::RocketUser;

/// Every CRD the operator serves, as (file name, YAML): what `crdgen` writes into `crds/`.
pub fn crd_files() -> Result<Vec<(String, String)>, serde_norway::Error> {
    use kube::CustomResourceExt;
    [
        RocketCluster::crd(),
        RocketUser::crd(),
        RocketTopic::crd(),
        RocketConsumerGroup::crd(),
        RocketMigration::crd(),
    ]
    .into_iter()
    .map(|crd| {
        let file = format!("{}.yaml", crd.metadata.name.clone().unwrap_or_default());
        Ok((file, serde_norway::to_string(&crd)?))
    })
    .collect()
}

/// Everything that can go wrong while reconciling.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{action} {kind} {name} failed")]
    Kube {
        action: &'static str,
        kind: &'static str,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("could not serialize {kind} {name}")]
    Serialize {
        kind: &'static str,
        name: String,
        #[source]
        source: serde_json::Error,
    },
    /// A broker or name server did not do what the operator asked of it.
    #[error("could not {action} at {addr}: {reason}")]
    Admin {
        action: &'static str,
        addr: String,
        reason: String,
    },
    #[error("lease {name} in {namespace} could not be read or written")]
    Lease {
        name: String,
        namespace: String,
        #[source]
        source: kube::Error,
    },
}

impl Error {
    /// A short, bounded label for the error counter.
    pub fn metric_label(&self) -> String {
        match self {
            Error::Kube { action, kind, .. } => format!("{action}_{kind}").to_lowercase(),
            Error::Serialize { .. } => "serialize".to_string(),
            Error::Lease { .. } => "lease".to_string(),
            Error::Admin { .. } => "admin".to_string(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
