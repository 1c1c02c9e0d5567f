//! Draining a broker group under a live producer, as an operations team does before a
//! restart: two `rocketry broker` groups behind one name server, the real Java 5.5.0 producer
//! sending all along, and the real mqadmin 5.5.0. `wipeWritePerm` on broker-a moves the sends
//! to broker-b once the producer refreshes its routes (broker-a stores nothing more while
//! broker-b goes on storing), `addWritePerm` brings them back, no send fails after the
//! client's retries, and a consumer then gets every acknowledged message.

mod support;

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use protocol::Client;
use support::*;

const QUEUES: i32 = 4;
/// How many more messages broker-b must store, while broker-a stores none, to call broker-a
/// drained; and how many broker-a must store again once write is back.
const PROOF: i64 = 50;

/// Messages stored on the topic by one broker: the sum of its queues' max offsets.
struct Stored {
    runtime: tokio::runtime::Runtime,
    a: Client,
    b: Client,
    topic: String,
}

impl Stored {
    fn counts(&self) -> (i64, i64) {
        self.runtime
            .block_on(async { (self.count(&self.a).await, self.count(&self.b).await) })
    }

    async fn count(&self, broker: &Client) -> i64 {
        let mut total = 0;
        for queue_id in 0..QUEUES {
            total += broker.get_max_offset(&self.topic, queue_id).await.unwrap();
        }
        total
    }

    /// Polls the counts until `done(start, now)` holds, up to 60 s.
    fn until(
        &self,
        what: &str,
        mut done: impl FnMut((i64, i64), (i64, i64)) -> bool,
    ) -> (i64, i64) {
        let start = self.counts();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let now = self.counts();
            if done(start, now) {
                println!("{what}: stored (a, b) {start:?} -> {now:?}");
                return now;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: stored (a, b) {start:?} -> {now:?} in 60 s"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// mqadmin `wipeWritePerm`/`addWritePerm` on broker-a, tried up to three times until it
/// reports OK (mqadmin exits 0 whatever happened; its RPC timeout is short on busy cores).
fn write_perm(command: &str, namesrv: &str) {
    for _ in 0..3 {
        let out = mqadmin(&[command, "-n", namesrv, "-b", "broker-a"]);
        if out
            .lines()
            .any(|line| line.contains("broker[broker-a]") && line.contains("OK"))
        {
            return;
        }
        println!("mqadmin {command} did not report OK, retrying: {out}");
    }
    panic!("mqadmin {command} never reported OK");
}

/// The running producer; killed if the test stops before it ends by itself.
struct Producer(Option<Child>);

impl Producer {
    /// Waits for the producer to end and returns its `RESULT` object.
    fn result(mut self) -> serde_json::Value {
        let output = self.0.take().unwrap().wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let result = stdout
            .lines()
            .find_map(|line| line.strip_prefix("RESULT "))
            .unwrap_or_else(|| panic!("the producer printed no RESULT: {stdout}"));
        println!("producer: {result}");
        serde_json::from_str(result).unwrap()
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            kill_process_group(child);
        }
    }
}

#[test]
fn wipe_write_perm_drains_a_broker_under_a_live_producer_without_losing_a_message() {
    let namesrv = Rocketry::namesrv();
    let ns = namesrv.namesrv.clone();
    let a = Rocketry::broker(&ns, "broker-a");
    let b = Rocketry::broker(&ns, "broker-b");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let topic = unique("drain");
    let stored = runtime.block_on(async {
        let a = Client::connect(a.broker_addr.as_deref().unwrap())
            .await
            .unwrap();
        let b = Client::connect(b.broker_addr.as_deref().unwrap())
            .await
            .unwrap();
        create_topic_on(&a, &topic, QUEUES).await;
        create_topic_on(&b, &topic, QUEUES).await;
        let names = Client::connect(&ns).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while names
            .get_route_info(&topic)
            .await
            .map_or(0, |route| route.queue_datas.len())
            < 2
        {
            assert!(Instant::now() < deadline, "{topic} never routed to both");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        (a, b)
    });
    let stored = Stored {
        runtime,
        a: stored.0,
        b: stored.1,
        topic: topic.clone(),
    };

    let run = unique("drainrun");
    let dir = tempfile::tempdir().unwrap();
    let stop = dir.path().join("stop");
    let producer = Producer(Some(
        spawn_in_own_group(
            features_command(&[
                "produce".into(),
                format!("namesrv={ns}"),
                format!("topic={topic}"),
                "count=1000000".into(),
                format!("run={run}"),
                "intervalMs=20".into(),
                format!("untilFile={}", stop.display()),
                // Routes every second instead of every 30 s, so the drain is quick to see.
                "pollNameServerInterval=1000".into(),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null()),
        )
        .expect("cannot start the Java producer"),
    ));

    stored.until("both brokers take sends", |_, (a, b)| a > 0 && b > 0);
    write_perm("wipeWritePerm", &ns);
    // Sends already routed to broker-a may still land; then it must stay still while
    // broker-b stores PROOF more.
    let mut drained = stored.counts();
    stored.until("broker-a drained", |_, now| {
        if now.0 != drained.0 {
            drained = now;
        }
        now.1 - drained.1 >= PROOF
    });
    write_perm("addWritePerm", &ns);
    stored.until("broker-a takes sends again", |start, now| {
        now.0 - start.0 >= PROOF
    });

    std::fs::write(&stop, b"").unwrap();
    let sent = producer.result();
    assert_eq!(sent["failed"], 0, "{sent}");
    assert_eq!(sent["failedIndexes"], serde_json::json!([]), "{sent}");
    let attempted = sent["attempted"].as_u64().unwrap();
    assert_eq!(sent["sent"], attempted, "{sent}");
    // A send retried after a lost answer may be stored twice, never less than once.
    let (a_total, b_total) = stored.counts();
    assert!(
        a_total + b_total >= attempted as i64,
        "stored {a_total} + {b_total} of {attempted}"
    );

    let out = dir.path().join("received");
    let got = features(consume_args(
        &ns,
        &topic,
        &unique("draing"),
        &run,
        &out,
        &[
            &format!("expect={attempted}"),
            &format!("verify={attempted}"),
            "timeoutMs=60000",
        ],
    ));
    assert_eq!(got["missing"], 0, "{got}");
}
