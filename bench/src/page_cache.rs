//! How much of a folder's files the page cache holds, and dropping them from it: the cold
//! backlog case reads a broker's data from disk, so its files must leave memory first.
//!
//! Without root, `/proc/sys/vm/drop_caches` is out of reach, but `posix_fadvise(DONTNEED)`
//! drops a file's clean pages that no process maps. Both Rocketry and Apache RocketMQ map their
//! CommitLog, so the broker is stopped first, and pages still dirty are written back here
//! before they are dropped. `mincore` on a mapping of our own tells what stayed.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use memmap2::Mmap;

/// The bytes of a folder's files, and how many of them the page cache holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Residency {
    pub total: u64,
    pub cached: u64,
}

/// Every regular file under `dir`, at any depth.
fn files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?
        {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                pending.push(entry.path());
            } else if kind.is_file() {
                out.push(entry.path());
            }
        }
    }
    Ok(out)
}

fn page_size() -> u64 {
    // SAFETY: sysconf reads a constant of the system.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if size > 0 {
        size as u64
    } else {
        4096
    }
}

/// Bytes of `path` in the page cache.
fn cached(path: &Path, page: u64) -> Result<u64> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    if file.metadata()?.len() == 0 {
        return Ok(0);
    }
    // SAFETY: the mapping is only handed to mincore, never read, so a file changed or cut by
    // its broker meanwhile cannot fault here.
    let map = unsafe { Mmap::map(&file) }.with_context(|| format!("mapping {}", path.display()))?;
    let mut pages = vec![0u8; (map.len() as u64).div_ceil(page) as usize];
    // SAFETY: the range is our own mapping, and `pages` has one byte per page of it.
    let result = unsafe { libc::mincore(map.as_ptr() as *mut _, map.len(), pages.as_mut_ptr()) };
    if result != 0 {
        bail!(
            "mincore on {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        );
    }
    let resident = pages.iter().filter(|p| **p & 1 == 1).count() as u64;
    Ok((resident * page).min(map.len() as u64))
}

/// What the page cache holds of the files under `dir`.
pub fn residency(dir: &Path) -> Result<Residency> {
    let page = page_size();
    let mut out = Residency {
        total: 0,
        cached: 0,
    };
    for path in files(dir)? {
        out.total += std::fs::metadata(&path)?.len();
        out.cached += cached(&path, page)?;
    }
    Ok(out)
}

/// Writes back and drops from the page cache every file under `dir`; returns what stayed.
pub fn evict(dir: &Path) -> Result<Residency> {
    for path in files(dir)? {
        let file = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
        file.sync_data()
            .with_context(|| format!("writing back {}", path.display()))?;
        // SAFETY: a plain advice call on a descriptor we own.
        let result =
            unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        if result != 0 {
            bail!(
                "posix_fadvise on {}: {}",
                path.display(),
                std::io::Error::from_raw_os_error(result)
            );
        }
    }
    residency(dir)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn files_just_written_are_cached_and_evicted_ones_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("commitlog");
        std::fs::create_dir(&nested).unwrap();
        for (path, mib) in [(nested.join("0"), 4), (dir.path().join("index"), 1)] {
            let mut file = File::create(path).unwrap();
            file.write_all(&vec![7u8; mib << 20]).unwrap();
        }
        std::fs::File::create(dir.path().join("empty")).unwrap();
        let before = residency(dir.path()).unwrap();
        assert_eq!(before.total, 5 << 20);
        assert_eq!(before.cached, 5 << 20, "written through the page cache");
        let after = evict(dir.path()).unwrap();
        assert_eq!(
            after,
            Residency {
                total: 5 << 20,
                cached: 0
            }
        );
    }
}
