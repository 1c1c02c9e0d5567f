//! The real Java client reaching `rocketry standalone` through links that fail under it
//! (the `faults` crate's proxy, no privileges): connections reset while sends are in flight,
//! and partitions that heal. Whatever the client saw acknowledged is consumed, and the broker
//! stays up. A send whose answer was lost with its connection is retried by the client, so
//! some messages arrive twice: at least once is what RocketMQ promises a producer.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use faults::Proxy;
use support::*;

const COUNT: u64 = 2000;

#[test]
fn what_the_java_client_saw_acknowledged_survives_resets_and_a_partition() {
    // The broker (and the name server beside it) listens on 127.0.0.2 and tells clients
    // 127.0.0.1, where the proxy is: every connection a client makes to the broker goes
    // through the proxy.
    let mut rocketry = Rocketry::standalone(
        "bindAddress=127.0.0.2\nbrokerIP1=127.0.0.1\nmetricsPromExporterHost=127.0.0.1\n\
         flushDiskType=SYNC_FLUSH\n",
    );
    let namesrv = rocketry.namesrv.replace("127.0.0.1", "127.0.0.2");
    let advertised: SocketAddr = rocketry.broker_addr.clone().unwrap().parse().unwrap();
    let listening = SocketAddr::from(([127, 0, 0, 2], advertised.port()));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let proxy = Arc::new(
        runtime
            .block_on(Proxy::start_on(advertised, listening))
            .unwrap(),
    );

    let sending = Arc::new(AtomicBool::new(true));
    let faults = {
        let (proxy, sending) = (Arc::clone(&proxy), Arc::clone(&sending));
        runtime.spawn(async move {
            let mut cuts = 0;
            let mut partitions = 0;
            // Let the client find its route and start sending first.
            tokio::time::sleep(Duration::from_secs(3)).await;
            while sending.load(Ordering::Relaxed) {
                if cuts % 5 == 4 {
                    proxy.partition();
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    proxy.heal();
                    partitions += 1;
                } else {
                    proxy.cut();
                }
                cuts += 1;
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            (cuts - partitions, partitions)
        })
    };

    let dir = tempfile::tempdir().unwrap();
    let (acked_file, seen_file) = (dir.path().join("acked"), dir.path().join("seen"));
    let topic = unique("cut");
    let run = unique("run");
    let sent = java_client(
        "5.5.0",
        &[
            "produce".into(),
            format!("namesrv={namesrv}"),
            format!("topic={topic}"),
            format!("count={COUNT}"),
            "mode=sync".into(),
            format!("run={run}"),
            format!("acked={}", acked_file.display()),
        ],
    );
    sending.store(false, Ordering::Relaxed);
    let (resets, partitions) = runtime.block_on(faults).unwrap();
    proxy.heal();
    let acked = indexes(&acked_file);
    assert_eq!(acked.len() as u64, sent["sent"].as_u64().unwrap(), "{sent}");
    // The client retries a send that fails (twice, by default), so nearly all get through.
    assert!(acked.len() as u64 >= COUNT * 9 / 10, "{sent}");
    // The faults hit the sends: without them this test would prove nothing.
    assert!(
        resets >= 4 && partitions >= 1,
        "{resets} resets and {partitions} partitions while sending: {sent}"
    );
    assert!(
        proxy.accepted() > resets / 2,
        "the client reconnected only {} times after {resets} resets",
        proxy.accepted()
    );

    // Every message sent may have been stored (an answer lost with its connection): wait
    // for all of them, and settle for the acknowledged ones when the rest never come.
    let got = lite_pull_all(
        &namesrv,
        &topic,
        &run,
        COUNT as usize,
        &seen_file,
        Duration::from_secs(30),
    );
    let seen = indexes(&seen_file);
    assert_all_consumed(&acked, &seen, &got);
    println!(
        "{resets} resets, {partitions} partitions; {} of {COUNT} acknowledged, {} consumed, \
         {} connections through the proxy",
        acked.len(),
        seen.len(),
        proxy.accepted()
    );
    let status = rocketry.terminate();
    assert!(status.success(), "{status}\n{}", rocketry.log_text());
    assert!(!rocketry.log_text().contains("panicked"));
}
