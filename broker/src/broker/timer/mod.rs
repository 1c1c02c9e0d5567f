//! Delivery at any time (RocketMQ 5.x timer messages). A send with `TIMER_DELIVER_MS`
//! (absolute), `TIMER_DELAY_MS` or `TIMER_DELAY_SEC` is stored in `rmq_sys_wheel_timer`,
//! queue 0, with its real topic and queue and its due time (`TIMER_OUT_MS`) in properties.
//! A task enqueues each such message into the on-disk wheel ([`wheel`]) and, every 100 ms,
//! re-puts the messages that are due into their real topics.
//!
//! Crashes: the wheel is fed from the timer topic's consume queue, and what was enqueued is
//! recorded only once the wheel's files are synced, so a lost append is enqueued again. A
//! minute is recorded delivered only once the store has flushed its deliveries; after a
//! restart the minutes not recorded are delivered again, and each message due before the
//! restart is first looked up in the key index of its real topic, so none arrives twice.

pub mod wheel;

use std::collections::{HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;

use message::{property, StoredMessage};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use store::{GetMessageStatus, PutMessage};
use tracing::warn;

use super::clock::{self, now_millis};
use super::Broker;
use crate::config_file::StateFile;
use crate::error::Result;
use wheel::{minute_of, Entry, Wheel};

pub const TIMER_TOPIC: &str = "rmq_sys_wheel_timer";
/// The due time the broker computed, epoch ms (RocketMQ's name).
const TIMER_OUT_MS: &str = "TIMER_OUT_MS";
/// What clients set: `Message.setDeliverTimeMs` (and the older `__STARTDELIVERTIME`),
/// `setDelayTimeMs`, `setDelayTimeSec`.
const DELIVER_MS: [&str; 2] = ["TIMER_DELIVER_MS", "__STARTDELIVERTIME"];
const DELAY_MS: &str = "TIMER_DELAY_MS";
const DELAY_SEC: &str = "TIMER_DELAY_SEC";
/// Timer-topic entries enqueued per store call.
const BATCH: usize = 256;

/// Sends the message through the timer topic when it asks for a delivery time in the
/// future; returns whether it did. A delay level wins over the timer properties, which are
/// then dropped, as in RocketMQ; a time already past means now.
pub fn arm(
    put: &mut PutMessage,
    now_ms: i64,
    max_delay_sec: u64,
) -> std::result::Result<bool, String> {
    let properties = &mut put.message.properties;
    let level = properties
        .get(property::DELAY)
        .and_then(|level| level.trim().parse::<i32>().ok())
        .is_some_and(|level| level > 0);
    let mut due = None;
    for name in DELIVER_MS {
        if let Some(text) = properties.get(name) {
            due = Some(parse(name, text)?);
        }
    }
    if let Some(text) = properties.get(DELAY_MS) {
        due = Some(now_ms.saturating_add(parse(DELAY_MS, text)?));
    }
    if let Some(text) = properties.get(DELAY_SEC) {
        due = Some(now_ms.saturating_add(parse(DELAY_SEC, text)?.saturating_mul(1000)));
    }
    if level {
        for name in DELIVER_MS.iter().chain(&[DELAY_MS, DELAY_SEC]) {
            properties.remove(name);
        }
        return Ok(false);
    }
    let Some(due) = due.filter(|due| *due > now_ms) else {
        return Ok(false);
    };
    let latest = now_ms.saturating_add((max_delay_sec as i64).saturating_mul(1000));
    if due > latest {
        return Err(format!(
            "timer message illegal: its delivery time {due} is more than timerMaxDelaySec \
             ({max_delay_sec}) from now"
        ));
    }
    let real_topic = std::mem::replace(&mut put.message.topic, TIMER_TOPIC.into());
    let properties = &mut put.message.properties;
    properties.insert(property::REAL_TOPIC, real_topic);
    properties.insert(property::REAL_QID, put.queue_id.to_string());
    properties.insert(TIMER_OUT_MS, due.to_string());
    put.queue_id = 0;
    Ok(true)
}

fn parse(name: &str, text: &str) -> std::result::Result<i64, String> {
    text.trim()
        .parse()
        .map_err(|_| format!("timer message illegal: {name}={text:?} is not a number"))
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Progress {
    /// Timer-topic offset below which every message is in the wheel's synced files.
    enqueued: i64,
    /// Minute before which every timer is delivered and flushed.
    delivered_before: i64,
}

struct State {
    saved: Progress,
    enqueued: i64,
    /// The minute being delivered.
    cursor: i64,
    /// Offsets of the cursor minute's timers delivered so far.
    delivered: HashSet<u64>,
    /// CommitLog end of the newest delivery.
    written_end: u64,
    /// Minutes finished, with the CommitLog end their deliveries need flushed.
    finished: VecDeque<(i64, u64)>,
    /// Timers due before this (the start) may have been delivered before a crash.
    recovering_until: i64,
}

pub struct Timers {
    file: StateFile,
    wheel: Wheel,
    state: Mutex<State>,
}

impl Timers {
    pub fn open(progress: PathBuf, wheel_dir: PathBuf) -> Result<Timers> {
        let file = StateFile::new(progress);
        let saved: Progress = file.load()?.unwrap_or_default();
        let wheel = Wheel::open(wheel_dir.clone()).map_err(|source| crate::error::Error::Io {
            path: wheel_dir,
            source,
        })?;
        let now = now_millis();
        let cursor = if saved.delivered_before > 0 {
            saved.delivered_before
        } else {
            minute_of(now)
        };
        Ok(Timers {
            file,
            wheel,
            state: Mutex::new(State {
                enqueued: saved.enqueued,
                saved,
                cursor,
                delivered: HashSet::new(),
                written_end: 0,
                finished: VecDeque::new(),
                recovering_until: now,
            }),
        })
    }

    /// Records what is durable: the enqueued offset once the wheel is synced, the delivered
    /// minutes once the store has flushed past their deliveries; then drops their files.
    pub fn persist(&self, flushed: u64) -> Result<()> {
        let io = |source| crate::error::Error::Io {
            path: PathBuf::from("timerwheel"),
            source,
        };
        self.wheel.sync().map_err(io)?;
        let delivered_before = {
            let mut state = self.state.lock();
            let mut changed = state.saved.enqueued != state.enqueued;
            state.saved.enqueued = state.enqueued;
            while let Some(&(minute, end)) = state.finished.front() {
                if end > flushed {
                    break;
                }
                state.finished.pop_front();
                state.saved.delivered_before = minute;
                changed = true;
            }
            if changed {
                self.file.note_change();
            }
            state.saved.delivered_before
        };
        let state = self.state.lock();
        self.file
            .save(parking_lot::MutexGuard::map(state, |s| &mut s.saved))?;
        self.wheel.remove_before(delivered_before).map_err(io)
    }
}

/// Runs the wheel until the broker stops.
pub fn spawn(broker: Arc<Broker>) {
    clock::spawn_rounds(
        broker,
        |broker| async move {
            if let Err(error) = enqueue(&broker) {
                warn!(%error, "timer messages not enqueued yet");
            }
            deliver_due(&broker);
        },
        |broker, flushed| broker.timers.persist(flushed),
        "cannot persist timer progress",
    );
}

/// Moves new timer messages into the wheel, each under its due minute (or the minute being
/// delivered, when that one has passed).
fn enqueue(broker: &Broker) -> std::io::Result<()> {
    let store = &broker.store;
    let timers = &broker.timers;
    let end = store.max_offset(TIMER_TOPIC, 0);
    loop {
        let (offset, cursor) = {
            let state = timers.state.lock();
            (state.enqueued, state.cursor)
        };
        if offset >= end {
            return Ok(());
        }
        let result = store.get_message(TIMER_TOPIC, 0, offset, BATCH, 4 << 20, None);
        match result.status {
            GetMessageStatus::Found => {}
            // Removed by retention, or a hole: go on past it.
            GetMessageStatus::OffsetTooSmall
            | GetMessageStatus::OffsetFoundNull
            | GetMessageStatus::MessageWasRemoving => {
                timers.state.lock().enqueued = result.next_begin_offset.max(offset + 1).min(end);
                continue;
            }
            _ => return Ok(()),
        }
        for bytes in &result.messages {
            let Ok(stored) = StoredMessage::parse(bytes) else {
                continue;
            };
            let properties = stored.properties().unwrap_or_default();
            let due = properties
                .get(TIMER_OUT_MS)
                .and_then(|t| t.parse::<i64>().ok())
                .unwrap_or(0);
            let entry = Entry {
                due_ms: due,
                offset: stored.physical_offset() as u64,
            };
            timers.wheel.add(minute_of(due).max(cursor), entry)?;
            broker
                .metrics
                .record_timer_enqueued(properties.get(property::REAL_TOPIC).unwrap_or_default());
        }
        timers.state.lock().enqueued = result.next_begin_offset;
    }
}

/// Re-puts every due timer of the minutes up to now.
fn deliver_due(broker: &Broker) {
    let timers = &broker.timers;
    loop {
        let now = now_millis();
        let cursor = timers.state.lock().cursor;
        if cursor > minute_of(now) {
            return;
        }
        let entries = match timers.wheel.read(cursor) {
            Ok(entries) => entries,
            Err(error) => {
                warn!(%error, minute = cursor, "cannot read the timer wheel");
                return;
            }
        };
        for entry in entries.iter().filter(|e| e.due_ms <= now) {
            if timers.state.lock().delivered.contains(&entry.offset) {
                continue;
            }
            match deliver(broker, entry) {
                Ok(end) => {
                    let mut state = timers.state.lock();
                    state.delivered.insert(entry.offset);
                    state.written_end = state.written_end.max(end);
                }
                Err(error) => {
                    warn!(%error, due = entry.due_ms, "timer message not delivered yet");
                    return;
                }
            }
        }
        // A minute is done once it has passed and all its timers were delivered (anything
        // enqueued later goes to a later minute).
        if cursor == minute_of(now) {
            return;
        }
        let mut state = timers.state.lock();
        state.cursor = cursor + 1;
        state.delivered.clear();
        let end = state.written_end;
        state.finished.push_back((cursor + 1, end));
    }
}

/// Puts one due timer message into its real topic; returns the CommitLog end of the copy
/// (0 when nothing was put: gone with retention, or delivered before a restart).
fn deliver(broker: &Broker, entry: &Entry) -> store::Result<u64> {
    let Some(bytes) = broker.store.message_at(entry.offset) else {
        warn!(
            offset = entry.offset,
            "timer message gone before its time (retention)"
        );
        return Ok(0);
    };
    let Ok(stored) = StoredMessage::parse(&bytes) else {
        return Ok(0);
    };
    let Ok(mut message) = stored.to_message() else {
        return Ok(0);
    };
    let (Some(topic), Some(queue_id)) = (
        message.properties.remove(property::REAL_TOPIC),
        message
            .properties
            .remove(property::REAL_QID)
            .and_then(|q| q.parse().ok()),
    ) else {
        warn!(
            offset = entry.offset,
            "timer message without a real topic dropped"
        );
        return Ok(0);
    };
    message.topic = topic.into();
    for name in DELIVER_MS.iter().chain(&[DELAY_MS, DELAY_SEC]) {
        message.properties.remove(name);
    }
    message.properties.insert(property::WAIT, "false");
    let recovering = entry.due_ms < broker.timers.state.lock().recovering_until;
    if recovering && delivered_before(broker, &message, entry.due_ms) {
        return Ok(0);
    }
    let put = PutMessage {
        sys_flag: stored.sys_flag(),
        born_timestamp: stored.born_timestamp(),
        reconsume_times: stored.reconsume_times(),
        ..PutMessage::new(message, queue_id, stored.born_host(), broker.store_host)
    };
    let end = broker.append(std::slice::from_ref(&put))?.end_offset;
    broker.metrics.record_timer_dequeued(&put.message.topic);
    Ok(end)
}

/// Whether the real topic holds this timer's delivered copy (same UNIQ_KEY and due time):
/// a minute re-read after a restart may hold timers delivered before it.
fn delivered_before(broker: &Broker, message: &message::Message, due: i64) -> bool {
    let Some(key) = message.unique_key() else {
        return false;
    };
    let due = due.to_string();
    broker
        .store
        .query_by_key(&message.topic, key, 32, 0, i64::MAX)
        .messages
        .iter()
        .filter_map(|bytes| StoredMessage::parse(bytes).ok()?.properties().ok())
        .any(|p| p.get(property::UNIQ_KEY) == Some(key) && p.get(TIMER_OUT_MS) == Some(&due))
}

#[cfg(test)]
mod tests {
    use super::*;
    use message::Message;

    fn put(properties: &[(&str, &str)]) -> PutMessage {
        let mut message = Message::new("Orders", "b");
        for (name, value) in properties {
            message.properties.insert(*name, *value);
        }
        let host = ([127, 0, 0, 1], 1).into();
        PutMessage::new(message, 3, host, host)
    }

    #[test]
    fn a_delivery_time_goes_through_the_timer_topic() {
        let now = 1_700_000_000_000;
        let mut deliver_at = put(&[("TIMER_DELIVER_MS", "1700000005000")]);
        assert_eq!(arm(&mut deliver_at, now, 259_200), Ok(true));
        assert_eq!(deliver_at.message.topic, TIMER_TOPIC);
        assert_eq!(deliver_at.queue_id, 0);
        let properties = &deliver_at.message.properties;
        assert_eq!(properties.get(property::REAL_TOPIC), Some("Orders"));
        assert_eq!(properties.get(property::REAL_QID), Some("3"));
        assert_eq!(properties.get(TIMER_OUT_MS), Some("1700000005000"));
        let mut in_seconds = put(&[("TIMER_DELAY_SEC", "7")]);
        assert_eq!(arm(&mut in_seconds, now, 259_200), Ok(true));
        assert_eq!(
            in_seconds.message.properties.get(TIMER_OUT_MS),
            Some("1700000007000")
        );
        let mut in_ms = put(&[("TIMER_DELAY_MS", "1500")]);
        assert_eq!(arm(&mut in_ms, now, 259_200), Ok(true));
        assert_eq!(
            in_ms.message.properties.get(TIMER_OUT_MS),
            Some("1700000001500")
        );
    }

    #[test]
    fn past_times_levels_and_bad_values() {
        let now = 1_700_000_000_000;
        let mut past = put(&[("TIMER_DELIVER_MS", "1600000000000")]);
        assert_eq!(arm(&mut past, now, 259_200), Ok(false));
        assert_eq!(past.message.topic, "Orders");
        let mut level = put(&[("TIMER_DELAY_SEC", "7"), (property::DELAY, "2")]);
        assert_eq!(arm(&mut level, now, 259_200), Ok(false));
        assert_eq!(level.message.properties.get("TIMER_DELAY_SEC"), None);
        let mut too_far = put(&[("TIMER_DELAY_SEC", "259201")]);
        assert!(arm(&mut too_far, now, 259_200).is_err());
        let mut garbage = put(&[("TIMER_DELAY_MS", "soon")]);
        assert!(arm(&mut garbage, now, 259_200).is_err());
        let mut plain = put(&[]);
        assert_eq!(arm(&mut plain, now, 259_200), Ok(false));
    }
}
