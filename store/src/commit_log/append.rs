//! The append path: queue offsets, store timestamps and segment roll-over, under one lock.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use message::record::{blank_marker, RecordFields, BLANK_MIN_LEN};
use message::{sysflag, Message, RecordEncoder};

use super::allocator::POPULATE_STEP;
use super::CommitLog;
use crate::error::{Error, Result};
use crate::segment::Segment;
use crate::wait::WaitWith;

/// One message to store, with what the broker knows about its sender.
#[derive(Debug, Clone)]
pub struct PutMessage {
    /// Topic, flag, properties and body as the client sent them (plus broker properties).
    pub message: Message,
    /// Target queue.
    pub queue_id: i32,
    /// Message sysflag from the request (IPv6 bits are set by the store).
    pub sys_flag: i32,
    /// Producer timestamp, ms.
    pub born_timestamp: i64,
    /// Peer address of the producer's connection.
    pub born_host: SocketAddr,
    /// The broker's client-reachable address.
    pub store_host: SocketAddr,
    /// Redelivery count.
    pub reconsume_times: i32,
    /// Half-message offset for a transaction commit, else 0.
    pub prepared_transaction_offset: i64,
}

impl PutMessage {
    /// A message to `queue_id` with zeroed bookkeeping and the given hosts.
    pub fn new(
        message: Message,
        queue_id: i32,
        born_host: SocketAddr,
        store_host: SocketAddr,
    ) -> Self {
        PutMessage {
            message,
            queue_id,
            sys_flag: 0,
            born_timestamp: now_millis(),
            born_host,
            store_host,
            reconsume_times: 0,
            prepared_transaction_offset: 0,
        }
    }

    fn fields(&self) -> RecordFields {
        RecordFields {
            queue_id: self.queue_id,
            flag: self.message.flag,
            sys_flag: self.sys_flag,
            born_timestamp: self.born_timestamp,
            born_host: self.born_host,
            store_host: self.store_host,
            reconsume_times: self.reconsume_times,
            prepared_transaction_offset: self.prepared_transaction_offset,
        }
    }

    /// PREPARED and ROLLBACK records get queue offset 0 and never enter a consume queue.
    pub(crate) fn takes_queue_offset(sys_flag: i32) -> bool {
        matches!(
            sysflag::transaction_type(sys_flag),
            sysflag::TRANSACTION_NOT_TYPE | sysflag::TRANSACTION_COMMIT
        )
    }
}

/// Where one message went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendedMessage {
    /// CommitLog offset of the record (PHYSICALOFFSET).
    pub physical_offset: u64,
    /// Record length in bytes.
    pub size: usize,
    /// Consume-queue offset (QUEUEOFFSET).
    pub queue_offset: i64,
    /// STORETIMESTAMP.
    pub store_timestamp: i64,
}

/// The next queue offset of each queue of each topic.
pub(crate) type QueueOffsets = HashMap<String, HashMap<i32, i64>>;

#[derive(Default)]
pub(super) struct Writer {
    current: Option<Arc<Segment>>,
    queue_offsets: QueueOffsets,
    last_store_timestamp: i64,
}

impl Writer {
    pub(super) fn reset(&mut self, current: Option<Arc<Segment>>) {
        self.current = current;
    }

    /// The segment appends go to, if one is open.
    pub(super) fn current(&self) -> Option<&Arc<Segment>> {
        self.current.as_ref()
    }

    /// Store timestamps never go backwards, also after records copied from another replica.
    pub(super) fn saw_store_timestamp(&mut self, stored: i64) {
        self.last_store_timestamp = self.last_store_timestamp.max(stored);
    }

    pub(super) fn set_queue_offset(&mut self, topic: &str, queue_id: i32, next: i64) {
        self.queue_offsets
            .entry(topic.to_owned())
            .or_default()
            .insert(queue_id, next);
    }

    pub(super) fn set_queue_offsets(&mut self, next: QueueOffsets) {
        self.queue_offsets = next;
    }

    pub(super) fn forget_topic(&mut self, topic: &str) {
        self.queue_offsets.remove(topic);
    }

    fn next_queue_offset(&mut self, topic: &str, queue_id: i32) -> &mut i64 {
        if !self.queue_offsets.contains_key(topic) {
            self.queue_offsets.insert(topic.to_owned(), HashMap::new());
        }
        // Just inserted if missing; the lookup by &str avoids allocating per append.
        let queues = self.queue_offsets.get_mut(topic).expect("present");
        queues.entry(queue_id).or_insert(0)
    }
}

