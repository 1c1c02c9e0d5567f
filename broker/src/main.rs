mod admin_cli;
mod migrate_cli;

use std::path::PathBuf;

use broker::config::{NamesrvConfig, Settings};
use broker::run;
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// RocketMQ-compatible messaging, native to Kubernetes.
#[derive(Parser)]
#[command(name = "rocketry", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// A name server and a broker in one process, on localhost by default.
    Standalone {
        /// A broker.conf with RocketMQ's keys (see docs/configuration.md).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Where the store lives (storePathRootDir); default ~/store.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Name server port.
        #[arg(long, default_value_t = 9876)]
        namesrv_port: u16,
        /// Broker port (listenPort); overrides the config file.
        #[arg(long)]
        broker_port: Option<u16>,
    },
    /// A name server alone.
    Namesrv {
        /// A namesrv.conf with RocketMQ's keys (listenPort, bindAddress, ...).
        #[arg(long, short = 'c')]
        config: Option<PathBuf>,
    },
    /// Administer a running cluster through its name server (a small mqadmin).
    Admin(admin_cli::AdminArgs),
    /// A broker alone; it registers with the name servers its config names (namesrvAddr).
    Broker {
        /// A broker.conf with RocketMQ's keys.
        #[arg(long, short = 'c')]
        config: PathBuf,
    },
    /// Offline work on a stopped broker's store. (Not under `admin`, which talks to a
    /// running cluster: a store that refuses to start has no broker to talk to.)
    #[command(subcommand)]
    Store(StoreCommand),
    /// Move from Kafka: copy its topics into Rocketry.
    #[command(subcommand)]
    Migrate(migrate_cli::MigrateCommand),
}

#[derive(Subcommand)]
enum StoreCommand {
    /// Sets aside damaged CommitLog records below the checkpointed flushed offset (the
    /// damage that stops a start), so the broker starts and keeps every other message.
    /// The damaged bytes are kept under `<store>/quarantine/`; consume queues and the
    /// index are rebuilt at the next start. See docs/reliability.md.
    Repair {
        /// The broker.conf the broker runs with (storePathRootDir, segment sizes).
        #[arg(long, short = 'c')]
        config: Option<PathBuf>,
        /// The store folder (storePathRootDir); overrides the config file.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

fn repair(config: Option<PathBuf>, data_dir: Option<PathBuf>) -> anyhow::Result<()> {
    let mut settings = Settings::default();
    if let Some(path) = &config {
        settings.apply_file(path)?;
    }
    if let Some(dir) = data_dir {
        settings.store.store_path_root_dir = dir;
    }
    let root = settings.store.store_path_root_dir.clone();
    let report = store::MessageStore::repair(&settings.store)
        .map_err(|error| anyhow::anyhow!("{}", error.with_sources()))?;
    if report.quarantined.is_empty() {
        println!(
            "{}: no damage below the flushed offset {}; nothing to repair",
            root.display(),
            report.flushed
        );
    }
    for range in &report.quarantined {
        println!(
            "quarantined CommitLog [{}, {}) ({} bytes): {}; bytes kept in {}",
            range.start,
            range.end,
            range.end - range.start,
            range.reason,
            range.saved_to.display()
        );
    }
    Ok(())
}

fn warn_unknown(keys: &[String]) {
    for key in keys {
        tracing::warn!(%key, "config key not used by Rocketry; ignored");
    }
}

/// Starts this program over in this process, with the same arguments, once the broker
/// stopped to be started again ([`run::Stopped::ToRestart`]): the process, its pid and its
/// supervisor's view of it stay; its files, sockets and threads go, as for any exec (Rust
/// opens every descriptor close-on-exec).
fn start_over_if(stopped: run::Stopped) -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt;
    if stopped == run::Stopped::Asked {
        return Ok(());
    }
    let program = std::env::current_exe()?;
    tracing::info!(program = %program.display(), "starting over");
    let error = std::process::Command::new(&program)
        .args(std::env::args_os().skip(1))
        .exec();
    Err(anyhow::anyhow!(
        "cannot start {} over: {error}",
        program.display()
    ))
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = terminate.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("stop requested");
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    // Fault injection for tests; compiled out of release builds (see the store crate).
    store::configure_faults_from_env();
    let cli = Cli::parse();
    match cli.command {
        Command::Store(StoreCommand::Repair { config, data_dir }) => repair(config, data_dir)?,
        Command::Admin(args) => admin_cli::run(args).await?,
        Command::Migrate(command) => migrate_cli::run(command).await?,
        Command::Standalone {
            config,
            data_dir,
            namesrv_port,
            broker_port,
        } => {
            // Standalone is the single-machine mode: it binds loopback unless the config
            // asks for another address.
            let mut settings = Settings::default();
            settings.broker.bind_address = "127.0.0.1".to_string();
            if let Some(path) = &config {
                settings.apply_file(path)?;
                warn_unknown(&settings.unknown_keys);
            }
            if let Some(dir) = data_dir {
                settings.store.store_path_root_dir = dir;
            }
            if let Some(port) = broker_port {
                settings.broker.listen_port = port;
            }
            let bind = settings.broker.bind_address.clone();
            let namesrv = run::bind(&format!("{bind}:{namesrv_port}")).await?;
            let broker = run::bind(&format!("{bind}:{}", settings.broker.listen_port)).await?;
            let stopped = run::run_standalone(settings, namesrv, broker, shutdown_signal()).await?;
            start_over_if(stopped)?;
        }
        Command::Namesrv { config } => {
            let (namesrv, tls) = match config {
                Some(path) => {
                    let (namesrv, tls, unknown) = NamesrvConfig::load(&path)?;
                    warn_unknown(&unknown);
                    (namesrv, tls)
                }
                None => Default::default(),
            };
            let listener =
                run::bind(&format!("{}:{}", namesrv.bind_address, namesrv.listen_port)).await?;
            run::run_namesrv(namesrv, &tls, listener, shutdown_signal()).await?;
        }
        Command::Broker { config } => {
            let settings = Settings::load(&config)?;
            warn_unknown(&settings.unknown_keys);
            anyhow::ensure!(
                !settings.broker.namesrv_addrs().is_empty(),
                "{} sets no namesrvAddr: a broker needs a name server to register with",
                config.display()
            );
            let listener = run::bind(&format!(
                "{}:{}",
                settings.broker.bind_address, settings.broker.listen_port
            ))
            .await?;
            let stopped = run::run_broker(settings, listener, shutdown_signal()).await?;
            start_over_if(stopped)?;
        }
    }
    Ok(())
}
