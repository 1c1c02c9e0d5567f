//! The broker's `broker.conf`: which keys Rocketry knows, which of them the operator sets
//! itself, and the Java-properties text it renders for each broker.
//!
//! The known keys mirror the Broker and Store tables of docs/configuration.md; a unit test
//! reads that page and fails when the two drift apart.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

/// Every `broker.conf` key the Rocketry broker reads (docs/configuration.md, Broker and Store).
pub const KNOWN_BROKER_KEYS: &[&str] = &[
    // Broker
    "brokerClusterName",
    "brokerName",
    "brokerId",
    "namesrvAddr",
    "listenPort",
    "bindAddress",
    "brokerIP1",
    "brokerPermission",
    "autoCreateTopicEnable",
    "autoCreateSubscriptionGroup",
    "defaultTopicQueueNums",
    "longPollingEnable",
    "shortPollingTimeMills",
    "slaveReadEnable",
    "accessMessageInMemoryMaxRatio",
    "registerNameServerPeriod",
    "flushConsumerOffsetInterval",
    "channelExpiredTimeout",
    "notifyConsumerIdsChangedEnable",
    "regionId",
    "traceOn",
    "traceTopicEnable",
    "msgTraceTopicName",
    "timerWheelEnable",
    "timerMaxDelaySec",
    "rejectTransactionMessage",
    "transactionTimeOut",
    "transactionCheckMax",
    "transactionCheckInterval",
    "enablePropertyFilter",
    "messageDelayLevel",
    // ACL (docs/security.md)
    "aclEnable",
    "authenticationEnabled",
    "authorizationEnabled",
    "aclFile",
    "aclReplayWindowSeconds",
    "aclFreeAuthenticationFailures",
    // Server limits (docs/reliability.md)
    "serverMaxConnections",
    "serverMaxRequestsInFlight",
    "serverMaxQueuedResponseBytes",
    "serverChannelMaxIdleTimeSeconds",
    "serverFrameTimeoutSeconds",
    "serverFirstFrameMaxBytes",
    // Metrics (docs/observability.md)
    "metricsExporterType",
    "metricsPromExporterHost",
    "metricsPromExporterPort",
    "metricsMaxTopicGroupSeries",
    // Raft replication (docs/replication.md)
    "enableDLegerCommitLog",
    "dLegerGroup",
    "dLegerPeers",
    "dLegerSelfId",
    // Store
    "storePathRootDir",
    "mappedFileSizeCommitLog",
    "mappedFileSizeConsumeQueue",
    "flushDiskType",
    "flushIntervalCommitLog",
    "flushCommitLogLeastPages",
    "flushCommitLogThoroughInterval",
    "flushCommitLogTimed",
    "syncFlushTimeout",
    "flushIntervalConsumeQueue",
    "fileReservedTime",
    "deleteWhen",
    "diskMaxUsedSpaceRatio",
    "diskSpaceCleanForciblyRatio",
    "cleanResourceInterval",
    "deleteFileBatchMax",
    "maxMessageSize",
    "warmMapedFileEnable",
    "messageIndexEnable",
    "maxHashSlotNum",
    "maxIndexNum",
    "maxMsgsNumBatch",
    "checkCRCOnRecover",
];

/// Keys the operator derives from the spec and the pod's identity; an override would break
/// the cluster's wiring (a wrong brokerIP1 makes clients dial the wrong pod), so it is refused.
pub const MANAGED_KEYS: &[&str] = &[
    "brokerClusterName",
    "brokerName",
    "brokerId",
    "namesrvAddr",
    "listenPort",
    "bindAddress",
    "brokerIP1",
    "storePathRootDir",
    "flushDiskType",
    // Left at its default, METRICS_PORT: the pod's named port and scrape annotation say 5557.
    "metricsPromExporterPort",
    // Left at its default (bindAddress, every interface): the kubelet probes /readyz there,
    // and a loopback host would keep the broker from ever turning Ready.
    "metricsPromExporterHost",
    // Set from spec.security.acl: the operator writes the file and signs its own requests
    // with an account in it; an ACL it did not write would lock it out.
    "aclEnable",
    "authenticationEnabled",
    "authorizationEnabled",
    "aclFile",
    // Raft replication is not run by the operator yet (docs/replication.md): one override
    // for every pod could not give each replica its own dLegerSelfId, so these are refused
    // until the operator sets them per replica.
    "enableDLegerCommitLog",
    "dLegerGroup",
    "dLegerPeers",
    "dLegerSelfId",
];

