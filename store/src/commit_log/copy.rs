//! A replica's copy of records another replica encoded (a Raft leader's batch): the same
//! bytes at the same CommitLog offset, so a message's offset, and so its offset message id,
//! is the same on every replica (docs/replication.md).

use std::sync::atomic::Ordering;

use message::record::BLANK_MIN_LEN;
use message::{RecordHead, StoredMessage};

use super::{AppendedMessage, CommitLog, PutMessage};
use crate::error::{Error, Result};
use crate::wait::WaitWith;

/// One record of a copied batch, as the copy found it.
struct Record {
    appended: AppendedMessage,
    /// Topic, queue and the queue offset after this record's, when it takes one.
    next_queue_offset: Option<(String, i32, i64)>,
}

/// The records of `bytes`, to be stored at `start`: each whole, its CRC intact, naming its
/// own offset. A batch holds messages only: a blank marker is each replica's own, written
/// where its segment ends.
fn records(start: u64, bytes: &[u8]) -> std::result::Result<Vec<Record>, String> {
    let mut records = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let offset = start + at as u64;
        let size = match RecordHead::peek(&bytes[at..]) {
            Ok(RecordHead::Message { size }) if at + size <= bytes.len() => size,
            Ok(RecordHead::Message { size }) => {
                return Err(format!(
                    "the record at {offset} claims {size} bytes, {} are left",
                    bytes.len() - at
                ))
            }
            Ok(other) => return Err(format!("{other:?} at {offset}, not a message")),
            Err(error) => return Err(format!("at {offset}: {error}")),
        };
        let record = &bytes[at..at + size];
        crate::recovery::check_record(record, offset, true)?;
        let stored = StoredMessage::parse(record).map_err(|e| e.to_string())?;
        let next_queue_offset = PutMessage::takes_queue_offset(stored.sys_flag())
            .then(|| {
                let topic = stored.topic().map_err(|e| e.to_string())?;
                Ok::<_, String>((
                    topic.to_owned(),
                    stored.queue_id(),
                    stored.queue_offset() + 1,
                ))
            })
            .transpose()?;
        records.push(Record {
            appended: AppendedMessage {
                physical_offset: offset,
                size,
                queue_offset: stored.queue_offset(),
                store_timestamp: stored.store_timestamp(),
            },
            next_queue_offset,
        });
        at += size;
    }
    Ok(records)
}

impl CommitLog {
    /// Moves this log's end to `start`, where another replica's committed records go on (a
    /// snapshot's copy, whose pieces need not be the batches the appends wrote): the end of
    /// the active segment, which gets its blank marker, or, in a log that holds no segment,
    /// any segment boundary, where its first segment will begin (the other replica's older
    /// segments were retired). Anything else is refused.
    pub(crate) fn skip_to(&self, start: u64) -> Result<()> {
        let mut writer = self.writer.lock();
        let end = self.write_position.load(Ordering::Relaxed);
        if start == end {
            return Ok(());
        }
        if let Some(segment) = writer.current().cloned() {
            if start == segment.end() && start > end {
                self.close_segment(&mut writer, &segment);
                return Ok(());
            }
        } else if self.segments.read().is_empty() && start.is_multiple_of(self.segment_size) {
            self.write_position.store(start, Ordering::Release);
            self.flushed_position.store(start, Ordering::Release);
            return Ok(());
        }
        Err(Error::ReplicaMismatch {
            start,
            reason: format!("this replica's CommitLog ends at {end}"),
        })
    }

    /// Writes `bytes`, whole records another replica stored at `start`, at `start`. That is
    /// this log's end, or the next segment's start when the other replica rolled there: the
    /// batch did not fit what this segment has left either, which gets the same blank marker.
    /// Anything else means the replicas diverged, and nothing is written.
    pub(crate) fn append_copy(
        &self,
        start: u64,
        bytes: &[u8],
        wait_with: WaitWith,
    ) -> Result<(Vec<AppendedMessage>, u64)> {
        let refused = |reason: String| Error::ReplicaMismatch { start, reason };
        if bytes.is_empty() {
            return Err(refused("no records".into()));
        }
        let records = records(start, bytes).map_err(refused)?;
        let len = bytes.len();
        if len + BLANK_MIN_LEN > self.segment_size as usize {
            return Err(refused(format!("{len} bytes do not fit a segment")));
        }

        let mut writer = crate::wait::lock(&self.writer, wait_with);
        let end = self.write_position.load(Ordering::Relaxed);
        let room = writer
            .current()
            .map(|segment| (segment.end(), (segment.end() - end) as usize));
        let fits_here = room.is_none_or(|(_, left)| len + BLANK_MIN_LEN <= left);
        let expected = match room {
            Some((segment_end, _)) if !fits_here => segment_end,
            _ => end,
        };
        if start != expected {
            return Err(refused(format!(
                "this replica's next batch goes at {expected}"
            )));
        }
        let segment = self.segment_with_room(&mut writer, len, wait_with)?;
        debug_assert_eq!(self.write_position.load(Ordering::Relaxed), start);
        let position = (start - segment.start()) as usize;
        // Each record's TOTALSIZE and magic code last, as the encoder writes them
        // (message::record): a process killed mid-copy leaves whole records, then zeroes
        // that read as the log's end, never a whole body behind a torn topic.
        let heads = || {
            records.iter().scan(0, |at, record| {
                let head = *at;
                *at += record.appended.size;
                Some((head, *at))
            })
        };
        for (head, end) in heads() {
            // SAFETY: we hold the writer lock, and these bytes lie past the published write
            // position until the store below.
            unsafe { segment.write(position + head + 8, &bytes[head + 8..end]) };
        }
        std::sync::atomic::compiler_fence(Ordering::SeqCst);
        for (head, _) in heads() {
            // SAFETY: as above.
            unsafe { segment.write(position + head, &bytes[head..head + 8]) };
        }
        let mut appended = Vec::with_capacity(records.len());
        for record in records {
            if let Some((topic, queue_id, next)) = &record.next_queue_offset {
                writer.set_queue_offset(topic, *queue_id, *next);
            }
            writer.saw_store_timestamp(record.appended.store_timestamp);
            appended.push(record.appended);
        }
        let end = start + len as u64;
        self.write_position.store(end, Ordering::Release);
        drop(writer);
        self.populate_after(&segment, start, end);
        Ok((appended, end))
    }
}
