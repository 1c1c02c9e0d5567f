use clap::{Parser, Subcommand};

/// RocketMQ-compatible messaging, native to Kubernetes.
#[derive(Parser)]
#[command(name = "rocketry", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// A name server and a broker in one process (not built yet).
    Standalone,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Standalone => anyhow::bail!("standalone mode is not built yet"),
    }
}
