//! `rocketry admin ...`: a small mqadmin over `protocol`'s client. It asks the name server
//! for cluster info or a topic route, then sends each admin request to the master of every
//! broker concerned, and prints a table (or `--output json`).

mod acl;
mod broker;
mod consumer;
mod dead_letter;
mod import;
mod namesrv;
mod table;
mod trace;

use std::collections::BTreeMap;
use std::sync::OnceLock;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use protocol::acl::Credentials;
use protocol::body::{perm, BrokerData, SubscriptionGroupConfig, TopicRouteData};
use protocol::header::{CreateTopicRequestHeader, UpdateConsumerOffsetRequestHeader};
use protocol::{Client, ResponseCode};
use serde_json::{json, Value};

use table::Table;

#[derive(Args)]
pub struct AdminArgs {
    /// Name server address, `host:port`.
    #[arg(
        short = 'n',
        long = "namesrv",
        default_value = "127.0.0.1:9876",
        global = true
    )]
    namesrv: String,
    /// How to print the answer.
    #[arg(long, value_enum, default_value_t = Output::Table, global = true)]
    output: Output,
    /// Sign requests as this ACL user (brokers with `aclEnable`); prefer the environment
    /// to the flag, which other users of the host can see.
    #[arg(
        long,
        env = "ROCKETRY_ACCESS_KEY",
        global = true,
        requires = "secret_key"
    )]
    access_key: Option<String>,
    /// The ACL user's secret.
    #[arg(
        long,
        env = "ROCKETRY_SECRET_KEY",
        hide_env_values = true,
        global = true
    )]
    secret_key: Option<String>,
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    Table,
    Json,
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Topics: create, list, delete, status (offsets per queue), route.
    #[command(subcommand)]
    Topic(TopicCommand),
    /// Consumer groups' settings.
    #[command(subcommand)]
    Group(GroupCommand),
    /// What a consumer group is doing.
    #[command(subcommand)]
    Consumer(consumer::ConsumerCommand),
    /// Move a group's offsets.
    #[command(subcommand)]
    Offset(OffsetCommand),
    /// Find messages.
    #[command(subcommand)]
    Message(MessageCommand),
    /// Clusters and their brokers.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// One broker, by address.
    #[command(subcommand)]
    Broker(broker::BrokerCommand),
    /// The name server: write permission of broker groups, its settings.
    #[command(subcommand)]
    Namesrv(namesrv::NamesrvCommand),
    /// ACL users of a cluster's brokers (docs/security.md).
    #[command(subcommand)]
    Acl(acl::AclCommand),
    /// Bring a stopped Apache RocketMQ broker's topics, groups and committed offsets into a
    /// Rocketry data dir (offline; messages are not imported).
    ///
    /// Reads the state files under the Apache broker's storePathRootDir/config (topics.json,
    /// subscriptionGroup.json, consumerOffset.json, delayOffset.json, as fastjson writes
    /// them) and writes Rocketry's, so that `rocketry broker` or `standalone` started on
    /// that data dir serves the topics (queue counts, perm, order, attributes), the groups
    /// and the committed offsets. The Apache broker's own topics (TBW102, its cluster and
    /// broker names, SCHEDULE_TOPIC_XXXX, rmq_sys_*, ...) are left out; Rocketry makes its
    /// own. Delay-level progress is read but not carried. No name server is needed.
    ///
    /// Messages are NOT imported: the migration path for messages is mirroring (consume them
    /// from Apache, produce them to Rocketry, while both run). The new queues start empty
    /// while the imported offsets still point where each group was on Apache. A pull past a
    /// queue's end is answered PULL_OFFSET_MOVED to that end (0 while the queue is empty),
    /// so a group that pulls before anything is sent gets every new message. Start the
    /// consumers before the producers: a group that pulls later starts at its imported
    /// offset, or at the queue's end if that is lower, and skips the messages below it
    /// (docs/compatibility.md).
    Import(import::ImportArgs),
}

#[derive(Subcommand)]
enum TopicCommand {
    /// Create or update a topic on every broker of a cluster.
    Create {
        #[arg(short, long)]
        topic: String,
        #[arg(short, long, default_value = "DefaultCluster")]
        cluster: String,
        #[arg(short = 'r', long, default_value_t = 8)]
        read_queues: i32,
        #[arg(short = 'w', long, default_value_t = 8)]
        write_queues: i32,
        /// PermName bits: 6 read+write, 4 read-only, 2 write-only.
        #[arg(short, long, default_value_t = 6)]
        perm: i32,
        /// Ordered topic.
        #[arg(short, long)]
        order: bool,
    },
    /// Every topic the name server knows.
    List,
    /// Delete a topic from every broker that has it and from the name server.
    Delete {
        #[arg(short, long)]
        topic: String,
    },
    /// Min and max offset of each queue.
    Status {
        #[arg(short, long)]
        topic: String,
    },
    /// The route the name server gives clients.
    Route {
        #[arg(short, long)]
        topic: String,
    },
}

