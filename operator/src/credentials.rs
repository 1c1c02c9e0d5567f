//! The Secrets behind a cluster's `spec.security`: the operator's own credentials (made once,
//! never rotated by a reconcile), each RocketUser's secret (its own Secret, or one generated
//! for it), the ACL Secret the brokers and name servers mount, and the TLS Secret the operator
//! reads to reach them. Each user's status says whether it made it into the ACL.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::ByteString;
use kube::api::{Api, ListParams, PostParams};
use kube::{Client, Resource, ResourceExt};
use protocol::acl::Credentials;
use protocol::client::ClientTls;

use crate::admin::Access;
use crate::controller::{apply, kube_error, next_condition, patch_object_status};
use crate::crd::{RocketCluster, TlsSpec};
use crate::resources;
use crate::security::{self, Account, ACCESS_KEY, ACL_FILE_KEY, OPERATOR_USER, SECRET_KEY};
use crate::user::RocketUser;
use crate::Result;

/// How the operator reaches the cluster, and what keeps it from reaching it as asked.
#[derive(Default)]
pub struct Prepared {
    pub access: Access,
    /// (condition reason, message) for the cluster's Degraded condition.
    pub degraded: Option<(&'static str, String)>,
}

/// Writes what the cluster's security needs before its pods start, and returns how to reach
/// them.
pub async fn prepare(
    cluster: &RocketCluster,
    client: &Client,
    namespace: &str,
) -> Result<Prepared> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let users: Api<RocketUser> = Api::namespaced(client.clone(), namespace);
    let mut prepared = Prepared::default();
    let acl = cluster.spec.security.acl.enabled;
    let members: Vec<RocketUser> = match users.list(&ListParams::default()).await {
        Ok(list) => list.items,
        // A RocketUser CRD not installed (a chart upgrade without its CRDs) means no users.
        Err(kube::Error::Api(status)) if status.code == 404 && !acl => Vec::new(),
        Err(source) => return Err(kube_error("list", "rocketuser", namespace)(source)),
    }
    .into_iter()
    .filter(|user| user.spec.cluster == cluster.name_any())
    .collect();
    if acl {
        let operator_secret = operator_secret(cluster, &secrets).await?;
        let mut found = Vec::new();
        for user in &members {
            found.push((user, user_secret(user, &secrets).await?));
        }
        let accounts: Vec<Account> = found
            .iter()
            .filter_map(|(user, secret)| {
                Some(Account {
                    name: user.metadata.name.as_deref()?,
                    secret: secret.as_deref().ok()?,
                    spec: &user.spec,
                })
            })
            .collect();
        let file = security::render_acl_file(&operator_secret, &accounts);
        let acl_secret = owned_secret(
            cluster,
            security::acl_secret_name(cluster),
            [(ACL_FILE_KEY, file)],
        );
        apply(&secrets, &acl_secret, "secret").await?;
        for (user, secret) in found {
            let standing = secret
                .err()
                .unwrap_or_else(|| Standing::ready(user, cluster));
            write_user_status(client, user, standing).await?;
        }
        prepared.access.credentials = Some(Credentials {
            access_key: OPERATOR_USER.to_string(),
            secret_key: operator_secret,
        });
    } else {
        for user in &members {
            let message = format!(
                "{} does not enable spec.security.acl, so it admits every client",
                cluster.name_any()
            );
            write_user_status(
                client,
                user,
                Standing::refused(None, "AclDisabled", message),
            )
            .await?;
        }
    }
    if let Some(tls) = &cluster.spec.security.tls {
        let secret = secrets.get_opt(&tls.secret_name).await.map_err(kube_error(
            "get",
            "secret",
            &tls.secret_name,
        ))?;
        match secret.as_ref().map(|secret| client_tls(secret, tls)) {
            None => {
                prepared.degraded = Some((
                    "TlsSecretMissing",
                    format!(
                        "spec.security.tls.secretName {} does not exist; the pods wait for it",
                        tls.secret_name
                    ),
                ))
            }
            Some(Err(message)) => prepared.degraded = Some(("TlsSecretInvalid", message)),
            Some(Ok(client)) => prepared.access.tls = Some(client),
        }
    }
    Ok(prepared)
}

