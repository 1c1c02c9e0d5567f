//! `bench`: load against a RocketMQ-compatible broker; see `bench --help`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use bench::scenario::{
    ColdRead, Disk, FirstSend, Idle, IdleConnections, Produce, ProduceConsume, PullFlood,
};
use bench::{Context, LoadConfig, Report, Scenario};
use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "bench",
    about = "Load generator for Rocketry and any RocketMQ-compatible broker"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct Common {
    /// Broker process to read CPU and memory of from /proc (repeat for several; summed).
    #[arg(long = "pid")]
    pids: Vec<u32>,
    /// Which broker this is (rocketry, rocketmq, rocketmq-rust), for the report.
    #[arg(long)]
    label: Option<String>,
    /// Name of the case within a comparison, for the report.
    #[arg(long)]
    case: Option<String>,
    /// Also save the report as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// A topic on the broker the name server knows.
#[derive(Args, Clone)]
struct TopicArgs {
    #[arg(long, default_value = "127.0.0.1:9876")]
    namesrv: String,
    #[arg(long)]
    topic: String,
    /// Read and write queues.
    #[arg(long, default_value_t = 8)]
    queues: i32,
}

#[derive(Subcommand)]
enum Command {
    /// Producers only: throughput and send latency.
    Produce {
        #[command(flatten)]
        load: LoadConfig,
        #[command(flatten)]
        common: Common,
    },
    /// Producers and consumers at once: adds consume rate and end-to-end latency.
    ProduceConsume {
        #[command(flatten)]
        load: LoadConfig,
        #[command(flatten)]
        common: Common,
    },
    /// Memory and CPU of an idle broker (needs --pid).
    Idle {
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        #[command(flatten)]
        common: Common,
    },
    /// Time from --since-unix-ms (a broker's launch) to its first accepted message.
    FirstSend {
        #[arg(long, default_value = "127.0.0.1:9876")]
        namesrv: String,
        #[arg(long, default_value = "BenchReady")]
        topic: String,
        #[arg(long)]
        since_unix_ms: u64,
        #[arg(long, default_value_t = 600.0)]
        timeout: f64,
        #[command(flatten)]
        common: Common,
    },
    /// Raw sequential write bandwidth and 4 KiB write+fdatasync rate of a folder's disk.
    Disk {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value_t = 1024)]
        write_mib: usize,
        #[arg(long, default_value_t = 3.0)]
        sync_seconds: f64,
        #[command(flatten)]
        common: Common,
    },
    /// A client pipelines PULLs of ~256 KiB answers and never reads: how much the broker
    /// (--pid) grows and whether a bystander is still answered.
    PullFlood {
        #[arg(long, default_value = "127.0.0.1:9876")]
        namesrv: String,
        #[arg(long, default_value_t = 20_000)]
        pulls: usize,
        #[arg(long, default_value_t = 6.0)]
        seconds: f64,
        #[command(flatten)]
        common: Common,
    },
    /// A new consumer group reads a topic's backlog from its first message (4 connections by
    /// default): the consume rate of a consumer catching up. Run after `evict` on the stopped
    /// broker's data, and a restart, for reads from disk.
    ColdRead {
        #[command(flatten)]
        topic: TopicArgs,
        #[arg(short = 'c', long, default_value_t = 4)]
        consumers: usize,
        /// Messages the backlog holds: reading ends when they have all arrived.
        #[arg(long)]
        expect: u64,
        #[arg(long, default_value_t = 1800.0)]
        timeout: f64,
        /// The broker's data folder: the report says how much of it was cached at the start.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        #[command(flatten)]
        common: Common,
    },
    /// Write back and drop from the page cache every file under --dir (a stopped broker's
    /// data: pages a running broker maps stay), then print what is still cached.
    Evict {
        #[arg(long)]
        dir: PathBuf,
    },
    /// Many connections that go quiet: what each costs the broker (--pid).
    IdleConnections {
        #[arg(long, default_value = "127.0.0.1:9876")]
        namesrv: String,
        #[arg(long, default_value_t = 2000)]
        count: usize,
        #[command(flatten)]
        common: Common,
    },
    /// Create a topic on the broker the name server knows and wait until it is routed.
    CreateTopic {
        #[command(flatten)]
        topic: TopicArgs,
    },
    /// Wait until a topic holds --records records, sampling every 100 ms, and print (as JSON)
    /// how long its copier took to start and to copy, and the copier's CPU (--pid).
    Copied {
        /// The copy lands in Kafka (MirrorMaker 2's target).
        #[arg(long, conflicts_with = "namesrv", required_unless_present = "namesrv")]
        bootstrap_servers: Option<String>,
        /// The copy lands in Rocketry (the mirror's target).
        #[arg(long)]
        namesrv: Option<String>,
        #[arg(long)]
        topic: String,
        #[arg(long)]
        records: u64,
        /// The copier's processes (repeat for several).
        #[arg(long = "pid")]
        pids: Vec<u32>,
        #[arg(long, default_value_t = 1800.0)]
        timeout: f64,
    },
    /// Read the output of Apache RocketMQ's benchmark Producer/Consumer into a report.
    ImportJava {
        /// The tool's saved stdout.
        #[arg(long)]
        log: PathBuf,
        /// Periodic lines to skip as warm-up.
        #[arg(long, default_value_t = 2)]
        skip: usize,
        #[arg(long, default_value = "java-producer")]
        scenario: String,
        #[command(flatten)]
        common: Common,
    },
    /// Read the output of bench/python/cpp_producer.py (the C++ client) into a report.
    ImportCpp {
        /// The script's saved stdout.
        #[arg(long)]
        log: PathBuf,
        #[command(flatten)]
        common: Common,
    },
    /// Print the markdown table (medians, ratios) of every JSON report in a folder.
    Summarize {
        dir: PathBuf,
        /// LABEL=REASON for a broker that has no figures.
        #[arg(long)]
        missing: Vec<String>,
    },
}

