//! The broker's small JSON state files under `<storePathRootDir>/config/`
//! (`topics.json`, `consumerOffset.json`, `subscriptionGroup.json`), written so that a
//! crash mid-write never leaves a torn file: write a temporary file, fsync it, rename it
//! over the old one, fsync the folder.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Error, Result};

/// Reads `path`, or returns `None` when it does not exist yet.
pub fn load<T: DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| Error::StateFile {
                path: path.to_path_buf(),
                reason: source.to_string(),
            }),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Replaces `path` with `value` atomically and durably.
pub fn store<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let folder = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(folder).map_err(io)?;
    let bytes = serde_json::to_vec_pretty(value).expect("state serializes to JSON");
    let temporary = path.with_extension("json.tmp");
    let mut file = File::create(&temporary).map_err(io)?;
    file.write_all(&bytes).map_err(io)?;
    file.sync_data().map_err(io)?;
    fs::rename(&temporary, path).map_err(io)?;
    File::open(folder)
        .and_then(|dir| dir.sync_all())
        .map_err(io)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn round_trips_and_reports_missing_as_none() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config/x.json");
        assert_eq!(load::<BTreeMap<String, u32>>(&path).unwrap(), None);
        let value: BTreeMap<String, u32> = [("a".to_string(), 1)].into();
        store(&path, &value).unwrap();
        assert_eq!(load::<BTreeMap<String, u32>>(&path).unwrap(), Some(value));
        assert!(!path.with_extension("json.tmp").exists());
    }

    #[test]
    fn a_damaged_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.json");
        fs::write(&path, b"{not json").unwrap();
        let error = load::<BTreeMap<String, u32>>(&path).unwrap_err();
        assert!(error.to_string().contains("bad.json"), "{error}");
    }
}