/// How the operator reaches `cluster` as it stands, writing nothing: for controllers of
/// objects that live in a cluster (topics, consumer groups) while the cluster's own
/// controller makes the Secrets. A Secret not made yet reads as "no credentials" and the
/// brokers refuse, which the caller reports and retries.
pub async fn access(cluster: &RocketCluster, client: &Client, namespace: &str) -> Result<Access> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let read = |name: String| {
        let secrets = secrets.clone();
        async move {
            secrets
                .get_opt(&name)
                .await
                .map_err(kube_error("get", "secret", &name))
        }
    };
    let mut access = Access::default();
    if cluster.spec.security.acl.enabled {
        let stored = read(security::operator_secret_name(cluster)).await?;
        access.credentials = stored
            .as_ref()
            .and_then(|secret| text(secret, SECRET_KEY))
            .map(|secret_key| Credentials {
                access_key: OPERATOR_USER.to_string(),
                secret_key,
            });
    }
    if let Some(tls) = &cluster.spec.security.tls {
        let stored = read(tls.secret_name.clone()).await?;
        access.tls = stored.and_then(|secret| client_tls(&secret, tls).ok());
    }
    Ok(access)
}

fn data(secret: &Secret, key: &str) -> Option<Vec<u8>> {
    secret.data.as_ref()?.get(key).map(|bytes| bytes.0.clone())
}

fn text(secret: &Secret, key: &str) -> Option<String> {
    String::from_utf8(data(secret, key)?)
        .ok()
        .filter(|text| !text.trim().is_empty())
        .map(|text| text.trim().to_string())
}

/// The operator's client side of the cluster's TLS: it trusts `ca.crt` and, with mutual TLS,
/// shows the Secret's own certificate.
fn client_tls(secret: &Secret, tls: &TlsSpec) -> std::result::Result<ClientTls, String> {
    let name = &tls.secret_name;
    let need = |key: &str| {
        data(secret, key).ok_or_else(|| {
            format!("Secret {name} has no {key} (cert-manager's layout: tls.crt, tls.key, ca.crt)")
        })
    };
    let trust = need("ca.crt")?;
    let (cert, key) = (need("tls.crt")?, need("tls.key")?);
    let identity = tls.client_auth.then_some((cert.as_slice(), key.as_slice()));
    ClientTls::from_pem(Some(&trust), identity).map_err(|error| format!("Secret {name}: {error}"))
}

fn owned_secret<const N: usize>(
    cluster: &RocketCluster,
    name: String,
    entries: [(&str, String); N],
) -> Secret {
    Secret {
        metadata: resources::metadata(cluster, name, resources::labels(cluster, "security")),
        data: Some(secret_data(entries)),
        ..Secret::default()
    }
}

fn secret_data<const N: usize>(entries: [(&str, String); N]) -> BTreeMap<String, ByteString> {
    entries
        .into_iter()
        .map(|(key, value)| (key.to_string(), ByteString(value.into_bytes())))
        .collect()
}

/// Creates a Secret unless one of that name exists; either way returns what is stored.
async fn create_once(secrets: &Api<Secret>, secret: Secret) -> Result<Secret> {
    let name = secret.name_any();
    match secrets.create(&PostParams::default(), &secret).await {
        Ok(created) => Ok(created),
        Err(kube::Error::Api(status)) if status.code == 409 => secrets
            .get(&name)
            .await
            .map_err(kube_error("get", "secret", &name)),
        Err(source) => Err(kube_error("create", "secret", &name)(source)),
    }
}

/// The operator's secret key for the cluster, made the first time and kept from then on: a
/// new one would lock the operator out of brokers that have not read the new file yet.
async fn operator_secret(cluster: &RocketCluster, secrets: &Api<Secret>) -> Result<String> {
    let name = security::operator_secret_name(cluster);
    let fresh = owned_secret(
        cluster,
        name.clone(),
        [
            (ACCESS_KEY, OPERATOR_USER.to_string()),
            (SECRET_KEY, security::generate_secret()),
        ],
    );
    let stored = create_once(secrets, fresh.clone()).await?;
    if let Some(secret) = text(&stored, SECRET_KEY) {
        return Ok(secret);
    }
    // Emptied by hand: the operator's account is written anew with the ACL file.
    apply(secrets, &fresh, "secret").await?;
    Ok(text(&fresh, SECRET_KEY).expect("a generated secret"))
}

