//! `rocketry admin acl user ...`: the users of every broker of a cluster (ACL 2.0's user
//! requests, as mqadmin's `createUser`, `updateUser`, `deleteUser` and `listUser` send
//! them). Changing users needs an administrator's credentials (`ROCKETRY_ACCESS_KEY`,
//! `ROCKETRY_SECRET_KEY`).

use anyhow::Result;
use clap::Subcommand;
use protocol::body::admin::UserInfo;
use protocol::Client;

use super::table::Table;
use super::{cluster_masters, connect, Answer};

#[derive(Subcommand)]
pub enum AclCommand {
    /// Users that sign requests.
    #[command(subcommand)]
    User(UserCommand),
}

#[derive(Subcommand)]
pub enum UserCommand {
    /// Add a user to every broker of a cluster; the password is read from
    /// ROCKETRY_NEW_USER_PASSWORD when not given.
    Create {
        #[arg(short, long)]
        username: String,
        #[arg(
            short,
            long,
            env = "ROCKETRY_NEW_USER_PASSWORD",
            hide_env_values = true
        )]
        password: String,
        /// An administrator (`Super`) or not (`Normal`).
        #[arg(short = 't', long, default_value = "Normal")]
        user_type: String,
        #[arg(short, long, default_value = "DefaultCluster")]
        cluster: String,
    },
    /// Change a user's password, type or status (`enable`, `disable`).
    Update {
        #[arg(short, long)]
        username: String,
        #[arg(short, long)]
        password: Option<String>,
        #[arg(short = 't', long)]
        user_type: Option<String>,
        #[arg(short, long)]
        status: Option<String>,
        #[arg(short, long, default_value = "DefaultCluster")]
        cluster: String,
    },
    /// Remove a user from every broker of a cluster.
    Delete {
        #[arg(short, long)]
        username: String,
        #[arg(short, long, default_value = "DefaultCluster")]
        cluster: String,
    },
    /// The users of each broker (never their passwords).
    List {
        #[arg(short, long, default_value = "DefaultCluster")]
        cluster: String,
    },
}

pub async fn run(namesrv: &Client, command: AclCommand) -> Result<Answer> {
    let AclCommand::User(command) = command;
    let (cluster, change) = match command {
        UserCommand::Create {
            username,
            password,
            user_type,
            cluster,
        } => {
            let user = UserInfo {
                username,
                password: Some(password),
                user_type: Some(user_type),
                user_status: None,
            };
            (cluster, Some((user, false)))
        }
        UserCommand::Update {
            username,
            password,
            user_type,
            status,
            cluster,
        } => {
            let user = UserInfo {
                username,
                password,
                user_type,
                user_status: status,
            };
            (cluster, Some((user, true)))
        }
        UserCommand::Delete { username, cluster } => {
            let mut table = Table::new(["broker", "address", "result"]);
            for (name, addr) in cluster_masters(namesrv, &cluster).await? {
                connect(&addr).await?.delete_user(&username).await?;
                table.row([name, addr, "deleted".into()]);
            }
            return Ok(Answer::rows(table));
        }
        UserCommand::List { cluster } => (cluster, None),
    };
    match change {
        Some((user, update)) => {
            let mut table = Table::new(["broker", "address", "result"]);
            for (name, addr) in cluster_masters(namesrv, &cluster).await? {
                connect(&addr).await?.put_user(&user, update).await?;
                let done = if update { "updated" } else { "created" };
                table.row([name, addr, done.into()]);
            }
            Ok(Answer::rows(table))
        }
        None => {
            let mut table = Table::new(["broker", "user", "type", "status"]);
            for (name, addr) in cluster_masters(namesrv, &cluster).await? {
                for user in connect(&addr).await?.list_users(None).await? {
                    table.row([
                        name.clone(),
                        user.username,
                        user.user_type.unwrap_or_default(),
                        user.user_status.unwrap_or_default(),
                    ]);
                }
            }
            Ok(Answer::rows(table))
        }
    }
}
