//! `rocketry admin import`: the topics, consumer groups and committed offsets of a stopped
//! Apache RocketMQ broker, read from the state files it leaves under
//! `<storePathRootDir>/config/`, written into a Rocketry store's own state files, so that a
//! broker started on that store serves them. Messages are not imported: mirroring moves
//! those.
//!
//! Apache writes these files with fastjson, which leaves integer map keys unquoted
//! (`{"offsetTable":{"t@g":{0:12}}}`); they are read through the protocol crate's fastjson
//! reader, as request bodies are.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use protocol::body::{fastjson, perm, SubscriptionGroupConfig, TopicConfig};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::broker::{
    has_legal_characters, validate_topic_name, ConsumerOffsets, SubscriptionGroups, TopicConfigs,
    DELAY_OFFSETS_FILE, GROUPS_FILE, OFFSETS_FILE, STATE_DIR, TOPICS_FILE,
};
use crate::error::{Error, Result};

/// Topics an Apache broker makes for itself (5.5.0's `TopicValidator` system set). A
/// Rocketry broker makes the ones it needs under its own names.
const APACHE_SYSTEM_TOPICS: [&str; 12] = [
    "TBW102",
    "SCHEDULE_TOPIC_XXXX",
    "BenchmarkTest",
    "RMQ_SYS_TRANS_HALF_TOPIC",
    "RMQ_SYS_TRACE_TOPIC",
    "RMQ_SYS_TRANS_OP_HALF_TOPIC",
    "TRANS_CHECK_MAX_TIME_TOPIC",
    "SELF_TEST_TOPIC",
    "OFFSET_MOVED_EVENT",
    "CHECKPOINT_TOPIC",
    "RMQ_SYS_ROCKSDB_TRANS_HALF_TOPIC",
    "RMQ_SYS_ROCKSDB_TRANS_OP_HALF_TOPIC",
];
/// `TopicValidator.SYSTEM_TOPIC_PREFIX`: revive logs, the timer wheel, member sync.
const APACHE_SYSTEM_TOPIC_PREFIX: &str = "rmq_sys_";
/// `<cluster>_REPLY_TOPIC`, which an Apache broker makes for request/reply.
const REPLY_TOPIC_SUFFIX: &str = "_REPLY_TOPIC";

/// What an import found and wrote.
#[derive(Debug, Default, PartialEq)]
pub struct Imported {
    /// Topics written, by name.
    pub topics: Vec<String>,
    /// The Apache broker's own topics, left out.
    pub skipped_topics: Vec<String>,
    /// Consumer groups written.
    pub groups: usize,
    /// `topic@group` offset tables written, and the queues they hold.
    pub offset_tables: usize,
    pub offset_queues: usize,
    /// `topic@group` offset tables left out because their topic was.
    pub skipped_offsets: Vec<String>,
    /// Delay levels with progress in `delayOffset.json`: read, not carried (see
    /// [`import`]).
    pub delay_levels: usize,
}

