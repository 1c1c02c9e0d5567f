//! Where a RocketTopic or RocketConsumerGroup lives: a RocketCluster of its namespace, or the
//! name servers of a cluster the operator does not run (Apache RocketMQ's own, say), and the
//! broker addresses of each broker group found from either.

use std::collections::BTreeMap;

use kube::api::Api;
use kube::{Client, ResourceExt};
use protocol::Client as Remoting;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::admin::Access;
use crate::controller::kube_error;
use crate::crd::RocketCluster;
use crate::{credentials, resources, Result};

/// The CEL rule every spec that embeds a [`ClusterRef`] carries.
pub const ONE_TARGET_RULE: &str = "has(self.cluster) != has(self.nameServers)";
pub const ONE_TARGET_MESSAGE: &str = "set exactly one of cluster (a RocketCluster) and nameServers";

/// Which brokers: those of a RocketCluster, or those a name server knows.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterRef {
    /// The RocketCluster, in the same namespace, that serves it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub cluster: Option<String>,
    /// The name servers (`host:port;host:port`) of a cluster the operator does not run; it
    /// must admit the operator without an ACL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub name_servers: Option<String>,
    /// With `nameServers`: only the brokers of this RocketMQ cluster (brokerClusterName);
    /// every broker the name servers know when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broker_cluster: Option<String>,
}

impl ClusterRef {
    /// Whether `cluster` is the RocketCluster this refers to.
    pub fn is_cluster(&self, cluster: &str) -> bool {
        self.cluster.as_deref() == Some(cluster)
    }
}

/// The brokers found, by broker group (brokerName), and how to reach them.
#[derive(Debug, Default)]
pub struct Brokers {
    pub access: Access,
    /// Every member of each group: a topic or group setting goes to each, so that a member
    /// that takes over serves it too.
    pub groups: BTreeMap<String, Vec<String>>,
}

impl Brokers {
    pub fn addresses(&self) -> impl Iterator<Item = (&str, &str)> {
        self.groups.iter().flat_map(|(group, members)| {
            members
                .iter()
                .map(move |addr| (group.as_str(), addr.as_str()))
        })
    }
}

/// Why no broker could be found: (condition reason, message).
pub type Unreachable = (&'static str, String);

/// The RocketCluster `name` of `namespace`, or why there is none.
pub async fn cluster(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<std::result::Result<RocketCluster, Unreachable>> {
    let clusters: Api<RocketCluster> = Api::namespaced(client.clone(), namespace);
    Ok(clusters
        .get_opt(name)
        .await
        .map_err(kube_error("get", "rocketcluster", name))?
        .ok_or_else(|| {
            (
                "ClusterNotFound",
                format!("RocketCluster {name} does not exist in {namespace}"),
            )
        }))
}

/// The brokers `reference` names, or why there are none to talk to.
pub async fn resolve(
    client: &Client,
    namespace: &str,
    reference: &ClusterRef,
) -> Result<std::result::Result<Brokers, Unreachable>> {
    if let Some(name) = &reference.cluster {
        let cluster = match cluster(client, namespace, name).await? {
            Ok(cluster) => cluster,
            Err(unreachable) => return Ok(Err(unreachable)),
        };
        let access = credentials::access(&cluster, client, namespace).await?;
        let groups = (0..cluster.spec.broker_groups)
            .map(|index| {
                let group = resources::broker_group_name(&cluster, index);
                let members = (0..cluster.spec.replicas_per_group)
                    .map(|ordinal| {
                        resources::broker_address(&cluster, &group, &format!("{group}-{ordinal}"))
                    })
                    .collect();
                (group, members)
            })
            .collect();
        tracing::trace!(cluster = %cluster.name_any(), "resolved the brokers of a RocketCluster");
        return Ok(Ok(Brokers { access, groups }));
    }
    let name_servers = reference.name_servers.as_deref().unwrap_or_default();
    let mut reasons = Vec::new();
    for addr in name_servers
        .split(';')
        .map(str::trim)
        .filter(|a| !a.is_empty())
    {
        match cluster_info(addr).await {
            Ok(info) => {
                let wanted = reference.broker_cluster.as_ref().map(|name| {
                    info.cluster_addr_table
                        .get(name)
                        .cloned()
                        .unwrap_or_default()
                });
                let groups: BTreeMap<String, Vec<String>> = info
                    .broker_addr_table
                    .into_iter()
                    .filter(|(name, _)| wanted.as_ref().is_none_or(|names| names.contains(name)))
                    .map(|(name, data)| (name, data.broker_addrs.into_values().collect()))
                    .collect();
                if groups.is_empty() {
                    return Ok(Err((
                        "NoBrokers",
                        format!("name server {addr} knows no broker of the wanted cluster"),
                    )));
                }
                return Ok(Ok(Brokers {
                    access: Access::default(),
                    groups,
                }));
            }
            Err(reason) => reasons.push(format!("{addr}: {reason}")),
        }
    }
    Ok(Err(("NameServersUnreachable", reasons.join("; "))))
}

async fn cluster_info(addr: &str) -> std::result::Result<protocol::body::ClusterInfo, String> {
    let call = async {
        let client = Remoting::connect(addr).await?;
        client.get_cluster_info().await
    };
    match tokio::time::timeout(crate::admin::CALL_TIMEOUT, call).await {
        Ok(Ok(info)) => Ok(info),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err("no answer".to_string()),
    }
}
