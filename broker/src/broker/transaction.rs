//! Transactional messages (RocketMQ's TransactionalMessageService). A send with the
//! PREPARED sysflag is stored as a *half message* in `RMQ_SYS_TRANS_HALF_TOPIC`, queue 0,
//! with its real topic and queue in properties, where no consumer sees it. END_TRANSACTION
//! commits it (the message is put again, to its real topic) or rolls it back; either way
//! an *op record* naming the half message goes to `RMQ_SYS_TRANS_OP_HALF_TOPIC`, which is
//! what makes the decision survive a restart. Half messages left undecided past
//! `transactionTimeOut` are checked: re-appended with one more check counted, and
//! CHECK_TRANSACTION_STATE goes to a live producer of their group, whose answer is an
//! END_TRANSACTION. After `transactionCheckMax` checks the message moves to
//! `TRANS_CHECK_MAX_TIME_TOPIC`.
//!
//! A decision is applied once: decisions are kept by transaction id (the half message's
//! UNIQ_KEY, the same in every re-appended copy) while copies may still be checked, and a
//! commit first looks in the key index for a committed copy, which covers a broker that
//! stopped between the commit's put and its op record.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use message::{property, sysflag, Message, StoredMessage};
use parking_lot::Mutex;
use protocol::header::CheckTransactionStateRequestHeader;
use protocol::{RemotingCommand, RequestCode, ResponseCode};
use serde::{Deserialize, Serialize};
use store::{GetMessageStatus, PutMessage};
use tracing::{debug, warn};

use super::clock::now_millis;
use super::processor::Refusal;
use super::schedule::{self, SCHEDULE_TOPIC};
use super::Broker;
use crate::config_file::StateFile;
use crate::error::Result;

pub const HALF_TOPIC: &str = "RMQ_SYS_TRANS_HALF_TOPIC";
pub const OP_TOPIC: &str = "RMQ_SYS_TRANS_OP_HALF_TOPIC";
pub const CHECK_MAX_TOPIC: &str = "TRANS_CHECK_MAX_TIME_TOPIC";
/// The op records' tag (`TransactionalMessageUtil.REMOVE_TAG`).
const REMOVE_TAG: &str = "d";
/// Half and op messages read per store call.
const BATCH: usize = 32;

/// Stores the message as a half message (`parseHalfMessageInner`).
pub fn prepare(put: &mut PutMessage) {
    let real_topic = std::mem::replace(&mut put.message.topic, HALF_TOPIC.into());
    let properties = &mut put.message.properties;
    properties.insert(property::REAL_TOPIC, real_topic);
    properties.insert(property::REAL_QID, put.queue_id.to_string());
    if let Some(id) = put.message.unique_key().map(str::to_string) {
        put.message.properties.insert(property::TRANSACTION_ID, id);
    }
    put.queue_id = 0;
    put.sys_flag = (put.sys_flag & !sysflag::TRANSACTION_TYPE_MASK) | sysflag::TRANSACTION_NOT_TYPE;
}

/// What END_TRANSACTION asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Commit,
    Rollback,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Progress {
    /// Half-queue offset the checker resumes from: everything before it is decided,
    /// discarded or re-appended.
    half_offset: i64,
    /// Op-queue offset from which the op records still matter (those naming transactions
    /// whose copies may not all be checked yet); read again at start.
    op_offset: i64,
}

/// A decided transaction, remembered until the checker has passed every copy of it.
#[derive(Debug, Clone, Copy)]
struct Decided {
    /// Every half copy of this transaction is below this queue offset.
    half_end: i64,
    /// Its op record's queue offset.
    op_offset: i64,
}

#[derive(Default)]
struct State {
    progress: Progress,
    decided: HashMap<String, Decided>,
    /// One past the newest half message or copy appended (the consume queue may lag the
    /// append).
    half_end: i64,
}

pub struct Transactions {
    file: StateFile,
    state: Mutex<State>,
    /// CommitLog end of the newest re-append or op record: progress is persisted only once
    /// the store has flushed past it, so a crash cannot record a step whose write was lost.
    pending_end: Mutex<Option<u64>>,
}

/// The transaction id of a half message: `__transactionId__`, else its UNIQ_KEY.
fn transaction_id(message: &Message) -> Option<String> {
    message
        .properties
        .get(property::TRANSACTION_ID)
        .or_else(|| message.unique_key())
        .map(str::to_string)
}

