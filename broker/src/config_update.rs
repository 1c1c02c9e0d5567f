//! Settings changed while running: UPDATE_NAMESRV_CONFIG (318) and UPDATE_BROKER_CONFIG (25)
//! carry Java properties text, and only keys on the server's allow-list may change.
//!
//! RocketMQ's servers take every key except a short deny-list. CVE-2023-33246 (broker) and
//! CVE-2023-37582 (name server) were remote code execution through keys that list missed,
//! `rocketmqHome`, `configStorePath` and the like: a path the server then ran from or wrote
//! to. So Rocketry allows only keys it reads again on every use, refuses any key that names a
//! path whatever a list says, and applies an update whole or not at all.

use protocol::ResponseCode;

use crate::properties;

/// Why an update is refused, as the response carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: ResponseCode,
    pub remark: String,
}

impl Refusal {
    fn new(code: ResponseCode, remark: String) -> Refusal {
        Refusal { code, remark }
    }
}

/// `current` with the update in `body` applied, if every key is in `allowed` and every value
/// parses; `set` is the settings struct's own setter.
pub fn apply<C: Clone>(
    current: &C,
    body: &[u8],
    allowed: &[&str],
    set: impl Fn(&mut C, &str, &str) -> crate::error::Result<bool>,
) -> Result<C, Refusal> {
    let text = std::str::from_utf8(body).map_err(|_| {
        Refusal::new(
            ResponseCode::SystemError,
            "the config update is not UTF-8 properties text".into(),
        )
    })?;
    let entries = properties::parse(text);
    for entry in &entries {
        let key = entry.key.as_str();
        if names_a_path(key) {
            return Err(Refusal::new(
                ResponseCode::NoPermission,
                format!(
                    "{key} names a file or folder and is never changed over the network \
                     (CVE-2023-33246, CVE-2023-37582); set it in the config file and restart"
                ),
            ));
        }
        if !allowed.contains(&key) {
            return Err(Refusal::new(
                ResponseCode::NoPermission,
                format!(
                    "{key} cannot be changed at run time (keys that can: {}); set it in the \
                     config file and restart",
                    allowed.join(", ")
                ),
            ));
        }
    }
    let mut updated = current.clone();
    for entry in &entries {
        set(&mut updated, &entry.key, &entry.value)
            .map_err(|error| Refusal::new(ResponseCode::SystemError, error.to_string()))?;
    }
    Ok(updated)
}

/// A key whose value is a file or folder (`storePathRootDir`, `configStorePath`,
/// `kvConfigPath`, `rocketmqHome`, ...).
pub fn names_a_path(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["path", "dir", "home", "file"]
        .iter()
        .any(|word| key.contains(word))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::NamesrvConfig;

    fn update(body: &str) -> Result<NamesrvConfig, Refusal> {
        apply(
            &NamesrvConfig::default(),
            body.as_bytes(),
            NamesrvConfig::RUNTIME_KEYS,
            NamesrvConfig::set,
        )
    }

    #[test]
    fn an_allowed_key_changes() {
        let updated = update("brokerChannelExpiredTime=30000\n").unwrap();
        assert_eq!(updated.broker_channel_expired_time, 30_000);
        assert_eq!(update("").unwrap(), NamesrvConfig::default());
    }

    #[test]
    fn paths_are_refused_whatever_the_list_says() {
        for key in [
            "configStorePath",
            "kvConfigPath",
            "rocketmqHome",
            "storePathRootDir",
        ] {
            let refusal = apply(
                &NamesrvConfig::default(),
                format!("{key}=/tmp/x").as_bytes(),
                &[key],
                NamesrvConfig::set,
            )
            .unwrap_err();
            assert_eq!(refusal.code, ResponseCode::NoPermission);
            assert!(refusal.remark.contains("CVE-2023-37582"), "{refusal:?}");
        }
    }

    #[test]
    fn one_refused_key_refuses_the_whole_update() {
        let refusal = update("brokerChannelExpiredTime=30000\nlistenPort=1\n").unwrap_err();
        assert_eq!(refusal.code, ResponseCode::NoPermission);
        assert!(
            refusal
                .remark
                .starts_with("listenPort cannot be changed at run time"),
            "{refusal:?}"
        );
        let refusal = update("brokerChannelExpiredTime=soon\n").unwrap_err();
        assert_eq!(refusal.code, ResponseCode::SystemError);
        assert!(refusal.remark.contains("brokerChannelExpiredTime"));
    }
}
