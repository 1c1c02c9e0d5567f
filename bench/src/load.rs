//! The load engine shared by the load scenarios: producers and consumers over the `protocol`
//! client, timed with HdrHistograms.
//!
//! Each producer is one connection with `inflight` requests outstanding on it (1 is a
//! synchronous producer; more is an asynchronous one, as Java's `send(msg, callback)` keeps
//! several requests in flight on one channel). Each consumer is one connection that long-polls
//! its share of the queues. Every body starts with the send time (microseconds since the Unix
//! epoch, little-endian u64), so a consumer can time send-to-consume.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context as _, Result};
use bytes::{BufMut, Bytes, BytesMut};
use hdrhistogram::Histogram;
use message::{encode_batch, property, Message, Properties, UniqueIdGenerator};
use protocol::body::MASTER_ID;
use protocol::client::PullStatus;
use protocol::header::{
    pull_sys_flag, CreateTopicRequestHeader, PullMessageRequestHeader, SendMessageRequestHeader,
};
use protocol::Client;
use serde::{Deserialize, Serialize};

use crate::report::{Percentiles, Report};

/// The load: who sends what, how much, and for how long.
#[derive(clap::Args, Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LoadConfig {
    /// Name server address.
    #[arg(long, default_value = "127.0.0.1:9876")]
    pub namesrv: String,
    /// Topic (created on the broker if needed).
    #[arg(long, default_value = "BenchTopic")]
    pub topic: String,
    /// Read and write queues of the topic.
    #[arg(long, default_value_t = 8)]
    pub queues: i32,
    /// Producer connections.
    #[arg(short = 'p', long, default_value_t = 16)]
    pub producers: usize,
    /// Requests in flight per producer connection: 1 is a sync producer, more an async one.
    #[arg(long, default_value_t = 1)]
    pub inflight: usize,
    /// Body size in bytes (at least 8: the send timestamp).
    #[arg(short = 's', long, default_value_t = 1024)]
    pub size: usize,
    /// Messages per request (1 sends SEND_MESSAGE_V2, more SEND_BATCH_MESSAGE).
    #[arg(short = 'b', long, default_value_t = 1)]
    pub batch: usize,
    /// Consumer connections (0: produce only).
    #[arg(short = 'c', long, default_value_t = 0)]
    pub consumers: usize,
    /// Seconds of measured load after the warm-up (ignored with --count).
    #[arg(short = 'd', long, default_value_t = 10.0)]
    pub duration: f64,
    /// Send this many messages in all instead of running for a duration.
    #[arg(long)]
    pub count: Option<u64>,
    /// Seconds of load before measuring (not counted).
    #[arg(long, default_value_t = 0.0)]
    pub warmup: f64,
    /// Per-request timeout in milliseconds.
    #[arg(long, default_value_t = 3000)]
    pub timeout_ms: u64,
    /// Seconds consumers may take after the producers stop to catch up.
    #[arg(long, default_value_t = 10.0)]
    pub drain: f64,
    /// Send at this many messages per second in all, spread evenly over the producers'
    /// requests, instead of as fast as the broker answers. A request held back by a late
    /// answer counts its latency from when it was due, so a stall also shows in the requests
    /// queued behind it (no coordinated omission).
    #[arg(long)]
    #[serde(default)]
    pub rate: Option<f64>,
}

impl Default for LoadConfig {
    fn default() -> Self {
        LoadConfig {
            namesrv: "127.0.0.1:9876".into(),
            topic: "BenchTopic".into(),
            queues: 8,
            producers: 16,
            inflight: 1,
            size: 1024,
            batch: 1,
            consumers: 0,
            duration: 10.0,
            count: None,
            warmup: 0.0,
            timeout_ms: 3000,
            drain: 10.0,
            rate: None,
        }
    }
}

pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// CPU seconds this process (the load generator) has used.
fn own_cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return 0.0;
    }
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(usage.ru_utime) + t(usage.ru_stime)
}

