//! What an account may do with a topic or a group: RocketMQ's permission strings, and the
//! rule that picks one for a name (its own entry, else the longest prefix entry, else the
//! account's default).

use std::collections::HashMap;

/// A permission as `plain_acl.yml` spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Perm {
    Deny,
    Pub,
    Sub,
    PubSub,
}

/// What a request does with a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Pub,
    Sub,
}

impl Perm {
    /// RocketMQ's spellings. Apache reads anything else as DENY; Rocketry refuses the file
    /// instead, so a typo is an error at load rather than a puzzle at run time.
    pub fn parse(text: &str) -> Option<Perm> {
        match text.trim() {
            "DENY" => Some(Perm::Deny),
            "PUB" => Some(Perm::Pub),
            "SUB" => Some(Perm::Sub),
            "PUB|SUB" | "SUB|PUB" => Some(Perm::PubSub),
            _ => None,
        }
    }

    pub fn allows(self, access: Access) -> bool {
        matches!(
            (self, access),
            (Perm::PubSub, _) | (Perm::Pub, Access::Pub) | (Perm::Sub, Access::Sub)
        )
    }
}

/// One account's permissions on one kind of resource.
#[derive(Debug, Clone, PartialEq)]
pub struct Perms {
    literal: HashMap<String, Perm>,
    /// `name*` entries, longest prefix first, so the most specific one is found first.
    prefixed: Vec<(String, Perm)>,
    default: Perm,
}

impl Perms {
    /// From `name=PERM` entries; a name ending in `*` covers every name it prefixes.
    pub fn parse(entries: &[String], default: Perm) -> Result<Perms, String> {
        let mut literal = HashMap::new();
        let mut prefixed = Vec::new();
        for entry in entries {
            let Some((name, perm)) = entry.split_once('=') else {
                return Err(format!("{entry:?} is not name=PERM"));
            };
            let perm = Perm::parse(perm).ok_or_else(|| {
                format!("{entry:?}: the permission must be DENY, PUB, SUB or PUB|SUB")
            })?;
            let name = name.trim();
            match name.strip_suffix('*') {
                Some(prefix) => prefixed.push((prefix.to_string(), perm)),
                None => {
                    literal.insert(name.to_string(), perm);
                }
            }
        }
        prefixed.sort_by_key(|(prefix, _)| std::cmp::Reverse(prefix.len()));
        Ok(Perms {
            literal,
            prefixed,
            default,
        })
    }

    /// The permission that applies to `name`: an exact entry wins over any prefix, so a
    /// DENY on one topic holds inside a prefix grant.
    pub fn of(&self, name: &str) -> Perm {
        if let Some(perm) = self.literal.get(name) {
            return *perm;
        }
        self.prefixed
            .iter()
            .find(|(prefix, _)| name.starts_with(prefix.as_str()))
            .map_or(self.default, |(_, perm)| *perm)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn perms(entries: &[&str], default: Perm) -> Perms {
        let entries: Vec<String> = entries.iter().map(|e| e.to_string()).collect();
        Perms::parse(&entries, default).unwrap()
    }

    #[test]
    fn exact_beats_prefix_and_longer_prefix_beats_shorter() {
        let p = perms(
            &["orders*=PUB|SUB", "orders-audit=DENY", "orders-eu*=SUB"],
            Perm::Deny,
        );
        assert_eq!(p.of("orders-audit"), Perm::Deny);
        assert_eq!(p.of("orders-us"), Perm::PubSub);
        assert_eq!(p.of("orders-eu-1"), Perm::Sub);
        assert_eq!(p.of("payments"), Perm::Deny);
    }

    #[test]
    fn permissions_allow_what_they_name() {
        assert!(Perm::Pub.allows(Access::Pub) && !Perm::Pub.allows(Access::Sub));
        assert!(Perm::Sub.allows(Access::Sub) && !Perm::Sub.allows(Access::Pub));
        assert!(Perm::PubSub.allows(Access::Pub) && Perm::PubSub.allows(Access::Sub));
        assert!(!Perm::Deny.allows(Access::Pub) && !Perm::Deny.allows(Access::Sub));
        assert_eq!(Perm::parse("SUB|PUB"), Some(Perm::PubSub));
    }

    #[test]
    fn a_misspelt_permission_is_an_error_not_a_silent_deny() {
        let error = Perms::parse(&["t=PUBSUB".to_string()], Perm::Deny).unwrap_err();
        assert!(error.contains("DENY, PUB, SUB or PUB|SUB"), "{error}");
        assert!(Perms::parse(&["t".to_string()], Perm::Deny).is_err());
    }
}
