//! The two remote-code-execution CVEs of Apache RocketMQ as regression tests: the requests
//! the published exploits send, at a running broker and name server, with the ACL on (as
//! nobody and as the administrator) and off. Each is refused and nothing reaches the disk.

mod support;

use std::path::Path;
use std::time::Duration;

use protocol::acl::Credentials;
use protocol::{Client, RemotingCommand, RequestCode, ResponseCode};
use support::Rocketry;

const ADMIN_SECRET: &str = "s3cret-of-test";

/// CVE-2023-33246: `rocketmqHome` becomes part of the command line Apache's broker runs for
/// its filter servers, which `filterServerNums` turns on.
fn broker_exploit(marker: &Path) -> Vec<u8> {
    format!(
        "filterServerNums=1\nrocketmqHome=-c $@|sh . echo touch {};\n",
        marker.display()
    )
    .into_bytes()
}

/// CVE-2023-37582: `configStorePath` is where Apache's name server writes its config, so
/// the next update writes attacker text to any file.
fn namesrv_exploit(target: &Path) -> Vec<u8> {
    format!(
        "configStorePath={}\nproductEnvName=test/path\\\\anywhere\n",
        target.display()
    )
    .into_bytes()
}

async fn ask(client: &Client, code: RequestCode, body: Vec<u8>) -> RemotingCommand {
    let request = RemotingCommand::request(code, &()).with_body(body);
    client
        .invoke(request, Duration::from_secs(5))
        .await
        .unwrap()
}

/// Sends both exploits, the name server's twice (its second update is what writes), and
/// checks every answer is NO_PERMISSION and that neither file exists.
async fn refused(rocketry: &Rocketry, signer: Option<&str>) {
    let scratch = tempfile::tempdir().unwrap();
    let marker = scratch.path().join("pwned");
    let target = scratch.path().join("evil.properties");
    let broker = Client::connect(rocketry.broker_addr.as_deref().unwrap())
        .await
        .unwrap();
    if let Some(user) = signer {
        broker.set_credentials(Credentials {
            access_key: user.into(),
            secret_key: ADMIN_SECRET.into(),
        });
    }
    let namesrv = Client::connect(&rocketry.namesrv).await.unwrap();
    let answers = [
        ask(
            &broker,
            RequestCode::UpdateBrokerConfig,
            broker_exploit(&marker),
        )
        .await,
        ask(
            &namesrv,
            RequestCode::UpdateNamesrvConfig,
            namesrv_exploit(&target),
        )
        .await,
        ask(
            &namesrv,
            RequestCode::UpdateNamesrvConfig,
            namesrv_exploit(&target),
        )
        .await,
    ];
    for answer in &answers {
        assert_eq!(
            answer.code,
            ResponseCode::NoPermission as i32,
            "signer {signer:?}: {:?}",
            answer.remark
        );
    }
    let config = broker
        .get_broker_config()
        .await
        .unwrap_or_else(|e| panic!("GET_BROKER_CONFIG as {signer:?}: {e}"));
    assert!(!config.contains("sh ."), "the payload was kept: {config}");
    let shown = namesrv.get_namesrv_config().await.unwrap();
    assert!(!shown.contains("evil.properties"), "{shown}");
    // Apache's broker runs the command when it next starts its filter servers; Rocketry has
    // none, so only the files are checked, not a wait for a command.
    assert!(!marker.exists() && !target.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_rce_requests_are_refused_with_the_acl_off() {
    let rocketry = Rocketry::standalone("");
    // Unsigned: with the ACL off, the broker's own rule refuses every path-like key.
    refused(&rocketry, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_rce_requests_are_refused_with_the_acl_on_even_from_the_administrator() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain_acl.yml");
    std::fs::write(
        &file,
        format!("accounts:\n  - {{accessKey: admin, secretKey: {ADMIN_SECRET}, admin: true}}\n"),
    )
    .unwrap();
    let rocketry = Rocketry::standalone(&format!("aclEnable=true\naclFile={}\n", file.display()));
    // Signed by the administrator, the ACL lets the requests through and the path rule
    // refuses them; unsigned, the ACL refuses them first.
    refused(&rocketry, Some("admin")).await;
    let scratch = tempfile::tempdir().unwrap();
    let anonymous = Client::connect(rocketry.broker_addr.as_deref().unwrap())
        .await
        .unwrap();
    let answer = ask(
        &anonymous,
        RequestCode::UpdateBrokerConfig,
        broker_exploit(&scratch.path().join("pwned")),
    )
    .await;
    assert_eq!(answer.code, ResponseCode::NoPermission as i32);
    assert!(answer.remark.unwrap_or_default().contains("no AccessKey"));
}
