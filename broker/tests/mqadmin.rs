//! The real mqadmin 5.5.0 against a fresh `rocketry standalone` and against Apache RocketMQ
//! 5.5.0, on the same scenario: a 4/4-queue topic, 20 messages with keys `<run>-key-<i>`, a
//! push consumer group that stays online (asked for its running info through the broker), a
//! producer that keeps sending to a second topic; then group, KV and order settings,
//! name-server settings, a broker's write permission and its name-server list. Every command
//! docs/compatibility.md marks Supported or Partial runs here. Each command must succeed on both (or, where the
//! scenario asks for a refusal, be refused with the same code), and the fields it prints must
//! match where they should (names, queue counts, offsets, lags, counts, perms).
//! Every difference found is listed in docs/compatibility.md.
//!
//! mqadmin starts a JVM per command (about 5 s), so the two scenarios run side by side and
//! each runs its commands once.

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::*;

const MESSAGES: usize = 20;

/// One broker under test, seen through mqadmin.
struct Target {
    label: &'static str,
    namesrv: String,
    cluster: String,
}

/// What a scenario printed, reduced to comparable facts (`command.field` -> value).
type Facts = BTreeMap<String, String>;

/// The `CODE: n` of the exception mqadmin prints (on stderr) for a command the server
/// refused; tried up to three times while a run ends some other way (an RPC timeout).
fn admin_refusal_code(args: &[&str]) -> String {
    mqadmin_until(args, "was not refused with a code", |output| {
        String::from_utf8_lossy(&output.stderr)
            .split("CODE:")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .map(str::to_string)
    })
}

/// Runs an mqadmin command on drop unless disarmed: what gives the shared peer its write
/// permission back if the scenario stops between taking it and giving it back.
struct Undo {
    args: Vec<String>,
    armed: bool,
}

impl Undo {
    fn new(args: &[&str]) -> Undo {
        Undo {
            args: args.iter().map(|arg| arg.to_string()).collect(),
            armed: true,
        }
    }
}

impl Drop for Undo {
    fn drop(&mut self) {
        if self.armed {
            let _ = Command::new(repo_root().join("scripts/peers/rocketmq"))
                .arg("mqadmin")
                .args(&self.args)
                .output();
        }
    }
}

/// A client process that runs until the scenario drops it.
/// A Java client started by `scripts/peers/java-clients run` in a process group of its own,
/// killed with the whole group when dropped.
struct Background(Child);

impl Drop for Background {
    fn drop(&mut self) {
        kill_process_group(&mut self.0);
    }
}

/// The producer group of the live producer on `topic`: its own, so that no other test's
/// producer on the shared peer is listed with it.
fn producer_group(topic: &str) -> String {
    format!("{topic}_producer")
}

/// A Java producer (group [`producer_group`]) sending to `topic` every 500 ms until
/// dropped, so `producerConnection` has a producer to list.
fn live_producer(namesrv: &str, topic: &str) -> Background {
    spawn_in_own_group(
        features_command(&[
            "produce".into(),
            format!("namesrv={namesrv}"),
            format!("topic={topic}"),
            format!("producerGroup={}", producer_group(topic)),
            "count=1000000".into(),
            "intervalMs=500".into(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null()),
    )
    .map(Background)
    .expect("cannot start the Java producer")
}

/// A push consumer that stays online (the harness prints HOLDING once it has `expect`).
struct HeldConsumer {
    _child: Background,
}

impl HeldConsumer {
    fn start(namesrv: &str, topic: &str, group: &str, run: &str) -> HeldConsumer {
        let mut child = spawn_in_own_group(
            Command::new(repo_root().join("scripts/peers/java-clients"))
                .args([
                    "run",
                    "5.5.0",
                    "consume",
                    &format!("namesrv={namesrv}"),
                    &format!("topic={topic}"),
                    &format!("group={group}"),
                    &format!("expect={MESSAGES}"),
                    &format!("run={run}"),
                    // Longer than the scenario (about 6 minutes); killed when dropped.
                    "holdMs=600000",
                ])
                .stdout(Stdio::piped())
                .stderr(Stdio::null()),
        )
        .expect("cannot start the Java consumer");
        let stdout = child.stdout.take().unwrap();
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = sender.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match receiver.recv_timeout(Duration::from_millis(200)) {
                Ok(line) if line.starts_with("HOLDING") => break,
                Ok(_) => {}
                Err(_) => assert!(
                    Instant::now() < deadline,
                    "the consumer of {group} did not get {MESSAGES} messages in 60 s"
                ),
            }
        }
        HeldConsumer {
            _child: Background(child),
        }
    }
}

/// `key=value` inside mqadmin's `Config [a=1, b=2]` or `Config{a=1, b=2}` printouts.
fn java_field(text: &str, key: &str) -> String {
    let needle = format!("{key}=");
    text.split(['[', '{', ',', ']', '}'])
        .map(str::trim)
        .find_map(|part| part.strip_prefix(&needle))
        .unwrap_or_else(|| panic!("no {key}= in {text}"))
        .to_string()
}

/// `Label:   value` lines (queryMsgById, brokerStatus).
fn labelled(text: &str, label: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        (name.trim() == label).then(|| value.trim().to_string())
    })
}