#[derive(Subcommand)]
enum GroupCommand {
    /// Create or update a consumer group on every broker of a cluster.
    Create {
        #[arg(short, long)]
        group: String,
        #[arg(short, long, default_value = "DefaultCluster")]
        cluster: String,
        /// Attempts before the dead-letter queue.
        #[arg(long, default_value_t = 16)]
        retry_max_times: i32,
        #[arg(long)]
        orderly: bool,
    },
    /// Every group on every broker.
    List,
    /// Delete a group (and its offsets) from every broker.
    Delete {
        #[arg(short, long)]
        group: String,
    },
}

#[derive(Subcommand)]
enum OffsetCommand {
    /// Move the group's offsets on a topic to the first message stored at or after a time.
    ResetByTime {
        #[arg(short, long)]
        group: String,
        #[arg(short, long)]
        topic: String,
        /// Milliseconds since the epoch, or `now` (the end of each queue).
        #[arg(short, long)]
        timestamp: String,
    },
}

#[derive(Subcommand)]
enum MessageCommand {
    /// Messages whose KEYS contain a key.
    QueryByKey {
        #[arg(short, long)]
        topic: String,
        #[arg(short, long)]
        key: String,
    },
    /// One message by its offset message id (what the send result calls offsetMsgId).
    View {
        #[arg(short = 'i', long)]
        id: String,
    },
    /// What traced clients recorded about a message (mqadmin's queryMsgTraceById): its send,
    /// each group's deliveries, a transaction's decision.
    Trace {
        /// The message id the send result calls msgId (the UNIQ_KEY).
        #[arg(short = 'i', long)]
        id: String,
        #[arg(long, default_value = "RMQ_SYS_TRACE_TOPIC")]
        trace_topic: String,
    },
    /// Send a group's dead letters (%DLQ%<group>) back to the topics they came from; each
    /// is resent once, however often this runs.
    ResendDlq {
        #[arg(short, long)]
        group: String,
    },
}

#[derive(Subcommand)]
enum ClusterCommand {
    /// Clusters, brokers and their traffic.
    List,
}

pub async fn run(args: AdminArgs) -> Result<()> {
    if let (Some(access_key), Some(secret_key)) = (args.access_key, args.secret_key) {
        let _ = CREDENTIALS.set(Credentials {
            access_key,
            secret_key,
        });
    }
    let value = match args.command {
        // Addressed to one broker: no name server involved.
        AdminCommand::Broker(command) => broker::run(command).await?,
        // Files to files: nothing is running.
        AdminCommand::Import(args) => import::run(args)?,
        command => via_namesrv(&connect(&args.namesrv).await?, command).await?,
    };
    match args.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&value.json)?),
        Output::Table => print!("{}", value.table),
    }
    Ok(())
}

async fn via_namesrv(namesrv: &Client, command: AdminCommand) -> Result<Answer> {
    match command {
        AdminCommand::Topic(command) => topic(namesrv, command).await,
        AdminCommand::Group(command) => group(namesrv, command).await,
        AdminCommand::Consumer(command) => consumer::run(namesrv, command).await,
        AdminCommand::Offset(command) => offset(namesrv, command).await,
        AdminCommand::Message(command) => message(namesrv, command).await,
        AdminCommand::Cluster(ClusterCommand::List) => cluster_list(namesrv).await,
        AdminCommand::Namesrv(command) => namesrv::run(namesrv, command).await,
        AdminCommand::Acl(command) => acl::run(namesrv, command).await,
        AdminCommand::Broker(_) | AdminCommand::Import(_) => {
            unreachable!("broker and import commands need no name server")
        }
    }
}

/// What a command prints: the same rows as a table and as JSON.
struct Answer {
    table: Table,
    json: Value,
}

impl Answer {
    fn rows(table: Table) -> Answer {
        let json = table.to_json();
        Answer { table, json }
    }

    fn done(message: String) -> Answer {
        Answer {
            table: Table::message(message.clone()),
            json: json!({ "result": message }),
        }
    }
}