/// Reads the Apache broker state under `from` (its `storePathRootDir`) and adds it to the
/// Rocketry store under `to`, which must hold no state yet unless `force`.
///
/// Every file is read and checked before anything is written, so a refused import leaves
/// `to` as it was. Delay-level progress is read but not written: it counts messages of
/// `SCHEDULE_TOPIC_XXXX`, which start empty in the new store, and the schedule would skip
/// that many new delayed messages of each level.
pub fn import(from: &Path, to: &Path, force: bool) -> Result<Imported> {
    let source = Source::open(from)?;
    let topics_path = source.file(TOPICS_FILE);
    let topics_root = read(&topics_path)?.ok_or_else(|| {
        bad(
            &topics_path,
            "missing: an Apache broker writes it once it has a topic".into(),
        )
    })?;
    let apache_topics: BTreeMap<String, TopicConfig> =
        table(&topics_path, &topics_root, "topicConfigTable")?;
    let mut imported = Imported::default();
    let mut topics = Vec::new();
    for (name, config) in &apache_topics {
        if is_apache_own(name, config, &apache_topics) {
            imported.skipped_topics.push(name.clone());
            continue;
        }
        let entry =
            |reason: String| bad(&topics_path, format!("topicConfigTable.{name}: {reason}"));
        validate_topic_name(name).map_err(entry)?;
        if config.read_queue_nums <= 0 || config.write_queue_nums <= 0 {
            return Err(entry(format!(
                "readQueueNums {} and writeQueueNums {} must be positive",
                config.read_queue_nums, config.write_queue_nums
            )));
        }
        topics.push(TopicConfig {
            topic_name: name.clone(),
            ..config.clone()
        });
    }
    imported.topics = topics.iter().map(|t| t.topic_name.clone()).collect();

    let groups_path = source.file(GROUPS_FILE);
    let mut groups = Vec::new();
    if let Some(root) = read(&groups_path)? {
        let table: BTreeMap<String, SubscriptionGroupConfig> =
            table(&groups_path, &root, "subscriptionGroupTable")?;
        for (name, config) in table {
            if name.is_empty() || !has_legal_characters(&name) {
                return Err(bad(
                    &groups_path,
                    format!("subscriptionGroupTable.{name}: not a legal group name"),
                ));
            }
            groups.push(SubscriptionGroupConfig {
                group_name: name,
                ..config
            });
        }
    }
    imported.groups = groups.len();

    let offsets_path = source.file(OFFSETS_FILE);
    let kept: BTreeSet<&str> = imported.topics.iter().map(String::as_str).collect();
    let mut offsets = Vec::new();
    if let Some(root) = read(&offsets_path)? {
        let table: BTreeMap<String, BTreeMap<i32, i64>> =
            table(&offsets_path, &root, "offsetTable")?;
        for (key, queues) in table {
            let Some((topic, group)) = key.split_once('@') else {
                return Err(bad(
                    &offsets_path,
                    format!("offsetTable.{key}: not topic@group"),
                ));
            };
            if !kept.contains(topic) {
                imported.skipped_offsets.push(key.clone());
                continue;
            }
            imported.offset_tables += 1;
            imported.offset_queues += queues.len();
            offsets.push((topic.to_string(), group.to_string(), queues));
        }
    }

    let delay_path = source.file(DELAY_OFFSETS_FILE);
    if let Some(root) = read(&delay_path)? {
        let levels: BTreeMap<String, i64> = table(&delay_path, &root, "offsetTable")?;
        if let Some(level) = levels.keys().find(|level| level.parse::<i32>().is_err()) {
            return Err(bad(
                &delay_path,
                format!("offsetTable.{level}: not a delay level"),
            ));
        }
        imported.delay_levels = levels.len();
    }

    refuse_unless_empty(from, to, force)?;
    let state = to.join(STATE_DIR);
    TopicConfigs::load(state.join(TOPICS_FILE))?.upsert_all(topics)?;
    SubscriptionGroups::open(state.join(GROUPS_FILE), false)?.upsert_all(groups)?;
    let committed = ConsumerOffsets::open(state.join(OFFSETS_FILE))?;
    for (topic, group, queues) in &offsets {
        for (queue_id, offset) in queues {
            committed.commit(topic, group, *queue_id, *offset);
        }
    }
    committed.persist()?;
    Ok(imported)
}

/// The `config/` folder of an Apache store.
struct Source {
    dir: PathBuf,
}

