//! The users of `plain_acl.yml`, ACL 1.0's file, which Apache RocketMQ 4.x and 5.0–5.3.2
//! read and Rocketry reads the same way (docs/security.md says where it differs).

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::address::Addresses;
use super::perm::{Perm, Perms};

/// One user: its secret, whether it may administer, and what it may reach.
#[derive(Debug, Clone, PartialEq)]
pub struct Account {
    pub secret: String,
    pub admin: bool,
    /// Kept but refused (ACL 2.0's `userStatus: disable`).
    pub disabled: bool,
    /// Where its requests may come from; `None` is anywhere.
    pub addresses: Option<Addresses>,
    pub topics: Perms,
    pub groups: Perms,
}

/// Every user, by access key; shared, so a request holds its user while the file is read
/// again.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Accounts(HashMap<String, Arc<Account>>);

/// The file as written: what user management edits and writes back.
#[derive(Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct File {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    global_white_remote_addresses: Option<Vec<String>>,
    #[serde(default)]
    pub accounts: Vec<Entry>,
}

#[derive(Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    access_key: Scalar,
    secret_key: Scalar,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    white_remote_address: Option<String>,
    #[serde(default)]
    pub admin: bool,
    /// Rocketry's own: ACL 2.0's `userStatus: disable`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    default_topic_perm: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    default_group_perm: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topic_perms: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub group_perms: Vec<String>,
}

impl Entry {
    /// A user with a secret and no grants.
    pub fn new(name: &str, secret: &str) -> Entry {
        Entry {
            access_key: Scalar::Text(name.into()),
            secret_key: Scalar::Text(secret.into()),
            white_remote_address: None,
            admin: false,
            disabled: false,
            default_topic_perm: None,
            default_group_perm: None,
            topic_perms: Vec::new(),
            group_perms: Vec::new(),
        }
    }

    pub fn name(&self) -> String {
        self.access_key.to_string()
    }

    pub fn set_secret(&mut self, secret: &str) {
        self.secret_key = Scalar::Text(secret.into());
    }
}

impl File {
    pub fn parse(text: &str) -> Result<File, String> {
        serde_norway::from_str(text).map_err(|e| e.to_string())
    }

    pub fn to_text(&self) -> String {
        serde_norway::to_string(self).expect("the users file serializes")
    }
}

/// A key or secret as YAML may type it: Apache's sample file has `secretKey: 12345678`.
#[derive(Deserialize, Serialize)]
#[serde(untagged)]
enum Scalar {
    Text(String),
    Integer(i64),
}

impl std::fmt::Display for Scalar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scalar::Text(text) => f.write_str(text),
            Scalar::Integer(n) => write!(f, "{n}"),
        }
    }
}

impl Accounts {
    /// Parses the file's text. Anything doubtful is an error naming the entry, never a
    /// guess: a typo in a permission must not widen or narrow access silently.
    pub fn parse(text: &str) -> Result<(Accounts, Vec<String>), String> {
        let file = File::parse(text)?;
        let mut warnings = Vec::new();
        if file
            .global_white_remote_addresses
            .is_some_and(|list| !list.is_empty())
        {
            // Apache lets these addresses skip authentication altogether; Rocketry lets no
            // address do that, so the list is read and not obeyed.
            warnings.push(
                "globalWhiteRemoteAddresses is ignored: no address skips authentication".into(),
            );
        }
        let mut accounts = HashMap::new();
        for entry in file.accounts {
            let key = entry.access_key.to_string();
            let secret = entry.secret_key.to_string();
            let context = |reason: String| format!("account {key}: {reason}");
            if key.is_empty() || secret.is_empty() {
                return Err(context("accessKey and secretKey must not be empty".into()));
            }
            let default = |perm: Option<String>, what: &str| match perm {
                None => Ok(Perm::Deny),
                Some(text) => Perm::parse(&text).ok_or_else(|| {
                    context(format!("{what} {text:?} must be DENY, PUB, SUB or PUB|SUB"))
                }),
            };
            let topic_default = default(entry.default_topic_perm, "defaultTopicPerm")?;
            let group_default = default(entry.default_group_perm, "defaultGroupPerm")?;
            let addresses = match entry.white_remote_address.as_deref().map(str::trim) {
                None | Some("") => None,
                Some(pattern) => Some(Addresses::parse(pattern).map_err(context)?),
            };
            let account = Account {
                secret,
                admin: entry.admin,
                disabled: entry.disabled,
                addresses,
                topics: Perms::parse(&entry.topic_perms, topic_default).map_err(context)?,
                groups: Perms::parse(&entry.group_perms, group_default).map_err(context)?,
            };
            if accounts.insert(key.clone(), Arc::new(account)).is_some() {
                return Err(format!("account {key} is listed twice"));
            }
        }
        Ok((Accounts(accounts), warnings))
    }

    pub fn get(&self, access_key: &str) -> Option<&Arc<Account>> {
        self.0.get(access_key)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Apache's sample `distribution/conf/plain_acl.yml`, shape for shape.
    const APACHE_SAMPLE: &str = r#"
globalWhiteRemoteAddresses:
  - 10.10.103.*
  - 192.168.0.*

accounts:
  - accessKey: RocketMQ
    secretKey: 12345678
    whiteRemoteAddress:
    admin: false
    defaultTopicPerm: DENY
    defaultGroupPerm: SUB
    topicPerms:
      - topicA=DENY
      - topicB=PUB|SUB
      - topicC=SUB
    groupPerms:
      # the group should convert to retry topic
      - groupA=DENY
      - groupB=PUB|SUB
      - groupC=SUB

  - accessKey: rocketmq2
    secretKey: 12345678
    whiteRemoteAddress: 192.168.1.*
    # if it is admin, it could access all resources
    admin: true
"#;

    #[test]
    fn reads_apache_sample_file() {
        let (accounts, warnings) = Accounts::parse(APACHE_SAMPLE).unwrap();
        assert_eq!(accounts.len(), 2);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        let user = accounts.get("RocketMQ").unwrap();
        assert_eq!(user.secret, "12345678");
        assert!(!user.admin && user.addresses.is_none());
        assert_eq!(user.topics.of("topicA"), Perm::Deny);
        assert_eq!(user.topics.of("topicB"), Perm::PubSub);
        assert_eq!(user.topics.of("other"), Perm::Deny);
        assert_eq!(user.groups.of("groupC"), Perm::Sub);
        assert_eq!(user.groups.of("other"), Perm::Sub);
        let admin = accounts.get("rocketmq2").unwrap();
        assert!(admin.admin);
        assert!(admin
            .addresses
            .as_ref()
            .unwrap()
            .matches("192.168.1.9".parse().unwrap()));
        assert!(!admin
            .addresses
            .as_ref()
            .unwrap()
            .matches("192.168.2.9".parse().unwrap()));
    }

    #[test]
    fn doubtful_files_are_refused_with_the_account_named() {
        let typo = "accounts:\n  - accessKey: a\n    secretKey: b\n    defaultTopicPerm: PUBSUB\n";
        let error = Accounts::parse(typo).unwrap_err();
        assert!(
            error.contains("account a") && error.contains("defaultTopicPerm"),
            "{error}"
        );
        let twice =
            "accounts:\n  - {accessKey: a, secretKey: b}\n  - {accessKey: a, secretKey: c}\n";
        assert!(Accounts::parse(twice).unwrap_err().contains("twice"));
        let no_secret = "accounts:\n  - {accessKey: a, secretKey: ''}\n";
        assert!(Accounts::parse(no_secret).is_err());
        assert!(Accounts::parse("accounts: [").is_err());
    }
}
