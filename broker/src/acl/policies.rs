//! ACL 2.0's grant requests (mqadmin `createAcl`, `updateAcl`, `deleteAcl`, `getAcl`,
//! `listAcl`) over the users file's `topicPerms` and `groupPerms`. The file can say less
//! than ACL 2.0 can, so what it cannot hold is refused with the reason, not stored in part:
//! resources other than topics and groups, actions other than Pub, Sub and All, and
//! addresses per grant (an account's `whiteRemoteAddress` covers all of its requests).

use protocol::body::admin::{AclInfo, PolicyEntryInfo, PolicyInfo};

use super::accounts::Entry;
use super::Acl;

const TOPIC: &str = "Topic:";
const GROUP: &str = "Group:";
const USER: &str = "User:";

/// The file's permission for one ACL 2.0 grant.
fn perm_of(entry: &PolicyEntryInfo) -> Result<&'static str, String> {
    if !entry.source_ips.is_empty() {
        return Err(
            "sourceIps per grant are not supported: set the user's whiteRemoteAddress in aclFile"
                .into(),
        );
    }
    if entry.decision.eq_ignore_ascii_case("deny") {
        return Ok("DENY");
    }
    if !entry.decision.eq_ignore_ascii_case("allow") {
        return Err(format!(
            "decision {:?} must be Allow or Deny",
            entry.decision
        ));
    }
    let (mut publish, mut subscribe) = (false, false);
    for action in &entry.actions {
        match action.to_ascii_lowercase().as_str() {
            "pub" => publish = true,
            "sub" => subscribe = true,
            "all" => (publish, subscribe) = (true, true),
            _ => {
                return Err(format!(
                    "action {action:?} is not supported (Pub, Sub, All)"
                ))
            }
        }
    }
    match (publish, subscribe) {
        (true, true) => Ok("PUB|SUB"),
        (true, false) => Ok("PUB"),
        (false, true) => Ok("SUB"),
        (false, false) => Err("a grant needs an action (Pub, Sub, All)".into()),
    }
}

/// The file's list a resource's grant goes to, and the name in it.
fn list_of<'e>(
    user: &'e mut Entry,
    resource: &str,
) -> Result<(&'e mut Vec<String>, String), String> {
    if let Some(topic) = resource.strip_prefix(TOPIC) {
        Ok((&mut user.topic_perms, topic.to_string()))
    } else if let Some(group) = resource.strip_prefix(GROUP) {
        Ok((&mut user.group_perms, group.to_string()))
    } else {
        Err(format!(
            "resource {resource:?} is not supported: Topic:<name> or Group:<name>"
        ))
    }
}

/// Removes `name`'s grant from a `name=PERM` list.
fn remove(list: &mut Vec<String>, name: &str) {
    list.retain(|grant| grant.split_once('=').is_none_or(|(n, _)| n.trim() != name));
}

fn entries(kind: &str, list: &[String]) -> Vec<PolicyEntryInfo> {
    list.iter()
        .filter_map(|grant| grant.split_once('='))
        .map(|(name, perm)| {
            let perm = perm.trim();
            let (actions, decision): (&[&str], &str) = match perm {
                "PUB" => (&["Pub"], "Allow"),
                "SUB" => (&["Sub"], "Allow"),
                "DENY" => (&["Pub", "Sub"], "Deny"),
                _ => (&["Pub", "Sub"], "Allow"),
            };
            PolicyEntryInfo {
                resource: format!("{kind}{}", name.trim()),
                actions: actions.iter().map(|a| a.to_string()).collect(),
                source_ips: Vec::new(),
                decision: decision.into(),
            }
        })
        .collect()
}

fn user_name(subject: &str) -> Result<&str, String> {
    subject
        .strip_prefix(USER)
        .filter(|name| !name.is_empty())
        .ok_or_else(|| format!("subject {subject:?} must be User:<name>"))
}

impl Acl {
    /// AUTH_CREATE_ACL and AUTH_UPDATE_ACL: each grant replaces the subject's grant on its
    /// resource; all of them apply, or none.
    pub fn put_acl(&self, acl: &AclInfo) -> Result<(), String> {
        let name = user_name(&acl.subject)?;
        self.edit(|file| {
            let user = file
                .accounts
                .iter_mut()
                .find(|entry| entry.name() == name)
                .ok_or_else(|| format!("user {name} does not exist"))?;
            for entry in acl.policies.iter().flat_map(|policy| &policy.entries) {
                let perm = perm_of(entry)?;
                let (list, resource) = list_of(user, &entry.resource)?;
                remove(list, &resource);
                list.push(format!("{resource}={perm}"));
            }
            Ok(())
        })
    }

