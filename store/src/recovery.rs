//! Finding where the CommitLog ends at start-up, and `store repair`.
//!
//! After a clean stop the checkpoint's dispatched offset is the end. After a crash, records
//! are walked from the last point known to be durable and dispatched (with CRC checks); the
//! first one that does not hold up ends the log, and everything after it is zeroed.
//!
//! The one rule: recovery never cuts below the checkpointed flushed offset. Those bytes were
//! on disk, and under SYNC_FLUSH acknowledged, so a bad record there is damage (a bad
//! sector, a bit flip), not a torn tail: the store refuses to open and names the segment and
//! offset, and deletes nothing. [`repair`] is the explicit operator action that sets the
//! damaged range aside and keeps every other message.
//!
//! Index files that may hold torn entries are rebuilt by re-dispatching from their start,
//! which never moves the CommitLog cut.

use std::path::PathBuf;

use message::record::MIN_RECORD_LEN;
use message::{RecordHead, StoredMessage};

use crate::checkpoint::{Checkpoint, CheckpointFile};
use crate::commit_log::{CommitLog, Found, Quarantine};
use crate::config::StoreConfig;
use crate::error::{Error, Result};
use crate::store::Inner;

pub(crate) fn recover(inner: &Inner, clean: bool, saved: Option<Checkpoint>) -> Result<()> {
    // Tests stall here to stand for a long recovery (the broker's /livez must answer
    // through it while /readyz does not).
    fault!("store::recover");
    let commit_log = &inner.commit_log;
    let (min, limit) = bounds(commit_log);
    let floor = flushed_floor(commit_log, saved, min, limit)?;
    let saved = saved.unwrap_or_default();
    let start = if clean {
        saved.dispatched
    } else {
        saved.dispatched.min(saved.commit_log_flushed)
    }
    .clamp(min, limit);
    let check_crc = !clean && inner.config.check_crc_on_recover;
    if !clean {
        // Walk what is on the disk, not what a failed flush left in the page cache.
        for segment in commit_log.segments().iter().filter(|s| s.end() > floor) {
            segment.drop_cached(floor.saturating_sub(segment.start()) as usize);
        }
    }
    let walked = walk(commit_log, start, limit, check_crc);
    if walked.end < floor {
        return Err(below_checkpoint(commit_log, walked, floor));
    }
    let end = walked.end;
    if let Some(reason) = &walked.stopped_by {
        tracing::warn!(offset = end, %reason, "CommitLog ends here");
    }
    if start < end || !clean {
        tracing::info!(clean, start, end, "recovering CommitLog");
    }
    // Index files that may hold entries past the checkpoint (torn pages) or past the cut
    // (records that are gone, whose offsets new records will take) are rebuilt from their
    // start; re-dispatch skips what the consume queues already have.
    let mut dispatch_from = start;
    if !clean {
        if let Some(index) = &inner.index {
            if let Some(from) = index.drop_unsafe_files(saved.dispatched.min(end))? {
                dispatch_from = dispatch_from.min(from.max(min));
            }
        }
    }
    inner.truncate_queues(if clean { end } else { start })?;
    commit_log.reset_end(end, floor.min(start))?;
    commit_log.flush_to(end)?;
    inner.set_dispatched(dispatch_from);
    inner.dispatch_to(end)?;
    // A replica dispatches only what it applied; the records past that took queue offsets.
    commit_log.set_queue_offsets(inner.next_queue_offsets(inner.dispatched(), end)?);
    inner.trim_to_commit_log()?;
    Ok(())
}

fn bounds(commit_log: &CommitLog) -> (u64, u64) {
    let segments = commit_log.segments();
    match (segments.first(), segments.last()) {
        (Some(first), Some(last)) => (first.start(), last.end()),
        _ => (0, 0),
    }
}