impl Transactions {
    /// Loads the checker's progress and the decisions it still needs from the op queue.
    pub fn open(path: PathBuf, store: &store::MessageStore) -> Result<Transactions> {
        let file = StateFile::new(path);
        let progress: Progress = file.load()?.unwrap_or_default();
        let half_end = store.max_offset(HALF_TOPIC, 0);
        let mut decided = HashMap::new();
        let mut offset = progress.op_offset.max(store.min_offset(OP_TOPIC, 0));
        while offset < store.max_offset(OP_TOPIC, 0) {
            let result = store.get_message(OP_TOPIC, 0, offset, BATCH, 1 << 20, None);
            if result.status != GetMessageStatus::Found {
                break;
            }
            for (bytes, op_offset) in result.messages.iter().zip(&result.queue_offsets) {
                let id = StoredMessage::parse(bytes)
                    .ok()
                    .and_then(|stored| stored.to_message().ok())
                    .and_then(|op| {
                        op.properties
                            .get(property::TRANSACTION_ID)
                            .map(String::from)
                    });
                if let Some(id) = id {
                    decided.insert(
                        id,
                        Decided {
                            half_end,
                            op_offset: *op_offset,
                        },
                    );
                }
            }
            offset = result.next_begin_offset;
        }
        Ok(Transactions {
            file,
            state: Mutex::new(State {
                progress,
                decided,
                half_end,
            }),
            pending_end: Mutex::new(None),
        })
    }

    /// Notes a half message appended at `queue_offset` by a send.
    pub fn half_appended(&self, queue_offset: i64) {
        let mut state = self.state.lock();
        state.half_end = state.half_end.max(queue_offset + 1);
    }

    fn note_write(&self, end: u64) {
        let mut pending = self.pending_end.lock();
        *pending = Some(pending.map_or(end, |old| old.max(end)));
    }

    /// Writes the progress when the store has flushed every write it covers.
    pub fn persist(&self, flushed: u64) -> Result<()> {
        {
            let mut pending = self.pending_end.lock();
            match *pending {
                Some(end) if flushed < end => return Ok(()),
                _ => *pending = None,
            }
        }
        let state = self.state.lock();
        self.file
            .save(parking_lot::MutexGuard::map(state, |s| &mut s.progress))
    }

    /// Moves the checker past `half_offset`. `op_end` is the op queue's max offset, read
    /// before: a decision not yet in the map writes its op record at or after it.
    fn advance(&self, half_offset: i64, op_end: i64) {
        let mut state = self.state.lock();
        if half_offset <= state.progress.half_offset {
            return;
        }
        state.progress.half_offset = half_offset;
        // Decisions whose every copy is now behind the checker are no longer needed.
        state
            .decided
            .retain(|_, decided| decided.half_end > half_offset);
        let op_offset = state
            .decided
            .values()
            .map(|decided| decided.op_offset)
            .min()
            .unwrap_or(op_end);
        state.progress.op_offset = state.progress.op_offset.max(op_offset);
        self.file.note_change();
    }
}

/// Why a decision cannot be applied: SYSTEM_ERROR, as Apache answers.
fn refused(reason: impl Into<String>) -> Refusal {
    Refusal(ResponseCode::SystemError, reason.into())
}

impl From<store::Error> for Refusal {
    fn from(error: store::Error) -> Refusal {
        refused(error.to_string())
    }
}

/// Applies END_TRANSACTION's decision on the half message at `commit_log_offset`, once.
/// Returns whether this call applied it (false: it had been applied already).
pub async fn decide(
    broker: &Broker,
    producer_group: &str,
    commit_log_offset: i64,
    queue_offset: i64,
    decision: Decision,
) -> std::result::Result<bool, Refusal> {
    let not_found = || refused("find prepared transaction message failed");
    let bytes = u64::try_from(commit_log_offset)
        .ok()
        .and_then(|offset| broker.store.message_at(offset))
        .ok_or_else(not_found)?;
    let stored = StoredMessage::parse(&bytes).map_err(|_| not_found())?;
    let half = stored.to_message().map_err(|_| not_found())?;
    if half.topic != HALF_TOPIC {
        return Err(refused(format!(
            "the message at {commit_log_offset} is in {}, not a half message",
            half.topic
        )));
    }
    if half.properties.get(property::PGROUP) != Some(producer_group) {
        return Err(refused(format!(
            "the producer group {producer_group} is not the message's {:?}",
            half.properties.get(property::PGROUP)
        )));
    }
    if stored.queue_offset() != queue_offset {
        return Err(refused(format!(
            "tranStateTableOffset {queue_offset} is not the message's {}",
            stored.queue_offset()
        )));
    }
    let id = transaction_id(&half).ok_or_else(not_found)?;
    let transactions = &broker.transactions;
    {
        let mut state = transactions.state.lock();
        if state.decided.contains_key(&id) {
            return Ok(false);
        }
        let half_end = state.half_end.max(broker.store.max_offset(HALF_TOPIC, 0));
        // op_offset is corrected once the op record is written; until then nothing prunes
        // the op queue past it.
        let op_offset = state.progress.op_offset;
        state.decided.insert(
            id.clone(),
            Decided {
                half_end,
                op_offset,
            },
        );
    }
    let topic = half
        .properties
        .get(property::REAL_TOPIC)
        .unwrap_or_default()
        .to_string();
    let applied = apply(broker, &stored, half, &id, decision).await;
    match applied {
        Ok(()) => broker
            .metrics
            .record_transaction_end(&topic, decision == Decision::Commit),
        // Not applied: the producer's next answer to a check may try again.
        Err(_) => {
            transactions.state.lock().decided.remove(&id);
        }
    }
    applied.map(|()| true)
}