/// The ACL user every connection signs as, set once from the arguments.
static CREDENTIALS: OnceLock<Credentials> = OnceLock::new();

async fn connect(addr: &str) -> Result<Client> {
    let client = Client::connect(addr)
        .await
        .with_context(|| format!("cannot connect to {addr}"))?;
    if let Some(credentials) = CREDENTIALS.get() {
        client.set_credentials(credentials.clone());
    }
    Ok(client)
}

/// Master addresses of the brokers of `cluster` (every broker when it has no such cluster).
async fn cluster_masters(namesrv: &Client, cluster: &str) -> Result<Vec<(String, String)>> {
    let info = namesrv.get_cluster_info().await?;
    let names = info.cluster_addr_table.get(cluster).cloned();
    let Some(names) = names else {
        bail!(
            "no cluster {cluster}; the name server knows {:?}",
            info.cluster_addr_table.keys().collect::<Vec<_>>()
        );
    };
    Ok(names
        .into_iter()
        .filter_map(|name| {
            let data = info.broker_addr_table.get(&name)?;
            Some((name, data.master_addr()?.to_string()))
        })
        .collect())
}

fn route_masters(route: &TopicRouteData) -> Vec<(String, String)> {
    route
        .broker_datas
        .iter()
        .filter_map(|b: &BrokerData| Some((b.broker_name.clone(), b.master_addr()?.to_string())))
        .collect()
}

async fn topic(namesrv: &Client, command: TopicCommand) -> Result<Answer> {
    match command {
        TopicCommand::Create {
            topic,
            cluster,
            read_queues,
            write_queues,
            perm,
            order,
        } => {
            let header = CreateTopicRequestHeader {
                topic: topic.clone(),
                default_topic: "TBW102".into(),
                read_queue_nums: read_queues,
                write_queue_nums: write_queues,
                perm,
                topic_filter_type: "SINGLE_TAG".into(),
                topic_sys_flag: Some(0),
                order,
                attributes: None,
                force: None,
            };
            let mut table = Table::new(["broker", "address", "result"]);
            for (name, addr) in cluster_masters(namesrv, &cluster).await? {
                connect(&addr).await?.create_topic(&header).await?;
                table.row([name, addr, "created".into()]);
            }
            Ok(Answer::rows(table))
        }
        TopicCommand::List => {
            let mut table = Table::new(["topic"]);
            let mut topics = namesrv.get_all_topic_list().await?.topic_list;
            topics.sort();
            for topic in topics {
                table.row([topic]);
            }
            Ok(Answer::rows(table))
        }
        TopicCommand::Delete { topic } => {
            let route = namesrv.get_route_info(&topic).await?;
            for (_, addr) in route_masters(&route) {
                connect(&addr).await?.delete_topic_in_broker(&topic).await?;
            }
            namesrv.delete_topic_in_namesrv(&topic).await?;
            Ok(Answer::done(format!("topic {topic} deleted")))
        }
        TopicCommand::Status { topic } => {
            let route = namesrv.get_route_info(&topic).await?;
            let mut table =
                Table::new(["broker", "queue", "min offset", "max offset", "last stored"]);
            for (_, addr) in route_masters(&route) {
                let stats = connect(&addr).await?.get_topic_stats(&topic).await?;
                for (queue, offsets) in stats.offset_table {
                    table.row([
                        queue.broker_name,
                        queue.queue_id.to_string(),
                        offsets.min_offset.to_string(),
                        offsets.max_offset.to_string(),
                        millis(offsets.last_update_timestamp),
                    ]);
                }
            }
            Ok(Answer::rows(table))
        }
        TopicCommand::Route { topic } => {
            let route = namesrv.get_route_info(&topic).await?;
            let mut table =
                Table::new(["broker", "address", "read queues", "write queues", "perm"]);
            for queues in &route.queue_datas {
                let addr = route
                    .broker_datas
                    .iter()
                    .find(|b| b.broker_name == queues.broker_name)
                    .and_then(|b| b.master_addr())
                    .unwrap_or("-");
                table.row([
                    queues.broker_name.clone(),
                    addr.to_string(),
                    queues.read_queue_nums.to_string(),
                    queues.write_queue_nums.to_string(),
                    perm_name(queues.perm),
                ]);
            }
            Ok(Answer {
                table,
                json: serde_json::to_value(&route)?,
            })
        }
    }
}