fn scenario(target: &Target) -> Facts {
    let n = target.namesrv.as_str();
    let topic = unique(&format!("adm_{}", target.label));
    let group = unique(&format!("admg_{}", target.label));
    let run = unique("admrun");
    let mut facts = Facts::new();
    let mut fact = |key: &str, value: String| {
        facts.insert(key.to_string(), value);
    };

    let out = admin(&[
        "updateTopic",
        "-n",
        n,
        "-c",
        &target.cluster,
        "-t",
        &topic,
        "-r",
        "4",
        "-w",
        "4",
    ]);
    assert!(
        out.contains("success"),
        "{}: updateTopic: {out}",
        target.label
    );
    for key in [
        "readQueueNums",
        "writeQueueNums",
        "perm",
        "order",
        "topicFilterType",
    ] {
        fact(&format!("updateTopic.{key}"), java_field(&out, key));
    }
    let live_topic = format!("{topic}_live");
    let out = admin(&[
        "updateTopic",
        "-n",
        n,
        "-c",
        &target.cluster,
        "-t",
        &live_topic,
    ]);
    assert!(
        out.contains("success"),
        "{}: updateTopic: {out}",
        target.label
    );

    let sent = java_client(
        "5.5.0",
        &[
            "produce".into(),
            format!("namesrv={n}"),
            format!("topic={topic}"),
            format!("count={MESSAGES}"),
            format!("run={run}"),
        ],
    );
    assert_eq!(sent["sent"], MESSAGES, "{}: {sent}", target.label);
    let consumer = HeldConsumer::start(n, &topic, &group, &run);

    let out = admin(&["consumerConnection", "-n", n, "-g", &group]);
    let clients: Vec<_> = out
        .lines()
        .filter(|l| l.contains('@') && !l.starts_with('#'))
        .collect();
    fact("consumerConnection.clients", clients.len().to_string());
    let client_id = clients
        .first()
        .and_then(|client| client.split_whitespace().next())
        .unwrap_or_else(|| panic!("{}: no consumer in {out}", target.label))
        .to_string();
    if let Some(client) = clients.first() {
        let cells: Vec<&str> = client.split_whitespace().collect();
        fact("consumerConnection.language", cells[2].to_string());
        fact("consumerConnection.version", cells[3].to_string());
    }
    let retry = format!("%RETRY%{group}");
    for (name, subscribed) in [("topic", &topic), ("retry", &retry)] {
        let expression = rows(&out, subscribed)
            .first()
            .map(|cells| cells[1..].join(" "));
        fact(
            &format!("consumerConnection.subscription.{name}"),
            format!("{expression:?}"),
        );
    }
    for label in ["ConsumeType", "MessageModel", "ConsumeFromWhere"] {
        fact(
            &format!("consumerConnection.{label}"),
            format!("{:?}", labelled(&out, label)),
        );
    }

    let out = admin(&["topicStatus", "-n", n, "-t", &topic]);
    let status = rows(&out, &broker_name_of(&out));
    fact("topicStatus.queues", status.len().to_string());
    for cells in &status {
        fact(
            &format!("topicStatus.q{}.min/max", cells[1]),
            format!("{}/{}", cells[2], cells[3]),
        );
        fact(
            &format!("topicStatus.q{}.lastUpdated", cells[1]),
            (cells.len() > 4 && cells[4].starts_with("20")).to_string(),
        );
    }

    let out = admin(&["topicRoute", "-n", n, "-t", &topic]);
    let route = protocol::body::TopicRouteData::decode(out.trim().as_bytes())
        .unwrap_or_else(|e| panic!("{}: topicRoute does not parse ({e}): {out}", target.label));
    let queues = &route.queue_datas[0];
    fact("topicRoute.brokers", route.broker_datas.len().to_string());
    fact(
        "topicRoute.queueData",
        format!(
            "read={} write={} perm={} sysFlag={}",
            queues.read_queue_nums, queues.write_queue_nums, queues.perm, queues.topic_sys_flag
        ),
    );
    fact(
        "topicRoute.masterPresent",
        route.broker_datas[0].master_addr().is_some().to_string(),
    );
    fact("topicRoute.cluster", route.broker_datas[0].cluster.clone());

    let out = admin(&["topicList", "-n", n]);
    fact(
        "topicList.hasTopic",
        out.lines().any(|l| l.trim() == topic).to_string(),
    );
    fact(
        "topicList.hasRetryTopic",
        out.lines().any(|l| l.trim() == retry).to_string(),
    );

    let out = admin(&["clusterList", "-n", n]);
    let cluster_rows = rows(&out, &target.cluster);
    fact("clusterList.rows", cluster_rows.len().to_string());
    let broker_addr = cluster_rows
        .first()
        .map(|cells| {
            fact("clusterList.brokerId", cells[2].to_string());
            fact("clusterList.activated", cells.last().unwrap().to_string());
            cells[3].to_string()
        })
        .unwrap_or_else(|| panic!("{}: no cluster row in {out}", target.label));

    let out = admin(&["brokerStatus", "-n", n, "-b", &broker_addr]);
    for key in [
        "msgPutTotalTodayNow",
        "msgGetTotalTodayNow",
        "putTps",
        "getTransferredTps",
        "bootTimestamp",
        "brokerActive",
        "commitLogMaxOffset",
        "commitLogMinOffset",
        "dispatchBehindBytes",
        "remainHowManyDataToFlush",
        "earliestMessageTimeStamp",
        "runtime",
    ] {
        fact(
            &format!("brokerStatus.has.{key}"),
            labelled(&out, key).is_some().to_string(),
        );
    }
    fact(
        "brokerStatus.putTotal",
        labelled(&out, "msgPutTotalTodayNow").unwrap_or_default(),
    );
    // Started once the put total is read. Its first heartbeat reaches the broker up to
    // 30 s after its first send, long before producerConnection runs.
    let producer = live_producer(n, &live_topic);

    // The consumer commits its offsets every 5 s, but its retry queue gets one only after
    // its first pull there, held on the empty queue for 15 s (by both brokers), ends: wait
    // for it, so the retry row does not depend on how fast the commands above ran.
    wait_for_offset(&broker_addr, &group, &retry);
    let out = admin(&["consumerProgress", "-n", n, "-g", &group]);
    let progress = rows(&out, &topic);
    fact("consumerProgress.queues", progress.len().to_string());
    for cells in &progress {
        fact(
            &format!("consumerProgress.q{}", cells[2]),
            format!(
                "broker={} consumer={} diff={}",
                cells[3], cells[4], cells[5]
            ),
        );
    }
    fact(
        "consumerProgress.retryRow",
        (!rows(&out, &retry).is_empty()).to_string(),
    );
    fact(
        "consumerProgress.diffTotal",
        format!("{:?}", labelled(&out, "Consume Diff Total")),
    );

    // Rows only for queues whose group consumed something (lastTimestamp > 0), so this
    // runs before resetOffsetByTime moves the offsets back to 0.
    let out = admin(&["brokerConsumeStats", "-n", n, "-b", &broker_addr]);
    let ours: Vec<_> = rows(&out, &topic)
        .into_iter()
        .filter(|cells| cells.get(1) == Some(&group.as_str()))
        .collect();
    fact("brokerConsumeStats.queues", ours.len().to_string());
    for cells in &ours {
        fact(
            &format!("brokerConsumeStats.q{}", cells[3]),
            format!(
                "broker={} consumer={} diff={} lastTime={}",
                cells[4],
                cells[5],
                cells[6],
                cells.get(7).is_some_and(|t| t.starts_with("20"))
            ),
        );
    }
    fact(
        "brokerConsumeStats.diffTotalPrinted",
        labelled(&out, "Diff Total").is_some().to_string(),
    );

    clone_group_offset(n, &target.cluster, &topic, &group, &mut fact);

    let sub_group = format!("{group}_sub");
    let out = admin(&[
        "updateSubGroup",
        "-n",
        n,
        "-c",
        &target.cluster,
        "-g",
        &sub_group,
        "-r",
        "3",
    ]);
    assert!(
        out.contains("success"),
        "{}: updateSubGroup: {out}",
        target.label
    );
    fact(
        "updateSubGroup.retryMaxTimes",
        java_field(&out, "retryMaxTimes"),
    );

    let key = format!("{run}-key-3");
    let out = admin(&["queryMsgByKey", "-n", n, "-t", &topic, "-k", &key]);
    let found: Vec<Vec<&str>> = out
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split_whitespace().collect())
        .filter(|cells: &Vec<&str>| cells.len() >= 3)
        .collect();
    fact("queryMsgByKey.found", found.len().to_string());
    let message_id = found
        .first()
        .unwrap_or_else(|| panic!("{}: queryMsgByKey found nothing: {out}", target.label))[0]
        .to_string();
    // The producer starts at a random queue, so only the offset is comparable.
    fact("queryMsgByKey.offset", found[0][2].to_string());

    let out = admin(&["queryMsgById", "-n", n, "-i", &message_id, "-t", &topic]);
    for label in ["Tags", "Queue Offset", "Reconsume Times"] {
        fact(
            &format!("queryMsgById.{label}"),
            format!("{:?}", labelled(&out, label)),
        );
    }
    fact(
        "queryMsgById.keysMatch",
        (labelled(&out, "Keys") == Some(format!("[{key}]"))).to_string(),
    );
    fact(
        "queryMsgById.queueMatches",
        (labelled(&out, "Queue ID").as_deref() == Some(found[0][1])).to_string(),
    );
    fact(
        "queryMsgById.topicMatches",
        (labelled(&out, "Topic").as_deref() == Some(topic.as_str())).to_string(),
    );

    let by_unique_key = admin(&[
        "queryMsgByUniqueKey",
        "-n",
        n,
        "-i",
        &message_id,
        "-t",
        &topic,
    ]);
    let by_offset = admin(&[
        "queryMsgByOffset",
        "-n",
        n,
        "-t",
        &topic,
        "-b",
        &route.broker_datas[0].broker_name,
        "-i",
        found[0][1],
        "-o",
        found[0][2],
    ]);
    for (command, out) in [
        ("queryMsgByUniqueKey", by_unique_key),
        ("queryMsgByOffset", by_offset),
    ] {
        fact(
            &format!("{command}.keysMatch"),
            out.contains(&key).to_string(),
        );
        fact(
            &format!("{command}.topicMatches"),
            (labelled(&out, "Topic").as_deref() == Some(topic.as_str())).to_string(),
        );
    }

    // Before resetOffsetByTime: the client drops its queues at a reset and takes them
    // again only at its next rebalance (20 s), so its running info would list none.
    running_info(n, &topic, &group, &client_id, &mut fact);
    let out = admin(&[
        "resetOffsetByTime",
        "-n",
        n,
        "-g",
        &group,
        "-t",
        &topic,
        "-s",
        "0",
    ]);
    let reset = rows(&out, &broker_name_of(&out));
    fact("resetOffsetByTime.queues", reset.len().to_string());
    fact(
        "resetOffsetByTime.offsets",
        format!(
            "{:?}",
            reset.iter().map(|cells| cells[2]).collect::<Vec<_>>()
        ),
    );
    drop(consumer);
    producer_connection(n, &live_topic, &mut fact);
    drop(producer);
    topic_cluster_list(n, &topic, &target.cluster, &mut fact);
    consumer_config(n, &sub_group, &target.cluster, &mut fact);
    order_conf(n, &topic, &route.broker_datas[0].broker_name, &mut fact);
    kv_config(n, &run, &mut fact);
    let out = admin(&["deleteExpiredCommitLog", "-n", n, "-b", &broker_addr]);
    fact(
        "deleteExpiredCommitLog.success",
        out.contains("success").to_string(),
    );
    let out = admin(&["cleanExpiredCQ", "-n", n, "-c", &target.cluster]);
    fact(
        "cleanExpiredCQ.success",
        (out.trim() == "success").to_string(),
    );
    let out = admin(&[
        "updateTopicPerm",
        "-n",
        n,
        "-c",
        &target.cluster,
        "-t",
        &live_topic,
        "-p",
        "4",
    ]);
    fact(
        "updateTopicPerm.success",
        (out.contains("from 6 to 4") && out.contains("success")).to_string(),
    );
    fact("updateTopicPerm.routePerm", route_perm(n, &live_topic));
    delete_topic(n, &live_topic, &target.cluster, &mut fact);

    namesrv_config(n, &mut fact);
    write_perm(n, &topic, &route.broker_datas[0].broker_name, &mut fact);
    broker_permission(n, &topic, &broker_addr, &mut fact);
    namesrv_addr(n, &broker_addr, &mut fact);
    facts
}

