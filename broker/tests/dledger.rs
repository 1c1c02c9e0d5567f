//! A Raft-replicated broker group (DLedger mode, docs/replication.md): three `rocketry broker`
//! processes on localhost with one name server. Two real Java clients send SYNC messages, one
//! by one and in batches of 16, while the leader is killed with SIGKILL (and restarted) at
//! random moments; the replica that takes over registers as master and the clients find it
//! through the name server. Every message a client saw acknowledged is consumed afterwards,
//! in queue order, and the three CommitLogs are byte-identical. The test command runs 4,000
//! messages and two kills; `scripts/soak/failover` runs 100,000 and five (`DLEDGER_MESSAGES`,
//! `DLEDGER_KILLS`).

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use support::group::*;
use support::*;

#[test]
fn acknowledged_sends_survive_the_leader_killed_at_random_moments() {
    let count = from_env("DLEDGER_MESSAGES", 4000);
    let kills_wanted = from_env("DLEDGER_KILLS", 2) as usize;
    let namesrv = Rocketry::namesrv();
    // No topic is created by a send: the new leader serves the topic because it copied it.
    let mut replicas = start_group(
        &namesrv.namesrv,
        "flushDiskType=SYNC_FLUSH\nautoCreateTopicEnable=false\n",
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let first = master(&runtime, &namesrv.namesrv, &replicas);
    let topic = unique("dl");
    let run = unique("run");
    // Created on the master only, as an admin would: the followers copy its topics, so the
    // replica that takes over serves it too.
    create_topic_copied(&runtime, &replicas, first, &topic, 4);

    let dir = tempfile::tempdir().unwrap();
    let half = count / 2;
    let ack_files = [
        dir.path().join("acked-single"),
        dir.path().join("acked-batch"),
    ];
    let producers = [
        producer(
            &namesrv.namesrv,
            &topic,
            &run,
            ("sync", Routes::EverySecond),
            0,
            half,
            &ack_files[0],
        ),
        producer(
            &namesrv.namesrv,
            &topic,
            &run,
            ("batch", Routes::EverySecond),
            half,
            count - half,
            &ack_files[1],
        ),
    ];

    // Random moments, 2 to 6 s apart (the seed is printed, so a run can be told apart).
    let seed = now_ms();
    let mut random = seed;
    let mut kills = Vec::new();
    for _ in 0..kills_wanted {
        random = random
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        std::thread::sleep(Duration::from_millis(2000 + (random >> 33) % 4000));
        if producers.iter().all(|p| p.is_finished()) {
            break;
        }
        let leader = master(&runtime, &namesrv.namesrv, &replicas);
        let killed_at = now_ms();
        replicas[leader].kill();
        kills.push((killed_at, replicas[leader].broker_addr.clone().unwrap()));
        let next = master(&runtime, &namesrv.namesrv, &replicas);
        println!(
            "killed n{leader}; n{next} registered as master {} ms later",
            now_ms() - killed_at
        );
        replicas[leader].restart();
    }
    assert_eq!(
        kills.len(),
        kills_wanted,
        "the sends ended before the kills (seed {seed})"
    );
    let mut acked = BTreeMap::new();
    let mut sent = Vec::new();
    for (producer, file) in producers.into_iter().zip(&ack_files) {
        let (result, acks) = acknowledged(producer, file);
        acked.extend(acks);
        sent.push(result);
    }

    // Kill to the first acknowledgement after it by another broker (one already on its way
    // from the killed leader may arrive just after the kill).
    let mut takeovers: Vec<u64> = kills
        .iter()
        .filter_map(|(kill, killed)| {
            acked
                .values()
                .filter(|ack| ack.at > *kill && ack.broker != *killed)
                .map(|ack| ack.at - kill)
                .min()
        })
        .collect();
    assert_eq!(
        takeovers.len(),
        kills.len(),
        "no send acknowledged after a kill: {sent:?}"
    );
    takeovers.sort();

    let (seen, got) = consume_acknowledged(&namesrv.namesrv, &topic, &run, &acked, dir.path());

    // Every replica holds the same CommitLog once each has caught up and stopped cleanly.
    let bytes = caught_up(&runtime, &namesrv.namesrv, &replicas);
    stop_and_compare(&mut replicas);
    println!("{sent:?}");
    println!(
        "seed {seed}: {} of {count} sends acknowledged (one by one and in batches), {} \
         distinct consumed ({} deliveries), {} leaders killed; kill to first acknowledgement \
         by the new leader: p50 {} ms, p99 {} ms; CommitLogs identical ({bytes} bytes each)",
        acked.len(),
        seen.len(),
        got["received"],
        kills.len(),
        percentile(&takeovers, 0.5),
        percentile(&takeovers, 0.99),
    );
}

/// Follower reads, RocketMQ's `slaveReadEnable`: the leader sends a consumer that reads
/// further behind the CommitLog's end than the page cache holds (here any distance,
/// `accessMessageInMemoryMaxRatio=0`) to the group's `whichBrokerWhenConsumeSlowly`, a
/// follower, which serves it committed messages. The real Java push consumer follows the
/// suggestion; every acknowledged message is consumed once, in queue order, and the
/// follower served all but the first pull of each queue.
#[test]
fn a_lagging_consumer_is_served_by_the_follower_the_leader_names() {
    const MESSAGES: u64 = 400;
    const QUEUES: u64 = 4;
    let namesrv = Rocketry::namesrv();
    let replicas = start_group(
        &namesrv.namesrv,
        "slaveReadEnable=true\naccessMessageInMemoryMaxRatio=0\n",
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let leader = master(&runtime, &namesrv.namesrv, &replicas);
    let follower = (leader + 1) % replicas.len();
    let follower_id = follower as i64 + 1;
    let topic = unique("fr");
    let group = unique("cg");
    runtime.block_on(async {
        let client = protocol::Client::connect(replicas[leader].broker_addr.as_deref().unwrap())
            .await
            .unwrap();
        create_topic_on(&client, &topic, QUEUES as i32).await;
        let mut config = protocol::body::SubscriptionGroupConfig::named(group.as_str());
        config.which_broker_when_consume_slowly = follower_id;
        client.create_subscription_group(&config).await.unwrap();
    });
    // The follower copies the leader's topics and groups every 3 s, and is listed under
    // its brokerId.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = runtime.block_on(async {
            let addr = replicas[follower].broker_addr.as_deref().unwrap();
            let client = protocol::Client::connect(addr).await.ok()?;
            let groups = client.get_all_subscription_groups().await.ok()?;
            let copied = groups
                .subscription_group_table
                .get(&group)
                .is_some_and(|g| g.which_broker_when_consume_slowly == follower_id);
            let routes = protocol::Client::connect(namesrv.namesrv.as_str())
                .await
                .ok()?
                .get_cluster_info()
                .await
                .ok()?;
            let listed = routes
                .broker_addr_table
                .get(GROUP)?
                .broker_addrs
                .get(&follower_id)
                .is_some_and(|a| Some(a.as_str()) == replicas[follower].broker_addr.as_deref());
            Some(copied && listed)
        });
        if ready == Some(true) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the follower never copied the group"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    let dir = tempfile::tempdir().unwrap();
    let acked_file = dir.path().join("acked");
    let run = unique("run");
    let sent = producer(
        &namesrv.namesrv,
        &topic,
        &run,
        ("sync", Routes::EverySecond),
        0,
        MESSAGES,
        &acked_file,
    )
    .join()
    .unwrap();
    assert_eq!(sent["sent"].as_u64(), Some(MESSAGES), "{sent}");
    let served_before: Vec<u64> = replicas
        .iter()
        .map(|r| runtime_info(&runtime, r, "msgGetTotalTodayNow"))
        .collect();

    let seen_file = dir.path().join("seen");
    let got = java_client(
        "5.5.0",
        &[
            "consume".into(),
            format!("namesrv={}", namesrv.namesrv),
            format!("topic={topic}"),
            format!("group={group}"),
            "type=push".into(),
            format!("expect={MESSAGES}"),
            format!("run={run}"),
            format!("seen={}", seen_file.display()),
        ],
    );
    assert_all_consumed(
        acknowledgements(&acked_file).keys(),
        &indexes(&seen_file),
        &got,
    );
    let served: Vec<u64> = replicas
        .iter()
        .zip(&served_before)
        .map(|(r, before)| runtime_info(&runtime, r, "msgGetTotalTodayNow") - before)
        .collect();
    println!("messages served by n0, n1, n2 (n{leader} leads): {served:?}");
    // The first pull of each queue goes to the leader (up to 32 messages), the rest to the
    // follower it names.
    assert!(
        served[follower] >= MESSAGES - QUEUES * 32,
        "the follower served {} of {MESSAGES}: {served:?}",
        served[follower]
    );
    assert_eq!(
        served.iter().sum::<u64>(),
        got["received"].as_u64().unwrap()
    );
}

