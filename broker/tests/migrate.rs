//! `rocketry migrate mirror` against a real Apache Kafka 4.4.0 (`scripts/peers/kafka`): a
//! topic of three partitions, written by librdkafka with keys and headers, is copied into
//! `rocketry standalone` while the mirror is SIGKILLed twice, and every record arrives once,
//! in order, with its key, headers and source position; then `rocketry migrate parity` finds
//! every window clean, and fails the one window of a record only Kafka has. A consumer group
//! moves from a Kafka consumer to a Java RocketMQ consumer and back, mid-stream, with
//! `rocketry migrate cutover` and `rollback` (issue 19).

mod support;

use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use protocol::client::PullStatus;
use protocol::header::{pull_sys_flag, PullMessageRequestHeader};
use protocol::Client;
use rdkafka::config::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use support::*;

const PARTITIONS: i32 = 3;

/// The Kafka peer that `scripts/test` starts, if it did.
fn kafka_peer() -> Option<String> {
    match std::env::var("ROCKETRY_PEER_KAFKA") {
        Ok(addr) if !addr.is_empty() => Some(addr),
        _ => {
            println!("SKIPPED: ROCKETRY_PEER_KAFKA is not set (run scripts/test, which starts the Kafka peer)");
            None
        }
    }
}

/// Records for the copy: enough that the mirror is still copying when it is killed.
fn record_count() -> usize {
    std::env::var("MIRROR_RECORDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000)
}

fn kafka_tool(args: &[&str]) {
    let output = Command::new(repo_root().join("scripts/peers/kafka"))
        .arg("tool")
        .args(args)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", printed(&output));
}

/// Records `first..end`: record `i` goes to partition `i % 3`, with key and headers naming it;
/// every 1000th has a header that is not text. Its body starts `<run>-<i>-`, as the Java
/// harness's consumer expects.
fn produce(bootstrap: &str, topic: &str, run: &str, (first, end): (usize, usize)) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("linger.ms", "20")
        .set("queue.buffering.max.messages", "200000")
        .create()
        .unwrap();
    for i in first..end {
        let key = format!("key-{i}");
        let value = format!("{run}-{i}-{}", "v".repeat(40));
        let index = i.to_string();
        let mut headers = OwnedHeaders::new()
            .insert(Header {
                key: "run",
                value: Some(run),
            })
            .insert(Header {
                key: "index",
                value: Some(&index),
            });
        if i.is_multiple_of(1000) {
            headers = headers.insert(Header {
                key: "raw",
                value: Some(&[0xff_u8, 0x00][..]),
            });
        }
        let mut record = BaseRecord::to(topic)
            .partition(i as i32 % PARTITIONS)
            .key(&key)
            .payload(&value)
            .headers(headers);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((error, back)) => {
                    assert!(
                        matches!(
                            error.rdkafka_error_code(),
                            Some(rdkafka::types::RDKafkaErrorCode::QueueFull)
                        ),
                        "{error}"
                    );
                    record = back;
                    producer.poll(Duration::from_millis(10));
                }
            }
        }
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(120)).unwrap();
}

/// A running mirror process. It is SIGKILLed when dropped, so a test that fails midway leaves
/// no mirror behind.
struct Mirror(Child);

