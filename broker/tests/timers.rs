//! Delivery at any time (RocketMQ 5.x timer messages) with the real Java 5.5.0 client:
//! `Message.setDeliverTimeMs`, a push consumer, and mqadmin. Message i of a run is due at
//! `start + (i * 7919) mod spread` (Features.java's `deliverAt` and `deliverSpreadMs`).

mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use support::deliveries::{deliveries, Delivery};
use support::*;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn due(start: i64, spread: i64, index: u64) -> i64 {
    start + (index as i64 * 7919) % spread
}

/// Sends `count` messages of `run` due from `start` over `spread` ms, on 8 threads; returns
/// when the last send was answered. The send timeout is long because the test is about
/// delivery times, and an unoptimized broker on a busy host can take seconds to answer.
fn send_timers(namesrv: &str, topic: &str, run: &str, count: u64, start: i64, spread: i64) -> i64 {
    let sent = features(vec![
        "produce".into(),
        format!("namesrv={namesrv}"),
        format!("topic={topic}"),
        format!("count={count}"),
        format!("run={run}"),
        format!("deliverAt={start}"),
        format!("deliverSpreadMs={spread}"),
        "threads=8".into(),
        "sendTimeoutMs=30000".into(),
    ]);
    assert_eq!(sent["sent"], count, "{sent}");
    now_ms()
}

/// What a new consumer group gets of `run`, once it has `count` distinct messages.
fn receive(namesrv: &str, topic: &str, run: &str, count: u64) -> Vec<Delivery> {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("deliveries");
    features(consume_args(
        namesrv,
        topic,
        &unique("timer_consumer"),
        run,
        &out,
        &[&format!("expect={count}"), "timeoutMs=180000"],
    ));
    deliveries(&out)
}

/// Each message once, stored (and so delivered) no earlier than due and at most `late_ms`
/// after; received no earlier than due. One sent after its time (a slow host) is due when
/// it was sent.
fn assert_on_time(got: &[Delivery], count: u64, start: i64, spread: i64, late_ms: i64) {
    let mut indexes: Vec<u64> = got.iter().map(|d| d.index).collect();
    indexes.sort_unstable();
    assert_eq!(indexes, (0..count).collect::<Vec<_>>(), "each message once");
    let mut latest = 0;
    for delivery in got {
        let due = due(start, spread, delivery.index);
        let stored = delivery.store_ms.expect("the harness reports store times");
        assert!(
            stored >= due && delivery.received_ms >= due,
            "message {} due at {due} stored at {stored}, received at {}: early",
            delivery.index,
            delivery.received_ms
        );
        latest = latest.max(stored - due.max(delivery.born_ms));
    }
    println!("{count} timers: the latest stored {latest} ms after its time");
    assert!(latest <= late_ms, "a timer stored {latest} ms late");
}

#[test]
fn ten_thousand_timers_arrive_no_earlier_than_due_and_within_a_second() {
    let rocketry = Rocketry::standalone("");
    let namesrv = &rocketry.namesrv;
    let topic = unique("timer");
    let run = unique("timerrun");
    let (count, spread) = (10_000, 60_000);
    create_topic_in_cluster(namesrv, "DefaultCluster", &topic);
    // Due from 20 s on, so that every send is usually done before the first is due.
    let start = now_ms() + 20_000;
    let sent_ms = send_timers(namesrv, &topic, &run, count, start, spread);
    println!("sent {} ms before the first was due", start - sent_ms);
    let got = receive(namesrv, &topic, &run, count);
    assert_on_time(&got, count, start, spread, 1000);
    let status = admin(&["topicStatus", "-n", namesrv, "-t", &topic]);
    let stored: u64 = rows(&status, "broker-a")
        .iter()
        .map(|cells| cells[3].parse::<u64>().unwrap())
        .sum();
    assert_eq!(stored, count, "mqadmin topicStatus: {status}");
    // A message whose time has come when the broker gets it is stored at once, past the
    // wheel (as in RocketMQ). That happens only when sending outlasted the 20 s head start:
    // to those born after their time, at least, and to those due before the last answer,
    // at most.
    let scrape = rocketry.scrape();
    let wheeled = |name| metric(&scrape, name, &[("topic", &topic)]).unwrap_or(0.0) as u64;
    let (enqueued, dequeued) = (
        wheeled("rocketmq_timer_enqueue_total"),
        wheeled("rocketmq_timer_dequeue_total"),
    );
    assert_eq!(enqueued, dequeued, "all that went on the wheel came off it");
    let born_late = got
        .iter()
        .filter(|d| d.born_ms >= due(start, spread, d.index))
        .count() as u64;
    let due_before_sent = (0..count)
        .filter(|&i| due(start, spread, i) <= sent_ms)
        .count() as u64;
    let direct = count - enqueued.min(count);
    println!("{enqueued} through the wheel, {direct} stored at once");
    assert!(
        enqueued <= count && (born_late..=due_before_sent).contains(&direct),
        "{enqueued} of {count} through the wheel: {born_late} were born late, \
         {due_before_sent} due before the last send's answer"
    );
}

// Killed with SIGKILL while half of 1,000 timers are delivered and half pending: after the
// restart every one arrives once, none early.
#[test]
fn a_killed_broker_delivers_every_pending_timer_once() {
    let mut rocketry = Rocketry::standalone("");
    let namesrv = rocketry.namesrv.clone();
    let topic = unique("timerk");
    let run = unique("timerrun");
    let (count, spread) = (1000, 10_000);
    create_topic_in_cluster(&namesrv, "DefaultCluster", &topic);
    let start = now_ms() + 15_000;
    let sent_ms = send_timers(&namesrv, &topic, &run, count, start, spread);
    println!("sent {} ms before the first was due", start - sent_ms);
    let half = start + spread / 2 - now_ms();
    std::thread::sleep(Duration::from_millis(half.max(0) as u64));
    rocketry.kill();
    rocketry.start("Rocketry standalone is ready");
    let got = receive(&namesrv, &topic, &run, count);
    // Late by the restart for those due while the broker was down.
    assert_on_time(&got, count, start, spread, 30_000);
}