fn histogram() -> Histogram<u64> {
    Histogram::new(3).expect("3 significant figures is valid")
}

/// The broker a topic lives on, found through the name server.
#[derive(Debug, Clone)]
pub struct Target {
    pub broker_addr: String,
    pub broker_name: String,
    pub topic: String,
    pub queues: Vec<i32>,
}

/// The master broker the name server knows of (the first, by name).
pub async fn find_broker(namesrv: &Client) -> Result<(String, String)> {
    let cluster = namesrv.get_cluster_info().await?;
    cluster
        .broker_addr_table
        .values()
        .find_map(|b| {
            b.broker_addrs
                .get(&MASTER_ID)
                .map(|a| (b.broker_name.clone(), a.clone()))
        })
        .ok_or_else(|| anyhow!("the name server knows no master broker"))
}

/// Creates `topic` with `queues` queues on the broker and waits until the name server routes it.
pub async fn prepare(namesrv_addr: &str, topic: &str, queues: i32) -> Result<Target> {
    let namesrv = Client::connect(namesrv_addr)
        .await
        .with_context(|| format!("connecting to the name server {namesrv_addr}"))?;
    let (broker_name, broker_addr) = find_broker(&namesrv).await?;
    let broker = Client::connect(&broker_addr)
        .await
        .with_context(|| format!("connecting to the broker {broker_addr}"))?;
    broker
        .create_topic(&CreateTopicRequestHeader::read_write(
            topic.to_owned(),
            queues,
        ))
        .await
        .with_context(|| format!("creating topic {topic}"))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(route) = namesrv.get_route_info(topic).await {
            let n = route
                .queue_datas
                .iter()
                .filter(|q| q.broker_name == broker_name)
                .map(|q| q.write_queue_nums)
                .max()
                .unwrap_or(0);
            if n >= queues {
                break;
            }
        }
        if Instant::now() > deadline {
            bail!("the name server does not route {topic} with {queues} queues after 30 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(Target {
        broker_addr,
        broker_name,
        topic: topic.to_owned(),
        queues: (0..queues).collect(),
    })
}

/// Counters and flags the producer and consumer tasks share.
struct Shared {
    stop_producers: AtomicBool,
    stop_consumers: AtomicBool,
    /// Messages still to send in count mode (may go negative).
    budget: Option<AtomicI64>,
    /// Start of the measured window, in `now_us` time.
    measure_from_us: AtomicU64,
    measuring: AtomicBool,
    sent_total: AtomicU64,
    sent_measured: AtomicU64,
    send_errors: AtomicU64,
    consumed_total: AtomicU64,
    /// Body bytes consumed.
    consumed_bytes: AtomicU64,
    errors: Mutex<BTreeMap<String, u64>>,
}

impl Shared {
    fn new(budget: Option<u64>) -> Shared {
        Shared {
            stop_producers: AtomicBool::new(false),
            stop_consumers: AtomicBool::new(false),
            budget: budget.map(|n| AtomicI64::new(n as i64)),
            measure_from_us: AtomicU64::new(u64::MAX),
            measuring: AtomicBool::new(false),
            sent_total: AtomicU64::new(0),
            sent_measured: AtomicU64::new(0),
            send_errors: AtomicU64::new(0),
            consumed_total: AtomicU64::new(0),
            consumed_bytes: AtomicU64::new(0),
            errors: Mutex::new(BTreeMap::new()),
        }
    }

    fn error(&self, kind: String) {
        *self
            .errors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(kind)
            .or_default() += 1;
    }
}

fn error_kind(e: &protocol::Error) -> String {
    match e {
        protocol::Error::Remote { code, remark } => {
            let remark: String = remark.as_deref().unwrap_or("").chars().take(60).collect();
            format!("remote code {code}: {remark}")
        }
        other => {
            let text = other.to_string();
            text.chars().take(60).collect()
        }
    }
}

