//! The metrics endpoint (issue 14) of a real `rocketry standalone`: a known backlog made
//! by the real Java client reads the same in a scrape, in `rocketry admin consumer lag` and
//! in mqadmin's consumerProgress; and a client that invents consumer groups cannot grow the
//! scrape past `metricsMaxTopicGroupSeries`.

mod support;

use protocol::header::UpdateConsumerOffsetRequestHeader;
use protocol::Client;
use support::*;

const PRODUCED: u64 = KnownBacklog::PRODUCED;
const COMMITTED: u64 = KnownBacklog::COMMITTED;

/// mqadmin's `Consume Diff Total` for the group. mqadmin exits 0 even when its RPC timed
/// out (two busy cores), so a run without the line is tried again.
fn mqadmin_diff_total(namesrv: &str, group: &str) -> i64 {
    let mut last = String::new();
    for _ in 0..3 {
        last = mqadmin(&["consumerProgress", "-n", namesrv, "-g", group]);
        let total = last.lines().find_map(|line| {
            let (label, value) = line.split_once(':')?;
            (label.trim() == "Consume Diff Total").then(|| value.trim().parse().ok())?
        });
        if let Some(total) = total {
            return total;
        }
    }
    panic!("mqadmin consumerProgress printed no diff total:\n{last}")
}

#[test]
fn a_known_backlog_reads_the_same_in_a_scrape_rocketry_admin_and_mqadmin() {
    let rocketry = Rocketry::standalone("");
    let namesrv = rocketry.namesrv.clone();
    let backlog = KnownBacklog::make(&namesrv);
    let (topic, group) = (backlog.topic.as_str(), backlog.group.as_str());
    let series = backlog.series();
    let scrape = backlog.scrape_when_committed(&rocketry);
    println!("scrape:\n{scrape}");
    assert_eq!(
        metric(&scrape, "rocketmq_messages_in_total", &[("topic", topic)]),
        Some(PRODUCED as f64)
    );
    assert_eq!(
        metric(
            &scrape,
            "rocketmq_messages_in_total",
            &[
                ("topic", topic),
                ("message_type", "normal"),
                ("node_type", "broker")
            ]
        ),
        Some(PRODUCED as f64)
    );
    // The oldest uncommitted message is some milliseconds old by now.
    assert!(metric(&scrape, "rocketmq_consumer_lag_latency", &series).unwrap() > 0.0);
    assert!(metric(&scrape, "rocketmq_messages_out_total", &series).unwrap() >= COMMITTED as f64);
    assert!(
        metric(
            &scrape,
            "rocketmq_rpc_latency_count",
            &[("request_code", "send_message_v2")]
        )
        .unwrap()
            >= PRODUCED as f64
    );
    // Both halves of the standalone process are on the one endpoint.
    assert!(scrape.contains(r#"node_type="nameserver""#), "{scrape}");

    let lag = rocketry_admin(
        &namesrv,
        &["consumer", "lag", "--group", group, "--topic", topic],
    );
    println!("rocketry admin consumer lag: {lag}");
    assert_eq!(lag[0]["topic"], topic, "{lag}");
    assert_eq!(lag[0]["lag_messages"], PRODUCED - COMMITTED, "{lag}");
    let lag = rocketry_admin(&namesrv, &["consumer", "lag", "--group", group]);
    assert_eq!(
        lag.as_array()
            .unwrap()
            .iter()
            .find(|row| row["topic"] == topic)
            .unwrap()["lag_messages"],
        PRODUCED - COMMITTED,
        "{lag}"
    );

    let diff_total = mqadmin_diff_total(&namesrv, group);
    println!("mqadmin consumerProgress: Consume Diff Total: {diff_total}");
    assert_eq!(diff_total, (PRODUCED - COMMITTED) as i64);
}

#[test]
fn invented_groups_stay_within_the_cap_and_deleting_their_topic_drops_their_series() {
    const CAP: usize = 100;
    const INVENTED: usize = 1000;
    let rocketry = Rocketry::standalone(&format!("metricsMaxTopicGroupSeries={CAP}\n"));
    let topic = unique("invented");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = runtime.block_on(async {
        let client = Client::connect(rocketry.broker_addr.as_deref().unwrap())
            .await
            .unwrap();
        create_topic_on(&client, &topic, 1).await;
        for n in 0..INVENTED {
            client
                .update_consumer_offset(&UpdateConsumerOffsetRequestHeader {
                    consumer_group: format!("invented_{n}"),
                    topic: topic.clone(),
                    queue_id: 0,
                    commit_offset: 0,
                    broker_name: None,
                })
                .await
                .unwrap();
        }
        client
    });

    let scrape = rocketry.scrape();
    assert_eq!(series_count(&scrape, "rocketmq_consumer_lag_messages"), CAP);
    assert_eq!(series_count(&scrape, "rocketmq_consumer_lag_latency"), CAP);
    let dropped = metric(&scrape, "rocketry_metrics_series_dropped_total", &[]).unwrap();
    assert!(dropped >= (INVENTED - CAP) as f64, "{dropped}");
    // A second scrape writes the same series, refusing the rest again.
    let again = rocketry.scrape();
    assert_eq!(series_count(&again, "rocketmq_consumer_lag_messages"), CAP);
    let dropped_again = metric(&again, "rocketry_metrics_series_dropped_total", &[]).unwrap();
    assert!(dropped_again >= dropped + (INVENTED - CAP) as f64);

    runtime
        .block_on(client.delete_topic_in_broker(&topic))
        .unwrap();
    let scrape = rocketry.scrape();
    assert_eq!(
        series_count(&scrape, "rocketmq_consumer_lag_messages"),
        0,
        "{scrape}"
    );
}
