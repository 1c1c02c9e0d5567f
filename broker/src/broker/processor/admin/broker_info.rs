//! Broker state: GET_BROKER_RUNTIME_INFO 28 (what mqadmin's clusterList and brokerStatus
//! print), GET_BROKER_CONFIG 26, UPDATE_BROKER_CONFIG 25, DELETE_EXPIRED_COMMITLOG 329 and
//! CLEAN_EXPIRED_CONSUMEQUEUE 306.

use std::collections::BTreeMap;

use protocol::body::{self, KvTable};
use protocol::{RemotingCommand, ResponseCode};
use tracing::{info, warn};

use crate::broker::clock::now_millis;
use crate::broker::processor::{reply, success};
use crate::broker::Broker;
use crate::config::BrokerConfig;
use crate::config_update;

/// `PermName.isValid`: the read, write and inherit bits and nothing else.
const MAX_PERMISSION: u32 = 7;

pub fn runtime_info(broker: &Broker, request: &RemotingCommand) -> RemotingCommand {
    success(request).with_body(body::to_json(&KvTable {
        table: runtime_table(broker),
    }))
}

pub fn config(broker: &Broker, request: &RemotingCommand) -> RemotingCommand {
    let mut text = String::new();
    for (key, value) in broker.current.read().entries() {
        text.push_str(&format!("{key}={value}\n"));
    }
    success(request).with_body(text.into_bytes())
}

/// Only `BrokerConfig::RUNTIME_KEYS`, whole or not at all (see `config_update`).
pub fn update_config(broker: &Broker, request: &RemotingCommand) -> RemotingCommand {
    let mut current = broker.current.write();
    let refused = |refusal: config_update::Refusal| {
        warn!(remark = %refusal.remark, "broker config update refused");
        reply(request, refusal.code, refusal.remark)
    };
    let updated = match config_update::apply(
        &*current,
        &request.body,
        BrokerConfig::RUNTIME_KEYS,
        BrokerConfig::set,
    ) {
        Ok(updated) => updated,
        Err(refusal) => return refused(refusal),
    };
    if updated.broker_permission > MAX_PERMISSION {
        // The text mqadmin prints when its own check (`Validators.checkBrokerConfig`) fails.
        return refused(config_update::Refusal {
            code: ResponseCode::NoPermission,
            remark: format!(
                "brokerPermission value: {} is invalid.",
                updated.broker_permission
            ),
        });
    }
    let namesrvs = if updated.namesrv_addr == current.namesrv_addr {
        None
    } else {
        match updated.checked_namesrv_addrs() {
            Ok(addrs) => Some(addrs),
            Err(error) => {
                return refused(config_update::Refusal {
                    code: ResponseCode::SystemError,
                    remark: error.to_string(),
                })
            }
        }
    };
    let permission_changed = updated.broker_permission != current.broker_permission;
    *current = updated;
    if let Some(addrs) = namesrvs {
        // Under the lock, so two updates at once leave the registrar on the list that stays.
        broker.registrar.set_namesrvs(addrs);
    }
    drop(current);
    info!(update = %String::from_utf8_lossy(&request.body).trim(), "broker config updated");
    if permission_changed {
        // Registered now with the new perms, under a new data version: the name servers
        // keep a broker's queues as they are while its version stays the same.
        if let Err(error) = broker.topics.bump_version() {
            return reply(request, ResponseCode::SystemError, error.to_string());
        }
        broker.topics_changed.notify_one();
    }
    success(request)
}

/// mqadmin `deleteExpiredCommitLog`: retention runs now instead of at `deleteWhen`, deleting
/// the CommitLog segments older than `fileReservedTime` (and what pointed into them), as
/// Apache's `executeDeleteFilesManually` does.
pub fn delete_expired_commit_log(broker: &Broker, request: &RemotingCommand) -> RemotingCommand {
    match broker
        .store
        .delete_expired_files(std::time::SystemTime::now())
    {
        Ok(deleted) => {
            info!(deleted, "expired CommitLog segments deleted on request");
            success(request)
        }
        Err(error) => reply(request, ResponseCode::SystemError, error.to_string()),
    }
}

/// mqadmin `cleanExpiredCQ`: what points below the CommitLog's minimum goes now. Unlike
/// Apache, a queue left empty keeps its offsets, so a consumer's committed offset stays
/// valid and new messages do not reuse old offsets.
pub fn clean_expired_consume_queues(broker: &Broker, request: &RemotingCommand) -> RemotingCommand {
    match broker.store.clean_expired_consume_queues() {
        Ok(()) => success(request),
        Err(error) => reply(request, ResponseCode::SystemError, error.to_string()),
    }
}