/// `consumerStatus -i` and `consumerProgress -s true`: the broker relays
/// GET_CONSUMER_RUNNING_INFO to the live consumer over its own connection, and mqadmin prints
/// what the client answered (its properties, subscriptions and queues; the client's address
/// beside each queue it holds).
fn running_info(
    n: &str,
    topic: &str,
    group: &str,
    client_id: &str,
    fact: &mut impl FnMut(&str, String),
) {
    let out = admin(&["consumerStatus", "-n", n, "-g", group, "-i", client_id]);
    fact(
        "consumerStatus.consumeType",
        format!("{:?}", labelled(&out, "PROP_CONSUME_TYPE")),
    );
    fact(
        "consumerStatus.subscriptions",
        out.lines()
            .filter(|line| line.contains(" Topic: "))
            .count()
            .to_string(),
    );
    fact(
        "consumerStatus.queueRows",
        rows(&out, topic).len().to_string(),
    );
    let out = admin(&["consumerProgress", "-n", n, "-g", group, "-s", "true"]);
    let progress = rows(&out, topic);
    fact("consumerProgress-s.queues", progress.len().to_string());
    let is_ip = |cell: &&str| {
        cell.split([':', '@'])
            .next()
            .is_some_and(|ip| ip.parse::<std::net::Ipv4Addr>().is_ok())
    };
    fact(
        "consumerProgress-s.rowsWithClientIp",
        progress
            .iter()
            .filter(|cells| cells.iter().any(is_ip))
            .count()
            .to_string(),
    );
}

