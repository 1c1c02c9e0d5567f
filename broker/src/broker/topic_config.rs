//! The broker's topic table: queue counts and permissions per topic, persisted in
//! `config/topics.json` and sent to the name servers with every registration.

use std::path::PathBuf;

use parking_lot::RwLock;
use protocol::body::{perm, DataVersion, TopicConfig, TopicConfigSerializeWrapper};

use crate::broker::clock::now_millis;
use crate::config::BrokerConfig;
use crate::config_file::StateFile;
use crate::error::Result;

/// The template topic clients name in `defaultTopic` when they want a topic auto-created.
pub const AUTO_CREATE_TOPIC_KEY_TOPIC: &str = "TBW102";
/// Topics the Java broker creates for itself; clients may not send to them.
pub const SELF_TEST_TOPIC: &str = "SELF_TEST_TOPIC";
pub const OFFSET_MOVED_EVENT: &str = "OFFSET_MOVED_EVENT";
pub const RETRY_GROUP_TOPIC_PREFIX: &str = "%RETRY%";
pub const DLQ_GROUP_TOPIC_PREFIX: &str = "%DLQ%";
/// Topics a client may not send to (`TopicValidator.NOT_ALLOWED_SEND_TOPIC_SET`).
pub const NOT_ALLOWED_SEND_TOPICS: [&str; 6] = [
    "SCHEDULE_TOPIC_XXXX",
    "RMQ_SYS_TRANS_HALF_TOPIC",
    "RMQ_SYS_TRANS_OP_HALF_TOPIC",
    "TRANS_CHECK_MAX_TIME_TOPIC",
    SELF_TEST_TOPIC,
    OFFSET_MOVED_EVENT,
];

/// `^[%|a-zA-Z0-9_-]+$`, the characters RocketMQ allows in topic and group names
/// (`TopicValidator.isTopicOrGroupIllegal`).
pub fn has_legal_characters(name: &str) -> bool {
    name.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'%' || b == b'|' || b == b'_' || b == b'-')
}

/// Why a topic name is refused (`TopicValidator.validateTopic`).
pub fn validate_topic_name(topic: &str) -> std::result::Result<(), String> {
    if topic.trim().is_empty() {
        return Err("The specified topic is blank.".into());
    }
    let max = if topic.starts_with(RETRY_GROUP_TOPIC_PREFIX)
        || topic.starts_with(DLQ_GROUP_TOPIC_PREFIX)
    {
        255
    } else {
        127
    };
    if topic.len() > max {
        return Err(format!(
            "The specified topic is longer than topic max length {max}."
        ));
    }
    if !has_legal_characters(topic) {
        return Err(format!(
            "The specified topic[{topic}] contains illegal characters, allowing only ^[%|a-zA-Z0-9_-]+$"
        ));
    }
    Ok(())
}

pub fn retry_topic(group: &str) -> String {
    format!("{RETRY_GROUP_TOPIC_PREFIX}{group}")
}

fn topic(name: &str, queues: i32, perm: i32) -> TopicConfig {
    TopicConfig {
        topic_name: name.to_string(),
        read_queue_nums: queues,
        write_queue_nums: queues,
        perm,
        ..TopicConfig::default()
    }
}

pub struct TopicConfigs {
    file: StateFile,
    table: RwLock<TopicConfigSerializeWrapper>,
}

impl TopicConfigs {
    /// Loads `topics.json` and adds the system topics the broker needs.
    pub fn open(path: PathBuf, config: &BrokerConfig) -> Result<TopicConfigs> {
        let topics = TopicConfigs::load(path)?;
        let mut system = vec![
            topic(SELF_TEST_TOPIC, 1, perm::READ | perm::WRITE),
            topic(OFFSET_MOVED_EVENT, 1, perm::READ | perm::WRITE),
            // RocketMQ registers the cluster and broker names as topics so that routes can
            // find brokers by them (mqadmin's `-c` and `-b` options rely on it).
            topic(
                &config.broker_cluster_name,
                16,
                perm::INHERIT | config.broker_permission as i32,
            ),
            topic(
                &config.broker_name,
                1,
                perm::INHERIT | config.broker_permission as i32,
            ),
        ];
        if config.trace_topic_enable {
            system.push(topic(
                &config.msg_trace_topic_name,
                1,
                perm::READ | perm::WRITE,
            ));
        }
        if config.auto_create_topic_enable {
            system.push(topic(
                AUTO_CREATE_TOPIC_KEY_TOPIC,
                config.default_topic_queue_nums as i32,
                perm::INHERIT | perm::READ | perm::WRITE,
            ));
        }
        topics.change(|table| {
            if !config.auto_create_topic_enable {
                table.topic_config_table.remove(AUTO_CREATE_TOPIC_KEY_TOPIC);
            }
            for system_topic in system {
                table
                    .topic_config_table
                    .entry(system_topic.topic_name.clone())
                    .or_insert(system_topic);
            }
            true
        })?;
        Ok(topics)
    }

