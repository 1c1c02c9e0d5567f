//! Sets [`store::StoreConfig`] fields from the text values of a properties file. The store
//! names its fields with RocketMQ's keys through serde, so the key list and each field's
//! type come from its serialized form rather than from a second table kept here.

use serde_json::Value;
use store::StoreConfig;

use crate::error::{Error, Result};

/// Every key the store reads.
#[cfg(test)]
pub fn keys() -> Vec<String> {
    match serde_json::to_value(StoreConfig::default()) {
        Ok(Value::Object(fields)) => fields.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

/// Sets `key` on `config`; `Ok(false)` when the store has no such key.
pub fn set(config: &mut StoreConfig, key: &str, value: &str) -> Result<bool> {
    let Ok(Value::Object(mut fields)) = serde_json::to_value(&*config) else {
        return Ok(false);
    };
    let Some(current) = fields.get(key) else {
        return Ok(false);
    };
    let bad = |reason: &str| Error::ConfigValue {
        key: key.to_string(),
        value: value.to_string(),
        reason: reason.to_string(),
    };
    let text = value.trim();
    let typed = match current {
        Value::Bool(_) => Value::Bool(text.parse().map_err(|_| bad("expected true or false"))?),
        Value::Number(_) => Value::Number(
            text.parse::<u64>()
                .map_err(|_| bad("expected a whole number"))?
                .into(),
        ),
        _ => Value::String(text.to_string()),
    };
    fields.insert(key.to_string(), typed);
    *config = serde_json::from_value(Value::Object(fields)).map_err(|e| bad(&e.to_string()))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use store::FlushDiskType;

    #[test]
    fn sets_typed_store_keys_by_their_rocketmq_names() {
        let mut config = StoreConfig::default();
        assert!(set(&mut config, "flushDiskType", "SYNC_FLUSH").unwrap());
        assert!(set(&mut config, "mappedFileSizeCommitLog", "104857600").unwrap());
        assert!(set(&mut config, "warmMapedFileEnable", "true").unwrap());
        assert!(set(&mut config, "storePathRootDir", "/data/store").unwrap());
        assert!(!set(&mut config, "brokerName", "x").unwrap());
        assert_eq!(config.flush_disk_type, FlushDiskType::SyncFlush);
        assert_eq!(config.mapped_file_size_commit_log, 104_857_600);
        assert!(config.warm_maped_file_enable);
        assert_eq!(config.store_path_root_dir.to_str(), Some("/data/store"));
    }

    #[test]
    fn rejects_values_of_the_wrong_type() {
        let mut config = StoreConfig::default();
        assert!(set(&mut config, "flushDiskType", "SOMETIMES").is_err());
        assert!(set(&mut config, "fileReservedTime", "-1").is_err());
        assert!(set(&mut config, "warmMapedFileEnable", "yes").is_err());
        assert!(keys().iter().any(|key| key == "flushDiskType"));
    }
}
