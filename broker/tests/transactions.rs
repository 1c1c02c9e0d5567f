//! Transactional messages with the real Java 5.5.0 TransactionMQProducer
//! (tests/java-harness/.../Transactions.java) and push consumer. Message i's local
//! transaction commits when i mod 3 is 0, rolls back when it is 1 and answers UNKNOW when it
//! is 2; asked later, the checker commits the unknown ones with i mod 6 = 2 and rolls back
//! the rest. A consumer must then get exactly the committed messages, each once.

mod support;

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use support::deliveries::{deliveries, Delivery};
use support::*;

/// Broker settings that make the checker ask within seconds: rounds every second (Apache's
/// default is 30 s), and Apache's 6 s before a transaction is first asked about, so that on a
/// loaded host a producer's decision still arrives before its transaction is due a check.
const FAST_CHECKS: &str = "transactionCheckInterval=1000\ntransactionTimeOut=6000\n";

fn committed(index: u64) -> bool {
    index.is_multiple_of(3) || index % 6 == 2
}

fn expected(count: u64) -> BTreeMap<u64, usize> {
    (0..count)
        .filter(|i| committed(*i))
        .map(|i| (i, 1))
        .collect()
}

fn unknowns(count: u64) -> u64 {
    (0..count).filter(|i| i % 3 == 2).count() as u64
}

/// The Transactions harness on the 5.5.0 client, run to its end.
fn transactions(args: &[String]) -> serde_json::Value {
    harness("Transactions", args)
}

