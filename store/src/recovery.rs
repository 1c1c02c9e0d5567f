//! Startup: decide where the CommitLog really ends and make the consume queues and index
//! agree with it.
//!
//! Clean stop (no `abort` file): the checkpoint is trusted; only records past its dispatched
//! offset (normally none) are re-dispatched. Crash: scanning starts at the lowest of the
//! checkpoint's flushed CommitLog offset, its dispatched offset and the start of any index
//! file that may be torn. From there every record must parse, sit at the offset it names and
//! (with `checkCRCOnRecover`) match its body CRC; the first one that does not ends the log,
//! and everything after it is zeroed. Consume-queue entries from the scan start on are
//! dropped and rebuilt from the surviving records, so nothing half-written is ever served.

use message::StoredMessage;

use crate::checkpoint::Checkpoint;
use crate::commit_log::{CommitLog, Found};
use crate::error::Result;
use crate::store::Inner;

pub(crate) fn recover(inner: &Inner, clean: bool, saved: Option<Checkpoint>) -> Result<()> {
    let commit_log = &inner.commit_log;
    let segments = commit_log.segments();
    let (min, limit) = match (segments.first(), segments.last()) {
        (Some(first), Some(last)) => (first.start(), last.end()),
        _ => (0, 0),
    };
    let saved = saved.unwrap_or_default();
    let mut start = if clean {
        saved.dispatched
    } else {
        saved.dispatched.min(saved.commit_log_flushed)
    };
    if !clean {
        if let Some(index) = &inner.index {
            if let Some(from) = index.drop_unsafe_files(saved.dispatched)? {
                start = start.min(from);
            }
        }
    }
    let start = start.clamp(min, limit);
    let check_crc = !clean && inner.config.check_crc_on_recover;
    let end = scan(commit_log, start, limit, check_crc);
    if start < end || !clean {
        tracing::info!(clean, start, end, "recovering CommitLog");
    }
    inner.truncate_queues(if clean { end } else { start })?;
    commit_log.reset_end(end)?;
    inner.set_dispatched(start);
    inner.dispatch_to(end)?;
    inner.set_queue_offsets_from_queues();
    inner.trim_to_commit_log()?;
    Ok(())
}

/// The end of the valid records from `start`.
fn scan(commit_log: &CommitLog, start: u64, limit: u64, check_crc: bool) -> u64 {
    let mut offset = start;
    loop {
        match commit_log.find(offset, limit) {
            Ok(Found::Message(segment, position, size)) => {
                let Ok(stored) = StoredMessage::parse(segment.read(position, size)) else {
                    break;
                };
                if stored.physical_offset() != offset as i64 {
                    break;
                }
                if check_crc && stored.check_body_crc().is_err() {
                    tracing::warn!(offset, "CRC mismatch: CommitLog ends here");
                    break;
                }
                offset += size as u64;
            }
            Ok(Found::NextSegment(next)) if next > offset => offset = next,
            Ok(_) => break,
            Err(error) => {
                tracing::warn!(offset, %error, "damaged record: CommitLog ends here");
                break;
            }
        }
    }
    offset
}