/// Values are strings, as in Java. Only figures Rocketry measures are present; mqadmin
/// prints blanks or zeros for the keys that are absent.
fn runtime_table(broker: &Broker) -> BTreeMap<String, String> {
    let store = &broker.store;
    let stats = broker.stats.snapshot();
    let mut table = BTreeMap::new();
    let mut put = |key: &str, value: String| {
        table.insert(key.to_string(), value);
    };
    put(
        "brokerVersionDesc",
        format!("Rocketry_{}", env!("CARGO_PKG_VERSION")),
    );
    put("brokerVersion", protocol::version::CURRENT.to_string());
    put(
        "bootTimestamp",
        (now_millis() - broker.uptime().as_millis() as i64).to_string(),
    );
    // Active means it takes writes: not stopping, and not fenced after a failed flush.
    let fence = store.write_fence();
    put(
        "brokerActive",
        (fence.is_none() && !broker.is_stopping()).to_string(),
    );
    if let Some(reason) = fence {
        // Rocketry's own key: why writes are refused (docs/reliability.md).
        put("writeFenceReason", reason.to_string());
    }
    put(
        "commitLogMinOffset",
        store.commit_log_min_offset().to_string(),
    );
    put(
        "commitLogMaxOffset",
        store.commit_log_max_offset().to_string(),
    );
    let max = store.commit_log_max_offset();
    put(
        "dispatchBehindBytes",
        max.saturating_sub(store.dispatched_offset()).to_string(),
    );
    put(
        "remainHowManyDataToFlush",
        human_bytes(max.saturating_sub(store.commit_log_flushed_offset())),
    );
    if let Some(earliest) = store.earliest_commit_log_time() {
        put("earliestMessageTimeStamp", earliest.to_string());
    }
    put("runtime", running_for(broker.uptime()));
    // Totals since start; the day marks are taken at UTC midnight (RocketMQ uses the
    // broker's local midnight). Rates are over the last minute; Java prints three windows
    // (10 s, 1 min, 10 min) and mqadmin reads the first.
    put("msgPutTotalTodayNow", stats.put_total.to_string());
    put("msgGetTotalTodayNow", stats.get_total.to_string());
    put(
        "msgPutTotalTodayMorning",
        stats.put_total_today_morning.to_string(),
    );
    put(
        "msgGetTotalTodayMorning",
        stats.get_total_today_morning.to_string(),
    );
    put(
        "msgPutTotalYesterdayMorning",
        stats.put_total_yesterday_morning.to_string(),
    );
    put(
        "msgGetTotalYesterdayMorning",
        stats.get_total_yesterday_morning.to_string(),
    );
    put("putTps", format!("{:.2}", stats.put_tps));
    put("getTransferredTps", format!("{:.2}", stats.get_tps));
    if let Some(ratio) = store.disk_used_ratio() {
        put("commitLogDiskRatio", format!("{ratio:.4}"));
    }
    // Rocketry's own keys for a replica of a replicated group (docs/replication.md): what
    // the operator rolls by, and what shows that a roll cost no election but its transfer.
    if let Some(member) = &broker.replica {
        let standing = member.standing();
        put(
            "replicaRole",
            if standing.leads { "leader" } else { "follower" }.to_string(),
        );
        put("raftTerm", standing.term.to_string());
        if let Some(leader) = standing.leader {
            put("raftLeader", format!("n{leader}"));
        }
        put("sendsPassedOnToLeader", standing.passed_on.to_string());
    }
    table
}

/// Bytes as Java's `MixAll.humanReadableByteCount(bytes, false)` prints them: `512 B`,
/// `1.5 KiB`, `3.0 MiB`.
fn human_bytes(bytes: u64) -> String {
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let exponent = ((bytes as f64).ln() / 1024f64.ln()) as i32;
    let unit = ["K", "M", "G", "T", "P", "E"][(exponent - 1) as usize];
    format!("{:.1} {unit}iB", bytes as f64 / 1024f64.powi(exponent))
}

/// How long the broker has run, as Apache's `runtime` key says it.
fn running_for(uptime: std::time::Duration) -> String {
    let seconds = uptime.as_secs();
    format!(
        "[ {} days, {} hours, {} minutes, {} seconds ]",
        seconds / 86_400,
        seconds / 3_600 % 24,
        seconds / 60 % 60,
        seconds % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations_print_as_apache_prints_them() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 * 1024 * 1024), "3.0 MiB");
        assert_eq!(
            running_for(std::time::Duration::from_secs(90_061)),
            "[ 1 days, 1 hours, 1 minutes, 1 seconds ]"
        );
    }
}