pub(crate) fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl CommitLog {
    /// Appends `messages` contiguously in one segment (a batch never straddles two) and
    /// publishes them. Encoding and CRCs happen before the lock; under it only offsets are
    /// assigned and bytes copied into the mapping.
    pub(crate) fn append(
        &self,
        messages: &[PutMessage],
        max_body: usize,
        wait_with: WaitWith,
    ) -> Result<(Vec<AppendedMessage>, u64)> {
        // All the messages' property texts in one buffer: one allocation per append, not
        // one per message of a batch.
        let mut texts = String::with_capacity(
            messages
                .iter()
                .map(|m| m.message.properties.encoded_len())
                .sum(),
        );
        for put in messages {
            put.message.properties.encode_into(&mut texts);
        }
        let mut encoders = Vec::with_capacity(messages.len());
        let mut start = 0;
        for put in messages {
            let end = start + put.message.properties.encoded_len();
            let properties = &texts[start..end];
            start = end;
            if put.message.body.len() > max_body {
                return Err(Error::MessageTooLarge {
                    size: put.message.body.len(),
                    max: max_body,
                });
            }
            let encoder = RecordEncoder::new(
                &put.message.topic,
                &put.message.body,
                properties,
                put.fields(),
            )
            .map_err(Error::IllegalMessage)?;
            encoders.push(encoder);
        }
        let total: usize = encoders.iter().map(RecordEncoder::encoded_len).sum();
        if total + BLANK_MIN_LEN > self.segment_size as usize {
            return Err(Error::MessageTooLarge {
                size: total,
                max: self.segment_size as usize - BLANK_MIN_LEN,
            });
        }

        let mut writer = crate::wait::lock(&self.writer, wait_with);
        let segment = self.segment_with_room(&mut writer, total, wait_with)?;
        let first = self.write_position.load(Ordering::Relaxed);
        let mut offset = first;
        let store_timestamp = now_millis().max(writer.last_store_timestamp);
        writer.last_store_timestamp = store_timestamp;
        let mut appended = Vec::with_capacity(encoders.len());
        for (put, encoder) in messages.iter().zip(&encoders) {
            let queue_offset = if PutMessage::takes_queue_offset(put.sys_flag) {
                let next = writer.next_queue_offset(&put.message.topic, put.queue_id);
                *next += 1;
                *next - 1
            } else {
                0
            };
            let position = (offset - segment.start()) as usize;
            let size = encoder.encoded_len();
            // SAFETY: we hold the writer lock, and these bytes lie past the published
            // write position until the store below, after the slice is gone.
            let target = unsafe { segment.write_slice(position, size) };
            encoder
                .encode_into(target, queue_offset, offset as i64, store_timestamp)
                .map_err(Error::IllegalMessage)?;
            appended.push(AppendedMessage {
                physical_offset: offset,
                size,
                queue_offset,
                store_timestamp,
            });
            offset += size as u64;
        }
        self.write_position.store(offset, Ordering::Release);
        drop(writer);
        self.populate_after(&segment, first, offset);
        Ok((appended, offset))
    }

    /// Keeps the next step faulted in, asked for each time the appends (from `first` to
    /// `end`) cross into a step. The first two steps of a segment fault as the appends go:
    /// populating at a segment's first append would map 4 MiB into an idle broker after one
    /// send.
    pub(super) fn populate_after(&self, segment: &Arc<Segment>, first: u64, end: u64) {
        let step = |at: u64| (at - segment.start()) as usize / POPULATE_STEP;
        if step(end) > step(first) {
            self.allocator
                .populate_ahead(segment, (step(end) + 1) * POPULATE_STEP);
        }
    }

    /// The active segment once it has `len + 8` bytes free, writing a blank marker and
    /// rolling to the next segment when it has not.
    pub(super) fn segment_with_room(
        &self,
        writer: &mut Writer,
        len: usize,
        wait_with: WaitWith,
    ) -> Result<Arc<Segment>> {
        loop {
            let offset = self.write_position.load(Ordering::Relaxed);
            if let Some(segment) = writer.current.clone() {
                let remaining = (segment.end() - offset) as usize;
                if len + BLANK_MIN_LEN <= remaining {
                    return Ok(segment);
                }
                self.close_segment(writer, &segment);
                continue;
            }
            let segment = self.allocator.take(offset, wait_with)?;
            self.segments.write().push(Arc::clone(&segment));
            writer.current = Some(segment);
        }
    }

    /// Ends the active segment where the appends are: a blank marker fills the rest, and the
    /// next append goes to the next segment.
    pub(super) fn close_segment(&self, writer: &mut Writer, segment: &Segment) {
        let offset = self.write_position.load(Ordering::Relaxed);
        let remaining = (segment.end() - offset) as usize;
        if remaining >= BLANK_MIN_LEN {
            let position = (offset - segment.start()) as usize;
            // SAFETY: writer lock held; past the published position until the store.
            unsafe { segment.write(position, &blank_marker(remaining as u32)) };
        }
        self.write_position.store(segment.end(), Ordering::Release);
        writer.current = None;
    }
}