async fn group(namesrv: &Client, command: GroupCommand) -> Result<Answer> {
    match command {
        GroupCommand::Create {
            group,
            cluster,
            retry_max_times,
            orderly,
        } => {
            let config = SubscriptionGroupConfig {
                retry_max_times,
                consume_message_orderly: orderly,
                ..SubscriptionGroupConfig::named(group.clone())
            };
            let mut table = Table::new(["broker", "address", "result"]);
            for (name, addr) in cluster_masters(namesrv, &cluster).await? {
                connect(&addr)
                    .await?
                    .create_subscription_group(&config)
                    .await?;
                table.row([name, addr, "created".into()]);
            }
            Ok(Answer::rows(table))
        }
        GroupCommand::List => {
            let mut table = Table::new(["broker", "group", "retry max", "orderly", "consume"]);
            for (name, addr) in all_masters(namesrv).await? {
                let groups = connect(&addr).await?.get_all_subscription_groups().await?;
                for config in groups.subscription_group_table.into_values() {
                    table.row([
                        name.clone(),
                        config.group_name,
                        config.retry_max_times.to_string(),
                        config.consume_message_orderly.to_string(),
                        config.consume_enable.to_string(),
                    ]);
                }
            }
            Ok(Answer::rows(table))
        }
        GroupCommand::Delete { group } => {
            for (_, addr) in all_masters(namesrv).await? {
                connect(&addr)
                    .await?
                    .delete_subscription_group(&group, true)
                    .await?;
            }
            Ok(Answer::done(format!("group {group} deleted")))
        }
    }
}

async fn all_masters(namesrv: &Client) -> Result<Vec<(String, String)>> {
    let info = namesrv.get_cluster_info().await?;
    Ok(info
        .broker_addr_table
        .into_iter()
        .filter_map(|(name, data)| Some((name, data.master_addr()?.to_string())))
        .collect())
}

/// Brokers that serve a group: those of its retry topic's route, as mqadmin finds them.
async fn group_masters(namesrv: &Client, group: &str) -> Result<Vec<(String, String)>> {
    let route = namesrv
        .get_route_info(&format!("%RETRY%{group}"))
        .await
        .with_context(|| format!("group {group} has never consumed (no %RETRY%{group} route)"))?;
    Ok(route_masters(&route))
}

async fn offset(namesrv: &Client, command: OffsetCommand) -> Result<Answer> {
    let OffsetCommand::ResetByTime {
        group,
        topic,
        timestamp,
    } = command;
    let timestamp: i64 = if timestamp == "now" {
        -1
    } else {
        timestamp
            .parse()
            .context("timestamp must be milliseconds since the epoch or `now`")?
    };
    let route = namesrv.get_route_info(&topic).await?;
    let mut table = Table::new(["broker", "queue", "offset"]);
    for (name, addr) in route_masters(&route) {
        let broker = connect(&addr).await?;
        match broker
            .reset_offset_by_time(&topic, &group, timestamp, true)
            .await
        {
            Ok(reset) => {
                for (queue, offset) in reset.offset_table {
                    table.row([
                        queue.broker_name,
                        queue.queue_id.to_string(),
                        offset.to_string(),
                    ]);
                }
            }
            // No client online: set each queue's offset directly, as mqadmin does.
            Err(protocol::Error::Remote { code, .. })
                if code == ResponseCode::ConsumerNotOnline.as_i32() =>
            {
                let queues = route
                    .queue_datas
                    .iter()
                    .find(|q| q.broker_name == name)
                    .map_or(0, |q| q.write_queue_nums);
                for queue_id in 0..queues {
                    let offset = if timestamp == -1 {
                        broker.get_max_offset(&topic, queue_id).await?
                    } else {
                        broker
                            .search_offset(&topic, queue_id, timestamp, Default::default())
                            .await?
                    };
                    broker
                        .update_consumer_offset(&UpdateConsumerOffsetRequestHeader {
                            consumer_group: group.clone(),
                            topic: topic.clone(),
                            queue_id,
                            commit_offset: offset,
                            ..Default::default()
                        })
                        .await?;
                    table.row([name.clone(), queue_id.to_string(), offset.to_string()]);
                }
            }
            Err(error) => return Err(error.into()),
        }
    }
    Ok(Answer::rows(table))
}

