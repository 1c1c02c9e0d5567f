//! Pending timers on disk: one file per minute of due time, `<dir>/<minute since the epoch>`,
//! of 16-byte entries (due ms, CommitLog offset of the timer message), appended as timer
//! messages are enqueued. Memory holds no pending timer: only the minute being delivered is
//! read, so millions of timers over the 3 days allowed cost disk, not RAM. (RocketMQ's own
//! wheel is a mapped slot array over a log; files per minute need no slot array, and a
//! minute is deleted whole once delivered.)
//!
//! Hand-written: no crate keeps a timer wheel on disk with this crash behaviour. An append
//! torn by a crash leaves a partial entry at a file's end, which reading ignores; an entry
//! appended twice (enqueued again after a restart) is read once.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::Mutex;

const ENTRY: usize = 16;
pub const MINUTE_MS: i64 = 60_000;
/// Files kept open for appends; timers cluster in few minutes, and an evicted file is
/// simply opened again.
const OPEN_FILES: usize = 64;

/// One pending timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Entry {
    pub due_ms: i64,
    pub offset: u64,
}

pub fn minute_of(ms: i64) -> i64 {
    ms.div_euclid(MINUTE_MS)
}

pub struct Wheel {
    dir: PathBuf,
    /// Append handles by minute, and whether each has writes not yet synced.
    open: Mutex<HashMap<i64, (File, bool)>>,
    /// The delivery task asks for its minute every 100 ms: a file that has not grown since
    /// is not read again.
    last_read: Mutex<Option<LastRead>>,
}

/// A minute's timers as read when its file had `len` bytes.
struct LastRead {
    minute: i64,
    len: u64,
    entries: Arc<Vec<Entry>>,
}

impl Wheel {
    pub fn open(dir: PathBuf) -> io::Result<Wheel> {
        fs::create_dir_all(&dir)?;
        Ok(Wheel {
            dir,
            open: Mutex::new(HashMap::new()),
            last_read: Mutex::new(None),
        })
    }

    fn path(&self, minute: i64) -> PathBuf {
        self.dir.join(minute.to_string())
    }