/// The commit's put (unless a committed copy exists already) and the op record.
async fn apply(
    broker: &Broker,
    stored: &StoredMessage<'_>,
    half: Message,
    id: &str,
    decision: Decision,
) -> std::result::Result<(), Refusal> {
    if decision == Decision::Commit && !already_committed(broker, &half) {
        let put = committed(broker, stored, half)?;
        put_durably(broker, &put).await?;
    }
    let op_offset = write_op(broker, stored, id).await?;
    if let Some(decided) = broker.transactions.state.lock().decided.get_mut(id) {
        decided.op_offset = op_offset;
    }
    Ok(())
}

/// Appends one message and waits until it is as durable as `flushDiskType` makes sends;
/// returns where it went.
async fn put_durably(broker: &Broker, put: &PutMessage) -> store::Result<store::AppendedMessage> {
    let appended = broker.append(std::slice::from_ref(put))?;
    appended.durable.await?;
    broker.transactions.note_write(appended.end_offset);
    appended
        .messages
        .into_iter()
        .next()
        .ok_or(store::Error::NotAvailable("nothing appended"))
}

/// Writes the op record that marks the half message decided; returns its queue offset.
/// The body is the half message's queue offset, as Apache writes it; the transaction id
/// lets a restarted broker know the decision without reading the half message again.
async fn write_op(broker: &Broker, stored: &StoredMessage<'_>, id: &str) -> store::Result<i64> {
    let mut op = Message::new(OP_TOPIC, stored.queue_offset().to_string());
    op.set_tags(REMOVE_TAG);
    op.properties.insert(property::TRANSACTION_ID, id);
    let put = PutMessage::new(op, 0, stored.store_host(), broker.store_host);
    Ok(put_durably(broker, &put).await?.queue_offset)
}

/// Whether the real topic (or the schedule topic, for a delayed message) holds a committed
/// copy of this transaction already: a broker stopped between a commit's put and its op
/// record is asked again, and the answer must not deliver the message twice.
fn already_committed(broker: &Broker, half: &Message) -> bool {
    let (Some(topic), Some(key)) = (half.properties.get(property::REAL_TOPIC), half.unique_key())
    else {
        return false;
    };
    [topic, SCHEDULE_TOPIC].iter().any(|topic| {
        broker
            .store
            .query_by_key(topic, key, 32, 0, i64::MAX)
            .messages
            .iter()
            .filter_map(|bytes| StoredMessage::parse(bytes).ok())
            .any(|copy| {
                sysflag::transaction_type(copy.sys_flag()) == sysflag::TRANSACTION_COMMIT
                    && copy
                        .properties()
                        .is_ok_and(|p| p.get(property::UNIQ_KEY) == Some(key))
            })
    })
}

/// The half message as it goes to its real topic and queue (`endMessageTransaction`).
fn committed(
    broker: &Broker,
    stored: &StoredMessage<'_>,
    mut message: Message,
) -> std::result::Result<PutMessage, Refusal> {
    let topic = message
        .properties
        .remove(property::REAL_TOPIC)
        .ok_or_else(|| refused("the half message has no REAL_TOPIC"))?;
    let queue_id = message
        .properties
        .remove(property::REAL_QID)
        .and_then(|q| q.parse().ok())
        .unwrap_or(0);
    message.topic = topic.into();
    message.properties.remove(property::TRAN_MSG);
    message.properties.remove(property::TRANSACTION_CHECK_TIMES);
    message.properties.insert(
        property::TRAN_PREPARED_QUEUE_OFFSET,
        stored.queue_offset().to_string(),
    );
    let mut put = PutMessage {
        sys_flag: (stored.sys_flag() & !sysflag::TRANSACTION_TYPE_MASK)
            | sysflag::TRANSACTION_COMMIT,
        born_timestamp: stored.born_timestamp(),
        reconsume_times: stored.reconsume_times(),
        prepared_transaction_offset: stored.physical_offset(),
        ..PutMessage::new(message, queue_id, stored.born_host(), broker.store_host)
    };
    schedule::defer(&mut put, &broker.delay_levels);
    Ok(put)
}

