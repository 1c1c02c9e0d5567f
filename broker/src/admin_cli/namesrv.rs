//! `rocketry admin namesrv ...`: requests answered by the name server itself, mqadmin's
//! `wipeWritePerm`, `addWritePerm`, `getNamesrvConfig` and `updateNamesrvConfig`.

use anyhow::Result;
use clap::Subcommand;
use protocol::Client;

use super::{properties_table, Answer};

#[derive(Subcommand)]
pub enum NamesrvCommand {
    /// Make every queue of a broker group read-only in the routes, so producers move to the
    /// other groups within a route refresh (30 s); it lasts until add-write-perm, a change of
    /// the broker's topics, or a broker restart.
    WipeWritePerm {
        #[arg(short = 'b', long)]
        broker_name: String,
    },
    /// Give a broker group's queues read and write permission back.
    AddWritePerm {
        #[arg(short = 'b', long)]
        broker_name: String,
    },
    /// The name server's settings.
    Config,
    /// Change one setting until the name server restarts (only the keys
    /// docs/configuration.md lists as changeable at run time).
    UpdateConfig {
        #[arg(short, long)]
        key: String,
        #[arg(short, long)]
        value: String,
    },
}

pub async fn run(namesrv: &Client, command: NamesrvCommand) -> Result<Answer> {
    Ok(match command {
        NamesrvCommand::WipeWritePerm { broker_name } => {
            let count = namesrv.wipe_write_perm_of_broker(&broker_name).await?;
            Answer::done(format!(
                "write permission of broker {broker_name} wiped on {count} topics"
            ))
        }
        NamesrvCommand::AddWritePerm { broker_name } => {
            let count = namesrv.add_write_perm_of_broker(&broker_name).await?;
            Answer::done(format!(
                "write permission of broker {broker_name} given back on {count} topics"
            ))
        }
        NamesrvCommand::Config => {
            Answer::rows(properties_table(&namesrv.get_namesrv_config().await?))
        }
        NamesrvCommand::UpdateConfig { key, value } => {
            namesrv.update_namesrv_config(&[(&key, &value)]).await?;
            Answer::done(format!("{key}={value}"))
        }
    })
}