impl Source {
    fn open(root: &Path) -> Result<Source> {
        if !root.is_dir() {
            return Err(bad(root, "no such folder".into()));
        }
        let dir = root.join(STATE_DIR);
        if !dir.is_dir() {
            return Err(bad(
                root,
                format!("no {STATE_DIR}/ folder in it: not the storePathRootDir of a broker"),
            ));
        }
        Ok(Source { dir })
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

fn bad(path: &Path, reason: String) -> Error {
    Error::ImportSource {
        path: path.to_path_buf(),
        reason,
    }
}

/// Whether an Apache broker made `name` for itself: its system topics, and the topics with
/// the inherit bit (the template `TBW102` and the topics named after its cluster and
/// broker), with the cluster's reply topic.
fn is_apache_own(name: &str, config: &TopicConfig, all: &BTreeMap<String, TopicConfig>) -> bool {
    let template = |config: &TopicConfig| perm::is_inherited(config.perm);
    APACHE_SYSTEM_TOPICS.contains(&name)
        || name.starts_with(APACHE_SYSTEM_TOPIC_PREFIX)
        || template(config)
        || name
            .strip_suffix(REPLY_TOPIC_SUFFIX)
            .and_then(|cluster| all.get(cluster))
            .is_some_and(template)
}

/// A state file as JSON, or `None` when the broker never wrote it.
fn read(path: &Path) -> Result<Option<Value>> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) if error.kind() == std::io::ErrorKind::InvalidData => {
            return Err(bad(path, "not UTF-8 text".into()))
        }
        Err(source) => {
            return Err(Error::Io {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let json = fastjson::normalize(&text).map_err(|error| match error {
        protocol::Error::LenientJson { offset, reason } => {
            let (line, column) = line_and_column(&text, offset);
            bad(path, format!("{reason} at line {line}, column {column}"))
        }
        other => bad(path, other.to_string()),
    })?;
    serde_json::from_str(&json)
        .map(Some)
        .map_err(|error| bad(path, error.to_string()))
}

/// 1-based line and column (in characters) of a byte offset.
fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    (line, column)
}

/// The entries of the map `name` in a file's top object, each read as `T`; none when the
/// file has no such map. A bad entry is named by its key.
fn table<T: DeserializeOwned>(
    path: &Path,
    root: &Value,
    name: &str,
) -> Result<BTreeMap<String, T>> {
    let Value::Object(top) = root else {
        return Err(bad(path, "not a JSON object".into()));
    };
    match top.get(name) {
        None | Some(Value::Null) => Ok(BTreeMap::new()),
        Some(Value::Object(entries)) => entries
            .iter()
            .map(|(key, value)| {
                T::deserialize(value)
                    .map(|entry| (key.clone(), entry))
                    .map_err(|error| bad(path, format!("{name}.{key}: {error}")))
            })
            .collect(),
        Some(_) => Err(bad(path, format!("{name} is not an object"))),
    }
}

/// Refuses a target that is the source, or (unless `force`) that holds broker state.
fn refuse_unless_empty(from: &Path, to: &Path, force: bool) -> Result<()> {
    if let (Ok(from), Ok(to)) = (from.canonicalize(), to.canonicalize()) {
        if from == to {
            return Err(bad(
                &from,
                "it is also the target: import into a new data dir".into(),
            ));
        }
    }
    let state = to.join(STATE_DIR);
    let mut found: Vec<String> = [TOPICS_FILE, GROUPS_FILE, OFFSETS_FILE, DELAY_OFFSETS_FILE]
        .into_iter()
        .filter(|file| state.join(file).exists())
        .map(|file| format!("{STATE_DIR}/{file}"))
        .collect();
    let commit_log = to.join("commitlog");
    if fs::read_dir(&commit_log).is_ok_and(|mut entries| entries.next().is_some()) {
        found.push("commitlog/".into());
    }
    if found.is_empty() || force {
        return Ok(());
    }
    Err(Error::ImportTargetInUse {
        path: to.to_path_buf(),
        found: found.join(", "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Trimmed from what Apache RocketMQ 5.5.0 wrote after `updateTopic -r 4 -w 4`,
    /// `updateTopic -r 2 -w 2 -o true`, `updateSubGroup -r 3` and a partial consume, with an
    /// attribute added; the layout, key order and unquoted keys are fastjson's.
    const TOPICS: &str = r#"{
	"dataVersion":{
		"counter":3,
		"stateVersion":0,
		"timestamp":1796057343728
	},
	"topicConfigTable":{
		"%RETRY%ImpG":{
			"attributes":{},
			"order":false,
			"perm":6,
			"readQueueNums":1,
			"topicFilterType":"SINGLE_TAG",
			"topicName":"%RETRY%ImpG",
			"topicSysFlag":0,
			"writeQueueNums":1
		},
		"SCHEDULE_TOPIC_XXXX":{"attributes":{},"order":false,"perm":6,"readQueueNums":18,"topicFilterType":"SINGLE_TAG","topicName":"SCHEDULE_TOPIC_XXXX","topicSysFlag":0,"writeQueueNums":18},
		"rmq_sys_REVIVE_LOG_PeerCluster":{"attributes":{},"order":false,"perm":6,"readQueueNums":8,"topicFilterType":"SINGLE_TAG","topicName":"rmq_sys_REVIVE_LOG_PeerCluster","topicSysFlag":0,"writeQueueNums":8},
		"PeerCluster_REPLY_TOPIC":{"attributes":{},"order":false,"perm":6,"readQueueNums":1,"topicFilterType":"SINGLE_TAG","topicName":"PeerCluster_REPLY_TOPIC","topicSysFlag":0,"writeQueueNums":1},
		"ImpOrd":{
			"attributes":{},
			"order":true,
			"perm":6,
			"readQueueNums":2,
			"topicFilterType":"SINGLE_TAG",
			"topicName":"ImpOrd",
			"topicSysFlag":0,
			"writeQueueNums":2
		},
		"broker-a":{"attributes":{},"order":false,"perm":7,"readQueueNums":1,"topicFilterType":"SINGLE_TAG","topicName":"broker-a","topicSysFlag":0,"writeQueueNums":1},
		"ImpA":{
			"attributes":{"message.type":"NORMAL"},
			"order":false,
			"perm":4,
			"readQueueNums":4,
			"topicFilterType":"SINGLE_TAG",
			"topicName":"ImpA",
			"topicSysFlag":0,
			"writeQueueNums":4
		},
		"TBW102":{"attributes":{},"order":false,"perm":7,"readQueueNums":8,"topicFilterType":"SINGLE_TAG","topicName":"TBW102","topicSysFlag":0,"writeQueueNums":8},
		"PeerCluster":{"attributes":{},"order":false,"perm":7,"readQueueNums":16,"topicFilterType":"SINGLE_TAG","topicName":"PeerCluster","topicSysFlag":0,"writeQueueNums":16}
	}
}"#;

    const GROUPS: &str = r#"{
	"dataVersion":{
		"counter":1,
		"stateVersion":0,
		"timestamp":1796057327370
	},
	"forbiddenTable":{},
	"subscriptionGroupTable":{
		"ImpG":{
			"attributes":{},
			"brokerId":0,
			"consumeBroadcastEnable":false,
			"consumeEnable":true,
			"consumeFromMinEnable":false,
			"consumeMessageOrderly":false,
			"consumeTimeoutMinute":15,
			"groupName":"ImpG",
			"groupRetryPolicy":{
				"type":"CUSTOMIZED"
			},
			"groupSysFlag":0,
			"notifyConsumerIdsChangedEnable":true,
			"retryMaxTimes":3,
			"retryQueueNums":1,
			"whichBrokerWhenConsumeSlowly":1
		}
	}
}"#;

    const OFFSETS: &str = r#"{
	"dataVersion":{
		"counter":0,
		"stateVersion":0,
		"timestamp":1796057306382
	},
	"groupTopicMap":{
		"ImpG":[
			"ImpA"
		]
	},
	"offsetTable":{
		"ImpA@ImpG":{
			0:6,
			1:6,
			2:6,
			3:7
		},
		"rmq_sys_REVIVE_LOG_PeerCluster@CID_RMQ_SYS_REVIVE":{
			0:2
		}
	},
	"pullOffsetTable":{
		"ImpA@ImpG":{
			0:10,
			1:10,
			2:10,
			3:10
		}
	}
}"#;

    const DELAY: &str = r#"{
	"dataVersion":{
		"counter":0,
		"stateVersion":0,
		"timestamp":1796057306645
	},
	"offsetTable":{
		1:4,
		3:0
	}
}"#;

    fn apache_store(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join(STATE_DIR)).unwrap();
        for (name, text) in files {
            fs::write(dir.path().join(STATE_DIR).join(name), text).unwrap();
        }
        dir
    }