    /// `topics.json` as it is, without the system topics a broker adds for its own names:
    /// what an import (`rocketry admin import`) adds to, before any broker ran there.
    pub fn load(path: PathBuf) -> Result<TopicConfigs> {
        let file = StateFile::new(path);
        let table: TopicConfigSerializeWrapper = file.load()?.unwrap_or_default();
        Ok(TopicConfigs {
            file,
            table: RwLock::new(table),
        })
    }

    pub fn get(&self, topic: &str) -> Option<TopicConfig> {
        self.table.read().topic_config_table.get(topic).cloned()
    }

    /// The whole table, as registration and GET_ALL_TOPIC_CONFIG send it.
    pub fn snapshot(&self) -> TopicConfigSerializeWrapper {
        self.table.read().clone()
    }

    pub fn count(&self) -> usize {
        self.table.read().topic_config_table.len()
    }

    pub fn names(&self) -> Vec<String> {
        self.table
            .read()
            .topic_config_table
            .keys()
            .cloned()
            .collect()
    }

    /// Creates or replaces a topic; true when anything changed (and was persisted).
    pub fn upsert(&self, config: TopicConfig) -> Result<bool> {
        self.change(|table| {
            if table.topic_config_table.get(&config.topic_name) == Some(&config) {
                return false;
            }
            table
                .topic_config_table
                .insert(config.topic_name.clone(), config);
            true
        })
    }

    /// Creates or replaces every topic of `configs`, under one new data version and one write.
    pub fn upsert_all(&self, configs: impl IntoIterator<Item = TopicConfig>) -> Result<()> {
        self.change(|table| {
            for config in configs {
                table
                    .topic_config_table
                    .insert(config.topic_name.clone(), config);
            }
            true
        })
        .map(drop)
    }

    /// Takes the topics a replicated group's leader holds, as an Apache slave takes its
    /// master's: the table becomes the leader's. True when it changed.
    pub fn adopt(&self, leader: TopicConfigSerializeWrapper) -> Result<bool> {
        self.change(|table| {
            if table.topic_config_table == leader.topic_config_table {
                return false;
            }
            table.topic_config_table = leader.topic_config_table;
            true
        })
    }

    /// Creates `topic` from a template the way a send does when it does not exist yet
    /// (`createTopicInSendMessageMethod`): only from a template with the inherit bit, with
    /// `min(requested, template's write queues)` queues. Returns the topic if it exists now.
    pub fn create_from_template(
        &self,
        topic_name: &str,
        template: &str,
        requested_queues: i32,
        topic_sys_flag: i32,
    ) -> Result<Option<TopicConfig>> {
        if let Some(existing) = self.get(topic_name) {
            return Ok(Some(existing));
        }
        let Some(template) = self.get(template) else {
            return Ok(None);
        };
        if !perm::is_inherited(template.perm) {
            return Ok(None);
        }
        let queues = requested_queues.clamp(1, template.write_queue_nums.max(1));
        let created = TopicConfig {
            topic_name: topic_name.to_string(),
            read_queue_nums: queues,
            write_queue_nums: queues,
            perm: template.perm & !perm::INHERIT,
            topic_sys_flag,
            ..TopicConfig::default()
        };
        self.upsert(created.clone())?;
        Ok(Some(created))
    }

    /// Creates a topic with `queues` queues if missing (retry and dead-letter topics).
    pub fn ensure(&self, topic_name: &str, queues: i32, topic_perm: i32) -> Result<TopicConfig> {
        if let Some(existing) = self.get(topic_name) {
            return Ok(existing);
        }
        let created = topic(topic_name, queues, topic_perm);
        self.upsert(created.clone())?;
        Ok(created)
    }

    /// A new data version for the same table: the name servers rewrite a broker's queues
    /// only when its version changes, and the perms it registers them with just did.
    pub fn bump_version(&self) -> Result<()> {
        self.change(|_| true).map(drop)
    }

    pub fn delete(&self, topic_name: &str) -> Result<bool> {
        self.change(|table| table.topic_config_table.remove(topic_name).is_some())
    }

