//! The broker's and name server's settings, read from the same Java-properties files and
//! keys RocketMQ users know. Each key is declared once below; `docs/configuration.md`
//! documents every one of them and a test keeps the two in step.

use std::fmt::Display;
use std::path::Path;
use std::str::FromStr;

use protocol::client::ClientTls;

use crate::error::{Error, Result};
use crate::metrics::ExporterType;
use crate::server::Limits;
use crate::{properties, store_settings};

/// Declares a settings struct whose fields are set from RocketMQ's camelCase keys.
macro_rules! settings {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $( $(#[doc = $doc:literal])* $field:ident : $ty:ty = $default:expr => $key:literal, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq)]
        pub struct $name {
            $( $(#[doc = $doc])* pub $field: $ty, )*
        }

        impl Default for $name {
            fn default() -> Self {
                Self { $( $field: $default, )* }
            }
        }

        impl $name {
            /// Every key this struct reads, as RocketMQ spells it.
            pub const KEYS: &'static [&'static str] = &[$($key,)*];

            /// Sets `key` from its text; `Ok(false)` when the key is not one of ours.
            pub fn set(&mut self, key: &str, value: &str) -> Result<bool> {
                match key {
                    $( $key => { self.$field = parse_value(key, value)?; Ok(true) } )*
                    _ => Ok(false),
                }
            }

            /// Every key with its current value, as GET_BROKER_CONFIG shows them.
            pub fn entries(&self) -> Vec<(&'static str, String)> {
                vec![$( ($key, self.$field.to_string()), )*]
            }
        }
    };
}

fn parse_value<T: FromStr>(key: &str, value: &str) -> Result<T>
where
    T::Err: Display,
{
    value
        .trim()
        .parse()
        .map_err(|error: T::Err| Error::ConfigValue {
            key: key.to_string(),
            value: value.to_string(),
            reason: error.to_string(),
        })
}

settings! {
    /// The name server's settings (`namesrv.conf`).
    pub struct NamesrvConfig {
        /// Port the name server listens on.
        listen_port: u16 = 9876 => "listenPort",
        /// Address the name server binds.
        bind_address: String = "0.0.0.0".to_string() => "bindAddress",
        /// How long a broker may stay silent before its routes are dropped, in ms.
        broker_channel_expired_time: u64 = 120_000 => "brokerChannelExpiredTime",
        /// How often silent brokers are looked for, in ms (RocketMQ's key and default).
        scan_not_active_broker_interval: u64 = 5000 => "scanNotActiveBrokerInterval",
        /// Limits of the name server's connections; see docs/reliability.md ("Limits").
        server_max_connections: usize = 10_000 => "serverMaxConnections",
        /// Clients ask the name server one route at a time; brokers register one at a time.
        server_max_requests_in_flight: u32 = 256 => "serverMaxRequestsInFlight",
        server_max_queued_response_bytes: u32 = 4 * 1024 * 1024 => "serverMaxQueuedResponseBytes",
        server_channel_max_idle_time_seconds: u64 = 120 => "serverChannelMaxIdleTimeSeconds",
        server_frame_timeout_seconds: u64 = 30 => "serverFrameTimeoutSeconds",
        server_first_frame_max_bytes: usize = 64 * 1024 => "serverFirstFrameMaxBytes",
        /// KV config, settings and write-permission changes need an administrator of
        /// `aclFile` (docs/security.md).
        acl_enable: bool = false => "aclEnable",
        acl_file: String = String::new() => "aclFile",
        acl_free_authentication_failures: u32 = 3 => "aclFreeAuthenticationFailures",
        /// The HTTP endpoint: health always, metrics with PROM (docs/observability.md); the
        /// broker's keys, with a port of its own so a name server and a broker on one host
        /// both start with the defaults.
        metrics_exporter_type: ExporterType = ExporterType::Prom => "metricsExporterType",
        /// Empty: the name server's `bindAddress`.
        metrics_prom_exporter_host: String = String::new() => "metricsPromExporterHost",
        metrics_prom_exporter_port: u16 = 5558 => "metricsPromExporterPort",
    }
}

settings! {
    /// The broker's own settings (`broker.conf`); the store's keys are read by
    /// the store's settings from the same file.
    pub struct BrokerConfig {
        broker_cluster_name: String = "DefaultCluster".to_string() => "brokerClusterName",
        broker_name: String = "broker-a".to_string() => "brokerName",
        broker_id: u64 = 0 => "brokerId",
        /// Name servers, `host:port` separated by `;`.
        namesrv_addr: String = String::new() => "namesrvAddr",
        listen_port: u16 = 10911 => "listenPort",
        bind_address: String = "0.0.0.0".to_string() => "bindAddress",
        /// The address clients are told to reach this broker at (an IP or a DNS name).
        broker_ip1: String = "127.0.0.1".to_string() => "brokerIP1",
        broker_permission: u32 = 6 => "brokerPermission",
        auto_create_topic_enable: bool = true => "autoCreateTopicEnable",
        auto_create_subscription_group: bool = true => "autoCreateSubscriptionGroup",
        default_topic_queue_nums: u32 = 8 => "defaultTopicQueueNums",
        long_polling_enable: bool = true => "longPollingEnable",
        short_polling_time_mills: u64 = 1000 => "shortPollingTimeMills",
        /// Serve pulls while a follower of a replicated group, and send consumers that lag
        /// past `accessMessageInMemoryMaxRatio` to `whichBrokerWhenConsumeSlowly`
        /// (RocketMQ's key and default; docs/replication.md).
        slave_read_enable: bool = false => "slaveReadEnable",
        /// How far behind the CommitLog's end a read may start, as a share of physical
        /// memory, and still count as served from the page cache (RocketMQ's key, a store
        /// key there, and default).
        access_message_in_memory_max_ratio: Percent = Percent(40)
            => "accessMessageInMemoryMaxRatio",
        register_name_server_period: u64 = 30_000 => "registerNameServerPeriod",
        flush_consumer_offset_interval: u64 = 5000 => "flushConsumerOffsetInterval",
        channel_expired_timeout: u64 = 120_000 => "channelExpiredTimeout",
        notify_consumer_ids_changed_enable: bool = true => "notifyConsumerIdsChangedEnable",
        region_id: String = "DefaultRegion".to_string() => "regionId",
        trace_on: bool = true => "traceOn",
        /// Create the message-trace topic (one queue) at start, for clusters that do not
        /// auto-create topics; traced clients write their records to it.
        trace_topic_enable: bool = false => "traceTopicEnable",
        msg_trace_topic_name: String = "RMQ_SYS_TRACE_TOPIC".to_string() => "msgTraceTopicName",
        /// Deliver messages at the time `TIMER_DELIVER_MS`, `TIMER_DELAY_MS` or
        /// `TIMER_DELAY_SEC` names; without it such sends are refused.
        timer_wheel_enable: bool = true => "timerWheelEnable",
        /// The latest delivery time a timer message may ask for, in seconds from now.
        timer_max_delay_sec: u64 = 259_200 => "timerMaxDelaySec",
        /// Refuse transactional (half) messages with NO_PERMISSION.
        reject_transaction_message: bool = false => "rejectTransactionMessage",
        /// ms a half message may stay undecided before its producer is asked.
        transaction_time_out: u64 = 6000 => "transactionTimeOut",
        /// Checks of one half message before it is given up (to TRANS_CHECK_MAX_TIME_TOPIC).
        transaction_check_max: u32 = 15 => "transactionCheckMax",
        /// ms between rounds of the transaction checker (Apache 5.1.1+).
        transaction_check_interval: u64 = 30_000 => "transactionCheckInterval",
        /// Allow SQL92 subscriptions (filtering by message properties).
        enable_property_filter: bool = false => "enablePropertyFilter",
        /// The delay of each delay level, 1-based, as RocketMQ spells them.
        message_delay_level: String =
            "1s 5s 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m 20m 30m 1h 2h".to_string()
            => "messageDelayLevel",
        /// Signed requests of known users only, each checked against the user's grants
        /// (ACL 1.0's key); docs/security.md.
        acl_enable: bool = false => "aclEnable",
        /// Signed requests of known users only (RocketMQ 5.x's key).
        authentication_enabled: bool = false => "authenticationEnabled",
        /// Each request checked against the user's grants; implies authentication.
        authorization_enabled: bool = false => "authorizationEnabled",
        /// The users and their grants (`plain_acl.yml`'s format), read again when it
        /// changes; empty: `plain_acl.yml` in the state folder (`storePathRootDir/config`).
        acl_file: String = String::new() => "aclFile",
        /// With the ACL on and this above 0, each request must sign a `Timestamp` within
        /// this many seconds of the broker's clock and a `Nonce` not used before (Rocketry's
        /// own replay protection; docs/security.md).
        acl_replay_window_seconds: u64 = 0 => "aclReplayWindowSeconds",
        /// Failed authentications from one address within a minute answered at once; each
        /// later one waits twice as long as the one before, from 100 ms up to 5 s.
        acl_free_authentication_failures: u32 = 3 => "aclFreeAuthenticationFailures",
        /// Limits of the broker's connections; see docs/reliability.md ("Limits").
        server_max_connections: usize = 10_000 => "serverMaxConnections",
        /// Well above what a Java client keeps in flight: a push consumer holds one pull
        /// per queue it owns (up to 28 s each), and producers pipeline async sends.
        server_max_requests_in_flight: u32 = 1024 => "serverMaxRequestsInFlight",
        server_max_queued_response_bytes: u32 = 4 * 1024 * 1024 => "serverMaxQueuedResponseBytes",
        /// RocketMQ's key and default; Java clients heartbeat every 30 s.
        server_channel_max_idle_time_seconds: u64 = 120 => "serverChannelMaxIdleTimeSeconds",
        server_frame_timeout_seconds: u64 = 30 => "serverFrameTimeoutSeconds",
        server_first_frame_max_bytes: usize = 64 * 1024 => "serverFirstFrameMaxBytes",
        /// The HTTP endpoint: health always, metrics with PROM (docs/observability.md);
        /// Apache's keys and port. Apache's default type is DISABLE, Rocketry's is PROM.
        metrics_exporter_type: ExporterType = ExporterType::Prom => "metricsExporterType",
        /// Empty: the broker's `bindAddress`.
        metrics_prom_exporter_host: String = String::new() => "metricsPromExporterHost",
        metrics_prom_exporter_port: u16 = 5557 => "metricsPromExporterPort",
        /// At most this many topic × consumer group pairs get series (lag, messages out,
        /// dead letters); Rocketry's own key.
        metrics_max_topic_group_series: usize = 10_000 => "metricsMaxTopicGroupSeries",
        /// Raft replication of the broker group (DLedger mode; docs/replication.md): the
        /// leader registers as master, the others as slaves, and `brokerId` is not read.
        enable_dleger_commit_log: bool = false => "enableDLegerCommitLog",
        /// The group's Raft name; empty: `brokerName`.
        dleger_group: String = String::new() => "dLegerGroup",
        /// Every replica's Raft address, `n0-host:port;n1-host:port;n2-host:port`.
        dleger_peers: String = String::new() => "dLegerPeers",
        /// This replica among `dLegerPeers`.
        dleger_self_id: String = "n0".to_string() => "dLegerSelfId",
    }
}

/// The number of a replica named as `dLegerPeers` and `dLegerSelfId` name them (`n2`).
pub fn replica_number(id: &str) -> Option<u64> {
    id.trim()
        .strip_prefix('n')
        .and_then(|n| n.parse::<u64>().ok())
}

/// A whole percentage, 0 to 100.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Percent(u8);

impl Percent {
    /// `percent` of `total`.
    pub fn of(self, total: u64) -> u64 {
        (u128::from(total) * u128::from(self.0) / 100) as u64
    }
}

impl FromStr for Percent {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Self, String> {
        match text.parse::<u8>() {
            Ok(percent) if percent <= 100 => Ok(Percent(percent)),
            _ => Err("a whole percentage from 0 to 100".into()),
        }
    }
}

impl Display for Percent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// A replicated broker's place in its group, from the `dLeger*` keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dledger {
    pub group: String,
    /// This replica's number: `dLegerSelfId` `nX` is X.
    pub self_id: u64,
    /// Every replica's number and Raft address.
    pub peers: std::collections::BTreeMap<u64, String>,
}

impl Dledger {
    /// The address this replica's Raft listens on.
    pub fn own_addr(&self) -> &str {
        &self.peers[&self.self_id]
    }
}

settings! {
    /// TLS on the remoting port (RocketMQ's `tls.server.*` keys), read from `broker.conf` or
    /// `namesrv.conf`; in `standalone` the name server and the broker share them.
    pub struct TlsConfig {
        mode: TlsMode = TlsMode::Disabled => "tls.server.mode",
        /// The server's certificate chain, PEM; read again when it changes.
        cert_path: String = String::new() => "tls.server.certPath",
        /// The server's private key, PEM (PKCS#8, PKCS#1 or SEC1); read again with the
        /// certificate.
        key_path: String = String::new() => "tls.server.keyPath",
        need_client_auth: ClientAuth = ClientAuth::None => "tls.server.need.client.auth",
        /// CA certificates that sign client certificates, PEM.
        trust_cert_path: String = String::new() => "tls.server.trustCertPath",
        /// The broker's own connections to name servers speak TLS.
        client_enable: bool = false => "tls.enable",
        /// Check the name server's certificate against `tls.client.trustCertPath`; without
        /// it any certificate is taken (RocketMQ's default).
        client_auth_server: bool = false => "tls.client.authServer",
        client_trust_cert_path: String = String::new() => "tls.client.trustCertPath",
        /// A certificate and key to show name servers that require client certificates.
        client_cert_path: String = String::new() => "tls.client.certPath",
        client_key_path: String = String::new() => "tls.client.keyPath",
    }
}

impl TlsConfig {
    /// The client side for the broker's connections to name servers, if `tls.enable`.
    pub fn client(&self) -> Result<Option<ClientTls>> {
        if !self.client_enable {
            return Ok(None);
        }
        let path = |value: &str| (!value.is_empty()).then(|| Path::new(value).to_path_buf());
        let trust = match (self.client_auth_server, path(&self.client_trust_cert_path)) {
            (false, _) => None,
            (true, Some(trust)) => Some(trust),
            (true, None) => {
                return Err(Error::Tls {
                    reason: "tls.client.authServer=true needs tls.client.trustCertPath".into(),
                })
            }
        };
        let identity = path(&self.client_cert_path).zip(path(&self.client_key_path));
        let identity = identity.as_ref().map(|(c, k)| (c.as_path(), k.as_path()));
        ClientTls::new(trust.as_deref(), identity)
            .map(Some)
            .map_err(crate::server::tls_error)
    }
}

/// Which clients the remoting port speaks to (RocketMQ's `TlsMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// Plaintext only.
    Disabled,
    /// TLS and plaintext clients on the same port.
    Permissive,
    /// TLS clients only.
    Enforcing,
}

