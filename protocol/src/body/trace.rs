//! Message-trace records, as traced clients write them to the trace topic
//! (`RMQ_SYS_TRACE_TOPIC`). Not JSON: a UTF-8 text of records, each ending in `\u{2}`, whose
//! fields are separated by `\u{1}`; a trace message's keys are the traced message ids, so
//! the key index finds them. Field order per type follows the Java client's
//! `TraceDataEncoder` (4.9 and 5.x write the same, 5.x appends two fields to `SubAfter`).

/// Ends a record.
const RECORD_END: char = '\u{2}';
/// Separates a record's fields.
const FIELD: char = '\u{1}';

/// What a record traces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceKind {
    /// A send, written by the producer.
    Pub,
    /// A delivery handed to the listener.
    SubBefore,
    /// The listener's answer.
    SubAfter,
    /// A transaction's commit or rollback.
    EndTransaction,
    /// A recalled (5.x) message.
    Recall,
}

/// One traced message's part of a record. Fields a type does not carry are empty, zero or
/// `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceRecord {
    pub kind: TraceKind,
    pub msg_id: String,
    /// Milliseconds since the epoch; `SubAfter` has one only from 5.x clients.
    pub timestamp: Option<i64>,
    /// Producer or consumer group; `SubAfter` has one only from 5.x clients.
    pub group: String,
    pub topic: String,
    pub keys: String,
    pub cost_ms: Option<i64>,
    /// `None` for types that carry no outcome (`SubBefore`, `EndTransaction`).
    pub success: Option<bool>,
    /// `EndTransaction`'s decision: COMMIT_MESSAGE, ROLLBACK_MESSAGE or UNKNOW.
    pub transaction_state: String,
}

/// The records of a trace message's body that trace `msg_id` (all of them with `None`).
/// Records of unknown types, or too short for their type, are skipped: trace topics are
/// written by many client versions, and one odd record must not hide the others.
pub fn decode(body: &[u8], msg_id: Option<&str>) -> Vec<TraceRecord> {
    let text = String::from_utf8_lossy(body);
    text.split(RECORD_END)
        .filter_map(|record| parse(&record.split(FIELD).collect::<Vec<_>>()))
        .filter(|record| msg_id.is_none_or(|id| record.msg_id == id))
        .collect()
}

