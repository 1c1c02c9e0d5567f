//! CommitLog ranges set aside by `store repair`: damaged records below the checkpointed
//! flushed offset that recovery refused to cut at. Each range is a file
//! `quarantine/<start>-<end>` holding the damaged bytes as they were found, for forensics;
//! reads and dispatch skip the range, and everything around it is served as usual.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::segment;

#[derive(Debug, Default)]
pub(crate) struct Quarantine {
    /// Sorted, disjoint `[start, end)` ranges.
    ranges: Vec<(u64, u64)>,
}

impl Quarantine {
    /// Reads the ranges recorded in `dir` (none when it does not exist).
    pub(crate) fn load(dir: &Path) -> Result<Quarantine> {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(Error::io(dir, e)),
        };
        let mut ranges = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(dir, e))?;
            let name = entry.file_name();
            let range = name.to_str().and_then(|name| {
                let (start, end) = name.split_once('-')?;
                Some((start.parse::<u64>().ok()?, end.parse::<u64>().ok()?))
            });
            match range {
                Some((start, end)) if start < end => ranges.push((start, end)),
                _ => {
                    tracing::warn!(path = %entry.path().display(), "not a quarantine file; ignored")
                }
            }
        }
        ranges.sort_unstable();
        Ok(Quarantine { ranges })
    }

    /// Where reading continues when `offset` lies in a quarantined range.
    pub(crate) fn skip(&self, offset: u64) -> Option<u64> {
        let index = self.ranges.partition_point(|(start, _)| *start <= offset);
        let (start, end) = *self.ranges.get(index.checked_sub(1)?)?;
        (start <= offset && offset < end).then_some(end)
    }

    /// Records `[start, end)` with its damaged `bytes`, durably.
    pub(crate) fn add(dir: &Path, start: u64, end: u64, bytes: &[u8]) -> Result<PathBuf> {
        segment::create_dir_durably(dir)?;
        let path = dir.join(format!("{start:020}-{end:020}"));
        let io = |e| Error::io(&path, e);
        let mut file = std::fs::File::create(&path).map_err(io)?;
        std::io::Write::write_all(&mut file, bytes).map_err(io)?;
        file.sync_all().map_err(io)?;
        segment::sync_dir(dir)?;
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_round_trip_and_skip() {
        let dir = tempfile::tempdir().unwrap();
        let quarantine = dir.path().join("quarantine");
        assert_eq!(Quarantine::load(&quarantine).unwrap().skip(5), None);
        Quarantine::add(&quarantine, 100, 150, b"x").unwrap();
        Quarantine::add(&quarantine, 10, 20, b"y").unwrap();
        let loaded = Quarantine::load(&quarantine).unwrap();
        assert_eq!(loaded.ranges, vec![(10, 20), (100, 150)]);
        assert_eq!(loaded.skip(9), None);
        assert_eq!(loaded.skip(10), Some(20));
        assert_eq!(loaded.skip(19), Some(20));
        assert_eq!(loaded.skip(20), None);
        assert_eq!(loaded.skip(120), Some(150));
        assert_eq!(loaded.skip(150), None);
    }
}