/// Runs the checker every `transactionCheckInterval` until the broker stops.
pub fn spawn(broker: Arc<Broker>) {
    tokio::spawn(async move {
        let every = Duration::from_millis(broker.config.transaction_check_interval.max(100));
        let mut ticker = tokio::time::interval(every);
        loop {
            tokio::select! {
                _ = broker.stopping.cancelled() => return,
                _ = ticker.tick() => {}
            }
            // A replica that does not lead its group writes nothing.
            if !broker.writes_here() {
                continue;
            }
            if let Err(error) = check(&broker).await {
                warn!(%error, "transaction check stopped early");
            }
            if let Err(error) = broker
                .transactions
                .persist(broker.store.commit_log_flushed_offset())
            {
                warn!(%error, "cannot persist transaction check progress");
            }
        }
    });
}

/// One round over the undecided half messages, oldest first. The checker's progress moves
/// once, at the end: moving it prunes the decisions, which is work over all of them.
async fn check(broker: &Broker) -> Result<()> {
    let mut reached = broker.transactions.state.lock().progress.half_offset;
    let round = check_from(broker, &mut reached).await;
    let op_end = broker.store.max_offset(OP_TOPIC, 0);
    broker.transactions.advance(reached, op_end);
    round
}

/// The round itself, from `reached`, which it moves past each half message it is done with.
async fn check_from(broker: &Broker, reached: &mut i64) -> Result<()> {
    let store = &broker.store;
    let started = now_millis();
    let config = &broker.config;
    let timeout = config.transaction_time_out as i64;
    let reserved = config_file_reserved_ms(broker);
    let mut offset = *reached;
    let end = store.max_offset(HALF_TOPIC, 0);
    while offset < end {
        let result = store.get_message(HALF_TOPIC, 0, offset, BATCH, 1 << 20, None);
        match result.status {
            GetMessageStatus::Found => {}
            // Retention removed the oldest: go on from what is left.
            GetMessageStatus::OffsetTooSmall => {
                offset = result.next_begin_offset;
                *reached = offset;
                continue;
            }
            _ => break,
        }
        for (bytes, queue_offset) in result.messages.iter().zip(&result.queue_offsets) {
            if *queue_offset >= end {
                return Ok(());
            }
            let parsed = StoredMessage::parse(bytes);
            let half = parsed.as_ref().ok().and_then(|s| s.to_message().ok());
            let (Ok(stored), Some(half)) = (parsed, half) else {
                *reached = queue_offset + 1;
                continue;
            };
            let Some(id) = transaction_id(&half) else {
                *reached = queue_offset + 1;
                continue;
            };
            if broker.transactions.state.lock().decided.contains_key(&id) {
                *reached = queue_offset + 1;
                continue;
            }
            if stored.store_timestamp() > started {
                return Ok(());
            }
            let checks: u32 = half
                .properties
                .get(property::TRANSACTION_CHECK_TIMES)
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            let age = now_millis() - stored.born_timestamp();
            if checks >= config.transaction_check_max || age > reserved {
                discard(broker, &stored, half, &id, checks).await?;
                *reached = queue_offset + 1;
                continue;
            }
            let immunity = half
                .properties
                .get(property::CHECK_IMMUNITY_TIME_IN_SECONDS)
                .and_then(|s| s.parse::<i64>().ok())
                .map_or(timeout, |seconds| (seconds * 1000).max(timeout));
            if age <= immunity {
                // Younger ones follow: this round is done.
                return Ok(());
            }
            ask_producer(broker, &stored, half, &id, checks).await?;
            *reached = queue_offset + 1;
        }
        offset = result.next_begin_offset;
    }
    Ok(())
}

fn config_file_reserved_ms(broker: &Broker) -> i64 {
    (broker.store.config().file_reserved_time as i64).saturating_mul(3_600_000)
}