    /// AUTH_DELETE_ACL: the subject's grant on `resource`, or all of its grants.
    pub fn delete_acl(&self, subject: &str, resource: Option<&str>) -> Result<(), String> {
        let name = user_name(subject)?;
        self.edit(|file| {
            let Some(user) = file.accounts.iter_mut().find(|e| e.name() == name) else {
                return Ok(());
            };
            match resource {
                None => {
                    user.topic_perms.clear();
                    user.group_perms.clear();
                }
                Some(resource) => {
                    let (list, resource) = list_of(user, resource)?;
                    remove(list, &resource);
                }
            }
            Ok(())
        })
    }

    /// AUTH_GET_ACL and AUTH_LIST_ACL: the grants of users whose subject contains
    /// `subject_filter`, each grant's resource containing `resource_filter`.
    pub fn acls(
        &self,
        subject_filter: &str,
        resource_filter: &str,
    ) -> Result<Vec<AclInfo>, String> {
        Ok(self
            .read_file()?
            .accounts
            .iter()
            .filter_map(|user| {
                let subject = format!("{USER}{}", user.name());
                let mut granted = entries(TOPIC, &user.topic_perms);
                granted.extend(entries(GROUP, &user.group_perms));
                granted.retain(|entry| entry.resource.contains(resource_filter));
                (subject.contains(subject_filter) && !granted.is_empty()).then(|| AclInfo {
                    subject,
                    policies: vec![PolicyInfo {
                        policy_type: Some("Custom".into()),
                        entries: granted,
                    }],
                })
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(resource: &str, actions: &[&str], decision: &str) -> AclInfo {
        AclInfo {
            subject: "User:app".into(),
            policies: vec![PolicyInfo {
                policy_type: None,
                entries: vec![PolicyEntryInfo {
                    resource: resource.into(),
                    actions: actions.iter().map(|a| a.to_string()).collect(),
                    source_ips: Vec::new(),
                    decision: decision.into(),
                }],
            }],
        }
    }

    #[test]
    fn grants_become_perm_entries_and_come_back_as_policies() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plain_acl.yml");
        std::fs::write(&path, "accounts:\n  - {accessKey: app, secretKey: s}\n").unwrap();
        let acl = Acl::open(
            super::super::Checks::AuthenticationAndAuthorization,
            path,
            String::new(),
            None,
            3,
        )
        .unwrap();
        acl.put_acl(&grant("Topic:orders", &["Pub"], "Allow"))
            .unwrap();
        acl.put_acl(&grant("Topic:orders", &["Pub", "Sub"], "Allow"))
            .unwrap();
        acl.put_acl(&grant("Topic:audit*", &["All"], "Deny"))
            .unwrap();
        acl.put_acl(&grant("Group:billing", &["Sub"], "Allow"))
            .unwrap();
        let listed = acl.acls("User:app", "").unwrap();
        let resources: Vec<(&str, &str)> = listed[0].policies[0]
            .entries
            .iter()
            .map(|e| (e.resource.as_str(), e.decision.as_str()))
            .collect();
        assert_eq!(
            resources,
            [
                ("Topic:orders", "Allow"),
                ("Topic:audit*", "Deny"),
                ("Group:billing", "Allow")
            ]
        );
        assert_eq!(listed[0].policies[0].entries[0].actions, ["Pub", "Sub"]);
        acl.delete_acl("User:app", Some("Topic:orders")).unwrap();
        assert_eq!(acl.acls("", "orders").unwrap(), Vec::new());

        for refused in [
            grant("Cluster:c", &["Pub"], "Allow"),
            grant("Topic:t", &["Create"], "Allow"),
            grant("Topic:t", &["Pub"], "Maybe"),
        ] {
            assert!(acl.put_acl(&refused).is_err(), "{refused:?}");
        }
        let mut nobody = grant("Topic:t", &["Pub"], "Allow");
        nobody.subject = "User:nobody".into();
        assert!(acl.put_acl(&nobody).unwrap_err().contains("does not exist"));
    }
}
