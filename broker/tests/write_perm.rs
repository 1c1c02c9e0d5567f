//! Draining a broker group before a restart: WIPE_WRITE_PERM_OF_BROKER (mqadmin
//! `wipeWritePerm`) makes its queues read-only in the name server's routes, so producers
//! move to the other groups; ADD_WRITE_PERM_OF_BROKER (`addWritePerm`) gives write back.
//! The wipe has to outlive the broker's periodic REGISTER_BROKER, or it drains nothing.
//! The broker can also make itself read-only: UPDATE_BROKER_CONFIG `brokerPermission=4`
//! (mqadmin `updateBrokerConfig`), which it registers at once.

mod support;

use std::time::{Duration, Instant};

use protocol::body::perm;
use protocol::header::CreateTopicRequestHeader;
use protocol::Client;
use support::*;

const READ_ONLY: i32 = perm::READ;
const READ_WRITE: i32 = perm::READ | perm::WRITE;

fn topic_header(topic: &str) -> CreateTopicRequestHeader {
    CreateTopicRequestHeader {
        topic: topic.into(),
        default_topic: "TBW102".into(),
        read_queue_nums: 4,
        write_queue_nums: 4,
        perm: READ_WRITE,
        topic_filter_type: "SINGLE_TAG".into(),
        topic_sys_flag: Some(0),
        order: false,
        attributes: None,
        force: None,
    }
}

/// `(broker name, perm)` of each group in the topic's route; empty while it has none.
async fn perms(namesrv: &Client, topic: &str) -> Vec<(String, i32)> {
    let Ok(route) = namesrv.get_route_info(topic).await else {
        return Vec::new();
    };
    let mut perms: Vec<(String, i32)> = route
        .queue_datas
        .into_iter()
        .map(|queues| (queues.broker_name, queues.perm))
        .collect();
    perms.sort();
    perms
}

/// Waits up to 10 s for the topic's route to be `expected`.
async fn await_perms(namesrv: &Client, topic: &str, expected: &[(&str, i32)]) {
    let expected = to_owned(expected);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = perms(namesrv, topic).await;
        if now == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "route of {topic}: {now:?}, expected {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_broker_stays_read_only_across_its_registrations_until_write_is_added() {
    let namesrv = Rocketry::namesrv();
    // broker-a registers every second, so the test sees it register after the wipe.
    let a = Rocketry::broker_with_config(
        &namesrv.namesrv,
        "broker-a",
        "registerNameServerPeriod=1000\n",
    );
    let b = Rocketry::broker(&namesrv.namesrv, "broker-b");
    let a_client = Client::connect(a.broker_addr.as_deref().unwrap())
        .await
        .unwrap();
    let b_client = Client::connect(b.broker_addr.as_deref().unwrap())
        .await
        .unwrap();
    a_client
        .create_topic(&topic_header("Drained"))
        .await
        .unwrap();
    b_client
        .create_topic(&topic_header("Drained"))
        .await
        .unwrap();
    // Only on broker-a: its reappearance after a delete proves broker-a registered again.
    a_client
        .create_topic(&topic_header("Witness"))
        .await
        .unwrap();
    let ns = Client::connect(&namesrv.namesrv).await.unwrap();
    let both_writable = [("broker-a", READ_WRITE), ("broker-b", READ_WRITE)];
    await_perms(&ns, "Drained", &both_writable).await;
    await_perms(&ns, "Witness", &[("broker-a", READ_WRITE)]).await;

    let wiped = ns.wipe_write_perm_of_broker("broker-a").await.unwrap();
    // Drained, Witness and broker-a's own topics (TBW102, its cluster and broker names...).
    assert!(wiped >= 3, "{wiped}");
    let a_read_only = [("broker-a", READ_ONLY), ("broker-b", READ_WRITE)];
    assert_eq!(perms(&ns, "Drained").await, to_owned(&a_read_only));

    ns.delete_topic_in_namesrv("Witness").await.unwrap();
    await_perms(&ns, "Witness", &[("broker-a", READ_WRITE)]).await;
    assert_eq!(
        perms(&ns, "Drained").await,
        to_owned(&a_read_only),
        "broker-a's registration gave its queues write permission back"
    );

    let added = ns.add_write_perm_of_broker("broker-a").await.unwrap();
    assert_eq!(added, wiped);
    assert_eq!(perms(&ns, "Drained").await, to_owned(&both_writable));
    assert_eq!(ns.wipe_write_perm_of_broker("broker-z").await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_made_read_only_registers_its_queues_read_only_until_made_writable() {
    let namesrv = Rocketry::namesrv();
    let a = Rocketry::broker(&namesrv.namesrv, "broker-a");
    let b = Rocketry::broker(&namesrv.namesrv, "broker-b");
    let a_client = Client::connect(a.broker_addr.as_deref().unwrap())
        .await
        .unwrap();
    let b_client = Client::connect(b.broker_addr.as_deref().unwrap())
        .await
        .unwrap();
    a_client
        .create_topic(&topic_header("Drained"))
        .await
        .unwrap();
    b_client
        .create_topic(&topic_header("Drained"))
        .await
        .unwrap();
    let ns = Client::connect(&namesrv.namesrv).await.unwrap();
    let both_writable = [("broker-a", READ_WRITE), ("broker-b", READ_WRITE)];
    await_perms(&ns, "Drained", &both_writable).await;

    a_client
        .update_broker_config(&[("brokerPermission", "4")])
        .await
        .unwrap();
    // Registered at once: well before the 30 s period.
    await_perms(
        &ns,
        "Drained",
        &[("broker-a", READ_ONLY), ("broker-b", READ_WRITE)],
    )
    .await;
    let config = a_client.get_broker_config().await.unwrap();
    assert!(config.contains("brokerPermission=4\n"), "{config}");

    let refused = a_client
        .update_broker_config(&[("storePathRootDir", "/tmp/elsewhere")])
        .await
        .unwrap_err();
    assert!(
        matches!(refused, protocol::Error::Remote { code: 16, .. }),
        "{refused:?}"
    );

    a_client
        .update_broker_config(&[("brokerPermission", "6")])
        .await
        .unwrap();
    await_perms(&ns, "Drained", &both_writable).await;
}

fn to_owned(perms: &[(&str, i32)]) -> Vec<(String, i32)> {
    perms
        .iter()
        .map(|(name, bits)| (name.to_string(), *bits))
        .collect()
}