/// `cloneGroupOffset` to a new group, whose `consumerProgress` then shows the same offsets.
fn clone_group_offset(
    n: &str,
    cluster: &str,
    topic: &str,
    group: &str,
    fact: &mut impl FnMut(&str, String),
) {
    let clone = format!("{group}_clone");
    // mqadmin commits the offsets with UPDATE_CONSUMER_OFFSET, which Apache 5.x refuses for
    // a group it does not know.
    let out = admin(&["updateSubGroup", "-n", n, "-c", cluster, "-g", &clone]);
    assert!(out.contains("success"), "updateSubGroup {clone}: {out}");
    let out = admin(&[
        "cloneGroupOffset",
        "-n",
        n,
        "-s",
        group,
        "-d",
        &clone,
        "-t",
        topic,
    ]);
    fact(
        "cloneGroupOffset.success",
        out.contains("clone group offset success").to_string(),
    );
    // With `-t`: the new group has no retry topic, which mqadmin looks for first.
    let out = admin(&["consumerProgress", "-n", n, "-g", &clone, "-t", topic]);
    let progress = rows(&out, topic);
    fact("cloneGroupOffset.queues", progress.len().to_string());
    fact(
        "cloneGroupOffset.consumerOffsetTotal",
        progress
            .iter()
            .map(|cells| cells[4].parse::<i64>().unwrap_or(-1))
            .sum::<i64>()
            .to_string(),
    );
}

