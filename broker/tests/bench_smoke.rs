//! Smoke test of the `bench` load generator (issue #8) against `rocketry standalone`: a few
//! seconds of produce-and-consume, then the report must show traffic, no errors and
//! percentiles; a backlog read from the start must get every message once. No timing is
//! asserted; the comparison is `scripts/bench/compare`.

mod support;

use bench::scenario::{ColdRead, FirstSend, Idle, ProduceConsume};
use bench::{Context, LoadConfig, Scenario};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_reports_traffic_latency_and_broker_usage() {
    let rocketry = Rocketry::standalone("");
    let ctx = Context {
        pids: vec![rocketry.pid()],
        label: Some("rocketry".into()),
        case: Some("smoke".into()),
    };

    let ready = FirstSend {
        namesrv: rocketry.namesrv.clone(),
        topic: "BenchSmokeReady".into(),
        since_unix_ms: bench::report::unix_ms(),
        timeout: std::time::Duration::from_secs(30),
    }
    .run(&ctx)
    .await
    .unwrap();
    assert!(ready.metrics["first_send_ms"] >= 0.0);

    let load = LoadConfig {
        namesrv: rocketry.namesrv.clone(),
        topic: "BenchSmoke".into(),
        queues: 4,
        producers: 2,
        inflight: 4,
        size: 256,
        batch: 1,
        consumers: 1,
        duration: 2.0,
        warmup: 0.5,
        ..LoadConfig::default()
    };
    let report = ProduceConsume { load: load.clone() }
        .run(&ctx)
        .await
        .unwrap();
    println!("{}", report.human());
    assert!(report.sent > 0, "{report:?}");
    assert_eq!(report.send_errors, 0, "{report:?}");
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert!(report.consumed > 0, "{report:?}");
    let send = report.send_latency.as_ref().expect("send percentiles");
    assert!(send.count > 0 && send.p50_us > 0.0 && send.p50_us <= send.p99_us);
    assert!(send.p99_us <= send.p999_us && send.p999_us <= send.max_us);
    let e2e = report.e2e_latency.as_ref().expect("end-to-end percentiles");
    assert!(e2e.count > 0 && e2e.p99_us > 0.0);
    let broker = report.broker.as_ref().expect("broker usage from /proc");
    assert!(broker.vmrss_peak_kib > 0 && broker.rssanon_peak_kib > 0);
    let json = serde_json::to_string(&report).unwrap();
    assert!(json.contains("\"p999_us\""));

    // Batches go through SEND_BATCH_MESSAGE.
    let batched = bench::scenario::Produce {
        load: LoadConfig {
            batch: 8,
            size: 128,
            consumers: 0,
            duration: 1.0,
            warmup: 0.0,
            ..load.clone()
        },
    }
    .run(&ctx)
    .await
    .unwrap();
    assert!(batched.sent > 0 && batched.sent % 8 == 0, "{batched:?}");
    assert_eq!(batched.send_errors, 0, "{:?}", batched.errors);

    // A paced load sends on schedule: never more than the rate allows (the first request of
    // each of the 8 slots is due at once), and all of it on a broker that keeps up.
    let paced = bench::scenario::Produce {
        load: LoadConfig {
            consumers: 0,
            duration: 2.0,
            warmup: 0.0,
            rate: Some(500.0),
            ..load.clone()
        },
    }
    .run(&ctx)
    .await
    .unwrap();
    assert_eq!(paced.send_errors, 0, "{:?}", paced.errors);
    assert!(
        paced.sent <= 1000 + 8 && paced.sent >= 500,
        "{} sent at 500 msg/s in {:.2} s",
        paced.sent,
        paced.elapsed_s
    );

    // A backlog of its own topic, read from the start by a new group: each message once.
    let backlog = LoadConfig {
        topic: "BenchSmokeBacklog".into(),
        consumers: 0,
        count: Some(400),
        warmup: 0.0,
        ..load.clone()
    };
    let filled = bench::scenario::Produce { load: backlog }
        .run(&ctx)
        .await
        .unwrap();
    assert_eq!((filled.sent, filled.send_errors), (400, 0), "{filled:?}");
    let read = ColdRead {
        namesrv: rocketry.namesrv.clone(),
        topic: "BenchSmokeBacklog".into(),
        queues: 4,
        consumers: 2,
        expect: 400,
        timeout: std::time::Duration::from_secs(60),
        data_dir: Some(rocketry.data_dir.clone()),
    }
    .run(&ctx)
    .await
    .unwrap();
    println!("{}", read.human());
    assert_eq!(read.consumed, 400, "{read:?}");
    assert!(read.errors.is_empty(), "{:?}", read.errors);
    assert!(read.metrics["consume_mib_per_s"] > 0.0, "{read:?}");
    let (data, cached) = (
        read.metrics["data_mib"],
        read.metrics["cached_at_start_mib"],
    );
    assert!(
        data > 0.0 && cached <= data,
        "{cached} of {data} MiB cached"
    );

    let idle = Idle { seconds: 0.5 }.run(&ctx).await.unwrap();
    assert!(idle.metrics["idle_vmrss_mib"] > 0.0);
}
