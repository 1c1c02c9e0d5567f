//! The ACL against real clients: the Java client's own signing hook (`AclClientRPCHook`),
//! mqadmin signing with `tools.yml`, and the decision table of docs/security.md, made here
//! from a running broker so that no request code can be served without a row.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use protocol::acl::Credentials;
use protocol::{Client, RemotingCommand, RequestCode, ResponseCode};
use serde_json::Value;
use support::{repo_root, Rocketry};

const SECRET: &str = "s3cret-of-test";

/// `admin` may do anything; `producer` may only publish to `orders`; `consumer` may only
/// take from `orders` in group `billing`; `wide` has every `orders*` topic but
/// `orders-audit`.
const ACCOUNTS: &str = r#"
accounts:
  - accessKey: admin
    secretKey: s3cret-of-test
    admin: true
  - accessKey: producer
    secretKey: s3cret-of-test
    topicPerms: [orders=PUB]
  - accessKey: consumer
    secretKey: s3cret-of-test
    topicPerms: [orders=SUB]
    groupPerms: [billing=SUB]
  - accessKey: wide
    secretKey: s3cret-of-test
    topicPerms: ["orders*=PUB|SUB", "orders-audit=DENY"]
"#;

/// A standalone broker with the ACL on, reading `accounts` from a file of its own; the file
/// lives as long as the returned directory.
fn broker_with_acl(accounts: &str) -> (Rocketry, tempfile::TempDir) {
    broker_with_acl_and(accounts, "")
}

/// [`broker_with_acl`] with more broker.conf lines.
fn broker_with_acl_and(accounts: &str, config: &str) -> (Rocketry, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain_acl.yml");
    std::fs::write(&file, accounts).unwrap();
    let rocketry = Rocketry::standalone(&format!(
        "aclEnable=true\naclFile={}\n{config}",
        file.display()
    ));
    (rocketry, dir)
}

/// `rocketry admin` of this build, signing as `user`; what it printed.
fn rocketry_admin_as(user: &str, namesrv: &str, args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_rocketry"))
        .args(["admin", "-n", namesrv])
        .args(args)
        .env("ROCKETRY_ACCESS_KEY", user)
        .env("ROCKETRY_SECRET_KEY", SECRET)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "rocketry admin {args:?} as {user}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn credentials(user: &str, secret: &str) -> Vec<String> {
    vec![format!("accessKey={user}"), format!("secretKey={secret}")]
}

/// The Java 5.5.0 client sends `count` messages to `topic`, signing as `user` (or not at all).
fn produce_as(namesrv: &str, topic: &str, count: u32, signer: &[String]) -> Value {
    let mut args = vec![
        "produce".to_string(),
        format!("namesrv={namesrv}"),
        format!("topic={topic}"),
        format!("count={count}"),
        "sendTimeoutMs=5000".into(),
    ];
    args.extend_from_slice(signer);
    support::java_client("5.5.0", &args)
}

fn consume_as(
    namesrv: &str,
    topic: &str,
    group: &str,
    expect: u32,
    timeout_ms: u32,
    user: &str,
) -> Value {
    let mut args = vec![
        "consume".to_string(),
        format!("namesrv={namesrv}"),
        format!("topic={topic}"),
        format!("group={group}"),
        "type=litePull".into(),
        format!("expect={expect}"),
        format!("timeoutMs={timeout_ms}"),
    ];
    args.extend(credentials(user, SECRET));
    support::java_client("5.5.0", &args)
}

fn assert_refused(sent: &Value, remark: &str) {
    assert_eq!(sent["sent"], 0, "{sent}");
    let error = sent["firstError"].as_str().unwrap_or_default();
    assert!(
        error.contains("CODE: 16") && error.contains(remark),
        "wanted NO_PERMISSION (16) with {remark:?}: {sent}"
    );
}