fn producer_args(
    namesrv: &str,
    topic: &str,
    group: &str,
    run: &str,
    extra: &[&str],
) -> Vec<String> {
    let mut args = vec![
        format!("namesrv={namesrv}"),
        format!("topic={topic}"),
        format!("group={group}"),
        format!("run={run}"),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// Deliveries per message index of `run`, read by a new consumer group until it has
/// `expect` distinct messages and then 5 s without another.
fn delivered(namesrv: &str, topic: &str, run: &str, expect: u64) -> BTreeMap<u64, usize> {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("deliveries");
    features(consume_args(
        namesrv,
        topic,
        &unique("txc"),
        run,
        &out,
        &[
            &format!("expect={expect}"),
            "idleMs=5000",
            "timeoutMs=120000",
        ],
    ));
    per_index(&deliveries(&out))
}

/// How many times each message index was delivered.
fn per_index(got: &[Delivery]) -> BTreeMap<u64, usize> {
    let mut counts = BTreeMap::new();
    for delivery in got {
        *counts.entry(delivery.index).or_insert(0) += 1;
    }
    counts
}

/// What one run of the scenario showed.
struct Outcome {
    topic: String,
    /// Deliveries per message index.
    deliveries: BTreeMap<u64, usize>,
    /// How many distinct messages the broker asked the producer about.
    asked: u64,
}

/// The whole scenario on the cluster behind `namesrv`: `count` transactional sends, the
/// unknown ones settled by check-back, read by a consumer that runs from before the first
/// send. Asserts that no message reached it before the producer committed it.
fn send_check_and_consume(namesrv: &str, cluster: &str, count: u64) -> Outcome {
    let topic = unique("tx");
    let run = unique("txrun");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("deliveries");
    let decisions = dir.path().join("decisions");
    create_topic_in_cluster(namesrv, cluster, &topic);
    let mut consumer = features_command(&consume_args(
        namesrv,
        &topic,
        &unique("txc"),
        &run,
        &out,
        &[
            &format!("expect={}", expected(count).len()),
            // Check-back commits come a check interval or two after the last local commit
            // (Apache: 6 s before the first check, rounds every 5 s here).
            "idleMs=30000",
            "timeoutMs=240000",
        ],
    ))
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let sent = transactions(&producer_args(
        namesrv,
        &topic,
        &unique("txp"),
        &run,
        &[
            &format!("count={count}"),
            &format!("expectChecks={}", unknowns(count)),
            "holdMs=120000",
            &format!("decisions={}", decisions.display()),
        ],
    ));
    assert_eq!(sent["sent"], count, "{sent}");
    assert_eq!(
        sent["checkedUnknown"],
        unknowns(count),
        "every unknown one is asked: {sent}"
    );
    assert!(consumer.wait().unwrap().success(), "the consumer failed");
    // The earliest commit of each message: a committed one may be committed again when the
    // broker asks about it before hearing the first answer.
    let mut committed_at: BTreeMap<u64, i64> = BTreeMap::new();
    for line in std::fs::read_to_string(&decisions).unwrap().lines() {
        let (index, ms) = line.split_once(',').unwrap();
        let ms: i64 = ms.parse().unwrap();
        let at = committed_at.entry(index.parse().unwrap()).or_insert(ms);
        *at = (*at).min(ms);
    }
    let got = deliveries(&out);
    let early: Vec<String> = got
        .iter()
        .filter(|d| {
            committed_at
                .get(&d.index)
                .is_none_or(|&at| d.received_ms < at)
        })
        .map(|d| {
            format!(
                "{} at {} (commit {:?})",
                d.index,
                d.received_ms,
                committed_at.get(&d.index)
            )
        })
        .collect();
    assert!(
        early.is_empty(),
        "{} of {} deliveries came before their commit, or with none: {:?}",
        early.len(),
        got.len(),
        &early[..early.len().min(10)]
    );
    Outcome {
        deliveries: per_index(&got),
        topic,
        asked: sent["checked"].as_u64().unwrap(),
    }
}

#[test]
fn consumers_get_exactly_the_committed_messages_as_from_apache() {
    let rocketry = Rocketry::standalone(FAST_CHECKS);
    let ours = send_check_and_consume(&rocketry.namesrv, "DefaultCluster", 1000);
    assert_eq!(
        ours.deliveries,
        expected(1000),
        "Rocketry: deliveries per message index"
    );
    let series = [("topic", ours.topic.as_str())];
    let counted = |scrape: &str, name: &str| metric(scrape, name, &series);
    let commits = expected(1000).len() as f64;
    let scrape = rocketry.scrape_until("every decision counted", |scrape| {
        counted(scrape, "rocketmq_rollback_messages_total") == Some(1000.0 - commits)
    });
    assert_eq!(
        counted(&scrape, "rocketmq_commit_messages_total"),
        Some(commits)
    );
    // Apache also asks about some that were decided (its op records are batched every 3 s,
    // so a check can run before the decision is written); Rocketry only about the unknown.
    assert_eq!(
        ours.asked,
        unknowns(1000),
        "Rocketry asks about the unknown ones only"
    );
    let Some(peer) = rocketmq_peer() else {
        return;
    };
    let apache = send_check_and_consume(&peer, "PeerCluster", 1000);
    // The same messages, none early. Apache may store a commit twice when a check round
    // races its batched op records (docs/compatibility.md, "Transactions"); Rocketry may not,
    // as asserted above.
    let repeated = apache.deliveries.values().filter(|n| **n > 1).count();
    println!("Apache delivered {repeated} committed messages more than once");
    assert!(
        ours.deliveries.keys().eq(apache.deliveries.keys()),
        "the committed set: Rocketry {} messages, Apache {}",
        ours.deliveries.len(),
        apache.deliveries.len()
    );
}

// The producer dies before answering any check and the broker is killed with the unknown
// transactions pending: after the restart, check-back goes to another producer of the group,
// and nothing decided before the crash is applied again.
#[test]
fn a_killed_broker_and_a_killed_producer_lose_and_repeat_nothing() {
    let mut rocketry = Rocketry::standalone(FAST_CHECKS);
    let namesrv = rocketry.namesrv.clone();
    let topic = unique("txk");
    let run = unique("txrun");
    let group = unique("txp");
    let count = 300;
    create_topic_in_cluster(&namesrv, "DefaultCluster", &topic);
    let sent = transactions(&producer_args(
        &namesrv,
        &topic,
        &group,
        &run,
        // Its checker answers UNKNOW: sending can take longer than the first check round on a
        // busy host, and an answer would settle a transaction the second producer must be
        // asked about.
        &[
            &format!("count={count}"),
            "check=unknown",
            "haltAfterSend=true",
        ],
    ));
    assert_eq!(sent["sent"], count, "{sent}");
    rocketry.kill();
    rocketry.start("Rocketry standalone is ready");
    let namesrv = rocketry.namesrv.clone();
    // A second producer of the group, sending messages 300..303 of its own (a client is
    // known to a broker only once it sends there): the broker asks it about the first
    // producer's unknown transactions too.
    let more = 3;
    let checker = transactions(&producer_args(
        &namesrv,
        &topic,
        &group,
        &run,
        &[
            &format!("first={count}"),
            &format!("count={more}"),
            &format!("expectChecks={}", unknowns(count + more)),
            "holdMs=120000",
        ],
    ));
    assert_eq!(
        checker["checkedUnknown"].as_u64().unwrap(),
        unknowns(count + more),
        "the second producer is asked about every unknown one: {checker}"
    );
    let want = expected(count + more);
    let got = delivered(&namesrv, &topic, &run, want.len() as u64);
    assert_eq!(got, want, "deliveries per message index");
}

#[test]
fn a_transaction_unknown_after_its_checks_goes_to_trans_check_max_time_topic() {
    let rocketry = Rocketry::standalone(
        "transactionCheckInterval=1000\ntransactionTimeOut=1000\ntransactionCheckMax=2\n",
    );
    let namesrv = rocketry.namesrv.clone();
    let topic = unique("txu");
    let count = 10;
    create_topic_in_cluster(&namesrv, "DefaultCluster", &topic);
    let mut producer = spawn_in_own_group(
        harness_command(
            "Transactions",
            &producer_args(
                &namesrv,
                &topic,
                &unique("txp"),
                &unique("txrun"),
                &[
                    &format!("count={count}"),
                    "local=unknown",
                    "check=unknown",
                    "holdMs=120000",
                ],
            ),
        )
        .stdout(std::process::Stdio::null()),
    )
    .unwrap();
    let stored = |topic: &str| -> i64 {
        rocketry_admin(&namesrv, &["topic", "status", "--topic", topic])
            .as_array()
            .unwrap()
            .iter()
            .map(|row| row["max_offset"].as_str().unwrap().parse::<i64>().unwrap())
            .sum()
    };
    let deadline = Instant::now() + Duration::from_secs(90);
    while stored("TRANS_CHECK_MAX_TIME_TOPIC") < count {
        assert!(
            Instant::now() < deadline,
            "{} of {count} given up after 90 s",
            stored("TRANS_CHECK_MAX_TIME_TOPIC")
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    kill_process_group(&mut producer);
    assert_eq!(stored("TRANS_CHECK_MAX_TIME_TOPIC"), count);
    assert_eq!(stored(&topic), 0, "nothing undecided reaches the topic");
}