/// Whether clients must show a certificate (RocketMQ's `tls.server.need.client.auth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    None,
    Optional,
    Require,
}

/// Lowercase names, as RocketMQ writes them, both ways.
macro_rules! named_values {
    ($type:ident { $($variant:ident => $name:literal,)* }) => {
        impl FromStr for $type {
            type Err = String;
            fn from_str(text: &str) -> std::result::Result<Self, String> {
                match text.trim().to_ascii_lowercase().as_str() {
                    $($name => Ok($type::$variant),)*
                    _ => Err(format!("expected one of: {}", [$($name),*].join(", "))),
                }
            }
        }

        impl Display for $type {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(match self { $($type::$variant => $name,)* })
            }
        }
    };
}

named_values!(TlsMode {
    Disabled => "disabled",
    Permissive => "permissive",
    Enforcing => "enforcing",
});

named_values!(ClientAuth {
    None => "none",
    Optional => "optional",
    Require => "require",
});

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| Error::ConfigFile {
        path: path.to_path_buf(),
        source,
    })
}

impl NamesrvConfig {
    /// The keys UPDATE_NAMESRV_CONFIG may change: the ones the name server reads again on
    /// every use. Never a path (see `config_update`).
    pub const RUNTIME_KEYS: &'static [&'static str] =
        &["brokerChannelExpiredTime", "scanNotActiveBrokerInterval"];

    /// The limits the name server holds its connections to.
    pub fn server_limits(&self) -> Limits {
        Limits::new(
            self.server_max_connections,
            self.server_max_requests_in_flight,
            self.server_max_queued_response_bytes,
            self.server_channel_max_idle_time_seconds,
            self.server_frame_timeout_seconds,
            self.server_first_frame_max_bytes,
        )
    }

    /// Where the HTTP endpoint listens (health always, metrics when enabled).
    pub fn http_addr(&self) -> String {
        http_addr(
            &self.metrics_prom_exporter_host,
            &self.bind_address,
            self.metrics_prom_exporter_port,
        )
    }

    /// Reads a `namesrv.conf`; returns the settings, its TLS settings and the keys it did
    /// not know.
    pub fn load(path: &Path) -> Result<(NamesrvConfig, TlsConfig, Vec<String>)> {
        let mut config = NamesrvConfig::default();
        let mut tls = TlsConfig::default();
        let mut unknown = Vec::new();
        for entry in properties::parse(&read(path)?) {
            if !config.set(&entry.key, &entry.value)? && !tls.set(&entry.key, &entry.value)? {
                unknown.push(entry.key);
            }
        }
        Ok((config, tls, unknown))
    }
}

