//! The health endpoints Kubernetes probes (issue 13): `/livez` answers whenever the process
//! does, a long store recovery included; a broker's `/readyz` answers 200 only once its store
//! has recovered and a name server has accepted it, and 503 with the reason before; a name
//! server's once it listens. Health stays when metrics are disabled.

mod support;

use std::time::{Duration, Instant};

use support::*;

fn ok() -> (u16, String) {
    (200, "ok\n".to_string())
}

/// Polls `/readyz` until it answers 200 within `limit`, checking `/livez` at every poll.
fn until_ready(rocketry: &Rocketry, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        assert_eq!(rocketry.http_get("/livez"), ok());
        let (status, reason) = rocketry.http_get("/readyz");
        if status == 200 {
            return;
        }
        assert_eq!(status, 503, "{reason}");
        assert!(Instant::now() < deadline, "never ready: {reason}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_broker_is_ready_once_a_name_server_accepts_it_and_alive_throughout() {
    // Nothing listens at the broker's name server address yet.
    let namesrv_port = free_port();
    let broker =
        Rocketry::broker_with_config(&format!("127.0.0.1:{namesrv_port}"), &unique("health"), "");
    assert_eq!(broker.http_get("/livez"), ok());
    assert_eq!(
        broker.http_get("/readyz"),
        (
            503,
            "not registered with any name server yet (1 in namesrvAddr)\n".to_string()
        )
    );

    // Its failed registrations are tried again after 1, 2, 4 and then every 5 s, not the
    // 30 s of registerNameServerPeriod: ready within seconds of the name server's start.
    std::thread::sleep(Duration::from_secs(3));
    let namesrv = Rocketry::namesrv_on(namesrv_port);
    assert_eq!(namesrv.http_get("/livez"), ok());
    assert_eq!(namesrv.http_get("/readyz"), ok());
    until_ready(&broker, Duration::from_secs(12));
    // Metrics (PROM, the default) share the endpoint.
    assert_eq!(broker.http_get("/metrics").0, 200);
}

#[test]
fn a_broker_recovering_its_store_is_alive_and_not_ready() {
    let namesrv = Rocketry::namesrv();
    let mut broker = Rocketry::broker_unstarted(&namesrv.namesrv, &unique("recovering"), "");
    // The fault point stalls recovery far past this test, standing for a long CommitLog walk.
    broker
        .env
        .push(("FAILPOINTS".into(), "store::recover=sleep(600000)".into()));
    broker.start("http endpoint ready");
    assert_eq!(broker.http_get("/livez"), ok());
    assert_eq!(
        broker.http_get("/readyz"),
        (503, "recovering the store\n".to_string())
    );
    assert!(!broker.log_text().contains("broker ready"));
}

#[test]
fn with_metrics_disabled_health_still_answers_and_metrics_is_404() {
    let rocketry = Rocketry::standalone("metricsExporterType=DISABLE\n");
    assert_eq!(rocketry.http_get("/metrics").0, 404);
    until_ready(&rocketry, Duration::from_secs(30));
}
