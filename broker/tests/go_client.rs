//! The Apache RocketMQ Go client (github.com/apache/rocketmq-client-go/v2, through
//! tests/go-harness) against a fresh `rocketry standalone`, and the same scenarios against
//! the Apache RocketMQ peer when `ROCKETRY_PEER_ROCKETMQ_NAMESRV` is set: sync, async and
//! oneway sends, push and pull consumers, tag and SQL92 filters, orderly consumption, a delay
//! level, retries into the dead-letter queue, queries by key, and transactions with
//! check-back.
//!
//! The Go client has no query API (its QUERY_MESSAGE and VIEW_MESSAGE_BY_ID headers are
//! internal and unused), so keys and ids it reported are looked up with `rocketry admin`,
//! Rocketry's own protocol client.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::Value;
use support::deliveries::{deliveries, indexes, Delivery};
use support::*;

/// SQL92 subscriptions need property filtering on (the Apache peer sets it too), and
/// unknown transactions are asked about as soon as the peer's are (every 5 s, after 6 s).
const ROCKETRY_CONFIG: &str = "enablePropertyFilter=true\ntransactionCheckInterval=5000\n";

/// Each scenario as two tests: `<scenario>::rocketry` against a fresh `rocketry standalone`,
/// `<scenario>::apache_rocketmq` against the peer (or SKIPPED without it). Names are unique
/// per run, so the shared peer keeps no state from one run to the next that matters.
macro_rules! against_both {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            #[test]
            fn rocketry() {
                let rocketry = super::Rocketry::standalone(super::ROCKETRY_CONFIG);
                super::$scenario(&rocketry.namesrv);
            }

            #[test]
            fn apache_rocketmq() {
                if let Some(namesrv) = super::rocketmq_peer() {
                    super::$scenario(&namesrv);
                }
            }
        }
    )*};
}

against_both!(
    sends_consumers_and_queries,
    filters_and_order,
    delays_and_dead_letters,
    transactions
);