/// `rocketry admin broker transfer-leader` of this build, sent to `broker`: the JSON it
/// printed, or the error it exited with.
fn transfer_leader(broker: &Rocketry, to: Option<&str>) -> Result<String, String> {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_rocketry"));
    command.args([
        "admin",
        "--output",
        "json",
        "broker",
        "transfer-leader",
        "-b",
    ]);
    command.arg(broker.broker_addr.as_deref().unwrap());
    if let Some(to) = to {
        command.args(["--to", to]);
    }
    let output = command.output().unwrap();
    if output.status.success() {
        let printed: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        Ok(printed["result"].as_str().unwrap().to_string())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

/// Leadership on demand (an admin request, Rocketry's own), under load: while the real Java
/// client sends, one by one, the leader hands its role to the replica named, and then that
/// one to the follower furthest along (the default); each answers once the new leader leads,
/// which then registers as master. The client looks its routes up only every 30 s (its
/// default), so it keeps sending to the old leader for a while: the old leader passes those
/// sends on to the new one, and not one send fails. A follower refuses the request, naming
/// the leader.
#[test]
fn leadership_moves_on_demand_under_load_and_no_send_fails() {
    const MESSAGES: u64 = 2000;
    let namesrv = Rocketry::namesrv();
    let replicas = start_group(&namesrv.namesrv, "");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let first = master(&runtime, &namesrv.namesrv, &replicas);
    let named = (first + 1) % replicas.len();

    let refused = transfer_leader(&replicas[named], Some(&format!("n{first}"))).unwrap_err();
    assert!(
        refused.contains(&format!("n{named} does not lead its group; n{first} does")),
        "{refused}"
    );
    let refused = transfer_leader(&replicas[first], Some("n7")).unwrap_err();
    assert!(refused.contains("n7 is not a follower"), "{refused}");

    let topic = unique("tl");
    create_topic_copied(&runtime, &replicas, first, &topic, 4);
    let dir = tempfile::tempdir().unwrap();
    let acked_file = dir.path().join("acked");
    let run = unique("run");
    let sending = producer(
        &namesrv.namesrv,
        &topic,
        &run,
        ("sync", Routes::ClientDefault),
        0,
        MESSAGES,
        &acked_file,
    );
    // The client writes its acknowledgements at the end; the brokers count what they stored.
    let stored = || -> u64 {
        replicas
            .iter()
            .map(|replica| runtime_info(&runtime, replica, "msgPutTotalTodayNow"))
            .sum()
    };
    let wait_for_sends = |at_least: u64| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while stored() < at_least {
            assert!(
                Instant::now() < deadline,
                "the sends stalled at {}",
                stored()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let registered_as_master = |replica: usize| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while master(&runtime, &namesrv.namesrv, &replicas) != replica {
            assert!(
                Instant::now() < deadline,
                "n{replica} never registered as master"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };

    // Each replica's own account (runtime info): its role, and Raft's term, which moves
    // on with every election; a transfer is one.
    let standing = |replica: usize| -> (String, u64, u64) {
        let addr = replicas[replica].broker_addr.clone().unwrap();
        let table = runtime.block_on(async move {
            let client = protocol::Client::connect(addr.as_str()).await.unwrap();
            client.get_broker_runtime_info().await.unwrap().table
        });
        let number = |key: &str| table[key].parse::<u64>().unwrap();
        (
            table["replicaRole"].clone(),
            number("raftTerm"),
            number("sendsPassedOnToLeader"),
        )
    };
    let (role, term_before, _) = standing(first);
    assert_eq!(role, "leader");
    assert_eq!(standing(named).0, "follower");

    wait_for_sends(MESSAGES / 8);
    let answer = transfer_leader(&replicas[first], Some(&format!("n{named}"))).unwrap();
    assert_eq!(answer, format!("n{named} leads the group"));
    registered_as_master(named);

    wait_for_sends(MESSAGES / 2);
    let answer = transfer_leader(&replicas[named], None).unwrap();
    let chosen = answer
        .strip_prefix('n')
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or_else(|| panic!("{answer}"));
    assert_ne!(chosen, named);
    registered_as_master(chosen);
    let (role, term_after, _) = standing(chosen);
    assert_eq!(role, "leader");
    assert_eq!(
        term_after,
        term_before + 2,
        "two transfers should cost two elections and no more"
    );

    let sent = sending.join().unwrap();
    assert_eq!(sent["sent"].as_u64(), Some(MESSAGES), "{sent}");
    assert_eq!(sent["failed"].as_u64(), Some(0), "{sent}");
    let acks = acknowledgements(&acked_file);
    let by: BTreeMap<&str, usize> = acks.values().fold(BTreeMap::new(), |mut by, ack| {
        *by.entry(ack.broker.as_str()).or_default() += 1;
        by
    });
    let passed_on: Vec<u64> = (0..replicas.len()).map(|r| standing(r).2).collect();
    println!("acknowledged by (stored on) each leader: {by:?}; sends passed on to the leader by n0, n1, n2: {passed_on:?}");
    assert!(
        by.len() >= 2,
        "every send was stored by one replica: {by:?}"
    );

    consume_acknowledged(&namesrv.namesrv, &topic, &run, &acks, dir.path());
}

/// A broker that ran alone becomes the first of three replicas (`replicasPerGroup` 1 to 3, as
/// the operator makes it): it keeps its messages, the two new replicas are sent them as a
/// Raft snapshot, and the real Java clients consume every message, from before and after,
/// from the group, whose CommitLogs are then byte-identical.
#[test]
fn a_broker_that_ran_alone_becomes_the_first_of_three_replicas_with_its_messages() {
    let namesrv = Rocketry::namesrv();
    let extra = "flushDiskType=SYNC_FLUSH\nautoCreateTopicEnable=false\n";
    let mut alone = Rocketry::broker_unstarted(&namesrv.namesrv, GROUP, extra);
    alone.start("broker ready");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let topic = unique("grow");
    let run = unique("run");
    create_topic(&runtime, &alone, &topic, 4);
    let dir = tempfile::tempdir().unwrap();
    let ack_files = [
        dir.path().join("acked-alone"),
        dir.path().join("acked-group"),
    ];
    let before = producer(
        &namesrv.namesrv,
        &topic,
        &run,
        ("batch", Routes::EverySecond),
        0,
        1000,
        &ack_files[0],
    );
    let (_, mut acked) = acknowledged(before, &ack_files[0]);
    assert_eq!(acked.len(), 1000, "a broker alone acknowledges every send");
    let status = alone.terminate();
    assert!(status.success(), "{status}");

    // Its own config gains the DLedger keys, as n0; two new replicas join it.
    let raft_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let config = alone.data_dir.join("broker.conf");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&dledger_keys(&raft_ports, "127.0.0.1", 0));
    std::fs::write(&config, text).unwrap();
    alone.start("broker ready");
    let mut replicas = vec![alone];
    for id in 1..3 {
        let config = format!("{}{extra}", dledger_keys(&raft_ports, "127.0.0.1", id));
        let mut replica = Rocketry::broker_unstarted(&namesrv.namesrv, GROUP, &config);
        replica.start("broker ready");
        replicas.push(replica);
    }
    assert_eq!(master(&runtime, &namesrv.namesrv, &replicas), 0);
    let after = producer(
        &namesrv.namesrv,
        &topic,
        &run,
        ("sync", Routes::EverySecond),
        1000,
        500,
        &ack_files[1],
    );
    let (sent, acks) = acknowledged(after, &ack_files[1]);
    acked.extend(acks);
    let (seen, _) = consume_acknowledged(&namesrv.namesrv, &topic, &run, &acked, dir.path());
    let bytes = caught_up(&runtime, &namesrv.namesrv, &replicas);
    stop_and_compare(&mut replicas);
    println!(
        "1000 sends acknowledged by the broker alone, then {sent}; {} distinct consumed from \
         the group of 3; CommitLogs identical ({bytes} bytes each)",
        seen.len()
    );
}

/// `count` messages of 200 bytes sent one by one to queue 0 of `topic` on `replica`, each
/// answered before the next (so each is a Raft entry of its own).
fn send_one_by_one(runtime: &tokio::runtime::Runtime, replica: &Rocketry, topic: &str, count: u64) {
    let addr = replica.broker_addr.clone().unwrap();
    runtime.block_on(async {
        let client = protocol::Client::connect(addr.as_str()).await.unwrap();
        for n in 0..count {
            let header = protocol::header::SendMessageRequestHeader {
                producer_group: "behind_producer".into(),
                topic: topic.into(),
                default_topic: "TBW102".into(),
                default_topic_queue_nums: 4,
                queue_id: 0,
                born_timestamp: 1,
                ..Default::default()
            };
            client
                .send_message(header, vec![(n % 251) as u8; 200])
                .await
                .unwrap();
        }
    });
}

/// Each CommitLog segment file of `replica`, by name.
fn segments(replica: &Rocketry) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(replica.data_dir.join("store/commitlog"))
        .unwrap()
        .map(|entry| {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).unwrap())
        })
        .collect()
}

#[test]
fn a_replica_down_longer_than_its_group_keeps_segments_begins_again_on_its_own() {
    let namesrv = Rocketry::namesrv();
    // Small segments, and retention that deletes every segment it may as soon as it may.
    let hours: Vec<String> = (0..24).map(|hour| format!("{hour:02}")).collect();
    let extra = format!(
        "flushDiskType=ASYNC_FLUSH\nautoCreateTopicEnable=false\n\
         mappedFileSizeCommitLog=65536\nfileReservedTime=0\ndeleteWhen={}\n\
         cleanResourceInterval=500\n",
        hours.join(";")
    );
    let mut replicas = start_group(&namesrv.namesrv, &extra);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let leader = master(&runtime, &namesrv.namesrv, &replicas);
    let topic = unique("behind");
    create_topic_copied(&runtime, &replicas, leader, &topic, 4);
    send_one_by_one(&runtime, &replicas[leader], &topic, 100);
    caught_up(&runtime, &namesrv.namesrv, &replicas);

    // A follower stops. Past 5,000 entries the others snapshot and purge their logs, and
    // retention deletes the segments the logs no longer name.
    let behind = (leader + 1) % 3;
    let its_end = runtime_info(&runtime, &replicas[behind], "commitLogMaxOffset");
    assert!(replicas[behind].terminate().success());
    send_one_by_one(&runtime, &replicas[leader], &topic, 6000);
    let deadline = Instant::now() + Duration::from_secs(60);
    while runtime_info(&runtime, &replicas[leader], "commitLogMinOffset") <= its_end {
        assert!(
            Instant::now() < deadline,
            "the leader kept its first segment"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // Back, the leader tells it to begin again; it starts itself over, in the same process,
    // empty, and is sent the segments the leader keeps.
    replicas[behind].restart();
    let pid = replicas[behind].pid();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !replicas[behind].log_text().contains("begins again empty") {
        assert!(Instant::now() < deadline, "{}", replicas[behind].log_text());
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(replicas[behind].pid(), pid, "started over by exec");
    send_one_by_one(&runtime, &replicas[leader], &topic, 100);
    let end = caught_up(&runtime, &namesrv.namesrv, &replicas);
    let leader_first = runtime_info(&runtime, &replicas[leader], "commitLogMinOffset");
    let its_first = runtime_info(&runtime, &replicas[behind], "commitLogMinOffset");
    assert!(
        its_first > its_end,
        "it kept records from before: {its_first}"
    );
    let (kept, its) = (segments(&replicas[leader]), segments(&replicas[behind]));
    for (name, bytes) in &its {
        if let Some(leaders) = kept.get(name) {
            assert!(leaders == bytes, "segment {name} differs");
        }
    }
    assert!(its.contains_key(kept.keys().last().unwrap()));
    for replica in &mut replicas {
        let status = replica.terminate();
        assert!(status.success(), "{status}\n{}", replica.log_text());
        assert!(!replica.log_text().contains("panicked"));
    }
    println!(
        "the follower's records ended at {its_end}; the leader kept from {leader_first}; it \
         began again at {its_first} and caught up to {end}"
    );
}