/// What a user's Ready condition says, and which Secret holds its secret.
struct Standing {
    secret_name: Option<String>,
    ready: bool,
    reason: &'static str,
    message: String,
}

impl Standing {
    fn ready(user: &RocketUser, cluster: &RocketCluster) -> Standing {
        let secret_name = match &user.spec.secret_key_ref {
            Some(reference) => reference.name.clone(),
            None => user.name_any(),
        };
        Standing {
            secret_name: Some(secret_name),
            ready: true,
            reason: "InAcl",
            message: format!("in the ACL of {}", cluster.name_any()),
        }
    }

    fn refused(secret_name: Option<String>, reason: &'static str, message: String) -> Standing {
        Standing {
            secret_name,
            ready: false,
            reason,
            message,
        }
    }
}

/// A user's secret key, or why it is left out of the ACL.
async fn user_secret(
    user: &RocketUser,
    secrets: &Api<Secret>,
) -> Result<std::result::Result<String, Standing>> {
    let user_name = user.name_any();
    if user_name == OPERATOR_USER {
        let message = format!("{OPERATOR_USER} is the operator's own account");
        return Ok(Err(Standing::refused(None, "ReservedName", message)));
    }
    if let Some(reference) = &user.spec.secret_key_ref {
        let name = reference.name.clone();
        let found = secrets
            .get_opt(&name)
            .await
            .map_err(kube_error("get", "secret", &name))?;
        return Ok(match found.as_ref().map(|s| text(s, &reference.key)) {
            Some(Some(secret)) => Ok(secret),
            Some(None) => {
                let message = format!("Secret {name} has no key {}", reference.key);
                Err(Standing::refused(Some(name), "SecretKeyMissing", message))
            }
            None => {
                let message = format!("Secret {name} does not exist");
                Err(Standing::refused(Some(name), "SecretMissing", message))
            }
        });
    }
    let owner = user
        .controller_owner_ref(&())
        .expect("a RocketUser read from the apiserver has a name and uid");
    let fresh = Secret {
        metadata: ObjectMeta {
            name: Some(user_name.clone()),
            namespace: user.namespace(),
            labels: Some(BTreeMap::from([
                (
                    "app.kubernetes.io/managed-by".to_string(),
                    "rocketry-operator".to_string(),
                ),
                ("rocketry.dev/user".to_string(), user_name.clone()),
            ])),
            owner_references: Some(vec![owner.clone()]),
            ..ObjectMeta::default()
        },
        data: Some(secret_data([
            (ACCESS_KEY, user_name.clone()),
            (SECRET_KEY, security::generate_secret()),
        ])),
        ..Secret::default()
    };
    let stored = create_once(secrets, fresh).await?;
    let ours = stored
        .owner_references()
        .iter()
        .any(|reference| reference.uid == owner.uid);
    let name = Some(user_name.clone());
    Ok(match (ours, text(&stored, SECRET_KEY)) {
        (true, Some(secret)) => Ok(secret),
        (true, None) => {
            let message = format!(
                "Secret {user_name} has no {SECRET_KEY}; delete it and a new one is generated"
            );
            Err(Standing::refused(name, "SecretKeyMissing", message))
        }
        (false, _) => {
            let message = format!("Secret {user_name} exists and was not generated for this user; name it in spec.secretKeyRef to use it");
            Err(Standing::refused(name, "SecretConflict", message))
        }
    })
}

/// Sets the user's Ready condition and Secret, writing only what changed.
async fn write_user_status(client: &Client, user: &RocketUser, standing: Standing) -> Result<()> {
    let current = user.status.clone().unwrap_or_default();
    let condition = next_condition(
        &current.conditions,
        user.metadata.generation,
        "Ready",
        standing.ready,
        standing.reason,
        standing.message,
    );
    let before = current.conditions.iter().find(|c| c.type_ == "Ready");
    if before == Some(&condition) && current.secret_name == standing.secret_name {
        return Ok(());
    }
    let status = serde_json::json!({"secretName": standing.secret_name, "conditions": [condition]});
    patch_object_status(client, user, "rocketuser", status).await
}