async fn message(namesrv: &Client, command: MessageCommand) -> Result<Answer> {
    let mut table = Table::new([
        "offset msg id",
        "topic",
        "queue",
        "queue offset",
        "keys",
        "tags",
        "stored",
        "body bytes",
    ]);
    let mut add = |record: &message::StoredMessage<'_>| -> Result<()> {
        let properties = record.properties()?;
        table.row([
            message::offset_message_id(record.store_host(), record.physical_offset()),
            record.topic()?.to_string(),
            record.queue_id().to_string(),
            record.queue_offset().to_string(),
            properties.get("KEYS").unwrap_or("").to_string(),
            properties.get("TAGS").unwrap_or("").to_string(),
            millis(record.store_timestamp()),
            record.body().len().to_string(),
        ]);
        Ok(())
    };
    match command {
        MessageCommand::ResendDlq { group } => {
            return Ok(Answer::rows(dead_letter::resend(namesrv, &group).await?));
        }
        MessageCommand::Trace { id, trace_topic } => {
            return Ok(Answer::rows(trace::show(namesrv, &id, &trace_topic).await?));
        }
        MessageCommand::QueryByKey { topic, key } => {
            let route = namesrv.get_route_info(&topic).await?;
            for (_, addr) in route_masters(&route) {
                let body = connect(&addr)
                    .await?
                    .query_message(&topic, &key, 64, false)
                    .await?;
                for record in protocol::body::decode_pulled_messages(&body)? {
                    // The index is a hash: keep only exact matches, as clients do.
                    let properties = record.properties()?;
                    let keys = properties.get("KEYS").unwrap_or("");
                    if record.topic()? == topic && keys.split(' ').any(|k| k == key) {
                        add(&record)?;
                    }
                }
            }
        }
        MessageCommand::View { id } => {
            let (addr, offset) = message::decode_offset_message_id(&id)
                .with_context(|| format!("{id} is not an offset message id"))?;
            let body = connect(&addr.to_string())
                .await?
                .view_message(offset)
                .await?;
            for record in protocol::body::decode_pulled_messages(&body)? {
                add(&record)?;
            }
        }
    }
    Ok(Answer::rows(table))
}

async fn cluster_list(namesrv: &Client) -> Result<Answer> {
    let info = namesrv.get_cluster_info().await?;
    let mut table = Table::new([
        "cluster",
        "broker",
        "id",
        "address",
        "version",
        "put tps",
        "get tps",
        "put total",
        "get total",
    ]);
    for (cluster, names) in &info.cluster_addr_table {
        for name in names {
            let Some(data) = info.broker_addr_table.get(name) else {
                continue;
            };
            for (id, addr) in &data.broker_addrs {
                let runtime: BTreeMap<String, String> = match connect(addr).await {
                    Ok(client) => client
                        .get_broker_runtime_info()
                        .await
                        .map(|kv| kv.table)
                        .unwrap_or_default(),
                    Err(_) => BTreeMap::new(),
                };
                let get = |key: &str| runtime.get(key).cloned().unwrap_or_else(|| "-".into());
                table.row([
                    cluster.clone(),
                    name.clone(),
                    id.to_string(),
                    addr.clone(),
                    get("brokerVersionDesc"),
                    get("putTps"),
                    get("getTransferredTps"),
                    get("msgPutTotalTodayNow"),
                    get("msgGetTotalTodayNow"),
                ]);
            }
        }
    }
    Ok(Answer::rows(table))
}

/// A server's settings (`key=value` lines) as a two-column table.
fn properties_table(text: &str) -> Table {
    let mut table = Table::new(["key", "value"]);
    for line in text.lines() {
        if let Some((key, value)) = line.split_once('=') {
            table.row([key.to_string(), value.to_string()]);
        }
    }
    table
}

fn perm_name(bits: i32) -> String {
    format!(
        "{}{}{}",
        if perm::is_readable(bits) { 'R' } else { '-' },
        if perm::is_writeable(bits) { 'W' } else { '-' },
        if perm::is_inherited(bits) { 'X' } else { '-' },
    )
}

/// Milliseconds since the epoch as UTC `YYYY-MM-DD HH:MM:SS`; `-` for 0.
fn millis(value: i64) -> String {
    if value <= 0 {
        return "-".into();
    }
    let seconds = value / 1000;
    let (days, rest) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_utc_civil_dates() {
        assert_eq!(millis(0), "-");
        assert_eq!(millis(86_400_000), "1970-01-02 00:00:00");
        assert_eq!(millis(1_700_000_000_000), "2023-11-14 22:13:20");
    }

    #[test]
    fn permissions_read_like_mqadmin() {
        assert_eq!(perm_name(6), "RW-");
        assert_eq!(perm_name(7), "RWX");
        assert_eq!(perm_name(4), "R--");
    }
}
