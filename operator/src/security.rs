//! What a cluster's `spec.security` makes of its brokers and name servers: the config keys,
//! the Secrets they mount, and the ACL file (`plain_acl.yml`) rendered from the operator's own
//! account and the cluster's RocketUsers. Pure functions of their inputs; the Secrets are
//! read and written by `credentials`.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::crd::RocketCluster;
use crate::user::{Perm, RocketUserSpec};
use kube::ResourceExt;

/// The operator's own user in every ACL it writes: an administrator, so that it may fence
/// writes at the name servers and copy topics to new groups.
pub const OPERATOR_USER: &str = "rocketry-operator";
/// Where brokers and name servers mount the ACL Secret; the kubelet swaps the file in place
/// when the Secret changes, and the broker reads it again within a second.
pub const ACL_DIR: &str = "/etc/rocketry-acl";
pub const ACL_FILE_KEY: &str = "plain_acl.yml";
/// Where they mount the TLS Secret (cert-manager's `tls.crt`, `tls.key`, `ca.crt`).
pub const TLS_DIR: &str = "/etc/rocketry-tls";
/// The keys of a generated user Secret and of the operator's credentials Secret.
pub const ACCESS_KEY: &str = "accessKey";
pub const SECRET_KEY: &str = "secretKey";

/// The Secret holding the cluster's `plain_acl.yml`.
pub fn acl_secret_name(cluster: &RocketCluster) -> String {
    format!("{}-acl", cluster.name_any())
}

/// The Secret holding the operator's own access key and secret key for the cluster.
pub fn operator_secret_name(cluster: &RocketCluster) -> String {
    format!("{}-operator-credentials", cluster.name_any())
}

/// A new secret key: 32 random bytes from the operating system, hex-encoded.
pub fn generate_secret() -> String {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .expect("the operating system's random source failed");
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The keys `spec.security` adds to every broker's `broker.conf`.
pub fn broker_keys(cluster: &RocketCluster) -> Vec<(&'static str, String)> {
    let mut keys = server_keys(cluster);
    if let Some(tls) = &cluster.spec.security.tls {
        // The broker's own connections to the name servers, checked as the operator's are.
        keys.push(("tls.enable", "true".to_string()));
        keys.push(("tls.client.authServer", "true".to_string()));
        keys.push(("tls.client.trustCertPath", format!("{TLS_DIR}/ca.crt")));
        if tls.client_auth {
            keys.push(("tls.client.certPath", format!("{TLS_DIR}/tls.crt")));
            keys.push(("tls.client.keyPath", format!("{TLS_DIR}/tls.key")));
        }
    }
    keys
}

/// The keys of a name server's `namesrv.conf`, the server half of the broker's.
pub fn server_keys(cluster: &RocketCluster) -> Vec<(&'static str, String)> {
    let security = &cluster.spec.security;
    let mut keys = Vec::new();
    if security.acl.enabled {
        keys.push(("aclEnable", "true".to_string()));
        keys.push(("aclFile", format!("{ACL_DIR}/{ACL_FILE_KEY}")));
    }
    if let Some(tls) = &security.tls {
        keys.push(("tls.server.mode", tls.mode.config_value().to_string()));
        keys.push(("tls.server.certPath", format!("{TLS_DIR}/tls.crt")));
        keys.push(("tls.server.keyPath", format!("{TLS_DIR}/tls.key")));
        keys.push(("tls.server.trustCertPath", format!("{TLS_DIR}/ca.crt")));
        let client_auth = if tls.client_auth { "require" } else { "none" };
        keys.push(("tls.server.need.client.auth", client_auth.to_string()));
    }
    keys
}

/// One user of the rendered file, with the secret its Secret holds.
pub struct Account<'a> {
    pub name: &'a str,
    pub secret: &'a str,
    pub spec: &'a RocketUserSpec,
}

#[derive(Serialize)]
struct File<'a> {
    accounts: Vec<Entry<'a>>,
}

/// An account as `plain_acl.yml` spells it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Entry<'a> {
    access_key: &'a str,
    secret_key: &'a str,
    admin: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    white_remote_address: Option<&'a str>,
    default_topic_perm: &'static str,
    default_group_perm: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    topic_perms: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    group_perms: Vec<String>,
}

fn grants(perms: &BTreeMap<String, Perm>) -> Vec<String> {
    perms
        .iter()
        .map(|(name, perm)| format!("{name}={}", perm.as_str()))
        .collect()
}