/// `producerConnection` lists the live producer (its first heartbeat comes up to 30 s after
/// its first send, long before the scenario gets here; mqadmin_until's retries cover a slow
/// machine).
fn producer_connection(n: &str, topic: &str, fact: &mut impl FnMut(&str, String)) {
    let group = producer_group(topic);
    let args = ["producerConnection", "-n", n, "-g", &group, "-t", topic];
    // Rows `0001  <clientId> <address> <language> <version>`.
    let producers = mqadmin_until(&args, "listed no producer", |output| {
        let rows: Vec<Vec<String>> = printed(output)
            .lines()
            .map(|line| line.split_whitespace().map(str::to_string).collect())
            .filter(|cells: &Vec<String>| {
                cells.len() >= 5 && cells[0].parse::<u32>().is_ok() && cells[1].contains('@')
            })
            .collect();
        (!rows.is_empty()).then_some(rows)
    });
    fact("producerConnection.clients", producers.len().to_string());
    fact("producerConnection.language", producers[0][3].clone());
}

/// `topicClusterList` names the cluster the topic lives in.
fn topic_cluster_list(n: &str, topic: &str, cluster: &str, fact: &mut impl FnMut(&str, String)) {
    let out = admin(&["topicClusterList", "-n", n, "-t", topic]);
    fact(
        "topicClusterList.clusters",
        format!(
            "{:?}",
            out.lines()
                .map(|line| if line.trim() == cluster {
                    "ours"
                } else {
                    line.trim()
                })
                .collect::<Vec<_>>()
        ),
    );
}

/// `getConsumerConfig` prints the group `updateSubGroup` made; `deleteSubGroup` removes it.
fn consumer_config(n: &str, group: &str, cluster: &str, fact: &mut impl FnMut(&str, String)) {
    let out = admin(&["getConsumerConfig", "-n", n, "-g", group]);
    for key in ["retryMaxTimes", "consumeEnable", "consumeBroadcastEnable"] {
        fact(
            &format!("getConsumerConfig.{key}"),
            format!("{:?}", key_value(&out, key)),
        );
    }
    fact(
        "getConsumerConfig.groupNameMatches",
        (key_value(&out, "groupName").as_deref() == Some(group)).to_string(),
    );
    let out = admin(&["deleteSubGroup", "-n", n, "-c", cluster, "-g", group]);
    fact(
        "deleteSubGroup.success",
        out.contains("success").to_string(),
    );
}

/// `updateOrderConf` put, get and delete (a name-server KV entry in `ORDER_TOPIC_CONFIG`).
fn order_conf(n: &str, topic: &str, broker_name: &str, fact: &mut impl FnMut(&str, String)) {
    let conf = format!("{broker_name}:4");
    let order = |method: &str, extra: &[&str]| {
        admin(
            &[
                &["updateOrderConf", "-n", n, "-t", topic, "-m", method],
                extra,
            ]
            .concat(),
        )
    };
    let out = order("put", &["-v", &conf]);
    fact(
        "updateOrderConf.put",
        out.contains("update orderConf success").to_string(),
    );
    let out = order("get", &[]);
    fact(
        "updateOrderConf.getMatches",
        out.contains(&format!("orderConf=[{conf}]")).to_string(),
    );
    let out = order("delete", &[]);
    fact(
        "updateOrderConf.delete",
        out.contains("delete orderConf success").to_string(),
    );
}