impl BrokerConfig {
    /// The keys UPDATE_BROKER_CONFIG may change: the ones the broker reads again on every
    /// use. Never a path (see `config_update`).
    pub const RUNTIME_KEYS: &'static [&'static str] = &["brokerPermission", "namesrvAddr"];

    /// Which ACL checks the keys ask for, if any.
    pub fn acl_checks(&self) -> Option<crate::acl::Checks> {
        use crate::acl::Checks;
        if self.acl_enable || self.authorization_enabled {
            Some(Checks::AuthenticationAndAuthorization)
        } else if self.authentication_enabled {
            Some(Checks::Authentication)
        } else {
            None
        }
    }

    /// The limits the broker's server holds its connections to.
    pub fn server_limits(&self) -> Limits {
        Limits::new(
            self.server_max_connections,
            self.server_max_requests_in_flight,
            self.server_max_queued_response_bytes,
            self.server_channel_max_idle_time_seconds,
            self.server_frame_timeout_seconds,
            self.server_first_frame_max_bytes,
        )
    }

    /// Where the HTTP endpoint listens (health always, metrics when enabled).
    pub fn http_addr(&self) -> String {
        http_addr(
            &self.metrics_prom_exporter_host,
            &self.bind_address,
            self.metrics_prom_exporter_port,
        )
    }

    /// The name servers to register with, each once (the registrar keys them by address).
    pub fn namesrv_addrs(&self) -> Vec<String> {
        let mut addrs: Vec<String> = Vec::new();
        for addr in self.namesrv_addr.split(';').map(str::trim) {
            if !addr.is_empty() && !addrs.iter().any(|known| known == addr) {
                addrs.push(addr.to_string());
            }
        }
        addrs
    }

    /// [`BrokerConfig::namesrv_addrs`] for a list changed at run time: refused when one entry
    /// is not `host:port` or none is left, since the broker would then drop every name server
    /// it registers with and no client could find it.
    pub fn checked_namesrv_addrs(&self) -> Result<Vec<String>> {
        let refused = |reason: String| Error::ConfigValue {
            key: "namesrvAddr".into(),
            value: self.namesrv_addr.clone(),
            reason,
        };
        let addrs = self.namesrv_addrs();
        if addrs.is_empty() {
            return Err(refused(
                "no name server left to register with; give at least one host:port".into(),
            ));
        }
        if let Some(bad) = addrs.iter().find(|addr| !is_host_port(addr)) {
            return Err(refused(format!(
                "{bad} is not host:port (name servers are separated by ;)"
            )));
        }
        Ok(addrs)
    }

    /// The group's replication, when `enableDLegerCommitLog`: refused when `dLegerPeers` is
    /// not `nX-host:port` entries or does not name `dLegerSelfId`.
    pub fn dledger(&self) -> Result<Option<Dledger>> {
        if !self.enable_dleger_commit_log {
            return Ok(None);
        }
        let refused = |key: &str, value: &str, reason: String| Error::ConfigValue {
            key: key.into(),
            value: value.into(),
            reason,
        };
        let number = replica_number;
        let mut peers = std::collections::BTreeMap::new();
        for peer in self
            .dleger_peers
            .split(';')
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            let parsed = peer
                .split_once('-')
                .and_then(|(id, addr)| Some((number(id)?, addr.trim())))
                .filter(|(_, addr)| is_host_port(addr));
            let Some((id, addr)) = parsed else {
                return Err(refused(
                    "dLegerPeers",
                    &self.dleger_peers,
                    format!("{peer} is not nX-host:port"),
                ));
            };
            if peers.insert(id, addr.to_string()).is_some() {
                return Err(refused(
                    "dLegerPeers",
                    &self.dleger_peers,
                    format!("n{id} is named twice"),
                ));
            }
        }
        let self_id = number(&self.dleger_self_id)
            .filter(|id| peers.contains_key(id))
            .ok_or_else(|| {
                refused(
                    "dLegerSelfId",
                    &self.dleger_self_id,
                    format!("not one of dLegerPeers ({})", self.dleger_peers),
                )
            })?;
        let group = if self.dleger_group.is_empty() {
            self.broker_name.clone()
        } else {
            self.dleger_group.clone()
        };
        Ok(Some(Dledger {
            group,
            self_id,
            peers,
        }))
    }

    /// `brokerIP1:listenPort`, the address clients and name servers see.
    pub fn advertised_addr(&self) -> String {
        format!("{}:{}", self.broker_ip1, self.listen_port)
    }
}