impl Mirror {
    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Mirror {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The mirror, serving its metrics on `metrics` when given, with more `--kafka-config`
/// settings.
fn start_mirror(
    bootstrap: &str,
    namesrv: &str,
    topic: &str,
    log: &std::path::Path,
    metrics: Option<&str>,
    kafka_config: &[String],
) -> Mirror {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    Command::new(env!("CARGO_BIN_EXE_rocketry"))
        .args(["migrate", "mirror", "--bootstrap-servers", bootstrap])
        .args(["--source-topic", topic, "--namesrv", namesrv])
        .args(["--group", &format!("{topic}-mirror")])
        .args(
            metrics
                .map(|addr| ["--metrics-addr", addr])
                .into_iter()
                .flatten(),
        )
        .args(
            kafka_config
                .iter()
                .flat_map(|c| ["--kafka-config", c.as_str()]),
        )
        .env("RUST_LOG", "info")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .map(Mirror)
        .unwrap()
}

/// How many messages the target topic holds, over its queues.
async fn copied(broker: &Client, topic: &str) -> u64 {
    let mut total = 0;
    for queue in 0..PARTITIONS {
        total += broker.get_max_offset(topic, queue).await.unwrap_or(0) as u64;
    }
    total
}

/// Shows `visit` every message of `queue`, in queue order.
async fn each_copy(
    broker: &Client,
    topic: &str,
    queue: i32,
    mut visit: impl FnMut(message::Message),
) {
    let mut offset = 0i64;
    loop {
        let pulled = broker
            .pull_message(&PullMessageRequestHeader {
                consumer_group: "mirror-check".into(),
                topic: topic.into(),
                queue_id: queue,
                queue_offset: offset,
                max_msg_nums: 32,
                sys_flag: pull_sys_flag::SUBSCRIPTION,
                subscription: Some("*".into()),
                commit_offset: 0,
                suspend_timeout_millis: 0,
                sub_version: 0,
                ..Default::default()
            })
            .await
            .unwrap();
        if pulled.status != PullStatus::Found {
            return;
        }
        for stored in pulled.messages().unwrap() {
            visit(stored.to_message().unwrap());
        }
        offset = pulled.header.next_begin_offset;
    }
}

async fn wait_for(
    broker: &Client,
    topic: &str,
    at_least: u64,
    mirror: &mut Mirror,
    log: impl Fn() -> String,
) {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let now = copied(broker, topic).await;
        if now >= at_least {
            println!("copied {now} (waited for {at_least})");
            return;
        }
        if let Ok(Some(status)) = mirror.0.try_wait() {
            panic!("the mirror exited ({status}) at {now} copied:\n{}", log());
        }
        assert!(
            Instant::now() < deadline,
            "only {now} of {at_least} copied:\n{}",
            log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn create_kafka_topic(bootstrap: &str, topic: &str) {
    kafka_tool(&[
        "org.apache.kafka.tools.TopicCommand",
        "--bootstrap-server",
        bootstrap,
        "--create",
        "--topic",
        topic,
        "--partitions",
        &PARTITIONS.to_string(),
        "--replication-factor",
        "1",
    ]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mirror_copies_every_record_once_across_two_kills() {
    let Some(bootstrap) = kafka_peer() else {
        return;
    };
    let count = record_count();
    let rocketry = Rocketry::standalone("");
    let topic = unique("mirror");
    let run = unique("run");
    create_kafka_topic(&bootstrap, &topic);
    let started = Instant::now();
    let produced_from_ms = now_ms();
    {
        let (bootstrap, topic, run) = (bootstrap.clone(), topic.clone(), run.clone());
        tokio::task::spawn_blocking(move || produce(&bootstrap, &topic, &run, (0, count)))
            .await
            .unwrap();
    }
    println!("produced {count} records in {:?}", started.elapsed());

    let log = rocketry.data_dir.join("mirror.log");
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
    let broker = Client::connect(rocketry.broker_addr.as_deref().unwrap())
        .await
        .unwrap();
    let metrics = format!("127.0.0.1:{}", free_port());
    let start = || {
        start_mirror(
            &bootstrap,
            &rocketry.namesrv,
            &topic,
            &log,
            Some(&metrics),
            &[],
        )
    };
    let mut mirror = start();
    let total = count as u64;
    for fraction in [4, 2] {
        wait_for(&broker, &topic, total / fraction, &mut mirror, log_text).await;
        mirror.kill();
        let at_kill = copied(&broker, &topic).await;
        println!("SIGKILL at {at_kill} copied");
        assert!(
            at_kill < total,
            "the copy ended before the kill: pick more records"
        );
        mirror = start();
    }
    wait_for(&broker, &topic, total, &mut mirror, log_text).await;
    println!("copied all in {:?}", started.elapsed());

    // The last process's metrics: it copied what the queues lacked at its start, and once
    // caught up every partition's lag reads 0 (measured each second, idle or not). Its start
    // is where it resumed each partition, as it logged: later than the kill when the killed
    // process's last batch was still in flight and stored before the restart read the tail.
    let at_last_start: u64 = log_text()
        .lines()
        .filter(|line| line.contains("copying"))
        .rev()
        .take(PARTITIONS as usize)
        .map(|line| {
            let after = line.split("Offset(").nth(1).expect("resumed mid-partition");
            after.split(')').next().unwrap().parse::<u64>().unwrap()
        })
        .sum();
    let series = |scrape: &str, name: &str, partition: i32| {
        let partition = partition.to_string();
        let labels = [("source_topic", topic.as_str()), ("partition", &partition)];
        metric(scrape, name, &labels)
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let scrape = loop {
        let (status, scrape) = http_get(&metrics, "/metrics");
        assert_eq!(status, 200, "{scrape}");
        let lags: Vec<Option<f64>> = (0..PARTITIONS)
            .map(|p| series(&scrape, "rocketry_mirror_lag_records", p))
            .collect();
        if lags.iter().all(|lag| *lag == Some(0.0)) {
            break scrape;
        }
        assert!(Instant::now() < deadline, "lags {lags:?}:\n{scrape}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let copied_by_last: f64 = (0..PARTITIONS)
        .map(|p| series(&scrape, "rocketry_mirror_copied_records_total", p).unwrap())
        .sum();
    assert_eq!(copied_by_last as u64, total - at_last_start, "{scrape}");
    // Nothing more arrives: a repeat would show up here, or in the read below.
    tokio::time::sleep(Duration::from_secs(2)).await;
    mirror.kill();
    assert_eq!(copied(&broker, &topic).await, total);

    let mut seen = vec![false; count];
    for queue in 0..PARTITIONS {
        let mut next_source_offset = 0i64;
        each_copy(&broker, &topic, queue, |message| {
            let p = &message.properties;
            let property = |name: &str| p.get(name).unwrap_or_default().to_string();
            let index: usize = property("index").parse().unwrap();
            assert_eq!(property("KAFKA_PARTITION"), queue.to_string());
            assert_eq!(
                property("KAFKA_OFFSET"),
                next_source_offset.to_string(),
                "queue {queue}: records out of order, missing or repeated"
            );
            assert_eq!(property("KAFKA_TOPIC"), topic);
            assert!(property("KAFKA_TIMESTAMP").parse::<i64>().unwrap() > 0);
            assert_eq!(index as i32 % PARTITIONS, queue);
            assert_eq!(message.keys().collect::<Vec<_>>(), [format!("key-{index}")]);
            assert_eq!(property("run"), run);
            assert_eq!(
                message.body,
                format!("{run}-{index}-{}", "v".repeat(40)).as_bytes()
            );
            if index.is_multiple_of(1000) {
                assert_eq!(property("raw"), "/wA=");
                assert_eq!(property("KAFKA_BASE64"), "raw");
            }
            assert!(!seen[index], "record {index} copied twice");
            seen[index] = true;
            next_source_offset += 1;
        })
        .await;
    }
    let missing: Vec<usize> = (0..count).filter(|i| !seen[*i]).take(10).collect();
    assert!(missing.is_empty(), "records never copied: {missing:?}");
    // Three starts, each resuming all three partitions; the two after a kill mid-copy from
    // an offset the queue's tail gave, not from the beginning. A partition whose copy was
    // interrupted by an error it retries (a send timing out) resumes once more, from its tail.
    let text = log_text();
    let starts: Vec<&str> = text.lines().filter(|l| l.contains("copying")).collect();
    let interruptions = text
        .lines()
        .filter(|l| l.contains("copy interrupted"))
        .count();
    println!("{}", starts.join("\n"));
    assert_eq!(starts.len(), 3 * PARTITIONS as usize + interruptions);
    // Only the first start copies from the beginning, and a resumption only before its
    // partition's first copy was stored.
    let from_beginning = starts.iter().filter(|l| l.contains("Beginning")).count();
    assert!(
        (PARTITIONS as usize..=PARTITIONS as usize + interruptions).contains(&from_beginning),
        "{from_beginning} starts from the beginning"
    );

    // Parity over 1 s windows from the first record on: every window of every partition is
    // clean.
    let from = (produced_from_ms - 1000).to_string();
    let (clean, report) = parity(&bootstrap, &rocketry.namesrv, &topic, &from);
    assert!(clean, "{report}");
    let windows = report.lines().filter(|l| l.starts_with("window ")).count();
    assert!(windows >= 2 * PARTITIONS as usize, "{report}");
    assert_eq!(
        report.lines().filter(|l| l.ends_with(", clean")).count(),
        windows,
        "{report}"
    );
    assert!(report.contains(&format!("parity: {windows} of {windows} windows clean")));

    // A record Rocketry never got (written to Kafka while no mirror runs) fails its window
    // of its partition, and no other.
    let late = {
        let bootstrap = bootstrap.clone();
        let topic = topic.clone();
        tokio::task::spawn_blocking(move || {
            let producer: BaseProducer = ClientConfig::new()
                .set("bootstrap.servers", &bootstrap)
                .create()
                .unwrap();
            producer
                .send(
                    BaseRecord::to(&topic)
                        .partition(1)
                        .key("late")
                        .payload("late"),
                )
                .unwrap();
            producer.flush(Duration::from_secs(30)).unwrap();
        })
    };
    late.await.unwrap();
    let (clean, report) = parity(&bootstrap, &rocketry.namesrv, &topic, &from);
    assert!(!clean, "parity missed a record only Kafka has:\n{report}");
    let mismatched: Vec<&str> = report.lines().filter(|l| l.contains("MISMATCH")).collect();
    assert_eq!(mismatched.len(), 1, "{report}");
    let records = |side: &str| -> u64 {
        let after = mismatched[0].split(&format!("{side} ")).nth(1).unwrap();
        after.split(' ').next().unwrap().parse().unwrap()
    };
    assert!(mismatched[0].contains(" partition 1 "), "{report}");
    assert_eq!(records("Kafka"), records("Rocketry") + 1, "{report}");
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// `rocketry migrate parity` over 1 s windows from `from` to now: whether it passed, and what
/// it printed.
fn parity(bootstrap: &str, namesrv: &str, topic: &str, from: &str) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_rocketry"))
        .args(["migrate", "parity", "--bootstrap-servers", bootstrap])
        .args(["--source-topic", topic, "--namesrv", namesrv])
        .args(["--from", from, "--window", "1s"])
        .output()
        .unwrap();
    let text = both(&output);
    println!("{text}");
    (output.status.success(), text)
}

/// The record index a body `<run>-<i>-...` names.
fn index_of(body: &[u8]) -> usize {
    let text = std::str::from_utf8(body).unwrap();
    text.split('-').nth(1).unwrap().parse().unwrap()
}

/// A Kafka consumer of `group` (librdkafka) reads about `limit` records of `topic`, a third
/// from each partition (it pauses a partition at its share, so each has an offset to
/// commit), or until none comes for 10 s; commits what it read, and leaves the group;
/// returns the indexes it read.
fn kafka_consume(bootstrap: &str, topic: &str, group: &str, limit: usize) -> Vec<usize> {
    use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
    use rdkafka::{Message as _, TopicPartitionList};
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let share = limit / PARTITIONS as usize;
    let mut read = Vec::new();
    let mut per_partition = [0usize; PARTITIONS as usize];
    let mut idle_since = Instant::now();
    while per_partition.iter().any(|n| *n < share) && idle_since.elapsed() < Duration::from_secs(10)
    {
        let Some(record) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let record = record.unwrap();
        read.push(index_of(record.payload().unwrap()));
        idle_since = Instant::now();
        let partition = record.partition();
        per_partition[partition as usize] += 1;
        if per_partition[partition as usize] == share {
            let mut paused = TopicPartitionList::new();
            paused.add_partition(topic, partition);
            consumer.pause(&paused).unwrap();
        }
    }
    match consumer.commit_consumer_state(CommitMode::Sync) {
        Ok(()) => {}
        // Nothing was read, so there is nothing to commit: the group's offsets stand.
        Err(rdkafka::error::KafkaError::ConsumerCommit(
            rdkafka::types::RDKafkaErrorCode::NoOffset,
        )) if read.is_empty() => {}
        Err(error) => panic!("committing the {} records read: {error}", read.len()),
    }
    read
}

/// `rocketry migrate cutover|rollback` of `group`; panics unless it succeeds.
fn move_group(verb: &str, bootstrap: &str, namesrv: &str, topic: &str, group: &str) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_rocketry"))
        .args(["migrate", verb, "--bootstrap-servers", bootstrap])
        .args(["--source-topic", topic, "--namesrv", namesrv])
        .args(["--consumer-group", group])
        .output()
        .unwrap();
    let text = both(&output);
    println!("{verb}:\n{text}");
    assert!(output.status.success(), "{verb} failed:\n{text}");
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_group_moves_to_rocketry_and_back_mid_stream() {
    let Some(bootstrap) = kafka_peer() else {
        return;
    };
    let rocketry = Rocketry::standalone("");
    let (topic, run, group) = (unique("cutover"), unique("run"), unique("group"));
    create_kafka_topic(&bootstrap, &topic);
    let blocking = |work: Box<dyn FnOnce() -> Vec<usize> + Send>| tokio::task::spawn_blocking(work);
    let (b, t, r) = (bootstrap.clone(), topic.clone(), run.clone());
    blocking(Box::new(move || {
        produce(&b, &t, &r, (0, 3000));
        Vec::new()
    }))
    .await
    .unwrap();
    let log = rocketry.data_dir.join("mirror.log");
    let mut mirror = start_mirror(&bootstrap, &rocketry.namesrv, &topic, &log, None, &[]);

    // The Kafka group reads a third and stops, committing what it read.
    let (b, t, g) = (bootstrap.clone(), topic.clone(), group.clone());
    let on_kafka = blocking(Box::new(move || kafka_consume(&b, &t, &g, 1000)))
        .await
        .unwrap();
    assert!((999..2000).contains(&on_kafka.len()), "{}", on_kafka.len());

    // Mid-stream: producers go on writing to Kafka while the group moves.
    let (b, t, r) = (bootstrap.clone(), topic.clone(), run.clone());
    let more = blocking(Box::new(move || {
        produce(&b, &t, &r, (3000, 4000));
        Vec::new()
    }));
    let moved = move_group("cutover", &bootstrap, &rocketry.namesrv, &topic, &group);
    assert_eq!(
        moved
            .lines()
            .filter(|l| l.starts_with("partition "))
            .count(),
        3
    );
    more.await.unwrap();

    // The Java consumer of the same group on Rocketry takes over where Kafka's stopped.
    let out = rocketry.data_dir.join("deliveries");
    let java = features(consume_args(
        &rocketry.namesrv,
        &topic,
        &group,
        &run,
        &out,
        &["stopAfter=1500", "timeoutMs=120000"],
    ));
    let on_rocketry: Vec<usize> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|line| line.split(',').next().unwrap().parse().unwrap())
        .collect();
    assert!(on_rocketry.len() >= 1500, "{java}");
    let kafka_set: std::collections::HashSet<usize> = on_kafka.iter().copied().collect();
    let again: Vec<&usize> = on_rocketry
        .iter()
        .filter(|i| kafka_set.contains(i))
        .collect();
    println!(
        "cutover: Kafka read {}, Rocketry read {} ({} read on both sides)",
        on_kafka.len(),
        on_rocketry.len(),
        again.len()
    );
    // The Kafka consumer committed exactly what it read: nothing was in flight to repeat.
    assert!(again.is_empty(), "read on both sides: {again:?}");

    // And back: a Kafka consumer of the group reads the rest.
    move_group("rollback", &bootstrap, &rocketry.namesrv, &topic, &group);
    let (b, t, g) = (bootstrap.clone(), topic.clone(), group.clone());
    let back_on_kafka = blocking(Box::new(move || kafka_consume(&b, &t, &g, usize::MAX)))
        .await
        .unwrap();
    mirror.kill();
    let rocketry_set: std::collections::HashSet<usize> = on_rocketry.iter().copied().collect();
    let repeated = back_on_kafka
        .iter()
        .filter(|i| rocketry_set.contains(i))
        .count();
    println!(
        "rollback: Kafka read {} more ({repeated} already read on Rocketry)",
        back_on_kafka.len()
    );
    // The Java consumer persists offsets of what it finished; what it had pulled but not yet
    // finished when it stopped is read again: at most one pull (32) per queue.
    assert!(
        repeated <= 32 * PARTITIONS as usize,
        "{repeated} read twice"
    );
    let all: std::collections::HashSet<usize> = on_kafka
        .iter()
        .chain(&on_rocketry)
        .chain(&back_on_kafka)
        .copied()
        .collect();
    let missing: Vec<usize> = (0..4000).filter(|i| !all.contains(i)).take(10).collect();
    assert!(missing.is_empty(), "never read: {missing:?}");
    assert_eq!(all.len(), 4000);
}

/// What a `rocketry` command printed: its report on stdout, then its log and error on stderr.
fn both(output: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The dual writer's record `i`: partition `i % 3`, key and an `index` header naming it.
fn dual_record(run: &str, i: usize) -> migrate::Record {
    migrate::Record {
        key: Some(format!("key-{i}").into_bytes()),
        value: Some(format!("{run}-{i}").into_bytes()),
        headers: vec![("index".into(), Some(i.to_string().into_bytes()))],
        partition: Some(i as i32 % PARTITIONS),
        timestamp: None,
    }
}

/// Where a dual-written send stood: both sides, Kafka with the copy spooled, spooled whole.
const BOTH: usize = 0;
const KAFKA_THEN_SPOOL: usize = 1;
const SPOOLED: usize = 2;

/// The application: sends records `first..` through a dual writer until stopped, and tallies
/// where each send stood as it goes, so a test can wait for counts rather than guess times.
struct Application {
    stop: Arc<AtomicBool>,
    tally: Arc<[AtomicU64; 3]>,
    sending: tokio::task::JoinHandle<usize>,
}

impl Application {
    fn start(writer: Arc<migrate::DualWriter>, run: String, first: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let tally = Arc::new(Default::default());
        let sending = tokio::spawn({
            let (stop, tally) = (stop.clone(), Arc::clone(&tally));
            async move {
                let tally: &[AtomicU64; 3] = &tally;
                let mut i = first;
                while !stop.load(Relaxed) {
                    let sent = writer.send(dual_record(&run, i)).await.unwrap();
                    let outcome = match sent {
                        migrate::Sent::Both { .. } => BOTH,
                        migrate::Sent::Kafka { .. } => KAFKA_THEN_SPOOL,
                        migrate::Sent::Spooled => SPOOLED,
                    };
                    tally[outcome].fetch_add(1, Relaxed);
                    i += 1;
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                i
            }
        });
        Application {
            stop,
            tally,
            sending,
        }
    }

    fn count(&self, outcome: usize) -> u64 {
        self.tally[outcome].load(Relaxed)
    }

    /// Waits until `outcome` has been counted `n` times.
    async fn wait_for(&self, outcome: usize, n: u64, within: Duration) {
        let deadline = Instant::now() + within;
        while self.count(outcome) < n {
            assert!(
                Instant::now() < deadline,
                "{} sends of kind {outcome} after {within:?}, not {n}",
                self.count(outcome)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops sending; returns the next index and the tally.
    async fn stop(self) -> (usize, [u64; 3]) {
        self.stop.store(true, Relaxed);
        let next = self.sending.await.unwrap();
        (next, self.tally.each_ref().map(|n| n.load(Relaxed)))
    }
}

/// A dual writer's settings for `topic` on both sides, spooling in `spool`.
fn dual_write_config(
    bootstrap: &str,
    topic: &str,
    namesrv: &str,
    spool: &tempfile::TempDir,
) -> migrate::DualWriteConfig {
    migrate::DualWriteConfig::new(bootstrap, topic, namesrv, topic, spool.path().to_owned())
}

/// Waits until `writer`'s spool is empty.
async fn drained(writer: &migrate::DualWriter, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let left = writer.spooled().await;
        if left == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the spool did not drain in {within:?}: {left} left"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dual_write_spools_through_a_20_s_broker_outage_and_both_sides_agree() {
    let Some(bootstrap) = kafka_peer() else {
        return;
    };
    let mut rocketry = Rocketry::standalone("");
    let topic = unique("dual");
    let run = unique("run");
    create_kafka_topic(&bootstrap, &topic);
    let from = (now_ms() - 1000).to_string();
    let spool = tempfile::tempdir().unwrap();
    let registry = ::prometheus::Registry::new();
    let namesrv = rocketry.namesrv.clone();
    let open = || {
        let mut config = dual_write_config(&bootstrap, &topic, &namesrv, &spool);
        config.registry = registry.clone();
        migrate::DualWriter::open(config)
    };
    let spool_depth = || {
        let families = registry.gather();
        let family = families
            .iter()
            .find(|f| f.name() == "rocketry_dual_write_spool_records")
            .expect("the spool gauge");
        family.get_metric()[0].get_gauge().get_value()
    };

    // The application writes to both sides before the outage.
    let writer = Arc::new(open().await.unwrap());
    let application = Application::start(writer.clone(), run.clone(), 0);
    application
        .wait_for(BOTH, 100, Duration::from_secs(60))
        .await;
    assert_eq!(spool_depth(), 0.0, "spooled before the outage");
    let status = rocketry.terminate();
    println!("broker stopped ({status})");
    let outage = Instant::now();
    let mut deepest = 0.0f64;
    let watch = |deepest: &mut f64, until: Duration| {
        *deepest = deepest.max(spool_depth());
        outage.elapsed() < until
    };
    while watch(&mut deepest, Duration::from_secs(10)) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Midway the application restarts: a new writer, while Rocketry is still down, takes
    // over the spool the old one left.
    let (first, before) = application.stop().await;
    let left = spool_depth();
    assert!(left > 0.0, "nothing spooled 10 s into the outage");
    drop(writer);
    // The old writer's metrics left with it; the new one registers its own.
    let writer = Arc::new(open().await.unwrap());
    assert_eq!(spool_depth(), left, "the reopened spool");
    let application = Application::start(writer.clone(), run.clone(), first);
    while watch(&mut deepest, Duration::from_secs(20)) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    rocketry.restart();
    println!("broker back; the spool held up to {deepest} records");
    // Once the spool has drained, sends reach both sides again.
    application
        .wait_for(BOTH, 20, Duration::from_secs(120))
        .await;
    let (sent, after) = application.stop().await;
    let outcomes: Vec<u64> = before.iter().zip(after).map(|(b, a)| b + a).collect();
    println!(
        "sent {sent}: both {}, Kafka then spool {}, spooled {}",
        outcomes[BOTH], outcomes[KAFKA_THEN_SPOOL], outcomes[SPOOLED]
    );
    assert!(deepest > 100.0, "the spool never filled: {deepest}");
    assert!(outcomes[KAFKA_THEN_SPOOL] > 100, "{outcomes:?}");

    drained(&writer, Duration::from_secs(120)).await;
    assert_eq!(spool_depth(), 0.0);
    drop(writer);

    // Rocketry holds every record once, each queue in Kafka's order.
    let copies = copies_by_index(&rocketry, &topic, &run, sent).await;
    let missing: Vec<usize> = (0..sent).filter(|i| copies[*i] == 0).take(10).collect();
    assert!(
        missing.is_empty(),
        "records Rocketry never got: {missing:?}"
    );
    let repeated: Vec<usize> = (0..sent).filter(|i| copies[*i] > 1).take(10).collect();
    assert!(repeated.is_empty(), "records copied twice: {repeated:?}");

    // Kafka holds each once too, and parity finds every window clean.
    let (clean, report) = parity(&bootstrap, &rocketry.namesrv, &topic, &from);
    assert!(clean, "{report}");
    assert_eq!(kafka_records(&report), sent as u64, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_batch_does_not_copy_twice_what_it_wrote_before_another_queue_failed() {
    let Some(bootstrap) = kafka_peer() else {
        return;
    };
    let mut rocketry = Rocketry::standalone("");
    let topic = unique("partial");
    let run = unique("run");
    create_kafka_topic(&bootstrap, &topic);
    // One record of history in partition 1 that no mirror has copied yet: the writer's copies
    // for queue 1 must wait for the mirror.
    produce(&bootstrap, &topic, &run, (1, 2));
    // Rocketry is down while the application writes, so every copy is spooled in send order
    // (queue 0's first); the replay's first batch then writes queue 0 and fails at queue 1.
    rocketry.terminate();
    let spool = tempfile::tempdir().unwrap();
    let mut config = dual_write_config(&bootstrap, &topic, &rocketry.namesrv, &spool);
    config.retry_every = Duration::from_millis(100);
    let writer = migrate::DualWriter::open(config).await.unwrap();
    for i in 0..30 {
        writer.send(dual_record(&run, i)).await.unwrap();
    }
    rocketry.restart();
    // The replay retries its batch every 100 ms while the mirror is behind on queue 1.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        writer.spooled().await > 0,
        "the copies did not wait for the mirror"
    );
    let log = rocketry.data_dir.join("mirror.log");
    let _mirror = start_mirror(&bootstrap, &rocketry.namesrv, &topic, &log, None, &[]);
    drained(&writer, Duration::from_secs(60)).await;
    // Each queue holds its partition's records once, in Kafka's order.
    let broker = Client::connect(rocketry.broker_addr.as_deref().unwrap())
        .await
        .unwrap();
    for queue in 0..PARTITIONS {
        let mut offsets = Vec::new();
        each_copy(&broker, &topic, queue, |message| {
            offsets.push(message.properties.get("KAFKA_OFFSET").unwrap().to_string());
        })
        .await;
        let expected = 10 + usize::from(queue == 1);
        let in_order: Vec<String> = (0..expected).map(|o| o.to_string()).collect();
        assert_eq!(offsets, in_order, "queue {queue}");
    }
}

/// How many copies of each of the dual writer's records `0..sent` Rocketry holds, having
/// checked that every queue holds its partition's records in Kafka's order, each Kafka offset
/// once (`KAFKA_OFFSET` 0, 1, 2, ... with no gap).
async fn copies_by_index(rocketry: &Rocketry, topic: &str, run: &str, sent: usize) -> Vec<u32> {
    let broker = Client::connect(rocketry.broker_addr.as_deref().unwrap())
        .await
        .unwrap();
    let mut copies = vec![0u32; sent];
    for queue in 0..PARTITIONS {
        let mut next_source_offset = 0i64;
        each_copy(&broker, topic, queue, |message| {
            let p = &message.properties;
            let index: usize = p.get("index").unwrap().parse().unwrap();
            assert_eq!(index as i32 % PARTITIONS, queue);
            assert_eq!(
                p.get("KAFKA_OFFSET").unwrap(),
                next_source_offset.to_string(),
                "queue {queue}: copies out of order, missing or repeated"
            );
            assert_eq!(message.body, format!("{run}-{index}").as_bytes());
            copies[index] += 1;
            next_source_offset += 1;
        })
        .await;
    }
    copies
}

/// Kafka records each window holds, by what `rocketry migrate parity` printed.
fn kafka_records(report: &str) -> u64 {
    report
        .lines()
        .filter(|l| l.starts_with("window "))
        .map(|l| {
            let after = l.split("Kafka ").nth(1).unwrap();
            after.split(' ').next().unwrap().parse::<u64>().unwrap()
        })
        .sum()
}

/// A private Kafka of the peer script's (`KAFKA_INSTANCE`), stopped and removed when dropped,
/// for a test that pauses it.
struct PrivateKafka {
    env: [(&'static str, String); 3],
}

impl PrivateKafka {
    fn start(instance: &'static str, port: u16) -> PrivateKafka {
        let kafka = PrivateKafka {
            env: [
                ("KAFKA_INSTANCE", instance.to_string()),
                ("KAFKA_PORT", port.to_string()),
                ("KAFKA_HEAP", "384m".to_string()),
            ],
        };
        let output = kafka.script("start").output().unwrap();
        assert!(output.status.success(), "{}", printed(&output));
        kafka
    }

    fn script(&self, verb: &str) -> Command {
        let mut command = Command::new(repo_root().join("scripts/peers/kafka"));
        command
            .arg(verb)
            .envs(self.env.iter().map(|(k, v)| (*k, v)));
        command
    }

    /// Sends the broker `signal` (`STOP`, `CONT`).
    fn signal(&self, signal: &str) {
        let pid = self.script("pid").output().unwrap();
        let pid = String::from_utf8(pid.stdout).unwrap();
        let status = Command::new("kill")
            .args([&format!("-{signal}"), pid.trim()])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for PrivateKafka {
    fn drop(&mut self) {
        self.signal("CONT");
        let _ = self.script("stop").output();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dual_write_spools_whole_records_through_a_kafka_pause_and_both_sides_agree() {
    if kafka_peer().is_none() {
        return;
    }
    let kafka = PrivateKafka::start("kafka-paused", 19392);
    let bootstrap = "127.0.0.1:19392".to_string();
    let rocketry = Rocketry::standalone("");
    let topic = unique("paused");
    let run = unique("run");
    create_kafka_topic(&bootstrap, &topic);
    let from = (now_ms() - 1000).to_string();
    let spool = tempfile::tempdir().unwrap();
    let mut config = dual_write_config(&bootstrap, &topic, &rocketry.namesrv, &spool);
    config.kafka_timeout = Duration::from_secs(2);
    let writer = Arc::new(migrate::DualWriter::open(config).await.unwrap());

    let application = Application::start(writer.clone(), run.clone(), 0);
    application
        .wait_for(BOTH, 100, Duration::from_secs(60))
        .await;
    // Kafka stops answering (its sockets still take bytes), for 15 s.
    kafka.signal("STOP");
    let mut deepest = 0;
    let paused = Instant::now();
    while paused.elapsed() < Duration::from_secs(15) {
        deepest = deepest.max(writer.spooled().await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    kafka.signal("CONT");
    // The spool drains while the application keeps sending, and sends reach both sides again.
    let resumed = application.count(BOTH);
    application
        .wait_for(BOTH, resumed + 20, Duration::from_secs(120))
        .await;
    let (sent, outcomes) = application.stop().await;
    println!(
        "sent {sent}: both {}, Kafka then spool {}, spooled whole {}; the spool held up to {deepest}",
        outcomes[BOTH], outcomes[KAFKA_THEN_SPOOL], outcomes[SPOOLED]
    );
    assert!(outcomes[SPOOLED] > 100, "{outcomes:?}");
    drained(&writer, Duration::from_secs(120)).await;

    // Every record reached both sides, each queue in Kafka's order; a write that timed out
    // but was taken is in Kafka twice, and so its copy.
    let copies = copies_by_index(&rocketry, &topic, &run, sent).await;
    let missing: Vec<usize> = (0..sent).filter(|i| copies[*i] == 0).take(10).collect();
    assert!(
        missing.is_empty(),
        "records Rocketry never got: {missing:?}"
    );
    let repeated = copies.iter().filter(|c| **c > 1).count();
    println!("{repeated} records are in Kafka (and Rocketry) twice");
    let (clean, report) = parity(&bootstrap, &rocketry.namesrv, &topic, &from);
    assert!(clean, "{report}");
    let copied: u64 = copies.iter().map(|c| u64::from(*c)).sum();
    assert_eq!(kafka_records(&report), copied, "{report}");
}

/// The Kafka peer's SASL_SSL listener and the certificate it presents, when `scripts/test`
/// started the peer.
fn kafka_secure_peer() -> Option<(String, String)> {
    match (
        std::env::var("ROCKETRY_PEER_KAFKA_SASL_SSL"),
        std::env::var("ROCKETRY_PEER_KAFKA_CA"),
    ) {
        (Ok(addr), Ok(ca)) if !addr.is_empty() && !ca.is_empty() => Some((addr, ca)),
        _ => {
            println!("SKIPPED: ROCKETRY_PEER_KAFKA_SASL_SSL or ROCKETRY_PEER_KAFKA_CA is not set (run scripts/test)");
            None
        }
    }
}

/// librdkafka settings for the peer's SASL_SSL listener: TLS verified against its
/// certificate, SASL/PLAIN with `password`.
fn sasl_ssl(ca: &str, password: &str) -> Vec<String> {
    vec![
        "security.protocol=SASL_SSL".into(),
        format!("ssl.ca.location={ca}"),
        "sasl.mechanism=PLAIN".into(),
        "sasl.username=rocketry".into(),
        format!("sasl.password={password}"),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mirror_reads_kafka_over_tls_with_sasl_and_names_a_refused_login() {
    let (Some(bootstrap), Some((secure, ca))) = (kafka_peer(), kafka_secure_peer()) else {
        return;
    };
    let rocketry = Rocketry::standalone("");
    let topic = unique("secure");
    let run = unique("run");
    create_kafka_topic(&bootstrap, &topic);
    {
        let (bootstrap, topic, run) = (bootstrap.clone(), topic.clone(), run.clone());
        tokio::task::spawn_blocking(move || produce(&bootstrap, &topic, &run, (0, 1000)))
            .await
            .unwrap();
    }
    let broker = Client::connect(rocketry.broker_addr.as_deref().unwrap())
        .await
        .unwrap();

    // A wrong password: the mirror stops with an error, and its log says why.
    let refused_log = rocketry.data_dir.join("refused.log");
    let settings = sasl_ssl(&ca, "wrong-secret");
    let mut refused = start_mirror(
        &secure,
        &rocketry.namesrv,
        &topic,
        &refused_log,
        None,
        &settings,
    );
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(status) = refused.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the mirror kept running with a wrong password"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let text = std::fs::read_to_string(&refused_log).unwrap();
    assert!(!status.success(), "{text}");
    // The mirror's own error names the refusal (not a transport failure after a timeout).
    let error = text
        .lines()
        .find(|l| l.starts_with("Error: "))
        .unwrap_or("");
    assert!(
        error.contains("Kafka refused the connection")
            && error.contains("SASL authentication error: Authentication failed"),
        "{text}"
    );
    assert_eq!(copied(&broker, &topic).await, 0);

    // The right one: every record is copied over TLS.
    let log = rocketry.data_dir.join("mirror.log");
    let settings = sasl_ssl(&ca, "rocketry-secret");
    let mut mirror = start_mirror(&secure, &rocketry.namesrv, &topic, &log, None, &settings);
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
    wait_for(&broker, &topic, 1000, &mut mirror, log_text).await;
    mirror.kill();
    assert_eq!(copied(&broker, &topic).await, 1000);
}