/// `updateKvConfig` and `deleteKvConfig` of a key of this run's own.
fn kv_config(n: &str, key: &str, fact: &mut impl FnMut(&str, String)) {
    let namespace = ["-n", n, "-s", "rocketry_mqadmin_test", "-k", key];
    let out = admin(&[&["updateKvConfig"], &namespace[..], &["-v", "1"]].concat());
    fact(
        "updateKvConfig.success",
        out.contains("success").to_string(),
    );
    let out = admin(&[&["deleteKvConfig"], &namespace[..]].concat());
    fact(
        "deleteKvConfig.success",
        out.contains("success").to_string(),
    );
}

/// `deleteTopic` removes the topic from the cluster's brokers and from the name server.
fn delete_topic(n: &str, topic: &str, cluster: &str, fact: &mut impl FnMut(&str, String)) {
    let out = admin(&["deleteTopic", "-n", n, "-c", cluster, "-t", topic]);
    fact(
        "deleteTopic.fromCluster",
        out.contains(&format!("from cluster [{cluster}] success"))
            .to_string(),
    );
    fact(
        "deleteTopic.fromNameServer",
        out.contains("from NameServer success").to_string(),
    );
}

/// The value of `key` in `key=value` lines (getBrokerConfig, getNamesrvConfig,
/// getConsumerConfig), trimmed.
fn key_value(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let (name, value) = line.split_once('=')?;
        (name.trim() == key).then(|| value.trim().to_string())
    })
}

/// `updateBrokerConfig -k namesrvAddr`, set to the name server the broker already uses (the
/// peer is shared, so its list stays as it is), then `getBrokerConfig` shows it.
fn namesrv_addr(n: &str, broker_addr: &str, fact: &mut impl FnMut(&str, String)) {
    let broker = ["-n", n, "-b", broker_addr];
    let args = [
        &["updateBrokerConfig"],
        &broker[..],
        &["-k", "namesrvAddr", "-v", n],
    ]
    .concat();
    let out = admin(&args);
    fact(
        "updateBrokerConfig.namesrvAddr",
        out.contains("update broker config success").to_string(),
    );
    let out = admin(&[&["getBrokerConfig"], &broker[..]].concat());
    let shown = key_value(&out, "namesrvAddr");
    fact(
        "getBrokerConfig.namesrvAddrMatches",
        (shown.as_deref() == Some(n)).to_string(),
    );
}

/// `updateBrokerConfig -k brokerPermission`: 4 makes the broker register its queues
/// read-only, 6 gives write back; a path-like key is refused by both.
fn broker_permission(n: &str, topic: &str, broker_addr: &str, fact: &mut impl FnMut(&str, String)) {
    let set = |value: &str| {
        let out = admin(&[
            "updateBrokerConfig",
            "-n",
            n,
            "-b",
            broker_addr,
            "-k",
            "brokerPermission",
            "-v",
            value,
        ]);
        out.contains("update broker config success").to_string()
    };
    let mut restore = Undo::new(&[
        "updateBrokerConfig",
        "-n",
        n,
        "-b",
        broker_addr,
        "-k",
        "brokerPermission",
        "-v",
        "6",
    ]);
    fact("updateBrokerConfig.readOnly", set("4"));
    fact("updateBrokerConfig.readOnlyRoutePerm", route_perm(n, topic));
    // CVE-2023-33246: a path set over the network.
    let code = admin_refusal_code(&[
        "updateBrokerConfig",
        "-n",
        n,
        "-b",
        broker_addr,
        "-k",
        "brokerConfigPath",
        "-v",
        "/tmp/rocketry-never-written",
    ]);
    fact("updateBrokerConfig.pathRefusedCode", code);
    let writable = set("6");
    restore.armed = writable != "true";
    fact("updateBrokerConfig.writable", writable);
    fact("updateBrokerConfig.writableRoutePerm", route_perm(n, topic));
}

/// The perm of the topic's first queue data, as `topicRoute` prints it.
fn route_perm(n: &str, topic: &str) -> String {
    let out = admin(&["topicRoute", "-n", n, "-t", topic]);
    let route = protocol::body::TopicRouteData::decode(out.trim().as_bytes())
        .unwrap_or_else(|e| panic!("topicRoute does not parse ({e}): {out}"));
    route.queue_datas[0].perm.to_string()
}