    fn refusal(from: &Path, to: &Path, force: bool) -> String {
        import(from, to, force).unwrap_err().to_string()
    }

    fn all_files() -> tempfile::TempDir {
        apache_store(&[
            (TOPICS_FILE, TOPICS),
            (GROUPS_FILE, GROUPS),
            (OFFSETS_FILE, OFFSETS),
            (DELAY_OFFSETS_FILE, DELAY),
        ])
    }

    #[test]
    fn apache_state_lands_in_the_files_a_broker_opens() {
        let from = all_files();
        let to = tempfile::tempdir().unwrap();
        let imported = import(from.path(), to.path(), false).unwrap();
        assert_eq!(imported.topics, ["%RETRY%ImpG", "ImpA", "ImpOrd"]);
        assert_eq!(
            imported.skipped_topics,
            [
                "PeerCluster",
                "PeerCluster_REPLY_TOPIC",
                "SCHEDULE_TOPIC_XXXX",
                "TBW102",
                "broker-a",
                "rmq_sys_REVIVE_LOG_PeerCluster"
            ]
        );
        assert_eq!(imported.groups, 1);
        assert_eq!((imported.offset_tables, imported.offset_queues), (1, 4));
        assert_eq!(
            imported.skipped_offsets,
            ["rmq_sys_REVIVE_LOG_PeerCluster@CID_RMQ_SYS_REVIVE"]
        );
        assert_eq!(imported.delay_levels, 2);

        let state = to.path().join(STATE_DIR);
        let topics = TopicConfigs::load(state.join(TOPICS_FILE)).unwrap();
        let ordered = topics.get("ImpOrd").unwrap();
        assert_eq!(
            (
                ordered.read_queue_nums,
                ordered.write_queue_nums,
                ordered.perm
            ),
            (2, 2, 6)
        );
        assert!(ordered.order);
        let plain = topics.get("ImpA").unwrap();
        assert_eq!((plain.write_queue_nums, plain.perm), (4, 4));
        assert!(!plain.order);
        assert_eq!(plain.attributes.get("message.type").unwrap(), "NORMAL");
        assert!(topics.get("TBW102").is_none());
        let groups = SubscriptionGroups::open(state.join(GROUPS_FILE), false).unwrap();
        let group = groups.get("ImpG").unwrap();
        assert_eq!(group.retry_max_times, 3);
        assert!(!group.consume_broadcast_enable);
        let offsets = ConsumerOffsets::open(state.join(OFFSETS_FILE)).unwrap();
        assert_eq!(
            offsets.of("ImpA", "ImpG"),
            BTreeMap::from([(0, 6), (1, 6), (2, 6), (3, 7)])
        );
        assert!(offsets
            .groups_of_topic("rmq_sys_REVIVE_LOG_PeerCluster")
            .is_empty());
        assert!(
            !state.join(DELAY_OFFSETS_FILE).exists(),
            "delay progress is not carried into a store whose schedule queues are empty"
        );
    }

