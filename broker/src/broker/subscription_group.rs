//! Consumer groups' settings on this broker (`config/subscriptionGroup.json`): whether a
//! group may consume, how many retries before the dead-letter queue, orderly or not.
//! Groups not created beforehand are created with RocketMQ's defaults on first use when
//! `autoCreateSubscriptionGroup` is on.

use std::collections::BTreeMap;
use std::path::PathBuf;

use parking_lot::RwLock;
use protocol::body::SubscriptionGroupConfig;
use serde::{Deserialize, Serialize};

use crate::config_file::StateFile;
use crate::error::Result;

/// Longest group name created on demand (`Validators.CHARACTER_MAX_LENGTH`).
const MAX_GROUP_NAME: usize = 255;

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GroupFile {
    subscription_group_table: BTreeMap<String, SubscriptionGroupConfig>,
}

pub struct SubscriptionGroups {
    file: StateFile,
    auto_create: bool,
    table: RwLock<GroupFile>,
}

impl SubscriptionGroups {
    pub fn open(path: PathBuf, auto_create: bool) -> Result<SubscriptionGroups> {
        let file = StateFile::new(path);
        Ok(SubscriptionGroups {
            table: RwLock::new(file.load()?.unwrap_or_default()),
            file,
            auto_create,
        })
    }

    pub fn get(&self, group: &str) -> Option<SubscriptionGroupConfig> {
        self.table
            .read()
            .subscription_group_table
            .get(group)
            .cloned()
    }

    /// The group's settings, created with defaults if it is new and auto-creation is on;
    /// `None` when the group does not exist and may not be created.
    pub fn find_or_create(&self, group: &str) -> Result<Option<SubscriptionGroupConfig>> {
        if let Some(found) = self.get(group) {
            return Ok(Some(found));
        }
        // Apache creates only legal names (`findSubscriptionGroupConfig`): a group names a
        // retry topic, which names a folder, and a client could invent anything.
        if !self.auto_create
            || group.is_empty()
            || group.len() > MAX_GROUP_NAME
            || !super::topic_config::has_legal_characters(group)
        {
            return Ok(None);
        }
        let created = SubscriptionGroupConfig::named(group);
        self.upsert(created.clone())?;
        Ok(Some(created))
    }

    pub fn upsert(&self, config: SubscriptionGroupConfig) -> Result<()> {
        self.upsert_all([config])
    }

    /// Creates or replaces every group of `configs`, with one write.
    pub fn upsert_all(
        &self,
        configs: impl IntoIterator<Item = SubscriptionGroupConfig>,
    ) -> Result<()> {
        let mut table = self.table.write();
        for config in configs {
            table
                .subscription_group_table
                .insert(config.group_name.clone(), config);
        }
        self.file.note_change();
        self.file.save(table)
    }

    pub fn delete(&self, group: &str) -> Result<bool> {
        let mut table = self.table.write();
        if table.subscription_group_table.remove(group).is_none() {
            return Ok(false);
        }
        self.file.note_change();
        self.file.save(table)?;
        Ok(true)
    }

    pub fn all(&self) -> BTreeMap<String, SubscriptionGroupConfig> {
        self.table.read().subscription_group_table.clone()
    }

    pub fn count(&self) -> usize {
        self.table.read().subscription_group_table.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_are_created_on_first_use_and_persist() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("subscriptionGroup.json");
        let groups = SubscriptionGroups::open(path.clone(), true).unwrap();
        let created = groups.find_or_create("g").unwrap().unwrap();
        assert_eq!(created.retry_max_times, 16);
        let mut changed = created;
        changed.retry_max_times = 2;
        groups.upsert(changed).unwrap();
        let reopened = SubscriptionGroups::open(path, false).unwrap();
        assert_eq!(reopened.get("g").unwrap().retry_max_times, 2);
        assert!(reopened.find_or_create("other").unwrap().is_none());
        assert!(reopened.delete("g").unwrap());
        assert!(reopened.get("g").is_none());
    }

    #[test]
    fn only_legal_group_names_are_created_on_demand() {
        let dir = tempfile::tempdir().unwrap();
        let groups = SubscriptionGroups::open(dir.path().join("groups.json"), true).unwrap();
        for illegal in ["", "../escape", "a b", "a/b", &"g".repeat(256)] {
            assert!(
                groups.find_or_create(illegal).unwrap().is_none(),
                "{illegal:?}"
            );
        }
        assert!(groups.find_or_create("Legal_group-1").unwrap().is_some());
        assert_eq!(groups.all().len(), 1);
    }
}
