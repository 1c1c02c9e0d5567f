//! Test-only (the `failpoints` feature): a record of what each flush made durable, per
//! file, so the crash simulation (tests/simulation.rs) can build the disk a power loss
//! leaves behind: these durable bytes, plus a random subset of the pages written since,
//! some of them torn. `kill -9` keeps the page cache and so never tests that.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use parking_lot::Mutex;

/// `None` until a simulation starts recording.
static DURABLE: Mutex<Option<HashMap<PathBuf, Vec<u8>>>> = Mutex::new(None);

/// Starts recording (forgetting anything recorded before).
pub fn start_recording() {
    *DURABLE.lock() = Some(HashMap::new());
}

/// Stops recording and returns the durable image of every file that was made durable.
pub fn stop_recording() -> HashMap<PathBuf, Vec<u8>> {
    DURABLE.lock().take().unwrap_or_default()
}

/// What a flush of `file` made durable since recording started, if anything.
pub fn durable_image(file: &Path) -> Option<Vec<u8>> {
    DURABLE.lock().as_ref()?.get(file).cloned()
}

/// Declares `file` durable as `bytes` (the simulation does this for the files it
/// rebuilt after a crash, which are what the disk holds from then on).
pub fn set_durable(file: &Path, bytes: Vec<u8>) {
    if let Some(durable) = DURABLE.lock().as_mut() {
        durable.insert(file.to_owned(), bytes);
    }
}

/// `bytes` at `offset` of `file` reached the disk.
pub(crate) fn flushed(file: &Path, offset: usize, bytes: &[u8]) {
    if let Some(durable) = DURABLE.lock().as_mut() {
        let image = durable.entry(file.to_owned()).or_default();
        if image.len() < offset + bytes.len() {
            image.resize(offset + bytes.len(), 0);
        }
        image[offset..offset + bytes.len()].copy_from_slice(bytes);
    }
}

/// `file` was created, `len` zero bytes long, and its name made durable.
pub(crate) fn created(file: &Path, len: usize) {
    if let Some(durable) = DURABLE.lock().as_mut() {
        durable.insert(file.to_owned(), vec![0; len]);
    }
}

/// `file` was cut to `len` bytes, durably.
pub(crate) fn truncated(file: &Path, len: usize) {
    if let Some(durable) = DURABLE.lock().as_mut() {
        durable.entry(file.to_owned()).or_default().truncate(len);
    }
}

/// `file` was removed.
pub(crate) fn removed(file: &Path) {
    if let Some(durable) = DURABLE.lock().as_mut() {
        durable.remove(file);
    }
}
