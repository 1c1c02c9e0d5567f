//! `rocketry admin acl ...`: the users of every broker of a cluster and their grants (ACL
//! 2.0's requests, as mqadmin's `createUser`, `listUser`, `createAcl`, `deleteAcl`,
//! `listAcl` and the rest send them). All of it needs an administrator's credentials
//! (`ROCKETRY_ACCESS_KEY`, `ROCKETRY_SECRET_KEY`).

use anyhow::Result;
use clap::Subcommand;
use protocol::body::admin::{AclInfo, PolicyEntryInfo, PolicyInfo, UserInfo};
use protocol::Client;

use super::table::Table;
use super::{cluster_masters, connect, Answer};

#[derive(Subcommand)]
pub enum AclCommand {
    /// Users that sign requests.
    #[command(subcommand)]
    User(UserCommand),
    /// Give a user Pub, Sub or both on a topic or group (`Topic:orders`, `Group:billing`,
    /// a trailing `*` for every name it prefixes), or deny it.
    Grant {
        #[arg(short, long)]
        username: String,
        #[arg(short, long)]
        resource: String,
        /// Pub, Sub or All, separated by commas.
        #[arg(short, long, default_value = "Pub,Sub")]
        actions: String,
        #[arg(short, long, default_value = "Allow")]
        decision: String,
        #[arg(short, long, default_value = "DefaultCluster")]
        cluster: String,
    },
    /// Take a user's grant on a resource away, or all of its grants.
    Revoke {
        #[arg(short, long)]
        username: String,
        #[arg(short, long)]
        resource: Option<String>,
        #[arg(short, long, default_value = "DefaultCluster")]
        cluster: String,
    },
    /// Every user's grants, per broker.
    Grants {
        #[arg(short, long, default_value = "DefaultCluster")]
        cluster: String,
    },
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
    match command {
        AclCommand::User(command) => user(namesrv, command).await,
        AclCommand::Grant {
            username,
            resource,
            actions,
            decision,
            cluster,
        } => {
            let grant = AclInfo {
                subject: format!("User:{username}"),
                policies: vec![PolicyInfo {
                    policy_type: None,
                    entries: vec![PolicyEntryInfo {
                        resource,
                        actions: actions.split(',').map(|a| a.trim().to_string()).collect(),
                        source_ips: Vec::new(),
                        decision,
                    }],
                }],
            };
            let mut table = Table::new(["broker", "address", "result"]);
            for (name, addr) in cluster_masters(namesrv, &cluster).await? {
                connect(&addr).await?.put_acl(&grant).await?;
                table.row([name, addr, "granted".into()]);
            }
            Ok(Answer::rows(table))
        }
        AclCommand::Revoke {
            username,
            resource,
            cluster,
        } => {
            let subject = format!("User:{username}");
            let mut table = Table::new(["broker", "address", "result"]);
            for (name, addr) in cluster_masters(namesrv, &cluster).await? {
                let client = connect(&addr).await?;
                client.delete_acl(&subject, resource.as_deref()).await?;
                table.row([name, addr, "revoked".into()]);
            }
            Ok(Answer::rows(table))
        }
        AclCommand::Grants { cluster } => {
            let mut table = Table::new(["broker", "subject", "resource", "actions", "decision"]);
            for (name, addr) in cluster_masters(namesrv, &cluster).await? {
                for acl in connect(&addr).await?.list_acls().await? {
                    for entry in acl.policies.iter().flat_map(|p| &p.entries) {
                        table.row([
                            name.clone(),
                            acl.subject.clone(),
                            entry.resource.clone(),
                            entry.actions.join(","),
                            entry.decision.clone(),
                        ]);
                    }
                }
            }
            Ok(Answer::rows(table))
        }
    }
}

async fn user(namesrv: &Client, command: UserCommand) -> Result<Answer> {
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