/// The cluster's `plain_acl.yml`: the operator's account first, then the users by name, so
/// the same users always give the same bytes (and an unchanged Secret is not written).
pub fn render_acl_file(operator_secret: &str, users: &[Account]) -> String {
    let operator = Entry {
        access_key: OPERATOR_USER,
        secret_key: operator_secret,
        admin: true,
        white_remote_address: None,
        default_topic_perm: Perm::Deny.as_str(),
        default_group_perm: Perm::Deny.as_str(),
        topic_perms: Vec::new(),
        group_perms: Vec::new(),
    };
    let mut users: Vec<&Account> = users.iter().collect();
    users.sort_by_key(|account| account.name);
    let entries = users.into_iter().map(|account| Entry {
        access_key: account.name,
        secret_key: account.secret,
        admin: account.spec.admin,
        white_remote_address: account.spec.white_remote_address.as_deref(),
        default_topic_perm: account
            .spec
            .default_topic_perm
            .unwrap_or(Perm::Deny)
            .as_str(),
        default_group_perm: account
            .spec
            .default_group_perm
            .unwrap_or(Perm::Deny)
            .as_str(),
        topic_perms: grants(&account.spec.topic_perms),
        group_perms: grants(&account.spec.group_perms),
    });
    let file = File {
        accounts: std::iter::once(operator).chain(entries).collect(),
    };
    let yaml = serde_norway::to_string(&file).expect("an ACL file always serializes");
    format!("# Written by the Rocketry operator from the cluster's RocketUsers; edits here are overwritten.\n{yaml}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::RocketClusterSpec;

    fn cluster(security: serde_json::Value) -> RocketCluster {
        let spec: RocketClusterSpec = serde_json::from_value(serde_json::json!({
            "image": "rocketry:test",
            "storage": {"size": "1Gi"},
            "security": security,
        }))
        .unwrap();
        RocketCluster::new("demo", spec)
    }

    #[test]
    fn no_security_adds_no_keys() {
        let plain = cluster(serde_json::json!({}));
        assert!(broker_keys(&plain).is_empty());
        assert!(server_keys(&plain).is_empty());
    }

    #[test]
    fn acl_and_mutual_tls_name_the_mounted_files() {
        let secure = cluster(serde_json::json!({
            "acl": {"enabled": true},
            "tls": {"mode": "Enforcing", "secretName": "demo-tls", "clientAuth": true}
        }));
        let keys: BTreeMap<_, _> = broker_keys(&secure).into_iter().collect();
        assert_eq!(keys["aclEnable"], "true");
        assert_eq!(keys["aclFile"], "/etc/rocketry-acl/plain_acl.yml");
        assert_eq!(keys["tls.server.mode"], "enforcing");
        assert_eq!(keys["tls.server.need.client.auth"], "require");
        assert_eq!(keys["tls.enable"], "true");
        assert_eq!(keys["tls.client.authServer"], "true");
        assert_eq!(keys["tls.client.keyPath"], "/etc/rocketry-tls/tls.key");
        // A name server serves; it never dials out.
        let namesrv: BTreeMap<_, _> = server_keys(&secure).into_iter().collect();
        assert_eq!(namesrv["tls.server.mode"], "enforcing");
        assert!(!namesrv.contains_key("tls.enable"));
    }

    #[test]
    fn the_acl_file_holds_the_operator_as_admin_and_each_users_grants() {
        let spec: RocketUserSpec = serde_json::from_value(serde_json::json!({
            "cluster": "demo",
            "topicPerms": {"orders": "PUB|SUB", "audit*": "DENY"},
            "defaultGroupPerm": "SUB",
            "whiteRemoteAddress": "10.1.*.*"
        }))
        .unwrap();
        let admin: RocketUserSpec =
            serde_json::from_value(serde_json::json!({"cluster": "demo", "admin": true})).unwrap();
        let users = [
            Account {
                name: "zeta-admin",
                secret: "s2",
                spec: &admin,
            },
            Account {
                name: "app-orders",
                secret: "s1",
                spec: &spec,
            },
        ];
        let text = render_acl_file("op-secret", &users);
        let file: serde_json::Value = serde_norway::from_str(&text).unwrap();
        let accounts = file["accounts"].as_array().unwrap();
        let names: Vec<&str> = accounts
            .iter()
            .map(|a| a["accessKey"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["rocketry-operator", "app-orders", "zeta-admin"]);
        assert_eq!(accounts[0]["admin"], true);
        assert_eq!(accounts[0]["secretKey"], "op-secret");
        assert_eq!(
            accounts[1]["topicPerms"],
            serde_json::json!(["audit*=DENY", "orders=PUB|SUB"])
        );
        assert_eq!(accounts[1]["defaultTopicPerm"], "DENY");
        assert_eq!(accounts[1]["defaultGroupPerm"], "SUB");
        assert_eq!(accounts[1]["whiteRemoteAddress"], "10.1.*.*");
        assert_eq!(accounts[2]["admin"], true);
        assert_eq!(text, render_acl_file("op-secret", &users), "not stable");
    }

    #[test]
    fn generated_secrets_are_long_and_differ() {
        let (a, b) = (generate_secret(), generate_secret());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
    }
}
