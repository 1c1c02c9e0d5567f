//! Message trace with the real Java 5.5.0 client and the real mqadmin 5.5.0: a traced
//! producer sends, one traced consumer group takes the message, another fails it, and
//! `mqadmin queryMsgTraceById` shows the send and each group's outcome, as it does against
//! the Apache RocketMQ 5.5.0 peer on the same scenario. `rocketry admin message trace`
//! prints the same rows.

mod support;

use support::*;

/// (type, group, status) of each row mqadmin's queryMsgTraceById printed, sorted.
type TraceRows = Vec<(String, String, String)>;

/// Runs the scenario against the cluster behind `namesrv` and returns the traced message's
/// id with what mqadmin printed about it.
fn traced_scenario(namesrv: &str, cluster: &str) -> (String, TraceRows) {
    let topic = unique("trace");
    let run = unique("run");
    // Created up front, so the scenario does not depend on the cluster auto-creating
    // topics (the Rocketry broker below does not).
    mqadmin(&["updateTopic", "-n", namesrv, "-c", cluster, "-t", &topic]);
    let sent = features(vec![
        "produce".into(),
        format!("namesrv={namesrv}"),
        format!("topic={topic}"),
        "count=1".into(),
        format!("run={run}"),
        "producerGroup=trace_producer".into(),
        "trace=true".into(),
    ]);
    assert_eq!(sent["sent"], 1, "{sent}");
    let msg_id = sent["msgIds"][0].as_str().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let ok = features(consume_args(
        namesrv,
        &topic,
        "trace_consumer_ok",
        &run,
        &dir.path().join("ok"),
        &["expect=1", "trace=true"],
    ));
    assert_eq!(ok["unique"], 1, "{ok}");
    let failing = features(consume_args(
        namesrv,
        &topic,
        "trace_consumer_failing",
        &run,
        &dir.path().join("failing"),
        &["fail=true", "stopAfter=1", "trace=true"],
    ));
    assert_eq!(failing["deliveries"], 1, "{failing}");
    // The consumers flushed their trace records before they stopped; the index may still
    // be a moment behind.
    let printed = mqadmin_until(
        &["queryMsgTraceById", "-n", namesrv, "-i", &msg_id],
        "showed fewer than three rows",
        |output| {
            let rows = trace_rows(&printed(output));
            (rows.len() >= 3).then_some(rows)
        },
    );
    (msg_id, printed)
}

fn trace_rows(text: &str) -> TraceRows {
    let mut rows: TraceRows = ["Pub", "Sub"]
        .iter()
        .flat_map(|kind| rows(text, kind))
        .map(|cells| {
            (
                cells[0].to_string(),
                cells[1].to_string(),
                cells[cells.len() - 1].to_string(),
            )
        })
        .collect();
    rows.sort();
    rows
}

#[test]
fn mqadmin_shows_the_send_and_each_groups_outcome_as_against_apache() {
    let Some(peer) = rocketmq_peer() else {
        return;
    };
    let rocketry = Rocketry::standalone("autoCreateTopicEnable=false\ntraceTopicEnable=true\n");
    let (msg_id, ours) = traced_scenario(&rocketry.namesrv, "DefaultCluster");
    let want: TraceRows = [
        ("Pub", "trace_producer", "success"),
        ("Sub", "trace_consumer_failing", "failed"),
        ("Sub", "trace_consumer_ok", "success"),
    ]
    .iter()
    .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
    .collect();
    assert_eq!(ours, want, "mqadmin queryMsgTraceById against Rocketry");
    let (_, apache) = traced_scenario(&peer, "PeerCluster");
    assert_eq!(ours, apache, "Rocketry (left) and Apache RocketMQ (right)");

    let shown = rocketry_admin(&rocketry.namesrv, &["message", "trace", "-i", &msg_id]);
    let mut rows: TraceRows = shown
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            let cell = |key: &str| row[key].as_str().unwrap().to_string();
            (cell("type"), cell("group"), cell("status"))
        })
        .collect();
    rows.sort();
    assert_eq!(rows, want, "rocketry admin message trace");
}