fn body(size: usize, stamp_us: u64) -> Bytes {
    let mut b = BytesMut::with_capacity(size.max(8));
    b.put_u64_le(stamp_us);
    b.resize(size.max(8), b'x');
    b.freeze()
}

struct ProducerSlot {
    client: Client,
    target: Arc<Target>,
    cfg: Arc<LoadConfig>,
    shared: Arc<Shared>,
    ids: Arc<UniqueIdGenerator>,
    first_queue: usize,
}

impl ProducerSlot {
    fn header(&self, queue_id: i32, properties: String) -> SendMessageRequestHeader {
        SendMessageRequestHeader {
            producer_group: "bench_producer".into(),
            topic: self.target.topic.as_str().into(),
            default_topic: "TBW102".into(),
            default_topic_queue_nums: 4,
            queue_id,
            sys_flag: 0,
            born_timestamp: (now_us() / 1000) as i64,
            flag: 0,
            properties: Some(properties),
            batch: (self.cfg.batch > 1).then_some(true),
            broker_name: Some(self.target.broker_name.as_str().into()),
            ..SendMessageRequestHeader::default()
        }
    }

    async fn run(self) -> Histogram<u64> {
        let mut hist = histogram();
        let cfg = &self.cfg;
        let shared = &self.shared;
        let timeout = Duration::from_millis(cfg.timeout_ms);
        let queues = &self.target.queues;
        let mut next = self.first_queue;
        let batch = cfg.batch.max(1);
        // With a rate, each request slot sends on its own schedule, staggered over the slots.
        let slots = (cfg.producers * cfg.inflight) as f64;
        let pace = cfg
            .rate
            .map(|rate| Duration::from_secs_f64(slots * batch as f64 / rate));
        let mut due = Instant::now()
            + pace.map_or(Duration::ZERO, |pace| {
                pace.mul_f64(self.first_queue as f64 / slots)
            });
        loop {
            if shared.stop_producers.load(Ordering::Relaxed) {
                break;
            }
            if let Some(budget) = &shared.budget {
                if budget.fetch_sub(batch as i64, Ordering::Relaxed) <= 0 {
                    break;
                }
            }
            let queue_id = queues[next % queues.len()];
            next += 1;
            let (stamp, started) = match pace {
                Some(pace) => {
                    // Behind schedule because the last answer came late: the time this
                    // request waited for it counts. Ahead of it: sleep, and count from the
                    // wake-up, since the timer's own millisecond granularity is not the
                    // broker's doing.
                    let started = if Instant::now() >= due {
                        due
                    } else {
                        tokio::time::sleep_until(due.into()).await;
                        if shared.stop_producers.load(Ordering::Relaxed) {
                            break;
                        }
                        Instant::now()
                    };
                    due += pace;
                    let waited = started.elapsed().as_micros() as u64;
                    (now_us().saturating_sub(waited), started)
                }
                None => (now_us(), Instant::now()),
            };
            let result = if batch == 1 {
                let mut props = Properties::new();
                props.insert(property::UNIQ_KEY, self.ids.next_id());
                props.insert(property::WAIT, "true");
                let header = self.header(queue_id, props.encode());
                let request = self.client.send_message(header, body(cfg.size, stamp));
                tokio::time::timeout(timeout, request).await
            } else {
                let messages: Vec<Message> = (0..batch)
                    .map(|_| {
                        let mut m = Message::new(self.target.topic.clone(), body(cfg.size, stamp));
                        m.properties.insert(property::UNIQ_KEY, self.ids.next_id());
                        m.properties.insert(property::WAIT, "true");
                        m
                    })
                    .collect();
                let encoded = encode_batch(&messages).expect("small properties");
                let mut props = Properties::new();
                props.insert(property::WAIT, "true");
                let header = self.header(queue_id, props.encode());
                let request = self.client.send_batch(header, encoded);
                tokio::time::timeout(timeout, request).await
            };
            let took = started.elapsed();
            let measured = shared.measuring.load(Ordering::Relaxed)
                && counts(
                    pace.is_some(),
                    stamp,
                    now_us(),
                    shared.measure_from_us.load(Ordering::Relaxed),
                );
            match result {
                Ok(Ok(_)) => {
                    shared.sent_total.fetch_add(batch as u64, Ordering::Relaxed);
                    if measured {
                        shared
                            .sent_measured
                            .fetch_add(batch as u64, Ordering::Relaxed);
                        let _ = hist.record((took.as_micros() as u64).max(1));
                    }
                }
                Ok(Err(e)) => {
                    shared.send_errors.fetch_add(1, Ordering::Relaxed);
                    shared.error(format!("send: {}", error_kind(&e)));
                    if self.client.is_closed() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(_) => {
                    shared.send_errors.fetch_add(1, Ordering::Relaxed);
                    shared.error(format!("send: no answer within {} ms", cfg.timeout_ms));
                }
            }
        }
        hist
    }
}

/// Whether a send answered at `answered_us` counts in a window opened at `from_us`. Unpaced,
/// it counts when it began (`stamp_us`) in the window. Paced, when it was answered there: a
/// broker slower than the rate falls ever further behind the schedule, so every send it
/// answers in the window was due before the window opened, and counting sends by their due
/// time reported none at all. Their latency still runs from the due time.
fn counts(paced: bool, stamp_us: u64, answered_us: u64, from_us: u64) -> bool {
    if paced {
        answered_us >= from_us
    } else {
        stamp_us >= from_us
    }
}

async fn consume_queue(
    client: Client,
    target: Arc<Target>,
    group: String,
    queue_id: i32,
    start_offset: i64,
    shared: Arc<Shared>,
) -> Histogram<u64> {
    let mut hist = histogram();
    let mut offset = start_offset;
    while !shared.stop_consumers.load(Ordering::Relaxed) {
        let header = PullMessageRequestHeader {
            consumer_group: group.clone(),
            topic: target.topic.clone(),
            queue_id,
            queue_offset: offset,
            max_msg_nums: 32,
            sys_flag: pull_sys_flag::build(false, true, true, false),
            commit_offset: 0,
            suspend_timeout_millis: 500,
            subscription: Some("*".into()),
            sub_version: 0,
            expression_type: Some("TAG".into()),
            broker_name: Some(target.broker_name.clone()),
            ..Default::default()
        };
        match client.pull_message(&header).await {
            Ok(result) => {
                if result.status == PullStatus::Found {
                    let now = now_us();
                    let from = shared.measure_from_us.load(Ordering::Relaxed);
                    let measuring = shared.measuring.load(Ordering::Relaxed);
                    match result.messages() {
                        Ok(messages) => {
                            let mut bytes = 0;
                            for m in &messages {
                                let b = m.body();
                                bytes += b.len() as u64;
                                if b.len() >= 8 {
                                    let stamp = u64::from_le_bytes(b[..8].try_into().unwrap());
                                    if measuring && stamp >= from && now >= stamp {
                                        let _ = hist.record((now - stamp).max(1));
                                    }
                                }
                            }
                            shared
                                .consumed_total
                                .fetch_add(messages.len() as u64, Ordering::Relaxed);
                            shared.consumed_bytes.fetch_add(bytes, Ordering::Relaxed);
                        }
                        Err(e) => shared.error(format!("decode pulled messages: {e}")),
                    }
                }
                offset = result.header.next_begin_offset;
            }
            Err(e) => {
                shared.error(format!("pull: {}", error_kind(&e)));
                if client.is_closed() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    hist
}

/// The measured window: what was counted when it opened.
struct Window {
    start: Instant,
    consumed_before: u64,
    cpu_before: f64,
}

impl Window {
    /// Opens the window: from now on, sends and deliveries count.
    fn open(shared: &Shared) -> Window {
        let window = Window {
            start: Instant::now(),
            consumed_before: shared.consumed_total.load(Ordering::Relaxed),
            cpu_before: own_cpu_seconds(),
        };
        shared.measure_from_us.store(now_us(), Ordering::Relaxed);
        shared.measuring.store(true, Ordering::Relaxed);
        window
    }
}

/// Where consumers start in each queue.
#[derive(Clone, Copy, PartialEq)]
enum StartAt {
    /// The first message still stored.
    First,
    /// The queue's end: only what is sent from now on.
    End,
}

/// `count` consumer connections of a new group, sharing the queues of `target` between them,
/// each queue long-polled by a task of its own.
async fn spawn_consumers(
    target: &Arc<Target>,
    count: usize,
    start_at: StartAt,
    shared: &Arc<Shared>,
) -> Result<Vec<tokio::task::JoinHandle<Histogram<u64>>>> {
    let mut tasks = Vec::new();
    let group = format!("bench_consumer_{}", now_us());
    for c in 0..count {
        let client = Client::connect(&target.broker_addr).await?;
        for (i, &queue_id) in target.queues.iter().enumerate() {
            if i % count != c {
                continue;
            }
            // From 0, a broker whose retention removed the start answers with its first
            // offset, which the pull loop follows.
            let start = match start_at {
                StartAt::First => 0,
                StartAt::End => client.get_max_offset(&target.topic, queue_id).await?,
            };
            tasks.push(tokio::spawn(consume_queue(
                client.clone(),
                target.clone(),
                group.clone(),
                queue_id,
                start,
                shared.clone(),
            )));
        }
    }
    Ok(tasks)
}

/// What reading a topic's backlog took.
#[derive(Debug, Clone)]
pub struct BacklogRead {
    pub consumed: u64,
    /// Body bytes consumed.
    pub bytes: u64,
    /// From the first pull to the last message expected (or to the timeout).
    pub elapsed: Duration,
    pub errors: BTreeMap<String, u64>,
}

/// Reads the `queues` queues of `topic` from their first message, with `consumers`
/// connections of a new consumer group, until `expect` messages arrived or `timeout` passed.
pub async fn read_backlog(
    namesrv: &str,
    topic: &str,
    queues: i32,
    consumers: usize,
    expect: u64,
    timeout: Duration,
) -> Result<BacklogRead> {
    if consumers == 0 {
        bail!("at least one consumer reads the backlog");
    }
    let target = Arc::new(prepare(namesrv, topic, queues).await?);
    let shared = Arc::new(Shared::new(None));
    let started = Instant::now();
    let tasks = spawn_consumers(&target, consumers, StartAt::First, &shared).await?;
    while shared.consumed_total.load(Ordering::Relaxed) < expect && started.elapsed() < timeout {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed();
    shared.stop_consumers.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await?;
    }
    let errors = shared
        .errors
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    Ok(BacklogRead {
        consumed: shared.consumed_total.load(Ordering::Relaxed),
        bytes: shared.consumed_bytes.load(Ordering::Relaxed),
        elapsed,
        errors,
    })
}

/// Runs the load described by `cfg` and fills the load fields of `report`.
pub async fn run(cfg: &LoadConfig, report: &mut Report) -> Result<()> {
    if cfg.producers == 0 || cfg.inflight == 0 || cfg.batch == 0 {
        bail!("producers, inflight and batch must be at least 1");
    }
    if cfg
        .rate
        .is_some_and(|rate| !rate.is_finite() || rate <= 0.0)
    {
        bail!("rate must be a positive number of messages per second");
    }
    let target = Arc::new(prepare(&cfg.namesrv, &cfg.topic, cfg.queues).await?);
    let cfg_arc = Arc::new(cfg.clone());
    let shared = Arc::new(Shared::new(cfg.count));

    // Consumers first, from each queue's current end, so they see only this run's messages.
    let consumer_tasks = spawn_consumers(&target, cfg.consumers, StartAt::End, &shared).await?;

    let ids = Arc::new(UniqueIdGenerator::new(
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        (now_us() & 0x7fff_ffff) as i32,
    ));
    // With no warm-up the window opens before the first request, so that every one counts
    // (a run of --count then reports all it sent).
    let warmup = cfg.warmup.max(0.0);
    let window = (warmup == 0.0).then(|| Window::open(&shared));
    let mut producer_tasks = Vec::new();
    for p in 0..cfg.producers {
        let client = Client::connect(&target.broker_addr).await?;
        for slot in 0..cfg.inflight {
            producer_tasks.push(tokio::spawn(
                ProducerSlot {
                    client: client.clone(),
                    target: target.clone(),
                    cfg: cfg_arc.clone(),
                    shared: shared.clone(),
                    ids: ids.clone(),
                    first_queue: p * cfg.inflight + slot,
                }
                .run(),
            ));
        }
    }

    let window = match window {
        Some(window) => window,
        None => {
            tokio::time::sleep(Duration::from_secs_f64(warmup)).await;
            Window::open(&shared)
        }
    };
    if cfg.count.is_none() {
        tokio::time::sleep(Duration::from_secs_f64(cfg.duration.max(0.0))).await;
        shared.stop_producers.store(true, Ordering::Relaxed);
    }
    let mut send_hist = histogram();
    for task in producer_tasks {
        send_hist.add(task.await?).ok();
    }
    let elapsed = window.start.elapsed().as_secs_f64();
    let client_cpu = own_cpu_seconds() - window.cpu_before;
    let sent_total = shared.sent_total.load(Ordering::Relaxed);

    // Let the consumers catch up with everything that was sent, for at most `drain` seconds.
    let drain_until = Instant::now() + Duration::from_secs_f64(cfg.drain.max(0.0));
    let consumed_at_stop = shared.consumed_total.load(Ordering::Relaxed);
    while cfg.consumers > 0
        && shared.consumed_total.load(Ordering::Relaxed) < sent_total
        && Instant::now() < drain_until
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    shared.stop_consumers.store(true, Ordering::Relaxed);
    let mut e2e_hist = histogram();
    for task in consumer_tasks {
        e2e_hist.add(task.await?).ok();
    }

    let sent = shared.sent_measured.load(Ordering::Relaxed);
    let consumed = shared.consumed_total.load(Ordering::Relaxed);
    report.config = Some(cfg.clone());
    report.elapsed_s = elapsed;
    report.sent = sent;
    report.send_errors = shared.send_errors.load(Ordering::Relaxed);
    report.errors = shared
        .errors
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    report.consumed = consumed;
    if elapsed > 0.0 {
        report.send_msgs_per_s = sent as f64 / elapsed;
        report.send_mib_per_s = sent as f64 * cfg.size as f64 / elapsed / (1024.0 * 1024.0);
        report.consume_msgs_per_s = (consumed_at_stop - window.consumed_before) as f64 / elapsed;
    }
    if cfg.consumers > 0 && consumed < sent_total {
        report
            .errors
            .insert("consumed fewer than sent".into(), sent_total - consumed);
    }
    if elapsed > 0.0 {
        report
            .metrics
            .insert("client_cpu_percent".into(), client_cpu / elapsed * 100.0);
    }
    report.send_latency = Percentiles::from_histogram(&send_hist);
    report.e2e_latency = Percentiles::from_histogram(&e2e_hist);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::counts;

    #[test]
    fn a_paced_send_counts_when_it_is_answered_in_the_window() {
        // Due 2 s before the window opened (the broker is behind the rate), answered in it.
        assert!(counts(true, 1_000_000, 3_500_000, 3_000_000));
        assert!(!counts(true, 1_000_000, 2_500_000, 3_000_000));
    }

    #[test]
    fn an_unpaced_send_counts_when_it_began_in_the_window() {
        assert!(!counts(false, 2_900_000, 3_100_000, 3_000_000));
        assert!(counts(false, 3_000_000, 3_100_000, 3_000_000));
    }
}
