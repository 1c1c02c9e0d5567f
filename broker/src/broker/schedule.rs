//! Delayed messages (RocketMQ's ScheduleMessageService). A send with `DELAY=<level>` is
//! stored in `SCHEDULE_TOPIC_XXXX`, queue `level - 1`, with its real topic and queue in
//! properties; a timer re-puts each message into its real topic once its level's delay
//! has passed since it was stored. Progress per level is kept in `config/delayOffset.json`,
//! so delivery resumes where it was after a restart.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use message::{property, sysflag, StoredMessage};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use store::{GetMessageStatus, PutMessage};
use tracing::warn;

use super::clock::{self, now_millis};
use super::Broker;
use crate::config_file::StateFile;
use crate::error::Result;

pub const SCHEDULE_TOPIC: &str = "SCHEDULE_TOPIC_XXXX";

/// The delay of each level, parsed from `messageDelayLevel` ("1s 5s 10s ... 2h").
#[derive(Debug, Clone, PartialEq)]
pub struct DelayLevels(Vec<Duration>);

impl DelayLevels {
    pub fn parse(text: &str) -> std::result::Result<DelayLevels, String> {
        let mut delays = Vec::new();
        for word in text.split_whitespace() {
            let (number, unit) = word.split_at(word.len() - 1);
            let seconds = match unit {
                "s" => 1,
                "m" => 60,
                "h" => 3600,
                "d" => 86_400,
                _ => return Err(format!("unknown unit in delay level {word:?}")),
            };
            let count: u64 = number
                .parse()
                .map_err(|_| format!("bad delay level {word:?}"))?;
            delays.push(Duration::from_secs(count * seconds));
        }
        if delays.is_empty() {
            return Err("no delay levels".into());
        }
        Ok(DelayLevels(delays))
    }

    pub fn max_level(&self) -> i32 {
        self.0.len() as i32
    }

    /// The delay of a 1-based level.
    pub fn delay(&self, level: i32) -> Option<Duration> {
        self.0
            .get(usize::try_from(level).ok()?.checked_sub(1)?)
            .copied()
    }
}

