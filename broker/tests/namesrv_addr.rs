//! Name servers scaled under a running broker: UPDATE_BROKER_CONFIG `namesrvAddr` (what the
//! operator and mqadmin `updateBrokerConfig -k namesrvAddr` send) makes the broker register
//! with a name server added to the list at once, and unregister from one taken off it, without
//! a restart. A list that would leave it registered with nobody is refused.

mod support;

use std::future::Future;
use std::time::{Duration, Instant};

use protocol::Client;
use support::*;

const BROKER: &str = "moving_broker";

/// Asks `check` every 100 ms until it holds; fails after `within`.
async fn until<F: Future<Output = bool>>(what: &str, within: Duration, check: impl Fn() -> F) {
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < within, "not {what} within {within:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("{what} after {:?}", started.elapsed());
}

/// Whether the name server routes `topic` to the broker.
async fn routes(namesrv: &Client, topic: &str) -> bool {
    namesrv.get_route_info(topic).await.is_ok_and(|route| {
        route
            .broker_datas
            .iter()
            .any(|broker| broker.broker_name == BROKER)
    })
}

/// Whether the name server lists the broker in its cluster info.
async fn lists(namesrv: &Client) -> bool {
    let info = namesrv.get_cluster_info().await.unwrap();
    info.broker_addr_table.contains_key(BROKER)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_broker_follows_its_name_server_list() {
    let a = Rocketry::namesrv();
    let broker = Rocketry::broker(&a.namesrv, BROKER);
    let admin = Client::connect(broker.broker_addr.as_deref().unwrap())
        .await
        .unwrap();
    create_topic_on(&admin, "Moving", 2).await;
    let a_lookup = Client::connect(&a.namesrv).await.unwrap();
    // An admin's topic reaches the name servers right after the answer, not before it.
    until("routed by A", Duration::from_secs(5), || {
        routes(&a_lookup, "Moving")
    })
    .await;

    // Scaled out: B is new, so the broker registers with it now, not after the 30 s period.
    let b = Rocketry::namesrv();
    let b_lookup = Client::connect(&b.namesrv).await.unwrap();
    assert!(!lists(&b_lookup).await);
    let both = format!("{};{}", a.namesrv, b.namesrv);
    admin
        .update_broker_config(&[("namesrvAddr", &both)])
        .await
        .unwrap();
    until("routed by B", Duration::from_secs(5), || {
        routes(&b_lookup, "Moving")
    })
    .await;
    assert!(routes(&a_lookup, "Moving").await);
    let config = admin.get_broker_config().await.unwrap();
    assert!(
        config.contains(&format!("namesrvAddr={both}\n")),
        "{config}"
    );

    // Scaled in: A is told the broker left it; B keeps it.
    admin
        .update_broker_config(&[("namesrvAddr", &b.namesrv)])
        .await
        .unwrap();
    until("gone from A", Duration::from_secs(5), || async {
        !lists(&a_lookup).await && !routes(&a_lookup, "Moving").await
    })
    .await;
    assert!(lists(&b_lookup).await && routes(&b_lookup, "Moving").await);
    assert_eq!(broker.http_get("/readyz"), (200, "ok\n".to_string()));

    // Never registered with nobody by accident.
    let refused = admin
        .update_broker_config(&[("namesrvAddr", "")])
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, protocol::Error::Remote { code: 1, remark: Some(remark) }
            if remark.contains("namesrvAddr")),
        "{refused:?}"
    );
    let config = admin.get_broker_config().await.unwrap();
    assert!(
        config.contains(&format!("namesrvAddr={}\n", b.namesrv)),
        "{config}"
    );
    // Still registering with B: a topic created now reaches it.
    create_topic_on(&admin, "AfterRefusal", 1).await;
    until("AfterRefusal routed by B", Duration::from_secs(5), || {
        routes(&b_lookup, "AfterRefusal")
    })
    .await;
    assert!(!lists(&a_lookup).await);
}