/// `host:port` with a host name, an IPv4 address or a bracketed IPv6 one, and a port above 0.
fn is_host_port(addr: &str) -> bool {
    let Some((host, port)) = addr.rsplit_once(':') else {
        return false;
    };
    let host_ok = match host.strip_prefix('[').and_then(|ip| ip.strip_suffix(']')) {
        Some(ip) => ip.parse::<std::net::Ipv6Addr>().is_ok(),
        None => {
            !host.is_empty()
                && host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        }
    };
    host_ok && port.parse::<u16>().is_ok_and(|port| port > 0)
}

/// Apache's metrics keys place the whole HTTP endpoint: Kubernetes probes it on the pod's
/// `metrics` port whether or not metrics are exported.
fn http_addr(host: &str, bind: &str, port: u16) -> String {
    let host = if host.trim().is_empty() { bind } else { host };
    format!("{host}:{port}")
}

/// Everything one config file sets, split by owner.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub broker: BrokerConfig,
    pub store: store::StoreConfig,
    pub namesrv: NamesrvConfig,
    /// TLS of the broker's port and, in `standalone`, of the name server's too.
    pub tls: TlsConfig,
    /// Keys no part of Rocketry reads; reported at start so a typo is not silent.
    pub unknown_keys: Vec<String>,
}