/// The port brokers listen on, RocketMQ's default.
pub const BROKER_PORT: i32 = 10911;
/// The port of a broker's `/metrics`, Apache's default (`metricsPromExporterPort`).
pub const METRICS_PORT: i32 = 5557;
/// The port of a name server's `/metrics`, Rocketry's default.
pub const NAME_SERVER_METRICS_PORT: i32 = 5558;
/// The port name servers listen on, RocketMQ's default.
pub const NAME_SERVER_PORT: i32 = 9876;
/// The port of the Raft (DLedger) replication between the brokers of a group, RocketMQ's default.
pub const RAFT_PORT: i32 = 40911;
/// Where each broker's volume is mounted.
pub const STORE_PATH: &str = "/var/lib/rocketry/store";

/// The keys a user may set through `brokerConfig`, in the table's order.
pub fn overridable_keys() -> impl Iterator<Item = &'static str> {
    KNOWN_BROKER_KEYS
        .iter()
        .copied()
        .filter(|key| !MANAGED_KEYS.contains(key))
}

/// Refuses keys that are unknown or managed, naming each.
pub fn check_overrides(overrides: &BTreeMap<String, String>) -> Result<(), String> {
    let managed: Vec<&str> = overrides
        .keys()
        .map(String::as_str)
        .filter(|key| MANAGED_KEYS.contains(key))
        .collect();
    if !managed.is_empty() {
        return Err(format!(
            "brokerConfig may not set {}: the operator sets them from the spec",
            managed.join(", ")
        ));
    }
    let unknown: Vec<&str> = overrides
        .keys()
        .map(String::as_str)
        .filter(|key| !KNOWN_BROKER_KEYS.contains(key))
        .collect();
    if !unknown.is_empty() {
        return Err(format!(
            "brokerConfig has keys Rocketry does not know: {} (see docs/configuration.md)",
            unknown.join(", ")
        ));
    }
    Ok(())
}

/// What one broker's file is made of.
pub struct BrokerIdentity<'a> {
    pub cluster_name: &'a str,
    pub broker_name: &'a str,
    pub ordinal: i32,
    pub advertised_host: &'a str,
    pub name_server_addresses: &'a str,
    pub flush_disk_type: &'a str,
    /// `host:port` of every member of a Raft group, empty for a single master.
    pub raft_peers: &'a [String],
    /// What `spec.security` adds (ACL and TLS keys, see `security`).
    pub security: &'a [(&'static str, String)],
}

/// Renders one broker's `broker.conf`: the managed keys, then the overrides, sorted, so the
/// same spec always gives the same bytes (and the same config hash).
pub fn render(identity: &BrokerIdentity, overrides: &BTreeMap<String, String>) -> String {
    let mut lines = vec![
        "# Written by the Rocketry operator from the RocketCluster; edits here are overwritten."
            .to_string(),
        format!("brokerClusterName={}", identity.cluster_name),
        format!("brokerName={}", identity.broker_name),
        format!("brokerId={}", identity.ordinal),
        format!("namesrvAddr={}", identity.name_server_addresses),
        format!("listenPort={BROKER_PORT}"),
        format!("brokerIP1={}", identity.advertised_host),
        format!("storePathRootDir={STORE_PATH}"),
        format!("flushDiskType={}", identity.flush_disk_type),
    ];
    if !identity.raft_peers.is_empty() {
        // RocketMQ's DLedger keys: peers are named n0, n1, ... after the pod ordinals.
        let peers: Vec<String> = identity
            .raft_peers
            .iter()
            .enumerate()
            .map(|(index, address)| format!("n{index}-{address}"))
            .collect();
        lines.push("enableDLegerCommitLog=true".to_string());
        lines.push(format!("dLegerGroup={}", identity.broker_name));
        lines.push(format!("dLegerPeers={}", peers.join(";")));
        lines.push(format!("dLegerSelfId=n{}", identity.ordinal));
    }
    lines.extend(
        identity
            .security
            .iter()
            .map(|(key, value)| format!("{key}={value}")),
    );
    lines.extend(
        overrides
            .iter()
            .map(|(key, value)| format!("{key}={value}")),
    );
    lines.push(String::new());
    lines.join("\n")
}

