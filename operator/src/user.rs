//! The `RocketUser` custom resource: one user of a cluster's ACL, its grants, and where its
//! secret lives (a Secret of the user's own, or one the operator generates, as Strimzi's
//! KafkaUser does).

// Several printcolumn(...) entries repeat `type_ = ...`, which clippy mistakes for a duplicated attribute.
#![allow(clippy::duplicated_attributes)]

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Grant names go into `plain_acl.yml` as `name=PERM`; a name holding `=` or a space would
/// read back as another grant.
const GRANT_NAMES_RULE: &str = "self.all(name, name.matches('^[^=\\\\s]+$'))";
const GRANT_NAMES_MESSAGE: &str = "a grant's name may not hold '=' or whitespace";

/// A user of a RocketCluster's ACL. Its access key is its name.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "rocketry.dev",
    version = "v1alpha1",
    kind = "RocketUser",
    namespaced,
    shortname = "rocketuser",
    category = "rocketry",
    status = "RocketUserStatus",
    doc = "A user of a RocketCluster's ACL (spec.security.acl): its grants, and the Secret with its access key and secret key.",
    printcolumn(name = "Cluster", type_ = "string", json_path = ".spec.cluster"),
    printcolumn(name = "Admin", type_ = "boolean", json_path = ".spec.admin"),
    printcolumn(name = "Secret", type_ = "string", json_path = ".status.secretName"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct RocketUserSpec {
    /// The RocketCluster, in the same namespace, whose ACL has this user.
    #[schemars(length(min = 1, max = 63))]
    pub cluster: String,
    /// Administrators may change topics, groups, offsets and settings (mqadmin's admin
    /// commands) and reach every topic and group.
    #[serde(default)]
    pub admin: bool,
    /// What the user may do with a topic no grant names; DENY when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_topic_perm: Option<Perm>,
    /// What the user may do with a consumer group no grant names; DENY when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_group_perm: Option<Perm>,
    /// Grants by topic: a name, or a prefix ending in `*`; a name's own grant wins over any
    /// prefix's, so a DENY on one topic holds under a wider prefix grant.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": GRANT_NAMES_RULE, "message": GRANT_NAMES_MESSAGE}]))]
    pub topic_perms: BTreeMap<String, Perm>,
    /// Grants by consumer group, as `topicPerms`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": GRANT_NAMES_RULE, "message": GRANT_NAMES_MESSAGE}]))]
    pub group_perms: BTreeMap<String, Perm>,
    /// Where the user's requests may come from: an address, a `*` wildcard per octet
    /// (`10.1.*.*`), a range per octet (`10.1.1-9.*`) or a list in braces (`10.1.1.{1,2}`);
    /// anywhere when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub white_remote_address: Option<String>,
    /// The user's secret key from a Secret of its own; when unset the operator generates
    /// one and keeps it in a Secret named after the user, with `accessKey` and `secretKey`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<SecretKeyRef>,
}

/// A key of a Secret in the user's namespace.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    #[serde(default = "secret_key")]
    pub key: String,
}

fn secret_key() -> String {
    "secretKey".to_string()
}

/// A permission as RocketMQ's `plain_acl.yml` spells it.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum Perm {
    #[serde(rename = "PUB")]
    Pub,
    #[serde(rename = "SUB")]
    Sub,
    #[serde(rename = "PUB|SUB")]
    PubSub,
    #[serde(rename = "DENY")]
    Deny,
}

impl Perm {
    pub fn as_str(self) -> &'static str {
        match self {
            Perm::Pub => "PUB",
            Perm::Sub => "SUB",
            Perm::PubSub => "PUB|SUB",
            Perm::Deny => "DENY",
        }
    }
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RocketUserStatus {
    /// The Secret holding the user's `secretKey` (and, when generated, `accessKey`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    /// Ready: the user is in its cluster's ACL file.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::CustomResourceExt;

    #[test]
    fn grants_are_typed_and_spelled_as_in_plain_acl_yml() {
        let spec: RocketUserSpec = serde_json::from_value(serde_json::json!({
            "cluster": "demo",
            "topicPerms": {"orders": "PUB|SUB", "audit*": "DENY"},
            "defaultGroupPerm": "SUB"
        }))
        .unwrap();
        assert_eq!(spec.topic_perms["orders"], Perm::PubSub);
        assert_eq!(spec.default_group_perm, Some(Perm::Sub));
        assert!(!spec.admin);
        let wrong = serde_json::from_value::<RocketUserSpec>(serde_json::json!({
            "cluster": "demo", "topicPerms": {"orders": "WRITE"}
        }));
        assert!(wrong.is_err());
    }

    #[test]
    fn crd_checks_the_grants() {
        let crd = serde_json::to_string(&RocketUser::crd()).unwrap();
        for needle in ["PUB|SUB", GRANT_NAMES_MESSAGE, ".status.secretName"] {
            assert!(crd.contains(needle), "CRD lacks {needle}");
        }
    }
}
