use protocol::{RemotingCommand, RequestCode, ResponseCode};

use crate::broker::Broker;
use crate::config::BrokerConfig;
use crate::server::{Channel, Service};

async fn ask(broker: &Broker, code: RequestCode, body: &str) -> RemotingCommand {
    let (channel, _outbound) = Channel::detached(1);
    let request = RemotingCommand::request(code, &()).with_body(body.to_string());
    broker.handle(request, &channel).await.unwrap().joined()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broker_config_update_changes_the_permission_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::open_default(dir.path());
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

#[tokio::test(flavor = "multi_thread")]
async fn a_name_server_list_update_is_taken_whole_and_never_left_empty() {
    let dir = tempfile::tempdir().unwrap();
    let config = BrokerConfig {
        namesrv_addr: "127.0.0.1:1".into(),
        ..BrokerConfig::default()
    };
    let broker = Broker::open(config, store::StoreConfig::with_root(dir.path())).unwrap();

    for (body, remark) in [
        ("namesrvAddr=\n", "no name server left"),
        ("namesrvAddr= ; \n", "no name server left"),
        ("namesrvAddr=127.0.0.1:2,127.0.0.1:3\n", "is not host:port"),
        // Whole or not at all: the good key does not change either.
        (
            "brokerPermission=4\nnamesrvAddr=127.0.0.1\n",
            "is not host:port",
        ),
    ] {
        let refused = ask(&broker, RequestCode::UpdateBrokerConfig, body).await;
        assert_eq!(refused.code, ResponseCode::SystemError.as_i32(), "{body}");
        let text = refused.remark.unwrap_or_default();
        assert!(
            text.contains("namesrvAddr") && text.contains(remark),
            "{body}: {text}"
        );
    }
    assert_eq!(broker.permission(), 6);
    assert_eq!(broker.registrar.namesrv_count(), 1);

    let answer = ask(
        &broker,
        RequestCode::UpdateBrokerConfig,
        "namesrvAddr=127.0.0.1:2;127.0.0.1:3\n",
    )
    .await;
    assert_eq!(answer.code, ResponseCode::Success.as_i32(), "{answer:?}");
    assert_eq!(broker.registrar.namesrv_count(), 2);
    let config = ask(&broker, RequestCode::GetBrokerConfig, "").await;
    let text = String::from_utf8(config.body.to_vec()).unwrap();
    assert!(
        text.contains("namesrvAddr=127.0.0.1:2;127.0.0.1:3\n"),
        "{text}"
    );
    broker.begin_shutdown();
}
