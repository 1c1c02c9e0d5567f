//! The broker's small JSON state files under `<storePathRootDir>/config/`
//! (`topics.json`, `consumerOffset.json`, `subscriptionGroup.json`, `delayOffset.json`),
//! written so that a crash mid-write never leaves a torn file: write a temporary file, fsync
//! it, rename it over the old one, fsync the folder.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::Write;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Error, Result};

/// Numbers temporary files across every state file of the process.
static TEMPORARY_FILES: AtomicU64 = AtomicU64::new(0);

/// One state file and its only writer.
///
/// Its user notes each change to its table with [`StateFile::note_change`] and saves with
/// [`StateFile::save`], both under the table's lock. A copy is numbered by the changes it
/// holds and taken under that lock, which is released before the file is written; writes
/// are serialized here and one older than the file is skipped. So the file always holds
/// the newest copy, and users of the table never wait for the disk.
pub struct StateFile {
    path: PathBuf,
    /// Changes noted so far; a copy taken after `n` of them is generation `n`.
    changes: AtomicU64,
    /// The generation on disk, locked from the temporary file's creation to the rename.
    written: Mutex<u64>,
    /// A mirror of `written`, read without waiting for a write in progress.
    durable: AtomicU64,
}

impl StateFile {
    pub fn new(path: PathBuf) -> StateFile {
        StateFile {
            path,
            changes: AtomicU64::new(0),
            written: Mutex::new(0),
            durable: AtomicU64::new(0),
        }
    }

    /// Reads the file, or returns `None` when it does not exist yet.
    pub fn load<T: DeserializeOwned>(&self) -> Result<Option<T>> {
        let path = &self.path;
        match fs::read(path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|source| Error::StateFile {
                        path: path.to_path_buf(),
                        reason: source.to_string(),
                    })
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(Error::Io {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// Counts a change to the table; call it under the table's lock, with the change.
    pub fn note_change(&self) {
        self.changes.fetch_add(1, Ordering::Relaxed);
    }

    /// Makes the file hold the table `guard` locks, atomically and durably, unless it holds
    /// every change noted so far already; the lock is released before the file is written.
    /// Returns once this copy, or a newer one, is on disk: a write of an earlier copy still
    /// in progress is waited for, and written again should it have failed.
    pub fn save<G>(&self, guard: G) -> Result<()>
    where
        G: Deref,
        G::Target: Clone + Serialize,
    {
        let generation = self.changes.load(Ordering::Relaxed);
        if generation <= self.durable.load(Ordering::Relaxed) {
            return Ok(());
        }
        let copy = guard.deref().clone();
        drop(guard);
        self.write(generation, &copy)
    }

    /// Writes `copy`, generation `generation`, unless the file holds that generation or a
    /// newer one, which holds this copy's changes as it was taken later.
    fn write<T: Serialize>(&self, generation: u64, copy: &T) -> Result<()> {
        let mut written = self.written.lock();
        if generation <= *written {
            return Ok(());
        }
        replace(&self.path, copy)?;
        *written = generation;
        self.durable.store(generation, Ordering::Relaxed);
        Ok(())
    }
}

/// Replaces `path` with `value`.
fn replace<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let folder = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(folder).map_err(io)?;
    let bytes = serde_json::to_vec_pretty(value).expect("state serializes to JSON");
    // Named by process and count, so that two writers never share a temporary file, even
    // in two processes; a crash leftover that happens to have this name is truncated.
    let mut temporary = OsString::from(path);
    temporary.push(format!(
        ".{}.{}.tmp",
        std::process::id(),
        TEMPORARY_FILES.fetch_add(1, Ordering::Relaxed)
    ));
    let temporary = PathBuf::from(temporary);
    let written = File::create(&temporary)
        .and_then(|mut file| {
            file.write_all(&bytes)?;
            file.sync_data()
        })
        .and_then(|()| fs::rename(&temporary, path));
    if let Err(error) = written {
        let _ = fs::remove_file(&temporary);
        return Err(io(error));
    }
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
        let file = StateFile::new(dir.path().join("config/x.json"));
        assert_eq!(file.load::<BTreeMap<String, u32>>().unwrap(), None);
        let value: BTreeMap<String, u32> = [("a".to_string(), 1)].into();
        file.note_change();
        file.save(&value).unwrap();
        assert_eq!(file.load::<BTreeMap<String, u32>>().unwrap(), Some(value));
        assert_eq!(fs::read_dir(dir.path().join("config")).unwrap().count(), 1);
    }

    #[test]
    fn an_older_snapshot_never_replaces_a_newer_one() {
        let dir = tempfile::tempdir().unwrap();
        let file = StateFile::new(dir.path().join("x.json"));
        file.write(2, &2).unwrap();
        file.write(1, &1).unwrap();
        assert_eq!(file.load::<u32>().unwrap(), Some(2));
    }

    #[test]
    fn a_table_without_changes_is_not_written() {
        let dir = tempfile::tempdir().unwrap();
        let file = StateFile::new(dir.path().join("x.json"));
        file.save(&1).unwrap();
        assert_eq!(file.load::<u32>().unwrap(), None);
        file.note_change();
        file.save(&2).unwrap();
        file.save(&3).unwrap();
        assert_eq!(file.load::<u32>().unwrap(), Some(2));
    }

    // Writers shared one `x.json.tmp`: one could rename another's half-written file, or
    // find it already renamed away, and an older snapshot could replace a newer one.
    #[test]
    fn concurrent_stores_keep_the_newest_snapshot_and_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = StateFile::new(dir.path().join("x.json"));
        let table = parking_lot::Mutex::new(BTreeMap::<String, u32>::new());
        std::thread::scope(|scope| {
            for thread in 0..16 {
                let (table, file) = (&table, &file);
                scope.spawn(move || {
                    for round in 0..50 {
                        let mut table = table.lock();
                        table.insert(format!("{thread}-{round}"), round);
                        file.note_change();
                        file.save(table).unwrap();
                    }
                });
            }
        });
        assert_eq!(
            file.load::<BTreeMap<String, u32>>().unwrap(),
            Some(table.into_inner())
        );
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert_eq!(names, ["x.json"]);
    }

    #[test]
    fn a_damaged_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.json");
        fs::write(&path, b"{not json").unwrap();
        let error = StateFile::new(path)
            .load::<BTreeMap<String, u32>>()
            .unwrap_err();
        assert!(error.to_string().contains("bad.json"), "{error}");
    }
}
