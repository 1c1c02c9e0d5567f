//! Rocketry judged by clients no one here wrote: the Java remoting clients 5.5.0 and 4.9.8,
//! the C++ client through Python, and mqadmin, against a fresh `rocketry` process.

mod support;

use support::*;

const PER_MODE: u64 = 10_000;
const MODES: [&str; 4] = ["sync", "async", "oneway", "batch"];

/// Sync, async, oneway and batch sends of 10,000 messages each with one client version; a
/// push and a litePull consumer each get all 40,000 once, in queue order. Then the broker
/// restarts (SYNC_FLUSH: every acknowledged message must survive), 1,000 more arrive, and
/// both consumers resume from their committed offsets: they get exactly the new ones.
fn java_client_against_rocketry(version: &str) {
    let mut rocketry = Rocketry::standalone("flushDiskType=SYNC_FLUSH\n");
    let namesrv = rocketry.namesrv.clone();
    let topic = unique(&format!("java{}", version.replace('.', "")));
    let run = unique("run");
    for (index, mode) in MODES.iter().enumerate() {
        produce(
            version,
            &namesrv,
            &topic,
            mode,
            index as u64 * PER_MODE,
            PER_MODE,
            &run,
        );
    }
    let total = PER_MODE * MODES.len() as u64;
    for kind in ["push", "litePull"] {
        let got = consume(
            version,
            &namesrv,
            &topic,
            &format!("{topic}_{kind}"),
            kind,
            total,
            &run,
        );
        assert_exactly(&got, 0, total, &format!("{version} {kind}"));
    }

    let status = rocketry.terminate();
    assert!(
        status.success(),
        "SIGTERM exit: {status}\n{}",
        rocketry.log_text()
    );
    rocketry.restart();

    produce(version, &namesrv, &topic, "sync", total, 1000, &run);
    for kind in ["push", "litePull"] {
        let got = consume(
            version,
            &namesrv,
            &topic,
            &format!("{topic}_{kind}"),
            kind,
            1000,
            &run,
        );
        assert_exactly(
            &got,
            total,
            1000,
            &format!("{version} {kind} after restart"),
        );
    }
    // A group that has never consumed reads everything the broker acknowledged.
    let everything = consume(
        version,
        &namesrv,
        &topic,
        &format!("{topic}_new"),
        "litePull",
        total + 1000,
        &run,
    );
    assert_exactly(
        &everything,
        0,
        total + 1000,
        &format!("{version} new group after restart"),
    );
}

#[test]
fn java_client_5_5_0_against_rocketry() {
    java_client_against_rocketry("5.5.0");
}

#[test]
fn java_client_4_9_8_against_rocketry() {
    java_client_against_rocketry("4.9.8");
}

#[test]
fn cpp_client_through_python_against_rocketry() {
    let rocketry = Rocketry::standalone("");
    let got = python_cpp_client(
        "cpp_client.py",
        &[rocketry.namesrv.clone(), unique("py_cpp"), "1000".into()],
    );
    assert_eq!(got["sent"], 1000, "{got}");
    assert_eq!(got["unique"], 1000, "{got}");
    assert_eq!(got["duplicates"], 0, "{got}");
    assert_eq!(got["foreign"], 0, "{got}");
}

/// One name server, two brokers: routes list both, sends spread over both, a consumer
/// reads from both.
#[test]
fn two_brokers_behind_one_name_server() {
    let namesrv = Rocketry::namesrv();
    let a = Rocketry::broker(&namesrv.namesrv, "broker-a");
    let b = Rocketry::broker(&namesrv.namesrv, "broker-b");
    let topic = unique("two_brokers");
    let run = unique("run");
    for broker in [&a, &b] {
        let addr = broker.broker_addr.clone().unwrap();
        let out = mqadmin(&[
            "updateTopic",
            "-b",
            &addr,
            "-t",
            &topic,
            "-r",
            "4",
            "-w",
            "4",
        ]);
        assert!(out.contains("success"), "{out}");
    }
    let route = mqadmin(&["topicRoute", "-n", &namesrv.namesrv, "-t", &topic]);
    for name in ["broker-a", "broker-b"] {
        assert!(route.contains(name), "route lacks {name}:\n{route}");
    }
    produce("5.5.0", &namesrv.namesrv, &topic, "sync", 0, 1000, &run);
    let got = consume(
        "5.5.0",
        &namesrv.namesrv,
        &topic,
        &unique("cg"),
        "push",
        1000,
        &run,
    );
    assert_exactly(&got, 0, 1000, "two brokers");
    assert_eq!(
        got["brokers"], 2,
        "messages came from one broker only: {got}"
    );
    assert_eq!(got["queues"], 8, "{got}");
}