/// The CommitLog offset below which every byte was flushed, from the checkpoint. Without a
/// readable checkpoint (a first start, or one torn by a crash while it was written) nothing
/// is known durable.
fn flushed_floor(
    commit_log: &CommitLog,
    saved: Option<Checkpoint>,
    min: u64,
    limit: u64,
) -> Result<u64> {
    let Some(saved) = saved else {
        if limit > min {
            tracing::warn!("no readable checkpoint: recovery cannot tell flushed data apart");
        }
        return Ok(min);
    };
    if saved.commit_log_flushed > limit {
        let path = commit_log
            .segments()
            .last()
            .map_or_else(|| PathBuf::from("commitlog"), |s| s.path().to_owned());
        return Err(Error::CorruptBelowCheckpoint {
            path,
            offset: limit,
            flushed: saved.commit_log_flushed,
            reason: "the CommitLog ends before the checkpointed flushed offset: \
                     segment files are missing"
                .into(),
        });
    }
    Ok(saved.commit_log_flushed.max(min))
}

fn below_checkpoint(commit_log: &CommitLog, walked: Walked, floor: u64) -> Error {
    let path = commit_log
        .segment_for(walked.end)
        .map_or_else(|| PathBuf::from("commitlog"), |s| s.path().to_owned());
    Error::CorruptBelowCheckpoint {
        path,
        offset: walked.end,
        flushed: floor,
        reason: walked
            .stopped_by
            .unwrap_or_else(|| "no record where one must be".into()),
    }
}

/// Where a walk over the records stopped, and why if it was not zeroed space.
struct Walked {
    end: u64,
    stopped_by: Option<String>,
}

/// Walks valid records from `start` up to `limit`.
fn walk(commit_log: &CommitLog, start: u64, limit: u64, check_crc: bool) -> Walked {
    let mut offset = start;
    let stopped_by = loop {
        match commit_log.find(offset, limit) {
            Ok(Found::Message(segment, position, size)) => {
                if let Err(reason) = check_record(segment.read(position, size), offset, check_crc) {
                    break Some(reason);
                }
                offset += size as u64;
            }
            Ok(Found::ContinueAt(next)) if next > offset => offset = next,
            Ok(Found::ContinueAt(_)) => break None,
            // Zeroed space is where the log ends; a head whose record would run past its
            // segment is damage.
            Ok(Found::End) => match commit_log.segment_for(offset) {
                Some(segment) => {
                    let head = segment.read((offset - segment.start()) as usize, 8);
                    break (RecordHead::peek(head).ok() != Some(RecordHead::End))
                        .then(|| "record runs past the end of its segment".to_string());
                }
                None => break None,
            },
            Err(error) => break Some(error.to_string()),
        }
    };
    Walked {
        end: offset,
        stopped_by: stopped_by.filter(|_| offset < limit),
    }
}

/// Whether `bytes` is an intact record stored at `offset`.
pub(crate) fn check_record(
    bytes: &[u8],
    offset: u64,
    check_crc: bool,
) -> std::result::Result<(), String> {
    let stored = StoredMessage::parse(bytes).map_err(|e| format!("unparsable record: {e}"))?;
    if stored.physical_offset() != offset as i64 {
        return Err(format!(
            "record claims offset {}, found at {offset}",
            stored.physical_offset()
        ));
    }
    if check_crc {
        stored
            .check_body_crc()
            .map_err(|e| format!("body CRC mismatch: {e}"))?;
    }
    // The body CRC covers the body only: a record torn after it (written by a build that
    // wrote TOTALSIZE first) has a whole body and zeroes for a topic.
    let topic = stored
        .topic()
        .map_err(|e| format!("unreadable topic: {e}"))?;
    crate::store::check_topic(topic).map_err(|e| format!("not a record's topic: {e}"))?;
    Ok(())
}

/// One range `store repair` set aside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuarantinedRange {
    /// First damaged CommitLog offset.
    pub start: u64,
    /// Where intact records resume.
    pub end: u64,
    /// What was wrong at `start`.
    pub reason: String,
    /// The file holding the damaged bytes.
    pub saved_to: PathBuf,
}

/// What `store repair` did.
#[derive(Debug, Clone, Default)]
pub struct RepairReport {
    /// Ranges set aside, oldest first; empty when nothing below the checkpoint was damaged.
    pub quarantined: Vec<QuarantinedRange>,
    /// The checkpointed flushed offset the walk protected.
    pub flushed: u64,
}