impl Settings {
    /// Reads a properties file; a missing file is an error, unknown keys are collected.
    pub fn load(path: &Path) -> Result<Settings> {
        let mut settings = Settings::default();
        settings.apply_file(path)?;
        Ok(settings)
    }

    /// Applies a properties file on top of the current settings.
    pub fn apply_file(&mut self, path: &Path) -> Result<()> {
        self.apply(&read(path)?)
    }

    /// Applies `key=value` text on top of the current settings.
    pub fn apply(&mut self, text: &str) -> Result<()> {
        for entry in properties::parse(text) {
            self.set(&entry.key, &entry.value)?;
        }
        Ok(())
    }

    /// Sets one key in whichever part owns it. `listenPort` and `bindAddress` mean the
    /// broker's in a broker file; the name server reads its own file.
    pub fn set(&mut self, key: &str, value: &str) -> Result<()> {
        let known = self.broker.set(key, value)?
            || store_settings::set(&mut self.store, key, value)?
            || self.tls.set(key, value)?;
        if !known && !self.namesrv.set(key, value)? {
            self.unknown_keys.push(key.to_string());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_rocketmq_broker_conf() {
        let mut settings = Settings::default();
        settings
            .apply(
                "brokerClusterName=PeerCluster\nbrokerName=broker-b\nbrokerId=0\n\
                 namesrvAddr=127.0.0.1:9876;10.0.0.2:9876\nlistenPort=20911\n\
                 autoCreateTopicEnable=false\nbrokerRole=ASYNC_MASTER\n",
            )
            .unwrap();
        assert_eq!(settings.broker.broker_cluster_name, "PeerCluster");
        assert_eq!(settings.broker.broker_name, "broker-b");
        assert_eq!(settings.broker.listen_port, 20911);
        assert!(!settings.broker.auto_create_topic_enable);
        assert_eq!(
            settings.broker.namesrv_addrs(),
            vec!["127.0.0.1:9876", "10.0.0.2:9876"]
        );
        assert_eq!(settings.unknown_keys, vec!["brokerRole"]);
    }

    #[test]
    fn a_name_server_list_changed_at_run_time_is_checked() {
        let list = |text: &str| BrokerConfig {
            namesrv_addr: text.into(),
            ..BrokerConfig::default()
        };
        assert_eq!(
            list(" a:9876 ;b.ns-1:9876;a:9876;[::1]:9876;")
                .checked_namesrv_addrs()
                .unwrap(),
            vec!["a:9876", "b.ns-1:9876", "[::1]:9876"]
        );
        for bad in [
            "",
            " ; ",
            "a",
            "a:",
            ":9876",
            "a:0",
            "a:70000",
            "a:9876,b:9876",
        ] {
            let error = list(bad).checked_namesrv_addrs().unwrap_err().to_string();
            assert!(error.contains("namesrvAddr"), "{bad:?}: {error}");
        }
        let error = list("").checked_namesrv_addrs().unwrap_err().to_string();
        assert!(error.contains("no name server left"), "{error}");
    }

    #[test]
    fn a_bad_value_names_its_key() {
        let mut settings = Settings::default();
        let error = settings.apply("listenPort=eleven").unwrap_err();
        let text = error.to_string();
        assert!(
            text.contains("listenPort") && text.contains("eleven"),
            "{text}"
        );
    }

    #[test]
    fn a_percentage_is_0_to_100() {
        let mut settings = Settings::default();
        settings.apply("accessMessageInMemoryMaxRatio=25").unwrap();
        assert_eq!(
            settings.broker.access_message_in_memory_max_ratio.of(4000),
            1000
        );
        for bad in ["101", "-1", "40%", ""] {
            let error = settings
                .apply(&format!("accessMessageInMemoryMaxRatio={bad}"))
                .unwrap_err()
                .to_string();
            assert!(error.contains("0 to 100"), "{bad}: {error}");
        }
        assert_eq!("100".parse::<Percent>().unwrap().of(u64::MAX), u64::MAX);
    }

    #[test]
    fn server_limits_come_from_their_keys() {
        let mut settings = Settings::default();
        settings
            .apply("serverChannelMaxIdleTimeSeconds=2\nserverMaxConnections=4\n")
            .unwrap();
        let limits = settings.broker.server_limits();
        assert_eq!(limits.idle_timeout, Some(std::time::Duration::from_secs(2)));
        assert_eq!(limits.max_connections, 4);
        assert_eq!(limits.max_requests_in_flight, 1024);
        // The name server beside a standalone broker keeps its own.
        let namesrv = settings.namesrv.server_limits();
        assert_eq!(namesrv.max_connections, 10_000);
        assert_eq!(namesrv.max_requests_in_flight, 256);
    }

    #[test]
    fn the_http_endpoint_follows_apaches_metrics_keys() {
        let mut settings = Settings::default();
        settings.broker.bind_address = "127.0.0.1".to_string();
        assert_eq!(settings.broker.http_addr(), "127.0.0.1:5557");
        assert_eq!(settings.namesrv.http_addr(), "0.0.0.0:5558");
        settings
            .apply("metricsPromExporterPort=9100\nmetricsPromExporterHost=10.0.0.1\n")
            .unwrap();
        assert_eq!(settings.broker.http_addr(), "10.0.0.1:9100");
        // Disabling metrics keeps the endpoint where it was, for health.
        settings.apply("metricsExporterType=disable\n").unwrap();
        assert_eq!(settings.broker.metrics_exporter_type, ExporterType::Disable);
        assert_eq!(settings.broker.http_addr(), "10.0.0.1:9100");
        assert!(settings.apply("metricsExporterType=OTLP_GRPC\n").is_err());
    }

    #[test]
    fn run_time_keys_are_known_and_none_is_a_path() {
        for key in NamesrvConfig::RUNTIME_KEYS {
            assert!(NamesrvConfig::KEYS.contains(key), "{key}");
            assert!(!crate::config_update::names_a_path(key), "{key}");
        }
        for key in BrokerConfig::RUNTIME_KEYS {
            assert!(BrokerConfig::KEYS.contains(key), "{key}");
            assert!(!crate::config_update::names_a_path(key), "{key}");
        }
    }

    #[test]
    fn every_key_is_documented() {
        let docs = include_str!("../../docs/configuration.md");
        let store_keys = store_settings::keys();
        let keys = NamesrvConfig::KEYS
            .iter()
            .chain(BrokerConfig::KEYS)
            .chain(TlsConfig::KEYS)
            .copied()
            .chain(store_keys.iter().map(String::as_str));
        for key in keys {
            assert!(
                docs.contains(&format!("`{key}`")),
                "docs/configuration.md does not document `{key}`"
            );
        }
    }
}
