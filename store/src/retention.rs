//! Deleting old CommitLog segments and what pointed into them (RocketMQ's
//! `CleanCommitLogService` and `CleanConsumeQueueService`).

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::Result;
use crate::store::Inner;

/// Percentage of the filesystem holding `path` that is used, as `df` reports it.
pub fn disk_used_percent(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs fills the zeroed struct we pass; the path is NUL-terminated.
    let stat = unsafe {
        let mut stat: libc::statvfs = std::mem::zeroed();
        if libc::statvfs(c_path.as_ptr(), &mut stat) != 0 {
            return None;
        }
        stat
    };
    let total = stat.f_blocks as u64;
    if total == 0 {
        return None;
    }
    let used = total - stat.f_bfree as u64;
    Some(used * 100 / (used + stat.f_bavail as u64).max(1))
}

/// True when the current UTC hour is one of `delete_when`'s (`"04"` or `"04;05"`). RocketMQ
/// uses local time; a container's local time is normally UTC anyway.
fn in_delete_window(delete_when: &str, now: SystemTime) -> bool {
    let hour = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() / 3600 % 24)
        .unwrap_or(0);
    delete_when
        .split(';')
        .any(|h| h.trim().parse::<u64>() == Ok(hour))
}

/// One retention pass. `manual` stands for the admin's `deleteExpiredCommitLog`: it skips the
/// time-window test but still deletes only expired files (unless the disk is past the force
/// ratio). Returns the number of CommitLog segments deleted.
pub(crate) fn clean(inner: &Inner, now: SystemTime, manual: bool) -> Result<usize> {
    let config = &inner.config;
    let used = disk_used_percent(&config.store_path_root_dir).unwrap_or(0);
    let force = used > config.disk_space_clean_forcibly_ratio;
    let due = manual
        || force
        || used > config.disk_max_used_space_ratio
        || in_delete_window(&config.delete_when, now);
    if !due {
        return Ok(0);
    }
    let reserved = Duration::from_secs(config.file_reserved_time * 3600);
    // The consume-queue entries of what is about to go must be durable first: lost after a
    // crash, with their records deleted, nothing could rebuild them, and the queues'
    // offsets would go back and be handed out again.
    // Read first: what the checkpoint below records is at least this. A segment not yet
    // flushed stays too, or flushing it later would find it gone.
    let dispatched = inner.dispatched().min(inner.commit_log.flushed_offset());
    // A Raft replica's log still names what lies from here on.
    let kept_from = inner.retention_floor();
    inner.save_checkpoint()?;
    let mut deleted = 0;
    while deleted < config.delete_file_batch_max {
        let expired = |segment: &crate::segment::Segment| {
            segment.end() <= dispatched
                && segment.end() <= kept_from
                && (force
                    || segment
                        .modified()
                        .is_some_and(|modified| modified + reserved <= now))
        };
        if !inner.commit_log.delete_oldest_if(expired)? {
            break;
        }
        deleted += 1;
    }
    if deleted > 0 {
        inner.trim_to_commit_log()?;
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_and_disk_ratio() {
        let four_am = UNIX_EPOCH + Duration::from_secs(4 * 3600 + 60);
        assert!(in_delete_window("04", four_am));
        assert!(in_delete_window("03;04", four_am));
        assert!(!in_delete_window("05", four_am));
        let used = disk_used_percent(Path::new("/")).unwrap();
        assert!(used <= 100);
    }
}