    #[test]
    fn a_store_with_state_is_refused_unless_forced() {
        let from = all_files();
        let to = tempfile::tempdir().unwrap();
        import(from.path(), to.path(), false).unwrap();
        let refused = refusal(from.path(), to.path(), false);
        assert!(refused.contains("already holds broker state"), "{refused}");
        assert!(refused.contains("config/topics.json"), "{refused}");
        assert!(refused.contains("--force"), "{refused}");
        let again = import(from.path(), to.path(), true).unwrap();
        assert_eq!(again.topics.len(), 3);
        let same = refusal(from.path(), from.path(), true);
        assert!(same.contains("also the target"), "{same}");
    }

    #[test]
    fn a_malformed_file_is_named_with_its_position_and_nothing_is_written() {
        let broken = OFFSETS.replace("1:6,", "1:6 2");
        let from = apache_store(&[(TOPICS_FILE, TOPICS), (OFFSETS_FILE, &broken)]);
        let to = tempfile::tempdir().unwrap();
        let error = refusal(from.path(), to.path(), false);
        assert!(error.contains("consumerOffset.json"), "{error}");
        assert!(error.contains("at line 15, column"), "{error}");
        assert!(!to.path().join(STATE_DIR).exists());

        let wrong_type = TOPICS.replace(r#""readQueueNums":2"#, r#""readQueueNums":"two""#);
        let from = apache_store(&[(TOPICS_FILE, &wrong_type)]);
        let error = refusal(from.path(), to.path(), false);
        assert!(error.contains("topics.json"), "{error}");
        assert!(error.contains("topicConfigTable.ImpOrd"), "{error}");
    }

    #[test]
    fn missing_folders_and_files_are_refused_by_name() {
        let to = tempfile::tempdir().unwrap();
        let nowhere = to.path().join("nowhere");
        let error = refusal(&nowhere, to.path(), false);
        assert!(
            error.contains("nowhere") && error.contains("no such folder"),
            "{error}"
        );
        let empty = tempfile::tempdir().unwrap();
        let error = refusal(empty.path(), to.path(), false);
        assert!(error.contains("no config/ folder"), "{error}");
        let without_topics = apache_store(&[(GROUPS_FILE, GROUPS)]);
        let error = refusal(without_topics.path(), to.path(), false);
        assert!(
            error.contains("topics.json") && error.contains("missing"),
            "{error}"
        );
    }

    #[test]
    fn positions_count_lines_and_characters() {
        assert_eq!(line_and_column("ab\ncé{", 6), (2, 3));
        assert_eq!(line_and_column("x", 0), (1, 1));
    }
}