/// A short digest of a group's files, stamped on its pod template so that a change rolls it.
/// `namesrvAddr` is left out: the operator hands a running broker a new name-server list over
/// the admin protocol, so scaling the name servers restarts no broker.
pub fn hash(files: &BTreeMap<String, String>) -> String {
    let mut digest = Sha256::new();
    for (name, text) in files {
        digest.update(name.as_bytes());
        digest.update([0]);
        for line in text
            .lines()
            .filter(|line| !line.starts_with("namesrvAddr="))
        {
            digest.update(line.as_bytes());
            digest.update([b'\n']);
        }
        digest.update([0]);
    }
    digest
        .finalize()
        .iter()
        .take(8)
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// The keys in the first column of the tables under the given `## ` headings.
    fn documented_keys(page: &str, sections: &[&str]) -> BTreeSet<String> {
        let mut keys = BTreeSet::new();
        let mut inside = false;
        for line in page.lines() {
            if let Some(heading) = line.strip_prefix("## ") {
                inside = sections.iter().any(|section| heading.starts_with(section));
                continue;
            }
            if !inside || !line.starts_with("| `") {
                continue;
            }
            let cell = line.split('|').nth(1).unwrap().trim();
            keys.insert(cell.trim_matches('`').to_string());
        }
        keys
    }

    #[test]
    fn known_keys_match_docs_configuration() {
        let page = include_str!("../../docs/configuration.md");
        let documented = documented_keys(page, &["Broker", "Store"]);
        let known: BTreeSet<String> = KNOWN_BROKER_KEYS
            .iter()
            .map(|key| key.to_string())
            .collect();
        assert!(
            !documented.is_empty(),
            "no key tables found in docs/configuration.md"
        );
        let missing: Vec<_> = documented.difference(&known).collect();
        let stale: Vec<_> = known.difference(&documented).collect();
        assert!(
            missing.is_empty() && stale.is_empty(),
            "operator's KNOWN_BROKER_KEYS drifted from docs/configuration.md: \
             documented but unknown to the operator {missing:?}; known to the operator but undocumented {stale:?}"
        );
        for key in MANAGED_KEYS {
            assert!(
                known.contains(*key),
                "managed key {key} is not a broker key"
            );
        }
    }

    #[test]
    fn overrides_refuse_unknown_and_managed_keys() {
        let mut overrides = BTreeMap::new();
        overrides.insert("maxMessageSize".to_string(), "1024".to_string());
        assert!(check_overrides(&overrides).is_ok());
        overrides.insert("brokerIP1".to_string(), "1.2.3.4".to_string());
        assert!(check_overrides(&overrides)
            .unwrap_err()
            .contains("brokerIP1"));
        overrides.remove("brokerIP1");
        overrides.insert("brokerRole".to_string(), "SLAVE".to_string());
        assert!(check_overrides(&overrides)
            .unwrap_err()
            .contains("brokerRole"));
    }

    #[test]
    fn render_is_java_properties_with_the_managed_keys_first() {
        let peers = vec![
            "a:40911".to_string(),
            "b:40911".to_string(),
            "c:40911".to_string(),
        ];
        let identity = BrokerIdentity {
            cluster_name: "demo",
            broker_name: "demo-broker-0",
            ordinal: 2,
            advertised_host: "demo-broker-0-2.demo-broker-0.ns.svc.cluster.local",
            name_server_addresses: "n0:9876;n1:9876",
            flush_disk_type: "SYNC_FLUSH",
            raft_peers: &peers,
            security: &[("aclEnable", "true".to_string())],
        };
        let mut overrides = BTreeMap::new();
        overrides.insert("maxMessageSize".to_string(), "1024".to_string());
        let text = render(&identity, &overrides);
        for line in [
            "brokerClusterName=demo",
            "brokerName=demo-broker-0",
            "brokerId=2",
            "namesrvAddr=n0:9876;n1:9876",
            "listenPort=10911",
            "brokerIP1=demo-broker-0-2.demo-broker-0.ns.svc.cluster.local",
            "flushDiskType=SYNC_FLUSH",
            "dLegerPeers=n0-a:40911;n1-b:40911;n2-c:40911",
            "dLegerSelfId=n2",
            "aclEnable=true",
            "maxMessageSize=1024",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
        }
        let mut files = BTreeMap::new();
        files.insert("a.conf".to_string(), text.clone());
        let before = hash(&files);
        assert_eq!(before, hash(&files));
        files.insert("a.conf".to_string(), text.clone() + "x=1\n");
        assert_ne!(before, hash(&files));
        let moved = text.replace("namesrvAddr=n0:9876;n1:9876", "namesrvAddr=n0:9876");
        files.insert("a.conf".to_string(), moved);
        assert_eq!(
            before,
            hash(&files),
            "the name-server list changed the hash"
        );
    }
}
