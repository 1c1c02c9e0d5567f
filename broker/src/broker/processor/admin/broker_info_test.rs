use protocol::{RemotingCommand, RequestCode, ResponseCode};

use crate::broker::Broker;
use crate::config::BrokerConfig;
use crate::server::{Channel, Service};

async fn ask(broker: &Broker, code: RequestCode, body: &str) -> RemotingCommand {
    let (channel, _outbound) = Channel::detached(1);
    let request = RemotingCommand::request(code, &()).with_body(body.to_string());
    broker.handle(request, &channel).await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broker_config_update_changes_the_permission_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::open(
        BrokerConfig::default(),
        store::StoreConfig::with_root(dir.path()),
    )
    .unwrap();
    let version = broker.topics.snapshot().data_version;

    let answer = ask(
        &broker,
        RequestCode::UpdateBrokerConfig,
        "brokerPermission=4\n",
    )
    .await;
    assert_eq!(answer.code, ResponseCode::Success.as_i32(), "{answer:?}");
    assert_eq!(broker.permission(), 4);
    // The name servers only take the new perms under a new version.
    assert_ne!(broker.topics.snapshot().data_version, version);
    let config = ask(&broker, RequestCode::GetBrokerConfig, "").await;
    let text = String::from_utf8(config.body.to_vec()).unwrap();
    assert!(text.contains("brokerPermission=4\n"), "{text}");

    for (body, remark) in [
        ("storePathRootDir=/tmp/x\n", "storePathRootDir names a file"),
        ("rocketmqHome=/tmp/x\n", "rocketmqHome names a file"),
        (
            "brokerName=other\n",
            "brokerName cannot be changed at run time",
        ),
        (
            "brokerPermission=9\n",
            "brokerPermission value: 9 is invalid.",
        ),
    ] {
        let refused = ask(&broker, RequestCode::UpdateBrokerConfig, body).await;
        assert_eq!(refused.code, ResponseCode::NoPermission.as_i32(), "{body}");
        let text = refused.remark.unwrap_or_default();
        assert!(text.starts_with(remark), "{body}: {text}");
    }
    assert_eq!(broker.permission(), 4);
    assert_eq!(broker.config().broker_name, "broker-a");
    broker.begin_shutdown();
}