/// Sends `count` messages of `run` from index `first` (extra: the harness's produce options)
/// and returns the harness's result, every one acknowledged.
fn produce(namesrv: &str, topic: &str, run: &str, first: u64, count: u64, extra: &[&str]) -> Value {
    let mut args = vec![
        "produce".to_string(),
        format!("namesrv={namesrv}"),
        format!("topic={topic}"),
        format!("run={run}"),
        format!("first={first}"),
        format!("count={count}"),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let sent = go_client(&args);
    assert_eq!(sent["sent"], count, "{sent}");
    sent
}

/// Runs a consumer of `group` (extra: the harness's consume options) to its end and returns
/// what it was delivered.
fn consume(
    namesrv: &str,
    topic: &str,
    group: &str,
    run: &str,
    out: &Path,
    extra: &[&str],
) -> Vec<Delivery> {
    go_client(&consume_args(namesrv, topic, group, run, out, extra));
    deliveries(out)
}

/// How many messages `topic` holds (summed over its queues) once the count has stopped
/// moving: the broker may still be storing frames of a connection the client has closed.
fn settled_count(namesrv: &str, topic: &str) -> u64 {
    let count = || {
        let status = rocketry_admin(namesrv, &["topic", "status", "--topic", topic]);
        let offset = |row: &Value, column: &str| row[column].as_str().unwrap().parse::<u64>();
        let rows = status.as_array().expect("rows");
        rows.iter()
            .map(|row| offset(row, "max_offset").unwrap() - offset(row, "min_offset").unwrap())
            .sum::<u64>()
    };
    let mut last = count();
    for _ in 0..30 {
        std::thread::sleep(std::time::Duration::from_secs(1));
        match count() {
            now if now == last => return now,
            now => last = now,
        }
    }
    panic!("{topic} still growing after 30 s: {last}");
}

/// Each of `expected` delivered exactly once.
fn assert_once(got: &[Delivery], expected: &BTreeSet<u64>, what: &str) {
    assert_eq!(&indexes(got), expected, "{what}: wrong messages");
    assert_eq!(got.len(), expected.len(), "{what}: duplicates");
}

/// 100 messages each by sync, async and oneway sends; a push consumer and the pull consumer
/// (Poll/ACK, with rebalancing and committed offsets) each read every message the broker
/// stored once. The first message's key finds it, and its offset message id as the Go
/// client reported it names the same stored message.
///
/// Oneway sends are counted where they arrive: this client never flags a request oneway, so
/// the broker answers them, and a producer that shuts down at once closes its connection
/// with those answers unread, which makes the kernel reset it and drop frames still in
/// flight (the same against Apache RocketMQ). Every sync and async send is acknowledged.
fn sends_consumers_and_queries(namesrv: &str) {
    let dir = tempfile::tempdir().unwrap();
    let (topic, run) = (unique("go_sends"), unique("run"));
    let sync = produce(namesrv, &topic, &run, 0, 100, &["mode=sync"]);
    produce(namesrv, &topic, &run, 100, 100, &["mode=async"]);
    produce(namesrv, &topic, &run, 200, 100, &["mode=oneway"]);
    let stored = settled_count(namesrv, &topic);
    println!("{} of 100 oneway sends arrived", stored - 200);
    assert!((201..=300).contains(&stored), "{stored} stored");
    let mut read = Vec::new();
    for kind in ["push", "pull"] {
        let out = dir.path().join(kind);
        let extra = [&format!("type={kind}") as &str, &format!("expect={stored}")];
        let got = consume(namesrv, &topic, &unique("go_cg"), &run, &out, &extra);
        let unique = indexes(&got);
        assert_eq!(
            unique.len() as u64,
            stored,
            "{kind}: not every stored message"
        );
        assert_eq!(got.len(), unique.len(), "{kind}: duplicates");
        read.push(unique);
    }
    assert_eq!(read[0], read[1], "push and pull read different messages");
    assert!(
        (0..200).all(|i| read[0].contains(&i)),
        "an acknowledged send is missing"
    );
    assert!(read[0].iter().all(|&i| i < 300));

    let first = &sync["first"];
    let key = format!("{run}-key-0");
    let found = rocketry_admin(
        namesrv,
        &["message", "query-by-key", "--topic", &topic, "--key", &key],
    );
    let rows = found.as_array().expect("rows");
    assert_eq!(rows.len(), 1, "{found}");
    assert_eq!(
        rows[0]["offset_msg_id"], first["offsetMsgId"],
        "{found} vs {first}"
    );
    assert_eq!(
        rows[0]["queue"],
        first["queueId"].to_string(),
        "{found} vs {first}"
    );
    assert_eq!(
        rows[0]["queue_offset"],
        first["queueOffset"].to_string(),
        "{found} vs {first}"
    );
    let id = first["offsetMsgId"].as_str().expect("an offset message id");
    let viewed = rocketry_admin(namesrv, &["message", "view", "--id", id]);
    assert_eq!(viewed[0]["keys"], key.as_str(), "{viewed}");
    assert_eq!(viewed[0]["topic"], topic.as_str(), "{viewed}");
}

/// 300 messages tagged TagA, TagB, TagC in turn, with property a = index mod 10: a tag
/// subscription and an SQL92 one each get exactly their matches. Then 400 messages over 8
/// sharding keys (the client's hash selector picks the queue) reach an orderly push consumer
/// with each key in one queue and in send order.
fn filters_and_order(namesrv: &str) {
    let dir = tempfile::tempdir().unwrap();
    let (topic, run) = (unique("go_filter"), unique("run"));
    produce(
        namesrv,
        &topic,
        &run,
        0,
        300,
        &["tags=TagA,TagB,TagC", "prop=a"],
    );

    let tagged = dir.path().join("tags");
    let expected: BTreeSet<u64> = (0..300).filter(|i| i % 3 != 1).collect();
    let extra = ["filter=TagA || TagC", "expect=200"];
    let got = consume(namesrv, &topic, &unique("go_tg"), &run, &tagged, &extra);
    assert_once(&got, &expected, "tag filter");
    assert!(got.iter().all(|d| d.tags == "TagA" || d.tags == "TagC"));

    let sql = dir.path().join("sql");
    let expected: BTreeSet<u64> = (0..300)
        .filter(|i| (3..=5).contains(&(i % 10)) && i % 3 != 1)
        .collect();
    let expect = format!("expect={}", expected.len());
    let extra = ["sql=a BETWEEN 3 AND 5 AND TAGS <> 'TagB'", &expect];
    let got = consume(namesrv, &topic, &unique("go_sg"), &run, &sql, &extra);
    assert_once(&got, &expected, "SQL92 filter");

    const KEYS: u64 = 8;
    let ordered = unique("go_order");
    produce(
        namesrv,
        &ordered,
        &run,
        0,
        400,
        &[&format!("orderKeys={KEYS}")],
    );
    let out = dir.path().join("orderly");
    let got = consume(
        namesrv,
        &ordered,
        &unique("go_og"),
        &run,
        &out,
        &["type=orderly", "expect=400"],
    );
    assert_once(&got, &(0..400).collect(), "orderly");
    let mut by_key: BTreeMap<u64, Vec<&Delivery>> = BTreeMap::new();
    for delivery in &got {
        by_key
            .entry(delivery.index % KEYS)
            .or_default()
            .push(delivery);
    }
    for (key, seen) in by_key {
        let queues: BTreeSet<i32> = seen.iter().map(|d| d.queue_id).collect();
        assert_eq!(queues.len(), 1, "key {key} went to queues {queues:?}");
        let order: Vec<u64> = seen.iter().map(|d| d.index).collect();
        assert!(
            order.windows(2).all(|w| w[0] < w[1]),
            "key {key} out of order: {order:?}"
        );
    }
}

/// Delay level 2 (5 s): nothing arrives earlier than 5 s after it was sent, and the copy
/// delivered was stored when the delay ended. Meanwhile a listener that always answers
/// ConsumeRetryLater, with maxReconsumeTimes 1, sees each message twice (the retry no
/// earlier than level 3's 10 s), and then reads it from `%DLQ%<group>`.
fn delays_and_dead_letters(namesrv: &str) {
    const DELAY_MS: i64 = 5_000;
    const FIRST_RETRY_MS: i64 = 10_000;
    let dir = tempfile::tempdir().unwrap();
    let run = unique("run");
    let delayed_topic = unique("go_delay");
    produce(namesrv, &delayed_topic, &run, 0, 10, &["delayLevel=2"]);
    let delayed = {
        let (namesrv, run, out) = (namesrv.to_string(), run.clone(), dir.path().join("delayed"));
        let group = unique("go_dg");
        std::thread::spawn(move || {
            consume(&namesrv, &delayed_topic, &group, &run, &out, &["expect=10"])
        })
    };

    let (topic, group) = (unique("go_retry"), unique("go_rg"));
    // The group has consumed before it fails, as in production: its first heartbeat creates
    // %RETRY%<group>, which a client only routes to if it exists when the client starts
    // (otherwise at its next 30 s route poll; the same against Apache RocketMQ).
    let warm = unique("warm");
    produce(namesrv, &topic, &warm, 0, 1, &[]);
    consume(
        namesrv,
        &topic,
        &group,
        &warm,
        &dir.path().join("warm"),
        &["expect=1"],
    );
    produce(namesrv, &topic, &run, 0, 3, &[]);
    let attempts = consume(
        namesrv,
        &topic,
        &group,
        &run,
        &dir.path().join("attempts"),
        &["fail=true", "maxReconsume=1", "deliveries=6"],
    );
    for index in 0..3 {
        let mine: Vec<&Delivery> = attempts.iter().filter(|d| d.index == index).collect();
        let times: Vec<i32> = mine.iter().map(|d| d.reconsume_times).collect();
        assert_eq!(times, [0, 1], "message {index}: {mine:?}");
        assert!(mine.iter().all(|d| d.topic == topic), "{mine:?}");
        let gap = mine[1].received_ms - mine[0].received_ms;
        assert!(
            gap >= FIRST_RETRY_MS,
            "message {index} retried after {gap} ms"
        );
    }
    let dlq = format!("%DLQ%{group}");
    let dead = consume(
        namesrv,
        &dlq,
        &unique("go_dlq_reader"),
        &run,
        &dir.path().join("dlq"),
        &["expect=3"],
    );
    assert_once(&dead, &(0..3).collect(), "dead letters");
    assert!(dead.iter().all(|d| d.topic == dlq), "{dead:?}");

    let got = delayed.join().expect("the delayed consumer");
    assert_once(&got, &(0..10).collect(), "delayed");
    for delivery in got {
        let waited = delivery.received_ms - delivery.born_ms;
        assert!(
            waited >= DELAY_MS,
            "message {} arrived {waited} ms after its send",
            delivery.index
        );
        let stored = delivery
            .store_ms
            .expect("the Go harness reports store times")
            - delivery.born_ms;
        assert!(
            stored >= DELAY_MS,
            "message {} was stored {stored} ms after its send",
            delivery.index
        );
    }
}

/// 300 transactional sends: a third committed, a third rolled back, a third unknown and
/// settled by check-back (committed when i mod 6 is 2). A consumer gets exactly the committed
/// ones, each once.
fn transactions(namesrv: &str) {
    let dir = tempfile::tempdir().unwrap();
    let topic = unique("go_tx");
    let run = unique("gorun");
    let count = 300u64;
    let unknowns = (0..count).filter(|i| i % 3 == 2).count() as u64;
    let sent = go_client(&[
        "transact".to_string(),
        format!("namesrv={namesrv}"),
        format!("topic={topic}"),
        format!("group={}", unique("go_txp")),
        format!("run={run}"),
        format!("count={count}"),
        "holdMs=90000".to_string(),
    ]);
    assert_eq!(sent["sent"], count, "{sent}");
    assert_eq!(
        sent["checkedUnknown"], unknowns,
        "asked about each unknown one: {sent}"
    );
    let committed: BTreeSet<u64> = (0..count)
        .filter(|i| i.is_multiple_of(3) || i % 6 == 2)
        .collect();
    let got = consume(
        namesrv,
        &topic,
        &unique("go_txc"),
        &run,
        &dir.path().join("out"),
        &[&format!("expect={}", committed.len())],
    );
    assert_once(&got, &committed, "transactions");
}
