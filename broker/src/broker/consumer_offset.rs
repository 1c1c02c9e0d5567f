//! Committed consumer offsets of clustering consumers, per `topic@group` and queue,
//! kept in memory and persisted to `config/consumerOffset.json` periodically and at stop.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::config_file::StateFile;
use crate::error::Result;

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct OffsetFile {
    /// `topic@group` -> queue id -> next offset to consume. The Java broker writes the queue
    /// ids unquoted (fastjson); this file uses standard JSON and is read only by Rocketry.
    offset_table: BTreeMap<String, BTreeMap<i32, i64>>,
}

pub struct ConsumerOffsets {
    file: StateFile,
    table: Mutex<OffsetFile>,
    /// `topic@group` -> queue id -> next offset the group's last pull asked the broker to
    /// continue from (Apache 5.x's pull offset table). Kept in memory only: after a restart
    /// the committed offset stands in for it until the next pull.
    pulled: Mutex<HashMap<String, HashMap<i32, i64>>>,
}

fn key(topic: &str, group: &str) -> String {
    format!("{topic}@{group}")
}

impl ConsumerOffsets {
    pub fn open(path: PathBuf) -> Result<ConsumerOffsets> {
        let file = StateFile::new(path);
        Ok(ConsumerOffsets {
            table: Mutex::new(file.load()?.unwrap_or_default()),
            pulled: Mutex::new(HashMap::new()),
            file,
        })
    }

    pub fn commit(&self, topic: &str, group: &str, queue_id: i32, offset: i64) {
        let mut table = self.table.lock();
        table
            .offset_table
            .entry(key(topic, group))
            .or_default()
            .insert(queue_id, offset);
        self.file.note_change();
    }

    pub fn query(&self, topic: &str, group: &str, queue_id: i32) -> Option<i64> {
        self.table
            .lock()
            .offset_table
            .get(&key(topic, group))?
            .get(&queue_id)
            .copied()
    }

    /// A pull of `group` answered up to `next_offset` (the offset it continues from).
    pub fn pulled(&self, topic: &str, group: &str, queue_id: i32, next_offset: i64) {
        self.pulled
            .lock()
            .entry(key(topic, group))
            .or_default()
            .insert(queue_id, next_offset);
    }

    /// Where the group's last pull of the queue left off; `None` when it never pulled it
    /// since the broker started.
    pub fn query_pulled(&self, topic: &str, group: &str, queue_id: i32) -> Option<i64> {
        self.pulled
            .lock()
            .get(&key(topic, group))?
            .get(&queue_id)
            .copied()
    }

    /// Every queue's offset of `group` on `topic`.
    pub fn of(&self, topic: &str, group: &str) -> BTreeMap<i32, i64> {
        self.table
            .lock()
            .offset_table
            .get(&key(topic, group))
            .cloned()
            .unwrap_or_default()
    }

    /// Topics for which `group` has committed offsets.
    pub fn topics_of_group(&self, group: &str) -> Vec<String> {
        let suffix = format!("@{group}");
        self.table
            .lock()
            .offset_table
            .keys()
            .filter_map(|k| k.strip_suffix(&suffix).map(str::to_string))
            .collect()
    }

    /// Groups with committed offsets on `topic`.
    pub fn groups_of_topic(&self, topic: &str) -> Vec<String> {
        let prefix = format!("{topic}@");
        self.table
            .lock()
            .offset_table
            .keys()
            .filter_map(|k| k.strip_prefix(&prefix).map(str::to_string))
            .collect()
    }

    /// Every (topic, group) with committed offsets.
    pub fn pairs(&self) -> Vec<(String, String)> {
        self.table
            .lock()
            .offset_table
            .keys()
            .filter_map(|k| k.split_once('@'))
            .map(|(topic, group)| (topic.to_string(), group.to_string()))
            .collect()
    }

    /// Gives `dest` the offsets `src` has on `topic`, replacing any it had there (mqadmin
    /// `cloneGroupOffset`); nothing changes when `src` has none.
    pub fn clone_offsets(&self, topic: &str, src: &str, dest: &str) {
        let mut table = self.table.lock();
        let Some(offsets) = table.offset_table.get(&key(topic, src)).cloned() else {
            return;
        };
        table.offset_table.insert(key(topic, dest), offsets);
        self.file.note_change();
    }

    pub fn remove_group(&self, group: &str) {
        let suffix = format!("@{group}");
        let mut table = self.table.lock();
        table.offset_table.retain(|k, _| !k.ends_with(&suffix));
        self.file.note_change();
        self.pulled.lock().retain(|k, _| !k.ends_with(&suffix));
    }

    pub fn remove_topic(&self, topic: &str) {
        let prefix = format!("{topic}@");
        let mut table = self.table.lock();
        table.offset_table.retain(|k, _| !k.starts_with(&prefix));
        self.file.note_change();
        self.pulled.lock().retain(|k, _| !k.starts_with(&prefix));
    }

    /// Every committed offset, as GET_ALL_CONSUMER_OFFSET answers them.
    pub fn table(&self) -> BTreeMap<String, BTreeMap<i32, i64>> {
        self.table.lock().offset_table.clone()
    }

    /// Takes the offsets a replicated group's leader holds, as an Apache slave takes its
    /// master's: each queue it lists gets its offset; the others keep theirs.
    pub fn adopt(&self, leader: BTreeMap<String, BTreeMap<i32, i64>>) {
        let mut table = self.table.lock();
        let mut changed = false;
        for (key, queues) in leader {
            let ours = table.offset_table.entry(key).or_default();
            for (queue_id, offset) in queues {
                changed |= ours.insert(queue_id, offset) != Some(offset);
            }
        }
        if changed {
            self.file.note_change();
        }
    }

    /// Writes the file if anything changed since the last write. Commits go on meanwhile:
    /// the table's lock is held only to copy it.
    pub fn persist(&self) -> Result<()> {
        self.file.save(self.table.lock())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("consumerOffset.json");
        let offsets = ConsumerOffsets::open(path.clone()).unwrap();
        offsets.commit("T", "g", 0, 12);
        offsets.commit("T", "g", 1, 7);
        offsets.commit("U", "g", 0, 1);
        offsets.persist().unwrap();
        let reopened = ConsumerOffsets::open(path).unwrap();
        assert_eq!(reopened.query("T", "g", 0), Some(12));
        assert_eq!(reopened.query("T", "g", 1), Some(7));
        assert_eq!(reopened.query("T", "h", 0), None);
        assert_eq!(reopened.topics_of_group("g"), vec!["T", "U"]);
        assert_eq!(reopened.groups_of_topic("T"), vec!["g"]);
        let pair = |topic: &str| (topic.to_string(), "g".to_string());
        assert_eq!(reopened.pairs(), vec![pair("T"), pair("U")]);
    }

    #[test]
    fn pull_offsets_go_with_their_group() {
        let dir = tempfile::tempdir().unwrap();
        let offsets = ConsumerOffsets::open(dir.path().join("consumerOffset.json")).unwrap();
        offsets.pulled("T", "g", 0, 9);
        offsets.pulled("T", "h", 0, 4);
        assert_eq!(offsets.query_pulled("T", "g", 0), Some(9));
        offsets.remove_group("g");
        assert_eq!(offsets.query_pulled("T", "g", 0), None);
        offsets.remove_topic("T");
        assert_eq!(offsets.query_pulled("T", "h", 0), None);
    }
}