#[test]
fn java_clients_are_authenticated_and_held_to_their_grants() {
    // The refused clients below fail authentication many times (each send is tried three
    // times, besides heartbeats); this test wants each refusal answered at once.
    let (rocketry, _acl) = broker_with_acl_and(ACCOUNTS, "aclFreeAuthenticationFailures=100000\n");
    let n = &rocketry.namesrv;
    for topic in ["orders", "orders-audit", "orders-eu"] {
        rocketry_admin_as("admin", n, &["topic", "create", "-t", topic]);
    }

    let sent = produce_as(n, "orders", 20, &credentials("producer", SECRET));
    assert_eq!(
        (sent["sent"].as_u64(), sent["failed"].as_u64()),
        (Some(20), Some(0)),
        "{sent}"
    );
    // The 4.x client signs in its own rocketmq-acl module, the same way.
    let mut args = vec![
        "produce".to_string(),
        format!("namesrv={n}"),
        "topic=orders".into(),
        "count=5".into(),
        "first=20".into(),
    ];
    args.extend(credentials("producer", SECRET));
    let sent = support::java_client("4.9.8", &args);
    assert_eq!(sent["sent"], 5, "4.9.8: {sent}");

    assert_refused(
        &produce_as(n, "orders", 1, &credentials("producer", "not-the-secret")),
        "check signature failed for User:producer",
    );
    assert_refused(&produce_as(n, "orders", 1, &[]), "no AccessKey");
    assert_refused(
        &produce_as(n, "orders", 1, &credentials("nobody", SECRET)),
        "User:nobody is not found",
    );
    // SUB only: cannot send.
    assert_refused(
        &produce_as(n, "orders", 1, &credentials("consumer", SECRET)),
        "User:consumer has no Pub permission on Topic:orders",
    );
    // A DENY on one topic holds inside a prefix grant.
    let sent = produce_as(n, "orders-eu", 3, &credentials("wide", SECRET));
    assert_eq!(sent["sent"], 3, "{sent}");
    assert_refused(
        &produce_as(n, "orders-audit", 1, &credentials("wide", SECRET)),
        "User:wide has no Pub permission on Topic:orders-audit",
    );

    let got = consume_as(n, "orders", "billing", 25, 60_000, "consumer");
    assert_eq!(got["unique"], 25, "{got}");
    // PUB only: cannot consume, even in a new group that would get all 25. The client only
    // logs its refusals, so the broker's count of NO_PERMISSION answers to consumer
    // requests shows why nothing arrived.
    let refused_before = refused_consumer_requests(&rocketry.scrape());
    let got = consume_as(n, "orders", "billing-audit", 25, 6_000, "producer");
    assert_eq!(got["unique"], 0, "{got}");
    let refused_pulls = refused_consumer_requests(&rocketry.scrape()) - refused_before;
    assert!(refused_pulls > 0.0, "no refused consumer request counted");
}