fn finish(report: Report, common: &Common) -> Result<()> {
    print!("{}", report.human());
    if let Some(path) = &common.json {
        let text = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

fn context(common: &Common) -> Context {
    Context {
        pids: common.pids.clone(),
        label: common.label.clone(),
        case: common.case.clone(),
    }
}

async fn run<S: Scenario>(scenario: S, common: &Common) -> Result<()> {
    let report = scenario.run(&context(common)).await?;
    finish(report, common)
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Produce { load, common } => run(Produce { load }, &common).await,
        Command::ProduceConsume { load, common } => run(ProduceConsume { load }, &common).await,
        Command::Idle { seconds, common } => run(Idle { seconds }, &common).await,
        Command::FirstSend {
            namesrv,
            topic,
            since_unix_ms,
            timeout,
            common,
        } => {
            let scenario = FirstSend {
                namesrv,
                topic,
                since_unix_ms,
                timeout: Duration::from_secs_f64(timeout),
            };
            run(scenario, &common).await
        }
        Command::Disk {
            dir,
            write_mib,
            sync_seconds,
            common,
        } => {
            let scenario = Disk {
                dir,
                write_mib,
                sync_seconds,
            };
            run(scenario, &common).await
        }
        Command::PullFlood {
            namesrv,
            pulls,
            seconds,
            common,
        } => {
            let scenario = PullFlood {
                namesrv,
                pulls,
                seconds,
            };
            run(scenario, &common).await
        }
        Command::IdleConnections {
            namesrv,
            count,
            common,
        } => run(IdleConnections { namesrv, count }, &common).await,
        Command::ColdRead {
            topic:
                TopicArgs {
                    namesrv,
                    topic,
                    queues,
                },
            consumers,
            expect,
            timeout,
            data_dir,
            common,
        } => {
            let scenario = ColdRead {
                namesrv,
                topic,
                queues,
                consumers,
                expect,
                timeout: Duration::from_secs_f64(timeout),
                data_dir,
            };
            run(scenario, &common).await
        }
        Command::Evict { dir } => {
            let left = bench::page_cache::evict(&dir)?;
            println!(
                "{}: {} MiB of {} MiB still cached",
                dir.display(),
                left.cached >> 20,
                left.total >> 20
            );
            Ok(())
        }
        Command::Copied {
            bootstrap_servers,
            namesrv,
            topic,
            records,
            pids,
            timeout,
        } => {
            let side = match (bootstrap_servers, namesrv) {
                (Some(bootstrap_servers), _) => bench::copied::Side::Kafka { bootstrap_servers },
                (None, Some(namesrv)) => bench::copied::Side::Rocketry { namesrv },
                (None, None) => bail!("give --bootstrap-servers or --namesrv"),
            };
            let timeout = Duration::from_secs_f64(timeout);
            let copied = bench::copied::copied(&side, &topic, records, &pids, timeout).await?;
            println!("{}", serde_json::to_string(&copied)?);
            Ok(())
        }
        Command::CreateTopic {
            topic:
                TopicArgs {
                    namesrv,
                    topic,
                    queues,
                },
        } => {
            let target = bench::load::prepare(&namesrv, &topic, queues).await?;
            println!("{topic}: {queues} queues on {}", target.broker_addr);
            Ok(())
        }
        Command::ImportJava {
            log,
            skip,
            scenario,
            common,
        } => {
            let output = std::fs::read_to_string(&log)
                .with_context(|| format!("reading {}", log.display()))?;
            let mut report = context(&common).report(&scenario);
            bench::java::import(&output, skip, &mut report);
            // A tool that never reached its broker prints only a zero `[Complete]` line.
            if !report.metrics.keys().any(|k| k.ends_with("_tps")) {
                bail!("no statistic lines in {}", log.display());
            }
            finish(report, &common)
        }
        Command::ImportCpp { log, common } => {
            let output = std::fs::read_to_string(&log)
                .with_context(|| format!("reading {}", log.display()))?;
            let mut report = context(&common).report("produce");
            bench::cpp::import(&output, &mut report)
                .with_context(|| format!("in {}", log.display()))?;
            finish(report, &common)
        }
        Command::Summarize { dir, missing } => {
            let reports = bench::summary::load_reports(&dir)?;
            let mut reasons = BTreeMap::new();
            for m in missing {
                let (label, reason) = m
                    .split_once('=')
                    .with_context(|| format!("--missing wants LABEL=REASON, got {m}"))?;
                reasons.insert(label.to_owned(), reason.to_owned());
            }
            print!("{}", bench::summary::table(&reports, &reasons));
            Ok(())
        }
    }
}
