//! Smoke tests of the Apache RocketMQ 5.5.0 peer: they prove that the real clients and
//! tools installed by `scripts/peers/` work against the real broker, so that the same
//! helpers can later judge Rocketry.

mod support;

use support::*;

#[test]
fn java_clients_send_and_receive_through_the_apache_broker() {
    let Some(namesrv) = rocketmq_peer() else {
        return;
    };
    for version in JAVA_CLIENTS {
        java_round_trip(&namesrv, version, "sync", "push", 200);
        java_round_trip(&namesrv, version, "batch", "litePull", 200);
    }
}

#[test]
fn mqadmin_lists_the_apache_cluster() {
    let Some(namesrv) = rocketmq_peer() else {
        return;
    };
    let out = mqadmin(&["clusterList", "-n", &namesrv]);
    let row = out
        .lines()
        .find(|line| line.starts_with("PeerCluster"))
        .unwrap_or_else(|| panic!("no PeerCluster row in:\n{out}"));
    let fields: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(fields[1], "broker-a", "{row}");
    assert_eq!(fields[2], "0", "{row}");
    assert_eq!(fields[3], "127.0.0.1:20911", "{row}");
}

#[test]
fn cpp_client_through_python_sends_and_receives() {
    let Some(namesrv) = rocketmq_peer() else {
        return;
    };
    let topic = unique("py_cpp");
    let got = python_cpp_client("cpp_client.py", &[namesrv, topic, "100".into()]);
    assert_eq!(got["sent"], 100, "{got}");
    assert_eq!(got["unique"], 100, "{got}");
    assert_eq!(got["duplicates"], 0, "{got}");
}