/// Re-appends the half message, then sends CHECK_TRANSACTION_STATE with the copy's offsets
/// to one live producer of its group, counting the check. With no producer of the group
/// online the copy keeps its count: Apache counts that round too, so a producer fleet down
/// for `transactionCheckMax` rounds has its open transactions given up; Rocketry waits for
/// a producer (or for retention, `fileReservedTime`).
async fn ask_producer(
    broker: &Broker,
    stored: &StoredMessage<'_>,
    mut half: Message,
    id: &str,
    checks: u32,
) -> Result<()> {
    let group = half.properties.get(property::PGROUP).map(str::to_string);
    let producers = group
        .as_deref()
        .map(|group| broker.clients.producer_group(group))
        .unwrap_or_default();
    let checks = if producers.is_empty() {
        checks
    } else {
        checks + 1
    };
    half.properties
        .insert(property::TRANSACTION_CHECK_TIMES, checks.to_string());
    let put = PutMessage {
        sys_flag: stored.sys_flag(),
        born_timestamp: stored.born_timestamp(),
        reconsume_times: stored.reconsume_times(),
        ..PutMessage::new(half, 0, stored.born_host(), broker.store_host)
    };
    let appended = {
        // Under the lock, so a decision that arrives meanwhile sees this copy in half_end.
        let mut state = broker.transactions.state.lock();
        if state.decided.contains_key(id) {
            return Ok(());
        }
        let appended = broker.append(std::slice::from_ref(&put))?;
        if let Some(copy) = appended.messages.first() {
            state.half_end = state.half_end.max(copy.queue_offset + 1);
        }
        appended
    };
    appended.durable.await?;
    broker.transactions.note_write(appended.end_offset);
    let Some(copy) = appended.messages.first() else {
        return Ok(());
    };
    let Some(producer) = producers.get(checks as usize % producers.len().max(1)) else {
        debug!(
            transaction = id,
            ?group,
            "no producer of the group online to check with"
        );
        return Ok(());
    };
    let Some(body) = broker
        .store
        .message_at(copy.physical_offset)
        .and_then(|bytes| check_body(&bytes))
    else {
        return Ok(());
    };
    let header = CheckTransactionStateRequestHeader {
        tran_state_table_offset: copy.queue_offset,
        commit_log_offset: copy.physical_offset as i64,
        msg_id: Some(id.to_string()),
        transaction_id: Some(id.to_string()),
        offset_msg_id: Some(message::offset_message_id(
            broker.store_host,
            copy.physical_offset as i64,
        )),
        topic: None,
        broker_name: Some(broker.config.broker_name.clone()),
    };
    let mut request =
        RemotingCommand::request(RequestCode::CheckTransactionState, &header).with_body(body);
    request.mark_oneway();
    producer.channel.send_request(request);
    Ok(())
}

/// The copy as the producer's checker sees it: with its real topic and queue back, and the
/// copy's offsets, as Apache's `sendCheckMessage` encodes it.
fn check_body(copy: &[u8]) -> Option<Vec<u8>> {
    let stored = StoredMessage::parse(copy).ok()?;
    let properties = stored.properties().ok()?;
    let topic = properties.get(property::REAL_TOPIC)?;
    let queue_id = properties.get(property::REAL_QID)?.parse().ok()?;
    let encoded = properties.encode();
    let fields = message::RecordFields {
        queue_id,
        flag: stored.flag(),
        sys_flag: stored.sys_flag(),
        born_timestamp: stored.born_timestamp(),
        born_host: stored.born_host(),
        store_host: stored.store_host(),
        reconsume_times: stored.reconsume_times(),
        prepared_transaction_offset: stored.prepared_transaction_offset(),
    };
    let record = message::RecordEncoder::new(topic, stored.body(), &encoded, fields).ok()?;
    Some(record.encode(
        stored.queue_offset(),
        stored.physical_offset(),
        stored.store_timestamp(),
    ))
}

/// Gives up on a half message checked `transactionCheckMax` times (or older than the
/// retention): it goes to TRANS_CHECK_MAX_TIME_TOPIC, as Apache 4.6+ does, and is decided.
async fn discard(
    broker: &Broker,
    stored: &StoredMessage<'_>,
    mut half: Message,
    id: &str,
    checks: u32,
) -> Result<()> {
    warn!(
        transaction = id,
        checks, "transaction undecided after its checks: discarded"
    );
    half.topic = CHECK_MAX_TOPIC.into();
    let put = PutMessage {
        sys_flag: stored.sys_flag(),
        born_timestamp: stored.born_timestamp(),
        ..PutMessage::new(half, 0, stored.born_host(), broker.store_host)
    };
    put_durably(broker, &put).await?;
    let op_offset = write_op(broker, stored, id).await?;
    let mut state = broker.transactions.state.lock();
    let half_end = state.half_end;
    state.decided.insert(
        id.to_string(),
        Decided {
            half_end,
            op_offset,
        },
    );
    Ok(())
}