    /// Applies `edit`, which says whether it changed anything; if it did, bumps the data
    /// version and persists the table. Returns `edit`'s answer.
    fn change(&self, edit: impl FnOnce(&mut TopicConfigSerializeWrapper) -> bool) -> Result<bool> {
        let mut table = self.table.write();
        if !edit(&mut table) {
            return Ok(false);
        }
        table.data_version = DataVersion {
            counter: table.data_version.counter + 1,
            state_version: table.data_version.state_version,
            timestamp: now_millis(),
        };
        self.file.note_change();
        // `{"topicConfigTable": {...}, "dataVersion": {...}}`, the shape of RocketMQ's file.
        self.file.save(table)?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_follow_rocketmq_rules() {
        assert!(validate_topic_name("Topic_a-1%|").is_ok());
        assert!(validate_topic_name("").is_err());
        assert!(validate_topic_name("a b").is_err());
        assert!(validate_topic_name(&"x".repeat(128)).is_err());
        assert!(validate_topic_name(&format!("%RETRY%{}", "x".repeat(200))).is_ok());
    }

    #[test]
    fn auto_create_inherits_from_the_template_and_persists() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config/topics.json");
        let config = BrokerConfig::default();
        let topics = TopicConfigs::open(path.clone(), &config).unwrap();
        let created = topics
            .create_from_template("New", AUTO_CREATE_TOPIC_KEY_TOPIC, 4, 0)
            .unwrap()
            .unwrap();
        assert_eq!(created.write_queue_nums, 4);
        assert_eq!(created.perm, perm::READ | perm::WRITE);
        let capped = topics
            .create_from_template("Big", AUTO_CREATE_TOPIC_KEY_TOPIC, 64, 0)
            .unwrap()
            .unwrap();
        assert_eq!(capped.write_queue_nums, 8);
        assert!(topics
            .create_from_template("Other", "NoSuchTemplate", 4, 0)
            .unwrap()
            .is_none());
        let reopened = TopicConfigs::open(path, &config).unwrap();
        assert_eq!(reopened.get("New").unwrap().write_queue_nums, 4);
    }

    // Concurrent creations each wrote the whole table through one shared `topics.json.tmp`
    // with no lock: writes interleaved, and an older snapshot could be renamed over a newer
    // one, so topics a client had been told were created were missing after a restart.
    #[test]
    fn topics_created_concurrently_all_survive_a_reopen() {
        const THREADS: usize = 64;
        const TOPICS: usize = 1_000;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config/topics.json");
        let config = BrokerConfig::default();
        let topics = TopicConfigs::open(path.clone(), &config).unwrap();
        std::thread::scope(|scope| {
            for thread in 0..THREADS {
                let topics = &topics;
                scope.spawn(move || {
                    for number in (thread..TOPICS).step_by(THREADS) {
                        topics
                            .ensure(&format!("T{number}"), 4, perm::READ | perm::WRITE)
                            .unwrap();
                    }
                });
            }
        });
        let files: Vec<_> = std::fs::read_dir(dir.path().join("config"))
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert_eq!(files, ["topics.json"]);
        let reopened = TopicConfigs::open(path, &config).unwrap();
        let missing: Vec<usize> = (0..TOPICS)
            .filter(|number| reopened.get(&format!("T{number}")).is_none())
            .collect();
        assert!(missing.is_empty(), "topics lost: {missing:?}");
    }

    #[test]
    fn without_auto_create_there_is_no_template() {
        let dir = tempfile::tempdir().unwrap();
        let config = BrokerConfig {
            auto_create_topic_enable: false,
            ..BrokerConfig::default()
        };
        let topics = TopicConfigs::open(dir.path().join("topics.json"), &config).unwrap();
        assert!(topics.get(AUTO_CREATE_TOPIC_KEY_TOPIC).is_none());
        assert!(topics
            .create_from_template("New", AUTO_CREATE_TOPIC_KEY_TOPIC, 4, 0)
            .unwrap()
            .is_none());
    }

    #[test]
    fn the_trace_topic_is_created_only_when_enabled() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("topics.json");
        let off = TopicConfigs::open(path.clone(), &BrokerConfig::default()).unwrap();
        assert!(off.get("RMQ_SYS_TRACE_TOPIC").is_none());
        let config = BrokerConfig {
            trace_topic_enable: true,
            msg_trace_topic_name: "Traces".into(),
            ..BrokerConfig::default()
        };
        let on = TopicConfigs::open(path, &config).unwrap();
        let trace = on.get("Traces").unwrap();
        assert_eq!((trace.read_queue_nums, trace.write_queue_nums), (1, 1));
    }
}