/// `updateNamesrvConfig` of a key both servers change at run time, `getNamesrvConfig`, and a
/// path-like key both refuse. The key goes back to its default after.
fn namesrv_config(n: &str, fact: &mut impl FnMut(&str, String)) {
    let key = "scanNotActiveBrokerInterval";
    let out = admin(&["updateNamesrvConfig", "-n", n, "-k", key, "-v", "4000"]);
    fact(
        "updateNamesrvConfig.success",
        out.contains("update name server config success")
            .to_string(),
    );
    let out = admin(&["getNamesrvConfig", "-n", n]);
    let value = |name: &str| key_value(&out, name);
    fact(
        &format!("getNamesrvConfig.{key}"),
        format!("{:?}", value(key)),
    );
    fact(
        "getNamesrvConfig.listenPortMatches",
        (value("listenPort").as_deref() == n.rsplit(':').next()).to_string(),
    );
    fact(
        "getNamesrvConfig.bindAddress",
        format!("{:?}", value("bindAddress")),
    );
    // CVE-2023-37582: a path set over the network.
    let code = admin_refusal_code(&[
        "updateNamesrvConfig",
        "-n",
        n,
        "-k",
        "configStorePath",
        "-v",
        "/tmp/rocketry-never-written",
    ]);
    fact("updateNamesrvConfig.pathRefusedCode", code);
    admin(&["updateNamesrvConfig", "-n", n, "-k", key, "-v", "5000"]);
}

/// `wipeWritePerm` makes the broker's queues read-only in the route, `addWritePerm` makes
/// them writable again; both report a topic count (Apache's broker has more topics, so only
/// their agreement is compared).
fn write_perm(n: &str, topic: &str, broker_name: &str, fact: &mut impl FnMut(&str, String)) {
    let count = |out: &str| -> Option<i64> {
        out.lines()
            .find(|line| line.contains(&format!("broker[{broker_name}]")) && line.contains("OK"))
            .and_then(|line| line.rsplit(", ").next())
            .and_then(|count| count.trim().parse().ok())
    };
    let mut restore = Undo::new(&["addWritePerm", "-n", n, "-b", broker_name]);
    // Apache's broker re-registers its whole topic table whenever the table's data version
    // has moved, which puts write back in the route; a wipe that lands just before such a
    // registration reads as 6. Three wipes in a row do not all lose that race; a broker that
    // never wipes reads 6 every time.
    let (mut wiped, mut perm) = (None, String::new());
    for _ in 0..3 {
        wiped = count(&admin(&["wipeWritePerm", "-n", n, "-b", broker_name]));
        perm = route_perm(n, topic);
        if perm == "4" {
            break;
        }
        println!("route perm {perm} after wipeWritePerm; wiping again");
    }
    fact("wipeWritePerm.ok", wiped.is_some_and(|c| c > 0).to_string());
    fact("wipeWritePerm.routePerm", perm);
    let added = count(&admin(&["addWritePerm", "-n", n, "-b", broker_name]));
    restore.armed = added.is_none();
    fact("addWritePerm.ok", added.is_some_and(|c| c > 0).to_string());
    fact("addWritePerm.sameCount", (added == wiped).to_string());
    fact("addWritePerm.routePerm", route_perm(n, topic));
}

/// The broker name in a table whose rows start with it: the first cell of the first row
/// that is not a header.
/// Waits (up to 60 s) until the broker at `addr` reports consume stats of `group` on
/// `topic`, which is what mqadmin's consumerProgress prints.
fn wait_for_offset(addr: &str, group: &str, topic: &str) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = protocol::Client::connect(addr).await.unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let stats = client.get_consume_stats(group, None).await.unwrap();
            if stats.offset_table.keys().any(|queue| queue.topic == topic) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{addr}: no consume stats of {group} on {topic}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
    });
}

fn broker_name_of(text: &str) -> String {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_whitespace().next())
        .find(|cell| cell.starts_with("broker"))
        .unwrap_or("broker-a")
        .to_string()
}

/// Facts that differ by design (names, versions, totals of a long-running peer).
fn expected_to_differ(key: &str) -> bool {
    matches!(
        key,
        "topicRoute.cluster" | "brokerStatus.putTotal" | "consumerConnection.version"
    )
}

