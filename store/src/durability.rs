//! Test-only (the `failpoints` feature): a record of what each flush made durable, per
//! file, so the crash simulations (tests/simulation.rs, and the broker's replicated group in
//! broker/tests/raft_simulation.rs) can build the disk a power loss leaves behind: these
//! durable bytes, plus a random subset of the pages written since, some of them torn
//! ([`lose_power`]). `kill -9` keeps the page cache and so never tests that.

use std::cell::Cell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use parking_lot::Mutex;

thread_local! {
    static DRIVEN: Cell<bool> = const { Cell::new(false) };
}

/// Stores opened on this thread from now on start no flush, maintenance or deadline thread:
/// their owner does that work with `MessageStore::step`, when it chooses. The deterministic
/// simulation of a replicated group (broker/tests/raft_simulation.rs) runs all its replicas
/// on one thread, and a thread flushing on its own would do so at moments of real time.
pub fn drive_stores_on_this_thread() {
    DRIVEN.with(|driven| driven.set(true));
}

pub(crate) fn driven_here() -> bool {
    DRIVEN.with(Cell::get)
}

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

const PAGE: usize = 4096;
const SECTOR: usize = 512;

/// Pages a power loss dropped or tore.
#[derive(Debug, Default, Clone, Copy)]
pub struct Loss {
    pub lost_pages: u64,
    pub torn_pages: u64,
}

/// Rewrites every file under `root` as a power loss leaves it: what was made durable, plus
/// a random subset of the pages written since, some torn at a 512-byte sector. `below(n)`
/// draws a number under `n` (the caller's seeded generator). Files never made durable (a
/// lock file) are left as they are. The rewritten files are what the disk holds durably
/// from then on; other roots' records are kept, so stores sharing a process (a replicated
/// group's replicas) lose power one at a time or together.
///
/// Whatever wrote the files must be stopped first (`MessageStore::crash`).
pub fn lose_power(root: &Path, below: &mut dyn FnMut(u64) -> u64) -> Loss {
    let durable: HashMap<PathBuf, Vec<u8>> = {
        let mut record = DURABLE.lock();
        let record = record.get_or_insert_with(HashMap::new);
        let (under, others) = std::mem::take(record)
            .into_iter()
            .partition(|(file, _)| file.starts_with(root));
        *record = others;
        under
    };
    let mut loss = Loss::default();
    for file in files(root) {
        let Some(image) = durable.get(&file) else {
            continue;
        };
        let volatile = std::fs::read(&file).expect("a file the store wrote reads back");
        let mut disk = image.clone();
        disk.resize(volatile.len(), 0);
        for page in (0..volatile.len()).step_by(PAGE) {
            let end = (page + PAGE).min(volatile.len());
            if volatile[page..end] == disk[page..end] {
                continue;
            }
            match below(10) {
                // The page never reached the disk.
                0..=3 => loss.lost_pages += 1,
                // It did.
                4..=7 => disk[page..end].copy_from_slice(&volatile[page..end]),
                // Torn: only its first sectors did.
                _ => {
                    loss.torn_pages += 1;
                    let sectors = 1 + below((PAGE / SECTOR - 1) as u64) as usize;
                    let torn = (page + sectors * SECTOR).min(end);
                    disk[page..torn].copy_from_slice(&volatile[page..torn]);
                }
            }
        }
        std::fs::write(&file, &disk).expect("a file the store wrote can be rewritten");
        set_durable(&file, disk);
    }
    loss
}

/// Every file under `root`, in name order (the order a seed's draws are made in).
fn files(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut folders = vec![root.to_path_buf()];
    while let Some(folder) = folders.pop() {
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                folders.push(path);
            } else {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}