/// Sends a message with a positive `DELAY` through the schedule topic; returns whether it
/// did. Only plain and committed messages wait (a half message is never delayed).
pub fn defer(put: &mut PutMessage, levels: &DelayLevels) -> bool {
    let Some(level) = put
        .message
        .properties
        .get(property::DELAY)
        .and_then(|text| text.trim().parse::<i32>().ok())
        .filter(|level| *level > 0)
    else {
        return false;
    };
    if !matches!(
        sysflag::transaction_type(put.sys_flag),
        sysflag::TRANSACTION_NOT_TYPE | sysflag::TRANSACTION_COMMIT
    ) {
        return false;
    }
    let level = level.min(levels.max_level());
    let real_topic = std::mem::replace(&mut put.message.topic, SCHEDULE_TOPIC.into());
    put.message
        .properties
        .insert(property::DELAY, level.to_string());
    put.message
        .properties
        .insert(property::REAL_TOPIC, real_topic);
    put.message
        .properties
        .insert(property::REAL_QID, put.queue_id.to_string());
    put.queue_id = level - 1;
    true
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct OffsetFile {
    /// Delay level (1-based, as RocketMQ keys it) -> next schedule-queue offset to deliver.
    offset_table: BTreeMap<i32, i64>,
}

/// Delivery progress of every level.
pub struct Schedule {
    file: StateFile,
    offsets: Mutex<OffsetFile>,
    /// CommitLog end of the last re-put: progress is persisted only once the store has
    /// flushed past it, so a crash cannot record a delivery whose copy was lost.
    pending_end: Mutex<Option<u64>>,
}

impl Schedule {
    pub fn open(path: PathBuf) -> Result<Schedule> {
        let file = StateFile::new(path);
        Ok(Schedule {
            offsets: Mutex::new(file.load()?.unwrap_or_default()),
            file,
            pending_end: Mutex::new(None),
        })
    }

    /// How far each level has delivered, as GET_ALL_DELAY_OFFSET answers it.
    pub fn table(&self) -> BTreeMap<i32, i64> {
        self.offsets.lock().offset_table.clone()
    }

    /// Takes the progress a replicated group's leader has made (a follower's own loop does
    /// not run); written at the next persist.
    pub fn adopt(&self, leader: BTreeMap<i32, i64>) {
        let mut offsets = self.offsets.lock();
        if offsets.offset_table != leader {
            offsets.offset_table = leader;
            self.file.note_change();
        }
    }

    /// Writes the progress when the store has flushed every re-put it covers.
    pub fn persist(&self, flushed: u64) -> Result<()> {
        let offsets = self.offsets.lock();
        {
            let mut pending = self.pending_end.lock();
            match *pending {
                Some(end) if flushed < end => return Ok(()),
                _ => *pending = None,
            }
        }
        self.file.save(offsets)
    }
}

/// Runs the timer until the broker stops.
pub fn spawn(broker: Arc<Broker>) {
    clock::spawn_rounds(
        broker,
        |broker| async move {
            for level in 1..=broker.delay_levels.max_level() {
                deliver_due(&broker, level).await;
            }
        },
        |broker, flushed| broker.schedule.persist(flushed),
        "cannot persist delay offsets",
    );
}

/// Re-puts every message of `level` whose time has come, in queue order.
async fn deliver_due(broker: &Broker, level: i32) {
    let Some(delay) = broker.delay_levels.delay(level) else {
        return;
    };
    let queue_id = level - 1;
    let store = &broker.store;
    let mut offset = broker
        .schedule
        .offsets
        .lock()
        .offset_table
        .get(&level)
        .copied()
        .unwrap_or(0);
    if offset >= store.max_offset(SCHEDULE_TOPIC, queue_id) {
        return;
    }
    loop {
        let result = store.get_message(SCHEDULE_TOPIC, queue_id, offset, 32, 1 << 20, None);
        match result.status {
            GetMessageStatus::Found => {}
            // Retention removed the oldest entries: continue from what is left.
            GetMessageStatus::OffsetTooSmall => {
                offset = result.next_begin_offset;
                continue;
            }
            _ => break,
        }
        let now = now_millis();
        for (bytes, queue_offset) in result.messages.iter().zip(&result.queue_offsets) {
            let Ok(stored) = StoredMessage::parse(bytes) else {
                offset = queue_offset + 1;
                continue;
            };
            let mut due = stored.store_timestamp() + delay.as_millis() as i64;
            // A store time in the future (clock moved back) must not hold a message longer
            // than its delay from now.
            due = due.min(now + delay.as_millis() as i64);
            if due > now {
                save(broker, level, offset);
                return;
            }
            match time_up(broker, &stored) {
                Some(put) => match broker.append(std::slice::from_ref(&put)) {
                    Ok(appended) => {
                        let _ = appended.durable.await;
                        *broker.schedule.pending_end.lock() = Some(appended.end_offset);
                    }
                    Err(error) => {
                        warn!(%error, level, offset = queue_offset, "delayed message not delivered yet");
                        save(broker, level, offset);
                        return;
                    }
                },
                None => warn!(
                    level,
                    offset = queue_offset,
                    "delayed message without a real topic dropped"
                ),
            }
            offset = queue_offset + 1;
        }
        save(broker, level, offset);
        if offset >= result.next_begin_offset && result.messages.len() < 32 {
            break;
        }
        offset = offset.max(result.next_begin_offset);
    }
    save(broker, level, offset);
}

fn save(broker: &Broker, level: i32, offset: i64) {
    let mut offsets = broker.schedule.offsets.lock();
    if offsets.offset_table.get(&level) != Some(&offset) {
        offsets.offset_table.insert(level, offset);
        broker.schedule.file.note_change();
    }
}

/// The message as it goes to its real topic (`messageTimeUp`): same body, flag, sysflag,
/// born time and host and reconsume count; DELAY removed; nobody waits for this store.
fn time_up(broker: &Broker, stored: &StoredMessage<'_>) -> Option<PutMessage> {
    let mut message = stored.to_message().ok()?;
    let topic = message.properties.get(property::REAL_TOPIC)?.to_string();
    let queue_id: i32 = message.properties.get(property::REAL_QID)?.parse().ok()?;
    message.topic = topic.into();
    message.properties.remove(property::DELAY);
    message.properties.insert(property::WAIT, "false");
    Some(PutMessage {
        sys_flag: stored.sys_flag(),
        born_timestamp: stored.born_timestamp(),
        reconsume_times: stored.reconsume_times(),
        ..PutMessage::new(message, queue_id, stored.born_host(), broker.store_host)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use message::Message;

    #[test]
    fn levels_parse_rocketmq_units() {
        let levels =
            DelayLevels::parse("1s 5s 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m 20m 30m 1h 2h")
                .unwrap();
        assert_eq!(levels.max_level(), 18);
        assert_eq!(levels.delay(3), Some(Duration::from_secs(10)));
        assert_eq!(levels.delay(18), Some(Duration::from_secs(7200)));
        assert_eq!(levels.delay(0), None);
        assert_eq!(levels.delay(19), None);
        assert!(DelayLevels::parse("1x").is_err());
        assert!(DelayLevels::parse("").is_err());
    }

    #[test]
    fn a_delay_goes_through_the_schedule_topic() {
        let levels = DelayLevels::parse("1s 5s 10s").unwrap();
        let host = ([127, 0, 0, 1], 1).into();
        let mut message = Message::new("Orders", "b");
        message.properties.insert(property::DELAY, "7");
        let mut put = PutMessage::new(message, 2, host, host);
        assert!(defer(&mut put, &levels));
        assert_eq!(put.message.topic, SCHEDULE_TOPIC);
        assert_eq!(put.queue_id, 2, "level clamped to 3, queue 2");
        assert_eq!(
            put.message.properties.get(property::REAL_TOPIC),
            Some("Orders")
        );
        assert_eq!(put.message.properties.get(property::REAL_QID), Some("2"));

        let mut plain = PutMessage::new(Message::new("Orders", "b"), 0, host, host);
        assert!(!defer(&mut plain, &levels));
        let mut half = PutMessage::new(Message::new("Orders", "b"), 0, host, host);
        half.message.properties.insert(property::DELAY, "1");
        half.sys_flag = sysflag::TRANSACTION_PREPARED;
        assert!(!defer(&mut half, &levels));
    }
}