fn parse(fields: &[&str]) -> Option<TraceRecord> {
    let at = |i: usize| fields.get(i).map(|f| f.to_string()).unwrap_or_default();
    let number = |i: usize| fields.get(i).and_then(|f| f.parse::<i64>().ok());
    let flag = |i: usize| fields.get(i).and_then(|f| f.parse::<bool>().ok());
    let base = |kind, msg_id: usize, needed: usize| {
        (fields.len() >= needed).then(|| TraceRecord {
            kind,
            msg_id: at(msg_id),
            timestamp: None,
            group: String::new(),
            topic: String::new(),
            keys: String::new(),
            cost_ms: None,
            success: None,
            transaction_state: String::new(),
        })
    };
    // Fields: type, timestamp, region, group, then per type.
    let record = match *fields.first()? {
        // topic, msgId, tags, keys, storeHost, bodyLength, costTime, msgType, offsetMsgId,
        // success
        "Pub" => TraceRecord {
            timestamp: number(1),
            group: at(3),
            topic: at(4),
            keys: at(7),
            cost_ms: number(10),
            // Clients before 4.4 wrote no outcome; a stored send was a success.
            success: Some(flag(13).unwrap_or(true)),
            ..base(TraceKind::Pub, 5, 13)?
        },
        // requestId, msgId, retryTimes, keys
        "SubBefore" => TraceRecord {
            timestamp: number(1),
            group: at(3),
            keys: at(7),
            ..base(TraceKind::SubBefore, 5, 8)?
        },
        // type, requestId, msgId, costTime, success, keys, contextCode, then from 5.x
        // timestamp and group
        "SubAfter" => TraceRecord {
            cost_ms: number(3),
            success: flag(4),
            keys: at(5),
            timestamp: number(7),
            group: at(8),
            ..base(TraceKind::SubAfter, 2, 6)?
        },
        // topic, msgId, tags, keys, storeHost, msgType, transactionId, transactionState,
        // fromTransactionCheck
        "EndTransaction" => TraceRecord {
            timestamp: number(1),
            group: at(3),
            topic: at(4),
            keys: at(7),
            transaction_state: at(11),
            ..base(TraceKind::EndTransaction, 5, 12)?
        },
        // topic, msgId, success
        "Recall" => TraceRecord {
            timestamp: number(1),
            group: at(3),
            topic: at(4),
            success: flag(6),
            ..base(TraceKind::Recall, 5, 7)?
        },
        _ => return None,
    };
    Some(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(fields: &[&str]) -> String {
        format!("{}{RECORD_END}", fields.join(&FIELD.to_string()))
    }

    #[test]
    fn decodes_each_type_and_keeps_the_asked_message() {
        let body = [
            record(&[
                "Pub",
                "1700000000000",
                "DefaultRegion",
                "pg",
                "T",
                "ID1",
                "TagA",
                "k1",
                "10.0.0.1:10911",
                "5",
                "12",
                "0",
                "OFF1",
                "true",
            ]),
            record(&[
                "Pub",
                "1700000000001",
                "DefaultRegion",
                "pg",
                "T",
                "ID2",
                "TagA",
                "k2",
                "10.0.0.1:10911",
                "5",
                "3",
                "0",
                "OFF2",
                "false",
            ]),
            record(&[
                "SubBefore",
                "1700000000100",
                "DefaultRegion",
                "cg",
                "req",
                "ID1",
                "0",
                "k1",
            ]),
            record(&[
                "SubAfter",
                "req",
                "ID1",
                "7",
                "true",
                "k1",
                "0",
                "1700000000107",
                "cg",
            ]),
            record(&[
                "EndTransaction",
                "1700000000002",
                "DefaultRegion",
                "pg",
                "T",
                "ID1",
                "TagA",
                "k1",
                "10.0.0.1:10911",
                "1",
                "tx",
                "COMMIT_MESSAGE",
                "false",
            ]),
            record(&["Nonsense", "1"]),
            record(&["Pub", "too", "short"]),
        ]
        .concat();
        let all = decode(body.as_bytes(), None);
        assert_eq!(all.len(), 5);
        let of_one = decode(body.as_bytes(), Some("ID1"));
        let kinds: Vec<_> = of_one.iter().map(|r| r.kind).collect();
        assert_eq!(
            kinds,
            [
                TraceKind::Pub,
                TraceKind::SubBefore,
                TraceKind::SubAfter,
                TraceKind::EndTransaction
            ]
        );
        let sent = &of_one[0];
        assert_eq!(
            (
                sent.group.as_str(),
                sent.cost_ms,
                sent.success,
                sent.timestamp
            ),
            ("pg", Some(12), Some(true), Some(1_700_000_000_000))
        );
        let consumed = &of_one[2];
        assert_eq!(
            (consumed.group.as_str(), consumed.cost_ms, consumed.success),
            ("cg", Some(7), Some(true))
        );
        assert_eq!(of_one[3].transaction_state, "COMMIT_MESSAGE");
        assert_eq!(decode(body.as_bytes(), Some("ID2"))[0].success, Some(false));
    }

    #[test]
    fn a_4_9_sub_after_has_no_group_or_time() {
        let body = record(&["SubAfter", "req", "ID1", "7", "false", "k1", "0"]);
        let after = &decode(body.as_bytes(), Some("ID1"))[0];
        assert_eq!((after.timestamp, after.group.as_str()), (None, ""));
        assert_eq!(after.success, Some(false));
    }
}