/// NO_PERMISSION answers to heartbeats, offset queries and pulls so far.
fn refused_consumer_requests(scrape: &str) -> f64 {
    let codes = [
        "heart_beat",
        "query_consumer_offset",
        "pull_message",
        "lite_pull_message",
    ];
    scrape
        .lines()
        .filter(|line| {
            line.starts_with("rocketmq_rpc_latency_count")
                && line.contains("response_code=\"no_permission\"")
                && codes
                    .iter()
                    .any(|code| line.contains(&format!("request_code=\"{code}\"")))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Runs mqadmin signing as `user` and returns everything it printed (it exits 0 on failure).
fn mqadmin_as(user: &str, args: &[&str]) -> String {
    let output = Command::new(repo_root().join("scripts/peers/rocketmq"))
        .arg("mqadmin")
        .args(args)
        .env("MQADMIN_ACCESS_KEY", user)
        .env("MQADMIN_SECRET_KEY", SECRET)
        .output()
        .expect("failed to spawn mqadmin");
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn only_administrators_change_the_broker_through_mqadmin() {
    let (rocketry, _acl) = broker_with_acl(ACCOUNTS);
    let n = rocketry.namesrv.as_str();
    let broker = rocketry.broker_addr.clone().unwrap();
    rocketry_admin_as("admin", n, &["topic", "create", "-t", "orders"]);
    // Apache resets the offsets of an online group only, so one is kept online meanwhile.
    let _online = OnlineConsumer::start(n, "orders", "billing", "consumer");
    let changes: [(&str, Vec<&str>, &str); 4] = [
        (
            "updateTopic",
            vec!["updateTopic", "-n", n, "-b", &broker, "-t", "orders-new"],
            "success",
        ),
        (
            "resetOffsetByTime",
            vec![
                "resetOffsetByTime",
                "-n",
                n,
                "-g",
                "billing",
                "-t",
                "orders",
                "-s",
                "0",
            ],
            "#queueId",
        ),
        (
            "updateBrokerConfig",
            vec![
                "updateBrokerConfig",
                "-n",
                n,
                "-b",
                &broker,
                "-k",
                "brokerPermission",
                "-v",
                "6",
            ],
            "update broker config success",
        ),
        (
            "deleteTopic",
            vec![
                "deleteTopic",
                "-n",
                n,
                "-c",
                "DefaultCluster",
                "-t",
                "orders",
            ],
            "from cluster [DefaultCluster] success",
        ),
    ];
    for (name, args, _) in &changes {
        let out = mqadmin_as("producer", args);
        assert!(
            out.contains("CODE: 16") && out.contains("User:producer is not an administrator"),
            "{name} as a user was not refused:\n{out}"
        );
    }
    let topics = rocketry_topics(&rocketry);
    assert!(
        topics.contains("orders") && !topics.contains("orders-new"),
        "{topics}"
    );
    for (name, args, success) in &changes {
        let out = mqadmin_as("admin", args);
        assert!(out.contains(success), "{name} as the administrator:\n{out}");
    }
    let topics = rocketry_topics(&rocketry);
    assert!(
        !topics.contains("\"orders\"") && topics.contains("orders-new"),
        "{topics}"
    );
}

/// A push consumer of the Java client, online until dropped.
struct OnlineConsumer(std::process::Child);

impl OnlineConsumer {
    fn start(namesrv: &str, topic: &str, group: &str, user: &str) -> OnlineConsumer {
        use std::io::{BufRead, BufReader};
        let mut args = vec![
            "consume".to_string(),
            format!("namesrv={namesrv}"),
            format!("topic={topic}"),
            format!("group={group}"),
            "expect=0".into(),
            "settleMs=0".into(),
            "holdMs=600000".into(),
        ];
        args.extend(credentials(user, SECRET));
        let mut command = Command::new(repo_root().join("scripts/peers/java-clients"));
        command
            .args(["run", "5.5.0"])
            .args(&args)
            .stdout(std::process::Stdio::piped());
        let mut child = support::spawn_in_own_group(&mut command).unwrap();
        let stdout = child.stdout.take().unwrap();
        let consumer = OnlineConsumer(child);
        let holding = BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .any(|line| line == "HOLDING");
        assert!(holding, "the consumer ended before it was online");
        consumer
    }
}

impl Drop for OnlineConsumer {
    fn drop(&mut self) {
        support::kill_process_group(&mut self.0);
    }
}

/// The broker's topic table as `rocketry admin topic list` shows it, signed as the admin.
fn rocketry_topics(rocketry: &Rocketry) -> String {
    rocketry_admin_as(
        "admin",
        &rocketry.namesrv,
        &["--output", "json", "topic", "list"],
    )
}

fn send_request(topic: &str) -> RemotingCommand {
    RemotingCommand::request(RequestCode::SendMessage, &())
        .with_ext_field("producerGroup", "p")
        .with_ext_field("topic", topic)
        .with_ext_field("defaultTopic", "TBW102")
        .with_ext_field("defaultTopicQueueNums", "4")
        .with_ext_field("queueId", "0")
        .with_ext_field("sysFlag", "0")
        .with_ext_field("bornTimestamp", "0")
        .with_ext_field("flag", "0")
        .with_ext_field("reconsumeTimes", "0")
        .with_ext_field("unitMode", "false")
        .with_body(&b"hello"[..])
}

/// One SEND_MESSAGE of `topic` on `client`, and its answer.
async fn send(client: &Client, topic: &str) -> RemotingCommand {
    client
        .invoke(send_request(topic), Duration::from_secs(10))
        .await
        .unwrap()
}

async fn signed_client(addr: &str, user: &str, secret: &str) -> Client {
    let client = Client::connect(addr).await.unwrap();
    client.set_credentials(Credentials {
        access_key: user.into(),
        secret_key: secret.into(),
    });
    client
}

/// Sends until the answer's code is `wanted`, for up to 10 s: the file is read again within
/// a second of changing.
async fn until_code(client: &Client, topic: &str, wanted: ResponseCode) -> RemotingCommand {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = send(client, topic).await;
        if answer.code == wanted as i32 || Instant::now() > deadline {
            return answer;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permissions_changed_at_run_time_apply_without_a_restart_and_survive_one() {
    let (mut rocketry, acl) = broker_with_acl(ACCOUNTS);
    let broker = rocketry.broker_addr.clone().unwrap();
    let admin = signed_client(&broker, "admin", SECRET).await;
    support::create_topic_on(&admin, "payments", 4).await;
    let producer = signed_client(&broker, "producer", SECRET).await;
    let refused = until_code(&producer, "payments", ResponseCode::NoPermission).await;
    assert_eq!(
        refused.code,
        ResponseCode::NoPermission as i32,
        "{refused:?}"
    );

    let file = acl.path().join("plain_acl.yml");
    std::fs::write(
        &file,
        ACCOUNTS.replace("[orders=PUB]", "[orders=PUB, payments=PUB]"),
    )
    .unwrap();
    let sent = until_code(&producer, "payments", ResponseCode::Success).await;
    assert_eq!(sent.code, ResponseCode::Success as i32, "{:?}", sent.remark);

    // A file that no longer parses changes nothing: the grants read before stay.
    std::fs::write(&file, "accounts: [").unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let still = send(&producer, "payments").await;
    assert_eq!(
        still.code,
        ResponseCode::Success as i32,
        "{:?}",
        still.remark
    );

    std::fs::write(
        &file,
        ACCOUNTS.replace("[orders=PUB]", "[orders=PUB, payments=PUB]"),
    )
    .unwrap();
    drop((admin, producer));
    rocketry.terminate();
    rocketry.restart();
    let producer = signed_client(&broker, "producer", SECRET).await;
    let answer = send(&producer, "payments").await;
    assert_eq!(
        answer.code,
        ResponseCode::Success as i32,
        "{:?}",
        answer.remark
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_replay_protection_a_captured_signed_request_is_refused_the_second_time() {
    let (rocketry, _acl) = broker_with_acl_and(ACCOUNTS, "aclReplayWindowSeconds=60\n");
    let n = rocketry.namesrv.clone();
    let broker = rocketry.broker_addr.clone().unwrap();
    let admin = signed_client(&broker, "admin", SECRET).await;
    support::create_topic_on(&admin, "orders", 4).await;

    // One request, signed once with its time and nonce, then sent twice as captured.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let mut captured = send_request("orders")
        .with_ext_field("Timestamp", now.to_string())
        .with_ext_field("Nonce", "4f1c2a9e-captured");
    protocol::acl::sign(
        &mut captured,
        &Credentials {
            access_key: "producer".into(),
            secret_key: SECRET.into(),
        },
    );
    let client = Client::connect(&broker).await.unwrap();
    let first = client
        .invoke(captured.clone(), Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(
        first.code,
        ResponseCode::Success as i32,
        "{:?}",
        first.remark
    );
    let replayed = client
        .invoke(captured, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(replayed.code, ResponseCode::NoPermission as i32);
    let remark = replayed.remark.unwrap_or_default();
    assert!(remark.contains("replayed request"), "{remark}");

    // The real client: with the two fields added before its ACL hook signs, it works; a
    // client that does not add them is refused.
    let mut with_fields = credentials("producer", SECRET);
    with_fields.push("replayFields=true".into());
    let sent = produce_as(&n, "orders", 20, &with_fields);
    assert_eq!(sent["sent"], 20, "{sent}");
    assert_refused(
        &produce_as(&n, "orders", 1, &credentials("producer", SECRET)),
        "this broker refuses replays",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_name_server_takes_changes_from_administrators_only() {
    use protocol::header::{KvConfigKeyRequestHeader, PutKvConfigRequestHeader};
    let (rocketry, _acl) = broker_with_acl(ACCOUNTS);
    let n = rocketry.namesrv.clone();
    let put = |value: &str| {
        RemotingCommand::request(
            RequestCode::PutKvConfig,
            &PutKvConfigRequestHeader {
                namespace: "ORDER_TOPIC_CONFIG".into(),
                key: "orders".into(),
                value: value.into(),
            },
        )
    };
    let anonymous = Client::connect(&n).await.unwrap();
    let user = signed_client(&n, "producer", SECRET).await;
    let admin = signed_client(&n, "admin", SECRET).await;
    let timeout = Duration::from_secs(5);
    let refused = anonymous.invoke(put("broker-a:8"), timeout).await.unwrap();
    assert_eq!(refused.code, ResponseCode::NoPermission as i32);
    assert!(refused.remark.unwrap_or_default().contains("no AccessKey"));
    let refused = user.invoke(put("broker-a:8"), timeout).await.unwrap();
    assert_eq!(refused.code, ResponseCode::NoPermission as i32);
    let remark = refused.remark.unwrap_or_default();
    assert!(
        remark.contains("User:producer is not an administrator; PUT_KV_CONFIG"),
        "{remark}"
    );
    let done = admin.invoke(put("broker-a:4"), timeout).await.unwrap();
    assert_eq!(done.code, ResponseCode::Success as i32, "{:?}", done.remark);
    // Reads stay open: unsigned clients need routes and order configs.
    let get = RemotingCommand::request(
        RequestCode::GetKvConfig,
        &KvConfigKeyRequestHeader {
            namespace: "ORDER_TOPIC_CONFIG".into(),
            key: "orders".into(),
        },
    );
    let read = anonymous.invoke(get, timeout).await.unwrap();
    assert_eq!(read.code, ResponseCode::Success as i32, "{:?}", read.remark);
    assert_eq!(
        read.ext_fields.get("value").map(|value| value.as_str()),
        Some("broker-a:4")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_keeps_failing_authentication_is_answered_ever_more_slowly() {
    let (rocketry, _acl) = broker_with_acl(ACCOUNTS);
    let guesser = signed_client(
        rocketry.broker_addr.as_deref().unwrap(),
        "producer",
        "guess",
    )
    .await;
    let started = Instant::now();
    for _ in 0..7 {
        let answer = send(&guesser, "orders").await;
        assert_eq!(answer.code, ResponseCode::NoPermission as i32);
    }
    // Three free failures, then waits of 100, 200, 400 and 800 ms: at least 1.5 s in all.
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "seven failures answered in {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_are_managed_with_mqadmin_and_rocketry_admin_and_apply_at_once() {
    let (rocketry, _acl) = broker_with_acl(ACCOUNTS);
    let n = rocketry.namesrv.clone();
    let broker = rocketry.broker_addr.clone().unwrap();
    let create = [
        "createUser",
        "-n",
        &n,
        "-c",
        "DefaultCluster",
        "-u",
        "newbie",
        "-p",
        "pw-1",
        "-t",
        "Normal",
    ];
    refused_for_a_user_then_done_by_the_admin(&create, "create user to");
    let out = mqadmin_as("admin", &["listUser", "-n", &n, "-c", "DefaultCluster"]);
    assert!(out.contains("newbie"), "{out}");

    // The new user signs at once; it has no grants yet.
    let newbie = signed_client(&broker, "newbie", "pw-1").await;
    let answer = |client: Client| async move {
        let answer = send(&client, "orders").await;
        answer.remark.unwrap_or_default()
    };
    assert!(answer(newbie)
        .await
        .contains("User:newbie has no Pub permission"));

    // A grant by mqadmin's createAcl applies to the next request; getAcl shows it.
    let grant = [
        "createAcl",
        "-n",
        &n,
        "-c",
        "DefaultCluster",
        "-s",
        "User:newbie",
        "-r",
        "Topic:orders",
        "-a",
        "Pub",
        "-d",
        "Allow",
    ];
    refused_for_a_user_then_done_by_the_admin(&grant, "create acl to");
    let newbie = signed_client(&broker, "newbie", "pw-1").await;
    assert_eq!(
        answer(newbie).await,
        "",
        "a granted send is answered without a remark"
    );
    let out = mqadmin_as(
        "admin",
        &[
            "getAcl",
            "-n",
            &n,
            "-c",
            "DefaultCluster",
            "-s",
            "User:newbie",
        ],
    );
    assert!(
        out.contains("Topic:orders") && out.contains("Allow"),
        "{out}"
    );

    let admin = |args: &[&str]| rocketry_admin_as("admin", &n, args);
    // And rocketry admin revokes it, then grants a prefix.
    admin(&["acl", "revoke", "-u", "newbie", "-r", "Topic:orders"]);
    let newbie = signed_client(&broker, "newbie", "pw-1").await;
    assert!(answer(newbie)
        .await
        .contains("User:newbie has no Pub permission"));
    admin(&[
        "acl",
        "grant",
        "-u",
        "newbie",
        "-r",
        "Topic:orders*",
        "-a",
        "Pub",
    ]);
    let grants = admin(&["--output", "json", "acl", "grants"]);
    assert!(grants.contains("Topic:orders*"), "{grants}");
    let newbie = signed_client(&broker, "newbie", "pw-1").await;
    assert_eq!(answer(newbie).await, "");
    admin(&[
        "acl", "user", "update", "-u", "newbie", "--status", "disable",
    ]);
    let newbie = signed_client(&broker, "newbie", "pw-1").await;
    assert!(answer(newbie).await.contains("User:newbie is disabled"));
    admin(&["acl", "user", "delete", "-u", "newbie"]);
    let newbie = signed_client(&broker, "newbie", "pw-1").await;
    assert!(answer(newbie).await.contains("User:newbie is not found"));
    let listed = admin(&["--output", "json", "acl", "user", "list"]);
    assert!(
        listed.contains("\"admin\"") && !listed.contains("newbie"),
        "{listed}"
    );
}

/// mqadmin `args` as the user `producer` is refused for not being an administrator; as
/// the administrator it prints `done` and success.
fn refused_for_a_user_then_done_by_the_admin(args: &[&str], done: &str) {
    let out = mqadmin_as("producer", args);
    assert!(
        out.contains("User:producer is not an administrator"),
        "{out}"
    );
    let out = mqadmin_as("admin", args);
    assert!(out.contains(done) && out.contains("success"), "{out}");
}

/// Who sends a request, for the decision table.
const IDENTITIES: [&str; 5] = [
    "anonymous",
    "wrong secret",
    "user, no grants",
    "user, granted",
    "admin",
];

/// What the broker did with one request: refused by the ACL, or handed to its processor
/// (which may still answer with an error of its own, such as a header it cannot parse).
fn decision(answer: &RemotingCommand) -> &'static str {
    let remark = answer.remark.as_deref().unwrap_or_default();
    let by_acl = answer.code == ResponseCode::NoPermission as i32
        && (remark.starts_with("no AccessKey") || remark.contains("User:"));
    if by_acl {
        "refused"
    } else {
        "served"
    }
}

/// The docs/security.md table, made by asking a broker every request code as each identity.
/// `user` holds PUB|SUB on the topic and SUB on the group the requests name; `stranger` is a
/// known user with no grants.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_decision_table_of_docs_security_is_what_the_broker_does() {
    let accounts = "accounts:\n  - {accessKey: admin, secretKey: s3cret-of-test, admin: true}\n  \
                    - {accessKey: user, secretKey: s3cret-of-test, topicPerms: [acl_topic=PUB|SUB], groupPerms: [acl_group=SUB]}\n  \
                    - {accessKey: stranger, secretKey: s3cret-of-test}\n";
    // Every refusal of the table's anonymous and wrong-secret columns at once.
    let (rocketry, _acl) = broker_with_acl_and(accounts, "aclFreeAuthenticationFailures=100000\n");
    let broker = rocketry.broker_addr.clone().unwrap();
    let clients = [
        Client::connect(&broker).await.unwrap(),
        signed_client(&broker, "user", "wrong").await,
        signed_client(&broker, "stranger", SECRET).await,
        signed_client(&broker, "user", SECRET).await,
        signed_client(&broker, "admin", SECRET).await,
    ];
    support::create_topic_on(&clients[4], "acl_topic", 1).await;
    let mut rows = BTreeMap::new();
    for code in RequestCode::ALL {
        let mut cells = Vec::new();
        for client in &clients {
            let request = RemotingCommand::request(*code, &())
                .with_ext_field("topic", "acl_topic")
                .with_ext_field("b", "acl_topic")
                .with_ext_field("consumerGroup", "acl_group")
                .with_ext_field("group", "acl_group");
            let answer = client
                .invoke(request, Duration::from_secs(10))
                .await
                .unwrap();
            cells.push((answer.code, decision(&answer)));
        }
        // Codes the broker does not serve are answered REQUEST_CODE_NOT_SUPPORTED whoever asks.
        if cells[4].0 == ResponseCode::RequestCodeNotSupported as i32 {
            continue;
        }
        let cells: Vec<&str> = cells.iter().map(|(_, decision)| *decision).collect();
        rows.insert(
            code.as_i32(),
            format!(
                "| {} ({}) | {} |",
                code.name(),
                code.as_i32(),
                cells.join(" | ")
            ),
        );
    }
    let mut table = format!(
        "| request | {} |\n|---|---|---|---|---|---|\n",
        IDENTITIES.join(" | ")
    );
    for row in rows.values() {
        table.push_str(row);
        table.push('\n');
    }
    check_docs_table(&table);
}

const TABLE_START: &str = "<!-- decision table: made by broker/tests/acl.rs -->\n";
const TABLE_END: &str = "<!-- end of decision table -->";

/// Fails when docs/security.md's table differs from `table`; with ROCKETRY_UPDATE_DOCS=1
/// it writes `table` there instead.
fn check_docs_table(table: &str) {
    let path = repo_root().join("docs/security.md");
    let page = std::fs::read_to_string(&path).unwrap();
    let start = page
        .find(TABLE_START)
        .expect("docs/security.md has no decision table marker")
        + TABLE_START.len();
    let end = page
        .find(TABLE_END)
        .expect("docs/security.md has no end-of-table marker");
    if page[start..end] == *table {
        return;
    }
    if std::env::var("ROCKETRY_UPDATE_DOCS").as_deref() == Ok("1") {
        write(&path, &format!("{}{table}{}", &page[..start], &page[end..]));
        return;
    }
    panic!(
        "docs/security.md's decision table is not what the broker does; this run made:\n{table}\n\
         Run `ROCKETRY_UPDATE_DOCS=1 cargo test -p broker --test acl` to write it there."
    );
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}