/// Walks the whole CommitLog with CRC checks, offline (it takes the store's lock), and sets
/// aside every damaged range below the checkpointed flushed offset: from the bad record to
/// the next record that proves itself intact (it parses, its CRC holds and it names its own
/// offset). Consume queues and the index are then deleted and the next start rebuilds them
/// from the CommitLog, skipping the quarantined ranges; messages there are lost, every
/// other one is kept. Damage past the flushed offset is a torn tail, which the next start
/// cuts as usual.
pub(crate) fn repair(config: &StoreConfig) -> Result<RepairReport> {
    config.validate()?;
    let root = &config.store_path_root_dir;
    let _lock = crate::store::lock_root(root)?;
    let (checkpoint, saved) = CheckpointFile::open(&root.join("checkpoint"))?;
    let commit_log = CommitLog::open(
        &config.commit_log_dir(),
        config.mapped_file_size_commit_log,
        false,
        Quarantine::load(&config.quarantine_dir())?,
    )?;
    let (min, limit) = bounds(&commit_log);
    // Missing segments cannot be repaired into existence: that stays an error.
    let floor = flushed_floor(&commit_log, saved, min, limit)?;
    let mut report = RepairReport {
        flushed: floor,
        ..RepairReport::default()
    };
    let mut offset = min;
    while offset < floor {
        let walked = walk(&commit_log, offset, limit, true);
        if walked.end >= floor {
            break;
        }
        let resume = next_intact_record(&commit_log, walked.end, limit);
        let bytes = damaged_bytes(&commit_log, walked.end, resume);
        let saved_to = Quarantine::add(&config.quarantine_dir(), walked.end, resume, &bytes)?;
        let reason = walked.stopped_by.unwrap_or_default();
        tracing::warn!(start = walked.end, end = resume, %reason, "quarantined a damaged CommitLog range");
        report.quarantined.push(QuarantinedRange {
            start: walked.end,
            end: resume,
            reason,
            saved_to,
        });
        offset = resume;
    }
    commit_log.shutdown();
    if report.quarantined.is_empty() {
        return Ok(report);
    }
    // The next start must rebuild everything from the CommitLog (which now skips the
    // damaged ranges): say so durably first, then delete what it rebuilds, so a repair cut
    // short leaves a store that still starts right.
    checkpoint.save(&Checkpoint {
        commit_log_flushed: floor,
        dispatched: min,
        ..saved.unwrap_or_default()
    })?;
    crate::store::write_durably(&root.join("abort"), b"repair")?;
    for dir in [config.consume_queue_dir(), config.index_dir()] {
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(&dir, e)),
        }
    }
    crate::segment::sync_dir(root)?;
    Ok(report)
}

/// The first offset after `from` where an intact record (or a segment's blank marker)
/// starts, or the next segment's start, or `limit`.
fn next_intact_record(commit_log: &CommitLog, from: u64, limit: u64) -> u64 {
    let Some(segment) = commit_log.segment_for(from) else {
        return limit;
    };
    let end = segment.end().min(limit);
    let mut offset = from + 1;
    while offset + (MIN_RECORD_LEN as u64) <= end {
        let position = (offset - segment.start()) as usize;
        let rest = segment.read(position, (end - offset) as usize);
        match RecordHead::peek(rest) {
            Ok(RecordHead::Message { size })
                if size <= rest.len() && check_record(&rest[..size], offset, true).is_ok() =>
            {
                return offset;
            }
            Ok(RecordHead::Blank { size }) if offset + size as u64 == segment.end() => {
                return offset;
            }
            _ => {}
        }
        offset += 1;
    }
    end
}

fn damaged_bytes(commit_log: &CommitLog, start: u64, end: u64) -> Vec<u8> {
    let mut bytes = Vec::with_capacity((end - start) as usize);
    let mut at = start;
    while at < end {
        let Some(segment) = commit_log.segment_for(at) else {
            break;
        };
        let to = end.min(segment.end());
        bytes.extend_from_slice(segment.read((at - segment.start()) as usize, (to - at) as usize));
        at = to;
    }
    bytes
}