fn assert_rocketry_facts(facts: &Facts) {
    let want = |key: &str, value: &str| {
        assert_eq!(
            facts.get(key).map(String::as_str),
            Some(value),
            "rocketry {key}: {facts:#?}"
        )
    };
    want("updateTopic.readQueueNums", "4");
    want("updateTopic.writeQueueNums", "4");
    want("updateTopic.perm", "RW-");
    want("topicStatus.queues", "4");
    want("topicRoute.queueData", "read=4 write=4 perm=6 sysFlag=0");
    want("topicList.hasTopic", "true");
    want("clusterList.rows", "1");
    want("consumerConnection.clients", "1");
    want("consumerProgress.queues", "4");
    want("brokerStatus.putTotal", &MESSAGES.to_string());
    want("queryMsgByKey.found", "1");
    want("queryMsgById.topicMatches", "true");
    want("brokerConsumeStats.queues", "4");
    want(
        "getNamesrvConfig.scanNotActiveBrokerInterval",
        r#"Some("4000")"#,
    );
    want("getNamesrvConfig.listenPortMatches", "true");
    want("updateNamesrvConfig.pathRefusedCode", "16");
    want("wipeWritePerm.routePerm", "4");
    want("addWritePerm.routePerm", "6");
    want("addWritePerm.sameCount", "true");
    want("updateBrokerConfig.readOnlyRoutePerm", "4");
    want("updateBrokerConfig.pathRefusedCode", "16");
    want("updateBrokerConfig.writableRoutePerm", "6");
    want("updateBrokerConfig.namesrvAddr", "true");
    want("getBrokerConfig.namesrvAddrMatches", "true");
    for key in [
        "queryMsgByUniqueKey.keysMatch",
        "queryMsgByUniqueKey.topicMatches",
        "queryMsgByOffset.keysMatch",
        "queryMsgByOffset.topicMatches",
        "cloneGroupOffset.success",
        "getConsumerConfig.groupNameMatches",
        "deleteSubGroup.success",
        "updateOrderConf.put",
        "updateOrderConf.getMatches",
        "updateOrderConf.delete",
        "updateKvConfig.success",
        "deleteKvConfig.success",
        "deleteExpiredCommitLog.success",
        "cleanExpiredCQ.success",
        "updateTopicPerm.success",
        "deleteTopic.fromCluster",
        "deleteTopic.fromNameServer",
    ] {
        want(key, "true");
    }
    want("updateTopicPerm.routePerm", "4");
    want("consumerStatus.consumeType", r#"Some("CONSUME_PASSIVELY")"#);
    want("consumerStatus.subscriptions", "2");
    want("consumerProgress-s.queues", "4");
    want("consumerProgress-s.rowsWithClientIp", "4");
    want("cloneGroupOffset.queues", "4");
    want(
        "cloneGroupOffset.consumerOffsetTotal",
        &MESSAGES.to_string(),
    );
    want("producerConnection.clients", "1");
    want("producerConnection.language", "JAVA");
    want("topicClusterList.clusters", r#"["ours"]"#);
    want("getConsumerConfig.retryMaxTimes", r#"Some("3")"#);
    want("resetOffsetByTime.queues", "4");
    want("resetOffsetByTime.offsets", r#"["0", "0", "0", "0"]"#);
    let lag: i64 = (0..4)
        .map(|q| {
            let row = &facts[&format!("consumerProgress.q{q}")];
            row.rsplit("diff=").next().unwrap().parse::<i64>().unwrap()
        })
        .sum();
    assert_eq!(lag, 0, "{facts:#?}");
}

/// Every mqadmin command of the scenario against rocketry, and, when the Apache RocketMQ
/// peer runs, against it too, comparing what each printed.
#[test]
fn mqadmin_sees_the_same_broker_in_rocketry_and_apache_rocketmq() {
    let rocketry = Rocketry::standalone("brokerClusterName=AdminCluster\nbrokerIP1=127.0.0.1\n");
    let ours = Target {
        label: "rocketry",
        namesrv: rocketry.namesrv.clone(),
        cluster: "AdminCluster".into(),
    };
    let peer = rocketmq_peer().map(|namesrv| Target {
        label: "apache",
        namesrv,
        cluster: "PeerCluster".into(),
    });
    let started = Instant::now();
    let (our_facts, peer_facts) = std::thread::scope(|scope| {
        let theirs = peer.as_ref().map(|p| scope.spawn(|| scenario(p)));
        let ours = scenario(&ours);
        (
            ours,
            theirs.map(|handle| handle.join().expect("apache scenario")),
        )
    });
    println!("scenarios took {:?}", started.elapsed());
    println!("rocketry: {our_facts:#?}");
    assert_rocketry_facts(&our_facts);
    let commands: std::collections::BTreeSet<&str> = our_facts
        .keys()
        .filter_map(|key| key.split('.').next())
        .collect();
    let Some(peer_facts) = peer_facts else {
        println!(
            "mqadmin: {} commands, {} fields checked on rocketry alone",
            commands.len(),
            our_facts.len()
        );
        println!("SKIPPED: the comparison with Apache RocketMQ (no peer)");
        return;
    };
    println!("apache: {peer_facts:#?}");
    let mut differences = Vec::new();
    for key in our_facts.keys().chain(peer_facts.keys()) {
        let (a, b) = (our_facts.get(key), peer_facts.get(key));
        if a != b && !expected_to_differ(key) && !differences.iter().any(|(k, _, _)| k == key) {
            differences.push((key.clone(), a.cloned(), b.cloned()));
        }
    }
    for (key, a, b) in &differences {
        println!("DIFFERENCE {key}: rocketry {a:?} apache {b:?}");
    }
    assert!(
        differences.is_empty(),
        "mqadmin printed different facts for rocketry and Apache RocketMQ: {differences:#?}"
    );
    let compared: std::collections::BTreeSet<&String> =
        our_facts.keys().chain(peer_facts.keys()).collect();
    println!(
        "mqadmin: {} commands, {} fields compared",
        commands.len(),
        compared.len()
    );
}