    /// Appends a timer to the file of `minute` (its due minute, or a later one when that
    /// minute was delivered already).
    pub fn add(&self, minute: i64, entry: Entry) -> io::Result<()> {
        let mut open = self.open.lock();
        if !open.contains_key(&minute) {
            if open.len() >= OPEN_FILES {
                // Sync before closing: `sync` only sees files still open.
                for (_, (file, _)) in open.drain() {
                    file.sync_data()?;
                }
            }
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.path(minute))?;
            // An append torn by a crash: cut it, or every later entry would be misaligned.
            let len = file.metadata()?.len();
            if len % ENTRY as u64 != 0 {
                file.set_len(len - len % ENTRY as u64)?;
            }
            open.insert(minute, (file, false));
        }
        let (file, dirty) = open.get_mut(&minute).expect("inserted above");
        let mut bytes = [0u8; ENTRY];
        bytes[..8].copy_from_slice(&entry.due_ms.to_be_bytes());
        bytes[8..].copy_from_slice(&entry.offset.to_be_bytes());
        file.write_all(&bytes)?;
        *dirty = true;
        Ok(())
    }

    /// Makes every append so far durable.
    pub fn sync(&self) -> io::Result<()> {
        let mut open = self.open.lock();
        for (file, dirty) in open.values_mut() {
            if *dirty {
                file.sync_data()?;
                *dirty = false;
            }
        }
        Ok(())
    }

    /// The timers of `minute`, in due order, each once.
    pub fn read(&self, minute: i64) -> io::Result<Arc<Vec<Entry>>> {
        let mut file = match File::open(self.path(minute)) {
            Ok(file) => file,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Arc::default()),
            Err(error) => return Err(error),
        };
        let len = file.metadata()?.len();
        let mut last_read = self.last_read.lock();
        if let Some(last) = &*last_read {
            if last.minute == minute && last.len == len {
                return Ok(Arc::clone(&last.entries));
            }
        }
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let mut entries: Vec<Entry> = bytes
            .chunks_exact(ENTRY)
            .map(|chunk| Entry {
                due_ms: i64::from_be_bytes(chunk[..8].try_into().expect("8 bytes")),
                offset: u64::from_be_bytes(chunk[8..].try_into().expect("8 bytes")),
            })
            .collect();
        entries.sort_unstable();
        entries.dedup();
        let entries = Arc::new(entries);
        // Keyed by the length read, not the length before: a concurrent append makes the
        // next call read again.
        *last_read = Some(LastRead {
            minute,
            len: bytes.len() as u64,
            entries: Arc::clone(&entries),
        });
        Ok(entries)
    }

    /// Minutes that have a file, oldest first.
    pub fn minutes(&self) -> io::Result<Vec<i64>> {
        let mut minutes: Vec<i64> = fs::read_dir(&self.dir)?
            .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
            .collect();
        minutes.sort_unstable();
        Ok(minutes)
    }

    /// Deletes the files of every minute before `minute`: all delivered.
    pub fn remove_before(&self, minute: i64) -> io::Result<()> {
        let mut open = self.open.lock();
        open.retain(|m, _| *m >= minute);
        for old in self.minutes()?.into_iter().filter(|m| *m < minute) {
            match fs::remove_file(self.path(old)) {
                Ok(()) => {}
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_come_back_by_minute_in_due_order_once() {
        let dir = tempfile::tempdir().unwrap();
        let wheel = Wheel::open(dir.path().join("wheel")).unwrap();
        let at = |due_ms, offset| Entry { due_ms, offset };
        wheel.add(2, at(150_000, 7)).unwrap();
        wheel.add(2, at(121_000, 9)).unwrap();
        wheel.add(2, at(150_000, 7)).unwrap();
        wheel.add(5, at(300_500, 1)).unwrap();
        wheel.sync().unwrap();
        assert_eq!(*wheel.read(2).unwrap(), [at(121_000, 9), at(150_000, 7)]);
        assert_eq!(wheel.minutes().unwrap(), [2, 5]);
        assert!(wheel.read(3).unwrap().is_empty());
        wheel.remove_before(5).unwrap();
        assert_eq!(wheel.minutes().unwrap(), [5]);
    }

    #[test]
    fn a_torn_last_entry_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let wheel = Wheel::open(dir.path().to_path_buf()).unwrap();
        wheel
            .add(
                1,
                Entry {
                    due_ms: 61_000,
                    offset: 3,
                },
            )
            .unwrap();
        wheel.sync().unwrap();
        let mut file = OpenOptions::new()
            .append(true)
            .open(dir.path().join("1"))
            .unwrap();
        file.write_all(&[0xAB; 5]).unwrap();
        assert_eq!(
            *wheel.read(1).unwrap(),
            [Entry {
                due_ms: 61_000,
                offset: 3
            }]
        );
        // After a restart, appends go on from the last whole entry.
        let wheel = Wheel::open(dir.path().to_path_buf()).unwrap();
        wheel
            .add(
                1,
                Entry {
                    due_ms: 62_000,
                    offset: 4,
                },
            )
            .unwrap();
        assert_eq!(
            *wheel.read(1).unwrap(),
            [
                Entry {
                    due_ms: 61_000,
                    offset: 3
                },
                Entry {
                    due_ms: 62_000,
                    offset: 4
                }
            ]
        );
    }

    #[test]
    fn many_files_stay_within_the_open_limit() {
        let dir = tempfile::tempdir().unwrap();
        let wheel = Wheel::open(dir.path().to_path_buf()).unwrap();
        for minute in 0..(OPEN_FILES as i64 * 2) {
            wheel
                .add(
                    minute,
                    Entry {
                        due_ms: minute * MINUTE_MS,
                        offset: 0,
                    },
                )
                .unwrap();
        }
        assert!(wheel.open.lock().len() <= OPEN_FILES);
        assert_eq!(wheel.minutes().unwrap().len(), OPEN_FILES * 2);
    }
}
